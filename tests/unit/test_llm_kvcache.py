"""Sequence KV buffers and the block prefix cache (small tensors, no model)."""

from __future__ import annotations

import pytest
import torch

from worker.llm.kvcache import PrefixCache, SequenceKV

LAYERS, HEADS, DIM = 2, 1, 3


def kv(capacity: int = 32) -> SequenceKV:
    return SequenceKV(LAYERS, HEADS, DIM, capacity, torch.float64, torch.device("cpu"))


def filled(tokens: list[int]) -> SequenceKV:
    """A cache whose values at position p are the token at p (an easy-to-check stand-in)."""
    cache = kv()
    for pos, token in enumerate(tokens):
        cache.data[:, :, :, pos] = float(token)
    cache.length = len(tokens)
    return cache


def test_sequence_kv_layout() -> None:
    cache = kv(capacity=10)
    assert cache.capacity == 10
    keys, values = cache.layer(1)
    assert keys.shape == (HEADS, 10, DIM)
    keys[:, 0] = 5.0
    assert cache.data[1, 0, 0, 0, 0] == 5.0
    values[:, 0] = 6.0
    assert cache.data[1, 1, 0, 0, 0] == 6.0


def test_digests_chain_over_the_whole_prefix() -> None:
    cache = PrefixCache(block_size=4, capacity_blocks=8)
    a = cache.digests([1, 2, 3, 4, 5, 6, 7, 8, 9])
    b = cache.digests([0, 2, 3, 4, 5, 6, 7, 8])
    assert len(a) == 2  # the partial block is not cached
    assert a[1] != b[1]  # same second block, different first block


def test_store_then_load_reuses_whole_blocks_and_leaves_a_token() -> None:
    cache = PrefixCache(block_size=4, capacity_blocks=8)
    system = [1, 2, 3, 4, 5, 6, 7, 8]
    first = [*system, 20, 21, 22]
    assert cache.cached_tokens(first) == 0
    assert cache.store(first, filled(first)) == 2
    second = [*system, 30, 31, 32, 33, 34]
    assert cache.cached_tokens(second) == 8
    target = kv()
    assert cache.load(second, target) == 8
    assert target.length == 8
    assert target.data[0, 0, 0, :8, 0].tolist() == [float(t) for t in system]
    # a prompt that is exactly the cached blocks keeps its last token to compute
    assert cache.cached_tokens(system) == 4
    stats = cache.stats
    assert (stats.lookups, stats.hits, stats.hit_tokens, stats.blocks) == (1, 1, 8, 2)


def test_store_skips_blocks_already_cached() -> None:
    cache = PrefixCache(block_size=2, capacity_blocks=8)
    cache.store([1, 2, 3, 4], filled([1, 2, 3, 4]))
    assert cache.store([1, 2, 3, 4, 5, 6], filled([1, 2, 3, 4, 5, 6])) == 1


def test_lru_eviction_bounds_the_blocks() -> None:
    cache = PrefixCache(block_size=2, capacity_blocks=2)
    cache.store([1, 2, 3, 4], filled([1, 2, 3, 4]))
    cache.cached_tokens([1, 2, 9])
    cache.load([1, 2, 9], kv())  # touches block [1, 2]
    cache.store([5, 6], filled([5, 6]))  # evicts the block [3, 4] (least recently used)
    assert cache.stats.blocks == 2
    assert cache.stats.evicted_blocks == 1
    assert cache.cached_tokens([1, 2, 3, 4, 0]) == 2
    assert cache.cached_tokens([5, 6, 0]) == 2


def test_zero_capacity_stores_nothing() -> None:
    cache = PrefixCache(block_size=2, capacity_blocks=0)
    assert cache.store([1, 2, 3], filled([1, 2, 3])) == 0
    assert cache.cached_tokens([1, 2, 3]) == 0


def test_load_needs_an_empty_cache() -> None:
    cache = PrefixCache(block_size=2, capacity_blocks=2)
    with pytest.raises(ValueError, match="empty"):
        cache.load([1, 2, 3], filled([1]))
