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
from functools import partial

from market.chain.events import Event, LogReader
from market.chain.market import Market
from market.chain.reorg import ReorgMonitor
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
    #: notices reorgs: what it tracks is then rebuilt from the chain, and its transactions
    #: mined above the common ancestor are checked again (re-sent when dropped)
    monitor: ReorgMonitor | None = None
    #: zk jobs (market.settlement_zk); made in __post_init__ when the deployment has zk
    zk: ZkSettlement | None = None
    _cursor: int = -1

    def __post_init__(self) -> None:
        d = self.market.deployment
        self.reader = LogReader(self.market.client, {"JobMarket": d.job_market})
        self._cursor = d.start_block - 1
        if self.zk is None and d.zk_verification != ZERO_ADDRESS:
            self.zk = ZkSettlement(self.market, self.txm)
        if self.monitor is not None:
            self.txm.observer = self.monitor.observe

    def check_reorg(self) -> None:
        """After a reorg: re-check the transactions mined above the common ancestor, and
        rebuild the view of the jobs from the chain (an event on a dropped block, such as
        the JobFinalized of a dropped finalize, must not count)."""
        if self.monitor is None:
            return
        reorg = self.monitor.check()
        if reorg is not None:
            self.txm.reorged(reorg.ancestor)
            self.jobs.clear()
            self._cursor = self.market.deployment.start_block - 1
        self.txm.step()  # re-sent transactions nobody waits on still get their receipt

    def follow(self) -> None:
        client = self.market.client
        latest = client.rpc(partial(client.w3.eth.get_block, "latest"))
        head = int(latest["number"])
        if self.monitor is not None:  # before the logs: a reorg after this is noticed
            self.monitor.observe(head, bytes(latest["hash"]))
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
        self.check_reorg()
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
            if zk_jobs:
                self.zk.attest_due(zk_jobs, self.market.client.now())
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
