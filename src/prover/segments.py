"""Segment circuits: each segment's ezkl settings, compiled circuit, keys and verifier.

A model folder (``manifest.json`` + one ONNX file per segment) becomes one circuit per
segment, built once and cached under ``cache_dir/circuits/<segment hash>-<build key>/``.
The build key covers the circuit options, ezkl's version, the calibration data and the kind
of SRS; the exact SRS file is recorded by its sha256 and a build made with another SRS file
is rebuilt. Builds go to a staging folder renamed into place under a file lock, so readers
see a whole build or none. Proving keys stay on disk: ``prove`` reads them per proof.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import ezkl
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from eth_utils.crypto import keccak

from prover.config import EZKL_VERSION, IO_VISIBILITIES, CircuitOptions, ProverConfig
from prover.errors import BuildError, ModelFolderError, VerifierTooLarge
from prover.evm import VerifierArtifact, compile_verifier, write_verifier_source
from prover.srs import srs_digest

MANIFEST_FILE = "manifest.json"
BUILD_FILE = "build.json"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ArtefactSizes:
    """Bytes on disk of a circuit's artefacts (the proving key dominates)."""

    settings: int
    compiled_circuit: int
    vk: int
    pk: int
    verifier_source: int
    verifier_runtime: int
    verifier_initcode: int


@dataclass(frozen=True)
class SegmentCircuit:
    """A built segment circuit: where its artefacts are and what they are."""

    name: str
    dir: Path
    source_hash: str
    build_key: str
    logrows: int
    num_rows: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: int
    output_scale: int
    vk_hash: str
    srs_path: Path
    srs_sha256: str
    srs_label: str
    sizes: ArtefactSizes
    build_seconds: dict[str, float]
    io_visibility: str = "hashed"

    @property
    def onnx_path(self) -> Path:
        return self.dir / "circuit.onnx"

    @property
    def settings_path(self) -> Path:
        return self.dir / "settings.json"

    @property
    def compiled_path(self) -> Path:
        return self.dir / "circuit.compiled"

    @property
    def vk_path(self) -> Path:
        return self.dir / "vk.key"

    @property
    def pk_path(self) -> Path:
        return self.dir / "pk.key"

    @property
    def sol_path(self) -> Path:
        return self.dir / "Verifier.sol"

    @property
    def verifier_path(self) -> Path:
        return self.dir / "verifier.json"

    def verifier(self) -> VerifierArtifact:
        """The compiled Solidity verifier of this circuit."""
        return VerifierArtifact.read(self.verifier_path)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dir"] = str(self.dir)
        data["srs_path"] = str(self.srs_path)
        return data

    @classmethod
    def load(cls, folder: Path) -> SegmentCircuit:
        """Read a built circuit from its cache folder (``build.json``)."""
        data = json.loads((folder / BUILD_FILE).read_text())
        return cls(
            name=data["name"],
            dir=folder,
            source_hash=data["source_hash"],
            build_key=data["build_key"],
            logrows=int(data["logrows"]),
            num_rows=int(data["num_rows"]),
            input_shape=tuple(data["input_shape"]),
            output_shape=tuple(data["output_shape"]),
            input_scale=int(data["input_scale"]),
            output_scale=int(data["output_scale"]),
            vk_hash=data["vk_hash"],
            srs_path=Path(data["srs_path"]),
            srs_sha256=data["srs_sha256"],
            srs_label=data["srs_label"],
            sizes=ArtefactSizes(**data["sizes"]),
            build_seconds={k: float(v) for k, v in data["build_seconds"].items()},
            io_visibility=str(data.get("io_visibility", "hashed")),
        )


@dataclass(frozen=True)
class InputSpec:
    """A model's input as its manifest states it: canonical integers at ``2^scale_bits``."""

    shape: tuple[int, ...]
    scale_bits: int
    min_value: int
    max_value: int


@dataclass(frozen=True)
class ModelCircuits:
    """The circuits of every segment of one model, in order."""

    model_dir: Path
    name: str
    model_id: str
    input: InputSpec
    output_scale_bits: int
    segments: tuple[SegmentCircuit, ...]


