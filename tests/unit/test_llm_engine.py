"""The engine on a tiny random Llama (2 layers, vocabulary 48): KV cache, batching, streaming.

Fast stand-ins for the real-model checks in tests/integration/test_llm.py: the same code
paths (packed batches, per-sequence attention, prefix blocks, callbacks) on a model small
enough to run hundreds of steps in a second.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from worker.llm import (
    DuplicateRequestError,
    EngineClosedError,
    EngineConfig,
    EngineLoop,
    FinishReason,
    GenerationRequest,
    LLMEngine,
    LoadedLLM,
)
from worker.llm.kvcache import SequenceKV
from worker.llm.model import PREFILL_CHUNK, LlamaConfig, pack
from worker.llm.synthetic import random_weights, word_llm
from worker.models.errors import InvalidInput

VOCAB = 48
STOP = 47
CFG = LlamaConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_positions=256,
    tie_word_embeddings=True,
)


def tiny_llm(max_prompt_tokens: int = 64) -> LoadedLLM:
    model = random_weights(CFG, 0.5).double()
    return word_llm(
        "tiny",
        CFG,
        model,
        stop_token_ids=frozenset({STOP}),
        max_prompt_tokens=max_prompt_tokens,
        max_new_tokens=256,
    )


@pytest.fixture(scope="module")
def llm() -> LoadedLLM:
    return tiny_llm()


def prompt(*ids: int) -> GenerationRequest:
    return GenerationRequest.completion(" ".join(f"w{i}" for i in ids), max_new_tokens=12)


def naive_greedy(llm: LoadedLLM, ids: list[int], steps: int) -> list[int]:
    """Greedy decoding that re-runs the whole sequence every step (no cache reuse)."""
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(steps):
            seq = ids + out
            kv = SequenceKV(
                CFG.num_layers,
                CFG.num_kv_heads,
                CFG.head_dim,
                len(seq),
                torch.float64,
                torch.device("cpu"),
            )
            logits = llm.model(pack([(seq, 0, kv)], PREFILL_CHUNK, torch.device("cpu")))
            out.append(int(logits[0].argmax()))
            if out[-1] == STOP:
                break
    return out


PROMPTS = [
    [5, 6, 7],
    [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
    [20],
    [21, 22, 23, 24, 25, 26],
    [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 4, 5, 6],
]


def test_kv_cached_decoding_equals_full_recomputation(llm: LoadedLLM) -> None:
    engine = LLMEngine(llm, EngineConfig(prefix_cache_tokens=0))
    for ids in PROMPTS:
        result = engine.run_to_completion({"r": prompt(*ids)})["r"]
        assert list(result.token_ids) == naive_greedy(llm, ids, 12)


def test_greedy_ids_do_not_depend_on_batch_companions(llm: LoadedLLM) -> None:
    alone = {
        i: LLMEngine(llm).run_to_completion({"r": prompt(*ids)})["r"].token_ids
        for i, ids in enumerate(PROMPTS)
    }
    together = LLMEngine(llm).run_to_completion(
        {str(i): prompt(*ids) for i, ids in enumerate(PROMPTS)}
    )
    assert {i: together[str(i)].token_ids for i in alone} == alone


def test_requests_join_between_decode_steps(llm: LoadedLLM) -> None:
    engine = LLMEngine(llm, EngineConfig(prefix_cache_tokens=0))
    engine.add_request("first", prompt(*PROMPTS[1]))
    engine.step()
    engine.step()
    engine.add_request("late", prompt(*PROMPTS[3]))
    output = []
    while engine.has_unfinished_requests():
        output.extend(engine.step())
    results = {r.request_id: r for r in output}
    assert engine.stats.batch_sizes.get(2, 0) > 0  # they ran together
    alone = LLMEngine(llm).run_to_completion({"x": prompt(*PROMPTS[3])})["x"]
    assert results["late"].token_ids == alone.token_ids


def test_prefix_cache_hit_gives_the_same_ids(llm: LoadedLLM) -> None:
    engine = LLMEngine(llm)
    shared = list(range(20, 37))  # 17 tokens: two whole blocks of 8
    cold = engine.run_to_completion({"a": prompt(*shared, 5)})["a"]
    warm = engine.run_to_completion({"b": prompt(*shared, 5)})["b"]
    other = engine.run_to_completion({"c": prompt(*shared, 9, 9)})["c"]
    assert cold.cached_prompt_tokens == 0
    assert warm.cached_prompt_tokens == 16
    assert other.cached_prompt_tokens == 16
    assert warm.token_ids == cold.token_ids
    fresh = LLMEngine(llm, EngineConfig(prefix_cache_tokens=0))
    assert other.token_ids == fresh.run_to_completion({"c": prompt(*shared, 9, 9)})["c"].token_ids
    assert engine.stats.prefix_cache.hit_tokens == 32


def test_block_size_must_be_a_multiple_of_the_prefill_chunk() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        EngineConfig(prefix_block_size=12)


# --- bit-level batch invariance of the model itself ---------------------------------------


def _new_kv(capacity: int = 64) -> SequenceKV:
    return SequenceKV(
        CFG.num_layers, CFG.num_kv_heads, CFG.head_dim, capacity, torch.float64,
        torch.device("cpu"),
    )  # fmt: skip


@pytest.mark.parametrize("tiled", [False, True])
def test_logits_are_bit_identical_alone_and_in_any_batch(llm: LoadedLLM, tiled: bool) -> None:
    llm.model.tiled = tiled
    try:
        cpu = torch.device("cpu")
        alone = []
        with torch.inference_mode():
            for ids in PROMPTS:
                alone.append(llm.model(pack([(ids, 0, _new_kv())], PREFILL_CHUNK, cpu))[0])
            for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [3, 1]):
                batch = pack([(PROMPTS[i], 0, _new_kv()) for i in order], PREFILL_CHUNK, cpu)
                logits = llm.model(batch)
                for row, i in enumerate(order):
                    assert torch.equal(logits[row], alone[i])
    finally:
        llm.model.tiled = llm.batch_invariance != "one-call"


def test_cached_blocks_are_bit_identical_to_recomputed_ones(llm: LoadedLLM) -> None:
    cpu = torch.device("cpu")
    shared = list(range(20, 37))
    first, second = _new_kv(), _new_kv()
    with torch.inference_mode():
        llm.model(pack([([*shared, 5, 6, 7], 0, first)], PREFILL_CHUNK, cpu))
        llm.model(pack([([9, 9], 0, _new_kv()), ([*shared, 40], 0, second)], PREFILL_CHUNK, cpu))
    assert torch.equal(first.data[:, :, :, :16], second.data[:, :, :, :16])


def test_this_machine_needs_no_fallback(llm: LoadedLLM) -> None:
    # MKL on x86 is row-invariant at padded row counts; elsewhere "tiled" is also exact.
    assert llm.batch_invariance in ("one-call", "tiled")


def test_streaming_delivers_each_token_in_order(llm: LoadedLLM) -> None:
    seen: dict[str, list[tuple[int, str]]] = {}

    def on_token(request_id: str, token_id: int, piece: str) -> None:
        seen.setdefault(request_id, []).append((token_id, piece))

    engine = LLMEngine(llm)
    results = engine.run_to_completion(
        {str(i): prompt(*ids) for i, ids in enumerate(PROMPTS)}, on_token
    )
    for request_id, result in results.items():
        assert [t for t, _ in seen[request_id]] == list(result.token_ids)
        assert "".join(p for _, p in seen[request_id]) == result.text
        assert len(result.token_times) == len(result.token_ids)
        assert result.ttft is not None and result.ttft >= 0


def test_a_failing_callback_does_not_stop_the_batch(llm: LoadedLLM) -> None:
    def broken(_r: str, _t: int, _p: str) -> None:
        raise RuntimeError("client went away")

    engine = LLMEngine(llm)
    engine.add_request("bad", prompt(*PROMPTS[0]), broken)
    engine.add_request("good", prompt(*PROMPTS[1]))
    results = {}
    while engine.has_unfinished_requests():
        results.update({r.request_id: r for r in engine.step()})
    assert results["bad"].error is None
    assert len(results["good"].token_ids) > 0


def test_abort_stops_one_request_only(llm: LoadedLLM) -> None:
    engine = LLMEngine(llm)
    engine.add_request("stay", prompt(*PROMPTS[1]))
    engine.add_request("go", prompt(*PROMPTS[3]))
    engine.step()
    engine.abort_request("go")
    results = {}
    while engine.has_unfinished_requests():
        results.update({r.request_id: r for r in engine.step()})
    assert results["go"].finish_reason is FinishReason.ABORT
    assert len(results["go"].token_ids) == 1
    assert results["stay"].finish_reason in (FinishReason.LENGTH, FinishReason.STOP)


def test_seeded_sampling_is_reproducible_and_batch_independent(llm: LoadedLLM) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return GenerationRequest.completion(
            "w5 w6 w7", max_new_tokens=12, temperature=1.0, seed=seed
        )

    alone = LLMEngine(llm).run_to_completion({"s": sampled(1)})["s"].token_ids
    mixed = LLMEngine(llm).run_to_completion(
        {"s": sampled(1), "t": sampled(2), "g": prompt(*PROMPTS[1])}
    )
    assert mixed["s"].token_ids == alone
    assert mixed["t"].token_ids != alone


def test_bad_requests_fail_in_the_caller() -> None:
    llm = tiny_llm(max_prompt_tokens=4)
    engine = LLMEngine(llm)
    with pytest.raises(InvalidInput, match="5 tokens, at most 4"):
        engine.add_request("long", prompt(1, 2, 3, 4, 5))
    engine.add_request("ok", prompt(1, 2))
    with pytest.raises(DuplicateRequestError):
        engine.add_request("ok", prompt(1, 2))
    small = LLMEngine(llm, EngineConfig(kv_cache_tokens=8))
    with pytest.raises(InvalidInput, match="needs 13 KV cache tokens"):
        small.add_request("big", prompt(1, 2))


def test_engine_loop_futures_and_streams(llm: LoadedLLM) -> None:
    with EngineLoop(LLMEngine(llm)) as loop:
        futures = {str(i): loop.submit(str(i), prompt(*ids)) for i, ids in enumerate(PROMPTS)}
        stream = loop.stream("streamed", prompt(*PROMPTS[0]))
        events = list(stream)
        result = stream.result(timeout=30)
        assert [e.token_id for e in events] == list(result.token_ids)
        assert [e.index for e in events] == list(range(len(events)))
        for request_id, future in futures.items():
            assert future.result(timeout=30).request_id == request_id

        async def consume() -> list[int]:
            return [e.token_id async for e in loop.astream("async", prompt(*PROMPTS[0]))]

        assert asyncio.run(consume()) == list(result.token_ids)
    with pytest.raises(EngineClosedError):
        loop.submit("late", prompt(1))


def test_closing_the_loop_fails_unfinished_requests(llm: LoadedLLM) -> None:
    started = threading.Event()
    loop = EngineLoop(LLMEngine(llm))
    future = loop.submit(
        "slow",
        GenerationRequest.completion("w5", max_new_tokens=200),
        lambda *_: started.set(),
    )
    started.wait(10)
    loop.close()
    assert future.done()
    if not future.exception():  # it may have finished in the meantime
        return
    assert isinstance(future.exception(), EngineClosedError)
