"""The node's zk path end to end, in process, on a real anvil chain with the REAL prover and
the REAL ezkl verifiers of the digits MLP: poller -> zk inference -> commitZkResult ->
challenge -> proof (the prove task's body) -> submitProof -> the settlement service
finalizes; a node that commits a wrong output cannot prove it and the settlement service
slashes it; ``audit`` agrees with both from chain and blobs alone.

The Celery tasks are replaced by their bodies called in the test (the same functions the
``infer`` / ``prove`` queues run); the processes and queues themselves run in
``verimarket demo --verify zk-spot``. Circuits are built once into /tmp (shared with
test_zk_protocol.py's cache).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_utils.crypto import keccak
from typer.testing import CliRunner, Result

from market.audit import audit_job
from market.blobs import BlobStore
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import Attestation, JobRequest, JobStatus, VerificationMode, ZkParams
from market.cli import app
from market.db import Base, make_engine, make_sessions
from market.db.txstore import ChainTx
from market.paths import artifacts_dir
from market.settlement import Settler
from market.settlement_zk import OffChainVerifier, ZkSettlement
from market.zk_models import CODE_SIZE_LIMIT, find_zk_models, register_zk_model
from prover import ModelCircuits, ModelRun, ProverConfig, build_model
from worker.committer import Committer
from worker.jobs import JobContext, Outcome, run_job
from worker.models import build_models, digits_test_split, encode_digits_input, load_model
from worker.poller import Poller, PollerConfig, ServedModel
from worker.runtime import Runtime
from worker.store import NodeJobState, NodeStore
from worker.zk import NodeZkJob, NodeZkProof, ProofState, ZkDriver, ZkStage, ZkWork

from ..conftest import Chain

pytestmark = pytest.mark.integration

ETH = 10**18
PRICE, MAX_FEE = 10**15, 2 * 10**15
MODEL = "digits-mlp"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    build_models(artifacts_dir(), [MODEL], progress=False)
    return artifacts_dir()


@pytest.fixture(scope="module")
def prover_cache(artifacts: Path) -> Path:
    key = hashlib.sha256((artifacts / MODEL / "manifest.json").read_bytes()).hexdigest()[:16]
    return Path(f"/tmp/verimarket-zk-{key}")


@pytest.fixture(scope="module")
def circuits(artifacts: Path, prover_cache: Path) -> ModelCircuits:
    return build_model(artifacts / MODEL, ProverConfig(cache_dir=prover_cache))


class CheatingWork(ZkWork):
    """A node that commits a wrong output: the circuits run honestly (so its prover has real
    inputs to prove), but it commits made-up activations after the input and a wrong
    output whose boundary hash is not what any segment computes."""

    def run(self, name: str, data: bytes) -> ModelRun:
        honest = super().run(name, data)
        fake = [(h * 7 + 13) % (1 << 250) for h in honest.boundary_hashes[1:]]
        values = list(honest.output.values)
        values[0], values[1] = values[1] + 4096, values[0] - 4096
        return replace(
            honest,
            boundary_hashes=(honest.boundary_hashes[0], *fake),
            output=replace(honest.output, values=tuple(values)),
        )


@dataclass
class Node:
    """One node's zk path, in process: what `verimarket node run` and its workers run."""

    market: Market
    store: NodeStore
    work: ZkWork
    poller: Poller
    committer: Committer
    driver: ZkDriver
    ctx: JobContext
    inferred: list[int]
    proofs: list[tuple[int, int]]

    def advance(self, chain: Chain) -> None:
        """One round of everything, with the queued tasks run in between."""
        self.poller.poll()
        while self.inferred:
            assert run_job(self.ctx, self.inferred.pop(0), compute=self.work.infer) in (
                Outcome.READY,
                Outcome.ALREADY_DONE,
            )
        self.committer.commit_ready()
        self.driver.step()
        chain.rpc("evm_mine")  # the seed block, then one that can read its hash
        chain.rpc("evm_mine")
        self.driver.step()
        while self.proofs:
            self.work.prove(*self.proofs.pop(0))
        self.driver.step()


