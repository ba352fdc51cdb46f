"""The inference task body with a real node store, real models and a real batcher:
idempotence, redelivery, retries and setting a poison job aside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from market.blobs import BlobStore
from market.paths import artifacts_dir
from worker.jobs import MAX_ATTEMPTS, JobContext, Outcome, run_job
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.runtime import Runtime
from worker.store import NodeJob, NodeJobState, NodeStore

pytestmark = pytest.mark.integration
S = NodeJobState


@pytest.fixture(scope="module")
def artifacts() -> Path:
    build_models(artifacts_dir(), ["digits-mlp"], progress=False)
    return artifacts_dir()


@pytest.fixture()
def ctx(tmp_path: Path, artifacts: Path) -> Iterator[JobContext]:
    runtime = Runtime(artifacts, max_batch=8, max_wait_ms=2)
    yield JobContext(
        NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}"),
        runtime,
        BlobStore(tmp_path / "blobs"),
        "http://blobs.example/",
        inline_output_max=1024,
    )
    runtime.close()


def add_claimed(store: NodeStore, job_id: int, data: bytes, model: str = "digits-mlp") -> None:
    job = NodeJob(
        job_id=job_id,
        model_id="0x" + "11" * 32,
        model_name=model,
        input_hash="0x" + keccak(data).hex(),
        input=data,
        max_fee="1",
        deadline=0,
        submit_block=1,
        state=S.SEEN,
        attempts=0,
    )
    store.add_seen([job], ("test", 1))
    store.transition([job_id], S.SEEN, S.CLAIMING)
    store.transition([job_id], S.CLAIMING, S.CLAIMED)


def test_a_claimed_job_becomes_ready_with_the_canonical_result(
    ctx: JobContext, artifacts: Path
) -> None:
    data = encode_digits_input(digits_test_split()[0][3])
    add_claimed(ctx.store, 1, data)
    assert run_job(ctx, 1) is Outcome.READY
    job = ctx.store.get(1)
    expected = load_model(artifacts, "digits-mlp").run_inputs([data])[0]
    assert job is not None and job.state is S.READY and job.attempts == 1
    assert job.output == expected and job.result_hash == "0x" + keccak(expected).hex()
    # idempotent: running it again records nothing new
    assert run_job(ctx, 1) is Outcome.ALREADY_DONE
    assert ctx.store.get(1).attempts == 1  # type: ignore[union-attr]
    assert run_job(ctx, 999) is Outcome.UNKNOWN


def test_a_redelivered_running_job_runs_again(ctx: JobContext) -> None:
    add_claimed(ctx.store, 2, encode_digits_input(digits_test_split()[0][0]))
    ctx.store.transition([2], S.CLAIMED, S.RUNNING)  # its worker died mid-run
    assert run_job(ctx, 2) is Outcome.READY


def test_a_job_that_keeps_failing_is_set_aside_after_three_attempts(ctx: JobContext) -> None:
    add_claimed(ctx.store, 3, encode_digits_input(digits_test_split()[0][0]), model="no-such-model")
    outcomes = [run_job(ctx, 3) for _ in range(MAX_ATTEMPTS + 1)]
    assert outcomes == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED, Outcome.ALREADY_DONE]
    job = ctx.store.get(3)
    assert job is not None and job.state is S.FAILED and job.attempts == MAX_ATTEMPTS
    assert "failed 3 times" in (job.error or "") and "no-such-model" in (job.error or "")


def test_deliveries_that_die_without_a_result_count_as_attempts(ctx: JobContext) -> None:
    add_claimed(ctx.store, 4, encode_digits_input(digits_test_split()[0][0]))
    with ctx.store.sessions.begin() as s:
        row = s.get(NodeJob, 4)
        assert row is not None
        row.state, row.attempts = S.RUNNING, MAX_ATTEMPTS  # three workers died on it
    assert run_job(ctx, 4) is Outcome.ALREADY_DONE
    job = ctx.store.get(4)
    assert (
        job is not None
        and job.state is S.FAILED
        and "set aside after 3 attempts" in (job.error or "")
    )


def test_invalid_input_fails_at_once_with_its_reason(ctx: JobContext) -> None:
    add_claimed(ctx.store, 5, b"\x01\x00\x01\x00\x00\x00\x02" + bytes(16))
    assert run_job(ctx, 5) is Outcome.FAILED
    job = ctx.store.get(5)
    assert job is not None and job.attempts == 1 and "invalid input" in (job.error or "")


def test_large_outputs_go_to_the_blob_store(ctx: JobContext, artifacts: Path) -> None:
    small = JobContext(ctx.store, ctx.runtime, ctx.blobs, ctx.blob_base_url, inline_output_max=16)
    data = encode_digits_input(digits_test_split()[0][5])
    add_claimed(ctx.store, 6, data)
    assert run_job(small, 6) is Outcome.READY
    job = ctx.store.get(6)
    assert job is not None and job.output == b""
    name = job.output_uri.removeprefix("http://blobs.example/")
    assert name == job.result_hash
    assert ctx.blobs.get(name) == load_model(artifacts, "digits-mlp").run_inputs([data])[0]
