"""Market statistics: submit→commit latency percentiles, throughput, per model and node.

Computed over the jobs submitted in a window (default: every indexed job), from block
timestamps, so the figures are the chain's, not the API's clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.api.deps import ContextDep, SessionDep
from market.api.queries import percentile, state_name
from market.api.schemas import GroupStats, Latency, ModelStats, NodeStats, StatsOut
from market.chain.types import JobStatus
from market.db.models import Job

router = APIRouter(prefix="/stats", tags=["stats"])

MAX_TIME = 2**63 - 1


@dataclass
class _Group:
    jobs: int = 0
    finalized: int = 0
    expired: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, status: JobStatus, latency: float | None) -> None:
        self.jobs += 1
        self.finalized += status is JobStatus.SETTLED
        self.expired += status is JobStatus.EXPIRED
        if latency is not None:
            self.latencies.append(latency)

    def out(self, span: float | None) -> GroupStats:
        lat = sorted(self.latencies)
        return GroupStats(
            jobs=self.jobs,
            committed=len(lat),
            finalized=self.finalized,
            expired=self.expired,
            latency=_latency(lat),
            throughput=len(lat) / span if span else None,
        )


def _latency(lat: Sequence[float]) -> Latency:
    return Latency(
        samples=len(lat),
        p50=percentile(lat, 50),
        p95=percentile(lat, 95),
        p99=percentile(lat, 99),
        mean=sum(lat) / len(lat) if lat else None,
    )


@router.get("", response_model=StatsOut)
def get_stats(
    session: SessionDep,
    ctx: ContextDep,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_TIME, description="jobs submitted at or after (unix s)")
    ] = None,
    until: Annotated[
        int | None, Query(ge=0, le=MAX_TIME, description="jobs submitted at or before (unix s)")
    ] = None,
) -> StatsOut:
    """Latency p50/p95/p99 (submit→commit, seconds), commits per second, job counts: overall,
    per model and per node (the node that claimed the job). May be a few seconds old
    (``VERIMARKET_API_STATS_TTL_S``)."""
    return ctx.cache.get_or_compute(
        ("stats", since, until), lambda: compute_stats(session, since, until)
    )


def compute_stats(session: Session, since: int | None, until: int | None) -> StatsOut:
    q = select(Job.model_id, Job.node, Job.status, Job.submitted_at, Job.committed_at)
    if since is not None:
        q = q.where(Job.submitted_at >= since)
    if until is not None:
        q = q.where(Job.submitted_at <= until)
    overall = _Group()
    per_model: dict[str, _Group] = defaultdict(_Group)
    per_node: dict[str, _Group] = defaultdict(_Group)
    first: int | None = None
    last: int | None = None
    for model_id, node, status, submitted, committed in session.execute(q):
        latency = None if committed is None else float(committed - submitted)
        overall.add(status, latency)
        per_model[model_id].add(status, latency)
        if node is not None:
            per_node[node].add(status, latency)
        end = committed if committed is not None else submitted
        first = submitted if first is None else min(first, submitted)
        last = end if last is None else max(last, end)
    lo = since if since is not None else first
    hi = until if until is not None else last
    span = float(hi - lo) if lo is not None and hi is not None and hi > lo else None
    by_status: dict[str, int] = {state_name(s): 0 for s in JobStatus if s is not JobStatus.NONE}
    count_q = select(Job.status, func.count()).group_by(Job.status)
    if since is not None:
        count_q = count_q.where(Job.submitted_at >= since)
    if until is not None:
        count_q = count_q.where(Job.submitted_at <= until)
    for status, n in session.execute(count_q):
        by_status[state_name(status)] = n
    return StatsOut(
        since=lo,
        until=hi,
        overall=overall.out(span),
        by_status=by_status,
        per_model=[
            ModelStats(model_id=m, **g.out(span).model_dump()) for m, g in sorted(per_model.items())
        ],
        per_node=[
            NodeStats(node=n, **g.out(span).model_dump()) for n, g in sorted(per_node.items())
        ],
    )
