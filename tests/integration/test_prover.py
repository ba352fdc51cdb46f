"""ezkl proofs of the digits MLP's segments: build, boundary-hash chain, prove, verify off
chain and on chain (anvil), and the rejections a cheating node must meet.

The default circuits commit each segment's input and output with KZG inside the proof
("polycommit"): a proof has no public instances and opens with its two boundary commitments;
a boundary hash is keccak256 of a commitment's 64 EVM bytes (docs/prover.md).

Everything is built once per module into temporary folders (the model, an insecure local
SRS, the circuits and verifiers); one proof per segment is shared by the tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import ezkl
import numpy as np
import pytest
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from market.chain.anvil import DEV_KEYS, Anvil, start_anvil
from market.chain.client import ChainClient
from market.errors import ChainError
from prover import (
    EIP170_LIMIT,
    BoundaryMismatch,
    ModelCircuits,
    Proof,
    ProofRejected,
    ProverConfig,
    QuantizedTensor,
    VerifierTooLarge,
    boundary_hashes,
    build_circuit,
    build_model,
    prove_segment,
    run_model,
    run_segment,
    verify_calldata,
    verify_segment,
)
from prover.errors import WitnessError
from prover.felts import commitment_hash, g1_from_ezkl, g1_to_evm
from worker.models import build_models, digits_test_split, encode_digits_input, load_model

pytestmark = pytest.mark.integration

#: Issue 5's target for one on-chain verification (a transaction to the verifier, under
#: anvil's default schedule, Osaka; measured ~440,100).
TARGET_GAS = 450_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    build_models(out, ["digits-mlp"], progress=False)
    return out / "digits-mlp"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> ProverConfig:
    return ProverConfig(cache_dir=tmp_path_factory.mktemp("prover-cache"))


@pytest.fixture(scope="module")
def circuits(model_dir: Path, config: ProverConfig) -> ModelCircuits:
    return build_model(model_dir, config)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    test_images, _ = digits_test_split()
    return [np.asarray(img, dtype=np.float64) for img in test_images[:3]]


@pytest.fixture(scope="module")
def proofs(circuits: ModelCircuits, images: list[np.ndarray]) -> list[Proof]:
    """One proof per segment, all on the first test image."""
    run = run_model(circuits, images[0] / 16)
    return [prove_segment(seg, run.segment_inputs[i]) for i, seg in enumerate(circuits.segments)]


@pytest.fixture(scope="module")
def committed(circuits: ModelCircuits, images: list[np.ndarray]) -> list[int]:
    return boundary_hashes(circuits, images[0] / 16)


@pytest.fixture(scope="module")
def chain() -> Iterator[tuple[Anvil, ChainClient]]:
    node = start_anvil()
    try:
        yield node, ChainClient(node.rpc_url, DEV_KEYS[0])
    finally:
        node.stop()


@pytest.fixture(scope="module")
def verifiers(circuits: ModelCircuits, chain: tuple[Anvil, ChainClient]) -> list[str]:
    """The segments' verifiers, deployed."""
    _, client = chain
    addresses = []
    for seg in circuits.segments:
        receipt = _send(client, data=seg.verifier().bytecode)
        addresses.append(str(receipt["contractAddress"]))
    return addresses


def _send(client: ChainClient, **kwargs: Any) -> TxReceipt:
    return cast(TxReceipt, client.send(**kwargs))


def _swapped_output(proof: Proof, other: Proof) -> Proof:
    """``proof`` with its output commitment replaced by ``other``'s (a valid curve point)."""
    return replace(proof, proof=proof.proof[:64] + other.proof[64:128] + proof.proof[128:])


# --------------------------------------------------------------------------- build


