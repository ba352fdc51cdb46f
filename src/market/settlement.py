"""The settlement service: finalize jobs whose window has passed, expire overdue ones.

It rebuilds what it tracks from the chain's events at start (the chain is the source of
truth), then follows new events. Work goes out in ``finalizeMany`` / ``expireMany`` batches
through the persisted transaction manager (gapless nonces, one in flight, gas bumping,
crash-safe). Both calls skip jobs that are not ready, so a stale view costs gas, never money.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import ZERO_ADDRESS, JobStatus
from market.settlement_zk import ZkSettlement

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    status: JobStatus
    deadline: int
    window_end: int = 0
    mode: int = 0  # VerificationMode: zk jobs finalize only once proven (settlement_zk)


@dataclass
class SettlerStats:
    finalized: int = 0
    expired: int = 0
    transactions: int = 0
    gas_used: int = 0


@dataclass
class Settler:
    market: Market
    txm: TxManager
    batch: int = 64
    grace_s: int = 1
    jobs: dict[int, Tracked] = field(default_factory=dict)
    stats: SettlerStats = field(default_factory=SettlerStats)
    #: zk jobs (market.settlement_zk); made in __post_init__ when the deployment has zk
    zk: ZkSettlement | None = None
    _cursor: int = -1

    def __post_init__(self) -> None:
        d = self.market.deployment
        self.reader = LogReader(self.market.client, {"JobMarket": d.job_market})
        self._cursor = d.start_block - 1
        if self.zk is None and d.zk_verification != ZERO_ADDRESS:
            self.zk = ZkSettlement(self.market, self.txm)

    def follow(self) -> None:
        head = self.market.client.block_number()
        if head <= self._cursor:
            return
        for ev in self.reader.fetch(self._cursor + 1, head):
            self._apply(ev)
        self._cursor = head

    def _apply(self, ev: Event) -> None:
        a = ev.args
        job_id = int(a["jobId"]) if "jobId" in a else None
        if job_id is None:
            return
        if ev.name == "JobSubmitted":
            self.jobs[job_id] = Tracked(
                JobStatus.OPEN, int(a["deadline"]), mode=int(a.get("mode", 0))
            )
        elif job_id not in self.jobs:
            return
        elif ev.name == "JobClaimed":
            self.jobs[job_id].status = JobStatus.CLAIMED
        elif ev.name == "ResultCommitted":
            self.jobs[job_id].status = JobStatus.COMMITTED
            self.jobs[job_id].window_end = int(a["windowEnd"])
        elif ev.name in ("JobFinalized", "JobExpired", "JobCancelled", "JobSlashed"):
            del self.jobs[job_id]
            if self.zk is not None:
                self.zk.forget(job_id)
        elif ev.name == "JobDisputed":
            self.jobs[job_id].status = JobStatus.DISPUTED
        elif ev.name == "JobDisputeCleared":
            self.jobs[job_id].status = JobStatus.COMMITTED

    def due(self, now: float) -> tuple[list[int], list[int]]:
        """(jobs to finalize, jobs to expire) as of ``now``."""
        fin = [
            i
            for i, t in self.jobs.items()
            if t.status is JobStatus.COMMITTED
            and t.window_end + self.grace_s <= now
            and (t.mode == 0 or (self.zk is not None and self.zk.can_finalize(i)))
        ]
        exp = [
            i
            for i, t in self.jobs.items()
            if t.status in (JobStatus.OPEN, JobStatus.CLAIMED) and t.deadline + self.grace_s < now
        ]
        return sorted(fin), sorted(exp)

    def settle_once(self, now: float | None = None) -> int:
        """Follow events, then send what is due. Returns how many jobs it settled."""
        self.follow()
        fin, exp = self.due(self.market.client.now() if now is None else now)
        done = 0
        jm = self.market.jobs.functions
        for ids, fn, what in ((fin, jm.finalizeMany, "finalize"), (exp, jm.expireMany, "expire")):
            for i in range(0, len(ids), self.batch):
                chunk = ids[i : i + self.batch]
                data = bytes.fromhex(fn(chunk)._encode_transaction_data()[2:])
                res = self.txm.send(
                    self.market.deployment.job_market,
                    data,
                    purpose=what,
                    key=f"{what}:{chunk[0]}:{len(chunk)}:{time.time_ns()}",
                )
                self.stats.transactions += 1
                self.stats.gas_used += res.gas_used or 0
                if not res.ok:
                    log.warning("%s of %s failed: %s", what, chunk, res.error)
                    continue
                before = len(self.jobs)
                self.follow()
                n = before - len(self.jobs)
                done += max(n, 0)
                if what == "finalize":
                    self.stats.finalized += max(n, 0)
                else:
                    self.stats.expired += max(n, 0)
        if self.zk is not None:
            zk_jobs = {i: (t.status, t.mode) for i, t in self.jobs.items() if t.mode != 0}
            if zk_jobs and self.zk.slash_due(zk_jobs, self.market.client.now()):
                before = len(self.jobs)
                self.follow()
                done += max(before - len(self.jobs), 0)
        return done

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        while not stop.is_set():
            try:
                self.settle_once()
            except Exception as exc:  # noqa: BLE001 - keep settling; the chain is the truth
                log.warning("settlement round failed: %s", exc)
            stop.wait(interval)
