"""Generative models: SmolLM2 served with continuous batching, KV and prefix caches, streaming.

- ``build_models(out_dir, ["smollm2"])`` builds the artefacts (worker.llm.artefacts).
- ``load_llm(out_dir)`` loads them (verified) into a LoadedLLM (float64, CUDA when present).
- ``LLMEngine(llm)`` runs requests with continuous batching; ``EngineLoop(engine)`` runs it on
  a background thread with futures and token streams.
- ``GenerationRequest`` is a job's input (canonical JSON); the result is the generated token
  ids, encoded canonically (``encode_token_ids``).

See docs/llm.md.
"""

# worker.models first: its recipe table imports worker.llm.artefacts, which must not find
# this package half-initialised by an import that started here.
import worker.models  # noqa: F401  # isort: skip
from worker.llm.engine import (
    EngineConfig,
    EngineLoop,
    EngineStats,
    GenerationError,
    GenerationResult,
    LLMEngine,
    TokenCallback,
    TokenEvent,
    TokenStream,
    generate,
)
from worker.llm.errors import DuplicateRequestError, EngineClosedError, GenerativeModelError
from worker.llm.request import (
    ChatMessage,
    GenerationRequest,
    decode_token_ids,
    encode_generation_input,
    encode_token_ids,
    token_ids_hash,
)
from worker.llm.runtime import LoadedLLM, clear_llm_cache, load_llm
from worker.llm.scheduler import FCFSScheduler, FinishReason, Scheduler, SchedulerLimits

__all__ = [
    "ChatMessage",
    "DuplicateRequestError",
    "EngineClosedError",
    "EngineConfig",
    "EngineLoop",
    "EngineStats",
    "FCFSScheduler",
    "FinishReason",
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "GenerativeModelError",
    "LLMEngine",
    "LoadedLLM",
    "Scheduler",
    "SchedulerLimits",
    "TokenCallback",
    "TokenEvent",
    "TokenStream",
    "clear_llm_cache",
    "decode_token_ids",
    "encode_generation_input",
    "encode_token_ids",
    "generate",
    "load_llm",
    "token_ids_hash",
]
