"""Run, prove and verify segment circuits; the boundary hashes a node commits.

By default a segment's circuit commits to its input and output with KZG (ezkl's
"polycommit" visibility): a proof has no public instances and opens with the two
commitments, G1 points that a contract reads from its first 128 bytes. A boundary hash is
keccak256 of a commitment's 64 EVM bytes, reduced into BN254's scalar field (a uint256 on
chain). Every segment of a model has the same rows and every boundary the scale 2^10, so
equal boundaries give equal commitments: the output hash of segment ``i`` is the input hash
of segment ``i+1``, the list of boundary hashes of one input (``boundary_hashes``) links the
segments, and a proof of any one segment can be checked against two neighbouring entries of
that list. With the "hashed" option the boundaries are Poseidon hashes instead, and they
are the proof's two public instances.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ezkl
import numpy as np
import numpy.typing as npt

from prover.config import EZKL_VERSION, ProverConfig
from prover.errors import BoundaryMismatch, ProofRejected, SrsError, WitnessError
from prover.evm import verify_calldata
from prover.felts import (
    FIELD_MODULUS,
    QuantizedTensor,
    commitment_hash,
    felt_to_uint,
    g1_from_compressed,
    g1_to_evm,
    instances_hash,
    uint_to_felt,
)
from prover.segments import ModelCircuits, SegmentCircuit, build_model
from prover.srs import srs_digest

SegmentInput = QuantizedTensor | npt.ArrayLike


@dataclass(frozen=True)
class Proof:
    """A proof of one segment: the proof bytes and its public instances (uint256)."""

    proof: bytes
    instances: tuple[int, ...]

    @property
    def input_hash(self) -> int:
        """The input boundary hash the proof is about: its first instance (hashed I/O), or
        the hash of its first commitment (KZG-committed I/O, no instances)."""
        if not self.instances:
            return commitment_hash(self.proof[:64])
        if len(self.instances) != 2:
            raise ValueError("a proof with public I/O values has no single input hash")
        return self.instances[0]

    @property
    def output_hash(self) -> int:
        """The output boundary hash: the last instance, or the second commitment's hash."""
        if not self.instances:
            return commitment_hash(self.proof[64:128])
        if len(self.instances) != 2:
            raise ValueError("a proof with public I/O values has no single output hash")
        return self.instances[-1]

    def calldata(self) -> bytes:
        """Calldata for the segment verifier's ``verifyProof(bytes,uint256[])``."""
        return verify_calldata(self.proof, self.instances)

    def to_ezkl_json(self) -> dict[str, Any]:
        """The proof file ezkl reads (``ezkl.verify``, ``encode_evm_calldata``)."""
        return {
            "protocol": None,
            "instances": [[uint_to_felt(v) for v in self.instances]],
            "proof": list(self.proof),
            "hex_proof": "0x" + self.proof.hex(),
            "split": None,
            "version": EZKL_VERSION,
        }

    def to_bytes(self) -> bytes:
        """A self-contained encoding (ezkl's proof JSON) to store as a blob."""
        return json.dumps(self.to_ezkl_json(), separators=(",", ":")).encode()

    @classmethod
    def from_ezkl_json(cls, data: dict[str, Any]) -> Proof:
        raw = data["proof"]
        proof = bytes.fromhex(raw[2:]) if isinstance(raw, str) else bytes(raw)
        (instances,) = data["instances"]
        return cls(proof=proof, instances=tuple(felt_to_uint(f) for f in instances))

    @classmethod
    def from_bytes(cls, blob: bytes) -> Proof:
        return cls.from_ezkl_json(json.loads(blob))


@dataclass(frozen=True)
class SegmentRun:
    """One segment run on one input: the boundary hashes and the quantized output."""

    input_hash: int
    output_hash: int
    output: QuantizedTensor


@dataclass(frozen=True)
class ModelRun:
    """Every segment of a model run on one input, as the circuits compute it.

    ``boundary_hashes`` has one more entry than there are segments: the input hash of
    segment 0, then each segment's output hash. ``segment_inputs[i]`` is what segment ``i``
    must be proved on. ``output`` is the last circuit's output (fixed point, scale 2^10).
    """

    boundary_hashes: tuple[int, ...]
    segment_inputs: tuple[QuantizedTensor, ...]
    output: QuantizedTensor

    def canonical_output(self, scale_bits: int) -> QuantizedTensor:
        """The circuit output at ``2^scale_bits`` (exact when going up, e.g. 2^10 -> 2^16)."""
        return self.output.rescaled(scale_bits)


# --------------------------------------------------------------------------- helpers


def _circuit(segment: SegmentCircuit | Path) -> SegmentCircuit:
    return segment if isinstance(segment, SegmentCircuit) else SegmentCircuit.load(segment)


