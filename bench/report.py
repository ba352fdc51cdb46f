"""The benchmark report: figures beside their baselines, ratios, target verdicts, rendering.

Pure logic, no measuring: a row module returns a :class:`RowResult` of :class:`Figure` s,
the suite collects them into a :class:`Report`, and this module turns that into JSON and
markdown. A figure's verdict is ``met`` / ``NOT met`` when it has a target, ``reported``
when it has none, and ``not measured`` (with the reason) when its value is missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Op = Literal["<=", ">="]
#: What a target checks: the figure itself, figure / baseline, or figure - baseline.
Subject = Literal["value", "ratio", "difference"]
TIMES = "\N{MULTIPLICATION SIGN}"


class Verdict(StrEnum):
    MET = "met"
    MISSED = "NOT met"
    REPORTED = "reported"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Target:
    """A bound from the issue: ``subject op threshold`` (e.g. ratio >= 10)."""

    op: Op
    threshold: float
    on: Subject = "value"
    #: How the report states it; derived from the fields when empty.
    text: str = ""

    def holds(self, measured: float) -> bool:
        return measured <= self.threshold if self.op == "<=" else measured >= self.threshold

    def describe(self, unit: str) -> str:
        if self.text:
            return self.text
        sign = "≤" if self.op == "<=" else "≥"
        if self.on == "ratio":
            return f"{sign} {fmt_ratio(self.threshold)}"
        prefix = "overhead " if self.on == "difference" else ""
        return f"{prefix}{sign} {fmt_value(self.threshold, unit)}"


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run (or a reference), its target."""

    label: str  # the row: "1", "3b", …
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline (None without both, or with a zero baseline)."""
        if self.value is None or self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def difference(self) -> float | None:
        if self.value is None or self.baseline is None:
            return None
        return self.value - self.baseline

    def subject(self) -> float | None:
        """The number the target checks."""
        if self.target is None or self.target.on == "value":
            return self.value
        return self.ratio if self.target.on == "ratio" else self.difference

    @property
    def verdict(self) -> Verdict:
        measured = self.subject()
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            return Verdict.NOT_MEASURED
        if self.target is None:
            return Verdict.REPORTED
        return Verdict.MET if self.target.holds(measured) else Verdict.MISSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "difference": self.difference,
            "target": None
            if self.target is None
            else {
                "op": self.target.op,
                "threshold": self.target.threshold,
                "on": self.target.on,
                "text": self.target.describe(self.unit),
            },
            "verdict": str(self.verdict),
            "note": self.note,
        }


@dataclass
class RowResult:
    """What one row of the suite measured (or why it could not)."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    #: Markdown shown under the row: sub-tables, curves.
    details: str = ""
    #: Markdown shown in the closing note when a figure of the row misses its target.
    profile: str = ""
    plots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    #: Why the row was not measured (skipped, or it failed); None when it ran.
    error: str | None = None
    #: True when the row was left out on purpose (``error`` says why), not because it failed.
    skipped: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None and not self.skipped

    @property
    def missed(self) -> list[Figure]:
        return [f for f in self.figures if f.verdict is Verdict.MISSED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "error": self.error,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            "figures": [f.to_dict() for f in self.figures],
            "plots": self.plots,
            "data": self.data,
        }


@dataclass
class Report:
    date: str
    machine: dict[str, Any]
    options: dict[str, Any]
    rows: list[RowResult]
    wall_s: float = 0.0

    @property
    def figures(self) -> list[Figure]:
        return [f for r in self.rows for f in r.figures]

    def counts(self) -> dict[str, int]:
        out = {str(v): 0 for v in Verdict}
        for f in self.figures:
            out[str(f.verdict)] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "wall_s": round(self.wall_s, 1),
            "machine": self.machine,
            "options": self.options,
            "verdicts": self.counts(),
            "rows": [r.to_dict() for r in self.rows],
        }


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------- formatting