@dataclass
class World:
    chain: Chain
    model_id: bytes
    verifiers: tuple[str, ...]
    circuits: ModelCircuits
    agent: Market
    settler: Settler
    blobs: BlobStore
    artifacts: Path
    prover_cache: Path
    tmp: Path

    def node(self, work_cls: type[ZkWork] = ZkWork) -> Node:
        market = self.chain.market(1)
        store = NodeStore(f"sqlite:///{self.tmp / 'node.sqlite'}")
        txm = TxManager(market.client, store.sessions)
        runtime = Runtime(self.artifacts, device="cpu")
        model = runtime.model(MODEL)
        work = work_cls(
            store,
            self.artifacts,
            decode=lambda name, data: runtime.model(name).decode_input(data).numpy(),
            output_scale=lambda name: runtime.model(name).manifest.output_scale,
            prover_cache=self.prover_cache,
        )
        inferred: list[int] = []
        proofs: list[tuple[int, int]] = []
        served = [ServedModel(self.model_id, MODEL, PRICE, model.decode_input)]
        poller = Poller(market, txm, store, served, inferred.append, PollerConfig(), zk=work)
        driver = ZkDriver(
            market,
            txm,
            store,
            lambda j, s: proofs.append((j, s)),
            blobs=self.blobs,
            blob_base_url="blob://",
        )
        committer = Committer(market, txm, store, skip=driver.zk_ids)
        ctx = JobContext(store, runtime, self.blobs, "http://127.0.0.1:1/blobs/")
        return Node(market, store, work, poller, committer, driver, ctx, inferred, proofs)

    def submit(
        self,
        image: np.ndarray,
        mode: VerificationMode = VerificationMode.ZK_SPOT,
        *,
        attested: bool = False,
    ) -> int:
        data = encode_digits_input(image)
        # the requester's own boundary hash of its input, as segment 0 reads it
        input_hash = self.circuits_run(data).boundary_hashes[0]
        now = int(self.agent.client.w3.eth.get_block("latest")["timestamp"])
        request = JobRequest(
            model_id=self.model_id,
            input_hash=keccak(data),
            input=data,
            max_fee=MAX_FEE,
            deadline=now + 600,
            mode=mode,
        )
        return self.agent.submit_zk_job(request, ZkParams(input_hash, attested))

    def audit_cli(self, job_id: int, *args: str) -> Result:
        """`verimarket audit JOB_ID` with only the deployment file, artefacts and prover cache."""
        dep = self.tmp / "deployment.json"
        self.chain.deployment.save(dep)
        env = {
            "VERIMARKET_PROVER_CACHE": str(self.prover_cache),
            "VERIMARKET_ARTIFACTS": str(self.artifacts),
        }
        return CliRunner().invoke(
            app, ["audit", str(job_id), "--deployment", str(dep), *args], env=env
        )

    def circuits_run(self, data: bytes) -> ModelRun:
        from prover import run_model

        x = load_model(self.artifacts, MODEL).decode_input(data).numpy()
        return run_model(self.circuits, x)


@pytest.fixture()
def world(
    chain: Chain,
    artifacts: Path,
    circuits: ModelCircuits,
    prover_cache: Path,
    tmp_path: Path,
) -> Iterator[World]:
    owner = chain.market(0)
    manifest = load_model(artifacts, MODEL).manifest
    blobs = BlobStore(tmp_path / "blobs")
    zk_model = register_zk_model(owner, manifest, circuits, blobs=blobs, base_url="blob://")
    node = chain.market(1)
    node.register_node(2 * ETH)
    node.set_model_price(zk_model.model_id, PRICE)
    settler_market = chain.market(2)
    engine = make_engine(f"sqlite:///{tmp_path / 'settler.sqlite'}")
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[ChainTx.__tablename__]])
    settler = Settler(settler_market, TxManager(settler_market.client, make_sessions(engine)))
    yield World(
        chain,
        zk_model.model_id,
        zk_model.verifiers,
        circuits,
        chain.market(6),
        settler,
        blobs,
        artifacts,
        prover_cache,
        tmp_path,
    )


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    test_images, _ = digits_test_split()
    return [np.asarray(img) for img in test_images[:2]]


