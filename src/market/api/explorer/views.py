"""What the explorer's pages show, read from the index.

The pages reuse the JSON API's own reads (``market.api.routers``), so a page and its
``/jobs/{id}``-style JSON twin always agree; this module adds what only a person needs:
model names, verification verdicts, latencies, slash reasons and chart series.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.api.explorer import charts
from market.api.explorer.format import model_label
from market.api.queries import percentile
from market.api.schemas import JobOut, Latency
from market.canonical import CanonicalEncodingError, decode_tensor
from market.chain.types import JobStatus
from market.db.models import IndexerCursor, Job, Model, Proof, RawEvent

#: VerificationMode (the Solidity enum) as words.
MODE_NAMES = {0: "optimistic", 1: "zk spot-check", 2: "zk full", 3: "redundant"}

#: Most output values the job page prints.
OUTPUT_VALUES_SHOWN = 32


@dataclass(frozen=True)
class Verification:
    """A job's verification verdict in a few words. ``tone``: ok, warn, bad or muted."""

    label: str
    tone: str
    proof_href: str | None = None


@dataclass(frozen=True)
class ProofFacts:
    count: int
    verified: int
    failed: int
    gas: int | None


@dataclass(frozen=True)
class JobRow:
    job: JobOut
    model: str
    latency: float | None
    settle_latency: float | None
    gas: int | None
    verification: Verification


@dataclass(frozen=True)
class IndexStatus:
    chain_id: int
    block: int
    head: int
    confirmed_block: int
    updated_at: float


def index_status(session: Session) -> IndexStatus | None:
    """Where the indexer stands (None before it first ran)."""
    cur = session.scalars(select(IndexerCursor).order_by(IndexerCursor.id).limit(1)).first()
    if cur is None:
        return None
    return IndexStatus(cur.chain_id, cur.block, cur.head, cur.confirmed_block, cur.updated_at)


def model_labels(session: Session, model_ids: Iterable[str]) -> dict[str, str]:
    """Display names of the models named (ids not registered get their short id)."""
    ids = sorted(set(model_ids))
    found: dict[str, str | None] = {m: None for m in ids}
    if ids:
        for model_id, uri in session.execute(
            select(Model.model_id, Model.metadata_uri).where(Model.model_id.in_(ids))
        ):
            found[model_id] = uri
    return {m: model_label(uri, m) for m, uri in found.items()}


def proof_facts(session: Session, job_ids: Sequence[int]) -> dict[int, ProofFacts]:
    """Per job: how many segment proofs are recorded, verified, refused, and their gas."""
    out: dict[int, ProofFacts] = {}
    if not job_ids:
        return out
    rows = session.execute(
        select(Proof.job_id, Proof.verified, Proof.verify_gas).where(Proof.job_id.in_(job_ids))
    )
    acc: dict[int, list[Any]] = defaultdict(lambda: [0, 0, 0, None])
    for job_id, verified, gas in rows:
        a = acc[job_id]
        a[0] += 1
        a[1] += verified is True
        a[2] += verified is False
        if gas is not None:
            a[3] = (a[3] or 0) + gas
    for job_id, (n, ok, bad, gas) in acc.items():
        out[job_id] = ProofFacts(n, ok, bad, gas)
    return out


def verification(job: JobOut, proofs: ProofFacts | None) -> Verification:
    """The verdict: from the proofs when any are recorded, else from the mode and state."""
    mode = MODE_NAMES.get(job.mode, f"mode {job.mode}")
    href = f"/explorer/jobs/{job.job_id}#proofs"
    if proofs is not None and proofs.count:
        if proofs.failed:
            return Verification(f"proof refused ({proofs.failed}/{proofs.count})", "bad", href)
        if proofs.verified == proofs.count:
            return Verification(f"proof verified ({proofs.count}/{proofs.count})", "ok", href)
        return Verification(f"proof pending ({proofs.verified}/{proofs.count})", "warn", href)
    phase = {
        "open": ("awaiting a node", "muted"),
        "claimed": ("awaiting result", "muted"),
        "committed": (
            "challenge window" if job.mode == 0 else "awaiting proof",
            "warn",
        ),
        "disputed": ("disputed", "warn"),
        "settled": ("accepted" if job.mode == 0 else "accepted, no proof indexed", "ok"),
        "slashed": ("result refused, node slashed", "bad"),
        "expired": ("no result, node slashed" if job.node else "no result", "bad"),
        "cancelled": ("cancelled", "muted"),
    }[job.status]
    return Verification(f"{mode} · {phase[0]}", phase[1])


