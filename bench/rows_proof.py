"""Row 6: segment proofs against the whole model proved as one circuit (ezkl, digits MLP).

The measuring is ``bench/prover_bench.py``'s (``measure``: setup, prove, verify, sizes,
verifier deploy and verify gas on anvil); this module runs it the way that script's
``main`` does and turns the result into figures. With k segments, a spot check proves one
of them: the target is that any one segment's proof takes at most 1/k of the whole model's.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.report import Figure, RowResult, Target, fmt_number


def measure_proofs(artifacts: Path, repeat: int, cache: Path | None) -> dict[str, Any]:
    """prover_bench's measurements: every segment, then the whole model as one circuit."""
    import numpy as np

    from bench.prover_bench import measure, timed
    from market.chain.anvil import DEV_KEYS, start_anvil
    from market.chain.client import ChainClient
    from prover import (
        CircuitOptions,
        ProverConfig,
        VerifierTooLarge,
        build_circuit,
        build_model,
        calibration_inputs,
        run_model,
    )
    from prover.config import EZKL_VERSION
    from worker.models import build_models, digits_test_split

    build_models(artifacts, ["digits-mlp"], progress=False)
    model_dir = artifacts / "digits-mlp"
    with tempfile.TemporaryDirectory(prefix="bench-prover-") as tmp:
        config = ProverConfig(cache_dir=cache or Path(tmp), circuit=replace(CircuitOptions()))
        image = np.asarray(digits_test_split()[0][0], np.float64) / 16
        t = time.perf_counter()
        circuits = build_model(model_dir, config)
        segments_build_s = time.perf_counter() - t
        commit_s, run = timed(lambda: run_model(circuits, image), repeat)
        node = start_anvil()
        try:
            client = ChainClient(node.rpc_url, DEV_KEYS[0])
            segments = [
                measure(seg, run.segment_inputs[i], repeat, client)
                for i, seg in enumerate(circuits.segments)
            ]
            spec, opts = circuits.input, config.circuit
            whole: dict[str, Any]
            try:
                full = build_circuit(
                    model_dir / "model.onnx",
                    name="whole model (one circuit)",
                    calibration=calibration_inputs(
                        spec, opts.calibration_samples, opts.calibration_seed
                    ),
                    config=config,
                )
                whole = measure(full, image, repeat, client)
            except VerifierTooLarge as exc:
                whole = {"name": "whole model (one circuit)", "error": str(exc)}
        finally:
            node.stop()
    return {
        "ezkl": EZKL_VERSION,
        "repeat": repeat,
        "cached_build": cache is not None,
        "segments": segments,
        "segments_build_s": segments_build_s,
        "commit_boundary_hashes_s": commit_s,
        "whole_model": whole,
    }


def _profile(segs: list[dict[str, Any]], whole: dict[str, Any]) -> str:
    """Why the slowest segment's proof is not 1/k of the whole's, from the circuits' sizes."""
    import numpy as np

    k = len(segs)
    big = max(segs, key=lambda r: r["rows"])
    circuits = [*segs, whole]
    size = np.array([2.0 ** r["logrows"] for r in circuits])
    prove = np.array([r["prove_s"] for r in circuits])
    per_row, fixed = np.polyfit(size, prove, 1)
    lines = [
        "| circuit | rows used | circuit size 2^logrows | prove s |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['name']} | {r['rows']:,} | 2^{r['logrows']} = {2 ** r['logrows']:,} | "
            f"{r['prove_s']:.2f} |"
            for r in circuits
        ),
    ]
    return "\n".join(lines) + (
        f"\n\nThe segments are not balanced: {big['name']} holds "
        f"{big['rows'] / whole['rows']:.0%} of the whole model's rows, and a circuit is "
        f"padded to a power of two, so its circuit is 2^{big['logrows']} against the whole's "
        f"2^{whole['logrows']} ({2.0 ** (big['logrows'] - whole['logrows']):.2f} of it) where "
        f"1/k = {1 / k:.2f} is asked. A straight-line fit of prove time against circuit size "
        f"over these {len(circuits)} circuits gives ≈ {fixed:.1f} s per proof whatever the "
        f"size plus {per_row * 1e3:.2f} s per 1,000 rows of circuit size: the fixed part "
        "(key loading, witness generation, lookup tables) is paid by every segment. Meeting "
        "1/k needs segments of about equal rows (split the first layer) and a smaller fixed "
        "cost per proof."
    )


