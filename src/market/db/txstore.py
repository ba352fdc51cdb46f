"""Persisted transactions: the state machine behind every transaction a service sends.

unstarted ──sign (nonce assigned, raw kept)──▶ signed ──broadcast──▶ sent ──receipt──▶ confirmed
    │                                                                   └───revert────▶ failed
    └─estimate reverts────────────────────────────────────────────────────────────────▶ failed
"""

from __future__ import annotations

import enum
import time

from sqlalchemy import (
    JSON,
    Enum,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import Base


class TxState(enum.StrEnum):
    UNSTARTED = "unstarted"
    SIGNED = "signed"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"

    @property
    def in_flight(self) -> bool:
        return self in (TxState.SIGNED, TxState.SENT)


class ChainTx(Base):
    """One logical transaction of one sender key, across gas bumps (all its hashes kept)."""

    __tablename__ = "chain_transactions"
    __table_args__ = (
        UniqueConstraint("sender", "nonce", name="uq_chain_tx_sender_nonce"),
        UniqueConstraint("sender", "idempotency_key", name="uq_chain_tx_sender_key"),
        Index("ix_chain_tx_sender_state", "sender", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chain_id: Mapped[int] = mapped_column(Integer)
    sender: Mapped[str] = mapped_column(String(42))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    purpose: Mapped[str] = mapped_column(String(64), default="")
    to_address: Mapped[str] = mapped_column(String(42))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[str] = mapped_column(String(80), default="0")
    gas_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nonce: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[TxState] = mapped_column(
        Enum(TxState, native_enum=False, length=16), default=TxState.UNSTARTED
    )
    max_fee_per_gas: Mapped[str | None] = mapped_column(String(80), nullable=True)
    max_priority_fee_per_gas: Mapped[str | None] = mapped_column(String(80), nullable=True)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    all_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    broadcasts: Mapped[int] = mapped_column(Integer, default=0)
    bumps: Mapped[int] = mapped_column(Integer, default=0)
    block_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: raw revert data (0x-hex) of a failed call, decoded again on read
    revert_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)