def job_rows(session: Session, jobs: Sequence[JobOut]) -> list[JobRow]:
    labels = model_labels(session, (j.model_id for j in jobs))
    facts = proof_facts(session, [j.job_id for j in jobs])
    rows = []
    for j in jobs:
        f = facts.get(j.job_id)
        rows.append(
            JobRow(
                job=j,
                model=labels[j.model_id],
                latency=None if j.committed_at is None else float(j.committed_at - j.submitted_at),
                settle_latency=None
                if j.settled_at is None
                else float(j.settled_at - j.submitted_at),
                gas=None if f is None else f.gas,
                verification=verification(j, f),
            )
        )
    return rows


# ---------------------------------------------------------------- one job


@dataclass(frozen=True)
class DecodedOutput:
    shape: tuple[int, ...]
    scale_bits: int
    values: list[float]
    truncated: bool
    argmax: int | None


def decode_output(hex_bytes: str | None) -> DecodedOutput | str | None:
    """A result's canonical tensor, or the reason it does not decode (None: no inline
    bytes)."""
    if not hex_bytes:
        return None
    try:
        tensor = decode_tensor(bytes.fromhex(hex_bytes[2:]), max_elements=1 << 16)
    except (CanonicalEncodingError, ValueError) as exc:
        return f"not a canonical tensor: {exc}"
    flat = [float(v) for v in tensor.to_float().reshape(-1)]
    squeezed = [d for d in tensor.shape if d != 1]
    argmax = max(range(len(flat)), key=flat.__getitem__) if len(squeezed) == 1 else None
    return DecodedOutput(
        tensor.shape,
        tensor.scale_bits,
        flat[:OUTPUT_VALUES_SHOWN],
        len(flat) > OUTPUT_VALUES_SHOWN,
        argmax,
    )


# ---------------------------------------------------------------- one node


@dataclass(frozen=True)
class Slash:
    amount: int
    block: int
    timestamp: int
    tx_hash: str
    job_id: int | None
    reason: str


def node_slashes(session: Session, address: str, limit: int = 100) -> list[Slash]:
    """The node's slashes, newest first, each with the job whose transaction slashed it."""
    events = list(
        session.scalars(
            select(RawEvent)
            .where(RawEvent.node == address, RawEvent.name == "NodeSlashed")
            .order_by(RawEvent.block_number.desc(), RawEvent.log_index.desc())
            .limit(limit)
        )
    )
    causes: dict[str, RawEvent] = {}
    txs = sorted({e.tx_hash for e in events})
    if txs:
        for e in session.scalars(
            select(RawEvent)
            .where(RawEvent.tx_hash.in_(txs), RawEvent.job_id.is_not(None))
            .order_by(RawEvent.log_index)
        ):
            causes.setdefault(e.tx_hash, e)
    out = []
    for e in events:
        cause = causes.get(e.tx_hash)
        reason = {
            "JobExpired": "missed the job's deadline",
        }.get(cause.name if cause else "", cause.name if cause else "not tied to a job")
        out.append(
            Slash(
                amount=int(e.args.get("amount", 0)),
                block=e.block_number,
                timestamp=e.block_timestamp,
                tx_hash=e.tx_hash,
                job_id=cause.job_id if cause else None,
                reason=reason,
            )
        )
    return out


# ---------------------------------------------------------------- stats charts


@dataclass(frozen=True)
class WindowStats:
    jobs: int
    first: int | None
    last: int | None
    commit: Latency
    settle: Latency
    charts: dict[str, Markup]


