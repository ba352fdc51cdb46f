"""The explorer's pages: server-rendered HTML over the market index, kept out of OpenAPI.

``/explorer`` (live jobs), ``/explorer/jobs/{id}``, ``/explorer/nodes[/{address}]``,
``/explorer/models[/{id}]`` and ``/explorer/stats``. Each page reads through the JSON API's
own handlers and :mod:`market.api.explorer.views`; templates autoescape everything, and a
strict Content-Security-Policy (scripts and styles from this origin only, no inline code)
stands behind the escaping.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Annotated, Any, cast, get_args
from urllib.parse import urlencode

import jinja2
from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from market.api.deps import ApiContext, ContextDep, SessionDep
from market.api.explorer import views
from market.api.explorer.format import FILTERS
from market.api.routers import jobs as jobs_api
from market.api.routers import models as models_api
from market.api.routers import nodes as nodes_api
from market.api.routers.stats import compute_stats
from market.api.schemas import ADDRESS_PATTERN, HASH_PATTERN, JobState, StatsOut

router = APIRouter(prefix="/explorer", include_in_schema=False)

_PACKAGE = files("market.api.explorer")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(_PACKAGE / "templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(FILTERS)
_env.globals["mode_names"] = views.MODE_NAMES
templates = Jinja2Templates(env=_env)

#: Sent with every page: scripts and styles from this origin only (no inline code), no
#: framing, no referrer leaks.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: Static files by name (read once; nothing else under static/ is served).
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC: dict[str, tuple[bytes, str]] = {
    entry.name: (entry.read_bytes(), _STATIC_TYPES[entry.name[entry.name.rfind(".") :]])
    for entry in (_PACKAGE / "static").iterdir()
    if entry.name[entry.name.rfind(".") :] in _STATIC_TYPES
}

JOB_STATES: tuple[str, ...] = get_args(JobState)
PAGE_SIZE = 50
MAX_ID = jobs_api.MAX_ID
_ADDRESS = re.compile(ADDRESS_PATTERN)
_HASH = re.compile(HASH_PATTERN)


class PageError(Exception):
    """A request the page cannot answer; shown as an HTML page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def render(
    request: Request, session: Session, name: str, status: int = 200, **context: Any
) -> Response:
    context.setdefault("title", "verimarket explorer")
    context["index"] = views.index_status(session)
    context["path"] = request.url.path
    return templates.TemplateResponse(
        request, name, context, status_code=status, headers=PAGE_HEADERS
    )


def error_page(request: Request, session: Session, exc: PageError) -> Response:
    return render(
        request,
        session,
        "error.html",
        status=exc.status,
        title=f"{exc.status} · verimarket explorer",
        message=exc.message,
    )


def _address(value: str, what: str) -> str:
    if not _ADDRESS.match(value):
        raise PageError(400, f"{what} {value!r} is not an address (0x and 40 hex digits)")
    return to_checksum_address(value)


def _hash(value: str, what: str) -> str:
    if not _HASH.match(value):
        raise PageError(400, f"{what} {value!r} is not a 32-byte hash (0x and 64 hex digits)")
    return value.lower()


def _job_id(value: str, what: str = "job id") -> int:
    if not value.isdigit() or int(value) > MAX_ID:
        raise PageError(400, f"{what} {value!r} is not a job id (a non-negative integer)")
    return int(value)


def _stats(ctx: ApiContext, session: Session) -> StatsOut:
    """The API's /stats answer (shared cache: the page and the JSON agree)."""
    return ctx.cache.get_or_compute(
        ("stats", None, None), lambda: compute_stats(session, None, None)
    )


# ---------------------------------------------------------------- jobs


@router.get("", response_class=Response)
def jobs_page(
    request: Request,
    session: SessionDep,
    state: Annotated[list[str] | None, Query()] = None,
    model: str | None = None,
    node: str | None = None,
    agent: str | None = None,
    before: str | None = None,
) -> Response:
    """Live jobs, newest first; the page refreshes itself (explorer.js)."""
    try:
        states = [s for s in (state or []) if s]
        for s in states:
            if s not in JOB_STATES:
                raise PageError(400, f"unknown state {s!r}: one of {', '.join(JOB_STATES)}")
        filters = {
            "model": _hash(model, "model") if model else None,
            "node": _address(node, "node") if node else None,
            "agent": _address(agent, "agent") if agent else None,
        }
        cursor = _job_id(before, "before") if before else None
    except PageError as exc:
        return error_page(request, session, exc)
    page = jobs_api.list_jobs(
        session,
        state=cast(list[JobState], states) or None,
        model=filters["model"],
        node=filters["node"],
        agent=filters["agent"],
        payer=None,
        limit=PAGE_SIZE,
        cursor=cursor,
        offset=0,
        order="desc",
    )
    kept = [("state", s) for s in states] + [(k, v) for k, v in filters.items() if v]
    older = (
        f"/explorer?{urlencode([*kept, ('before', str(page.next_cursor))])}"
        if page.next_cursor is not None
        else None
    )
    return render(
        request,
        session,
        "jobs.html",
        rows=views.job_rows(session, page.items),
        total=page.total,
        states=JOB_STATES,
        selected=set(states),
        filters=filters,
        labels=views.model_labels(session, [filters["model"]] if filters["model"] else []),
        paged=cursor is not None,
        newest=f"/explorer?{urlencode(kept)}" if kept else "/explorer",
        older=older,
        live=cursor is None,
    )