def fmt_number(x: float) -> str:
    if math.isnan(x):
        return "—"
    a = abs(x)
    if a >= 100 or (x == int(x) and a >= 10):
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_value(x: float | None, unit: str) -> str:
    if x is None:
        return "—"
    return f"{fmt_number(x)} {unit}".strip()


def fmt_ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "—"
    if x == int(x):
        return f"{int(x)}{TIMES}"
    if x >= 10:
        return f"{x:,.1f}{TIMES}"
    return f"{x:.2f}{TIMES}" if x >= 0.1 else f"{x:.2g}{TIMES}"


def verdict_cell(f: Figure) -> str:
    v = f.verdict
    if v is Verdict.MISSED:
        return "**NOT met**"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_table(report: Report) -> str:
    lines = [
        "| # | figure | measured | baseline (same run) | ratio | target | verdict |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for row in report.rows:
        if row.error is not None and not row.figures:
            lines.append(
                f"| | {_cell(row.title)} | — | — | — | — | not measured: {_cell(row.error)} |"
            )
            continue
        for f in row.figures:
            base = (
                f"{fmt_value(f.baseline, f.unit)} ({f.baseline_name})"
                if f.baseline is not None
                else (f.baseline_name or "—")
            )
            target = f.target.describe(f.unit) if f.target else "—"
            lines.append(
                f"| {f.label} | {_cell(f.name)} | {fmt_value(f.value, f.unit)} | {_cell(base)} | "
                f"{fmt_ratio(f.ratio)} | {_cell(target)} | {verdict_cell(f)} |"
            )
    return "\n".join(lines)


def render_markdown(report: Report, image_prefix: str = "") -> str:
    """The whole report as markdown; ``image_prefix`` is put before every plot's file name
    (so a copy elsewhere, e.g. docs/, still finds the PNGs)."""
    m = report.machine
    counts = report.counts()
    out = [
        f"# verimarket benchmarks — {report.date}",
        "",
        f"Machine: {m.get('description', '?')}. "
        f"Run: {report.options.get('mode', '?')}, {report.wall_s / 60:.1f} min, "
        f"rows {', '.join(r.key for r in report.rows)}.",
        "",
        "Every figure is measured beside its baseline in the same run (except row 1's "
        "reference, a published figure); ratio = figure / baseline. On a shared machine the "
        "absolute figures are noisy; the ratios less so.",
        "",
        f"Verdicts: {counts['met']} met, {counts['NOT met']} NOT met, "
        f"{counts['reported']} reported, {counts['not measured']} not measured.",
        "",
        "## Summary",
        "",
        summary_table(report),
        "",
    ]
    notes = [f"- {f.label}: {f.note}" for f in report.figures if f.note]
    if notes:
        out += ["Notes:", "", *notes, ""]
    out += ["## Details", ""]
    for row in report.rows:
        out += [f"### {row.title}", ""]
        if row.error is not None:
            out += [f"Not measured: {row.error}", ""]
        if row.details:
            out += [row.details.strip(), ""]
        for plot in row.plots:
            out += [f"![{plot}]({image_prefix}{plot})", ""]
        out += [f"_{row.seconds:.0f} s_", ""]
    missed_rows = [r for r in report.rows if r.missed]
    out += ["## What limits the missed targets", ""]
    if not missed_rows:
        out += ["Every target measured in this run was met.", ""]
    for row in missed_rows:
        out += [f"### {row.title}", ""]
        for f in row.missed:
            target = f.target.describe(f.unit) if f.target else ""
            got = f.subject()
            shown = (
                fmt_ratio(got) if f.target and f.target.on == "ratio" else fmt_value(got, f.unit)
            )
            out.append(f"- **NOT met** — {f.label} {f.name}: {shown}, target {target}.")
        out.append("")
        if row.profile:
            out += [row.profile.strip(), ""]
    m_lines = [f"- {k}: {v}" for k, v in m.items() if k != "description"]
    out += ["## Machine", "", *m_lines, ""]
    return "\n".join(out)
