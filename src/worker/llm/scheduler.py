"""Continuous-batching schedulers: which sequences run in the next engine step.

Pure bookkeeping, no tensors: the engine asks ``schedule()`` for a step, runs the model on
what it returns, and reports the sampled tokens back with ``update_from_output()``. New
requests join the running batch at the next ``schedule()``, between decode steps.

``Scheduler`` states the contract (vLLM's ``vllm/v1/core/sched/interface.py`` is the model);
``FCFSScheduler`` implements it: first come, first served admission under three limits
(running sequences, prompt tokens per step, reserved KV tokens). Each admitted sequence
reserves KV room for its whole life (prompt + ``max_new_tokens``), so running sequences
are never preempted: no recomputation, and a sequence's numbers never depend on whether
it was interrupted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class SequenceStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(StrEnum):
    """Why a sequence stopped: a stop token, its ``max_new_tokens``, or an abort."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


@dataclass(eq=False)
class SequenceState:
    """The scheduler's view of one request.

    ``num_computed`` counts the tokens whose keys and values are in the sequence's KV cache
    (prompt tokens first, then generated ones fed back). ``cached_prefix`` is how many of the
    prompt tokens came from the prefix cache at admission.
    """

    request_id: str
    prompt_ids: tuple[int, ...]
    max_new_tokens: int
    stop_ids: frozenset[int]
    output_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    num_computed: int = 0
    cached_prefix: int = 0
    finish_reason: FinishReason | None = None

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError(f"request {self.request_id}: empty prompt")
        if self.max_new_tokens < 1:
            raise ValueError(f"request {self.request_id}: max_new_tokens must be at least 1")

    @property
    def kv_tokens(self) -> int:
        """KV positions the sequence can ever fill: the last generated token is never fed back."""
        return len(self.prompt_ids) + self.max_new_tokens - 1

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED


@dataclass(frozen=True)
class ScheduledSequence:
    """One sequence's work in a step: run ``token_ids`` at positions ``start_position ..``.

    ``is_prefill`` marks the sequence's first step: the engine allocates its KV cache and
    copies in the ``cached_prefix`` tokens' keys and values (so ``start_position`` equals
    ``cached_prefix`` then). Otherwise ``token_ids`` is the one token sampled last step.
    """

    request_id: str
    token_ids: tuple[int, ...]
    start_position: int
    is_prefill: bool
    cached_prefix: int = 0


@dataclass(frozen=True)
class SchedulerOutput:
    """What to run in one step: running sequences first (admission order), then new ones."""

    sequences: tuple[ScheduledSequence, ...] = ()

    @property
    def num_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.sequences)

    @property
    def num_prefill_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.sequences if s.is_prefill)

    @property
    def is_empty(self) -> bool:
        return not self.sequences


#: Given a prompt, how many leading tokens the prefix cache would supply.
PrefixProbe = Callable[[Sequence[int]], int]


class Scheduler(ABC):
    """Decides, step by step, which sequences the engine runs together.

    Used from one thread (the engine's): no method is thread-safe. A request id is unique
    among unfinished requests; a finished request's id may be reused.
    """

    @abstractmethod
    def add_request(self, sequence: SequenceState) -> None:
        """Queue a new request (status WAITING, nothing computed).

        It joins the batch at a later ``schedule()`` (never the one already returned). Raises
        ValueError if the id is already unfinished, or if the request can never be admitted
        (its KV reservation exceeds the whole capacity): refusing at once beats waiting forever.
        """

    @abstractmethod
    def schedule(self) -> SchedulerOutput:
        """Choose the next step's work and move admitted sequences to RUNNING.

        Every running sequence gets exactly one decode token (the token it sampled last).
        Waiting sequences are then admitted in arrival order while the limits allow; an
        admitted sequence runs its whole uncached prompt in this step (no chunking). Does not
        change ``num_computed``: that happens in ``update_from_output``. An empty output means
        there is nothing to run.
        """

    @abstractmethod
    def update_from_output(
        self, output: SchedulerOutput, sampled: Mapping[str, int]
    ) -> list[SequenceState]:
        """Record a step's result: ``sampled`` maps each scheduled request id to its new token.

        For every sequence in ``output`` that is still running: add its scheduled tokens to
        ``num_computed``, append the sampled token to ``output_ids``, and finish it with STOP
        if the token is a stop token or LENGTH if it reached ``max_new_tokens``. Sequences
        aborted since ``output`` was made are skipped. Finished sequences release their
        reservations and are returned, in ``output`` order. Raises KeyError if a running
        scheduled sequence has no sampled token.
        """

    @abstractmethod
    def finish_requests(
        self, request_ids: Iterable[str], reason: FinishReason = FinishReason.ABORT
    ) -> list[SequenceState]:
        """Finish the given unfinished requests now (waiting or running); ignore other ids.

        Their reservations are released at once; the engine frees their caches. Returns the
        sequences finished by this call.
        """

    @abstractmethod
    def has_unfinished_requests(self) -> bool:
        """True while any request is waiting or running."""

    @abstractmethod
    def get_request_counts(self) -> tuple[int, int]:
        """(running, waiting) request counts."""

    @abstractmethod
    def get(self, request_id: str) -> SequenceState | None:
        """The unfinished sequence with this id, or None."""


