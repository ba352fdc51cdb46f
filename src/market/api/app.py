"""The market API's app factory: settings and a database in, a FastAPI app out.

``create_app(settings, engine=...)`` or ``create_app(settings, sessions=...)``; with neither,
the engine comes from ``settings.database_url`` (SQLite in the data folder by default).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import sessionmaker

from market.api.cache import TtlCache
from market.api.deps import ApiContext
from market.api.explorer import router as explorer_router
from market.api.limits import BodyLimitMiddleware, RateLimitMiddleware, TokenBuckets
from market.api.metrics import ApiMetrics, MetricsMiddleware
from market.api.queries import index_gauges
from market.api.routers import auth, blobs, health, jobs, metrics, models, nodes, stats, stream
from market.api.schemas import error_responses
from market.api.siwe import NonceStore
from market.api.tokens import TokenSigner
from market.blobs import BlobStore
from market.chain.types import Deployment
from market.config import Settings, get_settings
from market.db import make_engine, make_sessions
from market.db.models import database_url

#: Anvil's chain id: what sign-ins name when nothing else says which chain this is.
DEFAULT_CHAIN_ID = 31337


def chain_id_of(settings: Settings) -> int:
    if settings.api_chain_id is not None:
        return settings.api_chain_id
    if settings.deployment_file.exists():
        return Deployment.load(settings.deployment_file).chain_id
    return DEFAULT_CHAIN_ID


async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached (or is not migrated) is a 503, not a crash."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
    return JSONResponse({"detail": f"database unavailable: {reason}"}, status_code=503)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 whose Allow header names every method the path supports (Starlette names only
    those of the first route that matched the path)."""
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            allowed |= route.methods or set()
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=405,
        headers={"Allow": ", ".join(sorted(allowed))},
    )


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    sessions: sessionmaker[Any] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    if sessions is None:
        sessions = make_sessions(engine or make_engine(database_url(settings)))
    ctx = ApiContext(
        settings=settings,
        sessions=sessions,
        blobs=BlobStore(settings.blobs(), max_bytes=settings.blob_max_bytes),
        nonces=NonceStore(settings.api_nonce_ttl_s),
        tokens=TokenSigner(
            settings.api_secret.encode() if settings.api_secret else None,
            settings.api_session_ttl_s,
        ),
        chain_id=chain_id_of(settings),
        metrics=ApiMetrics(),
        cache=TtlCache(settings.api_stats_ttl_s),
    )
    ctx.metrics.add_collector(lambda: index_gauges(sessions))

    app = FastAPI(
        title="verimarket API",
        version="1",
        description="Index of the verimarket inference market (jobs, nodes, models, results, "
        "stats), its content-addressed blob store, and Sign-In with Ethereum for "
        "writes. Amounts are wei as decimal strings; times are unix seconds.",
        responses=error_responses(429, 503),
    )
    app.state.ctx = ctx
    app.add_exception_handler(405, method_not_allowed)
    app.add_exception_handler(OperationalError, database_unavailable)
    app.add_exception_handler(InterfaceError, database_unavailable)
    for router in (
        jobs.router,
        stream.router,
        nodes.router,
        models.router,
        stats.router,
        blobs.router,
        auth.router,
        health.router,
        metrics.router,
        explorer_router,
    ):
        app.include_router(router)

    # Added innermost first: metrics see every answer, rate limiting runs before body reads.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.api_max_json_body,
        limits=[("/blobs/", settings.blob_max_bytes)],
    )
    app.add_middleware(
        RateLimitMiddleware, buckets=TokenBuckets(settings.api_rate_per_s, settings.api_rate_burst)
    )
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    return app
