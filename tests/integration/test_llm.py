"""SmolLM2-135M through the LLM engine: agreement with transformers, batch invariance,
streaming, prefix caching, and a right answer.

The model is built once per code version into a cache folder under the system temporary
directory (the build dequantizes the GGUF: ~1 minute); the engine runs it in float64.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import transformers

from market.canonical import decode_tensor, keccak
from worker.llm import (
    EngineConfig,
    EngineLoop,
    FinishReason,
    GenerationRequest,
    GenerativeModelError,
    LLMEngine,
    LoadedLLM,
    load_llm,
)
from worker.llm.artefacts import SEGMENT_FILE, WEIGHTS_FILE, package_gguf
from worker.llm.kvcache import SequenceKV
from worker.llm.model import PREFILL_CHUNK, check_row_invariance, pack
from worker.llm.reference import transformers_greedy, transformers_model
from worker.models import build_models
from worker.models.errors import InvalidInput
from worker.models.manifest import ModelManifest, compute_model_id
from worker.models.recipes import recipe

pytestmark = pytest.mark.integration

SRC = Path(__file__).parents[2] / "src/worker/llm"
NEW_TOKENS = 16
QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write one sentence about the sea.",
    "What is 2 + 2?",
    "Explain in a few words what a blockchain is, and why people might use one for payments.",
    "Hi",
]


def _code_key() -> str:
    parts = b"".join((SRC / f).read_bytes() for f in ("artefacts.py", "request.py"))
    versions = f"{torch.__version__}|{transformers.__version__}".encode()
    return keccak(parts + versions).hex()[:16]


@pytest.fixture(scope="module")
def built() -> tuple[Path, ModelManifest]:
    out = Path(tempfile.gettempdir()) / f"verimarket-test-llm-{_code_key()}"
    for stale in out.parent.glob("verimarket-test-llm-*"):
        if stale != out:  # built by older code; 640 MB each
            shutil.rmtree(stale, ignore_errors=True)
    (manifest,) = build_models(out, ["smollm2"], progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def artifacts(built: tuple[Path, ModelManifest]) -> Path:
    return built[0]


@pytest.fixture(scope="module")
def manifest(built: tuple[Path, ModelManifest]) -> ModelManifest:
    return built[1]


@pytest.fixture(scope="module")
def llm(artifacts: Path) -> Iterator[LoadedLLM]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker runs (docs/models.md)
    try:
        yield load_llm(artifacts)
    finally:
        torch.set_num_threads(threads)


def ask(question: str, **options: int | float) -> GenerationRequest:
    options.setdefault("max_new_tokens", NEW_TOKENS)
    return GenerationRequest.ask(question, **options)


def transformers_ids(llm: LoadedLLM, prompts: list[tuple[int, ...]]) -> list[list[int]]:
    """transformers' own Llama and ``generate`` (greedy, float64) on the same weights."""
    model = transformers_model(llm, torch.float64)
    stops = sorted(llm.spec.stop_token_ids)
    return [transformers_greedy(model, ids, NEW_TOKENS, stops) for ids in prompts]


# --- artefacts ------------------------------------------------------------------------------


def test_artefacts_and_ids(artifacts: Path, manifest: ModelManifest) -> None:
    assert manifest.kind == "text-generation"
    assert manifest.output_scale == 0
    (segment,) = manifest.segments
    assert segment.file == SEGMENT_FILE
    assert segment.segment_hash == "0x" + keccak(package_gguf().read_bytes()).hex()
    assert manifest.model_id == compute_model_id(
        manifest.artifacts_hash, manifest.output_scale, manifest.segments
    )
    assert set(manifest.files) == {
        SEGMENT_FILE,
        WEIGHTS_FILE,
        "config.json",
        "generation.json",
        "tokenizer.json",
        "spec.json",
    }
    assert manifest.metrics["transformers_float32_logits_max_abs_diff"] < 1e-3


def test_classifier_runtime_refuses_it(artifacts: Path) -> None:
    # load_model verifies the folder (hashing 640 MB), then calls the recipe's load_module
    with pytest.raises(GenerativeModelError, match="load_llm"):
        recipe("smollm2").load_module(artifacts / "smollm2", [WEIGHTS_FILE])


# --- generation -----------------------------------------------------------------------------


def test_the_capital_of_france(llm: LoadedLLM) -> None:
    result = LLMEngine(llm).run_to_completion({"q": ask(QUESTIONS[0])})["q"]
    assert "Paris" in result.text
    assert result.finish_reason is FinishReason.STOP
    assert result.token_ids[-1] in llm.spec.stop_token_ids
    assert result.text == llm.text(result.token_ids)


