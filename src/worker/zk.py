"""The node's zk path: zk-spot / zk-full jobs from claim to proof (docs/worker.md, "zk jobs").

1. The poller accepts a zk job only when this node serves the model's zk variant and the
   boundary hash of the input (as the circuit reads it) equals the job's on-chain
   ``inputBoundaryHash``; it records the job here (:meth:`ZkWork.accept`).
2. The inference task runs the circuits instead of torch (:meth:`ZkWork.infer`): the result
   is the circuit's output at the model's scale, and the boundary hashes are stored.
3. :class:`ZkDriver` (a thread of the node process) commits zk results one
   ``commitZkResult`` per transaction, pins the challenge once the seed block exists, queues
   one proof task per required segment on the ``prove`` Celery queue, and posts each proof
   with ``submitProof`` as soon as it is ready.
4. The proof task (:meth:`ZkWork.prove`) re-runs the circuits from the stored input, proves
   the segment, checks the proof against the committed hashes, and stores it.

Everything is in the node store, so a restart loses nothing: proofs not yet made are queued
again, proofs made are posted, and a proof transaction is keyed so that it is never sent
twice.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Boolean, Enum, Float, Integer, LargeBinary, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from market.blobs import BlobStore
from market.canonical import encode_quantized
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import JobStatus, VerificationMode
from market.errors import ChainError, ContractRevert
from worker.chainwork import ChainWork
from worker.committer import COMMIT
from worker.store import NodeBase, NodeJob, NodeJobState, NodeStore

if TYPE_CHECKING:
    from prover import ModelCircuits, ModelRun

log = logging.getLogger(__name__)
S = NodeJobState
MAX_PROVE_ATTEMPTS = 3


class ZkStage(enum.StrEnum):
    OPEN = "open"  # accepted; result not yet committed
    COMMITTED = "committed"  # boundary hashes on chain; waiting for the challenge
    PROVING = "proving"  # required segments known, proofs queued / being posted
    DONE = "done"  # every required proof accepted on chain (terminal)
    FAILED = "failed"  # a proof could not be made or was rejected, or the commit failed


class ProofState(enum.StrEnum):
    PENDING = "pending"  # queued on the prove queue
    PROVING = "proving"  # a prove worker took it
    PROVED = "proved"  # proof stored, checked against the committed hashes
    PUBLISHED = "published"  # attested job: proof in a blob, publishProof sent; posted on
    #                          chain only if an Invalid verdict or a dispute requires it
    SUBMITTED = "submitted"  # accepted on chain (terminal)
    FAILED = "failed"  # cannot be proved / rejected (terminal)


class NodeZkJob(NodeBase):
    """A zk job this node accepted: its mode, input hash, and committed boundary hashes."""

    __tablename__ = "node_zk_jobs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    mode: Mapped[int] = mapped_column(Integer)
    input_boundary_hash: Mapped[str] = mapped_column(String(80))
    #: JSON list of decimal strings (k + 1 hashes), set by the inference task
    boundary_hashes: Mapped[str | None] = mapped_column(Text, nullable=True)
    stage: Mapped[ZkStage] = mapped_column(
        Enum(ZkStage, native_enum=False, length=16), index=True, default=ZkStage.OPEN
    )
    proof_deadline: Mapped[int] = mapped_column(Integer, default=0)
    attested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)

    def hashes(self) -> list[int]:
        return [int(h) for h in json.loads(self.boundary_hashes or "[]")]


class NodeZkProof(NodeBase):
    """One segment proof a zk job needs."""

    __tablename__ = "node_zk_proofs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[ProofState] = mapped_column(
        Enum(ProofState, native_enum=False, length=16), index=True
    )
    proof: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    prove_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)


def create_tables(store: NodeStore) -> None:
    NodeBase.metadata.create_all(
        store.engine,
        tables=[NodeZkJob.__table__, NodeZkProof.__table__],  # type: ignore[list-item]
    )


def zk_output(run: ModelRun, scale: int) -> bytes:
    """A zk job's canonical output: the circuit's output at the model's output scale, as a
    flat vector (docs/protocol.md, "The output link")."""
    out = run.canonical_output(scale)
    return encode_quantized(np.array(out.values, dtype=np.int64), scale)


# --------------------------------------------------------------------------- per process


@dataclass
class ZkWork:
    """The zk half of a worker or node process: circuits loaded once, per model name.

    ``circuits_for(name)`` builds (first time: tens of seconds) or loads from the prover's
    cache (milliseconds) the model's circuits; every party must use the same SRS files.
    """

    store: NodeStore
    artifacts: Path
    decode: Callable[[str, bytes], np.ndarray[Any, Any]]
    output_scale: Callable[[str], int]
    prover_cache: Path | None = None
    _circuits: dict[str, ModelCircuits] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        create_tables(self.store)

    def circuits_for(self, name: str) -> ModelCircuits:
        from prover import ProverConfig, build_model

        with self._lock:
            if name not in self._circuits:
                config = ProverConfig.from_env()
                if self.prover_cache is not None:
                    config = ProverConfig(cache_dir=self.prover_cache, srs=config.srs)
                self._circuits[name] = build_model(self.artifacts / name, config)
            return self._circuits[name]

    # ------------------------------------------------------------------ poller
    def accept(
        self, job_id: int, model_name: str, mode: int, data: bytes, market: Market
    ) -> str | None:
        """Check a zk job before claiming it and record it; returns a reason to refuse."""
        from prover import ProverError, run_segment

        zk = market.zk_job(job_id)
        try:
            circuits = self.circuits_for(model_name)
            first = run_segment(circuits.segments[0], self.decode(model_name, data))
        except (ProverError, ValueError) as exc:
            return f"input cannot be run by the circuits: {exc}"
        if first.input_hash != zk.input_boundary_hash:
            return "the job's inputBoundaryHash is not the boundary hash of its input"
        if zk.segment_count != len(circuits.segments):
            return f"the model has {zk.segment_count} segments on chain, the circuits differ"
        with self.store.sessions.begin() as s:
            if s.get(NodeZkJob, job_id) is None:
                s.add(
                    NodeZkJob(
                        job_id=job_id,
                        mode=mode,
                        input_boundary_hash=str(zk.input_boundary_hash),
                        attested=zk.attested,
                        stage=ZkStage.OPEN,
                    )
                )
        return None

    def is_zk(self, job_id: int) -> bool:
        with self.store.sessions() as s:
            return s.get(NodeZkJob, job_id) is not None

    def get(self, job_id: int) -> NodeZkJob | None:
        with self.store.sessions() as s:
            return s.get(NodeZkJob, job_id)

    # ------------------------------------------------------------------ inference task
    def run(self, name: str, data: bytes) -> ModelRun:
        """The circuits' run on a job input (a cheating node would change this)."""
        from prover import run_model

        return run_model(self.circuits_for(name), self.decode(name, data))

    def infer(self, job: NodeJob) -> bytes:
        """Run a zk job: store its boundary hashes, return its canonical output bytes (the
        circuit's output at the model's scale, docs/protocol.md "The output link")."""
        run = self.run(job.model_name, job.input)
        output = zk_output(run, self.output_scale(job.model_name))
        with self.store.sessions.begin() as s:
            s.execute(
                update(NodeZkJob)
                .where(NodeZkJob.job_id == job.job_id)
                .values(boundary_hashes=json.dumps([str(h) for h in run.boundary_hashes]))
            )
        return output

    # ------------------------------------------------------------------ prove task
    def prove(self, job_id: int, segment: int) -> str:
        """Prove one segment of a committed job and store the proof (idempotent)."""
        from prover import ProverError, prove_segment, verify_segment

        with self.store.sessions.begin() as s:
            res = s.execute(
                update(NodeZkProof)
                .where(
                    NodeZkProof.job_id == job_id,
                    NodeZkProof.segment == segment,
                    NodeZkProof.state.in_([ProofState.PENDING, ProofState.PROVING]),
                    NodeZkProof.attempts < MAX_PROVE_ATTEMPTS,
                )
                .values(state=ProofState.PROVING, attempts=NodeZkProof.attempts + 1)
            )
            taken = res.rowcount == 1  # type: ignore[attr-defined]
        if not taken:
            self._give_up_if_exhausted(job_id, segment)
            return "not-taken"
        job, zk = self.store.get(job_id), self.get(job_id)
        if job is None or zk is None:
            return "unknown-job"
        hashes = zk.hashes()
        started = time.perf_counter()
        try:
            circuits = self.circuits_for(job.model_name)
            run = self.run(job.model_name, job.input)
            proof = prove_segment(circuits.segments[segment], run.segment_inputs[segment])
            verify_segment(
                circuits.segments[segment],
                proof,
                input_hash=hashes[segment],
                output_hash=hashes[segment + 1],
            )
        except ProverError as exc:  # a proof of the committed hashes cannot be made
            self._set_proof(job_id, segment, ProofState.FAILED, error=str(exc))
            log.error("job %s segment %s: no valid proof: %s", job_id, segment, exc)
            return "failed"
        except Exception as exc:  # transient: the prove task retries, the sweeper re-queues
            self._set_proof(job_id, segment, ProofState.PENDING, error=str(exc))
            log.warning("job %s segment %s proof attempt failed: %s", job_id, segment, exc)
            raise
        self._set_proof(
            job_id,
            segment,
            ProofState.PROVED,
            proof=proof.proof,
            prove_seconds=time.perf_counter() - started,
            error=None,
        )
        return "proved"

    def _give_up_if_exhausted(self, job_id: int, segment: int) -> None:
        with self.store.sessions.begin() as s:
            s.execute(
                update(NodeZkProof)
                .where(
                    NodeZkProof.job_id == job_id,
                    NodeZkProof.segment == segment,
                    NodeZkProof.state.in_([ProofState.PENDING, ProofState.PROVING]),
                    NodeZkProof.attempts >= MAX_PROVE_ATTEMPTS,
                )
                .values(state=ProofState.FAILED, error="out of proof attempts")
            )

    def _set_proof(self, job_id: int, segment: int, state: ProofState, **values: Any) -> None:
        with self.store.sessions.begin() as s:
            s.execute(
                update(NodeZkProof)
                .where(NodeZkProof.job_id == job_id, NodeZkProof.segment == segment)
                .values(state=state, updated_at=time.time(), **values)
            )


