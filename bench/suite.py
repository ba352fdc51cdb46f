"""The benchmark suite behind ``verimarket bench``: run the rows, write JSON, markdown, plots.

Rows (the issue's table; ``--only`` takes these names or the row numbers):

    gas         1-2  gas per job, single and batched by 32 (anvil, receipts)
    latency     3    submit → result p50/p95/p99 at 1, 10, 50 agents vs direct torch
    throughput  4    jobs/s: marketplace, worker batched vs one job at a time
    batching    5    MiniLM items/s, batch 1…64 vs batch 1
    proof       6    ezkl segment proofs vs the whole model as one circuit
    indexer     7    indexer events/s
    api         7    API requests/s and p99

A row that fails is reported as "not measured" with the reason; the others still run.

    .venv/bin/python -m bench.suite [--quick] [--only gas,latency] [--broker redis://…]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.report import Report, RowResult, render_markdown, summary_table, to_json
from market.paths import REPO_ROOT, artifacts_dir, foundry_tool

ROWS = ("gas", "latency", "throughput", "batching", "proof", "indexer", "api")
TITLES = {
    "gas": "1-2. Gas per job, single and batched by 32",
    "latency": "3. Time from submit to result vs direct torch",
    "throughput": "4. Jobs per second, digits MLP",
    "batching": "5. Dynamic batching speed-up, MiniLM on CPU",
    "proof": "6. Proofs: per segment vs the whole model",
    "indexer": "7a. Indexer events/s",
    "api": "7b. API requests/s and p99",
}
ALIASES = {
    "1": ("gas",),
    "2": ("gas",),
    "3": ("latency",),
    "4": ("throughput",),
    "5": ("batching",),
    "6": ("proof",),
    "7": ("indexer", "api"),
}


@dataclass(frozen=True)
class SuiteConfig:
    """What to run and where to write. ``quick``: small sizes for a smoke run."""

    quick: bool = False
    only: tuple[str, ...] = ROWS
    broker: str | None = None
    out: Path = REPO_ROOT / "bench" / "results"
    artifacts: Path = field(default_factory=artifacts_dir)
    #: Also write the markdown here (e.g. docs/benchmarks.md), its plot links adjusted.
    publish: Path | None = None

    @property
    def demo_levels(self) -> list[tuple[int, int]]:
        """(concurrent agents, jobs) per demo run."""
        return [(10, 30)] if self.quick else [(1, 20), (10, 100), (50, 300)]

    @property
    def worker_jobs(self) -> int:
        return 1500 if self.quick else 6000

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return (1, 8, 32) if self.quick else (1, 2, 4, 8, 16, 32, 64)

    @property
    def minilm_items(self) -> int:
        return 32 if self.quick else 128

    @property
    def index_rounds(self) -> int:
        return 2 if self.quick else 8

    @property
    def api(self) -> tuple[int, int, int]:
        """(clients, requests, seeded jobs)."""
        return (20, 1000, 1000) if self.quick else (50, 5000, 5000)

    @property
    def prover_repeat(self) -> int:
        """prove/verify runs per circuit (median)."""
        return 1 if self.quick else 3

    @property
    def stem(self) -> str:
        name = dt.date.today().isoformat()
        if self.quick:
            name += "-quick"
        if set(self.only) != set(ROWS):
            name += "-" + "-".join(r for r in ROWS if r in self.only)
        return name


def parse_only(text: str | None) -> tuple[str, ...]:
    """``"gas,3,api"`` → the row names, in suite order. Raises ValueError on unknown names."""
    if not text:
        return ROWS
    chosen: set[str] = set()
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part in ROWS:
            chosen.add(part)
        elif part in ALIASES:
            chosen.update(ALIASES[part])
        else:
            raise ValueError(
                f"unknown row {part!r}: choose from {', '.join(ROWS)} or the numbers 1-7"
            )
    return tuple(r for r in ROWS if r in chosen)


# ---------------------------------------------------------------- the machine


def machine(broker: str | None) -> dict[str, Any]:
    """What the run ran on, for the report (noisy shared machines say so)."""
    import torch

    cpu = "unknown CPU"
    mem_gib = 0.0
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln)
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_gib = int(meminfo[0].split()[1]) / 2**20
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    cores = os.cpu_count() or 0
    load = os.getloadavg()
    shared = " (other processes share the machine)" if load[0] > cores / 2 else ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
    return {
        "description": f"{cores}-core {cpu}, {mem_gib:.0f} GiB RAM, GPU: {gpu}, "
        f"load average {load[0]:.1f} at start{shared}",
        "cpu": cpu,
        "cores": cores,
        "memory_gib": round(mem_gib, 1),
        "gpu": gpu,
        "load_average_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "anvil": _anvil_version(),
        "broker": broker or "filesystem (kombu, embedded default)",
        "database": "SQLite (embedded default)",
        "git": _git_revision(),
    }


def _anvil_version() -> str:
    try:
        out = subprocess.run(
            [str(foundry_tool("anvil")), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------- running


def _row(key: str, log: Console, fn: Callable[[], RowResult]) -> RowResult:
    log.print(f"[bold]▶ {TITLES[key]}[/]")
    t = time.perf_counter()
    try:
        row = fn()
    except Exception as exc:  # noqa: BLE001 - a failed row is reported, the others run
        log.print(f"[red]  failed:[/] {type(exc).__name__}: {exc}")
        log.print(traceback.format_exc(), markup=False, highlight=False)
        row = RowResult(key=key, title=TITLES[key], error=f"{type(exc).__name__}: {exc}")
    row.seconds = time.perf_counter() - t
    verdicts = ", ".join(f"{f.label} {f.verdict}" for f in row.figures)
    log.print(f"  done in {row.seconds:.0f} s{': ' + verdicts if verdicts else ''}")
    return row


def _skipped(key: str, why: str) -> RowResult:
    return RowResult(key=key, title=TITLES[key], error=why, skipped=True)


def run_rows(cfg: SuiteConfig, log: Console) -> list[RowResult]:
    import torch

    from bench import rows_api, rows_chain, rows_market, rows_proof, rows_worker
    from market.config import get_settings

    threads = get_settings().torch_threads
    torch.set_num_threads(threads)  # as the worker runs (VERIMARKET_TORCH_THREADS)
    rows: dict[str, RowResult] = {}
    quiet = Console(stderr=True, quiet=True)

    if {"gas", "indexer"} & set(cfg.only):
        try:
            with rows_chain.chain_world(cfg.artifacts) as world:
                if "gas" in cfg.only:
                    rows["gas"] = _row("gas", log, lambda: rows_chain.gas_row(world))
                if "indexer" in cfg.only:
                    rows["indexer"] = _row(
                        "indexer", log, lambda: rows_chain.indexer_row(world, cfg.index_rounds)
                    )
        except Exception as exc:  # noqa: BLE001 - the chain could not start: report it
            for key in ("gas", "indexer"):
                if key in cfg.only and key not in rows:
                    rows[key] = RowResult(
                        key=key, title=TITLES[key], error=f"anvil set-up failed: {exc}"
                    )

    summaries: dict[int, Any] = {}
    if "latency" in cfg.only:

        def latency() -> RowResult:
            row, found = rows_market.latency_row(
                cfg.artifacts, cfg.demo_levels, cfg.broker, quiet, log
            )
            summaries.update(found)
            return row

        rows["latency"] = _row("latency", log, latency)

    if "throughput" in cfg.only:

        def throughput() -> RowResult:
            top = max(c for c, _ in cfg.demo_levels)
            if top not in summaries:
                jobs = dict(cfg.demo_levels)[top]
                log.print(f"  demo: {top} concurrent agents, {jobs} jobs …")
                summaries[top] = rows_market.run_level(cfg.artifacts, top, jobs, cfg.broker, quiet)[
                    0
                ]
            return rows_worker.throughput_row(
                cfg.artifacts, cfg.worker_jobs, summaries[top], top, threads
            )

        rows["throughput"] = _row("throughput", log, throughput)

    if "batching" in cfg.only:
        rows["batching"] = _row(
            "batching",
            log,
            lambda: rows_worker.batching_row(cfg.artifacts, cfg.batch_sizes, cfg.minilm_items),
        )

    if "proof" in cfg.only:
        if cfg.quick and set(cfg.only) == set(ROWS):
            rows["proof"] = _skipped(
                "proof",
                "skipped by --quick (cold ezkl circuit builds take minutes); "
                "run `verimarket bench --only proof`",
            )
        else:
            rows["proof"] = _row(
                "proof", log, lambda: rows_proof.proof_row(cfg.artifacts, cfg.prover_repeat)
            )

    if "api" in cfg.only:
        clients, requests, jobs = cfg.api
        rows["api"] = _row("api", log, lambda: rows_api.api_row(clients, requests, jobs))

    return [rows[k] for k in ROWS if k in rows]


def add_plots(report: Report, out: Path, stem: str) -> None:
    """Draw the curves of the rows that ran; a plot that fails is left out, not fatal."""
    from bench import plots

    for row in report.rows:
        if row.error is not None:
            continue
        try:
            if row.key == "latency":
                row.plots.append(plots.latency(row.data, out / f"{stem}-latency.png"))
            elif row.key == "batching":
                row.plots.append(plots.minilm(row.data, out / f"{stem}-minilm-batching.png"))
            elif row.key == "gas":
                row.plots.append(plots.gas(row.data, "batch32", out / f"{stem}-gas.png"))
        except Exception as exc:  # noqa: BLE001 - a missing plot does not void the figures
            row.details += f"\n\n(plot not drawn: {exc})"


def run_suite(cfg: SuiteConfig, log: Console) -> tuple[Report, list[Path]]:
    """Run the chosen rows and write ``<out>/<stem>.json``, ``.md`` and the PNGs."""
    import torch

    from market.config import get_settings

    started = time.perf_counter()
    torch.set_num_threads(get_settings().torch_threads)  # as the worker runs
    info = machine(cfg.broker)
    rows = run_rows(cfg, log)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report = Report(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=info,
        options={
            "mode": "quick" if cfg.quick else "full",
            "only": list(cfg.only),
            "broker": cfg.broker,
            "demo_levels": cfg.demo_levels,
            "worker_jobs": cfg.worker_jobs,
            "batch_sizes": list(cfg.batch_sizes),
            "api": list(cfg.api),
            "prover_repeat": cfg.prover_repeat,
        },
        rows=rows,
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    add_plots(report, cfg.out, cfg.stem)
    report.wall_s = time.perf_counter() - started
    json_path, md_path = cfg.out / f"{cfg.stem}.json", cfg.out / f"{cfg.stem}.md"
    json_path.write_text(to_json(report))
    md_path.write_text(render_markdown(report))
    written = [json_path, md_path, *(cfg.out / p for r in rows for p in r.plots)]
    if cfg.publish is not None:
        prefix = os.path.relpath(cfg.out, cfg.publish.parent).replace(os.sep, "/") + "/"
        cfg.publish.parent.mkdir(parents=True, exist_ok=True)
        cfg.publish.write_text(render_markdown(report, image_prefix=prefix))
        written.append(cfg.publish)
    return report, written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", help="rows, comma-separated (names or numbers 1-7)")
    ap.add_argument("--broker", help="Celery broker URL for the demo runs (default: filesystem)")
    ap.add_argument("--out", type=Path, default=SuiteConfig().out)
    ap.add_argument("--publish", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)
    try:
        only = parse_only(args.only)
    except ValueError as exc:
        ap.error(str(exc))
    cfg = SuiteConfig(
        quick=args.quick, only=only, broker=args.broker, out=args.out, publish=args.publish
    )
    log = Console(stderr=True)
    report, written = run_suite(cfg, log)
    print(summary_table(report))
    for path in written:
        log.print(f"wrote {path}")
    return 1 if any(r.failed for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