def test_every_segment_builds_once_with_its_sizes(
    model_dir: Path, config: ProverConfig, circuits: ModelCircuits
) -> None:
    assert [s.name for s in circuits.segments] == [
        "digits-mlp/fc1",
        "digits-mlp/fc2",
        "digits-mlp/fc3",
    ]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for seg, entry in zip(circuits.segments, manifest["segments"], strict=True):
        assert seg.source_hash == entry["segment_hash"]
        assert seg.logrows == circuits.segments[0].logrows <= 13  # one logrows: links
        assert seg.io_visibility == "polycommit"
        assert seg.srs_label == "insecure-local"
        for path in (seg.settings_path, seg.compiled_path, seg.vk_path, seg.pk_path):
            assert path.is_file()
        assert seg.sizes.pk == seg.pk_path.stat().st_size > seg.sizes.vk > 0
        assert 0 < seg.sizes.verifier_runtime <= EIP170_LIMIT
    started = time.perf_counter()
    again = build_model(model_dir, config)
    assert time.perf_counter() - started < 2.0
    assert again.segments == circuits.segments


# --------------------------------------------------------------------------- boundary hashes


def test_boundary_hashes_chain_across_segments(
    circuits: ModelCircuits, images: list[np.ndarray]
) -> None:
    runs = [run_model(circuits, image / 16) for image in images]
    for run in runs:
        hashes = run.boundary_hashes
        assert len(hashes) == len(circuits.segments) + 1
        for i, seg in enumerate(circuits.segments):
            alone = run_segment(seg, run.segment_inputs[i])
            assert (alone.input_hash, alone.output_hash) == (hashes[i], hashes[i + 1])
        # the first hash is that of ezkl's KZG commitment to the quantized input, nothing else
        fc1 = circuits.segments[0]
        (point,) = ezkl.kzg_commit(
            run.segment_inputs[0].felts(),
            str(fc1.vk_path),
            str(fc1.settings_path),
            str(fc1.srs_path),
        )
        assert commitment_hash(g1_to_evm(g1_from_ezkl(point))) == hashes[0]
    assert len({run.boundary_hashes for run in runs}) == len(runs)
    # a one-unit change of one pixel changes every boundary hash after it
    changed = images[0].copy()
    changed[4, 4] = (changed[4, 4] + 1) % 17
    other = boundary_hashes(circuits, changed / 16)
    assert other[0] != runs[0].boundary_hashes[0]


def test_quantized_output_tracks_the_float64_model(
    model_dir: Path, circuits: ModelCircuits
) -> None:
    model = load_model(model_dir.parent, "digits-mlp")
    test_images, _ = digits_test_split()
    for image in test_images[:20]:
        run = run_model(circuits, np.asarray(image, np.float64) / 16)
        exact = model.run_batch([model.decode_input(encode_digits_input(image))])[0].reshape(-1)
        zk = run.output.floats().reshape(-1)
        assert run.output.scale_bits == 10
        assert np.abs(zk - exact).max() < 0.08
        assert zk.argmax() == exact.argmax()
        canonical = run.canonical_output(16)
        assert canonical.values == tuple(v << 6 for v in run.output.values)


# --------------------------------------------------------------------------- off chain


def test_each_segment_proves_and_verifies_off_chain(
    circuits: ModelCircuits, proofs: list[Proof], committed: list[int]
) -> None:
    for i, (seg, proof) in enumerate(zip(circuits.segments, proofs, strict=True)):
        assert proof.instances == ()
        # the proof opens with the boundary commitments: what a contract hashes
        assert commitment_hash(proof.proof[:64]) == proof.input_hash == committed[i]
        assert commitment_hash(proof.proof[64:128]) == proof.output_hash == committed[i + 1]
        verify_segment(seg, proof, input_hash=committed[i], output_hash=committed[i + 1])
        verify_segment(seg.dir, Proof.from_bytes(proof.to_bytes()))


def test_bad_proofs_are_rejected_off_chain(
    circuits: ModelCircuits, proofs: list[Proof], committed: list[int]
) -> None:
    fc1, fc2 = circuits.segments[0], circuits.segments[1]
    tampered = bytearray(proofs[0].proof)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ProofRejected):
        verify_segment(fc1, replace(proofs[0], proof=bytes(tampered)))
    with pytest.raises(ProofRejected):  # fc2's proof against fc1's verifying key
        verify_segment(fc1, proofs[1])
    with pytest.raises(BoundaryMismatch) as caught:  # a hash that was not committed
        verify_segment(fc2, proofs[1], input_hash=committed[1], output_hash=committed[3])
    assert caught.value.boundary == "output"
    with pytest.raises(ProofRejected):  # another valid commitment put in place of the real one
        verify_segment(fc2, _swapped_output(proofs[1], proofs[2]))


