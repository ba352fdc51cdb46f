"""Errors raised by the worker's model code.

``WorkerError`` is the root of every error the worker package raises (ape's exceptions are
the model: one root, domain bases, specific errors that keep their fields and say what to do).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class WorkerError(Exception):
    """Root of all errors raised by the worker package."""


class InvalidInput(WorkerError, ValueError):
    """A job's input bytes are not a valid input for the model; ``reason`` says why.

    A node that gets this for a job should reject the job (the requester sent bad input),
    not fail it: the reason is meant to be shown to the requester.
    """

    def __init__(self, reason: str, model: str | None = None) -> None:
        self.reason = reason
        self.model = model
        where = f"{model}: " if model else ""
        super().__init__(f"{where}invalid input: {reason}")


class UnknownModel(WorkerError, LookupError):
    """No model of that name is known to the builder (or built in the artefact folder)."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown model {name!r}; known models: {', '.join(self.known)}")


class ArtifactError(WorkerError):
    """Model artefacts are missing, corrupt, or do not match their manifest."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"model artefacts at {path}: {reason}. Run `verimarket models build` to (re)build them."
        )


class ModelBuildError(WorkerError):
    """Building a model's artefacts failed (training, export or checks)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"building model {name!r} failed: {reason}")
