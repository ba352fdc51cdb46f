"""Schemathesis over the API's OpenAPI document, every check, against a live uvicorn.

The server runs in a thread on a free loopback port over a seeded SQLite index; the run is
the schemathesis CLI in a subprocess, signed in (a bearer token in a header) so the write
routes are exercised past authentication. Zero failures is the bar.

One documented exception: ``PUT /blobs/{hash}`` answers 400 when the body does not hash to
the name. That constraint ties the body to the path and cannot be written in OpenAPI, so the
positive-data check is told that 400 is an expected answer for that one operation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from market.api.app import create_app
from market.api.client_auth import ApiClient
from market.db import make_sessions
from tests.integration.test_api import KEYS, make_db, make_settings, seed

pytestmark = pytest.mark.integration

CONFIG = """\
[[operations]]
include-path = "/blobs/{hash}"
include-method = "PUT"

[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


#: Loaded into the schemathesis process. CPython before 3.11.8 and 3.12.1 keeps the AST
#: validator's recursion depth per interpreter, not per thread (gh-106905), so two threads
#: parsing at once (hypothesis describing lambdas) can raise "AST constructor recursion depth
#: mismatch". Serialising ast.parse avoids it; it changes nothing else.
HOOKS = """\
import ast
import threading

_lock = threading.Lock()
_parse = ast.parse


def _locked_parse(*args, **kwargs):
    with _lock:
        return _parse(*args, **kwargs)


ast.parse = _locked_parse
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture()
def live_api(tmp_path: Path) -> Iterator[str]:
    settings = make_settings(tmp_path)
    engine = make_db(settings)
    with make_sessions(engine)() as session:
        seed(session, n_jobs=20)
        session.commit()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


def test_openapi_document_is_complete(live_api: str) -> None:
    doc = httpx.get(f"{live_api}/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                assert "content" in resp or status in ("201",), (method, path, status)
            if int(next(iter(op["responses"]))) < 300:
                assert "429" in op["responses"], (method, path)
    put = doc["paths"]["/blobs/{hash}"]["put"]
    assert {"400", "401", "413"} <= set(put["responses"]) and put["security"]


def test_schemathesis_all_checks(live_api: str, tmp_path: Path) -> None:
    token = ApiClient(live_api, KEYS[3]).token()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    (tmp_path / "verimarket_st_hooks.py").write_text(HOOKS)
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{live_api}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "40",
        "--seed",
        "20240601",
        "--workers",
        "4",
        "-H",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "10",
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "verimarket_st_hooks",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        },
    )
    out = proc.stdout + proc.stderr
    (tmp_path / "schemathesis.out").write_text(out)
    assert proc.returncode == 0, out[-8000:]
    assert "Failures:" not in out and "Errors:" not in out, out[-8000:]
    assert " passed" in out, out[-4000:]
