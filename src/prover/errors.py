"""The prover's errors: one root, a base per kind of failure, fields kept for the caller."""

from __future__ import annotations

from pathlib import Path


class ProverError(Exception):
    """Root of every error the prover package raises."""


class ModelFolderError(ProverError):
    """A model folder cannot be proved: no manifest, a missing or altered segment file."""

    def __init__(self, model_dir: Path, reason: str) -> None:
        self.model_dir = model_dir
        self.reason = reason
        super().__init__(f"model folder {model_dir}: {reason}")


class SrsError(ProverError):
    """The structured reference string is missing, too small, or not the one keys were made with."""


class BuildError(ProverError):
    """A step of building a segment's circuit, keys or verifier failed."""

    def __init__(self, circuit: str, step: str, reason: str) -> None:
        self.circuit = circuit
        self.step = step
        self.reason = reason
        super().__init__(f"building {circuit}: {step} failed: {reason}")


class VerifierTooLarge(BuildError):
    """A generated verifier's runtime code is over the EIP-170 limit real chains enforce."""

    def __init__(self, circuit: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            circuit,
            "verifier size check",
            f"runtime code is {size} bytes, over the {limit}-byte limit; "
            "split the model into smaller segments",
        )


class SolcError(ProverError):
    """solcjs could not be run or refused the source."""


class WitnessError(ProverError):
    """The circuit could not be run on an input (wrong length, value out of range)."""

    def __init__(self, circuit: str, reason: str) -> None:
        self.circuit = circuit
        self.reason = reason
        super().__init__(f"running {circuit} on the input failed: {reason}")


class ProofRejected(ProverError):
    """A proof does not verify against a segment's verifying key."""

    def __init__(self, circuit: str, reason: str) -> None:
        self.circuit = circuit
        self.reason = reason
        super().__init__(f"proof for {circuit} rejected: {reason}")


class BoundaryMismatch(ProofRejected):
    """A proof's public boundary hash is not the one that was committed."""

    def __init__(self, circuit: str, boundary: str, expected: int, found: int) -> None:
        self.boundary = boundary
        self.expected = expected
        self.found = found
        super().__init__(
            circuit,
            f"its {boundary} hash is {found:#066x}, but {expected:#066x} was committed",
        )
