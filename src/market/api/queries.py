"""Reads shared by several routes: row → schema conversion, percentiles, service gauges."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from market.api.schemas import JobOut, JobState
from market.chain.types import JobStatus
from market.db.models import Blob, IndexerCursor, Job, Model, Node


def state_name(status: JobStatus) -> JobState:
    name: JobState = status.name.lower()  # type: ignore[assignment]
    return name


def status_of(state: JobState) -> JobStatus:
    return JobStatus[state.upper()]


def hex_or_none(data: bytes | None) -> str | None:
    return None if data is None else "0x" + data.hex()


def wei(value: int | None) -> str | None:
    return None if value is None else str(value)


def job_out(job: Job) -> JobOut:
    return JobOut(
        job_id=job.job_id,
        status=state_name(job.status),
        payer=job.payer,
        from_vault=job.from_vault,
        mode=job.mode,
        model_id=job.model_id,
        input_hash=job.input_hash,
        input_uri=job.input_uri,
        max_fee=str(job.max_fee),
        deadline=job.deadline,
        node=job.node,
        price=wei(job.price),
        result_hash=job.result_hash,
        output_uri=job.output_uri,
        window_end=job.window_end,
        submitted_at=job.submitted_at,
        claimed_at=job.claimed_at,
        committed_at=job.committed_at,
        settled_at=job.settled_at,
        updated_block=job.updated_block,
        confirmed=job.confirmed,
    )


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def indexed_block(session: Session, chain_id: int | None = None) -> int | None:
    """The last block the indexer has fully applied (on ``chain_id`` when given)."""
    q = select(func.max(IndexerCursor.block))
    if chain_id is not None:
        q = q.where(IndexerCursor.chain_id == chain_id)
    block: int | None = session.scalar(q)
    return block


def index_gauges(sessions: sessionmaker[Any]) -> Iterable[Metric]:
    """Gauges read from the index at scrape time (nothing when the database is down)."""
    try:
        with sessions() as session:
            by_status = session.execute(select(Job.status, func.count()).group_by(Job.status))
            jobs = GaugeMetricFamily("verimarket_jobs", "Indexed jobs by state", labels=["state"])
            counts = {s: 0 for s in JobStatus if s is not JobStatus.NONE}
            for status, n in by_status:
                counts[status] = n
            for status, n in counts.items():
                jobs.add_metric([state_name(status)], n)
            nodes = GaugeMetricFamily(
                "verimarket_nodes_registered",
                "Registered nodes",
                value=session.scalar(select(func.count()).select_from(Node).where(Node.registered))
                or 0,
            )
            models = GaugeMetricFamily(
                "verimarket_models",
                "Registered models",
                value=session.scalar(select(func.count()).select_from(Model)) or 0,
            )
            blobs = GaugeMetricFamily(
                "verimarket_blobs",
                "Blobs recorded by the store",
                value=session.scalar(select(func.count()).select_from(Blob)) or 0,
            )
            cursor = GaugeMetricFamily(
                "verimarket_indexer_block", "Indexer position", labels=["chain_id", "kind"]
            )
            for c in session.scalars(select(IndexerCursor)):
                cursor.add_metric([str(c.chain_id), "indexed"], c.block)
                cursor.add_metric([str(c.chain_id), "head"], c.head)
                cursor.add_metric([str(c.chain_id), "confirmed"], c.confirmed_block)
            up = GaugeMetricFamily("verimarket_api_database_up", "Database reachable", value=1)
            return [jobs, nodes, models, blobs, cursor, up]
    except SQLAlchemyError:
        return [GaugeMetricFamily("verimarket_api_database_up", "Database reachable", value=0)]
