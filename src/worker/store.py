"""The node's own record of the jobs it has seen, claimed, run and committed.

Node-local state (SQLite by default, PostgreSQL when VERIMARKET_NODE_DATABASE_URL says so),
shared by the node process (poller, committer) and its Celery workers. The job state
machine is data: an enum, a table of allowed moves, and one :func:`transition` that does a
compare-and-set in the database, so two processes can never both move the same job.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Enum, Float, Integer, LargeBinary, String, Text, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from market.db import Base, make_engine, make_sessions
from market.db.txstore import ChainTx


class NodeJobState(enum.StrEnum):
    SEEN = "seen"  # valid, not yet claimed
    REJECTED = "rejected"  # not for us or bad input: never claimed (terminal)
    CLAIMING = "claiming"  # in a claim transaction
    LOST = "lost"  # another node claimed it, or the claim failed (terminal)
    CLAIMED = "claimed"  # ours: waiting for inference
    RUNNING = "running"  # a worker is running it
    READY = "ready"  # result computed, waiting for a commit transaction
    COMMITTING = "committing"  # in a commit transaction
    COMMITTED = "committed"  # result on chain (terminal for the node)
    FAILED = "failed"  # set aside with its reason (terminal)


S = NodeJobState
#: Allowed moves. Everything else is a bug or a race lost to another process.
TRANSITIONS: dict[NodeJobState, frozenset[NodeJobState]] = {
    S.SEEN: frozenset({S.CLAIMING, S.REJECTED, S.LOST, S.COMMITTED}),  # COMMITTED: cache
    S.CLAIMING: frozenset({S.CLAIMED, S.LOST, S.SEEN}),
    S.CLAIMED: frozenset({S.RUNNING, S.READY, S.FAILED}),
    S.RUNNING: frozenset({S.READY, S.CLAIMED, S.FAILED}),
    S.READY: frozenset({S.COMMITTING, S.FAILED}),
    S.COMMITTING: frozenset({S.COMMITTED, S.READY, S.FAILED}),
    S.REJECTED: frozenset(),
    S.LOST: frozenset(),
    S.COMMITTED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, frm: NodeJobState, to: NodeJobState) -> None:
        super().__init__(f"node job cannot move from {frm} to {to}")


class NodeBase(DeclarativeBase):
    """The node's own tables: node-local state, not part of the market database's schema
    (which Alembic migrates); created on start with ``create_all``."""


class NodeJob(NodeBase):
    """One on-chain job as this node knows it."""

    __tablename__ = "node_jobs"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model_id: Mapped[str] = mapped_column(String(66))
    model_name: Mapped[str] = mapped_column(String(64), default="")
    input_hash: Mapped[str] = mapped_column(String(66))
    input: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    max_fee: Mapped[str] = mapped_column(String(80))
    deadline: Mapped[int] = mapped_column(Integer)
    submit_block: Mapped[int] = mapped_column(Integer)
    state: Mapped[NodeJobState] = mapped_column(
        Enum(NodeJobState, native_enum=False, length=16), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    output: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    output_uri: Mapped[str] = mapped_column(String(200), default="")
    #: the claim or commit transaction (chain_transactions.id) the job waits on
    tx_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    seen_at: Mapped[float] = mapped_column(Float, default=time.time)
    claimed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    committed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)


class Cursor(NodeBase):
    """How far a follower has read the chain."""

    __tablename__ = "node_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block: Mapped[int] = mapped_column(Integer)


class NodeStore:
    """Access to the node's tables; every method is its own short transaction."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        for attempt in range(5):
            try:
                NodeBase.metadata.create_all(self.engine)
                Base.metadata.create_all(
                    self.engine, tables=[Base.metadata.tables[ChainTx.__tablename__]]
                )
                break
            except OperationalError as exc:  # another process of the node created them first
                if "already exists" not in str(exc) or attempt == 4:
                    raise
        self.sessions: sessionmaker[Session] = make_sessions(self.engine)

    # ------------------------------------------------------------------ cursor
    def cursor(self, name: str, default: int) -> int:
        with self.sessions() as s:
            row = s.get(Cursor, name)
            return default if row is None else int(row.block)

    def set_cursor(self, s: Session, name: str, block: int) -> None:
        row = s.get(Cursor, name)
        if row is None:
            s.add(Cursor(name=name, block=block))
        else:
            row.block = block

    # ------------------------------------------------------------------ jobs
    def add_seen(self, jobs: Iterable[NodeJob], cursor: tuple[str, int]) -> int:
        """Insert newly seen jobs (ignoring ones already known) and move the cursor, atomically."""
        added = 0
        with self.sessions.begin() as s:
            for job in jobs:
                if s.get(NodeJob, job.job_id) is None:
                    s.add(job)
                    added += 1
            self.set_cursor(s, *cursor)
        return added

    def get(self, job_id: int) -> NodeJob | None:
        with self.sessions() as s:
            return s.get(NodeJob, job_id)

    def ids_in(self, state: NodeJobState, limit: int = 1000) -> list[int]:
        with self.sessions() as s:
            q = select(NodeJob.job_id).where(NodeJob.state == state).order_by(NodeJob.job_id)
            return [int(i) for i in s.scalars(q.limit(limit))]

    def jobs_in(self, state: NodeJobState, limit: int = 1000) -> list[NodeJob]:
        with self.sessions() as s:
            q = select(NodeJob).where(NodeJob.state == state).order_by(NodeJob.job_id)
            return list(s.scalars(q.limit(limit)))

    def transition(
        self, job_ids: Sequence[int], frm: NodeJobState, to: NodeJobState, **values: Any
    ) -> list[int]:
        """Compare-and-set: move those of ``job_ids`` that are in ``frm`` to ``to``.

        Returns the ids that moved; others were moved by someone else first.
        """
        if to not in TRANSITIONS[frm]:
            raise IllegalTransition(frm, to)
        if not job_ids:
            return []
        with self.sessions.begin() as s:
            res = s.execute(
                update(NodeJob)
                .where(NodeJob.job_id.in_(list(job_ids)), NodeJob.state == frm)
                .values(state=to, updated_at=time.time(), **values)
                .returning(NodeJob.job_id)
            )
            return sorted(int(r[0]) for r in res)

    def stamp(self, job_ids: Sequence[int], **values: Any) -> None:
        """Set plain columns (timestamps) on jobs, whatever their state."""
        if job_ids:
            with self.sessions.begin() as s:
                s.execute(update(NodeJob).where(NodeJob.job_id.in_(list(job_ids))).values(**values))

    def waiting_on_tx(self, state: NodeJobState) -> dict[int, list[int]]:
        """Jobs in ``state`` grouped by the transaction they wait on."""
        with self.sessions() as s:
            rows = s.execute(
                select(NodeJob.tx_id, NodeJob.job_id)
                .where(NodeJob.state == state)
                .order_by(NodeJob.job_id)
            )
            out: dict[int, list[int]] = {}
            for tx_id, job_id in rows:
                out.setdefault(int(tx_id) if tx_id is not None else -1, []).append(int(job_id))
            return out

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.sessions() as s:
            rows = s.execute(select(NodeJob.state, func.count()).group_by(NodeJob.state))
            return {str(state): int(n) for state, n in rows}