# --------------------------------------------------------------------------- model folders


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """``manifest.json`` of a built model folder, with every segment file checked by hash."""
    path = model_dir / MANIFEST_FILE
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFolderError(model_dir, f"cannot read {MANIFEST_FILE}: {exc}") from exc
    for seg in manifest.get("segments", []):
        file = model_dir / seg["file"]
        if file.suffix != ".onnx":
            raise ModelFolderError(
                model_dir,
                f"segment {seg['name']} is {seg['file']}, not an ONNX graph: not provable",
            )
        if not file.is_file():
            raise ModelFolderError(model_dir, f"segment file {seg['file']} is missing")
        if file_hash(file) != seg["segment_hash"]:
            raise ModelFolderError(model_dir, f"segment file {seg['file']} does not match its hash")
    if not manifest.get("segments"):
        raise ModelFolderError(model_dir, "the manifest lists no segments")
    return manifest


def input_spec(manifest: dict[str, Any], model_dir: Path) -> InputSpec:
    spec = manifest.get("input", {})
    if spec.get("min_value") is None or spec.get("max_value") is None:
        raise ModelFolderError(model_dir, "the input spec has no value range to calibrate with")
    return InputSpec(
        shape=tuple(int(d) for d in spec["shape"]),
        scale_bits=int(spec["scale_bits"]),
        min_value=int(spec["min_value"]),
        max_value=int(spec["max_value"]),
    )


def file_hash(path: Path) -> str:
    """``0x`` + keccak256 of a file (the manifest's segment hash)."""
    return "0x" + keccak(path.read_bytes()).hex()


def calibration_inputs(spec: InputSpec, samples: int, seed: int) -> list[FloatArray]:
    """Deterministic calibration inputs for a model's first segment: the all-minimum and
    all-maximum inputs, then uniform random canonical inputs (real values)."""
    rng = np.random.default_rng(seed)
    scale = float(2**spec.scale_bits)
    out = [np.full(spec.shape, spec.min_value / scale), np.full(spec.shape, spec.max_value / scale)]
    for _ in range(max(samples - 2, 0)):
        ints = rng.integers(spec.min_value, spec.max_value + 1, size=spec.shape)
        out.append(ints.astype(np.float64) / scale)
    return out


def build_model(model_dir: Path, config: ProverConfig | None = None) -> ModelCircuits:
    """Build (or find in the cache) the circuit of every segment of a model folder.

    Calibration inputs for segment 0 come from the manifest's input spec; those of segment
    ``i+1`` are segment ``i``'s float outputs on them (onnxruntime). Checks that every
    boundary keeps one scale and size, so boundary hashes chain.
    """
    config = config or ProverConfig()
    manifest = read_manifest(model_dir)
    spec = input_spec(manifest, model_dir)
    opts = config.circuit
    calibration = calibration_inputs(spec, opts.calibration_samples, opts.calibration_seed)
    if opts.io_visibility == "polycommit" and opts.logrows is None:
        config = replace(
            config,
            circuit=replace(
                opts, logrows=_common_logrows(model_dir, manifest, calibration, config)
            ),
        )
    circuits: list[SegmentCircuit] = []
    for seg in manifest["segments"]:
        onnx_path = model_dir / seg["file"]
        circuit = build_circuit(
            onnx_path,
            name=f"{manifest['name']}/{seg['name']}",
            calibration=calibration,
            config=config,
        )
        if circuits:
            _check_boundary(circuits[-1], circuit)
        circuits.append(circuit)
        calibration = run_onnx(onnx_path, calibration)
    return ModelCircuits(
        model_dir=model_dir,
        name=str(manifest["name"]),
        model_id=str(manifest.get("model_id", "")),
        input=spec,
        output_scale_bits=int(manifest.get("output_scale", 16)),
        segments=tuple(circuits),
    )


def _common_logrows(
    model_dir: Path,
    manifest: dict[str, Any],
    calibration: Sequence[FloatArray],
    config: ProverConfig,
) -> int:
    """The largest logrows calibration gives any segment of a model (cached per segment).

    KZG-committed boundaries link only when both circuits have the same number of rows: a
    commitment is to the polynomial through the column's values over 2^logrows points.
    """
    found = []
    for seg in manifest["segments"]:
        onnx_path = model_dir / seg["file"]
        key = _key(onnx_path, calibration, config)
        record = config.cache_dir / "logrows" / f"{key}.json"
        if record.is_file():
            found.append(int(json.loads(record.read_text())["logrows"]))
        else:
            with tempfile.TemporaryDirectory(prefix="prover-calibrate-") as tmp:
                folder = Path(tmp)
                onnx = folder / "circuit.onnx"
                shutil.copyfile(onnx_path, onnx)
                logrows = _calibrate(
                    folder,
                    onnx,
                    folder / "settings.json",
                    str(seg["name"]),
                    calibration,
                    config.circuit,
                )
            record.parent.mkdir(parents=True, exist_ok=True)
            staged = record.with_name(f".{record.name}.{os.getpid()}")
            staged.write_text(json.dumps({"logrows": logrows}))
            os.replace(staged, record)  # whole, even with several builders at once
            found.append(logrows)
        calibration = run_onnx(onnx_path, calibration)
    return max(found)


