"""Per-process inference runtime: models loaded once, one dynamic batcher in front of them."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.batcher import DynamicBatcher
from worker.models import LoadedModel, load_model


@dataclass
class Runtime:
    """Loads models lazily and routes every inference through one batcher per process."""

    artifacts: Path
    max_batch: int = 32
    max_wait_ms: float = 5.0
    device: str | None = None
    #: torch intra-op threads for inference on CPU; set in the thread that runs batches,
    #: since OpenMP settings do not carry over from the thread that set them
    torch_threads: int | None = None
    _models: dict[str, LoadedModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _batcher: DynamicBatcher[torch.Tensor, np.ndarray[Any, Any]] | None = None

    def model(self, name: str) -> LoadedModel:
        with self._lock:
            if name not in self._models:
                self._models[name] = load_model(self.artifacts, name, device=self.device)
            return self._models[name]

    def _run(self, name: str, items: list[torch.Tensor]) -> list[np.ndarray[Any, Any]]:
        if self.torch_threads and torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        return self.model(name).run_batch(items)

    @property
    def batcher(self) -> DynamicBatcher[torch.Tensor, np.ndarray[Any, Any]]:
        with self._lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(self._run, self.max_batch, self.max_wait_ms)
            return self._batcher

    def infer(self, name: str, data: bytes) -> Future[np.ndarray[Any, Any]]:
        """Decode ``data`` for model ``name`` (raises InvalidInput) and queue it for a batch."""
        tensor = self.model(name).decode_input(data)
        return self.batcher.submit(name, tensor)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
