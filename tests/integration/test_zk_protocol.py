"""zk-spot, zk-full and attested jobs on a real anvil chain, with the REAL prover and the REAL
ezkl-generated verifiers of the digits MLP's three segments.

The circuits are built once into a cache under /tmp keyed by the model's manifest (a rerun
takes a fraction of a second); one proof per segment of one test image is shared by the
tests, since every job here runs on that image. Each test deploys the three verifiers and
registers the model with them on the session's market (reverted after the test).

Gas figures (whole transactions: 21,000 + calldata + execution) are printed with ``-s``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ezkl
import numpy as np
import pytest
from eth_utils.crypto import keccak
from web3.types import RPCEndpoint

from market.canonical import encode_quantized
from market.chain.market import Market
from market.chain.types import (
    Attestation,
    DisputeKind,
    JobRequest,
    JobStatus,
    Segment,
    VerificationMode,
    ZkParams,
    boundary_root,
)
from market.errors import ContractRevert
from market.paths import REPO_ROOT
from prover import (
    FIELD_MODULUS,
    ModelCircuits,
    ModelRun,
    Proof,
    ProverConfig,
    SegmentCircuit,
    build_model,
    prove_segment,
    run_model,
    verify_segment,
)
from prover.felts import commitment_hash, g1_from_ezkl, g1_to_evm, int_to_felt
from worker.models import build_models, digits_test_split, encode_digits_input

from ..conftest import Chain

pytestmark = pytest.mark.integration

ETH = 10**18
PRICE = 10**15
MAX_FEE = 2 * 10**15
OUTPUT_SCALE = 16
#: One on-chain segment verification measured ~541k gas (docs/prover.md); the whole
#: submitProof transaction adds the commitment check, the registry read and bookkeeping.
SUBMIT_PROOF_GAS_CEILING = 650_000

GAS: dict[str, int] = {}


# --------------------------------------------------------------------------- prover fixtures


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
def images() -> list[np.ndarray]:
    test_images, _ = digits_test_split()
    return [np.asarray(img) for img in test_images[:2]]


@pytest.fixture(scope="module")
def run(circuits: ModelCircuits, images: list[np.ndarray]) -> ModelRun:
    return run_model(circuits, images[0].astype(np.float64) / 16)


@pytest.fixture(scope="module")
def proofs(circuits: ModelCircuits, run: ModelRun) -> list[Proof]:
    """The honest proof of every segment on the first image."""
    return [prove_segment(seg, run.segment_inputs[i]) for i, seg in enumerate(circuits.segments)]


@pytest.fixture(scope="module")
def gas_report() -> Iterator[dict[str, int]]:
    yield GAS
    if GAS:
        print("\n" + "\n".join(f"gas {name:<48} {value:>10,}" for name, value in GAS.items()))


# --------------------------------------------------------------------------- chain helpers


@dataclass
class World:
    """The digits MLP registered with its real verifiers, a node serving it, the actors."""

    chain: Chain
    model_id: bytes
    verifiers: list[str]
    owner: Market
    node: Market
    payer: Market
    keeper: Market
    auditor: Market
    attester: Market
    commits: list[Any] = field(default_factory=list)

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.chain.rpc("evm_mine")

    def request(self, data: bytes, mode: VerificationMode) -> JobRequest:
        now = int(self.payer.client.w3.eth.get_block("latest")["timestamp"])
        return JobRequest(
            model_id=self.model_id,
            input_hash=keccak(data),
            input=data,
            max_fee=MAX_FEE,
            deadline=now + 600,
            mode=mode,
        )


@pytest.fixture()
def world(chain: Chain, circuits: ModelCircuits, model_dir: Path) -> World:
    owner = chain.market(0)
    verifiers = []
    for seg in circuits.segments:
        receipt: Any = owner.client.send(data=seg.verifier().bytecode)
        verifiers.append(str(receipt["contractAddress"]))
    segments = [
        Segment(bytes.fromhex(seg.source_hash[2:]), bytes.fromhex(seg.vk_hash[2:]), address)
        for seg, address in zip(circuits.segments, verifiers, strict=True)
    ]
    artifacts_hash = keccak((model_dir / "manifest.json").read_bytes())
    model_id = owner.register_model(artifacts_hash, OUTPUT_SCALE, "blob://digits-mlp", segments)
    node = chain.market(1)
    node.register_node(2 * ETH)
    node.set_model_price(model_id, PRICE)
    attester = chain.market(8)
    owner.set_attester(attester.client.address)
    return World(
        chain,
        model_id,
        verifiers,
        owner,
        node,
        chain.market(6),
        chain.market(5),
        chain.market(4),
        attester,
    )


def canonical_output(run: ModelRun) -> bytes:
    """A zk job's output: the circuit's output at the model's scale (docs/protocol.md)."""
    out = run.canonical_output(OUTPUT_SCALE)
    return encode_quantized(np.array(out.values, dtype=np.int64).reshape(10), OUTPUT_SCALE)