def test_engine_greedy_equals_transformers_generate(llm: LoadedLLM) -> None:
    questions = QUESTIONS[:3]
    engine = LLMEngine(llm)
    ours = engine.run_to_completion({q: ask(q) for q in questions})
    prompts = [ours[q].prompt_ids for q in questions]
    expected = transformers_ids(llm, prompts)
    assert [list(ours[q].token_ids) for q in questions] == expected


def test_greedy_ids_do_not_depend_on_batch_companions(llm: LoadedLLM) -> None:
    config = EngineConfig(prefix_cache_tokens=0)  # every prompt computed in full, both ways
    alone = {
        q: LLMEngine(llm, config).run_to_completion({"a": ask(q)})["a"].token_ids for q in QUESTIONS
    }
    engine = LLMEngine(llm, config)
    for q in QUESTIONS[:4]:
        engine.add_request(q, ask(q))
    engine.step()
    engine.step()
    for q in QUESTIONS[4:]:  # join a running batch, at other lengths
        engine.add_request(q, ask(q))
    together = {}
    while engine.has_unfinished_requests():
        together.update({r.request_id: r.token_ids for r in engine.step()})
    assert together == alone
    assert max(engine.stats.batch_sizes) == len(QUESTIONS)


def test_float32_logits_are_bit_identical_alone_and_batched(llm: LoadedLLM) -> None:
    """The batch-invariant scheme makes even float32 exact (no float64 margin needed)."""
    model = copy.deepcopy(llm.model).float()
    assert check_row_invariance(model) in ("one-call", "tiled")
    prompts = [llm.prompt_ids(ask(q)) for q in QUESTIONS]

    def kv(length: int) -> SequenceKV:
        cfg = llm.config
        return SequenceKV(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, length,
                          torch.float32, llm.device)  # fmt: skip

    with torch.inference_mode():
        alone = [model(pack([(p, 0, kv(len(p)))], PREFILL_CHUNK, llm.device))[0] for p in prompts]
        together = model(pack([(p, 0, kv(len(p))) for p in prompts], PREFILL_CHUNK, llm.device))
    for row, logits in enumerate(alone):
        assert torch.equal(together[row], logits)


def test_prefix_cache_hits_give_identical_ids(llm: LoadedLLM) -> None:
    reference = LLMEngine(llm, EngineConfig(prefix_cache_tokens=0))
    engine = LLMEngine(llm)
    first = engine.run_to_completion({"1": ask(QUESTIONS[1])})["1"]
    again = engine.run_to_completion({"2": ask(QUESTIONS[1])})["2"]
    other = engine.run_to_completion({"3": ask(QUESTIONS[3])})["3"]
    assert first.cached_prompt_tokens == 0
    # default system prompt + "<|im_start|>user\n" = 24 tokens = 3 blocks of 8
    assert other.cached_prompt_tokens == 24
    assert again.cached_prompt_tokens >= 24
    assert again.token_ids == first.token_ids
    assert other.token_ids == reference.run_to_completion({"x": ask(QUESTIONS[3])})["x"].token_ids


def test_streaming_delivers_tokens_in_order(llm: LoadedLLM) -> None:
    with EngineLoop(LLMEngine(llm)) as loop:
        companion = loop.submit("companion", ask(QUESTIONS[4]))
        stream = loop.stream("streamed", ask(QUESTIONS[2]))
        events = list(stream)
        result = stream.result(timeout=120)
        companion.result(timeout=120)
    assert [e.index for e in events] == list(range(len(result.token_ids)))
    assert [e.token_id for e in events] == list(result.token_ids)
    assert "".join(e.text for e in events) == result.text
    assert sum(1 for e in events if e.text) >= len(events) - 2


def test_seeded_sampling_is_reproducible(llm: LoadedLLM) -> None:
    sampled = ask(QUESTIONS[2], temperature=0.9, seed=7)
    first = LLMEngine(llm).run_to_completion({"s": sampled})["s"]
    batched = LLMEngine(llm).run_to_completion({"s": sampled, "g": ask(QUESTIONS[1])})["s"]
    assert batched.token_ids == first.token_ids
    other = LLMEngine(llm).run_to_completion({"s": ask(QUESTIONS[2], temperature=0.9, seed=8)})
    assert other["s"].token_ids != first.token_ids


def test_job_bytes_in_result_hash_out(llm: LoadedLLM) -> None:
    data = GenerationRequest.ask(QUESTIONS[0], max_new_tokens=12).encode()
    request = llm.decode_input(data)
    result = LLMEngine(llm).run_to_completion({"job-1": request})["job-1"]
    output = result.canonical_output()
    assert decode_tensor(output).values.tolist() == list(result.token_ids)
    assert result.result_hash() == keccak(output) == llm.result_hash(result.token_ids)


def test_prompt_over_the_limit_is_invalid_input(llm: LoadedLLM) -> None:
    with pytest.raises(InvalidInput, match="at most 512 are allowed"):
        LLMEngine(llm).add_request("long", ask("word " * 600))
