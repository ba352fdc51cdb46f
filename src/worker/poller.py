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
from market.chain.types import JobStatus, VerificationMode
from worker.store import NodeJob, NodeJobState, NodeStore

log = logging.getLogger(__name__)
S = NodeJobState
CURSOR = "poller"


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

    def recover(self) -> None:
        """After a restart: settle jobs left 'claiming' from what the chain says."""
        me = self.market.client.address
        for job in self.store.jobs_in(S.CLAIMING, limit=100_000):
            onchain = self.market.job(job.job_id)
            if onchain.node == me:
                self.store.transition([job.job_id], S.CLAIMING, S.CLAIMED, claimed_at=time.time())
            elif onchain.status == JobStatus.OPEN:
                self.store.transition([job.job_id], S.CLAIMING, S.SEEN)
            else:
                self.store.transition(
                    [job.job_id], S.CLAIMING, S.LOST, error=f"claimed by {onchain.node}"
                )

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
        ids = self.store.ids_in(S.SEEN, limit=self.config.claim_batch)
        ids = self.store.transition(ids, S.SEEN, S.CLAIMING)
        claimed = 0
        while ids:
            fn = self.market.jobs.functions.claimJobs(ids)
            res = self.txm.send(
                self.market.deployment.job_market,
                bytes.fromhex(fn._encode_transaction_data()[2:]),
                purpose="claim",
                key=f"claim:{ids[0]}-{ids[-1]}:{len(ids)}:{time.time_ns()}",
            )
            if res.ok:
                got = self.store.transition(ids, S.CLAIMING, S.CLAIMED, claimed_at=time.time())
                for job_id in got:
                    self.enqueue(job_id)
                claimed += len(got)
                break
            bad = res.revert.args_by_name.get("jobId") if res.revert else None
            if isinstance(bad, int) and bad in ids:
                self.store.transition([bad], S.CLAIMING, S.LOST, error=str(res.revert))
                ids = [i for i in ids if i != bad]
                continue
            log.warning("claim of %s failed: %s", ids, res.error)
            self.store.transition(ids, S.CLAIMING, S.LOST, error=res.error)
            break
        return claimed

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