def commitment(values: list[int], circuit: SegmentCircuit) -> int:
    """The boundary hash of fixed-point integers, made here with ezkl's own KZG commitment
    (``kzg_commit`` with a segment's keys; every segment has the same rows and SRS): keccak256
    of the point's 64 EVM bytes, reduced into the field."""
    (point,) = ezkl.kzg_commit(
        [int_to_felt(v) for v in values],
        str(circuit.vk_path),
        str(circuit.settings_path),
        str(circuit.srs_path),
    )
    return commitment_hash(g1_to_evm(g1_from_ezkl(point)))


def revert_name(exc: pytest.ExceptionInfo[ContractRevert]) -> str:
    return exc.value.name


def submit_and_commit(
    w: World,
    images: list[np.ndarray],
    hashes: list[int] | tuple[int, ...],
    output: bytes,
    *,
    mode: VerificationMode = VerificationMode.ZK_SPOT,
    attested: bool = False,
    input_hash: int | None = None,
) -> int:
    data = encode_digits_input(images[0])
    params = ZkParams(hashes[0] if input_hash is None else input_hash, attested)
    fn = w.payer.jobs.functions.submitZkJob(w.request(data, mode).as_tuple(), params.as_tuple())
    submitted = w.payer.client.transact(fn, value=MAX_FEE)
    GAS.setdefault(f"submitZkJob ({mode.name}, {len(data)} B inline input)", submitted["gasUsed"])
    (job_id,) = w.payer.job_ids_from(submitted, "JobSubmitted")
    w.node.claim_job(job_id)
    receipt = w.node.commit_zk_result(job_id, keccak(output), list(hashes), output)
    w.commits.append(receipt)
    GAS.setdefault(f"commitZkResult ({len(hashes)} hashes, inline output)", receipt["gasUsed"])
    return job_id


def challenged(w: World, job_id: int) -> int:
    """Mine past the seed block, pin the challenge, return the challenged segment."""
    w.mine(2)  # the seed block (commit + 1), then one whose state can read its hash
    (segment,) = w.node.required_segments(job_id)
    receipt = w.keeper.challenge(job_id)
    GAS.setdefault("challenge", receipt["gasUsed"])
    assert w.node.zk_job(job_id).required_segments == [segment]
    return segment


# --------------------------------------------------------------------------- tests