def _key(onnx_path: Path, calibration: Sequence[FloatArray], config: ProverConfig) -> str:
    """``<segment hash>-<build key>``: the graph, the options and the calibration data."""
    calib = hashlib.sha256()
    for x in calibration:
        calib.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    digest = hashlib.sha256((config.build_digest() + calib.hexdigest()).encode()).hexdigest()
    return f"{file_hash(onnx_path)[2:18]}-{digest[:16]}"


def _check_boundary(before: SegmentCircuit, after: SegmentCircuit) -> None:
    if before.output_scale != after.input_scale:
        raise BuildError(
            after.name,
            "boundary check",
            f"input scale 2^{after.input_scale} differs from {before.name}'s output scale "
            f"2^{before.output_scale}: the boundary hashes would not chain",
        )
    if int(np.prod(before.output_shape)) != int(np.prod(after.input_shape)):
        raise BuildError(
            after.name,
            "boundary check",
            f"input shape {after.input_shape} does not take {before.name}'s output "
            f"{before.output_shape}",
        )


def onnx_shapes(onnx_path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(input shape, output shape) of a one-input one-output graph; symbolic dims are 1."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    out = session.get_outputs()[0]

    def dims(shape: Sequence[object]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else 1 for d in shape)

    return dims(inp.shape), dims(out.shape)


def onnx_symbols(onnx_path: Path) -> list[str]:
    """Names of the symbolic dimensions of a graph's inputs (a dynamic batch axis); the
    circuit fixes each to 1."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    found: list[str] = []
    for inp in session.get_inputs():
        found += [d for d in inp.shape if isinstance(d, str) and d not in found]
    return found


def run_onnx(onnx_path: Path, inputs: Sequence[FloatArray]) -> list[FloatArray]:
    """Float outputs of a graph on each input (one at a time, batch 1)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    in_shape, _ = onnx_shapes(onnx_path)
    outs = []
    for x in inputs:
        (y, *_) = session.run(None, {inp.name: np.asarray(x, np.float32).reshape(in_shape)})
        outs.append(np.asarray(y, np.float64))
    return outs


# --------------------------------------------------------------------------- one circuit


def build_circuit(
    onnx_path: Path, *, name: str, calibration: Sequence[FloatArray], config: ProverConfig
) -> SegmentCircuit:
    """Build (or find in the cache) the circuit, keys and verifier of one ONNX graph."""
    source_hash = file_hash(onnx_path)
    key = _key(onnx_path, calibration, config)
    build_key = key.split("-")[1]
    folder = config.cache_dir / "circuits" / key
    found = _cached(folder, build_key, config)
    if found is not None:
        return found
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(folder.name + ".lock")):
        found = _cached(folder, build_key, config)
        if found is not None:
            return found
        staging = folder.with_name(f".{folder.name}.{os.getpid()}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            _build_into(staging, onnx_path, name, source_hash, build_key, calibration, config)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return SegmentCircuit.load(folder)


def _cached(folder: Path, build_key: str, config: ProverConfig) -> SegmentCircuit | None:
    if not (folder / BUILD_FILE).is_file():
        return None
    try:
        circuit = SegmentCircuit.load(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if circuit.build_key != build_key:
        return None
    srs = config.srs_source.path_for(circuit.logrows)
    if srs_digest(srs) != circuit.srs_sha256:
        return None  # keys were made with another SRS file: rebuild with this one
    return circuit


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def _native_output_to(path: Path) -> Iterator[None]:
    """Send what native code writes to file descriptors 1 and 2 into ``path`` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _ezkl_step(name: str, step: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        result = fn(*args, **kwargs)
    except RuntimeError as exc:
        raise BuildError(name, step, str(exc)) from exc
    if result is False:
        raise BuildError(name, step, "ezkl returned False")
    return result


def _calibrate(
    folder: Path,
    onnx: Path,
    settings: Path,
    name: str,
    calibration: Sequence[FloatArray],
    opts: CircuitOptions,
) -> int:
    """Write the calibrated ezkl settings of ``onnx`` to ``settings``; return their logrows."""
    run_args = opts.run_args(onnx_symbols(onnx))
    _ezkl_step(name, "gen_settings", ezkl.gen_settings, str(onnx), str(settings), run_args)
    data = folder / "calibration.json"
    flat = [float(v) for x in calibration for v in np.asarray(x, np.float64).reshape(-1)]
    data.write_text(json.dumps({"input_data": [flat]}))
    with _native_output_to(folder / "calibration.log"):  # ezkl prints a fidelity table
        _ezkl_step(
            name,
            "calibrate_settings",
            ezkl.calibrate_settings,
            str(data),
            str(onnx),
            str(settings),
            "resources",
            scales=[opts.scale],
            scale_rebase_multiplier=[opts.scale_rebase_multiplier],
            max_logrows=opts.max_logrows,
        )
    return int(json.loads(settings.read_text())["run_args"]["logrows"])


def _build_into(
    folder: Path,
    onnx_path: Path,
    name: str,
    source_hash: str,
    build_key: str,
    calibration: Sequence[FloatArray],
    config: ProverConfig,
) -> None:
    opts = config.circuit
    seconds: dict[str, float] = {}
    onnx = folder / "circuit.onnx"
    shutil.copyfile(onnx_path, onnx)
    settings = folder / "settings.json"
    compiled = folder / "circuit.compiled"
    vk, pk, sol = folder / "vk.key", folder / "pk.key", folder / "Verifier.sol"
    input_shape, output_shape = onnx_shapes(onnx)

    t = time.perf_counter()
    calibrated = _calibrate(folder, onnx, settings, name, calibration, opts)
    if opts.logrows is not None:
        if calibrated > opts.logrows:
            raise BuildError(
                name, "calibrate", f"needs 2^{calibrated} rows, more than logrows {opts.logrows}"
            )
        forced = json.loads(settings.read_text())
        forced["run_args"]["logrows"] = opts.logrows
        settings.write_text(json.dumps(forced))
    seconds["calibrate"] = time.perf_counter() - t

    t = time.perf_counter()
    _ezkl_step(
        name, "compile_circuit", ezkl.compile_circuit, str(onnx), str(compiled), str(settings)
    )
    seconds["compile"] = time.perf_counter() - t
    st = json.loads(settings.read_text())
    for side in ("input_visibility", "output_visibility"):
        if IO_VISIBILITIES[opts.io_visibility] not in str(st["run_args"][side]):
            raise BuildError(
                name,
                "settings check",
                f"{side} is {st['run_args'][side]}, not {opts.io_visibility}",
            )
    logrows = int(st["run_args"]["logrows"])
    srs = config.srs_source.path_for(logrows)

    t = time.perf_counter()
    _ezkl_step(name, "setup", ezkl.setup, str(compiled), str(vk), str(pk), str(srs))
    seconds["setup"] = time.perf_counter() - t

    t = time.perf_counter()
    write_verifier_source(
        circuit=name, vk=vk, settings=settings, srs=srs, sol_out=sol, solc=config.solc
    )
    verifier = compile_verifier(name, sol, config.solc)
    if verifier.runtime_size > config.max_verifier_bytes and config.solc.optimizer_runs > 1:
        # high runs inline constants (cheaper calls, more code): fall back to the smallest code
        verifier = compile_verifier(name, sol, replace(config.solc, optimizer_runs=1))
    seconds["verifier"] = time.perf_counter() - t
    if verifier.runtime_size > config.max_verifier_bytes:
        raise VerifierTooLarge(name, verifier.runtime_size, config.max_verifier_bytes)
    (folder / "verifier.json").write_text(json.dumps(verifier.to_json()))

    sizes = ArtefactSizes(
        settings=settings.stat().st_size,
        compiled_circuit=compiled.stat().st_size,
        vk=vk.stat().st_size,
        pk=pk.stat().st_size,
        verifier_source=sol.stat().st_size,
        verifier_runtime=verifier.runtime_size,
        verifier_initcode=len(verifier.bytecode),
    )
    record = {
        "name": name,
        "source_hash": source_hash,
        "build_key": build_key,
        "logrows": logrows,
        "num_rows": int(st["num_rows"]),
        "input_shape": list(input_shape),
        "output_shape": list(output_shape),
        "input_scale": int(st["model_input_scales"][0]),
        "output_scale": int(st["model_output_scales"][0]),
        "vk_hash": file_hash(vk),
        "srs_path": str(srs.resolve()),
        "srs_sha256": srs_digest(srs),
        "srs_label": config.srs_source.label,
        "sizes": asdict(sizes),
        "build_seconds": seconds,
        "ezkl_version": EZKL_VERSION,
        "io_visibility": opts.io_visibility,
    }
    (folder / BUILD_FILE).write_text(json.dumps(record, indent=2) + "\n")
