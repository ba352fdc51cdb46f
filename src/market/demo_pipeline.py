"""`verimarket demo --pipeline`: issue #10 part 2, one model's segments run by different nodes.

On a fresh local chain: the digits MLP is registered with its three segments' real ezkl
verifiers; three staked nodes (dev keys 3, 4, 5) each run the node service's pipeline loop
(worker.pipeline_loop: its own node store and TxManager) configured to take one segment:
each finds the job on chain, claims its segment once its input blob is there, runs it in
float64 from the activation blob the previous node committed, and commits its output hashes
to PipelineJobs. Each job's result is compared with one node running the whole model and
audited (`verimarket audit --pipeline`); one segment is challenged and its node's loop
answers with a real proof verified on chain; after the challenge window the loops finalize
and each node is paid its segment. The loops run in-process, in turn (the point is the
protocol, not throughput). See docs/pipeline.md.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from market.blobs import BlobStore
from market.canonical import decode_tensor, keccak
from market.chain.anvil import DEV_KEYS, start_anvil
from market.chain.client import ChainClient
from market.chain.deploy import deploy
from market.chain.market import Market
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentStatus
from market.chain.types import Segment
from market.paths import artifacts_dir

ETH = 10**18
FEES = (3 * 10**14, 2 * 10**14, 10**14)
NODE_KEYS = (3, 4, 5)
PAYER_KEY = 6
KEEPER_KEY = 7


def run_pipeline_demo(
    *, jobs: int = 3, as_json: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Run ``jobs`` pipelined digits jobs end to end; print and return the summary."""
    from market.audit_pipeline import audit_pipeline_job
    from market.chain.txmanager import TxManager
    from market.db.txstore import ChainTx
    from prover import ProverConfig, build_model
    from worker.models import build_models, digits_test_split, encode_digits_input, load_model
    from worker.pipeline import SegmentRunner
    from worker.pipeline_loop import BlobSource, PipelineLoop, ServedPipeline
    from worker.store import NodeStore

    console = console or Console(stderr=True)
    if jobs < 1:
        raise ValueError("--jobs must be at least 1")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="verimarket-demo-pipeline-") as tmp:
        work = Path(tmp)
        artifacts = artifacts_dir()
        manifest = build_models(artifacts, ["digits-mlp"], progress=False)[0]
        t0 = time.perf_counter()
        config = ProverConfig.from_env()
        circuits = build_model(artifacts / "digits-mlp", config)
        out["circuits_s"] = round(time.perf_counter() - t0, 2)
        whole = load_model(artifacts, "digits-mlp", device="cpu")
        runner = SegmentRunner(artifacts / "digits-mlp", circuits, device="cpu")
        anvil = start_anvil(log_path=work / "anvil.log")
        try:
            deployer = ChainClient(anvil.rpc_url, DEV_KEYS[0])
            deployment = deploy(deployer)
            owner = Market(deployer, deployment)
            segments = []
            for seg in circuits.segments:
                receipt: Any = deployer.send(data=seg.verifier().bytecode)
                segments.append(
                    Segment(
                        bytes.fromhex(seg.source_hash[2:]),
                        bytes.fromhex(seg.vk_hash[2:]),
                        str(receipt["contractAddress"]),
                    )
                )
            model_id = owner.register_model(
                manifest.artifacts_hash_bytes, manifest.output_scale, "model://digits-mlp", segments
            )
            blobs = BlobStore(work / "blobs")
            loops: list[PipelineLoop] = []
            for key in NODE_KEYS:
                market = Market(ChainClient(anvil.rpc_url, DEV_KEYS[key]), deployment)
                market.register_node(2 * ETH)
                market.set_model_price(model_id, FEES[len(loops)])
                store = NodeStore(f"sqlite:///{work}/node{key}.db")
                served = [ServedPipeline(model_id, runner, (len(loops),), FEES[len(loops)])]
                loops.append(
                    PipelineLoop(
                        market,
                        TxManager(market.client, store.sessions),
                        store,
                        served,
                        BlobSource(blobs),
                    )
                )
            payer = Pipeline(ChainClient(anvil.rpc_url, DEV_KEYS[PAYER_KEY]), deployment)
            keeper = Pipeline(ChainClient(anvil.rpc_url, DEV_KEYS[KEEPER_KEY]), deployment)

            def rounds(done: Callable[[], bool], limit: int = 20) -> None:
                for _ in range(limit):
                    for loop in loops:
                        loop.step()
                    if done():
                        return
                raise RuntimeError("the node loops did not finish the job")

            images, labels = digits_test_split()
            gas: dict[str, list[int]] = {}
            rows = []
            job_ids = []
            for n in range(jobs):
                data = encode_digits_input(images[n])
                blobs.put(data)
                started = time.perf_counter()
                job_id, receipt = payer.submit(
                    model_id, keccak(data), runner.input_boundary_hash(data), FEES, data
                )
                gas.setdefault("submitJob", []).append(int(receipt["gasUsed"]))
                rounds(partial(_status_is, payer, job_id, PipelineStatus.COMPLETED))
                wall = time.perf_counter() - started
                (single,) = whole.run_inputs([data])
                result = blobs.get("0x" + payer.segment(job_id, 2).output_hash.hex())
                job_ids.append(job_id)
                rows.append(
                    {
                        "job": job_id,
                        "label": int(labels[n]),
                        "predicted": int(decode_tensor(result).values.argmax()),
                        "result_hash": "0x" + keccak(result).hex(),
                        "same_as_one_node": result == single,
                        "nodes": [payer.segment(job_id, i).node for i in range(3)],
                        "wall_s": round(wall, 3),
                    }
                )

            # Spot check: the keeper challenges one segment of the first job; its node's loop
            # proves it.
            spot = 2  # fc3: the quickest proof
            receipt = keeper.challenge(job_ids[0], spot)
            gas["challengeSegment"] = [int(receipt["gasUsed"])]
            t0 = time.perf_counter()
            rounds(lambda: payer.segment(job_ids[0], spot).status == SegmentStatus.PROVEN, 3)
            prove_s = time.perf_counter() - t0

            w3 = deployer.w3
            w3.provider.make_request("evm_increaseTime", [payer.challenge_window() + 1])  # type: ignore[arg-type]
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            rounds(lambda: all(payer.job(j).status == PipelineStatus.FINALIZED for j in job_ids), 2)
            for loop in loops:  # the nodes' own transactions, by what they did
                with loop.store.sessions() as s:
                    for tx in s.scalars(select(ChainTx).order_by(ChainTx.id)):
                        action = (tx.idempotency_key or "").split(":")[0].removeprefix("pipeline-")
                        name = {
                            "claim": "claimSegment",
                            "commit": "commitSegment",
                            "prove": "proveSegment",
                            "finalize": "finalize",
                        }.get(action, action)
                        gas.setdefault(name, []).append(int(tx.gas_used or 0))
            audits = [
                audit_pipeline_job(payer, j, artifacts, blobs, "", config).ok for j in job_ids
            ]
            finalized = all(payer.job(j).status == PipelineStatus.FINALIZED for j in job_ids)
            credited = {loop.address: payer.withdrawable(loop.address) for loop in loops}
            out.update(
                {
                    "jobs": rows,
                    "spot_check": {
                        "job": job_ids[0],
                        "segment": spot,
                        "prove_and_post_s": round(prove_s, 2),
                        "status": payer.segment(job_ids[0], spot).status.name.lower(),
                    },
                    "finalized": finalized,
                    "audited_ok": audits,
                    "credited_wei": credited,
                    "gas": gas,
                    "gas_per_job": (
                        sum(gas["submitJob"])
                        + sum(gas["claimSegment"])
                        + sum(gas["commitSegment"])
                        + sum(gas["finalize"])
                    )
                    // jobs,
                    "contract_balance_wei": payer.balance(),
                }
            )
        finally:
            anvil.stop()
    out["ok"] = bool(
        out["finalized"]
        and all(out["audited_ok"])
        and all(r["same_as_one_node"] for r in out["jobs"])
        and out["spot_check"]["status"] == "proven"
    )
    if as_json:
        print(json.dumps(out, indent=1, default=str))
    else:
        _print(out, console)
    return out


