"""The benchmark report's pure logic: ratios, target verdicts, JSON and markdown.

No timings are measured or asserted here; figures are made up.
"""

from __future__ import annotations

import json

import pytest
from bench.report import TIMES as X
from bench.report import (
    Figure,
    Report,
    RowResult,
    Target,
    Verdict,
    fmt_number,
    fmt_ratio,
    render_markdown,
    summary_table,
    to_json,
)
from bench.suite import ROWS, parse_only


def fig(value: float | None, baseline: float | None = None, **kw: object) -> Figure:
    return Figure("1", "a figure", value, "gas", baseline=baseline, **kw)  # type: ignore[arg-type]


def report(*rows: RowResult) -> Report:
    return Report(
        date="2026-01-01T00:00:00+00:00",
        machine={"description": "2-core test CPU", "cores": 2},
        options={"mode": "full"},
        rows=list(rows),
        wall_s=90.0,
    )


# ---------------------------------------------------------------- ratios


def test_ratio_and_difference_are_against_the_baseline() -> None:
    f = fig(150.0, baseline=100.0)
    assert f.ratio == pytest.approx(1.5)
    assert f.difference == pytest.approx(50.0)


@pytest.mark.parametrize("value, baseline", [(None, 1.0), (1.0, None), (1.0, 0.0)])
def test_ratio_is_none_without_a_usable_baseline(
    value: float | None, baseline: float | None
) -> None:
    assert fig(value, baseline).ratio is None


# ---------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    "target, value, baseline, verdict",
    [
        (Target("<=", 200_000), 199_999.0, None, Verdict.MET),
        (Target("<=", 200_000), 200_000.0, None, Verdict.MET),
        (Target("<=", 200_000), 383_045.0, None, Verdict.MISSED),
        (Target(">=", 200), 13.7, None, Verdict.MISSED),
        (Target(">=", 10, on="ratio"), 1000.0, 100.0, Verdict.MET),
        (Target(">=", 10, on="ratio"), 999.0, 100.0, Verdict.MISSED),
        (Target("<=", 1 / 3, on="ratio"), 3.7, 14.2, Verdict.MET),
        (Target("<=", 100, on="difference"), 100.1, 0.1, Verdict.MET),
        (Target("<=", 100, on="difference"), 666.0, 0.1, Verdict.MISSED),
    ],
)
def test_verdict_checks_the_targets_subject(
    target: Target, value: float, baseline: float | None, verdict: Verdict
) -> None:
    assert fig(value, baseline, target=target).verdict is verdict


def test_no_target_is_reported_and_no_value_is_not_measured() -> None:
    assert fig(1.0).verdict is Verdict.REPORTED
    assert fig(None, target=Target("<=", 1)).verdict is Verdict.NOT_MEASURED
    # a ratio target without a baseline cannot be judged
    assert fig(5.0, target=Target(">=", 2, on="ratio")).verdict is Verdict.NOT_MEASURED


def test_target_descriptions() -> None:
    assert Target("<=", 200_000).describe("gas") == "≤ 200,000 gas"
    assert Target(">=", 10, on="ratio").describe("jobs/s") == f"≥ 10{X}"
    assert Target("<=", 100, on="difference").describe("ms") == "overhead ≤ 100 ms"
    assert Target("<=", 0.5, on="ratio", text="≤ 1/2 of the whole").describe("s") == (
        "≤ 1/2 of the whole"
    )


def test_number_and_ratio_formats() -> None:
    assert fmt_number(383_045.0) == "383,045"
    assert fmt_number(13.74) == "13.7"
    assert fmt_number(0.1034) == "0.103"
    assert fmt_ratio(1.0865) == f"1.09{X}"
    assert fmt_ratio(0.0027) == f"0.0027{X}"
    assert fmt_ratio(6464.4) == f"6,464.4{X}"
    assert fmt_ratio(None) == "—"


# ---------------------------------------------------------------- rows and report


def gas_row() -> RowResult:
    return RowResult(
        key="gas",
        title="1-2. Gas",
        figures=[
            Figure(
                "1",
                "gas single",
                383_045.0,
                "gas",
                baseline=352_544.0,
                baseline_name="Infernet",
                target=Target("<=", 200_000),
            ),
            Figure("2", "gas batched", 80_000.0, "gas", 383_045.0, "single", Target("<=", 90_000)),
        ],
        details="| step | gas |",
        profile="SSTORE dominates",
        plots=["2026-01-01-gas.png"],
        data={"single": {"submit": 166_285}},
    )


