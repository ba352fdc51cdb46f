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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from eth_utils.crypto import keccak

from market.chain.events import Event, LogReader, topic_of
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import VerificationMode
from market.errors import ContractRevert
from worker.chainwork import BatchKind, ChainWork
from worker.store import NodeJob, NodeJobState, NodeStore

log = logging.getLogger(__name__)
S = NodeJobState
CURSOR = "poller"
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
    ) -> None:
        self.market = market
        self.txm = txm
        self.store = store
        self.served = {m.model_id: m for m in served}
        self.enqueue = enqueue
        self.config = config or PollerConfig()
        self.reader = LogReader(
            market.client,
            {"JobMarket": market.deployment.job_market},
            topics=[topic_of("JobMarket", "JobSubmitted")],
        )
        self.start_block = market.deployment.start_block if start_block is None else start_block
        self.claims = ChainWork(
            store,
            txm,
            market.deployment.job_market,
            CLAIM,
            self._claim_calldata,
            confirmed=self._claimed,
            reconcile=self._reconcile,
        )

    def recover(self) -> None:
        """After a restart: settle claim batches whose transaction ended while we were down."""
        self.claims.resolve()

    # ------------------------------------------------------------------ one round
    def poll(self) -> int:
        """Read new submissions, record them, claim the good ones. Returns jobs claimed."""
        self.discover()
        return self.claim_pending()

    def discover(self) -> int:
        head = self.market.client.block_number()
        frm = self.store.cursor(CURSOR, self.start_block - 1) + 1
        if frm > head:
            return 0
        events = self.reader.fetch(frm, head)
        now = int(self.market.client.now())
        jobs = [self._evaluate(ev, now) for ev in events if ev.name == "JobSubmitted"]
        return self.store.add_seen(jobs, (CURSOR, head))

    def claim_pending(self) -> int:
        """Claim seen jobs in one batch; jobs whose deadline came too close are given up."""
        moved = self.claims.resolve()
        seen = self.store.jobs_in(S.SEEN, limit=self.config.claim_batch)
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
    def _evaluate(self, ev: Event, now: int) -> NodeJob:
        a = ev.args
        job = NodeJob(
            job_id=int(a["jobId"]),
            model_id="0x" + bytes(a["modelId"]).hex(),
            input_hash="0x" + bytes(a["inputHash"]).hex(),
            input=bytes(a["input"]),
            max_fee=str(a["maxFee"]),
            deadline=int(a["deadline"]),
            submit_block=ev.block_number,
            state=S.SEEN,
            attempts=0,
        )
        reason = self._reject_reason(ev, job, now)
        if reason:
            job.state, job.error = S.REJECTED, reason
            log.info("job %s rejected: %s", job.job_id, reason)
        return job

    def _reject_reason(self, ev: Event, job: NodeJob, now: int) -> str | None:
        a = ev.args
        model = self.served.get(bytes(a["modelId"]))
        if model is None:
            return "model not served by this node"
        job.model_name = model.name
        if int(a["maxFee"]) < model.price:
            return f"max fee {a['maxFee']} is below this node's price {model.price}"
        if int(a["mode"]) != VerificationMode.NONE:
            return f"verification mode {VerificationMode(int(a['mode'])).name} not offered"
        if int(a["deadline"]) - now < self.config.min_time_left_s:
            return "deadline too close to run the job"
        data = job.input
        if not data:
            try:
                data = self._fetch(str(a["inputURI"]))
            except (httpx.HTTPError, ValueError) as exc:
                return f"input could not be fetched from {a['inputURI']!r}: {exc}"
        if keccak(data) != bytes(a["inputHash"]):
            return "input bytes do not match the input hash"
        try:
            model.check_input(data)
        except ValueError as exc:
            return f"invalid input: {exc}"
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
