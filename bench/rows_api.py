"""Row 7b: the market API's requests/s and p99 under concurrent clients.

The seeding, the raw keep-alive client and the route mix are ``bench/api_load.py``'s; this
module starts the API the way that script does (its own uvicorn process, one worker, SQLite)
and reports the read mix beside its baseline, ``GET /health`` alone at the same concurrency.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.report import Figure, RowResult

WEIGHTS = (20, 15, 15, 35, 5, 5, 5)


def _wait_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the API did not start")
        time.sleep(0.1)


def api_row(clients: int, requests: int, jobs: int, seed: int = 7) -> RowResult:
    from bench.api_load import drive, pct, start_api_server
    from bench.api_load import seed as seed_db
    from market.db import sqlite_url

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url = sqlite_url(Path(tmp) / "market.sqlite")
        models, nodes = seed_db(url, jobs, rng)
        server, port = start_api_server(url, tmp)
        try:
            _wait_up(f"http://127.0.0.1:{port}", server)
            mix: list[tuple[str, Callable[[], str]]] = [
                ("GET /jobs", lambda: "/jobs?limit=50"),
                (
                    "GET /jobs?state&model",
                    lambda: f"/jobs?state=settled&model={rng.choice(models)}&limit=20",
                ),
                ("GET /jobs?node", lambda: f"/jobs?node={rng.choice(nodes)}&limit=20"),
                ("GET /jobs/{id}", lambda: f"/jobs/{rng.randint(1, jobs)}"),
                ("GET /nodes/{address}", lambda: f"/nodes/{rng.choice(nodes)}"),
                ("GET /models/{id}", lambda: f"/models/{rng.choice(models)}"),
                ("GET /stats", lambda: "/stats"),
            ]
            picks = rng.choices(mix, WEIGHTS, k=requests)
            paths = [(name, make()) for name, make in picks]
            host = "127.0.0.1"
            asyncio.run(drive(host, port, [("warm-up", "/jobs/1")] * 200, clients))
            health = [("GET /health", "/health")] * requests
            base_lat, base_wall, base_err = asyncio.run(drive(host, port, health, clients))
            lat, wall, errors = asyncio.run(drive(host, port, paths, clients))
        finally:
            server.terminate()
            server.wait(10)
    every = [x for v in lat.values() for x in v]
    base_all = [x for v in base_lat.values() for x in v]
    rps, base_rps = len(every) / wall, len(base_all) / base_wall
    p99, base_p99 = pct(every, 99) * 1000, pct(base_all, 99) * 1000
    figures = [
        Figure(
            "7b",
            f"API requests/s, read mix, {clients} clients",
            rps,
            "req/s",
            baseline=base_rps,
            baseline_name="GET /health alone",
        ),
        Figure(
            "7b",
            f"API p99, read mix, {clients} clients",
            p99,
            "ms",
            baseline=base_p99,
            baseline_name="GET /health alone",
        ),
    ]
    lines = [
        "| route | n | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for route, v in [*sorted(lat.items()), ("ALL (read mix)", every), ("GET /health", base_all)]:
        lines.append(
            f"| {route} | {len(v)} | {pct(v, 50) * 1e3:.1f} | {pct(v, 95) * 1e3:.1f} | "
            f"{pct(v, 99) * 1e3:.1f} |"
        )
    details = (
        f"`bench/api_load.py`'s seeding and client: {jobs:,} indexed jobs (SQLite), one uvicorn "
        f"process, {clients} keep-alive clients on loopback, {requests:,} requests per run; "
        f"{errors + base_err} errors or non-200.\n\n" + "\n".join(lines)
    )
    return RowResult(
        key="api",
        title="7b. API requests/s and p99",
        figures=figures,
        details=details,
        data={
            "clients": clients,
            "requests": requests,
            "jobs": jobs,
            "errors": errors + base_err,
            "routes_ms": {
                r: {"n": len(v), "p50": pct(v, 50) * 1e3, "p99": pct(v, 99) * 1e3}
                for r, v in lat.items()
            },
            "read_mix": {"req_per_s": rps, "p99_ms": p99},
            "health": {"req_per_s": base_rps, "p99_ms": base_p99},
        },
    )
