"""Generation serving figures: the continuous-batching engine against one-at-a-time generate.

For 1, 8 and 32 concurrent requests (closed loop: each client sends its next request as soon
as its previous one finished; the clients' first sends are staggered by ``--stagger-ms`` so
they do not stay in lockstep), the engine runs distinct chat prompts with the same
``max_new_tokens``, in float64 (the canonical arithmetic) and float32. It measures time to
first token (TTFT), inter-token latency (ITL), per-request and total tokens/s, p50/p95/p99.
``--burst`` levels are also run with all clients sending at once (the worst case for TTFT).

The baseline, measured in the same run on the same prompts (half before, half after the
engine runs): transformers' ``generate`` (float32, its default) one request at a time. A
one-at-a-time server serves concurrent clients by queueing, so its latencies at 8 and 32
clients are computed by replaying the measured per-request times through a FIFO queue with
that many clients (its throughput does not change with concurrency).

    .venv/bin/python bench/llm_bench.py [--levels 1,8,32] [--burst 8] [--max-new-tokens 32]
        [--engines float64:1,float32:1] [--baseline-threads 1]
        [--baseline-requests 8] [--profile]

Prints tables and writes bench/results/llm-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from worker.llm import (
    EngineConfig,
    EngineLoop,
    GenerationRequest,
    GenerationResult,
    LLMEngine,
    LoadedLLM,
    load_llm,
)
from worker.llm.kvcache import SequenceKV
from worker.llm.model import PREFILL_CHUNK, pack
from worker.llm.reference import transformers_model
from worker.models import build_models

ROOT = Path(__file__).resolve().parents[1]
TOPICS = (
    "photosynthesis", "the water cycle", "gravity", "volcanoes", "the moon", "rainbows",
    "electricity", "magnets", "the internet", "a blockchain", "bees", "the ocean tides",
    "earthquakes", "vaccines", "the heart", "black holes", "recycling", "wind turbines",
    "solar panels", "the printing press", "chess", "coffee", "bread", "glaciers", "deserts",
    "the Roman empire", "democracy", "money", "inflation", "taxes", "compound interest",
    "the stock market", "a computer", "a database", "encryption", "passwords", "email",
    "the telephone", "radio", "television", "airplanes", "rockets", "satellites", "GPS",
    "maps", "the seasons", "clouds", "snow", "thunder", "forests", "coral reefs", "whales",
    "dinosaurs", "fossils", "DNA", "cells", "bacteria", "sleep", "dreams", "music", "poetry",
    "painting", "football", "the Olympic games",
)  # fmt: skip


def prompts(count: int) -> list[str]:
    return [f"Explain {TOPICS[i % len(TOPICS)]} to a child." for i in range(count)]


@dataclass
class Timing:
    """One request's clock readings (time.perf_counter seconds)."""

    arrival: float
    tokens: list[float] = field(default_factory=list)
    finish: float = 0.0

    @property
    def ttft(self) -> float:
        return self.tokens[0] - self.arrival

    @property
    def itl(self) -> list[float]:
        return [b - a for a, b in zip(self.tokens, self.tokens[1:], strict=False)]

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / (self.finish - self.arrival)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summarise(name: str, concurrency: int, timings: list[Timing], wall: float) -> dict[str, Any]:
    ttft = [t.ttft for t in timings]
    itl = [x for t in timings for x in t.itl]
    rates = [t.tokens_per_s for t in timings]
    tokens = sum(len(t.tokens) for t in timings)
    return {
        "system": name,
        "concurrency": concurrency,
        "requests": len(timings),
        "tokens": tokens,
        "wall_s": wall,
        "throughput_tok_s": tokens / wall,
        "per_request_tok_s": {"p50": pct(rates, 50), "p5": pct(rates, 5)},
        "ttft_s": {f"p{q}": pct(ttft, q) for q in (50, 95, 99)},
        "itl_s": {f"p{q}": pct(itl, q) for q in (50, 95, 99)},
    }


# --- baseline: transformers generate, one request at a time ---------------------------------


