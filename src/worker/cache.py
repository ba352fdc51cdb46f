"""The node's verifiable result cache: results of settled jobs by (modelId, inputHash), and
the hook that answers a new job with the same model and input from it (JobMarket
``answerFromCache``) at the node's cache price instead of claiming and running it.

The cache is only a hint: the contract checks every answer against the reference job
(Settled, same model, same input hash, output hashing to the reference's result), so an
entry that went stale can cost a reverted call at worst. See docs/cache.md.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, Float, Integer, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from market.canonical import keccak
from market.chain.market import Market
from market.chain.result_cache import answer_from_cache, cache_price_of
from market.chain.txmanager import TxManager
from market.chain.types import JobStatus
from market.db import make_sessions
from market.errors import ChainError, ContractRevert
from worker.store import NodeBase, NodeJob, NodeJobState, NodeStore

log = logging.getLogger(__name__)


class CacheEntry(NodeBase):
    """One settled result this node can answer repeated jobs with."""

    __tablename__ = "node_result_cache"

    model_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    input_hash: Mapped[str] = mapped_column(String(66), primary_key=True)
    #: the settled job the contract checks an answer against
    ref_job_id: Mapped[int] = mapped_column(Integer)
    result_hash: Mapped[str] = mapped_column(String(66))
    output: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    output_uri: Mapped[str] = mapped_column(String(200), default="")
    hits: Mapped[int] = mapped_column(Integer, default=0)
    added_at: Mapped[float] = mapped_column(Float, default=time.time)


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


class ResultCache:
    """(modelId, inputHash) -> (reference job id, output), in the node's database."""

    def __init__(self, engine: Engine) -> None:
        CacheEntry.__table__.create(engine, checkfirst=True)  # type: ignore[attr-defined]
        self.sessions: sessionmaker[Session] = make_sessions(engine)

    def get(self, model_id: bytes, input_hash: bytes) -> CacheEntry | None:
        with self.sessions() as s:
            return s.get(CacheEntry, (_hex(model_id), _hex(input_hash)))

    def put(
        self,
        model_id: bytes,
        input_hash: bytes,
        ref_job_id: int,
        result_hash: bytes,
        output: bytes = b"",
        output_uri: str = "",
    ) -> bool:
        """Add an entry; the first settled reference for a key is kept. True when added."""
        if output and keccak(output) != result_hash:
            raise ValueError("output does not hash to the result hash")
        if not output and not output_uri:
            raise ValueError("a cache entry needs the output or its URI")
        with self.sessions.begin() as s:
            if s.get(CacheEntry, (_hex(model_id), _hex(input_hash))) is not None:
                return False
            s.add(
                CacheEntry(
                    model_id=_hex(model_id),
                    input_hash=_hex(input_hash),
                    ref_job_id=ref_job_id,
                    result_hash=_hex(result_hash),
                    output=output,
                    output_uri=output_uri,
                )
            )
        return True

    def drop(self, model_id: bytes, input_hash: bytes) -> None:
        with self.sessions.begin() as s:
            entry = s.get(CacheEntry, (_hex(model_id), _hex(input_hash)))
            if entry is not None:
                s.delete(entry)

    def hit(self, model_id: bytes, input_hash: bytes) -> None:
        with self.sessions.begin() as s:
            entry = s.get(CacheEntry, (_hex(model_id), _hex(input_hash)))
            if entry is not None:
                entry.hits += 1

    def known_refs(self) -> set[int]:
        with self.sessions() as s:
            return set(s.scalars(select(CacheEntry.ref_job_id)))


