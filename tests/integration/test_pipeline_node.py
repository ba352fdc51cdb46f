"""Pipelined jobs done by the node service's loop (worker.pipeline_loop) and checked by the
auditor (market.audit_pipeline), on anvil with the digits MLP's real circuits.

Three PipelineLoops (dev keys 3, 4, 5), each with its own node store and TxManager (as three
node services have), take one segment each of a job they find on chain by themselves; the
result must equal one node running the whole model. The loops run in-process (one round
each, in turn), because three node processes would each load torch and the circuits, well
over this module's time budget; the loop is the node service's, hooked into NodeService.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from sqlalchemy import func, select
from typer.testing import CliRunner

from market.audit import Verdict
from market.audit_pipeline import audit_pipeline_job
from market.blobs import BlobStore
from market.chain.anvil import DEV_KEYS
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentCommit, SegmentStatus
from market.chain.txmanager import TxManager
from market.cli import app
from market.db.txstore import ChainTx
from market.errors import ConfigError
from market.zk_models import register_zk_model
from prover import ModelCircuits, ProverConfig
from worker.models import digits_test_split, encode_digits_input, load_model
from worker.models.manifest import ModelManifest
from worker.pipeline import Activation, SegmentNode, SegmentRunner
from worker.pipeline_loop import (
    BlobSource,
    PipelineLoop,
    SegmentOffer,
    SegState,
    ServedPipeline,
    parse_segments,
    pipeline_loop,
)
from worker.store import NodeStore

from ..conftest import Chain
from .test_pipeline import (  # noqa: F401 - fixtures
    ETH,
    KEEPER_KEY,
    NODE_KEYS,
    PAYER_KEY,
    World,
    circuits,
    model_dir,
    runner,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(
    chain: Chain,
    circuits: ModelCircuits,  # noqa: F811
    model_dir: Path,  # noqa: F811
    runner: SegmentRunner,  # noqa: F811
    tmp_path: Path,
) -> World:
    """test_pipeline's world, with the model registered as `verimarket` registers a zk
    variant (the manifest's artefacts hash and output scale), so that the node's
    ``pipeline_loop`` and the auditor recognise it from the local artefacts."""
    owner = chain.market(0)
    manifest = ModelManifest.read(model_dir)
    model_id = register_zk_model(owner, manifest, circuits).model_id
    blobs = BlobStore(tmp_path / "blobs")
    nodes = []
    for key in NODE_KEYS:
        market = chain.market(key)
        market.register_node(2 * ETH)
        market.set_model_price(model_id, 1)
        nodes.append(SegmentNode(Pipeline(market.client, chain.deployment), runner, blobs))
    payer = Pipeline(chain.client(PAYER_KEY), chain.deployment)
    keeper = Pipeline(chain.client(KEEPER_KEY), chain.deployment)
    return World(chain, model_id, payer, keeper, nodes, blobs)


def prover_cache(mdir: Path) -> Path:
    """The cache folder test_pipeline's ``circuits`` fixture builds the circuits in."""
    key = hashlib.sha256((mdir / "manifest.json").read_bytes()).hexdigest()[:16]
    return Path(f"/tmp/verimarket-zk-{key}")


def make_loops(
    w: World, r: SegmentRunner, tmp_path: Path, segments: list[tuple[int, ...] | None]
) -> list[PipelineLoop]:
    loops = []
    for key, segs in zip(NODE_KEYS, segments, strict=True):
        market = w.chain.market(key)
        store = NodeStore(f"sqlite:///{tmp_path}/node{key}.db")
        txm = TxManager(market.client, store.sessions)
        served = [ServedPipeline(w.model_id, r, segs, 1)]
        loops.append(PipelineLoop(market, txm, store, served, BlobSource(w.blobs)))
    return loops


def run_rounds(loops: list[PipelineLoop], done: Callable[[], bool], rounds: int = 12) -> None:
    for _ in range(rounds):
        for loop in loops:
            loop.step()
        if done():
            return
    raise AssertionError("the loops did not get there")


def tx_count(loop: PipelineLoop) -> int:
    with loop.store.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(ChainTx)) or 0)