# --------------------------------------------------------------------------- node thread


class ZkDriver:
    """Commit zk results, pin challenges, queue proofs, post them (node process thread)."""

    def __init__(
        self,
        market: Market,
        txm: TxManager,
        store: NodeStore,
        enqueue_prove: Callable[[int, int], None],
        lease_s: float = 300.0,
        blobs: BlobStore | None = None,
        blob_base_url: str = "",
    ) -> None:
        """With ``blobs``, the proofs of attested jobs are published as a blob (URI
        ``blob_base_url`` + name) for the attester instead of being posted on chain."""
        self.blobs = blobs
        self.blob_base_url = blob_base_url
        self.market = market
        self.txm = txm
        self.store = store
        self.enqueue_prove = enqueue_prove
        self.lease_s = lease_s
        create_tables(store)
        self.commits = ChainWork(
            store,
            txm,
            market.deployment.job_market,
            COMMIT,
            self._commit_calldata,
            confirmed=lambda ids: store.stamp(ids, committed_at=time.time()),
            reconcile=self._reconcile,
        )

    # ------------------------------------------------------------------ queries
    def zk_ids(self, ids: list[int]) -> set[int]:
        """Which of ``ids`` are zk jobs (the plain committer leaves those to us)."""
        if not ids:
            return set()
        with self.store.sessions() as s:
            q = select(NodeZkJob.job_id).where(NodeZkJob.job_id.in_(ids))
            return {int(i) for i in s.scalars(q)}

    def _jobs(self, stage: ZkStage) -> list[tuple[NodeZkJob, NodeJob]]:
        with self.store.sessions() as s:
            q = (
                select(NodeZkJob, NodeJob)
                .join(NodeJob, NodeJob.job_id == NodeZkJob.job_id)
                .where(NodeZkJob.stage == stage)
                .order_by(NodeZkJob.job_id)
                .limit(256)
            )
            return [(row[0], row[1]) for row in s.execute(q).all()]

    def _proofs(self, *states: ProofState) -> list[NodeZkProof]:
        with self.store.sessions() as s:
            q = select(NodeZkProof).where(NodeZkProof.state.in_(states))
            return list(s.scalars(q.order_by(NodeZkProof.job_id, NodeZkProof.segment)))

    def _stage(self, job_id: int, stage: ZkStage, **values: Any) -> None:
        with self.store.sessions.begin() as s:
            s.execute(
                update(NodeZkJob)
                .where(NodeZkJob.job_id == job_id)
                .values(stage=stage, updated_at=time.time(), **values)
            )

    # ------------------------------------------------------------------ commit
    def _commit_calldata(self, jobs: list[NodeJob]) -> bytes:
        (job,) = jobs  # one zk commit per transaction (commitZkResult takes one job)
        zk = self._zk(job.job_id)
        fn = self.market.jobs.functions.commitZkResult(
            job.job_id,
            bytes.fromhex((job.result_hash or "")[2:]),
            job.output or b"",
            job.output_uri,
            zk.hashes(),
        )
        return bytes.fromhex(fn._encode_transaction_data()[2:])

    def _zk(self, job_id: int) -> NodeZkJob:
        with self.store.sessions() as s:
            zk = s.get(NodeZkJob, job_id)
        if zk is None:
            raise KeyError(f"job {job_id} is not a zk job")
        return zk

    def _reconcile(self, job_id: int, revert: ContractRevert) -> NodeJobState | None:
        if revert.name != "InvalidJobStatus":
            return None
        job, onchain = self.store.get(job_id), self.market.job(job_id)
        ours = job is not None and job.result_hash == "0x" + onchain.result_hash.hex()
        return S.COMMITTED if ours and onchain.node == self.market.client.address else None

    def commit_ready(self) -> int:
        moved = self.commits.resolve()
        ready = self.store.ids_in(S.READY, limit=10_000)
        for job_id in sorted(self.zk_ids(ready))[:16]:
            tx_id = self.commits.start([job_id])
            if tx_id is not None:
                self.commits.drive(tx_id)
        return moved + self.commits.resolve()

    # ------------------------------------------------------------------ challenge
    def queue_proofs(self) -> int:
        """For committed zk jobs: learn the required segments (pinning a zk-spot challenge
        once its seed block exists) and queue their proofs."""
        moved = 0
        for _zk, job in self._jobs(ZkStage.OPEN):
            if job.state is S.COMMITTED:
                self._stage(job.job_id, ZkStage.COMMITTED)
            elif job.state in (S.FAILED, S.LOST, S.REJECTED):
                self._stage(job.job_id, ZkStage.FAILED, error=job.error)
        head = None
        for _zk, job in self._jobs(ZkStage.COMMITTED):
            onchain = self.market.zk_job(job.job_id)
            required = onchain.required_segments
            if onchain.full:
                required = list(range(onchain.segment_count))
            elif not required:
                head = self.market.client.block_number() if head is None else head
                if head <= onchain.seed_block:
                    continue  # the seed block's hash does not exist yet
                required = self._challenge(job.job_id)
                if not required:
                    continue
            with self.store.sessions.begin() as s:
                for seg in required:
                    if s.get(NodeZkProof, (job.job_id, seg)) is None:
                        s.add(NodeZkProof(job_id=job.job_id, segment=seg, state=ProofState.PENDING))
                s.execute(
                    update(NodeZkJob)
                    .where(NodeZkJob.job_id == job.job_id)
                    .values(stage=ZkStage.PROVING, proof_deadline=onchain.proof_deadline)
                )
            for seg in required:
                self.enqueue_prove(job.job_id, seg)
            log.info("job %s: proving segment(s) %s", job.job_id, required)
            moved += 1
        return moved

    def _challenge(self, job_id: int) -> list[int]:
        data = self.market.zk.functions.challenge(job_id)._encode_transaction_data()
        try:
            res = self.txm.send(
                self.market.deployment.zk_verification,
                bytes.fromhex(data[2:]),
                purpose="challenge",
                key=f"challenge:{job_id}",
            )
        except (ChainError, OSError) as exc:
            log.warning("challenge of job %s not sent yet: %s", job_id, exc)
            return []
        if not res.ok and not (res.revert and res.revert.name == "ChallengeAlreadyDrawn"):
            log.warning("challenge of job %s failed: %s", job_id, res.error)
        return self.market.zk_job(job_id).required_segments

    # ------------------------------------------------------------------ proofs
    def publish_proved(self) -> int:
        """Attested jobs: once every required proof is made, store them as one blob and
        ``publishProof``; they go on chain only when the chain requires it (below)."""
        if self.blobs is None:
            return 0
        moved = 0
        for zk, _job in self._jobs(ZkStage.PROVING):
            if not zk.attested:
                continue
            with self.store.sessions() as s:
                proofs = list(s.scalars(select(NodeZkProof).where(NodeZkProof.job_id == zk.job_id)))
            if not proofs or any(p.state is not ProofState.PROVED for p in proofs):
                continue
            if self.market.zk_job(zk.job_id).on_chain_required:
                continue  # a verdict or dispute came first: straight on chain
            hashes = zk.hashes()
            blob = {
                "job_id": zk.job_id,
                "boundary_hashes": [str(h) for h in hashes],
                "proofs": {str(p.segment): "0x" + (p.proof or b"").hex() for p in proofs},
            }
            uri = self.blob_base_url + self.blobs.put(json.dumps(blob, sort_keys=True).encode())
            fn = self.market.zk.functions.publishProof(zk.job_id, uri)
            try:
                res = self.txm.send(
                    self.market.deployment.zk_verification,
                    bytes.fromhex(fn._encode_transaction_data()[2:]),
                    purpose="publish",
                    key=f"publish:{zk.job_id}",
                )
            except (ChainError, OSError) as exc:
                log.warning("proofs of job %s not published yet: %s", zk.job_id, exc)
                continue
            if not res.ok:
                log.warning("publishProof(%s) refused (%s): posting on chain", zk.job_id, res.error)
                continue
            for p in proofs:
                self._set(p, ProofState.PUBLISHED)
            moved += 1
        return moved

    def escalate_published(self) -> int:
        """Published proofs go on chain once the chain requires it (an Invalid verdict or
        a dispute); a published job that settled is done."""
        moved = 0
        for job_id in sorted({p.job_id for p in self._proofs(ProofState.PUBLISHED)}):
            status = self.market.job(job_id).status
            if status.terminal:  # settled on the attestation (or slashed: recorded as such)
                settled = status is JobStatus.SETTLED
                with self.store.sessions.begin() as s:
                    s.execute(
                        update(NodeZkProof)
                        .where(NodeZkProof.job_id == job_id)
                        .values(
                            state=ProofState.SUBMITTED if settled else ProofState.FAILED,
                            error=None if settled else f"job {status.name.lower()}",
                        )
                    )
                moved += 1
            elif self.market.zk_job(job_id).on_chain_required:
                log.info("job %s: proofs required on chain (verdict or dispute)", job_id)
                with self.store.sessions.begin() as s:
                    s.execute(
                        update(NodeZkProof)
                        .where(
                            NodeZkProof.job_id == job_id,
                            NodeZkProof.state == ProofState.PUBLISHED,
                        )
                        .values(state=ProofState.PROVED)
                    )
                moved += 1
        return moved

    def submit_proved(self) -> int:
        moved = 0
        for p in self._proofs(ProofState.PROVED):
            zk = self._zk(p.job_id)
            published_instead = zk.attested and self.blobs is not None
            if published_instead and not self.market.zk_job(p.job_id).on_chain_required:
                continue  # publish_proved's (or waiting for the job's other proofs)
            fn = self.market.zk.functions.submitProof(
                p.job_id, p.segment, p.proof or b"", zk.hashes()
            )
            try:
                res = self.txm.send(
                    self.market.deployment.zk_verification,
                    bytes.fromhex(fn._encode_transaction_data()[2:]),
                    purpose="proof",
                    key=f"proof:{p.job_id}:{p.segment}",
                )
            except (ChainError, OSError) as exc:
                log.warning("proof of job %s not sent yet: %s", p.job_id, exc)
                continue
            name = res.revert.name if res.revert else ""
            if res.ok or name == "SegmentAlreadyProven":
                self._set(p, ProofState.SUBMITTED, error=None)
                moved += 1
            else:
                self._set(p, ProofState.FAILED, error=res.error or name)
                log.error("proof of job %s segment %s refused: %s", p.job_id, p.segment, name)
        return moved + self._close_jobs()

    def _set(self, p: NodeZkProof, state: ProofState, **values: Any) -> None:
        with self.store.sessions.begin() as s:
            s.execute(
                update(NodeZkProof)
                .where(NodeZkProof.job_id == p.job_id, NodeZkProof.segment == p.segment)
                .values(state=state, updated_at=time.time(), **values)
            )

    def _close_jobs(self) -> int:
        moved = 0
        for zk, _job in self._jobs(ZkStage.PROVING):
            with self.store.sessions() as s:
                states = list(
                    s.scalars(select(NodeZkProof.state).where(NodeZkProof.job_id == zk.job_id))
                )
            if states and all(st is ProofState.SUBMITTED for st in states):
                self._stage(zk.job_id, ZkStage.DONE)
                moved += 1
            elif any(st is ProofState.FAILED for st in states):
                self._stage(zk.job_id, ZkStage.FAILED, error="a required proof failed")
                moved += 1
        return moved

    # ------------------------------------------------------------------ loop
    def step(self) -> int:
        return (
            self.commit_ready()
            + self.queue_proofs()
            + self.publish_proved()
            + self.escalate_published()
            + self.submit_proved()
        )

    def requeue(self, older_than: float | None = None) -> int:
        """Queue again proofs not made (after a restart: all; else those past the lease)."""
        cutoff = time.time() - (self.lease_s if older_than is None else older_than)
        again = [
            p for p in self._proofs(ProofState.PENDING, ProofState.PROVING) if p.updated_at < cutoff
        ]
        for p in again:
            self._set(p, p.state)  # touch, so it is not queued again at once
            self.enqueue_prove(p.job_id, p.segment)
        return len(again)

    def recover(self) -> None:
        self.commits.resolve()
        self.requeue(older_than=-1.0)


def zk_job_mode(mode: int) -> bool:
    return mode in (VerificationMode.ZK_SPOT, VerificationMode.ZK_FULL)


def serve_zk(
    market: Market,
    work: ZkWork,
    manifests: list[Any],
    price_of: Callable[[bytes], int | None],
) -> list[tuple[str, bytes, int]]:
    """The zk variants this node serves: (model name, zk model id, price) for every registered
    variant of one of ``manifests`` that the node has priced and whose verifying keys are
    those of the node's own circuits. Circuits are built (or loaded from the prover's cache)
    only for models with such a variant."""
    from market.zk_models import find_zk_models

    out = []
    for manifest in manifests:
        priced = {
            m.model_id: p
            for m in find_zk_models(market, manifest)
            if (p := price_of(m.model_id)) is not None
        }
        if not priced:
            continue
        circuits = work.circuits_for(manifest.name)
        for m in find_zk_models(market, manifest, circuits):
            if m.model_id in priced:
                out.append((manifest.name, m.model_id, priced[m.model_id]))
        if not out or out[-1][0] != manifest.name:
            log.warning(
                "%s: a zk variant is priced but its verifying keys are not this node's "
                "circuits (another SRS or prover version?); zk jobs for it are refused",
                manifest.name,
            )
    return out
