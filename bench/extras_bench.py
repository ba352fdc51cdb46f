"""Issue #10's figures, each beside its baseline measured in the same run:

- gas of a redundant 2-of-3 digits job (submit, 3 commits, 3 reveals, finalize), in total
  and per node transaction, beside one ordinary single-node job (submit, claim, commit,
  finalize) on the same chain;
- latency of a cache hit (submit -> result on chain, settled at once) beside a fresh run of
  the same input (submit -> claim -> inference -> commit), ``--reps`` of each, interleaved.

    .venv/bin/python -m bench.extras_bench [--reps 30] [--out bench/results/issue10-<date>.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

from rich.console import Console

from market.demo_extras import run_extras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30, help="fresh runs and cache hits, each")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path("bench/results") / f"issue10-{dt.date.today().isoformat()}.json"
    console = Console(stderr=True)
    figures = run_extras(
        redundant=True, cache=True, as_json=False, console=console, cache_reps=args.reps
    )
    red, cache = figures["redundant"], figures["cache"]
    single = cache["fresh_gas_total"]
    figures["summary"] = {
        "machine": f"{platform.machine()} {platform.node()}, anvil automine, torch CPU",
        "redundant_2of3_gas_total": red["gas_total"],
        "redundant_gas_per_node_commit_plus_reveal": red["gas_per_node"],
        "single_node_job_gas_total": single,
        "redundant_vs_single": round(red["gas_total"] / single, 2),
        "cache_hit_ms_median": cache["cache_hit_ms_median"],
        "fresh_result_ms_median": cache["fresh_result_ms_median"],
        "cache_hit_vs_fresh": round(
            cache["cache_hit_ms_median"] / cache["fresh_result_ms_median"], 2
        ),
        "cache_hit_ms_min": cache["cache_hit_ms_min"],
        "fresh_result_ms_min": cache["fresh_result_ms_min"],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cache_hit_gas_total": cache["cache_hit_gas_total"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    console.print(json.dumps(figures["summary"], indent=1))
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