def test_honest_zk_spot_job_settles_on_a_real_proof(
    world: World,
    circuits: ModelCircuits,
    images: list[np.ndarray],
    run: ModelRun,
    proofs: list[Proof],
    gas_report: dict[str, int],
) -> None:
    w, params = world, world.chain.deployment.params
    output = canonical_output(run)
    job_id = submit_and_commit(w, images, run.boundary_hashes, output)
    zk = w.node.zk_job(job_id)
    assert zk.boundary_root == boundary_root(run.boundary_hashes)
    assert zk.input_boundary_hash == run.boundary_hashes[0]
    committed = w.node.events(w.commits[-1], "BoundaryHashesCommitted")
    assert list(committed[0]["boundaryHashes"]) == list(run.boundary_hashes)

    segment = challenged(w, job_id)
    w.chain.warp(params.challenge_window + 1)
    with pytest.raises(ContractRevert) as err:
        w.keeper.finalize(job_id)
    assert revert_name(err) == "NotVerified"

    receipt = w.node.submit_proof(job_id, segment, proofs[segment].proof, run.boundary_hashes)
    GAS[f"submitProof (segment {segment}, real verifier)"] = receipt["gasUsed"]
    # the verification inside it: the verifier's STATICCALL, and the proof's calldata
    trace = w.node.client.w3.provider.make_request(
        RPCEndpoint("debug_traceTransaction"),
        [receipt["transactionHash"].hex(), {"tracer": "callTracer"}],
    )
    calls = trace["result"].get("calls", [])
    (call,) = [c for c in calls if c["to"].lower() == w.verifiers[segment].lower()]
    verifier_gas = int(call["gasUsed"], 16)
    proof_calldata = sum(16 if b else 4 for b in proofs[segment].proof)
    GAS["  of which the verifier's STATICCALL"] = verifier_gas
    GAS["  and the proof's calldata"] = proof_calldata
    assert verifier_gas + proof_calldata <= 450_000
    assert receipt["gasUsed"] < SUBMIT_PROOF_GAS_CEILING
    assert w.node.zk_job(job_id).proven_segments == [segment]

    w.keeper.finalize(job_id)
    fee = PRICE * params.fee_bps // 10_000
    assert w.keeper.job(job_id).status == JobStatus.SETTLED
    assert w.keeper.withdrawable(w.node.client.address) == PRICE - fee
    assert w.keeper.withdrawable(w.payer.client.address) == MAX_FEE - PRICE
    assert w.node.node_info(w.node.client.address).locked == 0
    # the links checked off chain: the requester's input hash is that of the commitment to
    # the canonical input (pixels at 2^4) rescaled to the circuit's 2^10; the last boundary
    # hash is that of the commitment to the committed output (2^16) rescaled to 2^10
    pixels = [int(p) for p in images[0].reshape(-1)]
    first, last = circuits.segments[0], circuits.segments[-1]
    assert commitment([p << 6 for p in pixels], first) == run.boundary_hashes[0]
    committed_output = [int(v) >> 6 for v in np.frombuffer(output[3 + 4 :], dtype=">i8")]
    assert commitment(committed_output, last) == run.boundary_hashes[-1]


def test_bad_proofs_and_mismatched_hashes_are_rejected_on_chain(
    world: World,
    circuits: ModelCircuits,
    images: list[np.ndarray],
    run: ModelRun,
    proofs: list[Proof],
) -> None:
    w = world
    hashes = list(run.boundary_hashes)
    # a commit whose first hash is not the request's input hash
    data = encode_digits_input(images[0])
    job = w.payer.submit_zk_job(w.request(data, VerificationMode.ZK_SPOT), ZkParams(hashes[0]))
    w.node.claim_job(job)
    with pytest.raises(ContractRevert) as err:
        w.node.commit_zk_result(job, keccak(b"x"), [hashes[1], *hashes[1:]], b"x")
    assert revert_name(err) == "InputBoundaryMismatch"

    job_id = submit_and_commit(w, images, hashes, canonical_output(run))
    segment = challenged(w, job_id)
    other = (segment + 1) % len(proofs)

    # a tampered proof
    tampered = bytearray(proofs[segment].proof)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, segment, bytes(tampered), hashes)
    assert revert_name(err) == "ProofRejected"
    assert str(err.value.args_by_name["verifier"]).lower() == w.verifiers[segment].lower()

    # another segment's (valid) proof, as the challenged one: it commits to other boundaries;
    # and for a segment not challenged
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, segment, proofs[other].proof, hashes)
    assert revert_name(err) == "ProofBoundaryMismatch"
    assert err.value.args_by_name["inputHash"] == hashes[other]
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, other, proofs[other].proof, hashes)
    assert revert_name(err) == "SegmentNotRequired"

    # boundary hashes that are not the committed ones
    altered = list(hashes)
    altered[segment + 1] = (altered[segment + 1] + 1) % FIELD_MODULUS
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, segment, proofs[segment].proof, altered)
    assert revert_name(err) == "BoundaryHashesMismatch"

    # a valid proof of the same segment on another input: its hashes are not the committed ones
    other_run = run_model(circuits, images[1].astype(np.float64) / 16)
    foreign = prove_segment(circuits.segments[segment], other_run.segment_inputs[segment])
    verify_segment(circuits.segments[segment], foreign)  # valid for its own hashes
    assert (foreign.input_hash, foreign.output_hash) != (hashes[segment], hashes[segment + 1])
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, segment, foreign.proof, hashes)
    assert revert_name(err) == "ProofBoundaryMismatch"

    # the honest proof with another valid commitment (the foreign run's) in place of its own
    swapped = proofs[segment].proof[:64] + foreign.proof[64:128] + proofs[segment].proof[128:]
    with pytest.raises(ContractRevert) as err:
        w.node.submit_proof(job_id, segment, swapped, hashes)
    assert revert_name(err) == "ProofBoundaryMismatch"

    # nothing above changed the job; the honest proof still goes through
    assert w.node.zk_job(job_id).proven_mask == 0
    w.keeper.submit_proof(job_id, segment, proofs[segment].proof, hashes)  # anyone may post it
    assert w.node.zk_job(job_id).proven_segments == [segment]


