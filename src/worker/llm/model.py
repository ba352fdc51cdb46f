"""The Llama decoder (SmolLM2) written out, run over packed batches with per-sequence KV caches.

As with MiniLM (worker/models/minilm.py), the network is spelled out here rather than taken
from transformers, so what a node computes is pinned by this file and the weights. A forward
pass takes a *packed* batch: the new tokens of every scheduled sequence laid end to end in one
(T, hidden) matrix, with no padding between sequences. Projections and the MLP run on all
rows at once (that is where batching pays); attention runs sequence by sequence against that
sequence's own KV cache.

A sequence's numbers are made bit-for-bit independent of its companions (batch invariance):

- every row-wise operation computes a row from that row alone;
- the matrix products are called with a row count padded to a multiple of ``ROW_MULTIPLE``,
  and ``check_row_invariance`` verifies at load time that the BLAS then gives each row the
  same bits whatever the row count and position (true of MKL on x86 in float32 and float64);
  where it does not, the products run in fixed ``ROW_MULTIPLE``-row tiles (identical calls);
- attention shapes depend on the sequence only: a prompt is cut into chunks at multiples of
  the chunk size (the prefix-cache block size), so the keys and values of a block are the
  same bits whether this request computed them or an earlier one whose block was cached.

See docs/llm.md for what this costs and what still differs between machines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.llm.kvcache import SequenceKV


@dataclass(frozen=True)
class LlamaConfig:
    """The architecture numbers of a Llama-family decoder (config.json in the artefacts)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_positions: int
    tie_word_embeddings: bool

    @property
    def kv_values_per_token(self) -> int:
        """Numbers stored in the KV cache per token (all layers, keys and values)."""
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim

    def to_json(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_positions": self.max_positions,
            "tie_word_embeddings": self.tie_word_embeddings,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LlamaConfig:
        return cls(
            vocab_size=int(data["vocab_size"]),
            hidden_size=int(data["hidden_size"]),
            intermediate_size=int(data["intermediate_size"]),
            num_layers=int(data["num_layers"]),
            num_heads=int(data["num_heads"]),
            num_kv_heads=int(data["num_kv_heads"]),
            head_dim=int(data["head_dim"]),
            rms_norm_eps=float(data["rms_norm_eps"]),
            rope_theta=float(data["rope_theta"]),
            max_positions=int(data["max_positions"]),
            tie_word_embeddings=bool(data["tie_word_embeddings"]),
        )

    @classmethod
    def from_transformers(cls, config: Any) -> LlamaConfig:
        """Our config from a transformers LlamaConfig; refuses what this file does not run."""
        rope = getattr(config, "rope_parameters", None) or {}
        rope_type = rope.get("rope_type", "default")
        unsupported = {
            "model_type": config.model_type != "llama",
            "hidden_act": config.hidden_act != "silu",
            "attention_bias": bool(config.attention_bias),
            "mlp_bias": bool(config.mlp_bias),
            "rope_type": rope_type != "default",
        }
        bad = [name for name, is_bad in unsupported.items() if is_bad]
        if bad:
            raise ValueError(f"unsupported Llama variant ({', '.join(bad)})")
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        return cls(
            vocab_size=int(config.vocab_size),
            hidden_size=int(config.hidden_size),
            intermediate_size=int(config.intermediate_size),
            num_layers=int(config.num_hidden_layers),
            num_heads=int(config.num_attention_heads),
            num_kv_heads=int(config.num_key_value_heads),
            head_dim=int(head_dim),
            rms_norm_eps=float(config.rms_norm_eps),
            rope_theta=float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
            max_positions=int(config.max_position_embeddings),
            tie_word_embeddings=bool(config.tie_word_embeddings),
        )


#: Packed row counts are padded to a multiple of this (see the module docstring).
ROW_MULTIPLE = 8
#: Prompts run in chunks that start at multiples of this position; prefix-cache blocks must
#: be a multiple of it. Part of what fixes the bits of a result: do not change lightly.
PREFILL_CHUNK = 8


@dataclass(frozen=True)
class SequenceSlice:
    """A run of one sequence's new tokens in a packed batch.

    ``rows`` tokens start at row ``offset`` of the packed matrix and at position ``start`` of
    the sequence; ``kv`` holds positions ``0 .. start-1`` (and receives these). Several slices
    of one sequence (prompt chunks) appear in position order.
    """

    offset: int
    rows: int
    start: int
    kv: SequenceKV


@dataclass(frozen=True)
class PackedBatch:
    """The model's input for one step; ``logit_rows`` are the rows whose logits are wanted."""

    tokens: torch.Tensor
    positions: torch.Tensor
    slices: tuple[SequenceSlice, ...]
    logit_rows: tuple[int, ...]


def pack(
    items: Sequence[tuple[Sequence[int], int, SequenceKV]],
    chunk: int,
    device: torch.device,
) -> PackedBatch:
    """Pack (new tokens, first position, cache) per sequence into one batch.

    A run of several tokens is cut at positions that are multiples of ``chunk``, so its
    chunks have the same shapes whatever part of it came from the prefix cache. The logits
    of each item's last token are requested, in item order.
    """
    tokens: list[int] = []
    positions: list[int] = []
    slices: list[SequenceSlice] = []
    logit_rows: list[int] = []
    for new_tokens, start, kv in items:
        position = start
        remaining = list(new_tokens)
        while remaining:
            take = min(len(remaining), chunk - position % chunk)
            slices.append(SequenceSlice(len(tokens), take, position, kv))
            tokens.extend(remaining[:take])
            positions.extend(range(position, position + take))
            position += take
            remaining = remaining[take:]
        logit_rows.append(len(tokens) - 1)
    return PackedBatch(
        tokens=torch.tensor(tokens, dtype=torch.int64, device=device),
        positions=torch.tensor(positions, dtype=torch.int64, device=device),
        slices=tuple(slices),
        logit_rows=tuple(logit_rows),
    )


def matmul_rows(x: torch.Tensor, weight: torch.Tensor, tiled: bool) -> torch.Tensor:
    """x @ weight.T for x with a multiple of ROW_MULTIPLE rows; ``tiled``: in fixed tiles."""
    if not tiled or x.shape[0] == ROW_MULTIPLE:
        return x @ weight.T
    tiles = [x[i : i + ROW_MULTIPLE] @ weight.T for i in range(0, x.shape[0], ROW_MULTIPLE)]
    return torch.cat(tiles)


class DecoderLayer(nn.Module):
    """Pre-norm Llama layer: RMSNorm, grouped-query attention with RoPE, RMSNorm, SwiGLU.

    The q/k/v projections are stored as one (q + 2 kv, hidden) matrix and gate/up as one
    (2 * intermediate, hidden) matrix: each output element is the same dot product as with
    separate matrices, with two fewer calls per layer.
    """

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        q_out = cfg.num_heads * cfg.head_dim
        kv_out = cfg.num_kv_heads * cfg.head_dim
        self.cfg = cfg
        self.split = (q_out, kv_out, kv_out)
        self.attn_norm = nn.Parameter(torch.ones(cfg.hidden_size), requires_grad=False)
        self.qkv = nn.Parameter(torch.zeros(q_out + 2 * kv_out, cfg.hidden_size), False)
        self.o = nn.Parameter(torch.zeros(cfg.hidden_size, q_out), requires_grad=False)
        self.mlp_norm = nn.Parameter(torch.ones(cfg.hidden_size), requires_grad=False)
        self.gate_up = nn.Parameter(
            torch.zeros(2 * cfg.intermediate_size, cfg.hidden_size), requires_grad=False
        )
        self.down = nn.Parameter(
            torch.zeros(cfg.hidden_size, cfg.intermediate_size), requires_grad=False
        )

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        slices: Sequence[SequenceSlice],
        layer: int,
        tiled: bool = False,
    ) -> torch.Tensor:
        cfg = self.cfg
        rows = hidden.shape[0]
        h = rms_norm(hidden, self.attn_norm, cfg.rms_norm_eps)
        qkv = matmul_rows(h, self.qkv, tiled)
        q_out, kv_out = self.split[0], self.split[1]
        q, k, v = qkv[:, :q_out], qkv[:, q_out : q_out + kv_out], qkv[:, q_out + kv_out :]
        q = apply_rope(q.reshape(rows, cfg.num_heads, cfg.head_dim), cos, sin)
        k = apply_rope(k.reshape(rows, cfg.num_kv_heads, cfg.head_dim), cos, sin)
        v = v.reshape(rows, cfg.num_kv_heads, cfg.head_dim)
        context = hidden.new_zeros(rows, cfg.num_heads * cfg.head_dim)  # padding rows stay 0
        for s in slices:
            context[s.offset : s.offset + s.rows] = self._attend(q, k, v, s, layer)
        hidden = hidden + matmul_rows(context, self.o, tiled)
        h = rms_norm(hidden, self.mlp_norm, cfg.rms_norm_eps)
        gate_up = matmul_rows(h, self.gate_up, tiled)
        gate, up = gate_up[:, : cfg.intermediate_size], gate_up[:, cfg.intermediate_size :]
        out: torch.Tensor = hidden + matmul_rows(F.silu(gate) * up, self.down, tiled)
        return out

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: SequenceSlice, layer: int
    ) -> torch.Tensor:
        """Causal attention of one slice's tokens over its sequence's cache (written here)."""
        cfg = self.cfg
        n, start = s.rows, s.start
        end = start + n
        rows = slice(s.offset, s.offset + n)
        keys, values = s.kv.layer(layer)  # (kv_heads, capacity, head_dim) each
        keys[:, start:end] = k[rows].transpose(0, 1)
        values[:, start:end] = v[rows].transpose(0, 1)
        group = cfg.num_heads // cfg.num_kv_heads
        # Query head h uses kv head h // group (transformers' repeat_kv order): view the
        # queries as (kv_heads, group * n, head_dim) and attend once per kv head.
        queries = q[rows].transpose(0, 1).reshape(cfg.num_kv_heads, group * n, cfg.head_dim)
        scores = (queries @ keys[:, :end].transpose(1, 2)) * (1.0 / math.sqrt(cfg.head_dim))
        if n > 1:
            # query i sits at position start + i and sees keys 0 .. start + i.
            future = torch.ones(n, end, dtype=torch.bool, device=q.device).triu(start + 1)
            scores = scores.masked_fill(future.repeat(group, 1), float("-inf"))
        context = scores.softmax(dim=-1) @ values[:, :end]  # (kv_heads, group * n, head_dim)
        return context.view(cfg.num_heads, n, cfg.head_dim).transpose(0, 1).reshape(n, -1)


