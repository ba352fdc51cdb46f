"""The generative worker path without the chain: real SmolLM2 engine, node store, Redis.

``GenerativeRuntime.run`` is what the ``generate`` Celery task calls. Checked here: jobs run
concurrently in one engine give the ids each gives alone; the result recorded for the
committer is the canonical ids and their keccak; a redelivery that reaches the process
running the job waits for that run (one attempt counted, one result); the lease is renewed
while the job generates; tokens reach the job's Redis stream in order, then ``done``; bad
input fails the job with its reason; and the node's pre-claim check refuses what the
worker would refuse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from typer.testing import CliRunner

from market.blobs import BlobStore
from market.canonical import keccak
from market.chain.anvil import DEV_KEYS
from market.cli import app
from market.config import Settings
from market.tokenstream import parse_entry, stream_key
from tests.conftest import Chain
from tests.integration.test_llm import _code_key
from tests.stack import REDIS_URL
from tests.stack import redis_prefix as _redis_prefix
from worker.generative import GenerativeInputCheck, GenerativeRuntime, is_generative
from worker.jobs import JobContext, Outcome
from worker.llm import (
    EngineConfig,
    GenerationRequest,
    LoadedLLM,
    encode_generation_input,
    encode_token_ids,
    load_llm,
)
from worker.models import InvalidInput, build_models
from worker.runtime import Runtime
from worker.store import NodeJob, NodeJobState, NodeStore

pytestmark = pytest.mark.integration

S = NodeJobState
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def artifacts() -> Path:
    # the folder test_llm builds (once per code version): a second build only verifies it
    import tempfile

    out = Path(tempfile.gettempdir()) / f"verimarket-test-llm-{_code_key()}"
    build_models(out, ["smollm2"], progress=False)
    return out


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    yield from _redis_prefix()


def add_job(store: NodeStore, job_id: int, data: bytes) -> None:
    with store.sessions.begin() as s:
        s.add(
            NodeJob(
                job_id=job_id,
                model_id="0x" + "11" * 32,
                model_name="smollm2",
                input_hash="0x" + keccak(data).hex(),
                input=data,
                max_fee="1",
                deadline=2**31,
                submit_block=1,
                state=S.CLAIMED,
                attempts=0,
                claimed_at=time.time(),
            )
        )


def test_node_check_refuses_what_the_worker_would(artifacts: Path) -> None:
    assert is_generative("smollm2") and not is_generative("digits-mlp")
    assert not is_generative("no-such-model")
    check = GenerativeInputCheck(artifacts, "smollm2")
    good = encode_generation_input("What is the capital of France?", max_new_tokens=8)
    assert isinstance(check(good), GenerationRequest)
    too_long = encode_generation_input("word " * 600, max_new_tokens=8)
    with pytest.raises(InvalidInput, match="at most 512 are allowed"):
        check(too_long)
    with pytest.raises(InvalidInput, match="canonical"):
        check(b'{"prompt": "hi"}')
    with pytest.raises(InvalidInput):
        check(b"\xff\xfe")
    with pytest.raises(Exception, match="not a built generative model"):
        GenerativeInputCheck(artifacts.parent / "nowhere", "smollm2")


def test_worker_runs_jobs_in_one_engine_streams_and_dedupes_redelivery(
    artifacts: Path, tmp_path: Path, redis_prefix: str
) -> None:
    settings = Settings(
        artifacts=artifacts,
        data=tmp_path,
        broker_url=REDIS_URL,
        broker_prefix=redis_prefix,
        task_lease_s=0.4,
    )
    store = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
    ctx = JobContext(
        store,
        Runtime(artifacts),
        BlobStore(tmp_path / "blobs"),
        "http://blobs.invalid/",
        inline_output_max=1024,
    )
    questions = ["What is the capital of France?", "Name three colours."]
    inputs = [encode_generation_input(q, max_new_tokens=NEW_TOKENS) for q in questions]
    for i, data in enumerate(inputs):
        add_job(store, 100 + i, data)
    add_job(store, 200, b'{"prompt":"hi","temperature":9.0}')  # out of range: fails

    rt = GenerativeRuntime(settings, ctx, EngineConfig(max_num_seqs=8))
    rt.loop("smollm2")  # warm, as the worker does before taking tasks
    outcomes: dict[str, Outcome] = {}
    renewals: list[float] = []

    def run(name: str, job_id: int) -> None:
        outcomes[name] = rt.run(job_id)

    def watch() -> None:  # updated_at while job 100 runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = store.get(100)
            assert job is not None
            if job.state is not S.RUNNING and renewals:
                return
            if job.state is S.RUNNING and (not renewals or job.updated_at != renewals[-1]):
                renewals.append(job.updated_at)
            time.sleep(0.05)

    threads = [
        threading.Thread(target=run, args=("a", 100)),
        threading.Thread(target=run, args=("b", 101)),
        threading.Thread(target=watch),
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(0.3)
        run("redelivered", 100)  # while the first delivery generates
        for t in threads:
            t.join(120)
        assert rt.run(200) is Outcome.FAILED
        assert rt.run(100) is Outcome.ALREADY_DONE  # after the fact: nothing runs again
    finally:
        rt.close()

    assert outcomes == {"a": Outcome.READY, "b": Outcome.READY, "redelivered": Outcome.ALREADY_DONE}
    r = redis.Redis.from_url(REDIS_URL, decode_responses=False)
    texts = []
    for i in range(len(inputs)):
        key = stream_key(redis_prefix, 100 + i)
        entries: Any = r.xrange(key)
        events = [parse_entry(f) for _, f in entries]
        done = events[-1]
        assert done is not None and done["event"] == "done"
        ids = done["token_ids"]
        assert 0 < len(ids) <= NEW_TOKENS
        job = store.get(100 + i)
        assert job is not None and job.state is S.READY and job.attempts == 1
        output = encode_token_ids(ids)
        assert job.output == output and job.output_uri == ""
        assert job.result_hash == done["result_hash"] == "0x" + keccak(output).hex()
        tokens = [e for e in events if e and e["event"] == "token"]
        assert [t["index"] for t in tokens] == list(range(len(ids)))
        assert [t["token_id"] for t in tokens] == ids
        assert "".join(t["text"] for t in tokens) == done["text"]
        assert 0 < r.ttl(key) <= settings.stream_ttl_s
        texts.append(done["text"])
    # what the engine gave is what transformers gives (test_llm); here: the right answer
    assert "Paris" in texts[0]
    bad = store.get(200)
    assert bad is not None and bad.state is S.FAILED and bad.error is not None
    assert "temperature" in bad.error
    # the lease was renewed while job 100 generated (every 0.1 s with a 0.4 s lease)
    assert len(renewals) >= 3, renewals


def test_cli_submit_asks_a_question_and_checks_it_before_paying(
    artifacts: Path, chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIMARKET_ARTIFACTS", str(artifacts))
    manifest = GenerativeInputCheck(artifacts, "smollm2").manifest
    model_id = manifest.model_id_bytes
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)
    on = ["--deployment", str(dep)]
    # the model commands take a generative model by name (its files checked, weights not run)
    res = CliRunner().invoke(app, ["models", "register", "smollm2", *on, "--key", DEV_KEYS[0]])
    assert res.exit_code == 0 and model_id.hex() in "".join(res.output.split()), res.output
    node = ["node", "register", "--model", "smollm2", "--price", "1000", "--key", DEV_KEYS[1]]
    res = CliRunner().invoke(app, [*node, *on])
    assert res.exit_code == 0 and "serving smollm2" in res.output, res.output
    assert chain.market(1).price_of(chain.client(1).address, model_id) == 1000
    common = ["--model", "smollm2", "--deployment", str(dep), "--key", DEV_KEYS[6], "--no-wait"]
    too_long = tmp_path / "long.txt"
    too_long.write_text("word " * 600)
    res = CliRunner().invoke(app, ["submit", "--input", str(too_long), *common])
    assert res.exit_code == 1 and "at most 512 are allowed" in res.output
    not_canonical = tmp_path / "request.json"
    not_canonical.write_text('{"prompt": "hi"}')
    res = CliRunner().invoke(app, ["submit", "--input", str(not_canonical), *common])
    assert res.exit_code == 1 and "canonical" in res.output
    assert chain.market(6).job_count() == 0  # nothing was paid

    question = tmp_path / "question.txt"
    question.write_text("What is the capital of France?\n")
    res = CliRunner().invoke(app, ["submit", "--input", str(question), *common])
    assert res.exit_code == 0 and "job 1 submitted" in res.output, res.output
    job = chain.market(6).job(1)
    assert job.model_id == model_id
    assert job.input_hash == keccak(encode_generation_input("What is the capital of France?"))


def test_audit_judges_a_generation_at_its_first_differing_token(
    artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one intra-op thread, as the worker runs (two on this shared 2-core VM stall for seconds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _audit_cases(load_llm(artifacts, "smollm2"), monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _audit_cases(llm: LoadedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.llm import audit as llm_audit
    from worker.llm.audit import Judgement, audit_generation

    data = encode_generation_input("What is the capital of France?", max_new_tokens=4)
    honest = audit_generation(llm, data, [])
    assert honest.judgement is Judgement.WRONG and honest.position == 0  # nothing committed
    ids, expected = list(honest.expected), honest.expected  # the cases below reuse them
    assert audit_generation(llm, data, ids, expected).judgement is Judgement.MATCH
    early = audit_generation(llm, data, ids[:3], expected)
    assert early.judgement is Judgement.WRONG and "stop after 3" in early.detail

    # the runner-up token at position 2: a real difference, judged by its logit gap there
    logits = llm_audit.position_logits(llm, llm.prompt_ids(llm.decode_input(data)), ids[:2])
    runner_up = int(logits.topk(2).indices[1])
    forged = [*ids[:2], runner_up, *ids[3:]]
    wrong = audit_generation(llm, data, forged, expected)
    assert wrong.judgement is Judgement.WRONG and wrong.position == 2
    assert wrong.gap == pytest.approx(float(logits.max() - logits[runner_up]))
    assert wrong.gap is not None and wrong.gap > 0
    # were the gap within the tolerance, it would be an honest near-tie
    best = abs(float(logits.max()))
    monkeypatch.setattr(llm_audit, "NEAR_TIE_REL", 2 * wrong.gap / max(1.0, best))
    tie = audit_generation(llm, data, forged, expected)
    assert tie.judgement is Judgement.NEAR_TIE and "an honest near-tie" in tie.detail
