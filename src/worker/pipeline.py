"""Running one segment of a pipelined job (docs/pipeline.md).

A node that claimed segment ``i`` of a pipelined job loads that segment of the model, reads
the activation blob segment ``i - 1`` committed (segment 0: the job's canonical input), runs
the segment in float64 and writes its own activation blob. The last segment writes the
canonical output instead, bit for bit what one node running the whole model produces
(docs/canonical.md), so the last blob's keccak256 is the job's result hash.

Beside the float64 activation, each blob carries the circuit's *shadow*: the segment's
output as its ezkl circuit computes it (fixed point, 2^10), whose boundary hash is the
boundary hash committed on chain. The next node runs its circuit on that shadow, so the
boundary hashes chain exactly as in a one-node zk run, and any segment can be proved on
demand from its input blob alone.

Activation blob, version 1 (all integers big-endian)::

    offset  size        field
    0       4           magic "VMA" + version 0x01
    4       1           ndim (1..8)
    5       4 * ndim    dims, uint32
    ...     8 * n       float64 values, row-major (n = prod(dims))
    ...     1           shadow scale exponent (uint8)
    ...     4           shadow count m (uint32)
    ...     8 * m       shadow values, int64 (fixed point at 2^scale)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from eth_utils.crypto import keccak
from torch import nn
from web3.types import TxReceipt

from market.blobs import BlobStore
from market.canonical import encode_tensor
from market.chain.pipeline import Pipeline, PipelineStatus, SegmentCommit, SegmentStatus
from market.errors import VerimarketError
from prover import ModelCircuits, Proof, QuantizedTensor, prove_segment, run_segment
from worker.models.build import verify_model_dir
from worker.models.common import pick_device
from worker.models.manifest import ModelManifest
from worker.models.recipes import recipe

ACTIVATION_MAGIC = b"VMA\x01"
MAX_DIMS = 8
#: Largest activation a blob may carry (float64 values), checked before reading values.
MAX_ELEMENTS = 1 << 20
#: Largest gap a node accepts between a received float64 activation and its circuit shadow
#: (real units). Measured on the digits MLP: at most 0.0037 after fc1 and 0.0094 after fc2
#: (60 test images); the circuit rounds at 2^-10 per layer. A wider gap means the blob's
#: float64 part is not what the segment computes, which the zk proof cannot show (it covers
#: the shadow), so the node refuses to build on it (docs/pipeline.md, "Limits").
SHADOW_TOLERANCE = 0.125


class PipelineError(VerimarketError):
    """A pipelined segment cannot be run as asked."""


class ActivationError(PipelineError, ValueError):
    """An activation blob is malformed."""


class LinkMismatch(PipelineError):
    """What a node received is not what the previous segment committed."""


@dataclass(frozen=True)
class Activation:
    """A float64 activation and its circuit shadow (fixed point)."""

    values: npt.NDArray[np.float64]
    shadow: QuantizedTensor

    def encode(self) -> bytes:
        array = np.ascontiguousarray(self.values, dtype=np.float64)
        if not 1 <= array.ndim <= MAX_DIMS:
            raise ActivationError(f"an activation has 1..{MAX_DIMS} dimensions, not {array.ndim}")
        if not np.all(np.isfinite(array)):
            raise ActivationError("an activation has a NaN or infinite value")
        shadow = np.asarray(self.shadow.values, dtype=np.int64)
        if not 0 <= self.shadow.scale_bits <= 255:
            raise ActivationError(f"shadow scale 2^{self.shadow.scale_bits} is out of range")
        return b"".join(
            [
                ACTIVATION_MAGIC,
                struct.pack(f">B{array.ndim}I", array.ndim, *array.shape),
                array.astype(">f8").tobytes(),
                struct.pack(">BI", self.shadow.scale_bits, shadow.size),
                shadow.astype(">i8").tobytes(),
            ]
        )

    @classmethod
    def decode(cls, data: bytes, shadow_shape: Sequence[int] | None = None) -> Activation:
        """Parse a blob strictly; ``shadow_shape`` (default: flat) is the circuit's shape."""
        view = memoryview(data)
        if len(view) < 5 or bytes(view[:4]) != ACTIVATION_MAGIC:
            raise ActivationError("not an activation blob (magic VMA, version 1)")
        ndim = view[4]
        if not 1 <= ndim <= MAX_DIMS:
            raise ActivationError(f"ndim {ndim} is not in 1..{MAX_DIMS}")
        offset = 5 + 4 * ndim
        if len(view) < offset:
            raise ActivationError("truncated dims")
        dims = struct.unpack(f">{ndim}I", view[5:offset])
        count = int(np.prod(dims, dtype=np.int64))
        if count > MAX_ELEMENTS:
            raise ActivationError(f"{count} values exceed the limit of {MAX_ELEMENTS}")
        end = offset + 8 * count
        if len(view) < end + 5:
            raise ActivationError("truncated values")
        values = np.frombuffer(view[offset:end], dtype=">f8").astype(np.float64).reshape(dims)
        if not np.all(np.isfinite(values)):
            raise ActivationError("an activation has a NaN or infinite value")
        scale, shadow_count = struct.unpack(">BI", view[end : end + 5])
        start = end + 5
        if shadow_count > MAX_ELEMENTS or len(view) != start + 8 * shadow_count:
            raise ActivationError("shadow values do not match their count (or bytes left over)")
        shadow = np.frombuffer(view[start:], dtype=">i8").astype(np.int64)
        shape = tuple(shadow_shape) if shadow_shape is not None else (int(shadow_count),)
        if int(np.prod(shape)) != shadow_count:
            raise ActivationError(f"{shadow_count} shadow values do not fill shape {shape}")
        return cls(values, QuantizedTensor(tuple(int(v) for v in shadow), shape, int(scale)))


