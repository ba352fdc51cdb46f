"""Liveness with substance: answers 200 only when the database answers."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from market.api.deps import ContextDep, SessionDep
from market.api.queries import indexed_block
from market.api.schemas import HealthOut, error_responses

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthOut, responses=error_responses(503))
def health(ctx: ContextDep, session: SessionDep) -> HealthOut:
    """200 when the database is reachable (with the indexer's last block); 503 otherwise."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise HTTPException(503, f"database unreachable: {type(exc).__name__}") from None
    try:
        block = indexed_block(session, ctx.chain_id)
    except SQLAlchemyError:
        raise HTTPException(
            503, "database reachable but not migrated: run `verimarket db upgrade`"
        ) from None
    return HealthOut(status="ok", database="ok", chain_id=ctx.chain_id, indexed_block=block)