def test_zk_variant_registered_with_small_verifiers_and_published_artefacts(
    world: World, artifacts: Path
) -> None:
    w = world
    for address in w.verifiers:
        size = len(w.agent.client.w3.eth.get_code(address))  # type: ignore[arg-type]
        assert 0 < size <= CODE_SIZE_LIMIT, f"verifier {address} is {size} bytes"
    manifest = load_model(artifacts, MODEL).manifest
    (found,) = find_zk_models(w.agent, manifest, w.circuits)
    assert found.model_id == w.model_id and found.verifiers == w.verifiers
    # the metadata URI names a blob that lists every artefact by hash; the vk hashes on
    # chain are those of the published verifying keys
    index = json.loads(w.blobs.get(found.metadata_uri.removeprefix("blob://")))
    segs = w.agent.client.call(w.agent.models.functions.getSegments(w.model_id))
    for entry, seg in zip(index["segments"], segs, strict=True):
        vk = w.blobs.get(entry["vk"]["blob"])
        assert keccak(vk) == bytes(seg[1])
        onnx = w.blobs.get(entry["onnx"]["blob"])
        assert keccak(onnx) == bytes(seg[0])


def test_honest_zk_spot_job_is_proven_by_the_worker_and_settles(
    world: World, images: list[np.ndarray]
) -> None:
    w, params = world, world.chain.deployment.params
    node = w.node()
    job_id = w.submit(images[0])
    node.poller.poll()
    assert node.store.get(job_id).state is NodeJobState.CLAIMED  # type: ignore[union-attr]
    assert node.inferred == [job_id]
    assert run_job(node.ctx, node.inferred.pop(), compute=node.work.infer) is Outcome.READY
    assert node.committer.commit_ready() == 0  # zk jobs are not the plain committer's
    node.driver.step()
    assert w.agent.job(job_id).status is JobStatus.COMMITTED
    zk = node.work.get(job_id)
    assert zk is not None and zk.stage is ZkStage.COMMITTED

    w.chain.rpc("evm_mine")
    w.chain.rpc("evm_mine")
    node.driver.step()  # pins the challenge, queues the proof
    (segment,) = w.agent.zk_job(job_id).required_segments
    assert node.proofs == [(job_id, segment)]

    # the node restarts before the proof is made: the pending proof is queued again
    node.proofs.clear()
    restarted = w.node()
    restarted.driver.recover()
    assert restarted.proofs == [(job_id, segment)]
    assert restarted.work.prove(job_id, segment) == "proved"
    assert restarted.work.prove(job_id, segment) == "not-taken"  # a redelivery is harmless
    restarted.driver.step()
    assert w.agent.zk_job(job_id).proven_segments == [segment]
    assert restarted.work.get(job_id).stage is ZkStage.DONE  # type: ignore[union-attr]

    w.settler.settle_once()
    assert w.agent.job(job_id).status is JobStatus.COMMITTED  # the window is still open
    w.chain.warp(params.challenge_window + 1)
    w.settler.settle_once()
    assert w.agent.job(job_id).status is JobStatus.SETTLED
    assert w.agent.withdrawable(w.agent.client.address) == MAX_FEE - PRICE

    verdict = audit_job(w.agent, job_id, w.artifacts, ProverConfig(cache_dir=w.prover_cache))
    assert verdict.ok, verdict.checks
    # the same from the CLI, from the chain alone: exit 0, the proof verified here
    res = w.audit_cli(job_id, "--json")
    assert res.exit_code == 0, res.output
    checks = {c["name"]: c["ok"] for c in json.loads(res.output)["checks"]}
    assert checks["re-execution"] and checks["boundary hashes"] and checks["proofs"]
    assert checks[f"proof of segment {segment}"]


