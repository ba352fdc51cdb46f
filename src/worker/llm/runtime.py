"""Loading a built generative model: verified artefacts -> weights on a device, tokenizer, spec.

``load_llm(out_dir, "smollm2")`` checks the folder against its manifest (every file hash and
the model id, as ``load_model`` does), loads the cached float32 weights, widens them to
float64 (exactly) on CUDA when present, else the CPU, and caches the result per process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from worker.llm.artefacts import CONFIG_FILE, GENERATION_FILE, TOKENIZER_FILE, WEIGHTS_FILE
from worker.llm.model import LlamaConfig, LlamaModel, check_row_invariance
from worker.llm.request import (
    MAX_NEW_TOKENS,
    MAX_PROMPT_TOKENS,
    GenerationRequest,
    encode_token_ids,
    token_ids_hash,
)
from worker.llm.tokenizer import TextCodec
from worker.models.common import pick_device
from worker.models.errors import ArtifactError, InvalidInput
from worker.models.manifest import ModelManifest

log = logging.getLogger(__name__)

#: The dtype canonical results are computed in (docs/llm.md).
CANONICAL_DTYPE = torch.float64


@dataclass(frozen=True)
class GenerationSpec:
    """generation.json: how prompts are built and when generation stops."""

    chat_template: str
    template_vars: dict[str, str]
    stop_token_ids: frozenset[int]
    max_prompt_tokens: int
    max_new_tokens: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationSpec:
        limits = data["limits"]
        return cls(
            chat_template=str(data["chat_template"]),
            template_vars={str(k): str(v) for k, v in data["template_vars"].items()},
            stop_token_ids=frozenset(int(t) for t in data["stop_token_ids"]),
            max_prompt_tokens=min(int(limits["max_prompt_tokens"]), MAX_PROMPT_TOKENS),
            max_new_tokens=min(int(limits["max_new_tokens"]), MAX_NEW_TOKENS),
        )


def check_prompt(
    ids: tuple[int, ...],
    request: GenerationRequest,
    spec: GenerationSpec,
    max_positions: int,
    name: str,
) -> tuple[int, ...]:
    """``ids`` if a request with these prompt ids fits the model's limits, else InvalidInput.

    Shared by the worker (``LoadedLLM.prompt_ids``) and the node's poller, which checks a
    job before claiming it without loading the weights (``worker.generative``).
    """
    if not ids:
        raise InvalidInput("the prompt has no tokens", name)
    if len(ids) > spec.max_prompt_tokens:
        raise InvalidInput(
            f"the prompt has {len(ids)} tokens, at most {spec.max_prompt_tokens} are allowed",
            name,
        )
    if request.max_new_tokens > spec.max_new_tokens:
        raise InvalidInput(
            f"max_new_tokens {request.max_new_tokens} is over {spec.max_new_tokens}", name
        )
    if len(ids) + request.max_new_tokens > max_positions:
        raise InvalidInput(f"prompt + max_new_tokens exceed the context of {max_positions}", name)
    return ids


class LoadedLLM:
    """A verified generative model on one device: tokenizer, weights, limits.

    The model's forward pass is not thread-safe with respect to the KV caches it writes:
    run it from one engine thread (``LLMEngine``).
    """

    def __init__(
        self,
        manifest: ModelManifest,
        config: LlamaConfig,
        model: LlamaModel,
        codec: TextCodec,
        spec: GenerationSpec,
        model_dir: Path | None = None,
        batch_invariance: str = "unchecked",
    ) -> None:
        self.manifest = manifest
        #: How the matrix products are made row-invariant ("one-call", "tiled", "none");
        #: see ``model.check_row_invariance``.
        self.batch_invariance = batch_invariance
        #: The artefact folder it was loaded from (None for models made in memory).
        self.model_dir = model_dir
        self.config = config
        self.model = model
        self.codec = codec
        self.spec = spec

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def decode_input(self, data: bytes) -> GenerationRequest:
        """Parse one job's input bytes; InvalidInput(reason) if they are not a request."""
        return GenerationRequest.decode(data, self.name)

    def prompt_ids(self, request: GenerationRequest) -> tuple[int, ...]:
        """The prompt's token ids; InvalidInput if it is empty or too long."""
        return check_prompt(
            self.codec.prompt_ids(request), request, self.spec, self.config.max_positions, self.name
        )

    def text(self, token_ids: Sequence[int]) -> str:
        """The text of generated ids (special tokens such as the stop token left out)."""
        return self.codec.decode(token_ids)

    def canonical_output(self, token_ids: Sequence[int]) -> bytes:
        """The canonical result bytes: int64 token ids at scale 2^0."""
        return encode_token_ids(token_ids)

    def result_hash(self, token_ids: Sequence[int]) -> bytes:
        """keccak256 of the canonical result: the result hash committed on chain."""
        return token_ids_hash(token_ids)


_cache: dict[tuple[str, str, str, str], LoadedLLM] = {}
_cache_lock = threading.Lock()


def load_llm(
    out_dir: Path,
    name: str = "smollm2",
    device: str | torch.device | None = None,
    dtype: torch.dtype = CANONICAL_DTYPE,
) -> LoadedLLM:
    """Load ``out_dir/<name>`` (verified against its manifest) onto ``device``.

    ``device`` None means CUDA when present, else CPU. ``dtype`` other than float64 gives
    faster, non-canonical results (for measurements only). Cached per process per (folder,
    name, device, dtype); a rebuilt folder is loaded afresh. Raises UnknownModel, ArtifactError
    (missing, corrupt, or built by another recipe version).
    """
    # Imported here: worker.models' package init imports the recipes, which import this
    # package's artefacts module.
    from worker.models.build import verify_model_dir
    from worker.models.recipes import recipe

    rec = recipe(name)
    dev = pick_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    model_dir = (Path(out_dir) / name).resolve()
    key = (str(model_dir), name, str(dev), str(dtype))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and _current_model_id(model_dir) == cached.manifest.model_id:
            return cached
        manifest = verify_model_dir(model_dir, rec)
        try:
            config = LlamaConfig.from_json(json.loads((model_dir / CONFIG_FILE).read_text()))
            spec = GenerationSpec.from_json(json.loads((model_dir / GENERATION_FILE).read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(model_dir, f"unreadable config or generation spec: {exc}") from exc
        with torch.device("meta"):
            model = LlamaModel(config)
        model.load_transformers_state(load_file(str(model_dir / WEIGHTS_FILE)), assign=True)
        model = model.to(device=dev, dtype=dtype).eval()
        mode = check_row_invariance(model)
        if mode == "none":
            log.warning(
                "%s on %s/%s: the BLAS is not row-invariant; greedy ids may depend on batch "
                "companions in rare near-ties",
                name,
                dev,
                dtype,
            )
        codec = TextCodec.from_files(
            model_dir / TOKENIZER_FILE, spec.chat_template, spec.template_vars
        )
        loaded = LoadedLLM(manifest, config, model, codec, spec, model_dir, mode)
        _cache[key] = loaded
        return loaded


def clear_llm_cache() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _cache_lock:
        _cache.clear()


def _current_model_id(model_dir: Path) -> str | None:
    try:
        return ModelManifest.read(model_dir).model_id
    except (OSError, ValueError, KeyError):
        return None