def _status_is(payer: Pipeline, job_id: int, status: PipelineStatus) -> bool:
    return payer.job(job_id).status == status


def _print(out: dict[str, Any], console: Console) -> None:
    table = Table(title="verimarket demo --pipeline: digits-mlp, 3 segments on 3 nodes")
    for col in ("job", "label", "predicted", "result hash", "= one node", "wall s"):
        table.add_column(col)
    for r in out["jobs"]:
        table.add_row(
            str(r["job"]),
            str(r["label"]),
            str(r["predicted"]),
            r["result_hash"][:18] + "…",
            "yes" if r["same_as_one_node"] else "NO",
            str(r["wall_s"]),
        )
    console.print(table)
    spot = out["spot_check"]
    console.print(
        f"spot check: job {spot['job']} segment {spot['segment']} -> {spot['status']} "
        f"(proved and posted in {spot['prove_and_post_s']} s)"
    )
    audited = out["audited_ok"]
    console.print(
        f"audit (verimarket audit --pipeline): {sum(audited)}/{len(audited)} jobs check out"
    )
    console.print(
        f"gas per pipelined job (submit, 3 claims, 3 commits, finalize): {out['gas_per_job']:,}"
    )
    for name, values in out["gas"].items():
        console.print(f"  {name}: {', '.join(f'{v:,}' for v in values)}")
    for node, wei in out["credited_wei"].items():
        console.print(f"  credited to {node}: {wei / ETH:.6f} ETH")
    console.print("ok" if out["ok"] else "FAILED")
