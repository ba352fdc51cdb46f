"""Pipelined jobs on a real anvil chain: the digits MLP's three segments run by three nodes
(dev keys 3, 4, 5), each with its own float64 segment and its real ezkl circuit, linked on
chain by PipelineJobs, against one node running the whole model (worker.models) and one
ezkl run of all circuits (prover.run_model). One segment is then spot-checked with a real
proof verified on chain by its ezkl-generated verifier.

The circuits share test_zk_protocol's cache folder (same key), so whichever module runs first
builds them and the other reuses them. Gas figures (whole transactions) print with ``-s``;
docs/pipeline.md quotes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_utils.crypto import keccak

from market.blobs import BlobStore
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentCommit, SegmentStatus
from market.chain.types import JobRequest, Segment
from market.errors import ContractRevert
from market.paths import REPO_ROOT
from prover import ModelCircuits, ProverConfig, build_model, run_model
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.pipeline import Activation, ActivationError, LinkMismatch, SegmentNode, SegmentRunner

from ..conftest import Chain

pytestmark = pytest.mark.integration

ETH = 10**18
FEES = [3 * 10**14, 2 * 10**14, 10**14]  # wei per segment (fc1 is the largest)
NODE_KEYS = (3, 4, 5)
PAYER_KEY = 6
KEEPER_KEY = 7
OUTPUT_SCALE = 16

GAS: dict[str, int] = {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = REPO_ROOT / "artifacts" / "digits-mlp"
    if (built / "manifest.json").is_file():
        return built
    out = tmp_path_factory.mktemp("models")
    build_models(out, ["digits-mlp"], progress=False)
    return out / "digits-mlp"


@pytest.fixture(scope="module")
def circuits(model_dir: Path) -> ModelCircuits:
    key = hashlib.sha256((model_dir / "manifest.json").read_bytes()).hexdigest()[:16]
    return build_model(model_dir, ProverConfig(cache_dir=Path(f"/tmp/verimarket-zk-{key}")))


@pytest.fixture(scope="module")
def runner(model_dir: Path, circuits: ModelCircuits) -> SegmentRunner:
    return SegmentRunner(model_dir, circuits, device="cpu")


@pytest.fixture(scope="module")
def gas_report() -> Iterator[dict[str, int]]:
    yield GAS
    if GAS:
        print("\n" + "\n".join(f"gas {name:<52} {value:>10,}" for name, value in GAS.items()))


@dataclass
class World:
    chain: Chain
    model_id: bytes
    payer: Pipeline
    keeper: Pipeline
    nodes: list[SegmentNode]
    blobs: BlobStore

    def submit(self, data: bytes, runner: SegmentRunner) -> tuple[int, Any]:
        self.blobs.put(data)
        return self.payer.submit(
            self.model_id, keccak(data), runner.input_boundary_hash(data), FEES, data
        )

    def owed(self, job_ids: list[int]) -> int:
        """Σ escrow + Σ bonds + Σ challenge bonds + Σ withdrawable of every actor."""
        total = 0
        for job_id in job_ids:
            job = self.payer.job(job_id)
            total += job.escrow
            for i in range(job.segment_count):
                seg = self.payer.segment(job_id, i)
                total += seg.bond + seg.challenge_bond
        actors = [n.pipeline.client.address for n in self.nodes]
        actors += [self.payer.client.address, self.keeper.client.address]
        return total + sum(self.payer.withdrawable(a) for a in actors)


@pytest.fixture()
def world(
    chain: Chain, circuits: ModelCircuits, model_dir: Path, runner: SegmentRunner, tmp_path: Path
) -> World:
    owner = chain.market(0)
    segments = []
    for seg in circuits.segments:
        receipt: Any = owner.client.send(data=seg.verifier().bytecode)
        segments.append(
            Segment(
                bytes.fromhex(seg.source_hash[2:]),
                bytes.fromhex(seg.vk_hash[2:]),
                str(receipt["contractAddress"]),
            )
        )
    artifacts_hash = keccak((model_dir / "manifest.json").read_bytes())
    model_id = owner.register_model(artifacts_hash, OUTPUT_SCALE, "blob://digits-mlp", segments)
    blobs = BlobStore(tmp_path / "blobs")  # the market's blob store, shared by every party
    nodes = []
    for key in NODE_KEYS:
        market = chain.market(key)
        market.register_node(2 * ETH)
        market.set_model_price(model_id, 1)
        nodes.append(SegmentNode(Pipeline(market.client, chain.deployment), runner, blobs))
    payer = Pipeline(chain.client(PAYER_KEY), chain.deployment)
    keeper = Pipeline(chain.client(KEEPER_KEY), chain.deployment)
    return World(chain, model_id, payer, keeper, nodes, blobs)


def run_pipeline(w: World, data: bytes, runner: SegmentRunner) -> tuple[int, list[Any]]:
    job_id, submitted = w.submit(data, runner)
    GAS.setdefault(
        f"pipeline submitJob (3 segments, {len(data)} B inline input)", submitted["gasUsed"]
    )
    for i, node in enumerate(w.nodes):
        receipt = node.pipeline.claim(job_id, i)
        GAS.setdefault(f"pipeline claimSegment {i}", receipt["gasUsed"])
    outputs = []
    for i, node in enumerate(w.nodes):
        out, receipt = node.work(job_id, i)
        GAS.setdefault(f"pipeline commitSegment {i}", receipt["gasUsed"])
        outputs.append(out)
    return job_id, outputs


def test_digits_across_three_nodes_matches_one_node(
    world: World, runner: SegmentRunner, circuits: ModelCircuits, model_dir: Path, gas_report: Any
) -> None:
    w = world
    images, _ = digits_test_split()
    whole = load_model(model_dir.parent, model_dir.name, device="cpu")
    job_ids = []
    for image in images[:2]:
        data = encode_digits_input(image)
        job_id, outputs = run_pipeline(w, data, runner)
        job_ids.append(job_id)
        # The last blob is, bit for bit, what one node running the whole model outputs.
        (expected,) = whole.run_inputs([data])
        assert outputs[-1].output == expected
        job = w.payer.job(job_id)
        assert job.status == PipelineStatus.COMPLETED
        assert w.payer.segment(job_id, 2).output_hash == keccak(expected)
        # The committed boundary hashes are those of one ezkl run of every circuit.
        one_run = run_model(circuits, np.asarray(image, dtype=np.float64) / 16)
        committed = [job.input_boundary_hash] + [
            w.payer.segment(job_id, i).output_boundary_hash for i in range(3)
        ]
        assert committed == list(one_run.boundary_hashes)
        # Each intermediate blob links: the next node started from it.
        for i in range(2):
            act = Activation.decode(outputs[i].output)
            assert outputs[i + 1].input_hash == outputs[i].output_hash
            assert act.values.shape == ((1, 32), (1, 16))[i]
    assert w.payer.balance() == w.owed(job_ids) == 2 * (sum(FEES) + 3 * w.payer.segment_bond())

    # Baseline: the same job done by one node on JobMarket (mode none, output by URI).
    data = encode_digits_input(images[0])
    (expected,) = whole.run_inputs([data])
    single = w.chain.market(NODE_KEYS[0])
    agent = w.chain.market(PAYER_KEY)
    now = int(agent.client.w3.eth.get_block("latest")["timestamp"])
    request = JobRequest(w.model_id, keccak(data), sum(FEES), now + 600, input=data)
    submitted = agent.client.transact(
        agent.jobs.functions.submitJob(request.as_tuple()), value=sum(FEES)
    )
    (single_id,) = agent.job_ids_from(submitted, "JobSubmitted")
    claimed = single.claim_job(single_id)
    committed_tx = single.commit_result(
        single_id, keccak(expected), b"", "blob://" + "0x" + keccak(expected).hex()
    )

    w.chain.warp(max(w.payer.challenge_window(), w.chain.deployment.params.challenge_window) + 1)
    finals = [w.keeper.finalize(job_id) for job_id in job_ids]
    settled = agent.finalize(single_id)
    for job_id in job_ids:
        assert w.payer.job(job_id).status == PipelineStatus.FINALIZED
    bond = w.payer.segment_bond()
    for node, fee in zip(w.nodes, FEES, strict=True):
        assert w.payer.withdrawable(node.pipeline.client.address) == 2 * (fee + bond)
    assert w.payer.withdrawable(w.payer.client.address) == 0
    assert w.payer.balance() == w.owed(job_ids)
    before = w.nodes[1].pipeline.client.balance(w.nodes[1].pipeline.client.address)
    withdrawn = w.nodes[1].pipeline.withdraw()
    after = w.nodes[1].pipeline.client.balance(w.nodes[1].pipeline.client.address)
    cost = withdrawn["gasUsed"] * withdrawn["effectiveGasPrice"]
    assert after - before + cost == 2 * (FEES[1] + bond)

    GAS["pipeline finalize (3 segments)"] = finals[0]["gasUsed"]
    steps = [
        k
        for k in GAS
        if k.startswith(("pipeline submitJob", "pipeline claim", "pipeline commit", "pipeline fin"))
    ]
    GAS["pipeline total per job (submit, 3 claims, 3 commits, finalize)"] = sum(
        GAS[k] for k in steps
    )
    GAS[f"baseline JobMarket submitJob ({len(data)} B inline input)"] = submitted["gasUsed"]
    GAS["baseline JobMarket claimJob"] = claimed["gasUsed"]
    GAS["baseline JobMarket commitResult (output by URI)"] = committed_tx["gasUsed"]
    GAS["baseline JobMarket finalize"] = settled["gasUsed"]
    GAS["baseline total per job"] = (
        submitted["gasUsed"] + claimed["gasUsed"] + committed_tx["gasUsed"] + settled["gasUsed"]
    )


def test_wrong_link_and_forged_blob_are_refused(world: World, runner: SegmentRunner) -> None:
    w = world
    images, _ = digits_test_split()
    data = encode_digits_input(images[3])
    job_id, _ = w.submit(data, runner)
    for i, node in enumerate(w.nodes):
        node.pipeline.claim(job_id, i)
    first, _ = w.nodes[0].work(job_id, 0)
    # Node 1 tries to commit a run from another activation than node 0's: the chain refuses.
    other = runner.run(0, encode_digits_input(images[4]))
    forged = runner.run(1, other.output)
    with pytest.raises(ContractRevert) as err:
        w.nodes[1].pipeline.commit(job_id, 1, forged.commit())
    assert err.value.name == "InputHashLinkMismatch"
    assert err.value.args_by_name["expected"] == first.output_hash
    # A commit that names the right blob but another boundary hash is refused too.
    honest = runner.run(1, first.output)
    bad = SegmentCommit(first.output_hash, 12345, honest.output_hash, honest.output_boundary_hash)
    with pytest.raises(ContractRevert) as err:
        w.nodes[1].pipeline.commit(job_id, 1, bad)
    assert err.value.name == "BoundaryLinkMismatch"
    # A blob whose shadow was tampered with is refused by the next node before it works.
    act = Activation.decode(first.output)
    tampered = Activation(
        act.values,
        type(act.shadow)(
            (act.shadow.values[0] + 1, *act.shadow.values[1:]),
            act.shadow.shape,
            act.shadow.scale_bits,
        ),
    )
    out = runner.run(1, tampered.encode())
    assert out.input_boundary_hash != first.output_boundary_hash
    # A blob whose float64 part strays from its shadow is refused (a proof would not catch it).
    drifted = Activation(act.values + 0.5, act.shadow)
    with pytest.raises(ActivationError, match="strays"):
        runner.run(1, drifted.encode())
    with pytest.raises(ActivationError):
        Activation.decode(first.output[:-1])
    with pytest.raises(LinkMismatch):
        w.nodes[2].work(job_id, 2)  # segment 1 is not committed yet
    w.nodes[1].work(job_id, 1)
    w.nodes[2].work(job_id, 2)
    assert w.payer.job(job_id).status == PipelineStatus.COMPLETED


def test_segment_spot_checked_with_a_real_proof(
    world: World, runner: SegmentRunner, gas_report: Any
) -> None:
    w = world
    images, _ = digits_test_split()
    job_id, _ = run_pipeline(w, encode_digits_input(images[1]), runner)
    index = 2  # fc3: the smallest circuit, the quickest proof
    receipt = w.keeper.challenge(job_id, index)
    GAS["pipeline challengeSegment"] = receipt["gasUsed"]
    assert w.payer.segment(job_id, index).status == SegmentStatus.CHALLENGED
    node = w.nodes[index]
    proof, proved = node.answer_challenge(job_id, index)
    GAS["pipeline proveSegment (real ezkl verifier)"] = proved["gasUsed"]
    assert w.payer.segment(job_id, index).status == SegmentStatus.PROVEN
    # The proof commits to the committed boundaries (it has no public instances).
    assert (proof.input_hash, proof.output_hash) == (
        w.payer.segment(job_id, index - 1).output_boundary_hash,
        w.payer.segment(job_id, index).output_boundary_hash,
    )
    assert w.payer.withdrawable(node.pipeline.client.address) == w.payer.challenge_bond()
    w.chain.warp(w.payer.challenge_window() + 1)
    w.keeper.finalize(job_id)
    assert w.payer.balance() == w.owed([job_id])
    job = w.payer.job(job_id)
    assert job.status == PipelineStatus.FINALIZED and job.faulty_from == 3


@pytest.mark.long
def test_demo_pipeline_runs_end_to_end() -> None:
    """`verimarket demo --pipeline` on its own fresh chain (its own circuits cache)."""
    from market.demo_pipeline import run_pipeline_demo

    out = run_pipeline_demo(jobs=2, as_json=True)
    assert out["ok"]
    assert [r["same_as_one_node"] for r in out["jobs"]] == [True, True]
    assert out["spot_check"]["status"] == "proven"
    assert out["contract_balance_wei"] == sum(out["credited_wei"].values())
