"""Prover plumbing without circuits: SRS files, build keys, model folders, the async guard."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prover import (
    CeremonySrs,
    CircuitOptions,
    InputSpec,
    LocalInsecureSrs,
    ModelFolderError,
    ProverConfig,
    SolcOptions,
    SrsError,
    calibration_inputs,
    ezkl_async,
)
from prover.segments import file_hash, read_manifest
from prover.solc import write_svm_wrapper
from prover.srs import srs_digest, srs_logrows


def test_local_srs_is_made_once_per_logrows(tmp_path: Path) -> None:
    srs = LocalInsecureSrs(tmp_path)
    first = srs.path_for(4)
    digest = srs_digest(first)
    assert srs_logrows(first) == 4 and first.name == "insecure-k4.srs"
    assert srs.path_for(4) == first and srs_digest(first) == digest
    assert srs.path_for(5) != first
    assert srs.label == "insecure-local"


def test_ceremony_srs_must_exist_and_be_large_enough(tmp_path: Path) -> None:
    with pytest.raises(SrsError, match="does not exist"):
        CeremonySrs(tmp_path / "none.srs").path_for(4)
    made = LocalInsecureSrs(tmp_path).path_for(5)
    ceremony = CeremonySrs(made)
    assert ceremony.path_for(4) == made == ceremony.path_for(5)
    with pytest.raises(SrsError, match="2\\^5 points"):
        ceremony.path_for(6)


def test_build_digest_follows_what_shapes_a_circuit(tmp_path: Path) -> None:
    base = ProverConfig(cache_dir=tmp_path)
    assert base.build_digest() == ProverConfig(cache_dir=tmp_path / "other").build_digest()
    changed = [
        replace(base, circuit=replace(CircuitOptions(), num_inner_cols=2)),
        replace(base, circuit=replace(CircuitOptions(), scale=8)),
        replace(base, solc=replace(SolcOptions(), optimizer_runs=200)),
        replace(base, srs=CeremonySrs(tmp_path / "ceremony.srs")),
        replace(base, circuit=replace(CircuitOptions(), io_visibility="hashed")),
        replace(base, circuit=replace(CircuitOptions(), logrows=13)),
    ]
    assert len({base.build_digest(), *(c.build_digest() for c in changed)}) == 7
    assert base.srs_source == LocalInsecureSrs(tmp_path / "srs")


def test_run_args_are_committed_fixed_and_fix_symbolic_dims() -> None:
    args: Any = CircuitOptions().run_args(["batch"])  # ezkl's stub lists no attributes
    assert (args.input_visibility, args.output_visibility) == ("polycommit", "polycommit")
    assert args.param_visibility == "fixed"
    assert (args.input_scale, args.param_scale, args.scale_rebase_multiplier) == (10, 10, 1)
    assert (args.decomp_base, args.decomp_legs, args.num_inner_cols) == (256, 4, 1)
    assert args.variables == [("batch", 1)]
    default: Any = CircuitOptions().run_args()
    assert default.variables == [("batch_size", 1)]


def test_io_visibility_and_logrows_are_checked() -> None:
    hashed: Any = CircuitOptions(io_visibility="hashed").run_args()
    assert (hashed.input_visibility, hashed.output_visibility) == ("hashed/public",) * 2
    with pytest.raises(ValueError, match="is not one of"):
        CircuitOptions(io_visibility="private")
    with pytest.raises(ValueError, match=r"logrows 17 is not in 1\.\.16"):
        CircuitOptions(logrows=17)


def test_calibration_inputs_are_deterministic_and_in_range() -> None:
    spec = InputSpec(shape=(8, 8), scale_bits=4, min_value=0, max_value=16)
    a, b = calibration_inputs(spec, 16, 0), calibration_inputs(spec, 16, 0)
    assert len(a) == 16 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].max() == 0.0 and a[1].min() == 1.0
    assert all(x.shape == (8, 8) and x.min() >= 0 and x.max() <= 1 for x in a)
    assert not np.array_equal(calibration_inputs(spec, 16, 1)[5], a[5])


def _folder(tmp_path: Path, segments: list[dict[str, str]]) -> Path:
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "m", "segments": segments}))
    return tmp_path


def test_model_folders_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match=r"manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / "a.onnx").write_bytes(b"graph")
    good = {"name": "a", "file": "a.onnx", "segment_hash": file_hash(tmp_path / "a.onnx")}
    assert read_manifest(_folder(tmp_path, [good]))["segments"] == [good]
    with pytest.raises(ModelFolderError, match="does not match its hash"):
        read_manifest(_folder(tmp_path, [dict(good, segment_hash="0x" + "00" * 32)]))
    with pytest.raises(ModelFolderError, match="not an ONNX graph"):
        read_manifest(_folder(tmp_path, [dict(good, file="w.safetensors")]))
    with pytest.raises(ModelFolderError, match="missing"):
        read_manifest(_folder(tmp_path, [dict(good, file="b.onnx")]))
    with pytest.raises(ModelFolderError, match="no segments"):
        read_manifest(_folder(tmp_path, []))


def test_svm_wrapper_runs_solcjs(tmp_path: Path) -> None:
    opts = SolcOptions(solc_js=tmp_path / "tools" / "solc.js")
    path = write_svm_wrapper(tmp_path, opts)
    assert path == tmp_path / ".svm" / "0.8.20" / "solc-0.8.20"
    assert path.stat().st_mode & 0o111
    text = path.read_text()
    assert "SOLCJS_MODULE=solc-0_8_20" in text and str(opts.solc_js) in text


def test_get_srs_is_never_run() -> None:
    with pytest.raises(ValueError, match="get_srs"):
        ezkl_async.call("get_srs", {})
