"""Helpers shared by the model recipes: deterministic training, ONNX export, devices."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_save
from torch import nn

#: ONNX opset every exported graph uses (ezkl reads opset 17).
ONNX_OPSET = 17
#: Fixed-point scale exponent of every canonical output (2^16).
OUTPUT_SCALE_BITS = 16


@dataclass(frozen=True)
class BuiltFiles:
    """What a recipe wrote into its staging folder (paths relative to it)."""

    segments: Sequence[tuple[str, str]]
    weights_files: Sequence[str]
    onnx_file: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""


def pick_device(device: str | torch.device | None) -> torch.device:
    """The given device, or CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def deterministic_training(seed: int) -> Iterator[None]:
    """Run the body single-threaded, with deterministic kernels and a fixed seed.

    The global RNG state, thread count and determinism flag are restored afterwards, so a
    build inside a long-running process does not change how that process runs.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)


def export_onnx(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> bytes:
    """Export ``module`` (float32, eval mode) to ONNX bytes with the TorchScript exporter."""
    module.eval()
    with (
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        path = Path(tmp) / "graph.onnx"
        torch.onnx.export(
            module,
            example_inputs,
            path,
            opset_version=ONNX_OPSET,
            dynamo=False,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
            do_constant_folding=True,
        )
        return path.read_bytes()


def safetensors_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """Deterministic safetensors bytes of a state dict (contiguous CPU copies, no metadata)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sorted(state.items())}
    return bytes(safetensors_save(tensors))
