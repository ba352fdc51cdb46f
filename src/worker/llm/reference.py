"""transformers' own Llama on the same weights: the reference the engine is checked against.

Used by the integration tests (greedy ids must equal transformers' ``generate``) and by the
benchmark's baseline (``generate`` one request at a time). Not used when serving.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors.torch import load_file

from worker.llm.artefacts import WEIGHTS_FILE
from worker.llm.runtime import LoadedLLM


def transformers_model(llm: LoadedLLM, dtype: torch.dtype = torch.float32) -> Any:
    """A ``transformers.LlamaForCausalLM`` with ``llm``'s weights, in ``dtype``, on its device."""
    import transformers

    cfg = llm.config
    stops = sorted(llm.spec.stop_token_ids)
    hf_config = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=cfg.tie_word_embeddings,
        eos_token_id=stops,
        pad_token_id=stops[0],
    )
    model: Any = transformers.LlamaForCausalLM(hf_config)
    if llm.model_dir is None:
        raise ValueError("the model was not loaded from an artefact folder")
    state = load_file(str(llm.model_dir / WEIGHTS_FILE))
    model.load_state_dict(state, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model = model.to(device=llm.device, dtype=dtype)
    model.eval()
    return model


def transformers_greedy(
    model: Any, prompt_ids: tuple[int, ...], max_new_tokens: int, stop_ids: list[int]
) -> list[int]:
    """Greedy ``generate`` for one prompt; the new token ids (stop token included)."""
    ids = torch.tensor([prompt_ids], device=model.device)
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=stop_ids[0],
        )
    return [int(t) for t in out[0, len(prompt_ids) :]]