@dataclass(frozen=True)
class SegmentOutput:
    """What one segment run produced, and the commit that says so."""

    index: int
    input_hash: bytes
    input_boundary_hash: int
    output: bytes
    output_boundary_hash: int
    #: The shadow this segment's circuit was run on (what a proof must be made on).
    shadow_input: QuantizedTensor

    @property
    def output_hash(self) -> bytes:
        return keccak(self.output)

    def commit(self) -> SegmentCommit:
        return SegmentCommit(
            self.input_hash, self.input_boundary_hash, self.output_hash, self.output_boundary_hash
        )


class SegmentRunner:
    """A built model split into its segments, each runnable alone (float64) with its circuit.

    The model's module must be a sequence of blocks, one per manifest segment, in order (the
    digits models are); ``PipelineError`` otherwise.
    """

    def __init__(
        self,
        model_dir: Path,
        circuits: ModelCircuits,
        device: str | torch.device | None = None,
        shadow_tolerance: float = SHADOW_TOLERANCE,
    ) -> None:
        model_dir = Path(model_dir)
        self.shadow_tolerance = shadow_tolerance
        manifest = ModelManifest.read(model_dir)
        self._recipe = recipe(manifest.name)
        self.manifest = verify_model_dir(model_dir, self._recipe)
        self.device = pick_device(device)
        module = self._recipe.load_module(model_dir, self.manifest.weights_files)
        module = module.double().to(self.device).eval()
        names = [seg.name for seg in self.manifest.segments]
        blocks = dict(module.named_children())
        if list(blocks) != names:
            raise PipelineError(
                f"{manifest.name}: blocks {list(blocks)} do not match the segments {names}; "
                "only models built as one block per segment can be pipelined"
            )
        if len(circuits.segments) != len(names):
            raise PipelineError(
                f"{len(circuits.segments)} circuits for the {len(names)} segments of "
                f"{manifest.name}"
            )
        for seg, circuit in zip(self.manifest.segments, circuits.segments, strict=True):
            if seg.segment_hash.lower() != circuit.source_hash.lower():
                raise PipelineError(f"circuit {circuit.name} was not built from segment {seg.name}")
        self.blocks: list[nn.Module] = [blocks[n] for n in names]
        self.circuits = circuits

    @property
    def segment_count(self) -> int:
        return len(self.blocks)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.segment_count:
            raise PipelineError(f"segment {index} is not in 0..{self.segment_count - 1}")

    def _input(self, index: int, data: bytes) -> tuple[torch.Tensor, QuantizedTensor | None]:
        """The float64 batch-of-one input and (after segment 0) the circuit's input shadow."""
        if index == 0:
            x = self._recipe.decode_input(data, self.manifest.name)  # InvalidInput if bad
            return x.unsqueeze(0), None
        circuit = self.circuits.segments[index]
        act = Activation.decode(data, circuit.input_shape)
        if act.shadow.scale_bits != circuit.input_scale:
            raise ActivationError(
                f"shadow at 2^{act.shadow.scale_bits}; "
                f"segment {index} reads 2^{circuit.input_scale}"
            )
        flat = act.values.reshape(-1)
        if flat.size != len(act.shadow.values):
            raise ActivationError(
                f"{flat.size} float64 values but {len(act.shadow.values)} shadow values"
            )
        gap = float(np.abs(flat - act.shadow.floats().reshape(-1)).max(initial=0.0))
        if gap > self.shadow_tolerance:
            raise ActivationError(
                f"the float64 activation strays {gap:.4g} from its circuit shadow "
                f"(tolerance {self.shadow_tolerance}): refusing to build on it"
            )
        return torch.from_numpy(act.values).to(self.device), act.shadow

    def run(self, index: int, data: bytes) -> SegmentOutput:
        """Run segment ``index`` on ``data`` (the job input, or the previous activation blob)."""
        self._check_index(index)
        x, shadow = self._input(index, data)
        with torch.inference_mode():
            y = self.blocks[index](x)
        values = y.to("cpu", torch.float64).numpy()
        circuit = self.circuits.segments[index]
        if shadow is None:
            # Segment 0: the circuit reads the real input quantized at its scale.
            shadow = QuantizedTensor.from_floats(
                x.to("cpu", torch.float64).numpy().reshape(-1),
                circuit.input_scale,
                circuit.input_shape,
            )
        run = run_segment(circuit, shadow)
        if index == self.segment_count - 1:
            (row,) = values  # batch of one
            output = encode_tensor(row, self.manifest.output_scale)
        else:
            output = Activation(values, run.output).encode()
        return SegmentOutput(
            index=index,
            input_hash=keccak(data),
            input_boundary_hash=run.input_hash,
            output=output,
            output_boundary_hash=run.output_hash,
            shadow_input=shadow,
        )

    def input_boundary_hash(self, data: bytes) -> int:
        """The boundary hash of a job input (what a payer puts in its request)."""
        x, _ = self._input(0, data)
        circuit = self.circuits.segments[0]
        shadow = QuantizedTensor.from_floats(
            x.numpy().reshape(-1), circuit.input_scale, circuit.input_shape
        )
        return run_segment(circuit, shadow).input_hash

    def prove(self, index: int, data: bytes) -> Proof:
        """The ezkl proof of segment ``index`` on its input blob (or the job input)."""
        self._check_index(index)
        out = self.run(index, data)
        return prove_segment(self.circuits.segments[index], out.shadow_input)


