"""Charts as inline SVG, drawn on the server: no JavaScript, no chart library.

Each function returns a complete ``<svg>`` element as :class:`markupsafe.Markup`. Every
piece of text that goes into it (titles, labels, tooltips) is escaped here; numbers are
formatted here. Colours and fonts come from the stylesheet through class names
(``series-0``, ``series-1``...), so the pages need no inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 260
#: Plot margins: left (y tick labels), right, top (legend), bottom (x tick labels).
LEFT, RIGHT, TOP, BOTTOM = 64, 32, 28, 36
#: Narrowest x span drawn (a single instant is shown with this much room around it).
MIN_X_SPAN = 10.0


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    #: Tooltip text (escaped when drawn).
    label: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    kind: Literal["line", "points"] = "line"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    #: Colour index (bars of one group share a colour).
    group: int = 0
    tooltip: str = ""


@dataclass(frozen=True)
class _Axis:
    lo: float
    hi: float
    ticks: list[float] = field(default_factory=list)


def nice_step(span: float, target: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about ``target`` ticks over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _y_axis(values: Sequence[float]) -> _Axis:
    top = max([v for v in values if math.isfinite(v)], default=0.0)
    step = nice_step(top if top > 0 else 1.0)
    hi = step * math.ceil(top / step) if top > 0 else step * 5
    n = round(hi / step)
    return _Axis(0.0, hi, [i * step for i in range(n + 1)])


def _x_axis(lo: float, hi: float) -> _Axis:
    if hi - lo < MIN_X_SPAN:
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_X_SPAN / 2, mid + MIN_X_SPAN / 2
    step = nice_step(hi - lo)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    t = first
    while t <= hi + 1e-9 and len(ticks) < 12:
        ticks.append(t)
        t += step
    return _Axis(lo, hi, ticks)


def _num(v: float) -> str:
    """A coordinate: short, locale-free."""
    return f"{v:.1f}"


def axis_label(v: float) -> str:
    """A tick label: integers plain, small values with up to 3 significant digits."""
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.3g}"


def _frame(title: str, inner: list[str]) -> Markup:
    body = "".join(inner)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _y_grid(axis: _Axis, *, unit: str, y: Callable[[float], float]) -> list[str]:
    out = []
    for t in axis.ticks:
        yy = _num(y(t))
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy}" y2="{yy}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{yy}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(axis_label(t))}</text>'
        )
    out.append(
        f'<text class="unit" x="{LEFT - 6}" y="{TOP - 12}" text-anchor="end">{escape(unit)}</text>'
    )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    x = WIDTH - RIGHT
    for i, name in reversed(list(enumerate(names))):
        width = 18 + 7 * len(name)
        x -= width
        out.append(
            f'<rect class="series-{i} swatch" x="{x}" y="{TOP - 20}" width="10" height="10"/>'
            f'<text class="legend" x="{x + 14}" y="{TOP - 11}">{escape(name)}</text>'
        )
    return out


def empty_chart(title: str, message: str) -> Markup:
    """A chart-sized box saying why there is nothing to draw."""
    return _frame(
        title,
        [
            f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{HEIGHT - TOP - BOTTOM}"/>',
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            f"{escape(message)}</text>",
        ],
    )


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_unit: str,
    x_format: Callable[[float], str] = axis_label,
    empty: str = "no data yet",
) -> Markup:
    """Series over a shared numeric x axis (time, usually), y from zero."""
    points = [p for s in series for p in s.points]
    if not points:
        return empty_chart(title, empty)
    xa = _x_axis(min(p.x for p in points), max(p.x for p in points))
    ya = _y_axis([p.y for p in points])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v: float) -> float:
        return LEFT + (v - xa.lo) / (xa.hi - xa.lo) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - (v - ya.lo) / (ya.hi - ya.lo) * plot_h

    inner = _y_grid(ya, unit=y_unit, y=y)
    for t in xa.ticks:
        inner.append(
            f'<text class="tick" x="{_num(x(t))}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{escape(x_format(t))}</text>'
        )
    for i, s in enumerate(series):
        pts = sorted(s.points, key=lambda p: p.x)
        if s.kind == "line" and len(pts) > 1:
            coords = " ".join(f"{_num(x(p.x))},{_num(y(p.y))}" for p in pts)
            inner.append(f'<polyline class="series-{i} line" points="{coords}"/>')
        if s.kind == "points" or len(pts) <= 40:
            for p in pts:
                tip = f"<title>{escape(p.label)}</title>" if p.label else ""
                inner.append(
                    f'<circle class="series-{i} dot" cx="{_num(x(p.x))}" '
                    f'cy="{_num(y(p.y))}" r="3">{tip}</circle>'
                )
    inner.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y(0))}" y2="{_num(y(0))}"/>'
    )
    inner += _legend([s.name for s in series])
    return _frame(title, inner)


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    y_unit: str,
    groups: Sequence[str] = (),
    empty: str = "no data yet",
) -> Markup:
    """Vertical bars from zero; ``groups`` names the colours for the legend. Consecutive
    bars with the same label are drawn as one cluster under one label; a bar whose value is
    None is an empty slot marked "n/a"."""
    if not bars or all(b.value is None for b in bars):
        return empty_chart(title, empty)
    ya = _y_axis([b.value for b in bars if b.value is not None])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h - (v - ya.lo) / (ya.hi - ya.lo) * plot_h

    # Consecutive bars with one label form a cluster: one label under it, a gap between.
    clusters: list[list[int]] = []
    for i, b in enumerate(bars):
        if clusters and bars[clusters[-1][0]].label == b.label:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    gap = 0.6  # of a bar's slot, between clusters
    slot = plot_w / (len(bars) + gap * len(clusters))
    width = min(max(1.0, slot * 0.85), 64.0)
    show_labels = slot * (1 + gap) >= 24
    inner = _y_grid(ya, unit=y_unit, y=y)
    left = LEFT + slot * gap / 2
    for cluster in clusters:
        start = left
        for i in cluster:
            b = bars[i]
            centre = left + slot / 2
            if b.value is None:
                inner.append(
                    f'<text class="tick" x="{_num(centre)}" y="{_num(y(0) - 6)}" '
                    f'text-anchor="middle">n/a</text>'
                )
            else:
                top = y(b.value)
                tip = escape(b.tooltip or f"{b.label}: {axis_label(b.value)} {y_unit}")
                inner.append(
                    f'<rect class="series-{b.group} bar" x="{_num(centre - width / 2)}" '
                    f'y="{_num(top)}" width="{_num(width)}" height="{_num(y(0) - top)}">'
                    f"<title>{tip}</title></rect>"
                )
                if show_labels:
                    inner.append(
                        f'<text class="value" x="{_num(centre)}" y="{_num(top - 4)}" '
                        f'text-anchor="middle">{escape(axis_label(round(b.value, 2)))}</text>'
                    )
            left += slot
        if show_labels:
            inner.append(
                f'<text class="tick" x="{_num((start + left) / 2)}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(bars[cluster[0]].label)}</text>'
            )
        left += slot * gap
    inner.append(
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y(0))}" y2="{_num(y(0))}"/>'
    )
    inner += _legend(groups)
    return _frame(title, inner)
