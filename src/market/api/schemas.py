"""Request and response schemas of the API (pydantic), kept apart from the database models.

Amounts are wei as decimal strings (uint256 does not fit a JSON number); addresses are
EIP-55 checksummed; hashes are 0x-prefixed lowercase hex; times are unix seconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
HASH_PATTERN = r"^0x[0-9a-fA-F]{64}$"

Address = Annotated[
    str, Field(pattern=ADDRESS_PATTERN, examples=["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"])
]
Hash32 = Annotated[str, Field(pattern=HASH_PATTERN, examples=["0x" + "ab" * 32])]
Wei = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+$",
        description="amount in wei (decimal string)",
        examples=["1000000000000000"],
    ),
]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(Out):
    """Every 4xx/5xx the API raises itself: one sentence saying what went wrong."""

    detail: str


_DESCRIPTIONS = {
    400: "Bad request: a malformed name or body (the detail says why)",
    401: "Not authenticated, or the sign-in was refused (the detail says why)",
    404: "Not found",
    413: "Request body over the size limit",
    429: "Rate limit: retry after the number of seconds in Retry-After",
    503: "The service cannot reach its database",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries with the error schema for ``codes``."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorOut, "description": _DESCRIPTIONS[code]}
        if code == 429:
            entry["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        if code == 401:
            entry["headers"] = {
                "WWW-Authenticate": {"description": "the auth scheme", "schema": {"type": "string"}}
            }
        out[code] = entry
    return out


# --- auth ---


class NonceOut(Out):
    """A single-use nonce and what the Sign-In with Ethereum message must name."""

    nonce: str
    domain: str = Field(description="the domain the message must name")
    uri: str = Field(description="the URI the message should name")
    chain_id: int
    issued_at: str = Field(description="server time, RFC 3339")
    expires_at: str = Field(description="when the nonce stops being accepted, RFC 3339")


class VerifyIn(BaseModel):
    message: str = Field(
        min_length=1, max_length=4096, description="the EIP-4361 message, exactly as signed"
    )
    signature: str = Field(
        pattern=r"^0x[0-9a-fA-F]{130}$",
        description="EIP-191 personal_sign signature (65 bytes, 0x-hex)",
    )


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    address: Address
    chain_id: int
    expires_at: int = Field(description="unix seconds")


class IdentityOut(Out):
    address: Address
    chain_id: int
    expires_at: int


# --- blobs ---


class BlobOut(Out):
    hash: Hash32
    size: int
    created: bool = Field(description="false when the store already held these bytes")


# --- health ---


class HealthOut(Out):
    status: Literal["ok"]
    database: Literal["ok"]
    chain_id: int
    indexed_block: int | None = Field(description="last block the indexer has applied")


# --- jobs ---

JobState = Literal[
    "open", "claimed", "committed", "disputed", "settled", "slashed", "cancelled", "expired"
]
Step = Literal["submitted", "claimed", "committed", "settled"]


class TimelineStep(Out):
    step: Step
    block: int
    timestamp: int = Field(description="block timestamp, unix seconds")
    tx_hash: Hash32 | None


class JobEventOut(Out):
    name: str
    contract: str
    block: int
    log_index: int
    timestamp: int
    tx_hash: Hash32


class JobOut(Out):
    """A job as indexed (state mirrored from JobMarket)."""

    job_id: int
    status: JobState
    payer: Address = Field(description="the agent for vault-funded jobs, else the sender")
    from_vault: bool
    mode: int = Field(description="VerificationMode: 0 none, 1 zk-spot, 2 zk-full, 3 redundant")
    model_id: Hash32
    input_hash: Hash32
    input_uri: str
    max_fee: Wei
    deadline: int
    node: Address | None
    price: Wei | None
    result_hash: Hash32 | None
    output_uri: str | None
    window_end: int | None
    submitted_at: int
    claimed_at: int | None
    committed_at: int | None
    settled_at: int | None
    updated_block: int
    confirmed: bool = Field(description="the job's last event is final (enough confirmations)")


class JobPage(Out):
    items: list[JobOut]
    total: int = Field(description="jobs matching the filters")
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class ResultOut(Out):
    job_id: int
    node: Address
    result_hash: Hash32
    output_hex: str | None = Field(description="inline output bytes, 0x-hex")
    output_uri: str
    window_end: int
    block_number: int
    committed_at: int
    tx_hash: Hash32


class ProofOut(Out):
    job_id: int
    node: Address
    segment_index: int
    proof_blob: Hash32 | None
    proof_size: int | None
    instances: list[str] | None
    prove_seconds: float | None
    verified: bool | None
    verifier: str | None
    verify_gas: int | None
    tx_hash: Hash32 | None
    block_number: int | None


class SettlementOut(Out):
    kind: str = Field(description="finalized, expired or cancelled")
    node: Address | None
    node_payout: Wei
    fee: Wei
    refund: Wei
    slashed: Wei
    compensation: Wei
    caller: Address | None
    block_number: int
    settled_at: int
    tx_hash: Hash32


class JobDetailOut(JobOut):
    input_hex: str | None = Field(description="inline input bytes, 0x-hex")
    output_hex: str | None = Field(description="inline output bytes, 0x-hex")
    callback: Address
    callback_gas_limit: int
    callback_failed: bool
    collateral: Wei | None
    node_payout: Wei | None
    fee: Wei | None
    refund: Wei | None
    slashed: Wei | None
    compensation: Wei | None
    timeline: list[TimelineStep]
    events: list[JobEventOut]
    results: list[ResultOut]
    proofs: list[ProofOut]
    settlement: SettlementOut | None


# --- nodes and models ---


class NodeModelOut(Out):
    model_id: Hash32
    price: Wei


class ModelNodeOut(Out):
    node: Address
    price: Wei


class NodeOut(Out):
    address: Address
    registered: bool
    stake: Wei
    locked: Wei
    unbonding: Wei
    unbonding_ready_at: int
    jobs_claimed: int
    jobs_served: int = Field(description="jobs finalized (paid)")
    earnings: Wei
    slashes: int
    slashed_total: Wei
    registered_block: int | None
    registered_at: int | None
    models: list[NodeModelOut]


class NodePage(Out):
    items: list[NodeOut]
    total: int


class SegmentOut(Out):
    index: int
    segment_hash: Hash32 = Field(description="hash of the segment's artefacts")
    vk_hash: Hash32
    verifier: Address


class ModelOut(Out):
    model_id: Hash32
    owner: Address
    artifacts_hash: Hash32
    output_scale: int
    segment_count: int
    metadata_uri: str
    registered_block: int
    registered_at: int
    segments: list[SegmentOut]
    nodes: list[ModelNodeOut] = Field(description="nodes serving the model, and their prices")


class ModelPage(Out):
    items: list[ModelOut]
    total: int


# --- stats ---


class Latency(Out):
    """Seconds from submit to commit (block timestamps), over committed jobs."""

    samples: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None


class GroupStats(Out):
    jobs: int = Field(description="jobs submitted in the window")
    committed: int
    finalized: int
    expired: int
    latency: Latency
    throughput: float | None = Field(description="commits per second over the window")


class ModelStats(GroupStats):
    model_id: Hash32


class NodeStats(GroupStats):
    node: Address


class StatsOut(Out):
    since: int | None = Field(description="window start (unix s); null: no jobs")
    until: int | None
    overall: GroupStats
    by_status: dict[str, int]
    per_model: list[ModelStats]
    per_node: list[NodeStats]
