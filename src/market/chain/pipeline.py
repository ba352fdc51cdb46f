"""PipelineJobs: one model's segments run by different nodes (docs/pipeline.md).

The contract is self-contained (its own escrow and bonds); this module deploys it and wraps
it for one key. Values mirror ``IPipelineJobs.sol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from web3.logs import DISCARD
from web3.types import TxReceipt

from market.chain.client import ChainClient
from market.chain.types import ZERO_ADDRESS, Deployment
from market.errors import ChainError

#: BN254's scalar field order: boundary hashes are below it.
SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617
UINT96_MAX = 2**96 - 1


class PipelineStatus(IntEnum):
    """IPipelineJobs.JobStatus."""

    NONE = 0
    ACTIVE = 1
    COMPLETED = 2
    STALLED = 3
    FINALIZED = 4


class SegmentStatus(IntEnum):
    """IPipelineJobs.SegmentStatus."""

    OPEN = 0
    CLAIMED = 1
    COMMITTED = 2
    CHALLENGED = 3
    PROVEN = 4
    SLASHED = 5


@dataclass(frozen=True)
class PipelineParams:
    """Constructor parameters of PipelineJobs (wei and seconds)."""

    segment_bond: int = 10**16
    challenge_bond: int = 10**16
    segment_window: int = 600
    challenge_window: int = 600
    proof_window: int = 600


@dataclass(frozen=True)
class SegmentCommit:
    """What the node of one segment commits: where it started and what it produced."""

    input_hash: bytes
    input_boundary_hash: int
    output_hash: bytes
    output_boundary_hash: int

    def as_tuple(self) -> tuple[bytes, int, bytes, int]:
        return (
            self.input_hash,
            self.input_boundary_hash,
            self.output_hash,
            self.output_boundary_hash,
        )


@dataclass(frozen=True)
class PipelineJob:
    job_id: int
    payer: str
    segment_count: int
    committed: int
    faulty_from: int
    open_challenges: int
    status: PipelineStatus
    step_deadline: int
    ended_at: int
    escrow: int
    model_id: bytes
    input_hash: bytes
    input_boundary_hash: int

    @classmethod
    def from_tuple(cls, job_id: int, t: Sequence[Any]) -> PipelineJob:
        return cls(
            job_id,
            str(t[0]),
            int(t[1]),
            int(t[2]),
            int(t[3]),
            int(t[4]),
            PipelineStatus(int(t[5])),
            int(t[6]),
            int(t[7]),
            int(t[8]),
            bytes(t[9]),
            bytes(t[10]),
            int(t[11]),
        )


@dataclass(frozen=True)
class PipelineSegment:
    node: str
    fee: int
    challenger: str
    bond: int
    challenge_bond: int
    committed_at: int
    proof_deadline: int
    status: SegmentStatus
    output_hash: bytes
    output_boundary_hash: int

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> PipelineSegment:
        return cls(
            str(t[0]),
            int(t[1]),
            str(t[2]),
            int(t[3]),
            int(t[4]),
            int(t[5]),
            int(t[6]),
            SegmentStatus(int(t[7])),
            bytes(t[8]),
            int(t[9]),
        )


def deploy_pipeline(
    client: ChainClient,
    model_registry: str,
    node_registry: str,
    params: PipelineParams | None = None,
) -> str:
    """Deploy PipelineJobs over the given registries; returns its address."""
    p = params or PipelineParams()
    address, _ = client.deploy(
        "PipelineJobs",
        model_registry,
        node_registry,
        p.segment_bond,
        p.challenge_bond,
        p.segment_window,
        p.challenge_window,
        p.proof_window,
    )
    return address


class Pipeline:
    """PipelineJobs as seen by one key (payer, node or keeper)."""

    def __init__(self, client: ChainClient, deployment: Deployment) -> None:
        if deployment.pipeline_jobs == ZERO_ADDRESS:
            raise ChainError("this deployment has no PipelineJobs contract (redeploy)")
        self.client = client
        self.deployment = deployment
        self.contract = client.contract("PipelineJobs", deployment.pipeline_jobs)

    def _call(self, name: str, *args: Any) -> Any:
        return self.client.call(getattr(self.contract.functions, name)(*args))

    # ------------------------------------------------------------------ payer
    def submit(
        self,
        model_id: bytes,
        input_hash: bytes,
        input_boundary_hash: int,
        fees: Sequence[int],
        data: bytes = b"",
    ) -> tuple[int, TxReceipt]:
        """Submit a pipelined job with one fee per segment (``data``: inline input, or b"")."""
        if any(not 0 < f <= UINT96_MAX for f in fees):
            raise ValueError("each segment fee must be a positive wei amount below 2^96")
        if not 0 <= input_boundary_hash < SNARK_SCALAR_FIELD:
            raise ValueError("the input boundary hash must be a BN254 field element")
        request = (model_id, input_hash, input_boundary_hash, list(fees))
        fn = self.contract.functions.submitJob(request, data)
        receipt = self.client.transact(fn, value=sum(fees))
        (event,) = self.events(receipt, "PipelineJobSubmitted")
        return int(event["jobId"]), receipt

    # ------------------------------------------------------------------ nodes
    def claim(self, job_id: int, index: int) -> TxReceipt:
        fn = self.contract.functions.claimSegment(job_id, index)
        return self.client.transact(fn, value=self.segment_bond())

    def commit(self, job_id: int, index: int, commit: SegmentCommit) -> TxReceipt:
        fn = self.contract.functions.commitSegment(job_id, index, commit.as_tuple())
        return self.client.transact(fn)

    # ------------------------------------------------------------------ anyone
    def challenge(self, job_id: int, index: int) -> TxReceipt:
        fn = self.contract.functions.challengeSegment(job_id, index)
        return self.client.transact(fn, value=self.challenge_bond())

    def prove(self, job_id: int, index: int, proof: bytes) -> TxReceipt:
        return self.client.transact(self.contract.functions.proveSegment(job_id, index, proof))

    def slash_unproven(self, job_id: int, index: int) -> TxReceipt:
        return self.client.transact(self.contract.functions.slashUnproven(job_id, index))

    def expire(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.contract.functions.expire(job_id))

    def finalize(self, job_id: int) -> TxReceipt:
        return self.client.transact(self.contract.functions.finalize(job_id))

    def withdraw(self) -> TxReceipt:
        return self.client.transact(self.contract.functions.withdraw())

    # ------------------------------------------------------------------ views
    def job(self, job_id: int) -> PipelineJob:
        return PipelineJob.from_tuple(job_id, self._call("getJob", job_id))

    def segment(self, job_id: int, index: int) -> PipelineSegment:
        return PipelineSegment.from_tuple(self._call("getSegment", job_id, index))

    def withdrawable(self, account: str) -> int:
        return int(self._call("withdrawable", account))

    def segment_bond(self) -> int:
        return int(self._call("segmentBond"))

    def challenge_bond(self) -> int:
        return int(self._call("challengeBond"))

    def challenge_window(self) -> int:
        return int(self._call("challengeWindow"))

    def balance(self) -> int:
        return self.client.balance(self.deployment.pipeline_jobs)

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        logs = self.contract.events[name]().process_receipt(receipt, errors=DISCARD)
        return [dict(log["args"]) for log in logs]