@dataclass(frozen=True)
class SchedulerLimits:
    """Limits of FCFSScheduler.

    - ``max_num_seqs``: most sequences running together (the decode batch).
    - ``max_prefill_tokens``: most uncached prompt tokens run in one step. It bounds how much
      a step that admits new requests slows the running ones (their inter-token latency).
      A prompt longer than this is admitted as the only prefill of its step, so it is never
      stuck.
    - ``kv_capacity_tokens``: most KV positions reserved by running sequences together.
    """

    max_num_seqs: int = 32
    max_prefill_tokens: int = 512
    kv_capacity_tokens: int = 16384

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_prefill_tokens", "kv_capacity_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


class FCFSScheduler(Scheduler):
    """First come, first served continuous batching with whole-life KV reservations.

    Admission stops at the first waiting request that does not fit (no skipping ahead), so
    a large request is delayed only until room frees up, never starved by smaller ones.
    ``prefix_probe`` (the engine's prefix cache) lowers a prompt's cost by the tokens it
    can reuse.
    """

    def __init__(
        self, limits: SchedulerLimits | None = None, prefix_probe: PrefixProbe | None = None
    ) -> None:
        self.limits = limits or SchedulerLimits()
        self._probe = prefix_probe
        self._waiting: deque[SequenceState] = deque()
        self._running: list[SequenceState] = []
        self._by_id: dict[str, SequenceState] = {}
        self._reserved = 0

    @property
    def reserved_kv_tokens(self) -> int:
        return self._reserved

    def add_request(self, sequence: SequenceState) -> None:
        if sequence.request_id in self._by_id:
            raise ValueError(f"request {sequence.request_id!r} is already queued or running")
        if sequence.kv_tokens > self.limits.kv_capacity_tokens:
            raise ValueError(
                f"request {sequence.request_id!r} needs {sequence.kv_tokens} KV tokens, the "
                f"capacity is {self.limits.kv_capacity_tokens}"
            )
        sequence.status = SequenceStatus.WAITING
        self._waiting.append(sequence)
        self._by_id[sequence.request_id] = sequence

    def schedule(self) -> SchedulerOutput:
        scheduled = [
            ScheduledSequence(
                request_id=seq.request_id,
                token_ids=(seq.output_ids[-1],),
                start_position=seq.num_computed,
                is_prefill=False,
            )
            for seq in self._running
        ]
        budget = self.limits.max_prefill_tokens
        admitted_any = False
        while self._waiting and len(self._running) < self.limits.max_num_seqs:
            seq = self._waiting[0]
            if self._reserved + seq.kv_tokens > self.limits.kv_capacity_tokens:
                break
            cached = self._probe(seq.prompt_ids) if self._probe is not None else 0
            cost = len(seq.prompt_ids) - cached
            if cost > budget and admitted_any:
                break
            self._waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            seq.cached_prefix = cached
            self._running.append(seq)
            self._reserved += seq.kv_tokens
            budget -= cost
            admitted_any = True
            scheduled.append(
                ScheduledSequence(
                    request_id=seq.request_id,
                    token_ids=seq.prompt_ids[cached:],
                    start_position=cached,
                    is_prefill=True,
                    cached_prefix=cached,
                )
            )
        return SchedulerOutput(tuple(scheduled))

    def update_from_output(
        self, output: SchedulerOutput, sampled: Mapping[str, int]
    ) -> list[SequenceState]:
        finished: list[SequenceState] = []
        for item in output.sequences:
            seq = self._by_id.get(item.request_id)
            if seq is None or seq.status is not SequenceStatus.RUNNING:
                continue  # aborted after the step was scheduled
            token = sampled[item.request_id]
            seq.num_computed = item.start_position + len(item.token_ids)
            seq.output_ids.append(int(token))
            if token in seq.stop_ids:
                self._finish(seq, FinishReason.STOP)
                finished.append(seq)
            elif len(seq.output_ids) >= seq.max_new_tokens:
                self._finish(seq, FinishReason.LENGTH)
                finished.append(seq)
        return finished

    def finish_requests(
        self, request_ids: Iterable[str], reason: FinishReason = FinishReason.ABORT
    ) -> list[SequenceState]:
        finished = []
        for request_id in request_ids:
            seq = self._by_id.get(request_id)
            if seq is not None:
                self._finish(seq, reason)
                finished.append(seq)
        return finished

    def has_unfinished_requests(self) -> bool:
        return bool(self._by_id)

    def get_request_counts(self) -> tuple[int, int]:
        return len(self._running), len(self._waiting)

    def get(self, request_id: str) -> SequenceState | None:
        return self._by_id.get(request_id)

    def _finish(self, seq: SequenceState, reason: FinishReason) -> None:
        if seq.status is SequenceStatus.RUNNING:
            self._running.remove(seq)
            self._reserved -= seq.kv_tokens
        else:
            self._waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        del self._by_id[seq.request_id]
