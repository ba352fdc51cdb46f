"""The verifiable result cache end to end on anvil: a digits job run and settled normally
becomes the reference; the same input submitted again is answered at once from the node's
cache with the same result and paid the node's (lower) cache price; other inputs miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from market.blobs import BlobStore
from market.chain.anvil import DEV_KEYS
from market.chain.result_cache import (
    answer_from_cache,
    cache_price_of,
    cache_reference,
    set_cache_price,
)
from market.chain.txmanager import TxManager
from market.chain.types import JobRequest, JobStatus, Segment
from market.cli import app
from market.db import make_engine
from market.errors import ContractRevert
from market.paths import artifacts_dir
from worker.cache import CacheServer, ResultCache
from worker.committer import Committer
from worker.jobs import JobContext, Outcome, run_job
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.poller import Poller, ServedModel
from worker.runtime import Runtime
from worker.store import NodeJobState, NodeStore

from ..conftest import Chain

pytestmark = pytest.mark.integration

PRICE = 10**15
CACHE_PRICE = 10**14
MAX_FEE = 2 * 10**15


def test_cache_hit_returns_reference_result_for_cache_fee(chain: Chain, tmp_path: Path) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model = load_model(artifacts_dir(), "digits-mlp")
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    node, agent = chain.market(1), chain.market(6)
    node.register_node(2 * 10**18)
    node.set_model_price(model_id, PRICE)
    with pytest.raises(ContractRevert) as exc:
        set_cache_price(node, model_id, PRICE + 1)
    assert exc.value.name == "CachePriceAboveModelPrice"
    set_cache_price(node, model_id, CACHE_PRICE)
    assert cache_price_of(node, node.client.address, model_id) == CACHE_PRICE

    images, _ = digits_test_split()
    data, other = encode_digits_input(images[3]), encode_digits_input(images[4])

    def submit(x: bytes) -> int:
        now = int(chain.client(0).now())
        return agent.submit_job(
            JobRequest(
                model_id=model_id,
                input_hash=keccak(x),
                input=x,
                max_fee=MAX_FEE,
                deadline=now + 600,
            )
        )

    # the reference: claimed, run, committed and settled the ordinary way
    ref = submit(data)
    node.claim_job(ref)
    (output,) = model.run_inputs([data])
    node.commit_result(ref, keccak(output), output)
    server = CacheServer(node, ResultCache(make_engine(f"sqlite:///{tmp_path / 'node.db'}")))
    assert not server.learn(ref, output), "not settled yet: not cached"
    repeat = submit(data)
    assert server.answer(repeat, model_id, keccak(data), MAX_FEE) is None
    chain.warp(chain.deployment.params.challenge_window)
    node.finalize(ref)
    assert server.learn(ref, output)
    assert not server.learn(ref, output), "one entry per (model, input)"

    # the repeat: answered at once from the cache at the cache price
    earned = node.withdrawable(node.client.address)
    refund = agent.withdrawable(agent.client.address)
    assert server.answer(repeat, model_id, keccak(data), MAX_FEE) == ref
    job = agent.job(repeat)
    assert job.status == JobStatus.SETTLED
    assert job.result_hash == agent.job(ref).result_hash == keccak(output)
    assert job.price == CACHE_PRICE and job.collateral == 0
    fee = CACHE_PRICE * chain.deployment.params.fee_bps // 10_000
    assert node.withdrawable(node.client.address) - earned == CACHE_PRICE - fee
    assert agent.withdrawable(agent.client.address) - refund == MAX_FEE - CACHE_PRICE
    assert cache_reference(agent, repeat) == ref and cache_reference(agent, ref) is None
    committed = agent.jobs.events.ResultCommitted().get_logs(
        argument_filters={"jobId": repeat}, from_block=chain.deployment.start_block
    )
    assert bytes(committed[0]["args"]["output"]) == output
    # an auditor checks the cache-answered job like any other (re-execution included)
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)
    res = CliRunner().invoke(app, ["audit", str(repeat), "--deployment", str(dep), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ok"]

    # another input misses; a stale entry (a reference that is not this input's) is refused
    miss = submit(other)
    assert server.answer(miss, model_id, keccak(other), MAX_FEE) is None
    assert agent.job(miss).status == JobStatus.OPEN
    # the cache price above the job's max fee: the node claims and runs it instead
    third = submit(data)
    assert server.answer(third, model_id, keccak(data), CACHE_PRICE - 1) is None
    with pytest.raises(ContractRevert) as exc:
        answer_from_cache(node, miss, ref, output)
    assert exc.value.name == "CacheReferenceMismatch"


def test_node_poller_answers_a_repeat_from_its_cache(chain: Chain, tmp_path: Path) -> None:
    """The node's own loop: the poller claims the first job, the worker runs it, the
    committer commits it; once settled, the poller's cache hook answers the same input at
    once (nothing claimed, nothing queued for inference) and records it as committed."""
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    node, agent = chain.market(1), chain.market(6)
    node.register_node(2 * 10**18)
    node.set_model_price(model_id, PRICE)
    set_cache_price(node, model_id, CACHE_PRICE)

    store = NodeStore(f"sqlite:///{tmp_path / 'node.sqlite'}")
    txm = TxManager(node.client, store.sessions)
    runtime = Runtime(artifacts_dir())
    queued: list[int] = []
    served = [ServedModel(model_id, "digits-mlp", PRICE, runtime.model("digits-mlp").decode_input)]
    poller = Poller(node, txm, store, served, queued.append)
    poller.serve_hook = CacheServer(
        node, ResultCache(store.engine), txm, learn_every_s=0
    ).serve_seen
    committer = Committer(node, txm, store)
    ctx = JobContext(store, runtime, BlobStore(tmp_path / "blobs"), "blob://")
    data = encode_digits_input(digits_test_split()[0][7])

    def submit() -> int:
        now = int(chain.client(0).now())
        req = JobRequest(
            model_id=model_id,
            input_hash=keccak(data),
            input=data,
            max_fee=MAX_FEE,
            deadline=now + 600,
        )
        return agent.submit_job(req)

    try:
        first = submit()
        poller.poll()
        assert queued == [first]
        assert run_job(ctx, first) == Outcome.READY
        assert committer.commit_ready() == 1
        assert node.job(first).status == JobStatus.COMMITTED
        chain.warp(chain.deployment.params.challenge_window)
        chain.market(8).finalize(first)  # anyone (the node's key is the txm's)

        second = submit()
        poller.poll()
        assert queued == [first], "the repeat was not claimed or run"
        job = node.job(second)
        assert job.status == JobStatus.SETTLED and job.price == CACHE_PRICE
        assert job.result_hash == node.job(first).result_hash
        local = store.get(second)
        assert local is not None and local.state == NodeJobState.COMMITTED
        assert local.result_hash == "0x" + job.result_hash.hex()
        assert f"reference job {first}" in (local.error or "")
    finally:
        runtime.close()


def test_cli_cache_price(chain: Chain, tmp_path: Path) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)
    key = DEV_KEYS[2]
    node = chain.market(2)
    run = CliRunner().invoke
    args = ["node", "cache-price", "digits-mlp", "--deployment", str(dep), "--key", key]

    res = run(app, [*args[:3], str(CACHE_PRICE), *args[3:]])
    assert res.exit_code == 1 and "you do not serve digits-mlp" in res.output
    node.register_node(2 * 10**18)
    node.set_model_price(model_id, PRICE)
    res = run(app, [*args[:3], str(PRICE + 1), *args[3:]])
    assert res.exit_code == 1 and "above your price" in res.output
    res = run(app, [*args[:3], str(CACHE_PRICE), *args[3:]])
    assert res.exit_code == 0, res.output
    assert cache_price_of(node, node.client.address, model_id) == CACHE_PRICE
    res = run(app, [*args[:3], "0", *args[3:]])
    assert res.exit_code == 0 and "stopped" in res.output
    assert cache_price_of(node, node.client.address, model_id) is None