class SegmentNode:
    """One node's side of a pipelined job: claim a segment, run it from the committed
    previous output, store the blob and commit."""

    def __init__(self, pipeline: Pipeline, runner: SegmentRunner, blobs: BlobStore) -> None:
        self.pipeline = pipeline
        self.runner = runner
        self.blobs = blobs

    def claim(self, job_id: int, index: int) -> None:
        self.pipeline.claim(job_id, index)

    def input_of(self, job_id: int, index: int) -> tuple[bytes, bytes, int]:
        """(blob bytes, committed blob hash, committed boundary hash) segment ``index`` starts
        from; raises LinkMismatch while the previous segment is not committed."""
        job = self.pipeline.job(job_id)
        if index == 0:
            return (
                self.blobs.get("0x" + job.input_hash.hex()),
                job.input_hash,
                job.input_boundary_hash,
            )
        prev = self.pipeline.segment(job_id, index - 1)
        if job.committed < index or prev.status == SegmentStatus.OPEN:
            raise LinkMismatch(f"job {job_id}: segment {index - 1} is not committed yet")
        return (
            self.blobs.get("0x" + prev.output_hash.hex()),
            prev.output_hash,
            prev.output_boundary_hash,
        )

    def work(self, job_id: int, index: int) -> tuple[SegmentOutput, TxReceipt]:
        """Run and commit segment ``index`` (which this node claimed); the output and the
        commit's receipt."""
        job = self.pipeline.job(job_id)
        if job.status != PipelineStatus.ACTIVE:
            raise PipelineError(f"job {job_id} is {job.status.name}, not ACTIVE")
        data, blob_hash, boundary = self.input_of(job_id, index)
        out = self.runner.run(index, data)
        if out.input_hash != blob_hash:
            raise LinkMismatch(f"job {job_id} segment {index}: input blob hash differs")
        if out.input_boundary_hash != boundary:
            # The blob's shadow is not what the previous node committed to: refuse to build on it.
            raise LinkMismatch(
                f"job {job_id} segment {index}: the input's boundary hash "
                f"{out.input_boundary_hash} is not the committed {boundary}"
            )
        self.blobs.put(out.output)
        return out, self.pipeline.commit(job_id, index, out.commit())

    def answer_challenge(self, job_id: int, index: int) -> tuple[Proof, TxReceipt]:
        """Prove segment ``index`` from its committed input and post the proof."""
        data, _, _ = self.input_of(job_id, index)
        proof = self.runner.prove(index, data)
        return proof, self.pipeline.prove(job_id, index, proof.proof)