def proof_row(artifacts: Path, repeat: int, cache: Path | None = None) -> RowResult:
    data = measure_proofs(artifacts, repeat, cache)
    segs, whole = data["segments"], data["whole_model"]
    k = len(segs)
    slowest = max(segs, key=lambda r: r["prove_s"])
    whole_ok = "error" not in whole
    figures = [
        Figure(
            "6",
            f"one spot-check proof, slowest of k = {k} segments ({slowest['name']}), prove",
            slowest["prove_s"],
            "s",
            baseline=whole["prove_s"] if whole_ok else None,
            baseline_name="whole model as one circuit, prove",
            target=Target("<=", 1 / k, on="ratio", text=f"≤ 1/{k} of the whole ({1 / k:.2f})"),
        ),
        Figure(
            "6",
            "spot-check proof, mean segment, prove",
            statistics.mean(r["prove_s"] for r in segs),
            "s",
            baseline=whole["prove_s"] if whole_ok else None,
            baseline_name="whole model as one circuit, prove",
        ),
        Figure(
            "6",
            "segment setup, slowest",
            max(r["setup_s"] for r in segs),
            "s",
            baseline=whole["setup_s"] if whole_ok else None,
            baseline_name="whole model setup",
        ),
        Figure(
            "6",
            "segment verify gas (on chain), slowest",
            max(r["verify_gas"] for r in segs),
            "gas",
            baseline=whole["verify_gas"] if whole_ok else None,
            baseline_name="whole model verify gas",
        ),
        Figure(
            "6",
            "segment proof size",
            max(r["proof_bytes"] for r in segs),
            "B",
            baseline=whole["proof_bytes"] if whole_ok else None,
            baseline_name="whole model proof",
        ),
    ]
    cols = [
        ("circuit", "name"),
        ("logrows", "logrows"),
        ("setup s", "setup_s"),
        ("prove s", "prove_s"),
        ("verify s", "verify_s"),
        ("proof B", "proof_bytes"),
        ("pk MB", "pk_bytes"),
        ("verifier B", "verifier_runtime_bytes"),
        ("verify gas", "verify_gas"),
    ]
    lines = [
        "| " + " | ".join(c for c, _ in cols) + " |",
        "|---|" + "---:|" * (len(cols) - 1),
    ]
    for r in [*segs, *([whole] if whole_ok else [])]:
        cells = [str(r["name"])] + [
            fmt_number(r[key] / 1e6 if key == "pk_bytes" else r[key]) for _, key in cols[1:]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    details = (
        f"ezkl {data['ezkl']}, `bench/prover_bench.py`'s `measure` (median of {data['repeat']}"
        f" prove/verify runs; setup is a {'cached' if data['cached_build'] else 'cold'} build). "
        f"Building all {k} segment circuits took {data['segments_build_s']:.1f} s; computing "
        f"the boundary hashes of one input (what a node commits in zk-spot) "
        f"{data['commit_boundary_hashes_s'] * 1000:.0f} ms.\n\n" + "\n".join(lines)
    )
    if not whole_ok:
        details += f"\n\nWhole model as one circuit: {whole['error']}"
    profile = _profile(segs, whole) if whole_ok else ""
    return RowResult(
        key="proof",
        title="6. Proofs: per segment vs the whole model as one circuit (ezkl)",
        figures=figures,
        details=details,
        profile=profile,
        data=data,
    )
