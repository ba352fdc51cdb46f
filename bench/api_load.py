"""API latency under concurrent clients (loopback only, bounded request count).

Seeds a SQLite index with synthetic jobs, nodes and models, starts the API in its own
process (uvicorn, one worker, as ``verimarket api`` runs it), then drives it with N
concurrent asyncio clients and prints p50/p95/p99 per route and overall. The baseline,
measured in the same run at the same concurrency, is ``GET /health`` alone: the floor set
by uvicorn, the middleware and one trivial query.

    .venv/bin/python bench/api_load.py [--clients 50] [--requests 5000] [--jobs 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from eth_utils.crypto import keccak

from market.chain.types import JobStatus
from market.db import Base, make_engine, make_sessions, sqlite_url
from market.db.models import Job, Model, ModelSegment, Node, NodeModel, Result

T0 = 1_700_000_000


def h(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def addr(i: int) -> str:
    from eth_utils.address import to_checksum_address

    return to_checksum_address("0x" + keccak(text=f"addr {i}").hex()[-40:])


def seed(url: str, n_jobs: int, rng: random.Random) -> tuple[list[str], list[str]]:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    models = [h(f"model {i}") for i in range(4)]
    nodes = [addr(i) for i in range(16)]
    agents = [addr(1000 + i) for i in range(64)]
    with make_sessions(engine)() as s:
        for i, m in enumerate(models):
            s.add(
                Model(
                    model_id=m,
                    owner=agents[0],
                    artifacts_hash=h(f"a{i}"),
                    output_scale=16,
                    segment_count=3,
                    registered_block=1,
                    registered_at=T0,
                    tx_hash=h(f"m{i}"),
                )
            )
            for k in range(3):
                s.add(
                    ModelSegment(
                        model_id=m,
                        index=k,
                        segment_hash=h(f"s{i}{k}"),
                        vk_hash=h(f"v{i}{k}"),
                        verifier=nodes[0],
                    )
                )
        for n in nodes:
            s.add(Node(address=n, registered=True, stake=10**18, updated_block=1))
            for m in models:
                s.add(NodeModel(node=n, model_id=m, price=10**14, updated_block=1))
        s.flush()
        for j in range(1, n_jobs + 1):
            submitted = T0 + 3 * j
            status = rng.choice(
                [
                    JobStatus.OPEN,
                    JobStatus.CLAIMED,
                    JobStatus.COMMITTED,
                    JobStatus.SETTLED,
                    JobStatus.SETTLED,
                    JobStatus.EXPIRED,
                ]
            )
            job = Job(
                job_id=j,
                status=status,
                payer=rng.choice(agents),
                from_vault=False,
                mode=0,
                model_id=rng.choice(models),
                input_hash=h(f"i{j}"),
                max_fee=10**15,
                deadline=submitted + 3600,
                callback=agents[0],
                callback_gas_limit=0,
                submit_block=j,
                submitted_at=submitted,
                submit_tx=h(f"t{j}"),
                updated_block=j,
            )
            if status is not JobStatus.OPEN:
                job.node, job.claim_block, job.claimed_at = rng.choice(nodes), j + 1, submitted + 1
            if status in (JobStatus.COMMITTED, JobStatus.SETTLED):
                job.commit_block, job.committed_at = j + 2, submitted + rng.randint(2, 30)
                job.result_hash, job.commit_tx = h(f"r{j}"), h(f"c{j}")
            s.add(job)
            if job.committed_at is not None:
                s.flush()
                s.add(
                    Result(
                        job_id=j,
                        node=job.node or nodes[0],
                        result_hash=h(f"r{j}"),
                        window_end=job.committed_at + 60,
                        block_number=j + 2,
                        committed_at=job.committed_at,
                        tx_hash=h(f"c{j}"),
                    )
                )
        s.commit()
    engine.dispose()
    return models, nodes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round((len(v) - 1) * q / 100))]


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str
) -> int:
    """One keep-alive HTTP/1.1 GET; returns the status. (A raw client: httpx's own CPU cost
    on a small machine would be measured instead of the server's.)"""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def drive(
    host: str, port: int, paths: list[tuple[str, str]], clients: int
) -> tuple[dict[str, list[float]], float, int]:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    lat: dict[str, list[float]] = {}
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                try:
                    route, path = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                try:
                    status = await _get(reader, writer, f"{host}:{port}", path)
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                lat.setdefault(route, []).append(time.perf_counter() - t)
                errors += status != 200
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return lat, time.perf_counter() - start, errors


def report(title: str, lat: dict[str, list[float]], wall: float, errors: int) -> None:
    everything = [x for v in lat.values() for x in v]
    print(
        f"\n{title}: {len(everything)} requests in {wall:.2f} s "
        f"({len(everything) / wall:.0f} req/s), {errors} errors or non-200"
    )
    print(f"  {'route':32} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for route, v in [*sorted(lat.items()), ("ALL", everything)]:
        print(
            f"  {route:32} {len(v):6d} {pct(v, 50) * 1e3:8.1f} {pct(v, 95) * 1e3:8.1f} "
            f"{pct(v, 99) * 1e3:8.1f}"
        )


def start_api_server(url: str, data_dir: str) -> tuple[subprocess.Popen[bytes], int]:
    """One uvicorn process of the market API on ``url``'s database, on a free loopback
    port, with rate limits lifted (the load is the point). Returns (process, port)."""
    port = free_port()
    env = {
        **os.environ,
        "VERIMARKET_DATABASE_URL": url,
        "VERIMARKET_DATA": data_dir,
        "VERIMARKET_API_RATE_PER_S": "1000000",
        "VERIMARKET_API_RATE_BURST": "1000000",
        "VERIMARKET_API_CHAIN_ID": "31337",
    }
    code = (
        "import uvicorn; from market.api.app import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning', "
        "timeout_keep_alive=60, backlog=4096)"
    )
    return subprocess.Popen([sys.executable, "-c", code], env=env), port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        url = sqlite_url(Path(tmp) / "market.sqlite")
        models, nodes = seed(url, args.jobs, rng)
        server, port = start_api_server(url, tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API did not start")
                time.sleep(0.1)
            mix: list[tuple[str, Callable[[], str]]] = [
                ("GET /jobs", lambda: "/jobs?limit=50"),
                (
                    "GET /jobs?state&model",
                    lambda: f"/jobs?state=settled&model={rng.choice(models)}&limit=20",
                ),
                ("GET /jobs?node", lambda: f"/jobs?node={rng.choice(nodes)}&limit=20"),
                ("GET /jobs/{id}", lambda: f"/jobs/{rng.randint(1, args.jobs)}"),
                ("GET /nodes/{address}", lambda: f"/nodes/{rng.choice(nodes)}"),
                ("GET /models/{id}", lambda: f"/models/{rng.choice(models)}"),
                ("GET /stats", lambda: "/stats"),
            ]
            weights = [20, 15, 15, 35, 5, 5, 5]
            picks = rng.choices(mix, weights, k=args.requests)
            paths = [(name, make()) for name, make in picks]
            asyncio.run(drive("127.0.0.1", port, [("warm-up", "/jobs/1")] * 200, args.clients))
            baseline = asyncio.run(
                drive("127.0.0.1", port, [("GET /health", "/health")] * args.requests, args.clients)
            )
            loaded = asyncio.run(drive("127.0.0.1", port, paths, args.clients))
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"verimarket API under {args.clients} concurrent clients, {args.jobs} indexed jobs "
        "(SQLite, one uvicorn process, loopback)"
    )
    report("baseline (GET /health only)", *baseline)
    report("read mix", *loaded)


if __name__ == "__main__":
    main()
