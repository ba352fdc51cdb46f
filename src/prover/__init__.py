"""verimarket's prover: ezkl circuits of model segments, linked by boundary hashes.

Takes file paths and bytes only (it imports nothing from ``market`` or ``worker``).
docs/prover.md describes how it works, the sizes, the SRS, and ezkl's licence.
"""

from prover.config import EIP170_LIMIT, CircuitOptions, ProverConfig, SolcOptions
from prover.errors import (
    BoundaryMismatch,
    BuildError,
    ModelFolderError,
    ProofRejected,
    ProverError,
    SolcError,
    SrsError,
    VerifierTooLarge,
    WitnessError,
)
from prover.evm import VERIFY_SELECTOR, VerifierArtifact, verify_calldata
from prover.felts import FIELD_MODULUS, QuantizedTensor
from prover.proving import (
    ModelRun,
    Proof,
    SegmentRun,
    boundary_hashes,
    input_from_canonical,
    proof_on_boundaries,
    prove_segment,
    run_model,
    run_segment,
    verify_segment,
)
from prover.segments import (
    ArtefactSizes,
    InputSpec,
    ModelCircuits,
    SegmentCircuit,
    build_circuit,
    build_model,
    calibration_inputs,
)
from prover.srs import CeremonySrs, LocalInsecureSrs, SrsSource

__all__ = [
    "EIP170_LIMIT",
    "FIELD_MODULUS",
    "VERIFY_SELECTOR",
    "ArtefactSizes",
    "BoundaryMismatch",
    "BuildError",
    "CeremonySrs",
    "CircuitOptions",
    "InputSpec",
    "LocalInsecureSrs",
    "ModelCircuits",
    "ModelFolderError",
    "ModelRun",
    "Proof",
    "ProofRejected",
    "ProverConfig",
    "ProverError",
    "QuantizedTensor",
    "SegmentCircuit",
    "SegmentRun",
    "SolcError",
    "SolcOptions",
    "SrsError",
    "SrsSource",
    "VerifierArtifact",
    "VerifierTooLarge",
    "WitnessError",
    "boundary_hashes",
    "build_circuit",
    "build_model",
    "calibration_inputs",
    "input_from_canonical",
    "proof_on_boundaries",
    "prove_segment",
    "run_model",
    "run_segment",
    "verify_calldata",
    "verify_segment",
]
