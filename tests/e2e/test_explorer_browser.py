"""The explorer in headless Chromium, against a running stack.

Real parts only: anvil with the market deployed, digits-mlp registered, a staked node, the
inference worker, node and settlement service (Redis as the broker), the indexer
(``python -m market.cli_index index``) writing a SQLite index, and ``verimarket api``
serving the explorer over it. The browser is Debian's ``chromium`` driven by Playwright
(``scripts/install-browser.sh`` installs both; no browser download at test time).

The test loads every page, submits a job on chain, watches it appear through the page's
own auto-refresh and reach "settled" through reloads, checks the page against the chain,
and saves screenshots to ``$VERIMARKET_TEST_ARTIFACTS`` (default ``tests/artifacts/``).
A model registered with a hostile metadata URI checks that chain-supplied text cannot run
script in the page.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_utils.crypto import keccak

from market.api.explorer.format import short
from market.chain.types import JobStatus, Segment
from market.paths import REPO_ROOT
from market.procs import Child, spawn, verimarket_argv

from ..conftest import Chain
from ..stack import redis_prefix as _redis_prefix
from ..stack import start_node_stack

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("VERIMARKET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Text a model's metadata URI carries to try to run script in the explorer.
HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
#: Seconds a job may take to appear, and to settle, before the test gives up.
APPEAR_S, SETTLE_S = 60.0, 90.0


def artifacts_dir() -> Path:
    path = Path(os.environ.get("VERIMARKET_TEST_ARTIFACTS", REPO_ROOT / "tests" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_healthy(url: str, children: list[Child], timeout: float) -> None:
    """Until ``GET /health`` answers 200 (the API is up and the indexer has migrated)."""
    deadline = time.monotonic() + timeout
    while True:
        for c in children:
            assert c.alive(), f"{c.name} exited (code {c.process.returncode}):\n{c.tail()}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the API at {url} was not healthy in {timeout} s"
        time.sleep(0.2)


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    yield from _redis_prefix()


@pytest.fixture()
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: run scripts/install-browser.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_explorer_shows_a_job_from_submit_to_settled(
    chain: Chain, tmp_path: Path, redis_prefix: str, browser: object
) -> None:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

    assert isinstance(browser, Browser)
    hostile_model = chain.market(0).register_model(
        keccak(b"explorer escaping"), 16, HOSTILE, [Segment(keccak(b"segment"))]
    )
    dep_file = tmp_path / "deployment.json"
    chain.deployment.save(dep_file)
    db_url = f"sqlite:///{tmp_path / 'market.sqlite'}"
    env = {"VERIMARKET_HOME": str(tmp_path)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    services = [
        spawn(
            "indexer",
            [sys.executable, "-m", "market.cli_index", "index", "--deployment", str(dep_file),
             "--database-url", db_url, "--confirmations", "1", "--poll", "0.2"],
            env,
            logs,
        ),
        spawn(
            "api",
            verimarket_argv("api", "--db", db_url, "--host", "127.0.0.1", "--port", str(port),
                            "--log-level", "warning"),
            env,
            logs,
        ),
    ]  # fmt: skip
    stack = None
    page: Page | None = None
    try:
        stack = start_node_stack(
            chain,
            tmp_path,
            {"VERIMARKET_BROKER_URL": "redis://127.0.0.1:6379/0",
             "VERIMARKET_BROKER_PREFIX": redis_prefix},
        )  # fmt: skip
        everything = services + stack.children
        wait_until_healthy(base, everything, timeout=60)
        model_id = "0x" + stack.model_id.hex()
        node = chain.client(1).address

        page = browser.new_page(viewport={"width": 1440, "height": 900})
        problems: list[str] = []
        dialogs: list[str] = []

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                problems.append(msg.text)

        def on_dialog(d: Dialog) -> None:
            dialogs.append(d.message)
            d.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("dialog", on_dialog)
        expect.set_options(timeout=15_000)

        def load(path: str) -> Page:
            assert page is not None
            response = page.goto(base + path, wait_until="load")
            assert response is not None and response.status == 200, (path, response)
            return page

        def until_indexed(path: str, text: str) -> None:
            """Reload ``path`` until it shows ``text`` (the indexer may be a moment behind)."""
            deadline = time.monotonic() + 30
            while text not in load(path).inner_text("body"):
                assert time.monotonic() < deadline, f"{path} never showed {text!r}"
                time.sleep(0.5)

        # every page loads and shows the stack's real registrations
        until_indexed("/explorer/nodes", short(node))
        until_indexed("/explorer/models", "digits-mlp")
        until_indexed(f"/explorer/nodes/{node}", "digits-mlp")
        assert "20 ETH" in page.inner_text("body")  # the node's stake
        load(f"/explorer/models/{model_id}")
        body = page.inner_text("body")
        info = chain.market(0)
        for seg in info.client.call(info.models.functions.getSegments(stack.model_id)):
            assert "0x" + bytes(seg[0]).hex() in body  # artefact hash of each segment
            assert str(seg[2]) in body  # its verifier's address
        load("/explorer/stats")
        assert page.locator("svg.chart").count() == 4

        # chain-supplied text is shown as text, never run
        load(f"/explorer/models/0x{hostile_model.hex()}")
        expect(page.locator("dd", has_text="onerror=alert(1)")).to_be_visible()
        assert page.locator("img[src=x], dd script").count() == 0

        # a job submitted now appears through the page's own auto-refresh ...
        load("/explorer")
        (job_id,) = stack.submit_digits(1)
        row = page.locator(f"#job-{job_id}")
        expect(row).to_be_visible(timeout=APPEAR_S * 1000)

        # ... and reaches "settled" (reloads; chain time jumps the challenge window)
        deadline = time.monotonic() + SETTLE_S
        warped = False
        while (state := row.get_attribute("data-state")) != "settled":
            assert time.monotonic() < deadline, f"job {job_id} stuck in {state!r}"
            for c in everything:
                assert c.alive(), f"{c.name} died:\n{c.tail()}"
            if state == "committed" and not warped:
                chain.warp(chain.deployment.params.challenge_window + 1)
                warped = True
            time.sleep(1)
            load("/explorer")
            row = page.locator(f"#job-{job_id}")
        on_chain = stack.agent.job(job_id)
        assert on_chain.status is JobStatus.SETTLED
        expect(row.locator(".state")).to_have_text("settled")
        expect(row).to_contain_text("digits-mlp")

        out = artifacts_dir()
        page.screenshot(path=str(out / "explorer.png"), full_page=True)
        text = page.inner_text("#live")
        assert f"#{job_id}" in text and "settled" in text

        # the job's page agrees with the chain
        load(f"/explorer/jobs/{job_id}")
        body = page.inner_text("body")
        for step in ("submitted", "claimed", "committed", "settled"):
            assert step in body
        assert "0x" + on_chain.result_hash.hex() in body
        assert "0x" + on_chain.input_hash.hex() in body
        assert "finalized" in body and "argmax" in body
        page.screenshot(path=str(out / "explorer-job.png"), full_page=True)
        load("/explorer/stats")
        page.screenshot(path=str(out / "explorer-stats.png"), full_page=True)

        shot = (out / "explorer.png").read_bytes()
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
        assert not dialogs, f"script ran in the page: {dialogs}"
        assert not problems, f"browser errors (CSP, script): {problems}"
    finally:
        if page is not None:
            page.close()
        if stack is not None:
            stack.stop()
        for c in reversed(services):
            c.stop()
