"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from market.api.deps import ContextDep

router = APIRouter(tags=["service"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        }
    },
)
def metrics(ctx: ContextDep) -> Response:
    """Request counts and latencies by route, and index gauges (jobs by state, nodes...)."""
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
