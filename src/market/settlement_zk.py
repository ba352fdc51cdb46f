"""The settlement service's part for zk jobs (docs/protocol.md, "Verification").

A zk job finalizes like any other once the market's window is over **and** its proofs are in
(``ZkVerification.canFinalize``: the required segments proven on chain, or an undisputed
Valid attestation past its dispute window): the settler asks the module before putting a zk
job in a ``finalizeMany`` batch, so an unproven job costs no gas. After the proof deadline
with the proofs still missing, it calls ``slashUnproven`` (one transaction per job; the
caller's share of the slash pays for it): the payer is refunded and compensated.

A settler whose key is an attester (``ZkVerification.setAttester``) also judges attested
jobs: it verifies the proofs the node published (:class:`OffChainVerifier`) and sends
``attest(jobId, valid)``; the job then finalizes after the dispute window without any proof
on chain, unless someone disputes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from market.blobs import BlobStore
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import Attestation, JobStatus
from market.errors import ChainError

if TYPE_CHECKING:
    from prover import ProverConfig

log = logging.getLogger(__name__)

#: chain seconds before a job whose slash was refused is looked at again
RETRY_S = 5


@dataclass
class OffChainVerifier:
    """An attester's check of an attested job (docs/protocol.md, "Off-chain verification"):
    the proofs the node published (``publishProof``: a blob of the proofs and its boundary
    hashes) verified with ezkl against the hashes committed on chain, for every required
    segment. The circuits are built locally from the registered artefacts and must have the
    registered vk hashes (``market.audit``). Returns None while there is nothing to judge."""

    market: Market
    artifacts: Path
    blobs: BlobStore | None = None
    blob_base_url: str = ""
    prover_config: ProverConfig | None = None
    recheck_s: float = 2.0
    _circuits: dict[bytes, Any] = field(default_factory=dict)
    _next: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, market: Market) -> OffChainVerifier:
        from market.config import get_settings

        s = get_settings()
        return cls(market, s.artifacts, BlobStore(s.blobs()), s.blob_base_url)

    def __call__(self, job_id: int) -> bool | None:
        if self._next.get(job_id, 0.0) > time.monotonic():
            return None
        self._next[job_id] = time.monotonic() + self.recheck_s
        from market.audit import _events_of

        events = _events_of(self.market, job_id)
        published = events.get("ProofPublished", [])
        committed = events.get("BoundaryHashesCommitted", [])
        if not published or not committed:
            return None
        hashes = [int(h) for h in committed[0].args["boundaryHashes"]]
        try:
            doc = json.loads(self._fetch(str(published[-1].args["uri"])))
            proofs = {int(k): bytes.fromhex(v[2:]) for k, v in doc["proofs"].items()}
        except (OSError, ValueError, KeyError, TypeError, httpx.HTTPError) as exc:
            log.warning("job %s: published proofs unreadable: %s", job_id, exc)
            return False
        circuits = self._circuits_of(self.market.job(job_id).model_id)
        if circuits is None:
            return None  # cannot judge this model here: leave it to another attester
        from prover import ProverError, proof_on_boundaries, verify_segment

        for seg in self.market.required_segments(job_id):
            if seg not in proofs:
                log.info("job %s: no published proof of segment %s", job_id, seg)
                return False
            bounds = (hashes[seg], hashes[seg + 1])
            try:
                segment = circuits.segments[seg]
                verify_segment(
                    segment,
                    proof_on_boundaries(segment, proofs[seg], *bounds),
                    input_hash=bounds[0],
                    output_hash=bounds[1],
                )
            except ProverError as exc:
                log.info("job %s: segment %s proof rejected: %s", job_id, seg, exc)
                return False
        return True

    def _fetch(self, uri: str) -> bytes:
        name = uri.removeprefix(self.blob_base_url)
        if self.blobs is not None and self.blob_base_url and name != uri and self.blobs.has(name):
            return self.blobs.get(name)
        from market.audit import _fetch

        return _fetch(uri)

    def _circuits_of(self, model_id: bytes) -> Any:
        if model_id not in self._circuits:
            from market.audit import _zk_variant
            from worker.models import MODEL_NAMES, load_model

            local = []
            for name in MODEL_NAMES:
                try:
                    local.append(load_model(self.artifacts, name))
                except Exception:  # noqa: BLE001 - not built here: try the others
                    continue
            found = _zk_variant(self.market, model_id, local, self.artifacts, self.prover_config)
            if isinstance(found, str):
                log.warning("cannot attest jobs of 0x%s: %s", model_id.hex(), found)
                self._circuits[model_id] = None
            else:
                self._circuits[model_id] = found[1]
        return self._circuits[model_id]


@dataclass
class ZkSettlement:
    market: Market
    txm: TxManager
    #: attesters only: judges an attested job's published proofs (None: not yet)
    verifier: Callable[[int], bool | None] | None = None
    slashed: int = 0
    attested: int = 0
    #: job id -> proof deadline last read from the module (it moves on disputes)
    _deadline: dict[int, int] = field(default_factory=dict)
    _retry_at: dict[int, float] = field(default_factory=dict)
    _judged: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.verifier is None:
            try:
                attester = self.market.is_attester(self.market.client.address)
            except ChainError as exc:  # an RPC fault at start: settle now, attest never
                log.warning("could not learn whether this key is an attester: %s", exc)
                attester = False
            if attester:
                self.verifier = OffChainVerifier.from_settings(self.market)

    def can_finalize(self, job_id: int) -> bool:
        try:
            return bool(self.market.client.call(self.market.zk.functions.canFinalize(job_id)))
        except ChainError as exc:
            log.warning("canFinalize(%s) failed: %s", job_id, exc)
            return False

    def slash_due(self, jobs: dict[int, tuple[JobStatus, int]], now: float) -> int:
        """Slash zk jobs (``jobs``: id -> (status, mode), zk ones) whose proof deadline has
        passed without the proofs. Returns how many slash transactions succeeded."""
        done = 0
        for job_id, (status, _mode) in sorted(jobs.items()):
            if status not in (JobStatus.COMMITTED, JobStatus.DISPUTED):
                continue
            if self._retry_at.get(job_id, 0) > now:
                continue
            deadline = self._deadline.get(job_id)
            if deadline is None or now > deadline:
                deadline = self.market.zk_job(job_id).proof_deadline
                self._deadline[job_id] = deadline
            if now <= deadline or self.can_finalize(job_id):
                continue
            fn = self.market.zk.functions.slashUnproven(job_id)
            res = self.txm.send(
                self.market.deployment.zk_verification,
                bytes.fromhex(fn._encode_transaction_data()[2:]),
                purpose="slash",
                key=f"slash:{job_id}:{time.time_ns()}",
            )
            if res.ok:
                done += 1
                self.slashed += 1
                log.info("job %s slashed: proofs missing after the deadline", job_id)
            else:
                self._retry_at[job_id] = now + RETRY_S
                log.warning("slashUnproven(%s) refused: %s", job_id, res.error)
        return done

    def attest_due(self, jobs: dict[int, tuple[JobStatus, int]], now: float) -> int:
        """As an attester: judge the published proofs of attested jobs not judged yet."""
        if self.verifier is None:
            return 0
        done = 0
        for job_id, (status, _mode) in sorted(jobs.items()):
            if status is not JobStatus.COMMITTED or job_id in self._judged:
                continue
            zk = self.market.zk_job(job_id)
            if not zk.attested or zk.attestation != Attestation.NONE or now > zk.proof_deadline:
                self._judged.add(job_id)
                continue
            verdict = self.verifier(job_id)
            if verdict is None:
                continue
            fn = self.market.zk.functions.attest(job_id, verdict)
            res = self.txm.send(
                self.market.deployment.zk_verification,
                bytes.fromhex(fn._encode_transaction_data()[2:]),
                purpose="attest",
                key=f"attest:{job_id}",
            )
            self._judged.add(job_id)
            if res.ok:
                done += 1
                self.attested += 1
                log.info("job %s attested %s", job_id, "valid" if verdict else "INVALID")
            else:
                log.warning("attest(%s) refused: %s", job_id, res.error)
        return done

    def forget(self, job_id: int) -> None:
        self._judged.discard(job_id)
        self._deadline.pop(job_id, None)
        self._retry_at.pop(job_id, None)
