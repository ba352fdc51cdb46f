"""``verimarket models build``: build model artefacts deterministically, offline, once.

Each model is built into a fresh staging folder next to its final place; spec.json and
manifest.json are written last, then the folder is swapped in by renames. A crash leaves
either the previous build or no folder, never a half-built one with a manifest. A second
build finds the artefacts intact (every file hash, the artifacts hash and the model id are
re-checked) and returns at once.
"""

from __future__ import annotations

import fcntl
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from worker.models.common import BuiltFiles
from worker.models.errors import ArtifactError, ModelBuildError
from worker.models.manifest import (
    MANIFEST_FILE,
    SPEC_FILE,
    ModelManifest,
    SegmentManifest,
    atomic_write_bytes,
    canonical_json,
    compute_artifacts_hash,
    compute_model_id,
    file_hash,
)
from worker.models.recipes import MODEL_NAMES, Recipe, recipe

_LOCK_FILE = ".build.lock"


def build_models(
    out_dir: Path, names: Sequence[str] | None = None, progress: bool = True
) -> list[ModelManifest]:
    """Build (or find intact) the named models under ``out_dir/<name>/``; all when None.

    Deterministic and offline: the same code and library versions give byte-identical
    artefacts and the same model ids. Raises UnknownModel before building anything if a
    name is unknown, ModelBuildError if a build fails its checks.
    """
    wanted = list(MODEL_NAMES) if names is None else list(dict.fromkeys(names))
    recipes = [recipe(name) for name in wanted]
    log = _printer if progress else _silent
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = []
    with _build_lock(out_dir):
        for rec in recipes:
            manifests.append(_build_one(out_dir, rec, log))
    return manifests


def verify_model_dir(model_dir: Path, rec: Recipe | None = None) -> ModelManifest:
    """Check a built model folder against its manifest and return the manifest.

    Raises ArtifactError (with the reason) if the manifest is missing or unreadable, a file
    is missing or its hash differs, the artifacts hash or model id do not recompute, or the
    folder was built by another recipe version than ``rec``'s.
    """
    if not (model_dir / MANIFEST_FILE).is_file():
        raise ArtifactError(model_dir, "no manifest.json (not built, or the build did not finish)")
    try:
        manifest = ModelManifest.read(model_dir)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(model_dir, f"unreadable manifest.json: {exc}") from exc
    if rec is not None:
        if manifest.name != rec.name:
            raise ArtifactError(model_dir, f"manifest is for {manifest.name!r}, not {rec.name!r}")
        if manifest.recipe_version != rec.version:
            raise ArtifactError(
                model_dir,
                f"built by recipe version {manifest.recipe_version}, the code is at {rec.version}",
            )
    if SPEC_FILE not in manifest.files:
        raise ArtifactError(model_dir, f"{SPEC_FILE} is not among the hashed files")
    for rel, expected in manifest.files.items():
        path = model_dir / rel
        if not path.is_file():
            raise ArtifactError(model_dir, f"file {rel} is missing")
        if file_hash(path) != expected:
            raise ArtifactError(model_dir, f"file {rel} does not match its hash {expected}")
    for seg in manifest.segments:
        if manifest.files.get(seg.file) != seg.segment_hash:
            raise ArtifactError(model_dir, f"segment {seg.name}: hash is not that of {seg.file}")
    if compute_artifacts_hash(manifest.files) != manifest.artifacts_hash:
        raise ArtifactError(model_dir, "artifacts_hash does not match the file hashes")
    model_id = compute_model_id(manifest.artifacts_hash, manifest.output_scale, manifest.segments)
    if model_id != manifest.model_id:
        raise ArtifactError(model_dir, f"model_id {manifest.model_id} should be {model_id}")
    return manifest


def spec_document(rec: Recipe, built: BuiltFiles) -> dict[str, Any]:
    """spec.json: what the model computes, hashed into the model id with the other files."""
    return {
        "name": rec.name,
        "kind": rec.kind,
        "recipe_version": rec.version,
        "description": rec.description,
        "input": rec.input.to_json(),
        "output": {"shape": list(rec.output_shape), "scale_bits": rec.output_scale},
        "encoding": "verimarket canonical tensor v1 (docs/canonical.md)",
        "inference": "float64 evaluation of the stored float32 weights (docs/canonical.md)",
        "segments": [{"name": name, "file": file} for name, file in built.segments],
        "weights": list(built.weights_files),
        "onnx": built.onnx_file,
    }


def _build_one(out_dir: Path, rec: Recipe, log: Callable[[str], None]) -> ModelManifest:
    model_dir = out_dir / rec.name
    if model_dir.exists():
        try:
            manifest = verify_model_dir(model_dir, rec)
        except ArtifactError as exc:
            log(f"{rec.name}: rebuilding ({exc.reason})")
        else:
            log(f"{rec.name}: up to date, model id {manifest.model_id}")
            return manifest

    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{rec.name}.build-"))
    try:
        staging.chmod(0o755)  # readable like the files in it (mkdtemp makes it private)
        (staging / "segments").mkdir()
        built = rec.build(rec.name, staging, log)
        atomic_write_bytes(staging / SPEC_FILE, canonical_json(spec_document(rec, built)))
        manifest = _manifest(rec, built, staging)
        manifest.write(staging)
        verify_model_dir(staging, rec)
        _swap_in(staging, model_dir)
    except ArtifactError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelBuildError(rec.name, f"the fresh build does not verify: {exc.reason}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    log(
        f"{rec.name}: built in {time.monotonic() - started:.1f} s, {size / 1e6:.1f} MB, "
        f"model id {manifest.model_id}"
    )
    return manifest


def _manifest(rec: Recipe, built: BuiltFiles, folder: Path) -> ModelManifest:
    files = {
        path.relative_to(folder).as_posix(): file_hash(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    segments = tuple(
        SegmentManifest(name=name, file=file, segment_hash=files[file])
        for name, file in built.segments
    )
    artifacts_hash = compute_artifacts_hash(files)
    return ModelManifest(
        name=rec.name,
        kind=rec.kind,
        recipe_version=rec.version,
        input=rec.input,
        output_shape=rec.output_shape,
        output_scale=rec.output_scale,
        segments=segments,
        files=files,
        artifacts_hash=artifacts_hash,
        model_id=compute_model_id(artifacts_hash, rec.output_scale, segments),
        weights_files=tuple(built.weights_files),
        onnx_file=built.onnx_file,
        metrics=dict(built.metrics),
        notes=built.notes,
        environment=_environment(),
    )


def _environment() -> dict[str, str]:
    import numpy
    import onnx
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
        "machine": platform.machine(),
    }


def _swap_in(staging: Path, model_dir: Path) -> None:
    """Replace ``model_dir`` by ``staging`` with renames (the old one is deleted after)."""
    old: Path | None = None
    if model_dir.exists():
        old = model_dir.with_name(f".{model_dir.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        model_dir.rename(old)
    staging.rename(model_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """One build at a time per artefact folder (across processes)."""
    with (out_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _printer(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def _silent(message: str) -> None:
    del message
