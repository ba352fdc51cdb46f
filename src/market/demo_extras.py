"""`verimarket demo --redundant` and `--cache`: issue #10's redundant k-of-n jobs and the
verifiable result cache, each shown end to end on a fresh local chain with the real digits
model run in-process (no worker processes: the point is the protocol, not throughput).

``--redundant``: three staked nodes (dev keys 3, 4, 5) take the seats of a 2-of-3 job,
commit keccak(resultHash, salt, node), reveal, and the job settles on the agreed result;
the gas of every transaction is reported.

``--cache``: a job is run and settled the ordinary way (the reference); the same input
submitted again is answered at once from the node's cache at its cache price. The time to
result of both is measured in the same run.

Both return a summary dict (``bench/extras_bench.py`` records them as figures).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from market.canonical import decode_tensor, keccak
from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.market import Market
from market.chain.redundant import Redundant, RedundantRequest
from market.chain.result_cache import cache_reference, set_cache_price
from market.chain.types import Deployment, JobRequest, JobStatus, MarketParams, Segment
from market.paths import artifacts_dir

ETH = 10**18
PRICE = 10**15
CACHE_PRICE = 10**14
MAX_FEE = 2 * 10**15
BOND = 10**16


class _Setup:
    """A fresh anvil with the protocol deployed and digits-mlp registered."""

    def __init__(self, artifacts: Path, work: Path) -> None:
        from worker.models import build_models, load_model

        manifest = build_models(artifacts, ["digits-mlp"], progress=False)[0]
        self.model = load_model(artifacts, "digits-mlp")
        self.anvil: Anvil = start_anvil(log_path=work / "anvil.log")
        self.rpc = self.anvil.rpc_url
        deployer = ChainClient(self.rpc, DEV_KEYS[0])
        self.deployment: Deployment = deploy(
            deployer, MarketParams(challenge_window=2, max_job_duration=600, unbonding_period=3600)
        )
        self.market = Market(deployer, self.deployment)
        self.model_id = self.market.register_model(
            manifest.artifacts_hash_bytes,
            manifest.output_scale,
            "model://digits-mlp",
            [Segment(*s) for s in manifest.chain_segments()],
        )

    def market_for(self, key: int) -> Market:
        return Market(ChainClient(self.rpc, DEV_KEYS[key]), self.deployment)

    def node(self, key: int) -> Market:
        m = self.market_for(key)
        m.register_node(5 * ETH)
        m.set_model_price(self.model_id, PRICE)
        return m

    def warp(self, seconds: int) -> None:
        w3 = self.market.client.w3
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def close(self) -> None:
        self.anvil.stop()


def _digits_input(index: int) -> tuple[bytes, int]:
    from worker.models import digits_test_split, encode_digits_input

    images, labels = digits_test_split()
    return encode_digits_input(images[index]), int(labels[index])


def run_redundant(setup: _Setup) -> dict[str, Any]:
    """A 2-of-3 digits job with nodes 3, 4, 5; gas per transaction and in total."""
    from worker.redundant import RedundantWorker

    with tempfile.TemporaryDirectory(prefix="verimarket-seats-") as seats:
        workers = [
            RedundantWorker(
                Redundant(setup.node(key)), setup.model, setup.model_id, Path(seats) / str(key)
            )
            for key in (3, 4, 5)
        ]
        agent = Redundant(setup.market_for(6))
        data, label = _digits_input(0)
        now = int(agent.client.now())
        gas: dict[str, list[int]] = {"submit": [], "commit": [], "reveal": [], "finalize": []}
        block = agent.client.block_number()
        job_id = agent.submit(
            RedundantRequest(
                model_id=setup.model_id,
                input_hash=keccak(data),
                input=data,
                fee=3 * PRICE,
                k=2,
                n=3,
                bond=BOND,
                commit_deadline=now + 120,
                reveal_deadline=now + 300,
            )
        )
        t0 = time.perf_counter()
        for w in workers:
            w.commit(job_id)
        for w in workers:
            w.reveal(job_id)
        agent.finalize(job_id)
        wall = time.perf_counter() - t0
        for name, receipts in _receipts_since(
            agent.client, setup.deployment.redundant_jobs, block
        ).items():
            gas[name].extend(receipts)
        job = agent.job(job_id)
        output = agent.revealed_output(job_id, job.winner) or b""
        predicted = int(decode_tensor(output).values.argmax()) if output else -1
        shares = {
            w.redundant.client.address: agent.withdrawable(w.redundant.client.address)
            for w in workers
        }
    total = sum(sum(v) for v in gas.values())
    return {
        "job_id": job_id,
        "status": job.status.name.lower(),
        "k": job.k,
        "n": job.n,
        "winner": "0x" + job.winner.hex(),
        "predicted": predicted,
        "label": label,
        "credited_wei": shares,
        "gas": {name: v for name, v in gas.items()},
        "gas_total": total,
        "gas_per_node": (sum(gas["commit"]) + sum(gas["reveal"])) // 3,
        "wall_s": round(wall, 3),
    }


def _receipts_since(
    client: ChainClient, address: str, first_block: int, name: str = "RedundantJobs"
) -> dict[str, list[int]]:
    """Gas of each transaction to contract ``name`` at ``address`` mined after
    ``first_block``, by the function it called."""
    w3 = client.w3
    contract = client.contract(name, address)
    out: dict[str, list[int]] = {}
    for number in range(first_block + 1, client.block_number() + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            assert not isinstance(tx, bytes)
            if str(tx.get("to", "")).lower() != address.lower():
                continue
            fn, _ = contract.decode_function_input(tx["input"])
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            out.setdefault(fn.fn_name, []).append(int(receipt["gasUsed"]))
    return out


def run_cache(setup: _Setup, reps: int = 1) -> dict[str, Any]:
    """Fresh runs (submit, claim, inference, commit) and cache hits (submit, answer from the
    cache) on the same inputs, ``reps`` of each, timed from submit to the result on chain in
    the same run. A fresh result settles one challenge window later; a cache hit at once."""
    from market.db import make_engine
    from worker.cache import CacheServer, ResultCache

    node = setup.node(1)
    set_cache_price(node, setup.model_id, CACHE_PRICE)
    agent = setup.market_for(6)

    def submit(data: bytes) -> int:
        return agent.submit_job(
            JobRequest(
                model_id=setup.model_id,
                input_hash=keccak(data),
                input=data,
                max_fee=MAX_FEE,
                deadline=int(agent.client.now()) + 600,
            )
        )

    market_address = setup.deployment.job_market
    fresh_ms: list[float] = []
    hit_ms: list[float] = []
    pairs: list[tuple[int, int | None]] = []
    correct = 0
    with tempfile.TemporaryDirectory(prefix="verimarket-cache-") as d:
        server = CacheServer(node, ResultCache(make_engine(f"sqlite:///{Path(d) / 'node.db'}")))
        for i in range(reps):
            data, label = _digits_input(3 + i)
            first = agent.client.block_number()
            t0 = time.perf_counter()
            ref = submit(data)
            node.claim_job(ref)
            (output,) = setup.model.run_inputs([data])
            node.commit_result(ref, keccak(output), output)
            fresh_ms.append((time.perf_counter() - t0) * 1000)
            correct += int(decode_tensor(output).values.argmax()) == label
            setup.warp(setup.deployment.params.challenge_window)
            node.finalize(ref)
            server.learn(ref, output)
            fresh_gas = _receipts_since(agent.client, market_address, first, "JobMarket")

            first = agent.client.block_number()
            earned = node.withdrawable(node.client.address)
            t0 = time.perf_counter()
            repeat = submit(data)
            answered = server.answer(repeat, setup.model_id, keccak(data), MAX_FEE)
            hit_ms.append((time.perf_counter() - t0) * 1000)
            paid = node.withdrawable(node.client.address) - earned
            hit_gas = _receipts_since(agent.client, market_address, first, "JobMarket")
            pairs.append((ref, answered))
    ref, answered = pairs[-1]
    repeat = agent.job_count()
    job, ref_job = agent.job(repeat), agent.job(ref)
    return {
        "reference_job": ref,
        "cached_job": repeat,
        "answered_from": answered,
        "all_answered_from_their_reference": all(r == a for r, a in pairs),
        "reference_checked_on_chain": cache_reference(agent, repeat) == ref,
        "same_result": job.result_hash == ref_job.result_hash,
        "settled_at_once": job.status == JobStatus.SETTLED,
        "correct_predictions": f"{correct}/{reps}",
        "price_wei": ref_job.price,
        "cache_price_wei": job.price,
        "node_paid_wei": paid,
        "reps": reps,
        "fresh_result_ms_median": round(statistics.median(fresh_ms), 1),
        "cache_hit_ms_median": round(statistics.median(hit_ms), 1),
        "fresh_result_ms_min": round(min(fresh_ms), 1),
        "cache_hit_ms_min": round(min(hit_ms), 1),
        "fresh_result_ms": [round(x, 1) for x in fresh_ms],
        "cache_hit_ms": [round(x, 1) for x in hit_ms],
        "fresh_gas": {k: v[0] for k, v in fresh_gas.items()},
        "fresh_gas_total": sum(sum(v) for v in fresh_gas.values()),
        "cache_hit_gas": {k: v[0] for k, v in hit_gas.items()},
        "cache_hit_gas_total": sum(sum(v) for v in hit_gas.values()),
        "fresh_settles_after_s": setup.deployment.params.challenge_window,
        "cache_hit_settles_after_s": 0,
    }


def run_extras(
    *,
    redundant: bool,
    cache: bool,
    as_json: bool,
    console: Console | None = None,
    cache_reps: int = 1,
) -> dict[str, Any]:
    """Run the chosen demos on one fresh chain and print their summaries."""
    console = console or Console()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="verimarket-demo-extras-") as work:
        setup = _Setup(artifacts_dir(), Path(work))
        try:
            steps: list[tuple[str, Callable[[_Setup], dict[str, Any]]]] = []
            if redundant:
                steps.append(("redundant", run_redundant))
            if cache:
                steps.append(("cache", lambda st: run_cache(st, cache_reps)))
            for name, fn in steps:
                out[name] = fn(setup)
        finally:
            setup.close()
    if as_json:
        print(json.dumps(out, indent=1, default=str))
    else:
        for name, summary in out.items():
            table = Table(title=f"verimarket demo --{name}")
            table.add_column("what")
            table.add_column("value")
            for k, v in summary.items():
                table.add_row(k, json.dumps(v, default=str) if isinstance(v, dict) else str(v))
            console.print(table)
    return out
