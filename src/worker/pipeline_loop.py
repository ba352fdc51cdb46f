"""The node service's side of pipelined jobs (docs/pipeline.md, "The node loop").

A node configured to take some segments of a model (``VERIMARKET_PIPELINE_SEGMENTS``, e.g.
``digits-mlp:0,1,2`` or ``digits-mlp:1@200000000000000``) follows PipelineJobs, and for every
pipelined job of that model, for each of its segments:

1. *seen*: recorded in the node store as soon as the submit event is read;
2. claims it (with the segment bond) once the segment's fee is at least the node's price and
   its input can be fetched: the job input for segment 0, the previous segment's committed
   blob otherwise (an upstream node that withholds its blob cannot make us stall);
3. runs it from that input, writes its own blob and commits both hashes;
4. answers a challenge of its segment with an ezkl proof, and finalizes the job once its
   challenge window has passed (nodes are paid only then).

Every transaction goes through the node's TxManager (one nonce sequence with the node's other
transactions) with an idempotency key per (action, job, segment), so nothing is sent twice,
across restarts too; the state of each segment is a row of ``node_pipeline_segments`` in the
node store, and the read position a cursor beside the poller's.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_utils.crypto import keccak
from sqlalchemy import Enum, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from market.blobs import BlobError, BlobHashMismatch, BlobStore
from market.chain.events import LogReader, topic_of
from market.chain.market import Market
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentStatus
from market.chain.txmanager import TxManager
from market.chain.types import ZERO_ADDRESS
from market.errors import ChainError, ConfigError, ContractRevert
from worker.pipeline import PipelineError, SegmentRunner
from worker.store import NodeBase, NodeStore

log = logging.getLogger(__name__)

CURSOR = "pipeline"


class SegState(enum.StrEnum):
    SEEN = "seen"  # a segment we take: not claimed yet
    CLAIMED = "claimed"  # ours on chain: run it once its input is committed
    COMMITTED = "committed"  # committed: answer challenges, finalize
    DONE = "done"  # job finalized (terminal)
    LOST = "lost"  # another node claimed it, or the job ended first (terminal)
    REFUSED = "refused"  # fee under our price (terminal)
    FAILED = "failed"  # its input did not check out: not committed (terminal, with reason)


OPEN_STATES = (SegState.SEEN, SegState.CLAIMED, SegState.COMMITTED)


class PipelineSegmentRow(NodeBase):
    """One segment of one pipelined job that this node takes."""

    __tablename__ = "node_pipeline_segments"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model_id: Mapped[str] = mapped_column(String(66))
    state: Mapped[SegState] = mapped_column(
        Enum(SegState, native_enum=False, length=16), index=True
    )
    output_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)


@dataclass(frozen=True)
class SegmentOffer:
    """Which segments of one model a node takes, and its least fee per segment (None: the
    node's on-chain price for the model)."""

    model: str
    segments: tuple[int, ...] | None  # None: all
    min_fee: int | None = None


def parse_segments(spec: str) -> list[SegmentOffer]:
    """``MODEL:SEGS[@WEI]`` entries separated by ``;`` (SEGS: ``all`` or indices ``0,1,2``)."""
    offers = []
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        model, sep, rest = entry.partition(":")
        if not sep or not model.strip() or not rest.strip():
            raise ConfigError(f"pipeline segments {entry!r}: expected MODEL:SEGMENTS[@WEI]")
        segs_text, at, fee_text = rest.partition("@")
        fee = None
        if at:
            try:
                fee = int(fee_text)
            except ValueError:
                raise ConfigError(
                    f"pipeline segments {entry!r}: price {fee_text!r} is not wei"
                ) from None
            if fee < 0:
                raise ConfigError(f"pipeline segments {entry!r}: negative price")
        segs: tuple[int, ...] | None = None
        if segs_text.strip() != "all":
            try:
                segs = tuple(sorted({int(s) for s in segs_text.split(",")}))
            except ValueError:
                raise ConfigError(
                    f"pipeline segments {entry!r}: {segs_text!r} is not 0,1,2 / all"
                ) from None
            if not segs or segs[0] < 0:
                raise ConfigError(f"pipeline segments {entry!r}: segment indices are >= 0")
        offers.append(SegmentOffer(model.strip(), segs, fee))
    return offers


class BlobSource:
    """Blobs by name: the node's store first, then the market's blob URL (checked by hash
    and kept locally)."""

    def __init__(self, store: BlobStore, base_url: str = "") -> None:
        self.store = store
        self.base_url = base_url

    def get(self, name: str) -> bytes | None:
        try:
            return self.store.get(name)
        except BlobHashMismatch:  # corrupted here: drop it, fetch it again
            self.store.path(name).unlink(missing_ok=True)
        except BlobError:
            pass
        if not self.base_url.startswith(("http://", "https://")):
            return None
        try:
            r = httpx.get(self.base_url + name, timeout=10)
        except httpx.HTTPError:
            return None
        if r.status_code != 200 or "0x" + keccak(r.content).hex() != name.lower():
            return None
        self.store.put(r.content)
        return r.content


@dataclass
class ServedPipeline:
    model_id: bytes
    runner: SegmentRunner
    segments: tuple[int, ...] | None
    min_fee: int

    def takes(self, index: int) -> bool:
        return self.segments is None or index in self.segments


class PipelineLoop:
    """Follows PipelineJobs for the models in ``served`` and does this node's segments."""

    def __init__(
        self,
        market: Market,
        txm: TxManager,
        store: NodeStore,
        served: list[ServedPipeline],
        blobs: BlobSource,
        now: Callable[[], int] | None = None,
    ) -> None:
        if market.deployment.pipeline_jobs == ZERO_ADDRESS:
            raise ChainError("this deployment has no PipelineJobs contract")
        self.market = market
        self.txm = txm
        self.store = store
        self.served = {s.model_id: s for s in served}
        self.blobs = blobs
        self.pipeline = Pipeline(market.client, market.deployment)
        self.address = market.client.address
        self._now = now or (lambda: int(market.client.now()))
        PipelineSegmentRow.__table__.create(store.engine, checkfirst=True)  # type: ignore[attr-defined]
        self._reader = LogReader(
            market.client,
            {"PipelineJobs": market.deployment.pipeline_jobs},
            topics=[topic_of("PipelineJobs", "PipelineJobSubmitted")],
        )
        self._bond: int | None = None

    # ------------------------------------------------------------------ store
    def rows(self, states: tuple[SegState, ...] = OPEN_STATES) -> list[PipelineSegmentRow]:
        with self.store.sessions() as s:
            return list(
                s.scalars(
                    select(PipelineSegmentRow)
                    .where(PipelineSegmentRow.state.in_(states))
                    .order_by(PipelineSegmentRow.job_id, PipelineSegmentRow.index)
                )
            )

    def _set(self, job_id: int, index: int, state: SegState, **values: Any) -> None:
        with self.store.sessions.begin() as s:
            row = s.get(PipelineSegmentRow, (job_id, index))
            if row is None:
                raise ChainError(f"no pipeline row for job {job_id} segment {index}")
            row.state = state
            for k, v in values.items():
                setattr(row, k, v)

    # ------------------------------------------------------------------ txs
    def _send(self, fn: Any, key: str, value: int = 0) -> None:
        res = self.txm.send(
            self.market.deployment.pipeline_jobs,
            bytes.fromhex(fn._encode_transaction_data()[2:]),
            value=value,
            key=f"pipeline-{key}",
            purpose="pipeline",
        )
        if not res.ok:
            if res.revert is not None:
                raise res.revert
            raise ChainError(f"pipeline {key} failed: {res.error}")

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        """One round: read new jobs, then move every open segment as far as it can go.
        Returns how many segments moved (0: the caller sleeps its interval)."""
        self._scan()
        moved = 0
        for row in self.rows():
            try:
                moved += self._advance(row)
            except (ChainError, PipelineError, BlobError) as exc:  # retried next round
                log.info("pipeline job %s segment %s: %s", row.job_id, row.index, exc)
        return moved

    def _scan(self) -> None:
        start = self.market.deployment.start_block
        frm = self.store.cursor(CURSOR, start - 1) + 1
        head = self.market.client.block_number()
        if frm > head:
            return
        new = []
        for ev in self._reader.fetch(frm, head):
            if ev.name != "PipelineJobSubmitted":
                continue
            a = ev.args
            served = self.served.get(bytes(a["modelId"]))
            if served is None:
                continue
            if a["input"]:  # inline input: keep it as a blob (checked against its hash)
                try:
                    self.blobs.store.put(bytes(a["input"]), "0x" + bytes(a["inputHash"]).hex())
                except BlobError as exc:
                    log.warning("pipeline job %s: inline input refused: %s", a["jobId"], exc)
            for i in range(int(a["segmentCount"])):
                if served.takes(i):
                    new.append((int(a["jobId"]), i, "0x" + bytes(a["modelId"]).hex()))
        with self.store.sessions.begin() as s:
            for job_id, i, model in new:
                if s.get(PipelineSegmentRow, (job_id, i)) is None:
                    s.add(PipelineSegmentRow(job_id=job_id, index=i, model_id=model, state="seen"))
            self.store.set_cursor(s, CURSOR, head)

    def _input_blob(self, job_id: int, index: int) -> bytes | None:
        """The bytes segment ``index`` starts from, once committed and fetchable."""
        if index == 0:
            name = "0x" + self.pipeline.job(job_id).input_hash.hex()
        else:
            prev = self.pipeline.segment(job_id, index - 1)
            if prev.status in (SegmentStatus.OPEN, SegmentStatus.CLAIMED):
                return None
            name = "0x" + prev.output_hash.hex()
        return self.blobs.get(name)

    def _advance(self, row: PipelineSegmentRow) -> int:
        job_id, i = row.job_id, row.index
        job = self.pipeline.job(job_id)
        seg = self.pipeline.segment(job_id, i)
        mine = seg.node.lower() == self.address.lower()
        if job.status == PipelineStatus.FINALIZED:
            self._set(job_id, i, SegState.DONE if mine else SegState.LOST)
            return 1
        if row.state == SegState.SEEN:
            if mine:  # claimed before a restart
                self._set(job_id, i, SegState.CLAIMED)
                return 1
            if job.status != PipelineStatus.ACTIVE or seg.status != SegmentStatus.OPEN:
                self._set(job_id, i, SegState.LOST)
                return 1
            if self._now() > job.step_deadline:  # an earlier segment stalled: it cannot go on
                self._set(job_id, i, SegState.LOST, error="the job stalled before this segment")
                return 1
            served = self.served[bytes.fromhex(row.model_id[2:])]
            if seg.fee < served.min_fee:
                self._set(job_id, i, SegState.REFUSED, error=f"fee {seg.fee} < {served.min_fee}")
                return 1
            if self._input_blob(job_id, i) is None:
                return 0  # policy: claim only what we can start
            if self._bond is None:
                self._bond = self.pipeline.segment_bond()
            fn = self.pipeline.contract.functions.claimSegment(job_id, i)
            try:
                self._send(fn, f"claim:{job_id}:{i}", value=self._bond)
            except ContractRevert as exc:  # another node was first: not ours
                self._set(job_id, i, SegState.LOST, error=str(exc))
                return 1
            self._set(job_id, i, SegState.CLAIMED)
            log.info("pipeline job %s: claimed segment %s", job_id, i)
            return 1 + self._run(job_id, i)  # its input is there: run it now
        if row.state == SegState.CLAIMED:
            if not mine or job.status != PipelineStatus.ACTIVE:
                self._set(job_id, i, SegState.LOST, error=f"job {job.status.name}")
                return 1
            if seg.status != SegmentStatus.CLAIMED:  # committed before a restart
                self._set(job_id, i, SegState.COMMITTED, output_hash="0x" + seg.output_hash.hex())
                return 1
            return self._run(job_id, i)
        # COMMITTED: answer a challenge, finalize when due
        if seg.status == SegmentStatus.CHALLENGED:
            return self._prove(job_id, i)
        if (
            job.status in (PipelineStatus.COMPLETED, PipelineStatus.STALLED)
            and job.open_challenges == 0
            and self._now() > job.ended_at + self.pipeline.challenge_window()
        ):
            fn = self.pipeline.contract.functions.finalize(job_id)
            try:
                self._send(fn, f"finalize:{job_id}")
            except ContractRevert as exc:  # another node finalized it first
                if self.pipeline.job(job_id).status != PipelineStatus.FINALIZED:
                    raise ChainError(f"finalize refused: {exc}") from exc
            self._set(job_id, i, SegState.DONE)
            return 1
        return 0

    def _run(self, job_id: int, i: int) -> int:
        data = self._input_blob(job_id, i)
        if data is None:
            return 0  # previous segment not committed (or its blob not fetchable) yet
        job = self.pipeline.job(job_id)
        if i == 0:
            want_hash, want_boundary = job.input_hash, job.input_boundary_hash
        else:
            prev = self.pipeline.segment(job_id, i - 1)
            want_hash, want_boundary = prev.output_hash, prev.output_boundary_hash
        runner = self.served[job.model_id].runner
        try:
            out = runner.run(i, data)
        except (PipelineError, ValueError) as exc:
            self._set(job_id, i, SegState.FAILED, error=f"input refused: {exc}")
            log.warning("pipeline job %s segment %s: input refused: %s", job_id, i, exc)
            return 1
        if out.input_hash != want_hash or out.input_boundary_hash != want_boundary:
            reason = "input blob or its shadow is not what the previous segment committed"
            self._set(job_id, i, SegState.FAILED, error=reason)
            log.warning("pipeline job %s segment %s: %s", job_id, i, reason)
            return 1
        self.blobs.store.put(out.output)  # before the commit: the next node fetches it
        fn = self.pipeline.contract.functions.commitSegment(job_id, i, out.commit().as_tuple())
        self._send(fn, f"commit:{job_id}:{i}")
        self._set(job_id, i, SegState.COMMITTED, output_hash="0x" + out.output_hash.hex())
        log.info("pipeline job %s: committed segment %s", job_id, i)
        return 1

    def _prove(self, job_id: int, i: int) -> int:
        data = self._input_blob(job_id, i)
        if data is None:
            raise ChainError("the input blob of a challenged segment is not available")
        job = self.pipeline.job(job_id)
        proof = self.served[job.model_id].runner.prove(i, data)
        fn = self.pipeline.contract.functions.proveSegment(job_id, i, proof.proof)
        self._send(fn, f"prove:{job_id}:{i}")
        log.info("pipeline job %s: proved challenged segment %s", job_id, i)
        return 1


def pipeline_loop(
    market: Market,
    txm: TxManager,
    store: NodeStore,
    spec: str,
    artifacts: Path,
    blobs: BlobSource,
) -> PipelineLoop | None:
    """The node's pipelined-job loop for ``spec`` (``VERIMARKET_PIPELINE_SEGMENTS``), or None
    when nothing is configured. Each model's circuits are built (or read from the prover's
    cache), and its pipelined model id is the registered zk variant whose verifying keys are
    those circuits'; the node must have priced that id (NodeRegistry)."""
    offers = parse_segments(spec)
    if not offers:
        return None
    if market.deployment.pipeline_jobs == ZERO_ADDRESS:
        raise ConfigError("pipeline segments are configured but the deployment has no PipelineJobs")
    from market.zk_models import find_zk_models
    from prover import ProverConfig, build_model
    from worker.models.manifest import ModelManifest

    served = []
    for offer in offers:
        model_dir = artifacts / offer.model
        manifest = ModelManifest.read(model_dir)
        circuits = build_model(model_dir, ProverConfig.from_env())
        runner = SegmentRunner(model_dir, circuits, device="cpu")
        if offer.segments is not None and offer.segments[-1] >= runner.segment_count:
            raise ConfigError(
                f"{offer.model} has segments 0..{runner.segment_count - 1}, not {offer.segments}"
            )
        priced = [
            (m.model_id, p)
            for m in find_zk_models(market, manifest, circuits)
            if (p := market.price_of(market.client.address, m.model_id)) is not None
        ]
        if not priced:
            raise ConfigError(
                f"{offer.model}: no registered zk variant with this node's circuits is priced "
                "by this node (`verimarket node register --model ... --price WEI`)"
            )
        for model_id, price in priced:
            fee = price if offer.min_fee is None else offer.min_fee
            served.append(ServedPipeline(model_id, runner, offer.segments, fee))
            log.info(
                "serving pipelined segments %s of %s (0x%s)",
                offer.segments or "all",
                offer.model,
                model_id.hex(),
            )
    return PipelineLoop(market, txm, store, served, blobs)