def test_node_committing_a_made_up_run_is_slashed_whatever_is_challenged(
    world: World,
    circuits: ModelCircuits,
    images: list[np.ndarray],
    run: ModelRun,
    proofs: list[Proof],
) -> None:
    """A node that did not run the model: right input hash (checked on chain), made-up hashes
    after it and a wrong output. No segment's proof can match, so every challenge catches it."""
    w, params = world, world.chain.deployment.params
    rng = np.random.default_rng(7)
    fake_values = [int(v) for v in rng.integers(-(2**20), 2**20, size=10)]
    made_up = [run.boundary_hashes[0]] + [
        int.from_bytes(rng.bytes(31), "big") for _ in range(len(proofs) - 1)
    ]
    # its output hash even matches its (wrong) output
    made_up.append(commitment(fake_values, circuits.segments[-1]))
    output = encode_quantized(np.array(fake_values, dtype=np.int64) << 6, OUTPUT_SCALE)
    job_id = submit_and_commit(w, images, made_up, output)
    collateral = w.node.job(job_id).collateral
    stake_before = w.node.node_info(w.node.client.address).stake

    segment = challenged(w, job_id)
    with pytest.raises(ContractRevert) as err:  # its best effort: the honest proof
        w.node.submit_proof(job_id, segment, proofs[segment].proof, made_up)
    assert revert_name(err) == "ProofBoundaryMismatch"

    with pytest.raises(ContractRevert) as err:
        w.keeper.slash_unproven(job_id)
    assert revert_name(err) == "ProofDeadlineNotPassed"
    w.chain.warp(params.proof_window + 1)
    receipt = w.keeper.slash_unproven(job_id)
    GAS["slashUnproven"] = receipt["gasUsed"]

    compensation = collateral * params.slash_payer_bps // 10_000
    assert w.keeper.job(job_id).status == JobStatus.SLASHED
    assert w.keeper.withdrawable(w.payer.client.address) == MAX_FEE + compensation
    assert w.keeper.withdrawable(w.keeper.client.address) == collateral - compensation
    assert w.node.node_info(w.node.client.address).stake == stake_before - collateral
    assert w.keeper.total_escrow() == 0


def test_wrong_output_is_caught_exactly_when_its_segment_is_challenged(
    world: World,
    circuits: ModelCircuits,
    images: list[np.ndarray],
    run: ModelRun,
    proofs: list[Proof],
) -> None:
    """A careful cheater: honest up to the last segment, then a wrong output whose boundary
    hash it commits (so the output link holds). Only the last segment's proof can expose it:
    the job is slashed exactly when that segment is challenged (1/k per job), and the node
    gets away with it otherwise. Jobs run until both outcomes have been seen."""
    w, params = world, world.chain.deployment.params
    k = len(proofs)
    fake = list(run.output.values)
    fake[0], fake[1] = fake[1] + 4096, fake[0] - 4096  # moves the argmax
    cheat = [*run.boundary_hashes[:-1], commitment(fake, circuits.segments[-1])]
    output = encode_quantized(np.array(fake, dtype=np.int64) << 6, OUTPUT_SCALE)

    outcomes: list[tuple[int, JobStatus]] = []
    while len({status for _, status in outcomes}) < 2:
        assert len(outcomes) < 40, f"no catch/escape mix after {outcomes}"
        job_id = submit_and_commit(w, images, cheat, output)
        segment = challenged(w, job_id)
        if segment == k - 1:
            with pytest.raises(ContractRevert) as err:
                w.node.submit_proof(job_id, segment, proofs[segment].proof, cheat)
            assert revert_name(err) == "ProofBoundaryMismatch"
            w.chain.warp(params.proof_window + 1)
            w.keeper.slash_unproven(job_id)
        else:
            w.node.submit_proof(job_id, segment, proofs[segment].proof, cheat)
            w.chain.warp(params.challenge_window + 1)
            w.keeper.finalize(job_id)
        outcomes.append((segment, w.keeper.job(job_id).status))
    for segment, status in outcomes:
        assert status == (JobStatus.SLASHED if segment == k - 1 else JobStatus.SETTLED)
    caught = sum(status == JobStatus.SLASHED for _, status in outcomes)
    print(f"\ncareful cheater: caught {caught} of {len(outcomes)} jobs (expected 1/{k})")


