"""The Poseidon-hashed variant of the segment circuits (``io_visibility="hashed"``): each
segment's input and output are public as one Poseidon hash each, so a proof has two public
instances, ``[input hash, output hash]``, and every segment keeps its own logrows. It costs
~90k more gas per on-chain verification than the default KZG-committed boundaries
(docs/prover.md), and stays available as a build option; this checks it still links and
verifies. Builds and proves three more circuits (~24 s): `long`, so `make test-long` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import cast

import ezkl
import numpy as np
import pytest
from web3.types import TxReceipt

from market.chain.anvil import DEV_KEYS, start_anvil
from market.chain.client import ChainClient
from prover import (
    CircuitOptions,
    ModelCircuits,
    Proof,
    ProofRejected,
    ProverConfig,
    build_model,
    prove_segment,
    run_model,
    verify_segment,
)
from prover.felts import felt_to_uint
from worker.models import build_models, digits_test_split

pytestmark = [pytest.mark.integration, pytest.mark.long]  # ~24 s; `make test-long`

#: Measured ~541,000 under Osaka (anvil's default), ~533,000 under Prague.
HASHED_GAS_CEILING = 560_000


@pytest.fixture(scope="module")
def circuits(tmp_path_factory: pytest.TempPathFactory) -> ModelCircuits:
    models = tmp_path_factory.mktemp("models")
    build_models(models, ["digits-mlp"], progress=False)
    config = ProverConfig(
        cache_dir=tmp_path_factory.mktemp("prover-cache"),
        circuit=replace(CircuitOptions(), io_visibility="hashed"),
    )
    return build_model(models / "digits-mlp", config)


@pytest.fixture(scope="module")
def run_and_proofs(circuits: ModelCircuits) -> tuple[list[int], list[Proof]]:
    image = np.asarray(digits_test_split()[0][0], dtype=np.float64) / 16
    run = run_model(circuits, image)
    # the first hash is ezkl's Poseidon hash of the quantized input, nothing else
    assert (
        felt_to_uint(ezkl.poseidon_hash(run.segment_inputs[0].felts())[0])
        == (run.boundary_hashes[0])
    )
    proofs = [prove_segment(s, run.segment_inputs[i]) for i, s in enumerate(circuits.segments)]
    return list(run.boundary_hashes), proofs


@pytest.fixture(scope="module")
def client() -> Iterator[ChainClient]:
    node = start_anvil()
    try:
        yield ChainClient(node.rpc_url, DEV_KEYS[0])
    finally:
        node.stop()


def test_hashed_segments_chain_and_verify_off_and_on_chain(
    circuits: ModelCircuits,
    run_and_proofs: tuple[list[int], list[Proof]],
    client: ChainClient,
) -> None:
    assert all(s.io_visibility == "hashed" for s in circuits.segments)
    hashes, proofs = run_and_proofs
    assert len(hashes) == len(circuits.segments) + 1 and len(set(hashes)) == len(hashes)
    for i, (segment, proof) in enumerate(zip(circuits.segments, proofs, strict=True)):
        assert proof.instances == (hashes[i], hashes[i + 1])
        verify_segment(segment, proof, input_hash=hashes[i], output_hash=hashes[i + 1])
        address = str(
            cast(TxReceipt, client.send(data=segment.verifier().bytecode))["contractAddress"]
        )
        receipt = cast(TxReceipt, client.send(to=address, data=proof.calldata()))
        assert receipt["status"] == 1 and receipt["gasUsed"] <= HASHED_GAS_CEILING
    with pytest.raises(ProofRejected):  # the committed hash put in place of the real one
        verify_segment(circuits.segments[1], replace(proofs[1], instances=(hashes[1], hashes[3])))
