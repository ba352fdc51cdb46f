"""The content-addressed blob store over HTTP: PUT by content (signed-in), GET by hash.

A blob's name is keccak256 of its bytes (0x + 64 hex digits). The store refuses bytes that
do not hash to the name they are put under, and bytes over the size limit.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from market.api.deps import BlobStoreDep, ContextDep, CurrentIdentity
from market.api.schemas import HASH_PATTERN, BlobOut, error_responses
from market.blobs import BlobHashMismatch, BlobNotFound, BlobTooLarge
from market.db.models import Blob

router = APIRouter(prefix="/blobs", tags=["blobs"])
log = logging.getLogger(__name__)

_NAME = re.compile(HASH_PATTERN)
_BINARY: dict[str, Any] = {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
}
_GET_LINK = {"GetBlob": {"operationId": "get_blob", "parameters": {"hash": "$response.body#/hash"}}}
# The pattern is documented but checked here, so that a bad name is a 400 with a reason.
BlobName = Annotated[
    str,
    Path(
        description="keccak256 of the blob's bytes, 0x-hex",
        json_schema_extra={"pattern": HASH_PATTERN},
    ),
]


def record_blob(sessions: sessionmaker[Any], name: str, size: int, content_type: str) -> None:
    """Index a stored blob (idempotent; the file, already written, is the truth)."""
    with sessions() as session:
        if session.get(Blob, name) is not None:
            return
        session.add(Blob(hash=name, size=size, content_type=content_type[:128]))
        try:
            session.commit()
        except IntegrityError:  # a concurrent PUT of the same bytes recorded it first
            session.rollback()


def checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise HTTPException(400, f"{name[:80]!r} is not a blob name (0x + 64 hex digits)")
    return name.lower()


@router.put(
    "/{hash}",
    operation_id="put_blob",
    response_model=BlobOut,
    status_code=201,
    responses={
        200: {
            "model": BlobOut,
            "description": "The store already held these bytes",
            "links": _GET_LINK,
        },
        201: {"description": "Stored", "links": _GET_LINK},
        **error_responses(400, 401, 413),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": _BINARY, "description": "the blob's bytes"}
    },
)
async def put_blob(
    hash: BlobName,
    request: Request,
    response: Response,
    store: BlobStoreDep,
    ctx: ContextDep,
    ident: CurrentIdentity,
) -> BlobOut:
    """Store the request body under ``hash``; refused when keccak256(body) is not ``hash``."""
    name = checked_name(hash)
    data = await request.body()
    existed = await run_in_threadpool(store.has, name)
    try:
        await run_in_threadpool(store.put, data, name)
    except BlobHashMismatch as exc:
        raise HTTPException(400, str(exc)) from None
    except BlobTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    ctype = request.headers.get("content-type", "application/octet-stream")
    await run_in_threadpool(record_blob, ctx.sessions, name, len(data), ctype)
    log.info("blob %s (%d bytes) put by %s", name, len(data), ident.address)
    if existed:
        response.status_code = 200
    return BlobOut(hash=name, size=len(data), created=not existed)


@router.get(
    "/{hash}",
    operation_id="get_blob",
    response_class=Response,
    responses={
        200: {"content": _BINARY, "description": "The blob's bytes"},
        **error_responses(400, 404),
    },
)
def get_blob(hash: BlobName, store: BlobStoreDep) -> Response:
    """The bytes stored under ``hash`` (immutable: cache them forever)."""
    name = checked_name(hash)
    try:
        data = store.get(name)
    except BlobNotFound:
        raise HTTPException(404, f"no blob {name}") from None
    except BlobHashMismatch as exc:  # the file on disk was corrupted: do not serve it
        raise HTTPException(404, f"blob {name} is damaged in the store: {exc}") from None
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"ETag": f'"{name}"', "Cache-Control": "public, max-age=31536000, immutable"},
    )