def test_node_committing_a_wrong_output_cannot_prove_it_and_is_slashed(
    world: World, images: list[np.ndarray]
) -> None:
    w, params = world, world.chain.deployment.params
    node = w.node(CheatingWork)
    job_id = w.submit(images[1])
    node.advance(w.chain)
    job = w.agent.job(job_id)
    assert job.status is JobStatus.COMMITTED
    (segment,) = w.agent.zk_job(job_id).required_segments
    with node.store.sessions() as s:
        proof: Any = s.get(NodeZkProof, (job_id, segment))
        zk = s.get(NodeZkJob, job_id)
    assert proof.state is ProofState.FAILED and "was committed" in (proof.error or "")
    assert zk is not None and zk.stage is ZkStage.FAILED
    assert w.agent.zk_job(job_id).proven_mask == 0

    stake = w.agent.node_info(node.market.client.address).stake
    w.chain.warp(params.challenge_window + 1)
    w.settler.settle_once()
    assert w.agent.job(job_id).status is JobStatus.COMMITTED  # not finalizable: unproven
    w.chain.warp(params.proof_window + 1)
    w.settler.settle_once()
    assert w.agent.job(job_id).status is JobStatus.SLASHED
    assert w.agent.node_info(node.market.client.address).stake == stake - job.collateral
    compensation = job.collateral * params.slash_payer_bps // 10_000
    assert w.agent.withdrawable(w.agent.client.address) == MAX_FEE + compensation

    res = w.audit_cli(job_id)
    assert res.exit_code == 1, res.output
    assert "FAIL  re-execution" in res.output and "FAIL  boundary hashes" in res.output
    assert "FAIL  proofs: slashed" in res.output and "does NOT check out" in res.output


def test_attested_job_settles_on_the_verdict_and_a_dispute_brings_the_proof_on_chain(
    world: World, images: list[np.ndarray]
) -> None:
    """Attested jobs: the node publishes its proofs as a blob instead of posting them; the
    settlement service, an attester, verifies them off chain and attests Valid; the job
    settles after the dispute window with no proof on chain. A disputed one has its proof
    posted on chain by the node, which resolves the dispute."""
    w, params = world, world.chain.deployment.params
    settler = w.settler.market
    w.chain.market(0).set_attester(settler.client.address)
    verifier = OffChainVerifier(
        settler, w.artifacts, w.blobs, "blob://", ProverConfig(cache_dir=w.prover_cache)
    )
    w.settler.zk = ZkSettlement(settler, w.settler.txm, verifier=verifier)
    node = w.node()
    quiet = w.submit(images[0], attested=True)
    disputed = w.submit(images[1], attested=True)
    node.advance(w.chain)
    for job_id in (quiet, disputed):
        assert w.agent.zk_job(job_id).proven_mask == 0  # published, not posted
        with node.store.sessions() as s:
            states = {p.state for p in s.query(NodeZkProof).filter_by(job_id=job_id)}
        assert states == {ProofState.PUBLISHED}

    w.settler.settle_once()  # verifies the published proofs, attests
    for job_id in (quiet, disputed):
        zk = w.agent.zk_job(job_id)
        assert zk.attestation is Attestation.VALID and zk.attester == settler.client.address

    auditor = w.chain.market(4)
    auditor.dispute_attestation(disputed)
    assert w.agent.job(disputed).status is JobStatus.DISPUTED
    node.driver.step()  # the chain now requires the proof: the node posts it
    required = w.agent.zk_job(disputed).required_segments
    assert w.agent.zk_job(disputed).proven_segments == required
    assert w.agent.job(disputed).status is JobStatus.COMMITTED

    w.chain.warp(max(params.challenge_window, params.dispute_window) + 1)
    w.settler.settle_once()
    assert w.agent.job(quiet).status is JobStatus.SETTLED
    assert w.agent.job(disputed).status is JobStatus.SETTLED
    assert w.agent.zk_job(quiet).proven_mask == 0  # settled on the attestation alone
    node.driver.step()
    assert node.work.get(quiet).stage is ZkStage.DONE  # type: ignore[union-attr]
    assert node.work.get(disputed).stage is ZkStage.DONE  # type: ignore[union-attr]
