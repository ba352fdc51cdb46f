"""Serving built models: canonical inputs in, canonical outputs and result hashes out.

The canonical inference runs in float64 (the stored float32 weights, widened exactly), so a
job's result hash does not depend on the batch it ran in. docs/canonical.md explains why
float32 is not enough and what can still differ between machines.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from market.canonical import encode_tensor, keccak
from worker.models.build import verify_model_dir
from worker.models.common import pick_device
from worker.models.errors import InvalidInput
from worker.models.manifest import ModelManifest
from worker.models.recipes import Recipe, recipe

Output = npt.NDArray[np.float64]


class LoadedModel:
    """A verified, built model on one device, ready to run batches of jobs.

    Thread-safe: ``run_batch`` may be called from several threads (inference does not
    change the module).
    """

    def __init__(
        self, manifest: ModelManifest, rec: Recipe, module: nn.Module, device: torch.device
    ) -> None:
        self.manifest = manifest
        self.device = device
        self._recipe = rec
        self._module = module

    @property
    def name(self) -> str:
        return self.manifest.name

    def decode_input(self, data: bytes) -> torch.Tensor:
        """Parse and validate one job's input bytes; raise InvalidInput(reason) if bad.

        Returns a CPU tensor that ``run_batch`` accepts.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"input must be bytes, got {type(data).__name__}", self.name)
        return self._recipe.decode_input(bytes(data), self.name)

    def run_batch(self, tensors: Sequence[torch.Tensor]) -> list[Output]:
        """Run decoded inputs in one forward pass; one float64 output array per input.

        Each output depends only on its own input (padding is masked), so the same input
        gives the same canonical output whatever its batch companions.
        """
        if not tensors:
            return []
        with torch.inference_mode():
            out = self._recipe.forward(self._module, list(tensors), self.device)
        result = out.to("cpu", torch.float64).numpy()
        expected = (len(tensors), *self.manifest.output_shape)
        if result.shape != expected:
            raise RuntimeError(f"{self.name}: output shape {result.shape}, expected {expected}")
        return [np.array(row, dtype=np.float64, copy=True) for row in result]

    def run_inputs(self, inputs: Sequence[bytes]) -> list[bytes]:
        """Decode, run as one batch and encode: input bytes -> canonical output bytes."""
        outputs = self.run_batch([self.decode_input(data) for data in inputs])
        return [self.canonical_output(out) for out in outputs]

    def canonical_output(self, array: npt.ArrayLike) -> bytes:
        """The canonical encoding of one output at the model's output scale."""
        return encode_tensor(array, self.manifest.output_scale)

    def result_hash(self, array: npt.ArrayLike) -> bytes:
        """keccak256 of the canonical output: the result hash committed on chain."""
        return keccak(self.canonical_output(array))


_cache: dict[tuple[str, str, str], LoadedModel] = {}
_cache_lock = threading.Lock()


def load_model(out_dir: Path, name: str, device: str | torch.device | None = None) -> LoadedModel:
    """Load ``out_dir/<name>`` (verified against its manifest) onto ``device``.

    ``device`` None means CUDA when present, else CPU. Loaded once per process per
    (folder, name, device); a rebuilt folder (another model id) is loaded afresh. Raises
    UnknownModel for a name no recipe has, ArtifactError if the folder is missing, corrupt,
    or built by another recipe version.
    """
    rec = recipe(name)
    dev = _normalise(pick_device(device))
    model_dir = (Path(out_dir) / name).resolve()
    key = (str(model_dir), name, str(dev))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and _current_model_id(model_dir) == cached.manifest.model_id:
            return cached
        manifest = verify_model_dir(model_dir, rec)
        if dev.type == "cuda":
            # Canonical inference: no autotuned (possibly non-deterministic) conv algorithms.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        module = rec.load_module(model_dir, manifest.weights_files).double().to(dev).eval()
        for param in module.parameters():
            param.requires_grad_(False)
        loaded = LoadedModel(manifest, rec, module, dev)
        _cache[key] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every loaded model (tests; freeing GPU memory)."""
    with _cache_lock:
        _cache.clear()


def _current_model_id(model_dir: Path) -> str | None:
    try:
        return ModelManifest.read(model_dir).model_id
    except (OSError, ValueError, KeyError):
        return None


def _normalise(device: torch.device) -> torch.device:
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device
