"""Domain values read from or sent to the contracts (frozen dataclasses and enums).

The enums mirror the Solidity enums in ``IJobMarket.sol`` value for value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

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