class _Clock:
    """A transformers streamer that notes when each new token arrives."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first passes the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run_baseline(
    llm: LoadedLLM, questions: list[str], max_new_tokens: int
) -> tuple[list[Timing], list[tuple[int, ...]]]:
    model = transformers_model(llm, torch.float32)
    stops = sorted(llm.spec.stop_token_ids)
    timings, outputs = [], []

    def one(question: str) -> tuple[Timing, tuple[int, ...]]:
        ids = llm.prompt_ids(GenerationRequest.ask(question))
        clock = _Clock()
        timing = Timing(arrival=time.perf_counter())
        tensor = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(
                tensor,
                attention_mask=torch.ones_like(tensor),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=stops[0],
                streamer=clock,
            )
        timing.finish = time.perf_counter()
        timing.tokens = clock.times
        return timing, tuple(int(t) for t in out[0, len(ids) :])

    one("Say hello.")  # warm-up
    for question in questions:
        timing, ids = one(question)
        timings.append(timing)
        outputs.append(ids)
    return timings, outputs


def queue_replay(service: list[Timing], clients: int, requests: int) -> list[Timing]:
    """Latencies a one-at-a-time FIFO server would give ``clients`` closed-loop clients.

    Request k arrives when request k - clients finished (the first ``clients`` at 0) and is
    served after request k - 1; its service is measured request ``k mod len(service)``.
    """
    finish: list[float] = []
    out = []
    for k in range(requests):
        s = service[k % len(service)]
        arrival = finish[k - clients] if k >= clients else 0.0
        start = max(arrival, finish[-1] if finish else 0.0)
        shift = start - s.arrival
        timing = Timing(arrival=arrival, tokens=[t + shift for t in s.tokens])
        timing.finish = s.finish + shift
        finish.append(timing.finish)
        out.append(timing)
    return out


# --- the engine, closed loop ----------------------------------------------------------------


def run_engine(
    llm: LoadedLLM,
    config: EngineConfig,
    questions: list[str],
    clients: int,
    max_new: int,
    stagger_s: float,
) -> tuple[list[Timing], dict[str, GenerationResult], dict[str, Any], float]:
    engine = LLMEngine(llm, config)
    timings: dict[str, Timing] = {}
    results: dict[str, GenerationResult] = {}
    lock = threading.Lock()
    done = threading.Event()
    pending = iter(enumerate(questions))

    def on_token(request_id: str, _token: int, _piece: str) -> None:
        timings[request_id].tokens.append(time.perf_counter())

    with EngineLoop(engine) as loop:
        # warm-up: one request, so the default system prompt is in the prefix cache, as on
        # any server that has answered one chat request
        loop.submit("warm-up", GenerationRequest.ask("Say hello.", max_new_tokens=4)).result()
        before = engine.stats

        def send_next() -> None:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            index, question = item
            request_id = f"r{index}"
            timings[request_id] = Timing(arrival=time.perf_counter())
            future = loop.submit(
                request_id, GenerationRequest.ask(question, max_new_tokens=max_new), on_token
            )
            future.add_done_callback(lambda f: finished(request_id, f.result()))

        def finished(request_id: str, result: GenerationResult) -> None:
            timings[request_id].finish = time.perf_counter()
            with lock:
                results[request_id] = result
                complete = len(results) == len(questions)
            if complete:
                done.set()
            else:
                send_next()

        started = time.perf_counter()
        for client in range(min(clients, len(questions))):
            # Staggered starts spread the clients' phases (each resends when its request
            # ends, so they stay spread); stagger 0 is a burst of ``clients`` at once.
            time.sleep(max(0.0, started + client * stagger_s - time.perf_counter()))
            send_next()
        done.wait()
        wall = time.perf_counter() - started
    after = engine.stats
    steps = after.steps - before.steps
    forward = after.forward_seconds - before.forward_seconds
    sampling = after.sampling_seconds - before.sampling_seconds
    step_s = after.step_seconds - before.step_seconds
    sizes = {
        k: v - before.batch_sizes.get(k, 0)
        for k, v in after.batch_sizes.items()
        if v - before.batch_sizes.get(k, 0)
    }
    profile = {
        "steps": steps,
        "mean_batch": sum(k * v for k, v in sizes.items()) / max(steps, 1),
        "prefill_tokens": after.prefill_tokens - before.prefill_tokens,
        "decode_tokens": after.decode_tokens - before.decode_tokens,
        "prefix_cache_hit_tokens": after.prefix_cache.hit_tokens - before.prefix_cache.hit_tokens,
        "forward_s": forward,
        "sampling_s": sampling,
        "engine_other_s": step_s - forward - sampling,
        "idle_s": wall - step_s,
        "wall_s": wall,
    }
    ordered = [timings[f"r{i}"] for i in range(len(questions))]
    return ordered, results, profile, wall


def op_profile(llm: LoadedLLM, batch: int, context: int) -> list[dict[str, Any]]:
    """Where one decode step's time goes at ``batch`` sequences (torch profiler, top ops)."""
    cfg = llm.config
    kvs = [
        SequenceKV(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, context + 1, llm.dtype,
                   llm.device)
        for _ in range(batch)
    ]  # fmt: skip
    for kv in kvs:
        kv.length = context
    batch_in = pack([((100,), context, kv) for kv in kvs], PREFILL_CHUNK, llm.device)
    with torch.inference_mode():
        llm.model(batch_in)
        with torch.profiler.profile() as prof:
            llm.model(batch_in)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
        }
        for e in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--burst", default="8", help="levels also run as one burst")
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument(
        "--baseline-threads", type=int, default=1, help="intra-op threads for generate"
    )
    parser.add_argument(
        "--stagger-ms", type=float, default=100.0, help="gap between the clients' first sends"
    )
    parser.add_argument(
        "--engines",
        default="float64:1,float32:1",
        help="engine runs as dtype:threads (float64 is the canonical dtype)",
    )
    parser.add_argument("--profile", action="store_true", help="torch profile of a decode step")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    console = Console(width=160)
    torch.set_num_threads(args.baseline_threads)
    load_start = os.getloadavg()
    build_models(args.artifacts, ["smollm2"], progress=True)
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    engines = [
        (name, int(threads))
        for name, threads in (e.strip().split(":") for e in args.engines.split(","))
    ]
    t = time.perf_counter()
    llms = {name: load_llm(args.artifacts, dtype=dtypes[name]) for name, _ in engines}
    load_s = (time.perf_counter() - t) / len(llms)
    llm = next(iter(llms.values()))
    levels = [int(x) for x in args.levels.split(",")]
    burst = [int(x) for x in args.burst.split(",") if x]
    max_new = args.max_new_tokens

    # The baseline runs in two halves, before and after the engine runs, so a change in the
    # machine's load during the run weighs on both sides.
    console.print(f"baseline: transformers generate (float32), {args.baseline_requests} requests")
    base_questions = prompts(args.baseline_requests)
    half = len(base_questions) // 2
    base_timings, base_ids = run_baseline(llm, base_questions[:half], max_new)

    engine_rows, profiles, agreement, modes = [], {}, {}, {}
    results_by: dict[str, dict[int, dict[str, GenerationResult]]] = {}
    for dtype_name, threads in engines:
        model = llms[dtype_name]
        modes[dtype_name] = model.batch_invariance
        name = f"{dtype_name}, {threads} thr"
        torch.set_num_threads(threads)
        runs = [(c, args.stagger_ms / 1e3) for c in levels] + [(c, 0.0) for c in burst]
        for clients, stagger in runs:
            count = max(2 * clients, 6)
            mode = "burst" if stagger == 0 and clients > 1 else "closed loop"
            console.print(f"engine ({name}): {clients} concurrent ({mode}), {count} requests")
            timings, results, profile, wall = run_engine(
                model,
                EngineConfig(max_num_seqs=max(clients, 1)),
                prompts(count),
                clients,
                max_new,
                stagger,
            )
            label = f"engine {name}" + (", burst" if mode == "burst" else "")
            engine_rows.append(summarise(label, clients, timings, wall))
            key = f"{name}@{clients}" + ("-burst" if mode == "burst" else "")
            profiles[key] = profile
            if mode != "burst":
                results_by.setdefault(name, {})[clients] = results

    torch.set_num_threads(args.baseline_threads)
    more_timings, more_ids = run_baseline(llm, base_questions[half:], max_new)
    base_timings += more_timings
    base_ids += more_ids
    base_wall = sum(t.finish - t.arrival for t in base_timings)
    rows = [summarise("generate, 1 at a time", 1, base_timings, base_wall)]
    rows[0]["measured"] = True
    rows[0]["halves_tok_s"] = [
        sum(len(t.tokens) for t in part) / sum(t.finish - t.arrival for t in part)
        for part in (base_timings[:half], base_timings[half:])
    ]
    for clients in levels:
        if clients > 1:
            count = max(2 * clients, 6)
            replay = queue_replay(base_timings, clients, count)
            row = summarise("generate, 1 at a time", clients, replay, replay[-1].finish)
            row["measured"] = False
            rows.append(row)
    for name, by_level in results_by.items():
        for clients, results in by_level.items():
            n = min(len(results), len(base_ids))
            same = sum(results[f"r{i}"].token_ids == base_ids[i] for i in range(n))
            agreement[f"{name}@{clients}"] = f"{same}/{n}"
    base_tput = rows[0]["throughput_tok_s"]
    for row in engine_rows:
        row["speedup_vs_baseline"] = row["throughput_tok_s"] / base_tput

    table = Table(
        title=f"SmolLM2-135M, max_new_tokens={max_new}; generate with "
        f"{args.baseline_threads} thread(s)"
    )
    for col in ("system", "conc.", "req", "tokens", "tok/s total", "x base", "tok/s/req p50",
                "TTFT p50/p95/p99 s", "ITL p50/p95/p99 ms"):  # fmt: skip
        table.add_column(col, justify="right" if col != "system" else "left")
    for row in sorted(rows + engine_rows, key=lambda r: (r["concurrency"], r["system"])):
        name = row["system"] + ("" if row.get("measured", True) else " (queue replay)")
        table.add_row(
            name,
            str(row["concurrency"]),
            str(row["requests"]),
            str(row["tokens"]),
            f"{row['throughput_tok_s']:.1f}",
            f"{row.get('speedup_vs_baseline', 1.0):.2f}" if "engine" in row["system"] else "1",
            f"{row['per_request_tok_s']['p50']:.1f}",
            "/".join(f"{row['ttft_s'][k]:.2f}" for k in ("p50", "p95", "p99")),
            "/".join(f"{row['itl_s'][k] * 1e3:.0f}" for k in ("p50", "p95", "p99")),
        )
    console.print(table)
    prof_table = Table(title="engine time breakdown (s)")
    for col in ("engine", "steps", "mean batch", "prefill tok", "cached tok", "forward",
                "sampling", "other", "idle"):  # fmt: skip
        prof_table.add_column(col, justify="right")
    for key, p in profiles.items():
        prof_table.add_row(
            key, str(p["steps"]), f"{p['mean_batch']:.1f}", str(p["prefill_tokens"]),
            str(p["prefix_cache_hit_tokens"]), f"{p['forward_s']:.1f}", f"{p['sampling_s']:.2f}",
            f"{p['engine_other_s']:.2f}", f"{p['idle_s']:.2f}",
        )  # fmt: skip
    console.print(prof_table)
    console.print(f"greedy ids equal to the float32 baseline's: {agreement}")
    console.print(f"matrix products: {modes} (model.check_row_invariance)")
    console.print(f"baseline tok/s, first and second half: {rows[0]['halves_tok_s']}")

    ops = op_profile(llm, max(levels), 48) if args.profile else []
    for op in ops:
        console.print(f"  {op['op']:<24} {op['calls']:>6} calls {op['self_ms']:8.1f} ms "
                      f"{op['share']:6.1%}")  # fmt: skip
    targets: dict[str, bool] = {}
    for row in engine_rows:
        tag = row["system"].removeprefix("engine ")
        if "burst" in tag:
            continue
        if row["concurrency"] == 32:
            targets[f"{tag}: throughput at 32 >= 4x baseline"] = row["speedup_vs_baseline"] >= 4
        if row["concurrency"] == 8:
            targets[f"{tag}: TTFT p95 at 8 < 1 s"] = row["ttft_s"]["p95"] < 1.0
    console.print(f"targets: {targets}")

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": llm.name,
        "model_id": llm.manifest.model_id,
        "engines": [f"{d}:{t}" for d, t in engines],
        "canonical_dtype": "float64",
        "batch_invariance": modes,
        "baseline": "transformers generate, float32, one request at a time; rows with "
        "measured=false replay its measured service times through a FIFO queue",
        "max_new_tokens": max_new,
        "baseline_threads": args.baseline_threads,
        "load_s": load_s,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "device": str(llm.device),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "rows": rows + engine_rows,
        "engine_profile": profiles,
        "decode_step_ops": ops,
        "greedy_agreement_with_float32_baseline": agreement,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"llm-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
