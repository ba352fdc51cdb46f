"""Tables of the market index: what the indexer derives from the chain, plus blobs and proofs.

Three kinds of table live here:

- **indexer bookkeeping** — :class:`IndexerCursor` (how far one deployment is indexed and
  which block is final) and :class:`IndexedBlock` (hashes of the last blocks, to detect
  reorgs);
- **the chain's facts** — :class:`RawEvent`, every decoded log of the four contracts;
- **derived state** — jobs, results, settlements, nodes, node models, models, segments and
  vault accounts. Every derived row is a pure fold of the raw events that name it (in chain
  order) plus their block timestamps, so deleting derived rows and replaying their events
  rebuilds them exactly. The indexer owns these tables; nothing else writes them.

:class:`Proof` and :class:`Blob` are written by the prover and the blob store, never by the
indexer (a re-index leaves them alone).

Amounts in wei use :class:`Wei`: ``NUMERIC(78, 0)`` on PostgreSQL, a zero-padded decimal string
on SQLite (whose NUMERIC loses precision above 2^63); in Python they are always ``int``, and
comparisons and ``ORDER BY`` work on both backends. Hashes and addresses are ``0x`` strings:
hashes lowercase, addresses checksummed as the chain bindings return them.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from market.chain.types import JobStatus
from market.config import Settings
from market.db import Base, sqlite_url

#: Decimal digits of the largest uint256 (2^256 - 1 has 78).
WEI_DIGITS = 78


def database_url(settings: Settings | None = None) -> str:
    """The market database: ``Settings.database_url``, else the embedded SQLite file
    ``<data>/market.sqlite`` (its folder is created)."""
    s = settings or Settings()
    return s.database_url or sqlite_url(s.data / "market.sqlite")


class Wei(TypeDecorator[int]):
    """A non-negative integer up to 2^256 - 1, exact on PostgreSQL and SQLite.

    PostgreSQL stores ``NUMERIC(78, 0)``; SQLite stores the decimal digits left-padded with
    zeros to 78 characters, so string order is numeric order. Negative values are refused.
    """

    impl = Numeric(WEI_DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(WEI_DIGITS))
        return dialect.type_descriptor(Numeric(WEI_DIGITS, 0))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        n = int(value)
        if n < 0 or n >= 10**WEI_DIGITS:
            raise ValueError(f"{value} is not a wei amount (0 <= x < 10^{WEI_DIGITS})")
        return str(n).zfill(WEI_DIGITS) if dialect.name == "sqlite" else Decimal(n)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)

    @property
    def python_type(self) -> type[int]:
        return int


def _hash() -> Any:
    return String(66)


def _address() -> Any:
    return String(42)


# ---------------------------------------------------------------- indexer bookkeeping


class IndexerCursor(Base):
    """How far one deployment (chain id + JobMarket address) is indexed.

    Written in the same transaction as the events and derived state of every block range,
    so the cursor never runs ahead of or behind the data. ``block`` is the last block fully
    indexed, ``block_hash`` its hash; rows last changed at or below ``confirmed_block``
    (``head - confirmations`` when last updated) are final.
    """

    __tablename__ = "indexer_cursors"
    __table_args__ = (UniqueConstraint("chain_id", "deployment", name="uq_cursor_deployment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    deployment: Mapped[str] = mapped_column(_address(), comment="JobMarket address")
    start_block: Mapped[int] = mapped_column(BigInteger)
    block: Mapped[int] = mapped_column(BigInteger, comment="last block fully indexed")
    block_hash: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    head: Mapped[int] = mapped_column(BigInteger, default=0, comment="chain head last seen")
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    confirmed_block: Mapped[int] = mapped_column(BigInteger, default=-1)
    reorgs: Mapped[int] = mapped_column(Integer, default=0, comment="reorgs handled so far")
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)


class IndexedBlock(Base):
    """Hash of a recently indexed block (the last N are kept), for reorg detection."""

    __tablename__ = "indexed_blocks"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(_hash())
    parent_hash: Mapped[str] = mapped_column(_hash())
    timestamp: Mapped[int] = mapped_column(BigInteger)


class RawEvent(Base):
    """One decoded log, exactly as the chain has it.

    ``args`` is the event's arguments as JSON: bytes as ``0x`` hex, integers above 2^53 as
    decimal strings, addresses checksummed. ``extra`` holds what the indexer read from the
    chain at the event's block because the event does not carry it (``ModelRegistered``: the
    segments; a model id is a content hash of them, so the read is deterministic).
    ``job_id`` / ``node`` / ``agent`` / ``model_id`` copy the argument of that name, so the
    derived rows of one entity can be rebuilt from its events alone.
    """

    __tablename__ = "raw_events"
    __table_args__ = (
        Index("ix_raw_events_order", "chain_id", "block_number", "log_index"),
        Index("ix_raw_events_job", "job_id"),
        Index("ix_raw_events_node", "node"),
        Index("ix_raw_events_agent", "agent"),
        Index("ix_raw_events_model", "model_id"),
    )

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tx_hash: Mapped[str] = mapped_column(_hash(), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(_hash())
    block_timestamp: Mapped[int] = mapped_column(BigInteger)
    contract: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(_address())
    name: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    node: Mapped[str | None] = mapped_column(_address(), nullable=True)
    agent: Mapped[str | None] = mapped_column(_address(), nullable=True)
    model_id: Mapped[str | None] = mapped_column(_hash(), nullable=True)


# ---------------------------------------------------------------- jobs


class Job(Base):
    """A job, its state mirrored from JobMarket (``status`` follows the Solidity enum).

    Step times are block timestamps (unix seconds) of the step's event, so latency is
    ``committed_at - submitted_at`` and so on; "settled" means reaching a terminal state
    (finalized, expired or cancelled). ``updated_block`` is the block of the job's last
    event; ``confirmed`` is true once that block is at or below the cursor's
    ``confirmed_block``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_payer", "payer"),
        Index("ix_jobs_node", "node"),
        Index("ix_jobs_model", "model_id"),
        Index("ix_jobs_confirmed", "confirmed", "updated_block"),
    )

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    status: Mapped[JobStatus] = mapped_column(Enum(JobStatus, native_enum=False, length=16))
    payer: Mapped[str] = mapped_column(_address())
    from_vault: Mapped[bool] = mapped_column(Boolean)
    mode: Mapped[int] = mapped_column(Integer, comment="VerificationMode")
    model_id: Mapped[str] = mapped_column(_hash())
    input_hash: Mapped[str] = mapped_column(_hash())
    input: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    input_uri: Mapped[str] = mapped_column(Text, default="")
    max_fee: Mapped[int] = mapped_column(Wei())
    deadline: Mapped[int] = mapped_column(BigInteger)
    callback: Mapped[str] = mapped_column(_address())
    callback_gas_limit: Mapped[int] = mapped_column(BigInteger)
    callback_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    node: Mapped[str | None] = mapped_column(_address(), nullable=True)
    price: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    collateral: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    result_hash: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    output: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    output_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    window_end: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    node_payout: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    fee: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    refund: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    slashed: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    compensation: Mapped[int | None] = mapped_column(Wei(), nullable=True)
    submit_block: Mapped[int] = mapped_column(BigInteger)
    claim_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    commit_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    settle_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    submitted_at: Mapped[int] = mapped_column(BigInteger)
    claimed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    committed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    settled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    submit_tx: Mapped[str] = mapped_column(_hash())
    claim_tx: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    commit_tx: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    settle_tx: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    updated_block: Mapped[int] = mapped_column(BigInteger)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)