def test_zk_full_job_finalizes_only_with_every_segment_proven(
    world: World, images: list[np.ndarray], run: ModelRun, proofs: list[Proof]
) -> None:
    w, params = world, world.chain.deployment.params
    job_id = submit_and_commit(
        w, images, run.boundary_hashes, canonical_output(run), mode=VerificationMode.ZK_FULL
    )
    assert w.node.required_segments(job_id) == list(range(len(proofs)))
    w.chain.warp(params.challenge_window + 1)
    for segment in reversed(range(len(proofs))):
        with pytest.raises(ContractRevert) as err:
            w.keeper.finalize(job_id)
        assert revert_name(err) == "NotVerified"
        receipt = w.node.submit_proof(job_id, segment, proofs[segment].proof, run.boundary_hashes)
        GAS[f"submitProof zk-full (segment {segment})"] = receipt["gasUsed"]
    w.keeper.finalize(job_id)
    assert w.keeper.job(job_id).status == JobStatus.SETTLED


def test_attested_job_disputed_then_resolved_by_the_proof_on_chain(
    world: World,
    circuits: ModelCircuits,
    images: list[np.ndarray],
    run: ModelRun,
    proofs: list[Proof],
) -> None:
    w, params = world, world.chain.deployment.params
    hashes = list(run.boundary_hashes)
    job_id = submit_and_commit(w, images, hashes, canonical_output(run), attested=True)
    segment = challenged(w, job_id)
    proof = proofs[segment]
    w.node.publish_proof(job_id, "blob://proof-of-segment")

    # the attester checks it off chain, against the committed hashes, and says so
    verify_segment(
        circuits.segments[segment],
        Proof.from_bytes(proof.to_bytes()),
        input_hash=hashes[segment],
        output_hash=hashes[segment + 1],
    )
    with pytest.raises(ContractRevert) as err:
        w.keeper.attest(job_id, True)
    assert revert_name(err) == "NotAttester"
    w.attester.attest(job_id, True)
    assert w.keeper.zk_job(job_id).attestation == Attestation.VALID

    # an auditor disputes with a bond: the proof is now due on chain
    bond = w.auditor.dispute_bond()
    w.auditor.dispute_attestation(job_id)
    assert w.keeper.job(job_id).status == JobStatus.DISPUTED
    assert w.keeper.dispute(job_id, DisputeKind.ATTESTATION).bond == bond
    w.chain.warp(max(params.challenge_window, params.dispute_window) + 1)
    with pytest.raises(ContractRevert) as err:
        w.keeper.finalize(job_id)
    assert revert_name(err) == "InvalidJobStatus"

    w.node.submit_proof(job_id, segment, proof.proof, hashes)
    assert w.keeper.job(job_id).status == JobStatus.COMMITTED
    assert not w.keeper.dispute(job_id, DisputeKind.ATTESTATION).open
    assert w.keeper.zk_withdrawable(w.node.client.address) == bond
    w.keeper.finalize(job_id)
    assert w.keeper.job(job_id).status == JobStatus.SETTLED


def test_attested_job_with_a_bad_proof_is_slashed_after_a_dispute(
    world: World, images: list[np.ndarray], run: ModelRun, proofs: list[Proof]
) -> None:
    """A careless (or colluding) attester says Valid to a cheat; the dispute forces the proof
    on chain, the node cannot give it, and the node is slashed; the disputer gets its bond
    back and the keeper's share of the slash."""
    w, params = world, world.chain.deployment.params
    made_up = [run.boundary_hashes[0], *([12345] * len(proofs))]
    job_id = submit_and_commit(w, images, made_up, canonical_output(run), attested=True)
    challenged(w, job_id)
    w.attester.attest(job_id, True)
    w.auditor.dispute_attestation(job_id)
    w.chain.warp(params.proof_window + 1)
    w.auditor.slash_unproven(job_id)
    assert w.keeper.job(job_id).status == JobStatus.SLASHED
    assert w.keeper.zk_withdrawable(w.auditor.client.address) == w.auditor.dispute_bond()
    assert w.keeper.withdrawable(w.auditor.client.address) > 0
    # the attested Valid was wrong: the record keeps who said it
    assert w.keeper.zk_job(job_id).attester == w.attester.client.address
