"""Errors of the generative serving code (all under worker.models.errors.WorkerError).

Bad job inputs raise ``worker.models.errors.InvalidInput(reason)``, as for every model.
"""

from __future__ import annotations

from worker.models.errors import WorkerError


class GenerativeModelError(WorkerError, TypeError):
    """A text-generation model was given to the classifier runtime (``load_model``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"model {name!r} generates text: load it with worker.llm.load_llm() and run it "
            "in an LLMEngine, not with worker.models.load_model()"
        )


class EngineClosedError(WorkerError, RuntimeError):
    """A request was submitted to an engine loop that has been closed."""

    def __init__(self) -> None:
        super().__init__("the LLM engine loop is closed")


class DuplicateRequestError(WorkerError, ValueError):
    """A request id is already queued or running in this engine."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"request {request_id!r} is already queued or running")