class Result(Base):
    """A result committed for a job by a node (one per node: redundant jobs get several)."""

    __tablename__ = "results"

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    node: Mapped[str] = mapped_column(_address(), primary_key=True)
    result_hash: Mapped[str] = mapped_column(_hash())
    output: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    output_uri: Mapped[str] = mapped_column(Text, default="")
    window_end: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    committed_at: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(_hash())


class Settlement(Base):
    """How a job ended: ``finalized`` (paid), ``expired`` (refund, claimer slashed) or
    ``cancelled`` (refund). Amounts are the event's, to the wei."""

    __tablename__ = "settlements"

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    node: Mapped[str | None] = mapped_column(_address(), nullable=True)
    node_payout: Mapped[int] = mapped_column(Wei(), default=0)
    fee: Mapped[int] = mapped_column(Wei(), default=0)
    refund: Mapped[int] = mapped_column(Wei(), default=0)
    slashed: Mapped[int] = mapped_column(Wei(), default=0)
    compensation: Mapped[int] = mapped_column(Wei(), default=0)
    caller: Mapped[str | None] = mapped_column(_address(), nullable=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    settled_at: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(_hash())


class Proof(Base):
    """A proof of one segment of a job's inference (written by the prover / settlement
    service, not by the indexer). ``verified`` is None until checked; ``verifier`` says
    where (``onchain`` or ``offchain``)."""

    __tablename__ = "proofs"
    __table_args__ = (
        UniqueConstraint("job_id", "node", "segment_index", name="uq_proof_job_segment"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(BigInteger, index=True)
    node: Mapped[str] = mapped_column(_address())
    segment_index: Mapped[int] = mapped_column(Integer)
    proof_blob: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    proof_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    instances: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    prove_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    verified: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    verifier: Mapped[str | None] = mapped_column(String(16), nullable=True)
    verify_gas: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(_hash(), nullable=True)
    block_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


# ---------------------------------------------------------------- nodes and models


class Node(Base):
    """A staked node as NodeRegistry's events describe it, plus its job record.

    ``stake``/``locked``/``unbonding`` mirror the registry; ``jobs_claimed`` counts
    JobClaimed, ``jobs_served`` JobFinalized, ``earnings`` the sum of its payouts;
    ``slashes``/``slashed_total`` count NodeSlashed.
    """

    __tablename__ = "nodes"

    address: Mapped[str] = mapped_column(_address(), primary_key=True)
    registered: Mapped[bool] = mapped_column(Boolean, default=False)
    stake: Mapped[int] = mapped_column(Wei(), default=0)
    locked: Mapped[int] = mapped_column(Wei(), default=0)
    unbonding: Mapped[int] = mapped_column(Wei(), default=0)
    unbonding_ready_at: Mapped[int] = mapped_column(BigInteger, default=0)
    jobs_claimed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_served: Mapped[int] = mapped_column(Integer, default=0)
    earnings: Mapped[int] = mapped_column(Wei(), default=0)
    slashes: Mapped[int] = mapped_column(Integer, default=0)
    slashed_total: Mapped[int] = mapped_column(Wei(), default=0)
    registered_block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    registered_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class NodeModel(Base):
    """A model a node serves, at its declared price (deleted on ModelRemoved)."""

    __tablename__ = "node_models"
    __table_args__ = (Index("ix_node_models_model", "model_id"),)

    node: Mapped[str] = mapped_column(_address(), primary_key=True)
    model_id: Mapped[str] = mapped_column(_hash(), primary_key=True)
    price: Mapped[int] = mapped_column(Wei())
    updated_block: Mapped[int] = mapped_column(BigInteger)


class Model(Base):
    """A registered model (immutable on chain)."""

    __tablename__ = "models"

    model_id: Mapped[str] = mapped_column(_hash(), primary_key=True)
    owner: Mapped[str] = mapped_column(_address())
    artifacts_hash: Mapped[str] = mapped_column(_hash())
    output_scale: Mapped[int] = mapped_column(Integer)
    segment_count: Mapped[int] = mapped_column(Integer)
    metadata_uri: Mapped[str] = mapped_column(Text, default="")
    registered_block: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(_hash())


class ModelSegment(Base):
    """Segment ``index`` of a model: artefact hash, verifying-key hash, verifier contract."""

    __tablename__ = "model_segments"

    model_id: Mapped[str] = mapped_column(
        _hash(), ForeignKey("models.model_id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    segment_hash: Mapped[str] = mapped_column(_hash())
    vk_hash: Mapped[str] = mapped_column(_hash())
    verifier: Mapped[str] = mapped_column(_address())


class VaultAccount(Base):
    """An agent's purpose-bound budget in PaymentVault (allow lists stay in raw events)."""

    __tablename__ = "vault_accounts"

    agent: Mapped[str] = mapped_column(_address(), primary_key=True)
    funder: Mapped[str] = mapped_column(_address())
    balance: Mapped[int] = mapped_column(Wei(), default=0)
    max_fee_per_job: Mapped[int] = mapped_column(Wei(), default=0)
    budget_per_period: Mapped[int] = mapped_column(Wei(), default=0)
    period_length: Mapped[int] = mapped_column(BigInteger, default=0)
    any_model: Mapped[bool] = mapped_column(Boolean, default=False)
    spent: Mapped[int] = mapped_column(Wei(), default=0)
    refunded: Mapped[int] = mapped_column(Wei(), default=0)
    withdrawn: Mapped[int] = mapped_column(Wei(), default=0)
    pending_withdrawal: Mapped[int] = mapped_column(Wei(), default=0)
    withdrawal_ready_at: Mapped[int] = mapped_column(BigInteger, default=0)
    opened_block: Mapped[int] = mapped_column(BigInteger)
    updated_block: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------- blobs


class Blob(Base):
    """A content-addressed blob known to the store (``hash`` = 0x keccak256 of the bytes)."""

    __tablename__ = "blobs"

    hash: Mapped[str] = mapped_column(_hash(), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


#: Tables the indexer derives from raw events (deleted and rebuilt on a reorg or a re-index).
DERIVED_TABLES: tuple[type[Base], ...] = (
    Job,
    Result,
    Settlement,
    Node,
    NodeModel,
    Model,
    ModelSegment,
    VaultAccount,
)
