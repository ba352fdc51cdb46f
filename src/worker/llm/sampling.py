"""Choosing the next token: greedy argmax, or seeded sampling that any node can replay.

Temperature 0 is greedy: the index of the largest logit (the lowest index on an exact tie).
Above 0, the next token is drawn by inverse-CDF sampling from softmax(logits / T) in
float64, with the uniform number for output position ``i`` derived from the request's seed
alone: ``blake2b("verimarket-llm-sample-v1" || seed (8 bytes, big-endian) || i (4 bytes))``,
its first 53 bits over 2^53. No RNG state is kept, so the draw does not depend on the batch,
on other requests, or on torch's generator (whose CPU and CUDA streams differ).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

_DOMAIN = b"verimarket-llm-sample-v1"


def uniform(seed: int, position: int) -> float:
    """The uniform number in [0, 1) used to sample output token ``position`` of a request."""
    data = _DOMAIN + seed.to_bytes(8, "big") + position.to_bytes(4, "big")
    bits = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") >> 11
    return bits / float(1 << 53)


def sample_from_logits(logits: torch.Tensor, temperature: float, u: float) -> int:
    """Inverse-CDF draw from softmax(logits / temperature) (float64) at uniform ``u``."""
    probs = torch.softmax(logits.to(torch.float64) / temperature, dim=-1)
    cdf = torch.cumsum(probs, dim=-1)
    target = torch.tensor([u], dtype=torch.float64, device=cdf.device) * cdf[-1]
    index = int(torch.searchsorted(cdf, target, right=True)[0])
    return min(index, logits.shape[-1] - 1)


def next_tokens(
    logits: torch.Tensor,
    temperatures: Sequence[float],
    seeds: Sequence[int],
    positions: Sequence[int],
) -> list[int]:
    """The next token of each row of ``logits`` (rows, vocab).

    ``positions[i]`` is how many tokens row i's request has generated so far. Greedy rows
    share one argmax call; sampled rows are drawn one by one.
    """
    chosen = torch.argmax(logits, dim=-1).tolist()
    for row, temperature in enumerate(temperatures):
        if temperature > 0:
            chosen[row] = sample_from_logits(
                logits[row], temperature, uniform(seeds[row], positions[row])
            )
    return [int(t) for t in chosen]
