"""A JSON-RPC proxy in front of anvil that injects faults: timeouts (the request still
reaches the chain, the answer never comes back), HTTP 429, and "too many results" for log
queries. Loopback only; it stops with the test."""

from __future__ import annotations

import contextlib
import http.server
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class FaultPlan:
    rate: float = 0.3
    timeout_s: float = 1.5
    seed: int = 1
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0


class RpcFaultProxy:
    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.upstream = upstream
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._logs_calls = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.handle(self, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> RpcFaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _pick(self, method: str) -> str | None:
        with self._lock:
            if method == "eth_getLogs":
                self._logs_calls += 1
                if self._logs_calls % 4 == 0:
                    # every fourth log query is refused as too large, whatever the dice say,
                    # so the narrowing path runs on every run, not only on lucky ones
                    self.plan.injected["too-many"] += 1
                    return "too-many"
            if self._rng.random() >= self.plan.rate:
                return None
            kinds = ["timeout", "429"] + (["too-many"] if method == "eth_getLogs" else [])
            kind = self._rng.choice(kinds)
            self.plan.injected[kind] += 1
            return kind

    def handle(self, req: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        method = doc.get("method", "") if isinstance(doc, dict) else "batch"
        fault = self._pick(method)
        if fault == "429":
            req.send_response(429)
            req.send_header("Retry-After", "0")
            req.send_header("Content-Length", "17")
            req.end_headers()
            req.wfile.write(b"Too Many Requests")
            return
        if fault == "too-many":
            out = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": doc.get("id"),
                    "error": {"code": -32005, "message": "query returned more than 10000 results"},
                }
            ).encode()
            self._reply(req, out)
            return
        upstream = httpx.post(
            self.upstream, content=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        with self._lock:
            self.plan.forwarded += 1
        if fault == "timeout":
            time.sleep(self.plan.timeout_s)  # the chain has it; the caller has given up
        with contextlib.suppress(OSError):
            self._reply(req, upstream.content)

    @staticmethod
    def _reply(req: http.server.BaseHTTPRequestHandler, out: bytes) -> None:
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(out)))
        req.end_headers()
        req.wfile.write(out)