@router.get("/jobs/{job_id}", response_class=Response)
def job_page(job_id: str, request: Request, session: SessionDep) -> Response:
    """One job: timeline, result, proofs, settlement, events."""
    try:
        jid = _job_id(job_id)
        try:
            job = jobs_api.get_job(jid, session)
        except HTTPException as exc:
            raise PageError(exc.status_code, f"no job {jid} in the index (yet)") from None
    except PageError as exc:
        return error_page(request, session, exc)
    row = views.job_rows(session, [job])[0]
    return render(
        request,
        session,
        "job.html",
        title=f"job {jid} · verimarket explorer",
        job=job,
        row=row,
        outputs={r.node: views.decode_output(r.output_hex) for r in job.results},
        input_bytes=None if job.input_hex is None else (len(job.input_hex) - 2) // 2,
        live=not (job.settled_at is not None and job.confirmed),
    )


# ---------------------------------------------------------------- nodes


@router.get("/nodes", response_class=Response)
def nodes_page(request: Request, session: SessionDep) -> Response:
    """Every node: stake, earnings, slashes, jobs."""
    page = nodes_api.list_nodes(session, model=None, registered=None, limit=200, offset=0)
    labels = views.model_labels(session, (m.model_id for n in page.items for m in n.models))
    return render(
        request,
        session,
        "nodes.html",
        title="nodes · verimarket explorer",
        nodes=page.items,
        total=page.total,
        labels=labels,
    )


def _recent_jobs(session: Any, *, node: str | None = None, model: str | None = None) -> Any:
    """The newest page of jobs of one node or one model (the node and model pages)."""
    return jobs_api.list_jobs(
        session,
        state=None,
        model=model,
        node=node,
        agent=None,
        payer=None,
        limit=PAGE_SIZE,
        cursor=None,
        offset=0,
        order="desc",
    )


@router.get("/nodes/{address}", response_class=Response)
def node_page(address: str, request: Request, session: SessionDep) -> Response:
    """One node: its stake and record, models and prices, slashes and recent jobs."""
    try:
        checksummed = _address(address, "node")
        try:
            node = nodes_api.get_node(checksummed, session)
        except HTTPException as exc:
            raise PageError(exc.status_code, f"no node {checksummed} in the index") from None
    except PageError as exc:
        return error_page(request, session, exc)
    recent = _recent_jobs(session, node=checksummed)
    return render(
        request,
        session,
        "node.html",
        title=f"node {checksummed} · verimarket explorer",
        node=node,
        labels=views.model_labels(session, (m.model_id for m in node.models)),
        slashes=views.node_slashes(session, checksummed),
        rows=views.job_rows(session, recent.items),
        jobs_total=recent.total,
    )


# ---------------------------------------------------------------- models


@router.get("/models", response_class=Response)
def models_page(request: Request, session: SessionDep, ctx: ContextDep) -> Response:
    """Every registered model, with segment count, nodes and job counts."""
    page = models_api.list_models(session, limit=200, offset=0)
    per_model = {m.model_id: m for m in _stats(ctx, session).per_model}
    return render(
        request,
        session,
        "models.html",
        title="models · verimarket explorer",
        models=page.items,
        total=page.total,
        labels=views.model_labels(session, (m.model_id for m in page.items)),
        per_model=per_model,
    )


@router.get("/models/{model_id}", response_class=Response)
def model_page(model_id: str, request: Request, session: SessionDep, ctx: ContextDep) -> Response:
    """One model: registration, segments (artefact and key hashes, verifiers), nodes, jobs."""
    try:
        mid = _hash(model_id, "model id")
        try:
            model = models_api.get_model(mid, session)
        except HTTPException as exc:
            raise PageError(exc.status_code, f"no model {mid} in the index") from None
    except PageError as exc:
        return error_page(request, session, exc)
    recent = _recent_jobs(session, model=mid)
    stats = next((m for m in _stats(ctx, session).per_model if m.model_id == mid), None)
    return render(
        request,
        session,
        "model.html",
        title=f"model {mid} · verimarket explorer",
        model=model,
        label=views.model_labels(session, [mid])[mid],
        stats=stats,
        rows=views.job_rows(session, recent.items),
        jobs_total=recent.total,
    )


# ---------------------------------------------------------------- stats

MAX_WINDOW = 5000


@router.get("/stats", response_class=Response)
def stats_page(
    request: Request, session: SessionDep, ctx: ContextDep, jobs: str = "500"
) -> Response:
    """Charts: latency percentiles, latency per job, jobs per second, gas per job."""
    if not jobs.isdigit() or not 1 <= int(jobs) <= MAX_WINDOW:
        return error_page(
            request, session, PageError(400, f"jobs={jobs!r}: a window of 1 to {MAX_WINDOW} jobs")
        )
    stats = _stats(ctx, session)
    return render(
        request,
        session,
        "stats.html",
        title="stats · verimarket explorer",
        stats=stats,
        window=views.window_stats(session, int(jobs)),
        window_size=int(jobs),
        labels=views.model_labels(session, (m.model_id for m in stats.per_model)),
        live=True,
    )


# ---------------------------------------------------------------- static files


@router.get("/static/{name}", response_class=Response)
def static_file(name: str) -> Response:
    """explorer.css and explorer.js (nothing else; no paths)."""
    found = STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body, media_type = found
    return Response(
        body,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
