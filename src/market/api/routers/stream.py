"""``GET /jobs/{id}/stream``: a generative job's tokens as server-sent events while it runs.

Relays the job's Redis stream (``market.tokenstream``) from its first entry:

- ``event: token`` — ``{"job_id", "index", "token_id", "text"}``, indexes 0, 1, 2... once
  each and in order (a redelivered job's repeated tokens are dropped);
- ``event: attempt-failed`` — ``{"job_id", "reason"}``: the worker's attempt failed; it may
  be retried, so the stream goes on;
- ``event: done`` — the final result, then the stream ends: ``{"job_id", "token_ids", "text",
  "result_hash", "finish_reason", "source": "node"}`` as the worker computed it, or, when the
  job was committed on chain before any stream was seen (streaming off on that node, or the
  stream expired), ``{"job_id", "result_hash", "output_hex", "output_uri", "token_ids",
  "source": "chain"}`` from the index (token ids decoded from an inline output that is a
  vector at scale 2^0, else null);
- ``event: error`` — ``{"job_id", "reason"}`` and the end: nothing arrived for the configured
  wait, or the job ended on chain without a result.

The tokens are a preview by the node that runs the job; what the requester pays for is the
result committed on chain (the ``done`` event's ``result_hash`` is what the node commits).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from market.api.deps import ContextDep
from market.api.routers.jobs import JobId
from market.api.schemas import ErrorOut, error_responses
from market.canonical import CanonicalEncodingError, decode_tensor
from market.chain.types import JobStatus
from market.db.models import Job, Result
from market.tokenstream import parse_entry, stream_key

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: How often the route looks at the index while the stream is silent (seconds).
INDEX_CHECK_S = 2.0

_SSE_DOC = (
    "Server-sent events: `token` (job_id, index, token_id, text), `attempt-failed`, then "
    "`done` (the final token ids, text and result hash) or `error`; see docs/llm.md."
)


def _sse(event: str, data: dict[str, Any], entry_id: str | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {entry_id}\n" if entry_id else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


def _index_view(ctx: Any, job_id: int) -> tuple[JobStatus, dict[str, Any] | None] | None:
    """(status, final event from the chain or None) of an indexed job; None if unknown."""
    with ctx.sessions() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        row = s.scalars(
            select(Result).where(Result.job_id == job_id).order_by(Result.block_number).limit(1)
        ).first()
        if row is None:
            return job.status, None
        output = bytes(row.output) if row.output else b""
        token_ids: list[int] | None = None
        if output:
            try:
                tensor = decode_tensor(output)
            except CanonicalEncodingError:
                tensor = None
            # token ids are a vector at scale 2^0; other models' outputs are not token ids
            if tensor is not None and tensor.scale_bits == 0 and tensor.values.ndim == 1:
                token_ids = [int(v) for v in tensor.values]
        return job.status, {
            "job_id": job_id,
            "result_hash": row.result_hash,
            "output_hex": "0x" + output.hex() if output else None,
            "output_uri": row.output_uri,
            "token_ids": token_ids,
            "source": "chain",
        }


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": _SSE_DOC,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **error_responses(404),  # unknown job, or streaming not configured on this API
        503: {
            "model": ErrorOut,
            "description": "The token streams' Redis cannot be reached",
        },
    },
)
async def stream_job(job_id: JobId, ctx: ContextDep, request: Request) -> StreamingResponse:
    """A generative job's tokens as server-sent events while it runs, ending with its result."""
    view = await run_in_threadpool(_index_view, ctx, job_id)
    url = ctx.settings.streams()
    if url is None:
        if view is None:
            raise HTTPException(404, f"no job {job_id} in the index")
        # 404, not 5xx: this API has no streams to offer, which is no server failure
        raise HTTPException(
            404, "no token streams on this API (streaming is not configured: VERIMARKET_STREAM_URL)"
        )
    key = stream_key(ctx.settings.broker_prefix, job_id)
    conn = aioredis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        exists = bool(await conn.exists(key))
    except aioredis.RedisError as exc:
        await conn.aclose()
        raise HTTPException(503, f"token streams unavailable: {exc}") from exc
    if view is None and not exists:
        await conn.aclose()
        raise HTTPException(404, f"no job {job_id} in the index and no token stream for it")
    return StreamingResponse(
        _relay(conn, key, job_id, ctx, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _relay(
    conn: aioredis.Redis, key: str, job_id: int, ctx: Any, request: Request
) -> AsyncIterator[bytes]:
    wait_s = ctx.settings.stream_wait_s
    last_id, next_index = "0-0", 0
    quiet_since = next_check = time.monotonic()
    chain_final: dict[str, Any] | None = None
    try:
        while True:
            try:
                answer: Any = await conn.xread({key: last_id}, count=256, block=500)
            except aioredis.RedisError as exc:
                yield _sse("error", {"job_id": job_id, "reason": f"token streams: {exc}"})
                return
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    event = parse_entry(fields)
                    if event is None:
                        continue
                    quiet_since = time.monotonic()
                    kind = event.pop("event")
                    if kind == "token":
                        if event.get("index") != next_index:
                            continue  # a redelivery's repeat (or a gap: `done` has every id)
                        next_index += 1
                        yield _sse("token", event, last_id)
                    elif kind == "done":
                        yield _sse("done", {**event, "source": "node"}, last_id)
                        return
                    elif kind == "error":
                        yield _sse("attempt-failed", event, last_id)
            now = time.monotonic()
            if answer:
                continue
            if await request.is_disconnected():
                return
            if now >= next_check:
                next_check = now + INDEX_CHECK_S
                view = await run_in_threadpool(_index_view, ctx, job_id)
                if view is not None:
                    status, final = view
                    if final is not None:
                        if chain_final is not None:
                            yield _sse("done", chain_final)
                            return
                        # one more read for the node's own `done`, which normally comes first
                        chain_final, next_check = final, now + 0.5
                    elif status.terminal:
                        yield _sse("error", {"job_id": job_id, "reason": f"job {status.name}"})
                        return
            if now - quiet_since > wait_s:
                reason = f"no token within {wait_s:.0f} s"
                yield _sse("error", {"job_id": job_id, "reason": reason})
                return
    finally:
        await conn.aclose()
