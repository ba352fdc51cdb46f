"""`verimarket bench`: run the benchmark suite and write its report.

Wired into the main CLI by ``market.cli_bench.register(app)``. The suite lives in the
checkout's ``bench/`` package (next to ``src/``), so the command runs from a clone after
``make setup``; it is imported when the command runs, never at CLI start-up.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console

from market.errors import ConfigError, VerimarketError
from market.paths import REPO_ROOT

err_console = Console(stderr=True)

QuickOpt = Annotated[
    bool, typer.Option("--quick", help="small sizes: a smoke run of every row (< 2 min)")
]
OnlyOpt = Annotated[
    str | None,
    typer.Option(
        "--only",
        help="rows to run, comma-separated: gas, latency, throughput, batching, proof, "
        "indexer, api, or the issue's row numbers 1-7",
        show_default=False,
    ),
]
BrokerOpt = Annotated[
    str | None,
    typer.Option(help="Celery broker for the demo runs, e.g. redis://… (default: filesystem)"),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="folder for the report (default: bench/results)")
]
PublishOpt = Annotated[
    Path | None,
    typer.Option("--publish", help="also write the markdown report here (docs/benchmarks.md)"),
]


def load_suite() -> ModuleType:
    """Import ``bench.suite`` from the checkout; ConfigError when there is none."""
    if not (REPO_ROOT / "bench" / "suite.py").exists():
        raise ConfigError(
            f"no benchmark suite at {REPO_ROOT / 'bench'}: `verimarket bench` runs from a "
            "clone of the repository (after `make setup`)"
        )
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("bench.suite")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""

    @app.command("bench")
    def bench(
        quick: QuickOpt = False,
        only: OnlyOpt = None,
        broker: BrokerOpt = None,
        out: OutOpt = None,
        publish: PublishOpt = None,
    ) -> None:
        """Run the benchmarks beside their baselines; write bench/results/<date>.json and .md.

        Ratios to baselines measured in the same run, targets and verdicts: bench/README.md.

        Exit code 1 when a row could not be measured (a missed target is not an error).
        """
        try:
            suite = load_suite()
            try:
                rows = suite.parse_only(only)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--only") from None
            defaults = suite.SuiteConfig()
            cfg = suite.SuiteConfig(
                quick=quick,
                only=rows,
                broker=broker,
                out=out or defaults.out,
                publish=publish,
            )
            report, written = suite.run_suite(cfg, err_console)
        except VerimarketError as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None
        print(suite.summary_table(report))
        for path in written:
            err_console.print(f"wrote {path}")
        if any(row.failed for row in report.rows):
            raise typer.Exit(1)
