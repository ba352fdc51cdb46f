"""Find jobs this node can serve, check them, claim them, and queue their inference.

The poller follows ``JobSubmitted`` from a persisted cursor. A job is claimed only when the
node serves its model at a price within the job's max fee, the deadline leaves time to run
it, and its input is present, matches its hash and decodes for the model: a bad job is
recorded as rejected with its reason and never claimed (so it costs the node nothing and the
requester gets a refund at expiry). Claims go out in ``claimJobs`` batches; when a batch
reverts on one job (another node was faster), that job is set aside and the rest retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from market.chain.events import Event, LogReader, topic_of
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import JobStatus, VerificationMode
from market.errors import ContractRevert
from worker.chainwork import BatchKind, ChainWork
from worker.store import NodeJob, NodeJobState, NodeStore

if TYPE_CHECKING:
    from worker.zk import ZkWork

log = logging.getLogger(__name__)
S = NodeJobState
CURSOR = "poller"
INDEX_CURSOR = "poller-index"


@dataclass(frozen=True)
class Submission:
    """A submitted job as the poller judges it, read from an event or from the index."""

    job_id: int
    model_id: bytes
    input_hash: bytes
    input: bytes
    input_uri: str
    max_fee: int
    deadline: int
    mode: int
    block: int

    @classmethod
    def from_event(cls, ev: Event) -> Submission:
        a = ev.args
        return cls(
            int(a["jobId"]),
            bytes(a["modelId"]),
            bytes(a["inputHash"]),
            bytes(a["input"]),
            str(a["inputURI"]),
            int(a["maxFee"]),
            int(a["deadline"]),
            int(a["mode"]),
            ev.block_number,
        )

    @classmethod
    def from_index(cls, row: Any) -> Submission:
        return cls(
            int(row.job_id),
            bytes.fromhex(row.model_id[2:]),
            bytes.fromhex(row.input_hash[2:]),
            bytes(row.input or b""),
            row.input_uri or "",
            int(row.max_fee),
            int(row.deadline),
            int(row.mode),
            int(row.submit_block),
        )


CLAIM = BatchKind(
    name="claim",
    waiting=S.SEEN,
    in_flight=S.CLAIMING,
    done=S.CLAIMED,
    give_up=S.LOST,
    permanent=frozenset(
        {"InvalidJobStatus", "DeadlinePassed", "PriceAboveMaxFee", "ModelNotServed", "JobNotFound"}
    ),
)


@dataclass(frozen=True)
class ServedModel:
    """A model this node serves: its on-chain id, local name, price and input check."""

    model_id: bytes
    name: str
    price: int
    check_input: Callable[[bytes], object]


@dataclass
class PollerConfig:
    min_time_left_s: int = 10
    claim_batch: int = 64
    max_input_bytes: int = 1 << 20
    fetch_timeout_s: float = 10.0
    #: every ``reread_every_s`` the blocks read since the last time, and the
    #: ``reread_blocks`` (K, not final yet) below them, are read again: a job a reorg put
    #: below the cursor is found even if the reorg was not noticed
    reread_blocks: int = 12
    reread_every_s: float = 5.0


class Poller:
    def __init__(
        self,
        market: Market,
        txm: TxManager,
        store: NodeStore,
        served: Sequence[ServedModel],
        enqueue: Callable[[int], None],
        config: PollerConfig | None = None,
        start_block: int | None = None,
        index: sessionmaker[Session] | None = None,
        zk: ZkWork | None = None,
    ) -> None:
        """With ``index`` (sessions on the market database the indexer fills), new jobs
        are read from its jobs table instead of from the chain's events. With ``zk``,
        zk-spot / zk-full jobs of the models it serves are accepted (worker.zk)."""
        self.index = index
        self.zk = zk
        self.market = market
        self.txm = txm
        self.store = store
        #: the node's result cache (worker.cache.CacheServer.serve_seen): answers the seen
        #: jobs it can at once and returns the rest, to be claimed and run as usual
        self.serve_hook: Callable[[NodeStore, list[NodeJob]], list[NodeJob]] | None = None
        self.served = {m.model_id: m for m in served}
        self.enqueue = enqueue
        self.config = config or PollerConfig()
        self.reader = LogReader(
            market.client,
            {"JobMarket": market.deployment.job_market},
            topics=[topic_of("JobMarket", "JobSubmitted")],
        )
        self.start_block = market.deployment.start_block if start_block is None else start_block
        #: told (number, hash) of the head block each event read goes up to (reorg monitor)
        self.observer: Callable[[int, bytes], None] | None = None
        # reorgs reported from another thread while a read is under way (see rewind)
        self._rewinds, self._rewind_to, self._rewind_lock = 0, -1, threading.Lock()
        self._reread_at, self._reread_head = time.monotonic(), -1
        self.claims = ChainWork(
            store,
            txm,
            market.deployment.job_market,
            CLAIM,
            self._claim_calldata,
            confirmed=self._claimed,
            reconcile=self._reconcile,
        )

    def rewind(self, ancestor: int) -> None:
        """The chain was reorganised above ``ancestor``: read its events again from there
        (jobs already known are kept; a job submitted only on the new branch is found)."""
        with self._rewind_lock:
            self._rewinds += 1
            self._rewind_to = ancestor
            if self.store.cursor(CURSOR, self.start_block - 1) > ancestor:
                with self.store.sessions.begin() as s:
                    self.store.set_cursor(s, CURSOR, max(ancestor, self.start_block - 1))

    def recover(self) -> None:
        """After a restart: settle claim batches whose transaction ended while we were down."""
        self.claims.resolve()

    # ------------------------------------------------------------------ one round
    def poll(self) -> int:
        """Read new submissions, record them, claim the good ones. Returns jobs claimed."""
        self.discover()
        return self.claim_pending()

    def discover(self) -> int:
        """Record new submissions from the chain's events, or from the market index."""
        if self.index is not None:
            return self._discover_from_index(self.index)
        client = self.market.client
        rewinds = self._rewinds
        latest = client.rpc(partial(client.w3.eth.get_block, "latest"))
        head = int(latest["number"])
        if self.observer is not None:  # before the logs: a reorg after this is noticed
            self.observer(head, bytes(latest["hash"]))
        frm = self.store.cursor(CURSOR, self.start_block - 1) + 1
        if self._reread_head < 0:  # first read: from where the cursor stands
            self._reread_head = frm - 1
        if time.monotonic() - self._reread_at >= self.config.reread_every_s:
            # everything since the previous re-read, and the K blocks below it, once more
            self._reread_at = time.monotonic()
            again = self._reread_head - self.config.reread_blocks + 1
            frm = min(frm, max(self.start_block, again))
            self._reread_head = head
        if frm > head:
            return 0
        events = self.reader.fetch(frm, head)
        now = int(self.market.client.now())
        jobs = [
            self._evaluate(Submission.from_event(ev), now)
            for ev in events
            if ev.name == "JobSubmitted" and self.store.get(int(ev.args["jobId"])) is None
        ]
        with self._rewind_lock:
            if rewinds != self._rewinds:  # a reorg came while reading: read it again
                head = min(head, max(self._rewind_to, self.start_block - 1))
            return self.store.add_seen(jobs, (CURSOR, head))

    def _discover_from_index(self, index: sessionmaker[Session]) -> int:
        """Open jobs the indexer has recorded above the last job id seen (the cursor)."""
        from market.db.models import Job

        last = self.store.cursor(INDEX_CURSOR, 0)
        with index() as s:
            rows = list(
                s.scalars(
                    select(Job)
                    .where(Job.job_id > last, Job.status == JobStatus.OPEN)
                    .order_by(Job.job_id)
                    .limit(1000)
                )
            )
        if not rows:
            return 0
        now = int(self.market.client.now())
        jobs = [self._evaluate(Submission.from_index(r), now) for r in rows]
        return self.store.add_seen(jobs, (INDEX_CURSOR, rows[-1].job_id))

    def claim_pending(self) -> int:
        """Claim seen jobs in one batch; jobs whose deadline came too close are given up."""
        moved = self.claims.resolve()
        seen = self.store.jobs_in(S.SEEN, limit=self.config.claim_batch)
        if seen and self.serve_hook is not None:
            seen = self.serve_hook(self.store, seen)
        if not seen:
            return moved
        now = self.market.client.now()
        late = [j.job_id for j in seen if j.deadline - now < self.config.min_time_left_s]
        self.store.transition(late, S.SEEN, S.LOST, error="deadline too close to run the job")
        tx_id = self.claims.start([j.job_id for j in seen if j.job_id not in set(late)])
        if tx_id is not None:
            self.claims.drive(tx_id)
            moved += self.claims.resolve()
        return moved

    def _claim_calldata(self, jobs: list[NodeJob]) -> bytes:
        fn = self.market.jobs.functions.claimJobs([j.job_id for j in jobs])
        return bytes.fromhex(fn._encode_transaction_data()[2:])

    def _claimed(self, ids: list[int]) -> None:
        self.store.stamp(ids, claimed_at=time.time())
        for job_id in ids:
            self.enqueue(job_id)

    def _reconcile(self, job_id: int, revert: ContractRevert) -> NodeJobState | None:
        """A claim refused because the job is already claimed — by us — succeeded earlier."""
        if revert.name == "InvalidJobStatus":
            onchain = self.market.job(job_id)
            if onchain.node == self.market.client.address:
                return S.CLAIMED
        return None

    # ------------------------------------------------------------------ checks
    def _evaluate(self, sub: Submission, now: int) -> NodeJob:
        job = NodeJob(
            job_id=sub.job_id,
            model_id="0x" + sub.model_id.hex(),
            input_hash="0x" + sub.input_hash.hex(),
            input=sub.input,
            max_fee=str(sub.max_fee),
            deadline=sub.deadline,
            submit_block=sub.block,
            state=S.SEEN,
            attempts=0,
        )
        reason = self._reject_reason(sub, job, now)
        if reason:
            job.state, job.error = S.REJECTED, reason
            log.info("job %s rejected: %s", job.job_id, reason)
        return job

    def _reject_reason(self, sub: Submission, job: NodeJob, now: int) -> str | None:
        model = self.served.get(sub.model_id)
        if model is None:
            return "model not served by this node"
        job.model_name = model.name
        if sub.max_fee < model.price:
            return f"max fee {sub.max_fee} is below this node's price {model.price}"
        zk_job = sub.mode in (VerificationMode.ZK_SPOT, VerificationMode.ZK_FULL)
        if sub.mode != VerificationMode.NONE and (self.zk is None or not zk_job):
            return f"verification mode {VerificationMode(sub.mode).name} not offered"
        if sub.deadline - now < self.config.min_time_left_s:
            return "deadline too close to run the job"
        data = sub.input
        if not data:
            try:
                data = self._fetch(sub.input_uri)
            except (httpx.HTTPError, ValueError) as exc:
                return f"input could not be fetched from {sub.input_uri!r}: {exc}"
        if keccak(data) != sub.input_hash:
            return "input bytes do not match the input hash"
        try:
            model.check_input(data)
        except ValueError as exc:
            return f"invalid input: {exc}"
        if zk_job and self.zk is not None:
            reason = self.zk.accept(sub.job_id, model.name, sub.mode, data, self.market)
            if reason:
                return reason
        job.input = data
        return None

    def _fetch(self, uri: str) -> bytes:
        if not uri.startswith(("http://", "https://")):
            raise ValueError("only http(s) input URIs are supported")
        with httpx.stream("GET", uri, timeout=self.config.fetch_timeout_s) as r:
            r.raise_for_status()
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > self.config.max_input_bytes:
                    raise ValueError(f"input larger than {self.config.max_input_bytes} bytes")
        return body