class CacheServer:
    """Fills the cache from settled jobs and answers new jobs from it, with one key."""

    def __init__(
        self,
        market: Market,
        cache: ResultCache,
        txm: TxManager | None = None,
        learn_every_s: float = 10.0,
    ) -> None:
        """With ``txm`` (the node's transaction manager) answers go through it, so they take
        their nonces from the same sequence as the node's claims and commits."""
        self.market = market
        self.cache = cache
        self.txm = txm
        self.learn_every_s = learn_every_s
        self._learned_at = 0.0

    def learn(self, job_id: int, output: bytes = b"", output_uri: str = "") -> bool:
        """Cache job ``job_id``'s result if it is Settled on chain and ``output`` is its
        result. True when a new entry was added."""
        job = self.market.job(job_id)
        if job.status != JobStatus.SETTLED:
            return False
        if output and keccak(output) != job.result_hash:
            return False
        return self.cache.put(
            job.model_id, job.input_hash, job_id, job.result_hash, output, output_uri
        )

    def learn_committed(self, store: NodeStore, limit: int = 50) -> int:
        """Cache this node's most recent committed jobs that have settled on chain since
        (one chain read per job not cached yet). Returns entries added."""
        known = self.cache.known_refs()
        with store.sessions() as s:
            jobs = list(
                s.scalars(
                    select(NodeJob)
                    .where(NodeJob.state == NodeJobState.COMMITTED)
                    .order_by(NodeJob.committed_at.desc())
                    .limit(limit + len(known))
                )
            )
        added = 0
        for job in [j for j in jobs if j.job_id not in known][:limit]:
            if self.learn(job.job_id, job.output or b"", job.output_uri):
                added += 1
        return added

    def serve_seen(self, store: NodeStore, jobs: list[NodeJob]) -> list[NodeJob]:
        """The node's hook (Poller.claim_pending): answer the jobs it can from the cache and
        record them as committed; return the others, to be claimed and run as usual. Every
        ``learn_every_s`` it first caches its newly settled jobs."""
        if time.monotonic() - self._learned_at >= self.learn_every_s:
            self._learned_at = time.monotonic()
            try:
                self.learn_committed(store)
            except ChainError as exc:
                log.warning("learning settled results failed: %s", exc)
        rest: list[NodeJob] = []
        for job in jobs:
            ref = self.answer_job(job)
            if ref is None:
                rest.append(job)
                continue
            entry = self.cache.get(
                bytes.fromhex(job.model_id.removeprefix("0x")),
                bytes.fromhex(job.input_hash.removeprefix("0x")),
            )
            store.transition(
                [job.job_id],
                NodeJobState.SEEN,
                NodeJobState.COMMITTED,
                result_hash=entry.result_hash if entry else None,
                output=entry.output if entry else None,
                output_uri=entry.output_uri if entry else "",
                committed_at=time.time(),
                error=f"answered from the result cache (reference job {ref})",
            )
        return rest

    def answer(self, job_id: int, model_id: bytes, input_hash: bytes, max_fee: int) -> int | None:
        """The hook where the node decides how to serve an Open job: on a cache hit whose
        reference is still Settled and whose cache price fits ``max_fee``, answer it at once
        (JobMarket.answerFromCache) and return the reference job id; else None (claim and
        run it as usual)."""
        entry = self.cache.get(model_id, input_hash)
        if entry is None:
            return None
        price = cache_price_of(self.market, self.market.client.address, model_id)
        if price is None or price > max_fee:
            return None
        try:
            self._send_answer(job_id, entry)
        except ContractRevert as exc:
            log.info("cache answer for job %s refused: %s", job_id, exc)
            if exc.name in ("CacheReferenceMismatch", "InvalidJobStatus") and self._ref_gone(
                entry.ref_job_id
            ):
                self.cache.drop(model_id, input_hash)
            return None
        except ChainError as exc:
            log.warning("cache answer for job %s failed: %s", job_id, exc)
            return None
        self.cache.hit(model_id, input_hash)
        return entry.ref_job_id

    def _send_answer(self, job_id: int, entry: CacheEntry) -> None:
        if self.txm is None:
            answer_from_cache(self.market, job_id, entry.ref_job_id, entry.output, entry.output_uri)
            return
        fn = self.market.jobs.functions.answerFromCache(
            job_id, entry.ref_job_id, entry.output, entry.output_uri
        )
        res = self.txm.send(
            self.market.deployment.job_market,
            bytes.fromhex(fn._encode_transaction_data()[2:]),
            key=f"cache-answer:{job_id}:{entry.ref_job_id}",  # a retry never sends twice
            purpose="cache-answer",
        )
        if not res.ok:
            if res.revert is not None:
                raise res.revert
            raise ChainError(f"cache answer for job {job_id} failed: {res.error}")

    def answer_job(self, job: NodeJob) -> int | None:
        """``answer`` for a job as the node's poller records it."""
        return self.answer(
            job.job_id,
            bytes.fromhex(job.model_id.removeprefix("0x")),
            bytes.fromhex(job.input_hash.removeprefix("0x")),
            int(job.max_fee),
        )

    def _ref_gone(self, ref_job_id: int) -> bool:
        return self.market.job(ref_job_id).status != JobStatus.SETTLED
