"""Generative jobs end to end: SmolLM2 jobs on chain served by a real node stack, the result
delivered to a consumer contract by callback, and the tokens streamed through the API.

- ``test_generative_job_on_chain_streams_and_calls_back`` (long: builds/loads SmolLM2 in the
  worker and in the test): a chat job submitted by a consumer contract; the callback's
  output decodes to exactly the ids transformers' greedy ``generate`` gives for the same
  prompt; the API's SSE stream delivers the same ids in order, then ``done``; a malformed
  generation input is rejected by the node with its reason and never claimed.
- The stream route against real Redis with a worker's publisher (default suite, ~2 s):
  live relay in order, a redelivery's repeated tokens dropped, 404 / 503, the chain fallback
  and the wait limit.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from eth_utils.crypto import keccak
from fastapi import FastAPI
from sqlalchemy import select

from market.api.app import create_app
from market.canonical import decode_tensor
from market.chain.types import JobRequest, JobStatus
from market.config import Settings
from market.db import make_sessions
from market.db.models import Job, Result
from market.paths import artifacts_dir
from market.tokenstream import TokenPublisher, done_event, error_event, stream_key, token_event
from tests.conftest import Chain
from tests.integration.test_api import make_db, make_settings, seed
from tests.stack import MAX_FEE, REDIS_URL, start_node_stack
from tests.stack import redis_prefix as _redis_prefix
from worker.llm import encode_token_ids

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
NEW_TOKENS = 12


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    yield from _redis_prefix()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app on a free loopback port (uvicorn in a thread), for real streaming."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def read_sse(url: str, timeout: float = 60.0) -> list[tuple[float, str, dict[str, Any]]]:
    """Every (arrival time, event, data) of one SSE response, until the server ends it."""
    events: list[tuple[float, str, dict[str, Any]]] = []
    with httpx.stream("GET", url, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((time.monotonic(), name, json.loads(line[6:])))
    return events


def wait_for_stream(url: str, timeout: float) -> None:
    """Until the route stops answering 404 (the job's first token is written)."""
    deadline = time.monotonic() + timeout
    while True:
        with httpx.stream("GET", url, timeout=5) as r:  # headers only: the body may last
            code = r.status_code
        if code != 404:
            return
        assert time.monotonic() < deadline, "no token stream appeared"
        time.sleep(0.05)


# ---------------------------------------------------------------------- the stream route


def stream_settings(tmp_path: Path, prefix: str, **kw: Any) -> Settings:
    return make_settings(
        tmp_path, stream_url=REDIS_URL, broker_prefix=prefix, stream_wait_s=1.0, **kw
    )


def test_stream_route_relays_tokens_live_in_order_and_ends_with_the_result(
    tmp_path: Path, redis_prefix: str
) -> None:
    settings = stream_settings(tmp_path, redis_prefix)
    engine = make_db(settings)
    job_id = 4242  # not in the (empty) index: the stream alone makes it known
    publisher = TokenPublisher(REDIS_URL, redis_prefix, ttl_s=60)
    pieces = ["The", " capital", " is", " Paris", "."]
    ids = [504, 3575, 314, 7042, 30]
    published_done = threading.Event()

    def worker() -> None:
        # first attempt: two tokens, then it dies; the redelivery runs the whole job again
        for i in range(2):
            publisher.publish(job_id, token_event(job_id, i, ids[i], pieces[i]))
        publisher.publish(job_id, error_event(job_id, "worker lost"))
        publisher.flush()
        time.sleep(0.3)
        for i, (tok, text) in enumerate(zip(ids, pieces, strict=True)):
            publisher.publish(job_id, token_event(job_id, i, tok, text))
            publisher.flush()
            time.sleep(0.15)
        publisher.publish(job_id, done_event(job_id, ids, "".join(pieces), "0xab", "stop"))
        publisher.flush()
        published_done.set()

    try:
        with serve(create_app(settings, engine=engine)) as api:
            url = f"{api}/jobs/{job_id}/stream"
            r = httpx.get(url, timeout=5)
            assert r.status_code == 404 and "no token stream" in r.json()["detail"]
            t = threading.Thread(target=worker)
            t.start()
            wait_for_stream(url, 10)
            events = read_sse(url)
            t.join()
    finally:
        publisher.close()
        engine.dispose()

    names = [e[1] for e in events]
    assert names == ["token", "token", "attempt-failed", "token", "token", "token", "done"]
    tokens = [e[2] for e in events if e[1] == "token"]
    assert [t["index"] for t in tokens] == list(range(5))
    assert [t["token_id"] for t in tokens] == ids
    assert "".join(t["text"] for t in tokens) == "The capital is Paris."
    done = events[-1][2]
    assert done["token_ids"] == ids and done["source"] == "node" and done["result_hash"] == "0xab"
    # live: the first tokens reached the client well before the worker finished
    assert events[-1][0] - events[0][0] > 0.5


def test_stream_route_checks_its_inputs_and_falls_back_to_the_chain(
    tmp_path: Path, redis_prefix: str
) -> None:
    settings = stream_settings(tmp_path, redis_prefix)
    engine = make_db(settings)
    sessions = make_sessions(engine)
    with sessions() as s:
        seed(s)
        s.commit()
        committed, other = s.scalars(select(Result.job_id).order_by(Result.job_id)).all()[:2]
        result = s.scalars(select(Result).where(Result.job_id == committed)).one()
        result.output = encode_token_ids([504, 3575, 30])  # a generative job's canonical ids
        s.commit()
        open_job = s.scalars(
            select(Job.job_id).where(Job.status == JobStatus.OPEN).order_by(Job.job_id)
        ).first()
    assert committed is not None and open_job is not None
    off = make_settings(tmp_path / "off")
    try:
        with serve(create_app(settings, engine=engine)) as api:
            assert httpx.get(f"{api}/jobs/999999/stream").status_code == 404
            assert httpx.get(f"{api}/jobs/-1/stream").status_code == 422
            assert httpx.get(f"{api}/jobs/abc/stream").status_code == 422
            # committed on chain, nothing streamed: the index's result, then the end
            ((_, name, data),) = read_sse(f"{api}/jobs/{committed}/stream")
            assert name == "done" and data["source"] == "chain"
            assert data["result_hash"] == result.result_hash
            assert data["token_ids"] == [504, 3575, 30]
            # another model's output (not a vector at scale 2^0) has no token ids
            ((_, name, data),) = read_sse(f"{api}/jobs/{other}/stream")
            assert name == "done" and data["token_ids"] is None and data["output_hex"]
            # open and silent: the wait limit (1 s here) ends it with a reason
            ((_, name, data),) = read_sse(f"{api}/jobs/{open_job}/stream")
            assert name == "error" and "no token within" in data["reason"]
        with serve(create_app(off, engine=engine)) as api:
            r = httpx.get(f"{api}/jobs/{committed}/stream")
            assert r.status_code == 404 and "not configured" in r.json()["detail"]
            assert httpx.get(f"{api}/jobs/999999/stream").status_code == 404
        doc = create_app(settings, engine=engine).openapi()
        op = doc["paths"]["/jobs/{job_id}/stream"]["get"]
        assert "text/event-stream" in op["responses"]["200"]["content"]
        assert {"404", "503", "429"} <= set(op["responses"])
    finally:
        engine.dispose()
    assert not redis.Redis.from_url(REDIS_URL).exists(stream_key(redis_prefix, committed))


# ---------------------------------------------------------------------- on chain


@pytest.mark.long
def test_generative_job_on_chain_streams_and_calls_back(
    chain: Chain, tmp_path: Path, redis_prefix: str
) -> None:
    from market.audit import audit_job
    from worker.llm import GenerationRequest, encode_generation_input, load_llm
    from worker.llm.reference import transformers_greedy, transformers_model
    from worker.store import NodeJobState, NodeStore

    env = {"VERIMARKET_BROKER_URL": REDIS_URL, "VERIMARKET_BROKER_PREFIX": redis_prefix}
    stack = start_node_stack(chain, tmp_path, env, models=("smollm2",))
    try:
        model_id = stack.model_ids["smollm2"]
        owner = chain.client(7)
        addr, _ = owner.deploy("DigitsConsumer", chain.deployment.job_market, model_id, 600_000)
        consumer = owner.contract("DigitsConsumer", addr)
        now = int(owner.w3.eth.get_block("latest")["timestamp"])
        market = chain.market(7)

        # a malformed request (not canonical JSON): rejected by the node, never claimed
        bad = b'{"prompt": "hi"}'
        bad_id = stack.agent.submit_job(
            JobRequest(model_id, keccak(bad), MAX_FEE, now + 600, input=bad)
        )
        data = encode_generation_input(QUESTION, max_new_tokens=NEW_TOKENS)
        receipt = owner.transact(consumer.functions.classify(data, now + 600), value=MAX_FEE)
        (job_id,) = market.job_ids_from(receipt, "JobSubmitted")

        api_settings = Settings(
            data=tmp_path / "api",
            database_url=f"sqlite:///{tmp_path / 'api-index.sqlite'}",
            broker_url=REDIS_URL,
            broker_prefix=redis_prefix,
            deployment_file=tmp_path / "deployment.json",
        )
        (tmp_path / "api").mkdir()
        api_engine = make_db(api_settings)
        with serve(create_app(api_settings, engine=api_engine)) as api:
            url = f"{api}/jobs/{job_id}/stream"
            wait_for_stream(url, 120)
            events = read_sse(url, timeout=120)
        api_engine.dispose()

        statuses = stack.wait_terminal([job_id], timeout=120)
        assert statuses[job_id] is JobStatus.SETTLED
        received, result_hash, output = consumer.functions.resultOf(job_id).call()
        assert received
        callback_ids = [int(v) for v in decode_tensor(bytes(output)).values.reshape(-1)]
        assert keccak(bytes(output)) == bytes(result_hash)

        # the same prompt, greedy, in transformers
        llm = load_llm(artifacts_dir(), "smollm2")
        request = GenerationRequest.decode(data, "smollm2")
        expected = transformers_greedy(
            transformers_model(llm),
            llm.prompt_ids(request),
            NEW_TOKENS,
            sorted(llm.spec.stop_token_ids),
        )
        assert callback_ids == expected
        assert "Paris" in llm.text(callback_ids)

        tokens = [e[2] for e in events if e[1] == "token"]
        assert [t["index"] for t in tokens] == list(range(len(tokens)))
        assert [t["token_id"] for t in tokens] == callback_ids
        assert events[-1][1] == "done"
        assert events[-1][2]["token_ids"] == callback_ids
        assert events[-1][2]["result_hash"] == "0x" + bytes(result_hash).hex()

        # an auditor re-executes it from public data and the registered artefacts
        verdict = audit_job(market, job_id, artifacts_dir())
        checks = {c.name: c for c in verdict.checks}
        assert verdict.ok, verdict.checks
        assert checks["re-execution"].ok is True
        assert "equal re-execution" in checks["re-execution"].detail

        node_db = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
        rejected = node_db.get(bad_id)
        assert rejected is not None and rejected.state is NodeJobState.REJECTED
        assert rejected.error is not None and "invalid input" in rejected.error
        assert chain.market(0).job(bad_id).status is JobStatus.OPEN
    finally:
        stack.stop()


def test_llm_demo_refuses_an_external_chain() -> None:
    from typer.testing import CliRunner

    from market.cli import app

    res = CliRunner().invoke(app, ["demo", "--model", "smollm2", "--rpc", "http://127.0.0.1:1"])
    assert res.exit_code != 0
    assert "--rpc is not supported with --model smollm2" in res.output
