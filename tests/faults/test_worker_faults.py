"""Faults injected into a running node stack (real anvil, Redis, torch, Celery):
workers killed mid-job, a poison job, duplicate deliveries, a broker that restarts.
Every job must end settled exactly once; nothing lost, nothing committed or paid twice."""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from market.chain.anvil import free_port
from market.chain.types import JobRequest, JobStatus
from worker.models import encode_text_input
from worker.store import NodeJobState, NodeStore

from ..conftest import Chain
from ..stack import MAX_FEE, PRICE, REDIS_URL, Stack, redis_prefix, start_node_stack

pytestmark = pytest.mark.e2e
FAST = {"VERIMARKET_TASK_LEASE_S": "2", "VERIMARKET_BATCH_WAIT_MS": "2"}


@pytest.fixture()
def prefix() -> Iterator[str]:
    yield from redis_prefix()


def assert_settled_exactly_once(stack: Stack, ids: list[int]) -> None:
    statuses = stack.wait_terminal(ids, check_alive=False)
    assert Counter(statuses.values()) == {JobStatus.SETTLED: len(ids)}
    counts = Counter((e.name, int(e.args["jobId"])) for e in stack.events() if "jobId" in e.args)
    for j in ids:
        for name in ("JobClaimed", "ResultCommitted", "JobFinalized"):
            assert counts[(name, j)] == 1, (name, j)
    fee = PRICE * stack.chain.deployment.params.fee_bps // 10_000
    node = stack.chain.market(1).client.address
    assert stack.agent.withdrawable(node) == len(ids) * (PRICE - fee)  # paid once, exactly
    store = NodeStore(f"sqlite:///{stack.work / 'node.sqlite'}")
    for j in ids:
        job = store.get(j)
        assert job is not None and job.state is NodeJobState.COMMITTED and job.attempts <= 3


@pytest.mark.parametrize(
    ("jobs", "kills"),
    [(60, 5), pytest.param(200, 20, marks=pytest.mark.long)],
)
def test_workers_killed_mid_job_lose_nothing(
    chain: Chain, tmp_path: Path, prefix: str, jobs: int, kills: int
) -> None:
    env = {"VERIMARKET_BROKER_URL": REDIS_URL, "VERIMARKET_BROKER_PREFIX": prefix, **FAST}
    stack = start_node_stack(chain, tmp_path, env, workers=2)
    rng = random.Random(7)
    done = threading.Event()
    killed: list[float] = []

    def killer() -> None:
        while len(killed) < kills and not done.is_set():
            time.sleep(rng.uniform(0.3, 1.2))
            i = rng.randrange(2)
            stack.children[i].kill()  # SIGKILL, whatever it was running
            killed.append(time.time())
            stack.respawn_worker(i)

    t = threading.Thread(target=killer, daemon=True)
    try:
        t.start()
        ids: list[int] = []
        for wave in range(4):  # keep work in flight while the killer works
            ids += stack.submit_digits(jobs // 4, offset=wave * jobs)
            time.sleep(0.5)
        t.join(timeout=120)
        assert len(killed) == kills
        assert_settled_exactly_once(stack, ids)
    finally:
        done.set()
        stack.stop()


def test_a_poison_job_runs_at_most_three_times(chain: Chain, tmp_path: Path, prefix: str) -> None:
    env = {"VERIMARKET_BROKER_URL": REDIS_URL, "VERIMARKET_BROKER_PREFIX": prefix, **FAST}
    # a MiniLM job on the longest input runs long enough (float64) to be caught running
    stack = start_node_stack(chain, tmp_path, env, workers=2, models=("digits-mlp", "minilm"))
    store = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
    try:
        text = encode_text_input(" ".join(["verifiable inference for agents"] * 40))
        now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
        poison = stack.agent.submit_job(
            JobRequest(
                model_id=stack.model_ids["minilm"],
                input_hash=keccak(text),
                input=text,
                max_fee=MAX_FEE,
                deadline=now + 45,
            )
        )
        starts = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job = store.get(poison)
            if job is not None and job.state is NodeJobState.FAILED:
                break
            if job is not None and job.state is NodeJobState.RUNNING and job.attempts > starts:
                starts = job.attempts
                for i in (0, 1):  # the job kills whichever worker runs it
                    stack.children[i].kill()
                    stack.respawn_worker(i)
            time.sleep(0.002)
        job = store.get(poison)
        assert job is not None and job.state is NodeJobState.FAILED
        assert job.attempts == 3 and "3 attempts" in (job.error or "")
        # the node keeps serving: other jobs settle
        others = stack.submit_digits(10, offset=50)
        assert_settled_exactly_once(stack, others)
        # and the set-aside job ends too: expired, the payer refunded, the node slashed
        stack.chain.warp(60)  # past its deadline, without waiting for it in wall time
        assert stack.wait_terminal([poison], timeout=90)[poison] is JobStatus.EXPIRED
    finally:
        stack.stop()


def test_duplicate_deliveries_give_one_result_and_one_commit(
    chain: Chain, tmp_path: Path, prefix: str
) -> None:
    env = {
        "VERIMARKET_BROKER_URL": REDIS_URL,
        "VERIMARKET_BROKER_PREFIX": prefix,
        "VERIMARKET_BROKER_VISIBILITY_S": "1",
        **FAST,
    }
    stack = start_node_stack(chain, tmp_path, env, workers=2)
    try:
        for i in (0, 1):  # no worker: claimed jobs pile up in the queue
            stack.children[i].stop()
        ids = stack.submit_digits(12)
        store = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
        end = time.monotonic() + 30
        while len(store.ids_in(NodeJobState.CLAIMED)) < len(ids) and time.monotonic() < end:
            time.sleep(0.1)
        # publish every job twice more, with an ETA longer than the visibility timeout
        publisher = subprocess.run(
            [
                *stack_python(),
                "-c",
                "import sys; from worker.celery_app import app, INFER_TASK\n"
                "for j in map(int, sys.argv[1:]):\n"
                "    app.send_task(INFER_TASK, (j,), queue='infer')\n"
                "    app.send_task(INFER_TASK, (j,), queue='infer', countdown=3)\n",
                *map(str, ids),
            ],
            env={**_os_env(), "VERIMARKET_HOME": str(tmp_path), **stack.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert publisher.returncode == 0, publisher.stderr
        for i in (0, 1):
            stack.respawn_worker(i)
        assert_settled_exactly_once(stack, ids)
        time.sleep(5)  # let the delayed duplicates arrive, then check nothing moved
        assert_settled_exactly_once(stack, ids)
    finally:
        stack.stop()


def test_broker_restarts_lose_no_job(chain: Chain, tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (Debian package redis-server)"
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        return proc

    redis_proc = start_redis()
    env = {"VERIMARKET_BROKER_URL": f"redis://127.0.0.1:{port}/0", **FAST}
    stack = start_node_stack(chain, tmp_path, env, workers=1)
    try:
        ids: list[int] = []
        for _restart in range(2):
            ids += stack.submit_digits(20, offset=len(ids))
            time.sleep(0.3)
            redis_proc.terminate()  # queued and unacked messages are gone with it
            redis_proc.wait(timeout=10)
            time.sleep(1.0)
            redis_proc = start_redis()
        ids += stack.submit_digits(20, offset=len(ids))
        assert_settled_exactly_once(stack, ids)
    finally:
        stack.stop()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def stack_python() -> list[str]:
    import sys

    return [sys.executable]


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)