def _as_input(circuit: SegmentCircuit, value: SegmentInput) -> QuantizedTensor:
    """A segment input as fixed point at the circuit's input scale.

    Real values are quantized here (round half to even); a QuantizedTensor is taken as is,
    so a boundary is passed on bit for bit.
    """
    size = int(np.prod(circuit.input_shape))
    if isinstance(value, QuantizedTensor):
        if value.scale_bits != circuit.input_scale:
            raise WitnessError(
                circuit.name,
                f"input is at scale 2^{value.scale_bits}, "
                f"the circuit takes 2^{circuit.input_scale}",
            )
        tensor = value
    else:
        array = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise WitnessError(circuit.name, "input has a NaN or infinite value")
        tensor = QuantizedTensor.from_floats(array.reshape(-1), circuit.input_scale, [array.size])
    if len(tensor.values) != size:
        raise WitnessError(
            circuit.name, f"input has {len(tensor.values)} values, the circuit takes {size}"
        )
    return QuantizedTensor(tensor.values, circuit.input_shape, circuit.input_scale)


def _witness(circuit: SegmentCircuit, tensor: QuantizedTensor, folder: Path) -> dict[str, Any]:
    data = folder / "input.json"
    data.write_text(json.dumps({"input_data": [tensor.felts()]}))
    # KZG-committed I/O: the witness carries the commitments, made with the key and the SRS
    keys = (
        (str(circuit.vk_path), str(_srs(circuit)))
        if circuit.io_visibility == "polycommit"
        else (None, None)
    )
    try:
        witness: dict[str, Any] = ezkl.gen_witness(
            str(data), str(circuit.compiled_path), str(folder / "witness.json"), *keys
        )
    except RuntimeError as exc:
        raise WitnessError(circuit.name, str(exc)) from exc
    if circuit.io_visibility == "polycommit":  # the file has the commitments as hex
        loaded: dict[str, Any] = json.loads((folder / "witness.json").read_text())
        return loaded
    return witness


def _boundary_hash(circuit: SegmentCircuit, witness: dict[str, Any], side: str) -> int:
    """The hash of a segment's input or output as its visibility makes it public."""
    if circuit.io_visibility == "polycommit":
        (compressed,) = witness[f"processed_{side}s"]["polycommit"][0]
        return commitment_hash(g1_to_evm(g1_from_compressed(bytes.fromhex(compressed))))
    if circuit.io_visibility == "public":
        (felts,) = witness[f"{side}s"]
        return instances_hash([felt_to_uint(f) for f in felts])
    return felt_to_uint(witness[f"processed_{side}s"]["poseidon_hash"][0])


def _segment_run(circuit: SegmentCircuit, witness: dict[str, Any]) -> SegmentRun:
    (output_felts,) = witness["outputs"]
    return SegmentRun(
        input_hash=_boundary_hash(circuit, witness, "input"),
        output_hash=_boundary_hash(circuit, witness, "output"),
        output=QuantizedTensor.from_felts(output_felts, circuit.output_shape, circuit.output_scale),
    )


def _srs(circuit: SegmentCircuit) -> Path:
    if not circuit.srs_path.is_file():
        raise SrsError(f"{circuit.name} was built with the SRS {circuit.srs_path}, which is gone")
    if srs_digest(circuit.srs_path) != circuit.srs_sha256:
        raise SrsError(
            f"{circuit.srs_path} is not the SRS file {circuit.name} was built with "
            f"(sha256 {circuit.srs_sha256}); rebuild the circuit"
        )
    return circuit.srs_path


# --------------------------------------------------------------------------- public API


def run_segment(segment: SegmentCircuit | Path, value: SegmentInput) -> SegmentRun:
    """Run one segment's circuit (no proof): its input and output hash and its output."""
    circuit = _circuit(segment)
    tensor = _as_input(circuit, value)
    with tempfile.TemporaryDirectory(prefix="prover-run-") as tmp:
        return _segment_run(circuit, _witness(circuit, tensor, Path(tmp)))


def run_model(
    model: ModelCircuits | Path, value: npt.ArrayLike, *, config: ProverConfig | None = None
) -> ModelRun:
    """Run every segment's circuit on one input (real values, as the model sees them).

    Each segment's output is passed to the next as field elements, unchanged.
    """
    circuits = model if isinstance(model, ModelCircuits) else build_model(model, config)
    tensor: QuantizedTensor | npt.ArrayLike = value
    hashes: list[int] = []
    inputs: list[QuantizedTensor] = []
    run: SegmentRun | None = None
    for circuit in circuits.segments:
        seg_input = _as_input(circuit, tensor)
        inputs.append(seg_input)
        run = run_segment(circuit, seg_input)
        if hashes and hashes[-1] != run.input_hash:
            raise WitnessError(circuit.name, "input hash differs from the previous output hash")
        if not hashes:
            hashes.append(run.input_hash)
        hashes.append(run.output_hash)
        tensor = run.output
    assert run is not None  # a model folder has at least one segment
    return ModelRun(tuple(hashes), tuple(inputs), run.output)


