"""Segment proofs against the whole model in one circuit (ezkl, digits MLP).

Per segment: setup, prove and verify time, proof and proving-key size, verifier size, and the
gas of deploying the verifier and of one on-chain verification (anvil). The baseline,
measured in the same run with the same settings, is the whole model (``model.onnx``) as ONE
circuit: what a node would prove without segments, against the one small segment zk-spot
asks for. Builds go to a fresh cache (cold setup) unless ``--cache`` names one.

    .venv/bin/python bench/prover_bench.py [--repeat 3] [--inner-cols 1] [--cache DIR]
        [--visibility hashed|polycommit|public]

Verify gas is measured twice: under anvil's default schedule (Osaka: EIP-7883 prices the
verifier's modexp calls higher) and under Prague's, the one issue 5's figures were set in.

Prints a table and writes bench/results/prover-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from rich.console import Console
from rich.table import Table
from web3.types import TxReceipt

from market.chain.anvil import DEV_KEYS, start_anvil
from market.chain.client import ChainClient
from prover import (
    CircuitOptions,
    ProverConfig,
    SegmentCircuit,
    VerifierTooLarge,
    build_circuit,
    build_model,
    calibration_inputs,
    prove_segment,
    run_model,
    verify_segment,
)
from prover.config import EZKL_VERSION, IO_VISIBILITIES
from worker.models import build_models, digits_test_split

ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def measure(
    circuit: SegmentCircuit, value: Any, repeat: int, client: ChainClient, prague: ChainClient
) -> dict[str, Any]:
    prove_s, proof = timed(lambda: prove_segment(circuit, value), repeat)
    verify_s, _ = timed(lambda: verify_segment(circuit, proof), repeat)
    deploy = cast(TxReceipt, client.send(data=circuit.verifier().bytecode))
    address = str(deploy["contractAddress"])
    verify = cast(TxReceipt, client.send(to=address, data=proof.calldata()))
    other = str(cast(TxReceipt, prague.send(data=circuit.verifier().bytecode))["contractAddress"])
    verify_prague = cast(TxReceipt, prague.send(to=other, data=proof.calldata()))
    return {
        "name": circuit.name,
        "logrows": circuit.logrows,
        "rows": circuit.num_rows,
        "setup_s": circuit.build_seconds["setup"],
        "build_s": sum(circuit.build_seconds.values()),
        "prove_s": prove_s,
        "verify_s": verify_s,
        "proof_bytes": len(proof.proof),
        "public_instances": len(proof.instances),
        "calldata_bytes": len(proof.calldata()),
        "pk_bytes": circuit.sizes.pk,
        "vk_bytes": circuit.sizes.vk,
        "compiled_bytes": circuit.sizes.compiled_circuit,
        "settings_bytes": circuit.sizes.settings,
        "verifier_runtime_bytes": circuit.sizes.verifier_runtime,
        "deploy_gas": int(deploy["gasUsed"]),
        "verify_gas": int(verify["gasUsed"]),
        "verify_gas_prague": int(verify_prague["gasUsed"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="prove/verify runs (median)")
    parser.add_argument("--inner-cols", type=int, default=CircuitOptions().num_inner_cols)
    parser.add_argument(
        "--visibility", choices=sorted(IO_VISIBILITIES), default=CircuitOptions().io_visibility
    )
    parser.add_argument("--cache", type=Path, help="prover cache (default: a fresh temp dir)")
    parser.add_argument("--models", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--no-whole", action="store_true", help="skip the one-circuit baseline")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 132))

    build_models(args.models, ["digits-mlp"], progress=False)
    model_dir = args.models / "digits-mlp"
    with tempfile.TemporaryDirectory(prefix="prover-bench-") as tmp:
        cache = args.cache or Path(tmp)
        config = ProverConfig(
            cache_dir=cache,
            circuit=replace(
                CircuitOptions(), num_inner_cols=args.inner_cols, io_visibility=args.visibility
            ),
        )
        image = np.asarray(digits_test_split()[0][0], np.float64) / 16

        console.print(f"building segment circuits into {cache} …")
        t = time.perf_counter()
        circuits = build_model(model_dir, config)
        segments_build_s = time.perf_counter() - t
        commit_s, run = timed(lambda: run_model(circuits, image), args.repeat)

        node = start_anvil()
        prague_node = start_anvil(extra_args=("--hardfork", "prague"))
        try:
            client = ChainClient(node.rpc_url, DEV_KEYS[0])
            prague = ChainClient(prague_node.rpc_url, DEV_KEYS[0])
            rows = [
                measure(seg, run.segment_inputs[i], args.repeat, client, prague)
                for i, seg in enumerate(circuits.segments)
            ]
            whole: dict[str, Any] | None = None
            if not args.no_whole:
                console.print("building the whole model as one circuit …")
                spec = circuits.input
                opts = config.circuit
                try:
                    full = build_circuit(
                        model_dir / "model.onnx",
                        name="whole model (one circuit)",
                        calibration=calibration_inputs(
                            spec, opts.calibration_samples, opts.calibration_seed
                        ),
                        config=config,
                    )
                    whole = measure(full, image, args.repeat, client, prague)
                except VerifierTooLarge as exc:
                    whole = {"name": "whole model (one circuit)", "error": str(exc)}
        finally:
            node.stop()
            prague_node.stop()

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "ezkl": EZKL_VERSION,
        "config": {"circuit": config.circuit.__dict__, "srs": "insecure-local"},
        "segments": rows,
        "segments_build_s": segments_build_s,
        "commit_boundary_hashes_s": commit_s,
        "whole_model": whole,
    }
    show(console, report)
    args.out.mkdir(parents=True, exist_ok=True)
    variant = (
        "" if args.inner_cols == CircuitOptions().num_inner_cols else f"-inner{args.inner_cols}"
    ) + ("" if args.visibility == CircuitOptions().io_visibility else f"-{args.visibility}")
    path = args.out / f"prover-{dt.date.today().isoformat()}{variant}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def show(console: Console, report: dict[str, Any]) -> None:
    vis = report["config"]["circuit"].get("io_visibility", "hashed")
    table = Table(
        title=f"ezkl {report['ezkl']} — digits MLP, {vis} I/O, {report['machine']['cpus']} CPUs"
    )
    columns = [
        ("circuit", "name", "{}"),
        ("logrows", "logrows", "{}"),
        ("setup s", "setup_s", "{:.2f}"),
        ("prove s", "prove_s", "{:.2f}"),
        ("verify s", "verify_s", "{:.3f}"),
        ("proof B", "proof_bytes", "{:,}"),
        ("pk MB", "pk_bytes", "{:.1f}"),
        ("verifier B", "verifier_runtime_bytes", "{:,}"),
        ("verify gas", "verify_gas", "{:,}"),
        ("… Prague", "verify_gas_prague", "{:,}"),
    ]
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title == "circuit" else "right")
    rows = list(report["segments"])
    if report["whole_model"] and "error" not in report["whole_model"]:
        rows.append(report["whole_model"])
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row[key] / 1e6 if key == "pk_bytes" else row[key]
            cells.append(fmt.format(value))
        table.add_row(*cells)
    console.print(table)
    seg = report["segments"]
    console.print(
        f"boundary hashes of one input (all segment witnesses, what a node commits): "
        f"{report['commit_boundary_hashes_s'] * 1000:.0f} ms; "
        f"slowest segment proof {max(r['prove_s'] for r in seg):.2f} s"
    )
    whole = report["whole_model"]
    if whole and "error" not in whole:
        console.print(
            f"whole model in one circuit: prove {whole['prove_s']:.2f} s = "
            f"{whole['prove_s'] / statistics.mean(r['prove_s'] for r in seg):.1f}x "
            "a spot-check proof of an average segment"
        )
    elif whole:
        console.print(f"whole model in one circuit: {whole['error']}")


if __name__ == "__main__":
    main()
