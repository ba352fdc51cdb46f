"""What routes depend on: the app's context, a database session, the caller's identity.

Routes take these through typed aliases (``SessionDep``, ``CurrentIdentity``...), as in
full-stack-fastapi-template; the route owns the unit of work and commits it when it writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from market.api.cache import TtlCache
from market.api.metrics import ApiMetrics
from market.api.siwe import AuthError, NonceStore
from market.api.tokens import Identity, TokenSigner
from market.blobs import BlobStore
from market.config import Settings


@dataclass
class ApiContext:
    """Everything an app instance holds; lives on ``app.state.ctx``."""

    settings: Settings
    sessions: sessionmaker[Any]
    blobs: BlobStore
    nonces: NonceStore
    tokens: TokenSigner
    chain_id: int
    metrics: ApiMetrics
    cache: TtlCache


async def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_db(ctx: ContextDep) -> AsyncIterator[Session]:
    """A session for one request. Opening one does no I/O (the connection is taken on first
    use), so only closing it, when it did take a connection, goes to a worker thread:
    one thread hop fewer per request than a sync generator dependency."""
    session: Session = ctx.sessions()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_db)]


async def get_blob_store(ctx: ContextDep) -> BlobStore:
    return ctx.blobs


BlobStoreDep = Annotated[BlobStore, Depends(get_blob_store)]

_bearer = HTTPBearer(
    auto_error=False,
    description="Session token from POST /auth/verify (Sign-In with Ethereum).",
)


async def current_identity(
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if credentials is None:
        raise HTTPException(
            401,
            "authentication required: sign in (GET /auth/nonce, then "
            "POST /auth/verify) and send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return ctx.tokens.verify(credentials.credentials, ctx.chain_id)
    except AuthError as exc:
        raise HTTPException(
            401, exc.reason, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
