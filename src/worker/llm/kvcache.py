"""KV caches: one buffer per running sequence, and a prefix cache shared between requests.

A sequence's buffer is allocated when it is admitted, sized for its whole life (prompt plus
``max_new_tokens``), so it never grows, moves, or has to be preempted. The prefix cache
keeps the keys and values of prompt prefixes in blocks of ``block_size`` tokens, keyed by a
hash chained over the whole prefix (as vLLM's prefix caching does), so a block is reused
only by a prompt that starts with exactly the same tokens. Blocks are copied in and out
rather than shared by reference: a few MB per admission, negligible next to a forward pass.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch


class SequenceKV:
    """The keys and values of one sequence, for all layers.

    ``data`` is (layers, 2, kv_heads, capacity, head_dim); positions ``0 .. length-1`` are
    filled. The model writes new positions; the engine advances ``length`` after each step.
    """

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.data = torch.empty(
            (num_layers, 2, num_kv_heads, capacity, head_dim), dtype=dtype, device=device
        )
        self.length = 0

    @property
    def capacity(self) -> int:
        return int(self.data.shape[3])

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of layer ``index``'s keys and values, (kv_heads, capacity, head_dim) each."""
        return self.data[index, 0], self.data[index, 1]


@dataclass(frozen=True)
class PrefixCacheStats:
    """Counters since the cache was made: lookups that reused something, tokens reused."""

    lookups: int
    hits: int
    hit_tokens: int
    stored_blocks: int
    evicted_blocks: int
    blocks: int


class PrefixCache:
    """LRU cache of prompt-prefix KV blocks, shared by every sequence of one engine.

    ``capacity_blocks`` bounds memory: each block holds ``block_size`` tokens of keys and
    values for all layers. Only whole blocks are cached, and a lookup always leaves at least
    one prompt token to compute (its logits give the first generated token).
    """

    def __init__(self, block_size: int, capacity_blocks: int) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = block_size
        self.capacity_blocks = max(0, capacity_blocks)
        self._blocks: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lookups = self._hits = self._hit_tokens = self._stored = self._evicted = 0

    def digests(self, tokens: Sequence[int]) -> list[bytes]:
        """Chained digests of the whole blocks of ``tokens``: block i's covers blocks 0..i."""
        out: list[bytes] = []
        previous = b""
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            block = tokens[start : start + self.block_size]
            data = previous + b"".join(int(t).to_bytes(4, "little") for t in block)
            previous = hashlib.blake2b(data, digest_size=16).digest()
            out.append(previous)
        return out

    def cached_tokens(self, prompt: Sequence[int]) -> int:
        """How many leading tokens of ``prompt`` ``load`` would fill (no LRU update)."""
        return len(self._hit_digests(prompt)) * self.block_size

    def load(self, prompt: Sequence[int], kv: SequenceKV) -> int:
        """Copy the cached prefix of ``prompt`` into an empty ``kv``; return its length."""
        if kv.length != 0:
            raise ValueError("prefix blocks go into an empty sequence cache")
        hit = self._hit_digests(prompt)
        self._lookups += 1
        for index, digest in enumerate(hit):
            start = index * self.block_size
            kv.data[:, :, :, start : start + self.block_size] = self._blocks[digest]
            self._blocks.move_to_end(digest)
        kv.length = len(hit) * self.block_size
        if hit:
            self._hits += 1
            self._hit_tokens += kv.length
        return kv.length

    def store(self, prompt: Sequence[int], kv: SequenceKV) -> int:
        """Keep the whole prompt blocks whose keys and values ``kv`` holds; return how many new.

        Call once the prompt has been run (``kv.length >= len(prompt)``). Least recently used
        blocks are evicted beyond ``capacity_blocks``.
        """
        if self.capacity_blocks == 0:
            return 0
        added = 0
        for index, digest in enumerate(self.digests(prompt[: kv.length])):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)
                continue
            start = index * self.block_size
            self._blocks[digest] = kv.data[:, :, :, start : start + self.block_size].clone()
            added += 1
        self._stored += added
        while len(self._blocks) > self.capacity_blocks:
            self._blocks.popitem(last=False)
            self._evicted += 1
        return added

    def clear(self) -> None:
        self._blocks.clear()

    @property
    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(
            lookups=self._lookups,
            hits=self._hits,
            hit_tokens=self._hit_tokens,
            stored_blocks=self._stored,
            evicted_blocks=self._evicted,
            blocks=len(self._blocks),
        )

    def _hit_digests(self, prompt: Sequence[int]) -> list[bytes]:
        # Leave the last prompt token to be computed: its logits start the generation.
        hit: list[bytes] = []
        for digest in self.digests(prompt[: len(prompt) - 1]):
            if digest not in self._blocks:
                break
            hit.append(digest)
        return hit