class LlamaModel(nn.Module):
    """A Llama decoder over packed batches: ``forward(tokens, positions, slices)`` -> logits."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.hidden_size), False)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.Parameter(torch.ones(cfg.hidden_size), requires_grad=False)
        self.lm_head: nn.Parameter | None = None
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.hidden_size), False)
        self._rope_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        #: Run the matrix products in fixed tiles (set by ``check_row_invariance``).
        self.tiled = False

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.device

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """Run a packed batch; return the logits of ``batch.logit_rows``, (len, vocab).

        Every slice's new keys and values are written into its cache; the caller advances
        the caches' ``length``. Row counts are padded to a multiple of ROW_MULTIPLE with
        rows that belong to no sequence.
        """
        tokens, positions = _pad_rows(batch.tokens), _pad_rows(batch.positions)
        cos, sin = self._rope(positions)
        hidden = self.embed[tokens]
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, batch.slices, index, self.tiled)
        last = _pad_rows(torch.tensor(batch.logit_rows, device=tokens.device))
        final = rms_norm(hidden[last], self.norm, self.cfg.rms_norm_eps)
        head = self.embed if self.lm_head is None else self.lm_head
        logits = matmul_rows(final, head, self.tiled)
        return logits[: len(batch.logit_rows)]

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of each position's rotation angles, (T, head_dim), from a table.

        The table is computed in float64 whatever the model's dtype (angles up to ~8e3 rad
        need it), then cast once.
        """
        needed = int(positions.max()) + 1 if positions.numel() else 1
        table = self._rope_cache
        if (
            table is None
            or table[0].shape[0] < needed
            or table[0].device != self.device
            or table[0].dtype != self.dtype
        ):
            size = max(needed, 1024)
            half = self.cfg.head_dim // 2
            exponents = torch.arange(half, dtype=torch.float64) * 2 / self.cfg.head_dim
            inv_freq = 1.0 / (self.cfg.rope_theta**exponents)
            angles = torch.arange(size, dtype=torch.float64)[:, None] * inv_freq[None, :]
            angles = torch.cat([angles, angles], dim=-1)
            table = (
                angles.cos().to(self.device, self.dtype),
                angles.sin().to(self.device, self.dtype),
            )
            self._rope_cache = table
        return table[0][positions], table[1][positions]

    def load_transformers_state(
        self, state: Mapping[str, torch.Tensor], assign: bool = False
    ) -> None:
        """Take weights named as transformers' LlamaForCausalLM names them (exact values).

        ``assign`` adopts the tensors instead of copying them (for a model made on "meta").
        """
        own: dict[str, torch.Tensor] = {"embed": state["model.embed_tokens.weight"]}
        own["norm"] = state["model.norm.weight"]
        if self.lm_head is not None:
            own["lm_head"] = state["lm_head.weight"]
        for i in range(self.cfg.num_layers):
            p = f"model.layers.{i}."
            own[f"layers.{i}.attn_norm"] = state[p + "input_layernorm.weight"]
            own[f"layers.{i}.mlp_norm"] = state[p + "post_attention_layernorm.weight"]
            own[f"layers.{i}.qkv"] = torch.cat(
                [state[p + f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")]
            )
            own[f"layers.{i}.o"] = state[p + "self_attn.o_proj.weight"]
            own[f"layers.{i}.gate_up"] = torch.cat(
                [state[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up")]
            )
            own[f"layers.{i}.down"] = state[p + "mlp.down_proj.weight"]
        self.load_state_dict(own, strict=True, assign=assign)
        for param in self.parameters():
            param.requires_grad_(False)
        self._rope_cache = None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight, in x's dtype (float64 for canonical runs)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, transformers' rotate-half layout; x is (T, heads, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def _pad_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` with zeros appended to a multiple of ROW_MULTIPLE rows (at least one multiple)."""
    rows = x.shape[0]
    padded = max(ROW_MULTIPLE, -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE)
    if padded == rows:
        return x
    return torch.cat([x, x.new_zeros((padded - rows, *x.shape[1:]))])


def check_row_invariance(model: LlamaModel, seed: int = 0) -> str:
    """Probe the BLAS on the model's weight shapes and choose how to call it; return the mode.

    - "one-call": each row of x @ W.T has the same bits at every padded row count and offset
      tried (8..56 rows against one 64-row product), so one product per step is invariant.
    - "tiled": not so, but in fixed 8-row products a row's bits do not depend on its place in
      the tile: the products run tile by tile (identical calls).
    - "none": neither holds; outputs may depend on batch companions in the last bits (rare
      argmax flips). Logged by the caller.
    Sets ``model.tiled`` (True unless "one-call").
    """
    generator = torch.Generator().manual_seed(seed)
    weights = [model.embed if model.lm_head is None else model.lm_head]
    first = model.layers[0]
    assert isinstance(first, DecoderLayer)
    weights += [first.qkv, first.o, first.gate_up, first.down]
    cases = [(8, 0), (8, 8), (8, 56), (16, 0), (16, 24), (24, 8), (40, 16), (56, 0)]
    one_call = tiles = True
    with torch.inference_mode():
        for weight in weights:
            x = torch.randn(64, weight.shape[1], generator=generator, dtype=torch.float64)
            x = x.to(weight.device, weight.dtype)
            full = x @ weight.T
            for rows, offset in cases:
                part = x[offset : offset + rows] @ weight.T
                one_call &= torch.equal(part, full[offset : offset + rows])
            tile = x[:ROW_MULTIPLE] @ weight.T
            for shift in range(1, ROW_MULTIPLE):
                moved = x[:ROW_MULTIPLE].roll(shift, dims=0) @ weight.T
                tiles &= torch.equal(moved.roll(-shift, dims=0), tile)
    model.tiled = not one_call
    if one_call:
        return "one-call"
    return "tiled" if tiles else "none"