def test_three_node_loops_run_a_pipelined_job(
    world: World,
    runner: SegmentRunner,  # noqa: F811
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    w = world
    loops = make_loops(w, runner, tmp_path, [(0,), (1,), (2,)])
    images, _ = digits_test_split()
    data = encode_digits_input(images[5])
    job_id, _ = w.submit(data, runner)

    run_rounds(loops, lambda: w.payer.job(job_id).status == PipelineStatus.COMPLETED)
    nodes = [loop.address for loop in loops]
    for i in range(3):  # each loop took exactly its own segment
        assert w.payer.segment(job_id, i).node == nodes[i]
    last = w.payer.segment(job_id, 2)
    result = w.blobs.get("0x" + last.output_hash.hex())
    whole = load_model(model_dir.parent, model_dir.name, device="cpu")
    assert result == whole.run_inputs([data])[0]

    # a challenge of the middle segment is answered by its node's loop with a real proof
    w.keeper.challenge(job_id, 1)
    run_rounds(loops, lambda: w.payer.segment(job_id, 1).status == SegmentStatus.PROVEN, 3)

    # after the challenge window one loop finalizes; the others see it done
    w.chain.warp(w.payer.challenge_window() + 1)
    run_rounds(loops, lambda: all(not lp.rows() for lp in loops), 2)
    assert w.payer.job(job_id).status == PipelineStatus.FINALIZED
    assert all(w.payer.withdrawable(n) > 0 for n in nodes)
    assert [[r.state for r in lp.rows((SegState.DONE,))] for lp in loops] == [[SegState.DONE]] * 3

    # the auditor agrees from chain and blobs alone, the posted proof included (CLI: exit 0)
    res = audit_cli(w, model_dir, tmp_path, job_id)
    assert res.exit_code == 0, res.output
    checks = {c["name"]: c["ok"] for c in json.loads(res.output)["checks"]}
    assert checks["result"] and checks["proof of segment 1"] and checks["link 1 -> 2"]
    assert all(checks[f"segment {i} re-run"] for i in range(3))

    # never twice: claim + commit per node, the prove, one finalize; a restarted node (new
    # store handle, TxManager and loop on the same database) sends nothing more
    counts = [tx_count(lp) for lp in loops]
    assert counts[1] == 3 and sum(counts) == 3 * 2 + 1 + 1
    nonce = w.chain.client(NODE_KEYS[0]).w3.eth.get_transaction_count(nodes[0])
    (again,) = make_loops_one(w, runner, tmp_path)
    again.step()
    assert tx_count(again) == counts[0]
    assert w.chain.client(NODE_KEYS[0]).w3.eth.get_transaction_count(nodes[0]) == nonce


def make_loops_one(
    w: World, r: SegmentRunner, tmp_path: Path, segments: tuple[int, ...] = (0,)
) -> list[PipelineLoop]:
    market = w.chain.market(NODE_KEYS[0])
    store = NodeStore(f"sqlite:///{tmp_path}/node{NODE_KEYS[0]}.db")
    served = [ServedPipeline(w.model_id, r, segments, 1)]
    return [
        PipelineLoop(
            market, TxManager(market.client, store.sessions), store, served, BlobSource(w.blobs)
        )
    ]


def test_loop_waits_for_blobs_respects_its_price_and_survives_a_restart(
    world: World,
    runner: SegmentRunner,  # noqa: F811
    tmp_path: Path,
) -> None:
    w = world
    # node 3 takes segments 0 and 2; node 4 asks more than the job pays; node 5 takes 1
    loops = make_loops(w, runner, tmp_path, [(0, 2), (1,), (1,)])
    loops[1].served[w.model_id].min_fee = 10**18
    images, _ = digits_test_split()
    data = encode_digits_input(images[6])
    job_id, _ = w.submit(data, runner)
    loops[0].step()  # claims and runs segment 0; segment 2 waits for its input
    assert w.payer.segment(job_id, 0).status == SegmentStatus.COMMITTED
    assert w.payer.segment(job_id, 2).status == SegmentStatus.OPEN
    # segment 0's blob withheld: node 5 does not claim a segment it could not start
    blob = w.blobs.get("0x" + w.payer.segment(job_id, 0).output_hash.hex())
    w.blobs.path("0x" + w.payer.segment(job_id, 0).output_hash.hex()).unlink()
    loops[2].step()
    assert w.payer.segment(job_id, 1).status == SegmentStatus.OPEN
    loops[1].step()
    assert [(r.index, r.state) for r in loops[1].rows((SegState.REFUSED,))] == [
        (1, SegState.REFUSED)
    ]
    w.blobs.put(blob)
    loops[2].step()
    assert w.payer.segment(job_id, 1).status == SegmentStatus.COMMITTED
    # node 3 restarts: its open segment comes back from its store, nothing is sent twice
    (again,) = make_loops_one(w, runner, tmp_path, (0, 2))
    run_rounds([again], lambda: w.payer.job(job_id).status == PipelineStatus.COMPLETED, 4)
    assert w.payer.segment(job_id, 2).node == again.address
    assert tx_count(again) == 4  # 2 claims + 2 commits
    assert tx_count(loops[1]) == 0

    # a job whose segment 0 nobody takes: once its step deadline passes, node 5 lets it go
    job2, _ = w.submit(encode_digits_input(images[12]), runner)
    loops[2].step()
    assert [r.job_id for r in loops[2].rows((SegState.SEEN,))] == [job2]
    w.chain.warp(int(w.payer._call("segmentWindow")) + 1)
    loops[2].step()
    assert loops[2].rows() == []
    # nothing sent for job 2; job 1's challenge window passed too, so node 5 finalized it
    assert tx_count(loops[2]) == 3 and w.payer.job(job_id).status == PipelineStatus.FINALIZED


def test_segment_config_is_checked() -> None:
    assert parse_segments("digits-mlp:0,2@5; other:all") == [
        SegmentOffer("digits-mlp", (0, 2), 5),
        SegmentOffer("other", None, None),
    ]
    assert parse_segments("") == []
    for bad in ("digits-mlp", "digits-mlp:", "digits-mlp:x", "digits-mlp:0@y", "m:-1", "m:0@-3"):
        with pytest.raises(ConfigError):
            parse_segments(bad)


def test_blob_source_reads_the_market_url_and_refuses_bytes_of_another_hash(
    tmp_path: Path,
) -> None:
    served: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/blobs/"
        src = BlobSource(BlobStore(tmp_path / "b"), base)
        name = "0x" + keccak(b"activation").hex()
        assert src.get(name) is None  # nowhere yet
        served[name] = b"activation"
        assert src.get(name) == b"activation"  # fetched, checked and kept
        assert src.store.get(name) == b"activation"
        other = "0x" + keccak(b"other").hex()
        served[other] = b"not other"  # the market serves bytes of another hash: refused
        assert src.get(other) is None and not src.store.has(other)
        src.store.path(name).write_bytes(b"tampered")  # corrupted locally: fetched again
        assert src.get(name) == b"activation"
        assert src.store.get(name) == b"activation"  # and replaced by the good bytes
    finally:
        server.shutdown()


def audit_cli(w: World, mdir: Path, tmp_path: Path, job_id: int) -> Any:
    """`verimarket audit JOB_ID --pipeline --json` with only the deployment file, the
    artefacts, the prover cache and the blob store."""
    dep = tmp_path / "deployment.json"
    w.chain.deployment.save(dep)
    env = {
        "VERIMARKET_PROVER_CACHE": str(prover_cache(mdir)),
        "VERIMARKET_ARTIFACTS": str(mdir.parent),
        "VERIMARKET_BLOB_DIR": str(w.blobs.root),
        "VERIMARKET_BLOB_BASE_URL": "",
    }
    args = ["audit", str(job_id), "--pipeline", "--json", "--deployment", str(dep)]
    return CliRunner().invoke(app, args, env=env)


def audit(w: World, mdir: Path, job_id: int) -> tuple[Verdict, dict[str, bool | None]]:
    config = ProverConfig(cache_dir=prover_cache(mdir))
    v = audit_pipeline_job(w.payer, job_id, mdir.parent, w.blobs, "", config)
    return v, {c.name: c.ok for c in v.checks}


def test_audit_pins_a_forged_activation_a_broken_link_and_a_tampered_blob(
    world: World,
    runner: SegmentRunner,  # noqa: F811
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    w = world
    images, _ = digits_test_split()

    def start(n: int) -> tuple[int, bytes]:
        job_id, _ = w.submit(encode_digits_input(images[n]), runner)
        for i, node in enumerate(w.nodes):
            node.claim(job_id, i)
        w.nodes[0].work(job_id, 0)
        return job_id, w.blobs.get("0x" + w.payer.segment(job_id, 0).output_hash.hex())

    # job A: node 4 commits a float64 activation nudged inside the shadow tolerance (the
    # chain and node 5 accept it); only re-running segment 1 shows it
    job_a, blob0 = start(7)
    out1 = runner.run(1, blob0)
    act = Activation.decode(out1.output)
    forged = Activation(act.values + 0.05, act.shadow).encode()
    w.blobs.put(forged)
    commit = SegmentCommit(
        out1.input_hash, out1.input_boundary_hash, keccak(forged), out1.output_boundary_hash
    )
    w.nodes[1].pipeline.commit(job_a, 1, commit)
    w.nodes[2].work(job_a, 2)
    assert w.payer.job(job_a).status == PipelineStatus.COMPLETED
    v, checks = audit(w, model_dir, job_a)
    assert not v.ok
    assert checks["segment 0 re-run"] and checks["link 1 -> 2"] and checks["segment 2 re-run"]
    assert checks["segment 1 re-run"] is False and checks["result"] is False

    # job B: node 4's blob carries another shadow than the boundary it committed, and node 5
    # builds on it anyway: the link 1 -> 2 is broken
    job_b, blob0 = start(8)
    out1 = runner.run(1, blob0)
    act = Activation.decode(out1.output)
    bent = Activation(
        act.values,
        type(act.shadow)(
            tuple(x + 1 for x in act.shadow.values), act.shadow.shape, act.shadow.scale_bits
        ),
    ).encode()
    w.blobs.put(bent)
    w.nodes[1].pipeline.commit(
        job_b,
        1,
        SegmentCommit(
            out1.input_hash, out1.input_boundary_hash, keccak(bent), out1.output_boundary_hash
        ),
    )
    out2 = runner.run(2, bent)
    w.nodes[2].pipeline.commit(
        job_b,
        2,
        SegmentCommit(
            keccak(bent), out1.output_boundary_hash, out2.output_hash, out2.output_boundary_hash
        ),
    )
    w.blobs.put(out2.output)
    v, checks = audit(w, model_dir, job_b)
    assert not v.ok and checks["link 1 -> 2"] is False and checks["segment 1 re-run"] is False

    # an honest job whose segment-0 blob is later corrupted in the store: not retrievable
    job_c, blob0 = start(9)
    w.nodes[1].work(job_c, 1)
    w.nodes[2].work(job_c, 2)
    assert audit(w, model_dir, job_c)[0].ok
    w.blobs.path("0x" + keccak(blob0).hex()).write_bytes(blob0[:-1] + bytes([blob0[-1] ^ 1]))
    v, checks = audit(w, model_dir, job_c)
    assert not v.ok and checks["segment 0 blob"] is False
    res = audit_cli(w, model_dir, tmp_path, job_c)
    assert res.exit_code == 1, res.output
    assert audit(w, model_dir, 999)[1] == {"job exists": False}


def test_node_service_builds_the_pipeline_loop_from_its_settings(
    world: World,
    runner: SegmentRunner,  # noqa: F811
    model_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NodeService.setup builds the loop from VERIMARKET_PIPELINE_SEGMENTS (the zk variant
    this node priced, found on chain), and the running service does a whole job by itself."""
    from market.config import Settings
    from worker.node import NodeService

    w = world
    monkeypatch.setenv("VERIMARKET_PROVER_CACHE", str(prover_cache(model_dir)))
    settings = Settings(
        data=tmp_path / "node",
        artifacts=model_dir.parent,
        blob_dir=w.blobs.root,
        pipeline_segments="digits-mlp:all",
    )
    key = DEV_KEYS[NODE_KEYS[0]]
    svc = NodeService(settings, w.chain.deployment, key, [], lambda _: None)
    svc.setup()
    assert svc.pipeline is not None
    data = encode_digits_input(digits_test_split()[0][11])
    job_id, _ = w.submit(data, runner)
    svc.start()  # the service's own thread picks the job up
    try:
        deadline = time.monotonic() + 60
        while w.payer.job(job_id).status != PipelineStatus.COMPLETED:
            assert time.monotonic() < deadline, "the node service did not complete the job"
            time.sleep(0.2)
    finally:
        svc.stop()
    assert {w.payer.segment(job_id, i).node for i in range(3)} == {svc.market.client.address}

    # what the settings may not say
    blobs = BlobSource(w.blobs)
    for spec, why in (("digits-mlp:3", "segments 0..2"), ("digits-mlp:0@x", "is not wei")):
        with pytest.raises(ConfigError, match=why):
            pipeline_loop(svc.market, svc.txm, svc.store, spec, model_dir.parent, blobs)
    unpriced = w.chain.market(PAYER_KEY)  # no price for the model: refused, with the fix
    with pytest.raises(ConfigError, match="node register"):
        pipeline_loop(unpriced, svc.txm, svc.store, "digits-mlp:0", model_dir.parent, blobs)
    assert pipeline_loop(svc.market, svc.txm, svc.store, "", model_dir.parent, blobs) is None