def _latency(values: list[float]) -> Latency:
    lat = sorted(values)
    return Latency(
        samples=len(lat),
        p50=percentile(lat, 50),
        p95=percentile(lat, 95),
        p99=percentile(lat, 99),
        mean=sum(lat) / len(lat) if lat else None,
    )


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def rolling_rate(
    times: Sequence[int], first: int, last: int, samples: int = 60
) -> list[charts.Point]:
    """Events per second over a trailing window, sampled evenly from ``first`` to ``last``.

    The window is a tenth of the span (at least 1 s): wide enough to smooth the steps of
    block timestamps, narrow enough to show bursts.
    """
    span = max(1, last - first)
    window = max(1.0, span / 10)
    ordered = sorted(times)
    points = []
    for i in range(samples + 1):
        t = first + span * i / samples
        lo = bisect.bisect_right(ordered, t - window)
        hi = bisect.bisect_right(ordered, t)
        n = hi - lo
        points.append(charts.Point(t, n / window, f"{clock(t)}: {n} in the {window:.0f} s before"))
    return points


def window_stats(session: Session, last_jobs: int) -> WindowStats:
    """Latency percentiles, rates and gas over the newest ``last_jobs`` jobs, with charts."""
    rows = session.execute(
        select(Job.job_id, Job.status, Job.submitted_at, Job.committed_at, Job.settled_at)
        .order_by(Job.job_id.desc())
        .limit(last_jobs)
    ).all()
    commit_lat = [float(c - s) for _, _, s, c, _ in rows if c is not None]
    settle_lat = [
        float(d - s) for _, st, s, _, d in rows if d is not None and st is JobStatus.SETTLED
    ]
    commit, settle = _latency(commit_lat), _latency(settle_lat)
    out: dict[str, Markup] = {}

    bars = []
    for name in ("p50", "p95", "p99", "mean"):
        for group, lat in enumerate((commit, settle)):
            value: float | None = getattr(lat, name)
            bars.append(charts.Bar(name, value, group))
    out["percentiles"] = charts.bar_chart(
        "Latency percentiles",
        bars,
        y_unit="seconds",
        groups=["submit → commit", "submit → settle"],
        empty="no committed jobs yet",
    )

    out["latency"] = charts.line_chart(
        "Latency of each job",
        [
            charts.Series(
                "submit → commit",
                [
                    charts.Point(s, c - s, f"job {j}: {c - s} s to commit")
                    for j, _, s, c, _ in rows
                    if c is not None
                ],
                "points",
            ),
            charts.Series(
                "submit → settle",
                [
                    charts.Point(s, d - s, f"job {j}: {d - s} s to settle")
                    for j, st, s, _, d in rows
                    if d is not None and st is JobStatus.SETTLED
                ],
                "points",
            ),
        ],
        y_unit="seconds",
        x_format=clock,
        empty="no committed jobs yet",
    )

    submitted = [s for _, _, s, _, _ in rows]
    committed = [c for _, _, _, c, _ in rows if c is not None]
    settled = [d for _, _, _, _, d in rows if d is not None]
    every = submitted + committed + settled
    first, last = (min(every), max(every)) if every else (None, None)
    if first is not None and last is not None:
        out["throughput"] = charts.line_chart(
            "Jobs per second",
            [
                charts.Series("submitted", rolling_rate(submitted, first, last)),
                charts.Series("committed", rolling_rate(committed, first, last)),
                charts.Series("settled", rolling_rate(settled, first, last)),
            ],
            y_unit="jobs/s",
            x_format=clock,
        )
    else:
        out["throughput"] = charts.empty_chart("Jobs per second", "no jobs yet")

    gas = proof_facts(session, [r[0] for r in rows])
    gas_bars = [
        charts.Bar(f"#{j}", float(f.gas), 0, f"job {j}: {f.gas:,} gas")
        for j, f in sorted(gas.items())
        if f.gas is not None
    ][-40:]
    out["gas"] = charts.bar_chart(
        "Verification gas per job",
        gas_bars,
        y_unit="gas",
        groups=["on-chain proof verification"],
        empty="no gas figures indexed yet (only on-chain proof verification records gas)",
    )
    return WindowStats(len(rows), first, last, commit, settle, out)


def count_jobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job)) or 0
