"""Checking a committed generation by re-execution, with the first-differing-token rule.

Greedy ids can honestly differ between machines when the two best logits are closer than
the machines' rounding difference (docs/llm.md, "Determinism"). So a mismatch is judged at
the *first* position where the committed ids differ from the auditor's: the auditor
recomputes that position's logits from the prompt and the committed ids before it
(teacher forcing, float64) and accepts the committed token if its logit is within
``NEAR_TIE_REL`` (relative) of the best one. Anything else is a wrong result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch

from worker.llm.engine import generate
from worker.llm.kvcache import SequenceKV
from worker.llm.model import PREFILL_CHUNK, pack
from worker.llm.runtime import LoadedLLM

#: Largest gap (relative to the best logit's magnitude, at least 1) between the best logit
#: and the committed token's for an honest near-tie; float64 implementations differ by
#: ~1e-13 (docs/llm.md).
NEAR_TIE_REL = 1e-9


class Judgement(StrEnum):
    MATCH = "match"  # the auditor's ids equal the committed ids
    NEAR_TIE = "near-tie"  # they differ first where the committed token ties the best
    WRONG = "wrong"  # they differ where the committed token is not (near) the best
    UNJUDGED = "unjudged"  # sampled (temperature > 0) ids differ: no automatic judgement


@dataclass(frozen=True)
class GenerationAudit:
    judgement: Judgement
    expected: tuple[int, ...]
    committed: tuple[int, ...]
    position: int | None  # the first differing position
    gap: float | None  # best logit minus the committed token's there
    detail: str


def position_logits(
    llm: LoadedLLM, prompt: Sequence[int], generated: Sequence[int]
) -> torch.Tensor:
    """The logits for the token after ``prompt + generated`` (one full prefill, float64)."""
    seq = [*prompt, *generated]
    cfg = llm.config
    kv = SequenceKV(cfg.num_layers, cfg.num_kv_heads, cfg.head_dim, len(seq), llm.dtype, llm.device)
    with torch.inference_mode():
        logits: torch.Tensor = llm.model(pack([(seq, 0, kv)], PREFILL_CHUNK, llm.device))
    return logits[0]


def audit_generation(
    llm: LoadedLLM,
    data: bytes,
    committed: Sequence[int],
    expected: Sequence[int] | None = None,
) -> GenerationAudit:
    """Re-execute the job whose input is ``data`` and judge the ``committed`` ids.

    ``expected``: this machine's ids for ``data`` when already computed (else generated).
    Raises InvalidInput when ``data`` is not a request the model accepts.
    """
    request = llm.decode_input(data)
    prompt = llm.prompt_ids(request)
    if expected is None:
        expected = generate(llm, [request])[0].token_ids
    expected = tuple(int(t) for t in expected)
    mine = tuple(int(t) for t in committed)
    if mine == expected:
        return GenerationAudit(
            Judgement.MATCH, expected, mine, None, None, f"{len(mine)} ids equal re-execution"
        )
    position = next(
        (i for i, (a, b) in enumerate(zip(mine, expected, strict=False)) if a != b),
        min(len(mine), len(expected)),
    )
    if position >= len(mine):
        return GenerationAudit(
            Judgement.WRONG,
            expected,
            mine,
            position,
            None,
            f"the committed ids stop after {len(mine)} tokens, re-execution goes on",
        )
    if request.temperature > 0:
        return GenerationAudit(
            Judgement.UNJUDGED,
            expected,
            mine,
            position,
            None,
            f"sampled ids differ from position {position}: not judged automatically",
        )
    logits = position_logits(llm, prompt, mine[:position])
    best = float(logits.max())
    gap = best - float(logits[mine[position]])
    tie = gap <= NEAR_TIE_REL * max(1.0, abs(best))
    return GenerationAudit(
        Judgement.NEAR_TIE if tie else Judgement.WRONG,
        expected,
        mine,
        position,
        gap,
        f"first difference at position {position}: committed token {mine[position]} is "
        f"{gap:.3g} below the best logit ({'an honest near-tie' if tie else 'not a near-tie'})",
    )
