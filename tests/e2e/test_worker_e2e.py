"""End to end on real parts: anvil, Redis as the Celery broker, torch inference, the node,
the settlement service. Jobs go in on chain; outputs come back on chain equal to direct
inference; bad jobs end as clear per-job rejections and are refunded at expiry; nothing is
left in escrow."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from eth_utils import keccak

from market.canonical import encode_quantized
from market.chain.events import LogReader
from market.chain.types import JobRequest, JobStatus, Segment
from market.paths import artifacts_dir
from market.procs import start_stack
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.store import NodeJobState, NodeStore

from ..conftest import Chain

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"
PRICE, MAX_FEE = 10**15, 2 * 10**15
GOOD_JOBS = 24


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    prefix = f"vm-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}*"))
    if keys:
        r.delete(*keys)


@pytest.fixture()
def wrong_bytes_server() -> Iterator[str]:
    """An HTTP server that serves bytes which do not match the hash a job claims."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = encode_digits_input(digits_test_split()[0][0])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/input"
    finally:
        server.shutdown()


def test_jobs_run_through_redis_workers_to_settlement(
    chain: Chain, tmp_path: Path, redis_prefix: str, wrong_bytes_server: str
) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    deployer = chain.market(0)
    model_id = deployer.register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "model://digits-mlp",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    unserved = deployer.register_model(
        keccak(b"no node serves this"), 16, "", [Segment(keccak(b"x"))]
    )
    node = chain.market(1)
    node.register_node(5 * 10**18)
    node.set_model_price(model_id, PRICE)
    dep_file = tmp_path / "deployment.json"
    chain.deployment.save(dep_file)

    children = start_stack(
        tmp_path,
        dep_file,
        node_key=chain.client(1).account.key.to_0x_hex(),  # type: ignore[union-attr]
        settler_key=chain.client(2).account.key.to_0x_hex(),  # type: ignore[union-attr]
        models=["digits-mlp"],
        env={
            "VERIMARKET_BROKER_URL": REDIS_URL,
            "VERIMARKET_BROKER_PREFIX": redis_prefix,
            "VERIMARKET_ARTIFACTS": str(artifacts_dir()),
        },
    )
    try:
        agent = chain.market(6)
        images, _labels = digits_test_split()
        now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
        good_inputs = [encode_digits_input(images[i]) for i in range(GOOD_JOBS)]
        good = agent.submit_jobs(
            [
                JobRequest(
                    model_id=model_id,
                    input_hash=keccak(x),
                    input=x,
                    max_fee=MAX_FEE,
                    deadline=now + 300,
                )
                for x in good_inputs
            ]
        )

        # bad jobs: each must end as a per-job rejection, never a crashed worker
        wrong_shape = encode_quantized(images[0][:7, :7].astype("int64"), 0)
        out_of_range = encode_quantized((images[1].astype("int64") * 0 + 99), 0)
        garbage = b"\xde\xad\xbe\xef"
        # chain time runs ahead of the wall clock while blocks come fast: read it again
        bad_deadline = int(chain.client(0).w3.eth.get_block("latest")["timestamp"]) + 30
        bad_requests = {
            "wrong shape": JobRequest(
                model_id=model_id,
                input_hash=keccak(wrong_shape),
                input=wrong_shape,
                max_fee=MAX_FEE,
                deadline=bad_deadline,
            ),
            "out of range": JobRequest(
                model_id=model_id,
                input_hash=keccak(out_of_range),
                input=out_of_range,
                max_fee=MAX_FEE,
                deadline=bad_deadline,
            ),
            "garbage": JobRequest(
                model_id=model_id,
                input_hash=keccak(garbage),
                input=garbage,
                max_fee=MAX_FEE,
                deadline=bad_deadline,
            ),
            "unknown model": JobRequest(
                model_id=unserved,
                input_hash=keccak(good_inputs[0]),
                input=good_inputs[0],
                max_fee=MAX_FEE,
                deadline=bad_deadline,
            ),
            "hash mismatch": JobRequest(
                model_id=model_id,
                input_hash=keccak(b"not these bytes"),
                input_uri=wrong_bytes_server,
                max_fee=MAX_FEE,
                deadline=bad_deadline,
            ),
        }
        bad = dict(zip(bad_requests, agent.submit_jobs(list(bad_requests.values())), strict=True))

        every = [*good, *bad.values()]
        store = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            statuses = {j: agent.job(j).status for j in every}
            if all(s.terminal for s in statuses.values()):
                break
            refused = [store.get(j) for j in bad.values()]
            if all(statuses[j] in (JobStatus.COMMITTED, JobStatus.SETTLED) for j in good) and all(
                job is not None and job.state is NodeJobState.REJECTED for job in refused
            ):
                # all done that the node will do: jump chain time past the challenge window
                # and the bad jobs' deadline rather than wait through them in wall time
                chain.warp(chain.deployment.params.challenge_window + 1)
            for c in children:
                assert c.alive(), f"{c.name} died:\n{c.tail()}"
            time.sleep(0.5)
        assert all(agent.job(j).status == JobStatus.SETTLED for j in good)
        assert all(agent.job(j).status == JobStatus.EXPIRED for j in bad.values())

        # every output on chain equals direct inference, byte for byte
        model = load_model(artifacts_dir(), "digits-mlp")
        expected = model.run_inputs(good_inputs)
        reader = LogReader(agent.client, {"JobMarket": chain.deployment.job_market})
        events = reader.fetch(chain.deployment.start_block, agent.client.block_number())
        outputs = {
            int(e.args["jobId"]): bytes(e.args["output"])
            for e in events
            if e.name == "ResultCommitted"
        }
        assert [outputs[j] for j in good] == expected
        assert not set(bad.values()) & set(outputs)

        # the node recorded why it refused each bad job, and never claimed one
        reasons = {name: store.get(j) for name, j in bad.items()}
        for name, job in reasons.items():
            assert job is not None and job.state is NodeJobState.REJECTED, name
        assert "invalid input" in (reasons["wrong shape"].error or "")  # type: ignore[union-attr]
        assert "invalid input" in (reasons["out of range"].error or "")  # type: ignore[union-attr]
        assert "invalid input" in (reasons["garbage"].error or "")  # type: ignore[union-attr]
        assert "not served" in (reasons["unknown model"].error or "")  # type: ignore[union-attr]
        assert "do not match" in (reasons["hash mismatch"].error or "")  # type: ignore[union-attr]

        # money: nothing left in escrow; the agent is owed exactly its refunds
        fee = PRICE * chain.deployment.params.fee_bps // 10_000
        assert agent.total_escrow() == 0
        assert agent.withdrawable(agent.client.address) == (
            GOOD_JOBS * (MAX_FEE - PRICE) + len(bad) * MAX_FEE
        )
        assert agent.withdrawable(node.client.address) == GOOD_JOBS * (PRICE - fee)
        for c in children:
            assert c.alive(), f"{c.name} died:\n{c.tail()}"
    finally:
        for c in reversed(children):
            c.stop()
