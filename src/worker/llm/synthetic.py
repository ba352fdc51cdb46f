"""A generative model that is not built from artefacts: given weights, one word per token id.

For the engine's unit tests (a tiny random Llama) and for speed measurements where the real
weights cannot travel (bench/gpu_check.py: SmolLM2-135M's shape with random weights). The
tokenizer maps the word ``w<i>`` to token ``i``; the manifest names no files.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit

from worker.llm.artefacts import SMOLLM2_INPUT
from worker.llm.model import LlamaConfig, LlamaModel, check_row_invariance
from worker.llm.runtime import GenerationSpec, LoadedLLM
from worker.llm.tokenizer import TextCodec
from worker.models.manifest import ModelManifest

#: A chat template that joins the messages as "role content" words.
WORD_TEMPLATE = "{% for m in messages %}{{ m.role }} {{ m.content }} {% endfor %}assistant"


def random_weights(config: LlamaConfig, scale: float, seed: int = 0) -> LlamaModel:
    """A model of ``config``'s shape, every parameter normal with std ``scale`` (seeded)."""
    torch.manual_seed(seed)
    model = LlamaModel(config)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * scale)
    return model.eval()


def word_llm(
    name: str,
    config: LlamaConfig,
    model: LlamaModel,
    *,
    stop_token_ids: frozenset[int],
    max_prompt_tokens: int,
    max_new_tokens: int,
) -> LoadedLLM:
    """``model`` (already on its device and dtype) as a LoadedLLM with a word-per-id
    tokenizer; runs the BLAS row-invariance probe as ``load_llm`` does."""
    mode = check_row_invariance(model)
    words = {f"w{i}": i for i in range(config.vocab_size)}
    tokenizer = Tokenizer(WordLevel(words, unk_token="w0"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    manifest = ModelManifest(
        name=name,
        kind="text-generation",
        recipe_version=1,
        input=SMOLLM2_INPUT,
        output_shape=(-1,),
        output_scale=0,
        segments=(),
        files={},
        artifacts_hash="0x" + "00" * 32,
        model_id="0x" + "00" * 32,
        weights_files=(),
        onnx_file=None,
    )
    spec = GenerationSpec(WORD_TEMPLATE, {}, stop_token_ids, max_prompt_tokens, max_new_tokens)
    codec = TextCodec(tokenizer, WORD_TEMPLATE, {})
    return LoadedLLM(manifest, config, model, codec, spec, None, mode)
