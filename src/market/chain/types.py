"""Domain values read from or sent to the contracts (frozen dataclasses and enums).

The enums mirror the Solidity enums in ``IJobMarket.sol`` value for value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_HASH = b"\x00" * 32


class JobStatus(IntEnum):
    NONE = 0
    OPEN = 1
    CLAIMED = 2
    COMMITTED = 3
    DISPUTED = 4
    SETTLED = 5
    SLASHED = 6
    CANCELLED = 7
    EXPIRED = 8

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobStatus.SETTLED, JobStatus.SLASHED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class VerificationMode(IntEnum):
    NONE = 0
    ZK_SPOT = 1
    ZK_FULL = 2
    REDUNDANT = 3


class Attestation(IntEnum):
    """An attester's verdict (mirrors IZkVerification.Attestation)."""

    NONE = 0
    VALID = 1
    INVALID = 2


class DisputeKind(IntEnum):
    """What a dispute is about (mirrors IZkVerification.DisputeKind)."""

    ATTESTATION = 0
    OUTPUT = 1


class DisputeOutcome(IntEnum):
    """How a dispute ended (mirrors IZkVerification.DisputeOutcome)."""

    UPHELD = 0
    REJECTED = 1
    DISMISSED = 2


@dataclass(frozen=True)
class ZkParams:
    """What a zk job's requester adds to its request (mirrors IZkVerification.ZkParams).

    ``input_boundary_hash`` is the boundary hash of the input as segment 0's circuit reads
    it (``prover.boundary_hashes(...)[0]``); ``attested`` asks for off-chain verification.
    """

    input_boundary_hash: int
    attested: bool = False

    def as_tuple(self) -> tuple[int, bool]:
        return (self.input_boundary_hash, self.attested)


@dataclass(frozen=True)
class ZkJob:
    """A zk job's verification record (mirrors IZkVerification.ZkJob)."""

    job_id: int
    input_boundary_hash: int
    boundary_root: bytes
    required_mask: int
    proven_mask: int
    seed_block: int
    proof_deadline: int
    segment_count: int
    full: bool
    attested: bool
    attester: str
    attested_at: int
    attestation: Attestation
    on_chain_required: bool

    @property
    def required_segments(self) -> list[int]:
        return [i for i in range(self.segment_count) if self.required_mask >> i & 1]

    @property
    def proven_segments(self) -> list[int]:
        return [i for i in range(self.segment_count) if self.proven_mask >> i & 1]

    @classmethod
    def from_tuple(cls, job_id: int, t: tuple[Any, ...]) -> ZkJob:
        return cls(
            job_id,
            int(t[0]),
            bytes(t[1]),
            int(t[2]),
            int(t[3]),
            int(t[4]),
            int(t[5]),
            int(t[6]),
            bool(t[7]),
            bool(t[8]),
            t[9],
            int(t[10]),
            Attestation(t[11]),
            bool(t[12]),
        )


@dataclass(frozen=True)
class Dispute:
    """An open dispute (mirrors IZkVerification.Dispute); ``disputer`` is zero when none."""

    disputer: str
    bond: int
    opened_at: int

    @property
    def open(self) -> bool:
        return self.disputer != ZERO_ADDRESS


def boundary_root(boundary_hashes: Sequence[int]) -> bytes:
    """keccak256(abi.encodePacked(uint256[])): the commitment ZkVerification stores."""
    return keccak(b"".join(int(h).to_bytes(32, "big") for h in boundary_hashes))


@dataclass(frozen=True)
class JobRequest:
    """What a requester submits (mirrors IJobMarket.JobRequest)."""

    model_id: bytes
    input_hash: bytes
    max_fee: int
    deadline: int
    input: bytes = b""
    input_uri: str = ""
    mode: VerificationMode = VerificationMode.NONE
    callback: str = ZERO_ADDRESS
    callback_gas_limit: int = 0
    vault_agent: str = ZERO_ADDRESS

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.model_id,
            self.input_hash,
            self.input,
            self.input_uri,
            self.max_fee,
            self.deadline,
            int(self.mode),
            self.callback,
            self.callback_gas_limit,
            self.vault_agent,
        )


@dataclass(frozen=True)
class Job:
    """A job as stored on chain (mirrors IJobMarket.Job)."""

    job_id: int
    payer: str
    status: JobStatus
    mode: VerificationMode
    from_vault: bool
    deadline: int
    callback_gas_limit: int
    node: str
    window_end: int
    fee_bps: int
    callback: str
    max_fee: int
    price: int
    collateral: int
    model_id: bytes
    input_hash: bytes
    result_hash: bytes

    @classmethod
    def from_tuple(cls, job_id: int, t: tuple[Any, ...]) -> Job:
        return cls(
            job_id,
            t[0],
            JobStatus(t[1]),
            VerificationMode(t[2]),
            bool(t[3]),
            int(t[4]),
            int(t[5]),
            t[6],
            int(t[7]),
            int(t[8]),
            t[9],
            int(t[10]),
            int(t[11]),
            int(t[12]),
            bytes(t[13]),
            bytes(t[14]),
            bytes(t[15]),
        )


@dataclass(frozen=True)
class Policy:
    """A purpose-bound budget's policy (mirrors IPaymentVault.Policy)."""

    max_fee_per_job: int
    budget_per_period: int
    period_length: int
    any_model: bool = False

    def as_tuple(self) -> tuple[int, int, int, bool]:
        return (self.max_fee_per_job, self.budget_per_period, self.period_length, self.any_model)


@dataclass(frozen=True)
class Segment:
    """A model segment (mirrors IModelRegistry.Segment)."""

    segment_hash: bytes
    vk_hash: bytes = ZERO_HASH
    verifier: str = ZERO_ADDRESS

    def as_tuple(self) -> tuple[bytes, bytes, str]:
        return (self.segment_hash, self.vk_hash, self.verifier)


@dataclass(frozen=True)
class NodeInfo:
    stake: int
    locked: int
    unbonding: int
    unbonding_ready_at: int
    registered: bool


@dataclass(frozen=True)
class MarketParams:
    """Constructor parameters of the deployment (defaults suit the embedded demo)."""

    fee_bps: int = 250
    challenge_window: int = 60
    max_job_duration: int = 3600
    collateral_bps: int = 20_000
    min_job_collateral: int = 10**14
    slash_payer_bps: int = 8_000
    max_callback_gas: int = 2_000_000
    min_stake: int = 10**18
    unbonding_period: int = 7 * 24 * 3600
    withdrawal_delay: int = 24 * 3600
    # ZkVerification (zk-spot / zk-full jobs, attestation, disputes)
    proof_window: int = 600
    challenge_delay: int = 1
    dispute_window: int = 300
    dispute_bond: int = 10**16
    arbitration_period: int = 24 * 3600


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live; written to a deployment file by `verimarket deploy`."""

    chain_id: int
    rpc_url: str
    start_block: int
    model_registry: str
    node_registry: str
    payment_vault: str
    job_market: str
    treasury: str
    deployer: str
    params: MarketParams = field(default_factory=MarketParams)
    zk_verification: str = ZERO_ADDRESS
    #: PipelineJobs (one model's segments across nodes); absent from older deployments
    pipeline_jobs: str = ZERO_ADDRESS
    #: RedundantJobs (k-of-n commit-reveal jobs); absent from deployments made before it
    redundant_jobs: str = ZERO_ADDRESS

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        doc = json.loads(path.read_text())
        doc["params"] = MarketParams(**doc.get("params", {}))
        return cls(**doc)