def test_segment_input_must_fit_the_circuit(circuits: ModelCircuits) -> None:
    fc2 = circuits.segments[1]
    with pytest.raises(WitnessError, match="takes 32"):
        run_segment(fc2, QuantizedTensor((1, 2, 3), (3,), 10))


# --------------------------------------------------------------------------- on chain


def test_verifiers_fit_and_verify_on_chain(
    chain: tuple[Anvil, ChainClient],
    circuits: ModelCircuits,
    verifiers: list[str],
    proofs: list[Proof],
) -> None:
    _, client = chain
    for seg, address, proof in zip(circuits.segments, verifiers, proofs, strict=True):
        code = client.w3.eth.get_code(client.w3.to_checksum_address(address))
        assert 0 < len(code) <= EIP170_LIMIT, f"{seg.name} verifier is {len(code)} bytes"
        result = client.w3.eth.call({"to": address, "data": proof.calldata()})
        assert int.from_bytes(result, "big") == 1
        receipt = _send(client, to=address, data=proof.calldata())
        assert receipt["status"] == 1
        assert receipt["gasUsed"] <= TARGET_GAS, f"{seg.name}: {receipt['gasUsed']} gas"


def test_our_calldata_is_ezkls_encoding(
    tmp_path: Path, chain: tuple[Anvil, ChainClient], verifiers: list[str], proofs: list[Proof]
) -> None:
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proofs[0].to_ezkl_json()))
    theirs = bytes(ezkl.encode_evm_calldata(str(path), str(tmp_path / "calldata.bin"), None))
    ours = verify_calldata(proofs[0].proof, proofs[0].instances)
    assert theirs.startswith(ours) and not theirs[len(ours) :].strip(b"\0")
    _, client = chain
    assert int.from_bytes(client.w3.eth.call({"to": verifiers[0], "data": theirs}), "big") == 1


def test_bad_proofs_revert_on_chain(
    chain: tuple[Anvil, ChainClient],
    verifiers: list[str],
    proofs: list[Proof],
    committed: list[int],
) -> None:
    _, client = chain
    tampered = bytearray(proofs[0].proof)
    tampered[len(tampered) // 2] ^= 0x01
    bad = {
        "tampered": (verifiers[0], replace(proofs[0], proof=bytes(tampered))),
        "other segment": (verifiers[0], proofs[1]),
        "wrong boundary": (verifiers[1], _swapped_output(proofs[1], proofs[2])),
        "public instances added": (
            verifiers[1],
            replace(proofs[1], instances=(committed[1], committed[2])),
        ),
    }
    for address, proof in bad.values():
        with pytest.raises(ContractLogicError, match="revert"):
            client.w3.eth.call({"to": address, "data": proof.calldata()})
        with pytest.raises(ChainError):  # mined, and reverted
            client.send(to=address, data=proof.calldata(), gas=3_000_000)


def test_a_verifier_over_the_size_limit_falls_back_to_small_code_or_is_refused(
    model_dir: Path, circuits: ModelCircuits, tmp_path: Path
) -> None:
    """Verifiers are compiled for cheap calls (100,000 optimizer runs: 16.4 KB here); one
    that would pass the code-size limit is recompiled for size (1 run: 11.1 KB), and one
    over the limit either way is refused."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    fc3 = model_dir / manifest["segments"][2]["file"]
    calibration = [np.linspace(-2.0, 2.0, 16).reshape(1, 16), np.zeros((1, 16))]

    def build(limit: int) -> int:
        config = ProverConfig(cache_dir=tmp_path / str(limit), max_verifier_bytes=limit)
        seg = build_circuit(fc3, name="fc3", calibration=calibration, config=config)
        return seg.sizes.verifier_runtime

    assert circuits.segments[2].sizes.verifier_runtime > 12_000  # compiled for cheap calls
    assert build(12_000) <= 12_000  # fc3 again, compiled for size
    with pytest.raises(VerifierTooLarge):
        build(8_000)
