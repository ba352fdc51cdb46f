"""Model manifests: what a built model is, and its content-addressed ids.

A model folder holds its artefact files and ``manifest.json``. ``spec.json`` (one of the
artefacts) says what the model computes: its input and output encoding and its segments.
Ids are derived from file bytes only:

- ``segment_hash`` = keccak256 of the segment's file (an ONNX graph, or a weights file).
- ``artifacts_hash`` = keccak256 of the canonical JSON ``{"files": {path: "0x<keccak>"}}``
  over every artefact file (spec.json included, manifest.json excluded).
- ``model_id`` = keccak256(abi.encode(artifactsHash, outputScale, segments)), exactly as
  ``ModelRegistry.computeModelId`` does on chain.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi.abi import encode as abi_encode

from market.canonical import keccak

MANIFEST_FILE = "manifest.json"
SPEC_FILE = "spec.json"
#: Layout version of manifest.json.
MANIFEST_FORMAT = 1
ZERO_HASH = "0x" + "00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
_SEGMENT_ABI = "(bytes32,bytes32,address)[]"


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that is hashed: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def hex32(data: bytes) -> str:
    """0x-prefixed lowercase hex of a 32-byte hash."""
    if len(data) != 32:
        raise ValueError(f"expected 32 bytes, got {len(data)}")
    return "0x" + data.hex()


def file_hash(path: Path) -> str:
    """0x-hex keccak256 of a file's bytes."""
    return hex32(keccak(path.read_bytes()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A crash leaves either the old file or the new one, never a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # artefacts are served to others; mkstemp makes them private
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class InputSpec:
    """What a job's input bytes must be: a canonical tensor with this shape and range.

    ``shape`` uses ``None`` for a variable dimension (a token sequence); ``min_length`` and
    ``max_length`` bound it. ``min_value`` / ``max_value`` bound the stored integers (so
    the real values are ``min_value / 2**scale_bits`` .. ``max_value / 2**scale_bits``).
    """

    shape: tuple[int | None, ...]
    scale_bits: int
    min_value: int
    max_value: int
    description: str
    min_length: int | None = None
    max_length: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "scale_bits": self.scale_bits,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            shape=tuple(data["shape"]),
            scale_bits=int(data["scale_bits"]),
            min_value=int(data["min_value"]),
            max_value=int(data["max_value"]),
            description=str(data["description"]),
            min_length=data.get("min_length"),
            max_length=data.get("max_length"),
        )


@dataclass(frozen=True)
class SegmentManifest:
    """One segment (consecutive layers) of a model, as registered in ModelRegistry."""

    name: str
    file: str
    segment_hash: str
    vk_hash: str = ZERO_HASH
    verifier: str = ZERO_ADDRESS

    def chain_tuple(self) -> tuple[bytes, bytes, str]:
        """(segmentHash, vkHash, verifier) as IModelRegistry.Segment wants it."""
        return (
            bytes.fromhex(self.segment_hash[2:]),
            bytes.fromhex(self.vk_hash[2:]),
            self.verifier,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "segment_hash": self.segment_hash,
            "vk_hash": self.vk_hash,
            "verifier": self.verifier,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentManifest:
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            segment_hash=str(data["segment_hash"]),
            vk_hash=str(data.get("vk_hash", ZERO_HASH)),
            verifier=str(data.get("verifier", ZERO_ADDRESS)),
        )


@dataclass(frozen=True)
class ModelManifest:
    """A built model: its spec, files, segments and ids (the content of manifest.json)."""

    name: str
    kind: str
    recipe_version: int
    input: InputSpec
    output_shape: tuple[int, ...]
    output_scale: int
    segments: tuple[SegmentManifest, ...]
    files: Mapping[str, str]
    artifacts_hash: str
    model_id: str
    weights_files: tuple[str, ...]
    onnx_file: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""
    #: Library versions the build ran with (informational, not hashed).
    environment: Mapping[str, str] = field(default_factory=dict)

    def chain_segments(self) -> list[tuple[bytes, bytes, str]]:
        """The segments as the (segmentHash, vkHash, verifier) tuples registerModel takes."""
        return [s.chain_tuple() for s in self.segments]

    @property
    def model_id_bytes(self) -> bytes:
        return bytes.fromhex(self.model_id[2:])

    @property
    def artifacts_hash_bytes(self) -> bytes:
        return bytes.fromhex(self.artifacts_hash[2:])

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "kind": self.kind,
            "recipe_version": self.recipe_version,
            "input": self.input.to_json(),
            "output_shape": list(self.output_shape),
            "output_scale": self.output_scale,
            "segments": [s.to_json() for s in self.segments],
            "files": dict(sorted(self.files.items())),
            "artifacts_hash": self.artifacts_hash,
            "model_id": self.model_id,
            "weights_files": list(self.weights_files),
            "onnx_file": self.onnx_file,
            "metrics": dict(sorted(self.metrics.items())),
            "notes": self.notes,
            "environment": dict(sorted(self.environment.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelManifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"manifest format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            recipe_version=int(data["recipe_version"]),
            input=InputSpec.from_json(data["input"]),
            output_shape=tuple(int(d) for d in data["output_shape"]),
            output_scale=int(data["output_scale"]),
            segments=tuple(SegmentManifest.from_json(s) for s in data["segments"]),
            files={str(k): str(v) for k, v in data["files"].items()},
            artifacts_hash=str(data["artifacts_hash"]),
            model_id=str(data["model_id"]),
            weights_files=tuple(str(f) for f in data["weights_files"]),
            onnx_file=data.get("onnx_file"),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            notes=str(data.get("notes", "")),
            environment={str(k): str(v) for k, v in data.get("environment", {}).items()},
        )

    def write(self, model_dir: Path) -> None:
        """Write manifest.json atomically (indented for people; never hashed)."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"
        atomic_write_bytes(model_dir / MANIFEST_FILE, text.encode())

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        return cls.from_json(json.loads((model_dir / MANIFEST_FILE).read_text()))


def compute_artifacts_hash(files: Mapping[str, str]) -> str:
    """keccak256 of the canonical JSON ``{"files": {relative path: 0x-hash}}``."""
    return hex32(keccak(canonical_json({"files": dict(files)})))


def compute_model_id(
    artifacts_hash: str, output_scale: int, segments: Sequence[SegmentManifest]
) -> str:
    """The id ModelRegistry computes: keccak256(abi.encode(bytes32, uint8, Segment[]))."""
    encoded = abi_encode(
        ["bytes32", "uint8", _SEGMENT_ABI],
        [
            bytes.fromhex(artifacts_hash[2:]),
            output_scale,
            [s.chain_tuple() for s in segments],
        ],
    )
    return hex32(keccak(encoded))