def test_row_lists_only_its_missed_figures() -> None:
    row = gas_row()
    assert [f.label for f in row.missed] == ["1"]


def test_failed_and_skipped_rows_are_told_apart() -> None:
    failed = RowResult(key="api", title="7b. API", error="RuntimeError: did not start")
    skipped = RowResult(key="proof", title="6. Proofs", error="skipped by --quick", skipped=True)
    assert failed.failed and not skipped.failed
    assert not gas_row().failed


def test_json_round_trips_figures_ratios_and_verdicts() -> None:
    skipped = RowResult(key="proof", title="6. Proofs", error="skipped", skipped=True)
    data = json.loads(to_json(report(gas_row(), skipped)))
    assert data["verdicts"] == {"met": 1, "NOT met": 1, "reported": 0, "not measured": 0}
    single, batched = data["rows"][0]["figures"]
    assert single["verdict"] == "NOT met"
    assert single["ratio"] == pytest.approx(383_045 / 352_544)
    assert single["target"] == {
        "op": "<=",
        "threshold": 200_000,
        "on": "value",
        "text": "≤ 200,000 gas",
    }
    assert batched["verdict"] == "met"
    assert data["rows"][1] == {
        "key": "proof",
        "title": "6. Proofs",
        "error": "skipped",
        "skipped": True,
        "seconds": 0.0,
        "figures": [],
        "plots": [],
        "data": {},
    }


def test_json_accepts_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    row = RowResult(key="x", title="x", data={"p50": np.float64(1.5), "n": np.int64(3)})
    assert json.loads(to_json(report(row)))["rows"][0]["data"] == {"p50": 1.5, "n": 3}


def test_summary_table_has_one_line_per_figure_and_says_not_met_plainly() -> None:
    skipped = RowResult(key="proof", title="6. Proofs", error="skipped by --quick", skipped=True)
    lines = summary_table(report(gas_row(), skipped)).splitlines()
    assert len(lines) == 2 + 2 + 1
    first = f"| 1 | gas single | 383,045 gas | 352,544 gas (Infernet) | 1.09{X} |"
    assert lines[2].startswith(first)
    assert lines[2].endswith("| ≤ 200,000 gas | **NOT met** |")
    assert lines[3].endswith("| met |")
    assert "not measured: skipped by --quick" in lines[4]


def test_summary_table_escapes_pipes() -> None:
    row = RowResult(key="x", title="x", figures=[Figure("7", "a | b", 1.0, "s")])
    assert "a \\| b" in summary_table(report(row))


def test_markdown_has_summary_details_plots_and_a_closing_note_for_misses() -> None:
    md = render_markdown(report(gas_row()), image_prefix="../bench/results/")
    assert md.startswith("# verimarket benchmarks — 2026-01-01")
    assert "Machine: 2-core test CPU" in md
    assert "Verdicts: 1 met, 1 NOT met, 0 reported, 0 not measured." in md
    assert "![2026-01-01-gas.png](../bench/results/2026-01-01-gas.png)" in md
    closing = md.split("## What limits the missed targets", 1)[1]
    assert "**NOT met** — 1 gas single: 383,045 gas, target ≤ 200,000 gas." in closing
    assert "SSTORE dominates" in closing
    assert "gas batched" not in closing


def test_markdown_says_when_every_target_was_met() -> None:
    row = RowResult(
        key="x",
        title="x",
        figures=[
            Figure("5", "speed-up", 50.0, "items/s", 5.0, "batch 1", Target(">=", 5, "ratio"))
        ],
        profile="never shown",
    )
    md = render_markdown(report(row))
    assert "Every target measured in this run was met." in md
    assert "never shown" not in md


def test_markdown_shows_ratio_targets_as_ratios_in_the_closing_note() -> None:
    row = RowResult(
        key="x",
        title="x",
        figures=[
            Figure("5", "speed-up", 18.0, "items/s", 17.0, "batch 1", Target(">=", 5, "ratio"))
        ],
    )
    assert f"speed-up: 1.06{X}, target ≥ 5{X}." in render_markdown(report(row))


# ---------------------------------------------------------------- --only


def test_only_accepts_names_and_issue_row_numbers_in_suite_order() -> None:
    assert parse_only(None) == ROWS
    assert parse_only("api, 1") == ("gas", "api")
    assert parse_only("7,latency") == ("latency", "indexer", "api")


def test_only_rejects_unknown_rows() -> None:
    with pytest.raises(ValueError, match="unknown row 'fast'"):
        parse_only("gas,fast")
