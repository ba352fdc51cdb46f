"""The report's plots (matplotlib, PNG), where a curve says more than a table.

Each function takes a row's ``data`` and writes one PNG; it returns the file name (the
report links it relative to the markdown file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def latency(data: dict[str, Any], out: Path) -> str:
    """p50/p95/p99 against concurrent agents, with direct torch and the targets."""
    levels = sorted(data["levels"], key=int)
    xs = [int(c) for c in levels]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s--"), ("p99_ms", "^:")):
        ax.plot(xs, [data["levels"][c][key] for c in levels], style, label=f"market {key[:3]}")
    direct = data["direct_ms"]["p50"]
    ax.axhline(direct, color="grey", lw=1, label=f"direct torch p50 ({direct:.2f} ms)")
    ax.axhline(direct + 100, color="green", lw=1, ls="--", label="p50 target (direct + 100 ms)")
    ax.axhline(2000, color="red", lw=1, ls="--", label="p99 target at 50 agents (2 s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent agents")
    ax.set_ylabel("submit → result (ms)")
    ax.set_title("Time to result vs concurrency")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out)


def minilm(data: dict[str, Any], out: Path) -> str:
    """Items/s against batch size, with the 5x-of-batch-1 target."""
    curve = {int(b): v for b, v in data["items_per_s"].items()}
    xs = sorted(curve)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(xs, [curve[b] for b in xs], "o-", label="MiniLM items/s")
    ax.axhline(5 * curve[1], color="red", lw=1, ls="--", label="target at batch 32: 5x batch 1")
    ax.axhline(curve[1], color="grey", lw=1, label="batch 1")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size")
    ax.set_ylabel("items per second")
    ax.set_title("Dynamic batching, MiniLM on CPU (float64, 1 thread)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, out)


def gas(data: dict[str, Any], batch_key: str, out: Path) -> str:
    """Stacked gas per job by step, single against batched, with both targets."""
    steps = ("submit", "claim", "commit", "finalize")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labels = ["single", batch_key.replace("batch", "batched by ")]
    bottoms = [0.0, 0.0]
    for step in steps:
        values = [data["single"][step]["gas_used"], data[batch_key][step]["gas_used"]]
        ax.bar(labels, values, bottom=bottoms, label=step)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.axhline(200_000, color="red", lw=1, ls="--", label="single target 200k")
    ax.axhline(90_000, color="purple", lw=1, ls="--", label="batched target 90k")
    ax.axhline(352_544, color="grey", lw=1, label="Infernet 352,544")
    ax.set_ylabel("gas per job")
    ax.set_title("Gas per job by step (receipts)")
    ax.legend(fontsize=7)
    return _save(fig, out)


def _save(fig: Any, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out.name