def boundary_hashes(
    model: ModelCircuits | Path, value: npt.ArrayLike, *, config: ProverConfig | None = None
) -> list[int]:
    """The hashes a node commits in zk-spot: segment 0's input hash, then each output hash."""
    return list(run_model(model, value, config=config).boundary_hashes)


def input_from_canonical(values: npt.ArrayLike, scale_bits: int) -> npt.NDArray[np.float64]:
    """Real input values from canonical integers at ``2^scale_bits`` (exact)."""
    return np.asarray(values, dtype=np.float64) / float(2**scale_bits)


def prove_segment(segment: SegmentCircuit | Path, value: SegmentInput) -> Proof:
    """Prove one segment on its input (real values for segment 0, or the QuantizedTensor
    ``ModelRun.segment_inputs[i]``). Reads the proving key from disk for this proof only."""
    circuit = _circuit(segment)
    tensor = _as_input(circuit, value)
    srs = _srs(circuit)
    with tempfile.TemporaryDirectory(prefix="prover-prove-") as tmp:
        folder = Path(tmp)
        run = _segment_run(circuit, _witness(circuit, tensor, folder))
        proof_path = folder / "proof.json"
        try:
            ezkl.prove(
                str(folder / "witness.json"),
                str(circuit.compiled_path),
                str(circuit.pk_path),
                str(proof_path),
                str(srs),
            )
        except RuntimeError as exc:
            raise WitnessError(circuit.name, f"proving failed: {exc}") from exc
        proof = Proof.from_ezkl_json(json.loads(proof_path.read_text()))
    if circuit.io_visibility == "polycommit" and (
        proof.input_hash != run.input_hash or proof.output_hash != run.output_hash
    ):  # a contract reads the boundary commitments at the start of the proof
        raise WitnessError(
            circuit.name, "the proof does not start with the input and output commitments"
        )
    return proof


def proof_on_boundaries(
    segment: SegmentCircuit | Path, proof: bytes, input_hash: int, output_hash: int
) -> Proof:
    """A proof as a contract takes it (bytes) against the committed boundary hashes of its
    segment: with KZG-committed I/O the proof carries its boundaries and has no instances;
    with Poseidon-hashed I/O the hashes are its two public instances."""
    circuit = _circuit(segment)
    if circuit.io_visibility == "hashed":
        return Proof(proof, (input_hash, output_hash))
    if circuit.io_visibility == "polycommit":
        return Proof(proof, ())
    raise ProofRejected(circuit.name, "public I/O proofs carry their values, not hashes")


def _instance_count(circuit: SegmentCircuit) -> int:
    if circuit.io_visibility == "polycommit":
        return 0
    if circuit.io_visibility == "public":
        return int(np.prod(circuit.input_shape)) + int(np.prod(circuit.output_shape))
    return 2


def verify_segment(
    segment: SegmentCircuit | Path,
    proof: Proof,
    *,
    input_hash: int | None = None,
    output_hash: int | None = None,
) -> None:
    """Check a proof against a segment's verifying key, and its public boundary hashes
    against committed ones when given. Returns on success; raises ProofRejected (or its
    BoundaryMismatch) otherwise."""
    circuit = _circuit(segment)
    expected = _instance_count(circuit)
    if len(proof.instances) != expected:
        raise ProofRejected(
            circuit.name, f"{len(proof.instances)} public instances, expected {expected}"
        )
    if any(not 0 <= v < FIELD_MODULUS for v in proof.instances):
        raise ProofRejected(circuit.name, "a public instance is not a field element")
    if expected == 0 and len(proof.proof) < 128:
        raise ProofRejected(circuit.name, "the proof is too short to hold its boundaries")
    if expected > 2 and (input_hash is not None or output_hash is not None):
        raise ProofRejected(circuit.name, "public I/O proofs are not checked against hashes")
    if input_hash is not None and proof.input_hash != input_hash:
        raise BoundaryMismatch(circuit.name, "input", input_hash, proof.input_hash)
    if output_hash is not None and proof.output_hash != output_hash:
        raise BoundaryMismatch(circuit.name, "output", output_hash, proof.output_hash)
    srs = _srs(circuit)
    with tempfile.TemporaryDirectory(prefix="prover-verify-") as tmp:
        path = Path(tmp) / "proof.json"
        path.write_text(json.dumps(proof.to_ezkl_json()))
        try:
            ok = ezkl.verify(
                str(path), str(circuit.settings_path), str(circuit.vk_path), str(srs), False
            )
        except RuntimeError as exc:
            raise ProofRejected(circuit.name, str(exc)) from exc
    if ok is not True:
        raise ProofRejected(circuit.name, "the proof does not verify")
