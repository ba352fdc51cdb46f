"""The LLM serving engine: continuous batching over per-sequence KV caches, with streaming.

``LLMEngine.step()`` is one iteration: take the requests added since the last step, ask the
scheduler what to run, run it as one packed forward pass (running sequences decode one token
each; newly admitted ones run their prompts, minus any prefix found in the prefix cache),
sample, stream each new token to its request's ``on_token(request_id, token_id, text_piece)``
callback, and return the requests that finished. New requests therefore join the running
batch between decode steps. ``EngineLoop`` runs ``step()`` on a background thread and hands
out futures and token streams; that is what a worker process uses.

Greedy outputs do not depend on batch companions: no padding, attention per sequence, and
float64 arithmetic (docs/llm.md says what remains and what it costs).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from worker.llm.errors import DuplicateRequestError, EngineClosedError
from worker.llm.kvcache import PrefixCache, PrefixCacheStats, SequenceKV
from worker.llm.model import PREFILL_CHUNK, pack
from worker.llm.request import GenerationRequest, encode_token_ids, token_ids_hash
from worker.llm.runtime import LoadedLLM
from worker.llm.sampling import next_tokens
from worker.llm.scheduler import (
    FCFSScheduler,
    FinishReason,
    Scheduler,
    SchedulerLimits,
    SchedulerOutput,
    SequenceState,
    SequenceStatus,
)
from worker.llm.tokenizer import IncrementalDetokenizer
from worker.models.errors import InvalidInput, WorkerError

log = logging.getLogger(__name__)

#: ``on_token(request_id, token_id, text_piece)``: called on the engine thread, in order,
#: once per generated token (the piece may be empty while a character is incomplete).
TokenCallback = Callable[[str, int, str], None]


@dataclass(frozen=True)
class EngineConfig:
    """Engine limits. KV memory per token is 2 * layers * kv_heads * head_dim * 8 bytes in
    float64: 92 KB for SmolLM2-135M, so the default 16,384 reserved tokens cap running
    sequences at ~1.5 GB, and the 4,096-token prefix cache at ~0.4 GB.
    """

    max_num_seqs: int = 32
    max_prefill_tokens: int = 512
    kv_cache_tokens: int = 16384
    prefix_cache_tokens: int = 4096
    #: 8 tokens: SmolLM2's default system prompt plus "<|im_start|>user\\n" is 24 tokens.
    #: A multiple of PREFILL_CHUNK, so cached blocks are bit-identical to recomputed ones.
    prefix_block_size: int = PREFILL_CHUNK

    def __post_init__(self) -> None:
        if self.prefix_block_size % PREFILL_CHUNK:
            raise ValueError(f"prefix_block_size must be a multiple of {PREFILL_CHUNK}")


class GenerationError(WorkerError, RuntimeError):
    """The engine failed while running a request (its result was not produced)."""

    def __init__(self, request_id: str, reason: str) -> None:
        self.request_id = request_id
        self.reason = reason
        super().__init__(f"request {request_id!r} failed: {reason}")


@dataclass(frozen=True)
class GenerationResult:
    """A finished request. ``token_ids`` is the canonical result (``canonical_output``)."""

    request_id: str
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    finish_reason: FinishReason
    cached_prompt_tokens: int
    arrival_time: float
    first_token_time: float | None
    finish_time: float
    token_times: tuple[float, ...]
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        """Seconds from ``add_request`` to the first token."""
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def inter_token_latencies(self) -> list[float]:
        return [b - a for a, b in zip(self.token_times, self.token_times[1:], strict=False)]

    def canonical_output(self) -> bytes:
        return encode_token_ids(self.token_ids)

    def result_hash(self) -> bytes:
        return token_ids_hash(self.token_ids)


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine was made; times in seconds (``time.perf_counter``)."""

    steps: int
    prefill_tokens: int
    decode_tokens: int
    finished: int
    forward_seconds: float
    sampling_seconds: float
    step_seconds: float
    batch_sizes: dict[int, int]
    prefix_cache: PrefixCacheStats


@dataclass(eq=False)
class _Live:
    """Engine-side state of one request."""

    request: GenerationRequest
    state: SequenceState
    on_token: TokenCallback | None
    detokenizer: IncrementalDetokenizer
    arrival: float
    kv: SequenceKV | None = None
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)


class LLMEngine:
    """Continuous-batching generation for one loaded model.

    ``add_request`` and ``abort_request`` may be called from any thread; ``step`` and
    everything else from one engine thread only (``EngineLoop`` does that).
    """

    def __init__(
        self,
        llm: LoadedLLM,
        config: EngineConfig | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.llm = llm
        self.config = config or EngineConfig()
        cfg = self.config
        self.prefix_cache = PrefixCache(
            cfg.prefix_block_size, cfg.prefix_cache_tokens // cfg.prefix_block_size
        )
        probe = self.prefix_cache.cached_tokens if cfg.prefix_cache_tokens > 0 else None
        self.scheduler = scheduler or FCFSScheduler(
            SchedulerLimits(cfg.max_num_seqs, cfg.max_prefill_tokens, cfg.kv_cache_tokens),
            prefix_probe=probe,
        )
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._incoming: list[_Live] = []
        self._aborts: list[str] = []
        self._ids: set[str] = set()
        self._work = threading.Event()
        self._steps = self._prefill_tokens = self._decode_tokens = self._finished = 0
        self._forward_s = self._sampling_s = self._step_s = 0.0
        self._batch_sizes: Counter[int] = Counter()

    # --- any thread -----------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        request: GenerationRequest,
        on_token: TokenCallback | None = None,
    ) -> tuple[int, ...]:
        """Queue a request; it joins the batch at the next step. Returns its prompt ids.

        Tokenizes and checks it here, so a bad request fails in the caller: InvalidInput
        (prompt too long, more KV than the engine holds), DuplicateRequestError if the id is
        queued or running.
        """
        prompt = self.llm.prompt_ids(request)
        needed = len(prompt) + request.max_new_tokens - 1
        if needed > self.config.kv_cache_tokens:
            raise InvalidInput(
                f"needs {needed} KV cache tokens, the engine holds {self.config.kv_cache_tokens}",
                self.llm.name,
            )
        state = SequenceState(
            request_id=request_id,
            prompt_ids=prompt,
            max_new_tokens=request.max_new_tokens,
            stop_ids=self.llm.spec.stop_token_ids,
        )
        live = _Live(
            request=request,
            state=state,
            on_token=on_token,
            detokenizer=IncrementalDetokenizer(self.llm.codec),
            arrival=time.perf_counter(),
        )
        with self._lock:
            if request_id in self._ids:
                raise DuplicateRequestError(request_id)
            self._ids.add(request_id)
            self._incoming.append(live)
        self._work.set()
        return prompt

    def abort_request(self, request_id: str) -> None:
        """Stop a request at the next step; it finishes with reason ABORT (unknown ids: no-op)."""
        with self._lock:
            self._aborts.append(request_id)
        self._work.set()

    def has_unfinished_requests(self) -> bool:
        with self._lock:
            return bool(self._ids)

    def wake(self) -> None:
        """Make a pending ``wait_for_work`` return now."""
        self._work.set()

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a request or abort arrives (or ``timeout``); True if one did."""
        arrived = self._work.wait(timeout)
        self._work.clear()
        return arrived

    # --- engine thread --------------------------------------------------------------------

    def step(self) -> list[GenerationResult]:
        """Run one iteration; return the requests that finished in it (aborted ones too)."""
        started = time.perf_counter()
        finished = self._take_new_work()
        output = self.scheduler.schedule()
        if output.is_empty:
            return finished
        try:
            sampled = self._run(output)
        except Exception as exc:
            log.exception("LLM engine step failed")
            ids = [s.request_id for s in output.sequences]
            for seq in self.scheduler.finish_requests(ids):
                finished.append(self._result(seq, error=f"{type(exc).__name__}: {exc}"))
            return finished
        done = self.scheduler.update_from_output(output, sampled)
        now = time.perf_counter()
        done_ids = {seq.request_id for seq in done}
        for item in output.sequences:
            self._emit(
                self._live[item.request_id],
                sampled[item.request_id],
                now,
                last=item.request_id in done_ids,
            )
        finished.extend(self._result(seq) for seq in done)
        self._steps += 1
        self._batch_sizes[len(output.sequences)] += 1
        self._step_s += time.perf_counter() - started
        return finished

    def run_to_completion(
        self, requests: Mapping[str, GenerationRequest], on_token: TokenCallback | None = None
    ) -> dict[str, GenerationResult]:
        """Add ``requests`` and step until all of them have finished (tests, batch jobs)."""
        for request_id, request in requests.items():
            self.add_request(request_id, request, on_token)
        results: dict[str, GenerationResult] = {}
        while len(results) < len(requests):
            for result in self.step():
                results[result.request_id] = result
        return results

    @property
    def stats(self) -> EngineStats:
        return EngineStats(
            steps=self._steps,
            prefill_tokens=self._prefill_tokens,
            decode_tokens=self._decode_tokens,
            finished=self._finished,
            forward_seconds=self._forward_s,
            sampling_seconds=self._sampling_s,
            step_seconds=self._step_s,
            batch_sizes=dict(sorted(self._batch_sizes.items())),
            prefix_cache=self.prefix_cache.stats,
        )

    def _take_new_work(self) -> list[GenerationResult]:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            aborts, self._aborts = self._aborts, []
        refused: list[GenerationResult] = []
        for live in incoming:
            self._live[live.state.request_id] = live
            try:
                self.scheduler.add_request(live.state)
            except ValueError as exc:  # a custom scheduler's limit; fail this request only
                live.state.status = SequenceStatus.FINISHED
                live.state.finish_reason = FinishReason.ABORT
                refused.append(self._result(live.state, error=str(exc)))
        finished = [self._result(seq) for seq in self.scheduler.finish_requests(aborts)]
        return refused + finished

    def _run(self, output: SchedulerOutput) -> dict[str, int]:
        llm, cfg = self.llm, self.llm.config
        items = []
        states = [self._live[item.request_id] for item in output.sequences]
        for item, live in zip(output.sequences, states, strict=True):
            if item.is_prefill:
                live.kv = SequenceKV(
                    cfg.num_layers,
                    cfg.num_kv_heads,
                    cfg.head_dim,
                    live.state.kv_tokens,
                    llm.dtype,
                    llm.device,
                )
                if item.cached_prefix:
                    loaded = self.prefix_cache.load(live.state.prompt_ids, live.kv)
                    if loaded != item.cached_prefix:
                        raise RuntimeError(
                            f"prefix cache gave {loaded} tokens, {item.cached_prefix} expected"
                        )
            assert live.kv is not None and live.kv.length == item.start_position
            items.append((item.token_ids, item.start_position, live.kv))
        began = time.perf_counter()
        with torch.inference_mode():
            logits = llm.model(pack(items, PREFILL_CHUNK, llm.device))
            for tokens, start, kv in items:
                kv.length = start + len(tokens)
            sampling = time.perf_counter()
            chosen = next_tokens(
                logits,
                [live.request.temperature for live in states],
                [live.request.seed for live in states],
                [len(live.state.output_ids) for live in states],
            )
        self._forward_s += sampling - began
        self._sampling_s += time.perf_counter() - sampling
        self._prefill_tokens += output.num_prefill_tokens
        self._decode_tokens += output.num_tokens - output.num_prefill_tokens
        for item, live in zip(output.sequences, states, strict=True):
            if item.is_prefill and live.kv is not None and self.config.prefix_cache_tokens > 0:
                self.prefix_cache.store(live.state.prompt_ids, live.kv)
        return {
            item.request_id: token for item, token in zip(output.sequences, chosen, strict=True)
        }

    def _emit(self, live: _Live, token: int, now: float, last: bool) -> None:
        if live.first_token is None:
            live.first_token = now
        live.token_times.append(now)
        piece = live.detokenizer.push(token)
        if last:
            piece += live.detokenizer.flush()
        if live.on_token is not None:
            try:
                live.on_token(live.state.request_id, token, piece)
            except Exception:
                log.exception("on_token callback of %s failed", live.state.request_id)

    def _result(self, seq: SequenceState, error: str | None = None) -> GenerationResult:
        live = self._live.pop(seq.request_id)
        live.kv = None
        with self._lock:
            self._ids.discard(seq.request_id)
        self._finished += 1
        assert seq.finish_reason is not None
        return GenerationResult(
            request_id=seq.request_id,
            prompt_ids=seq.prompt_ids,
            token_ids=tuple(seq.output_ids),
            text=self.llm.text(seq.output_ids),
            finish_reason=seq.finish_reason,
            cached_prompt_tokens=seq.cached_prefix,
            arrival_time=live.arrival,
            first_token_time=live.first_token,
            finish_time=time.perf_counter(),
            token_times=tuple(live.token_times),
            error=error,
        )


@dataclass(frozen=True)
class TokenEvent:
    """One streamed token: its id, its text piece, and its index in the output."""

    request_id: str
    index: int
    token_id: int
    text: str


class TokenStream:
    """Iterate over a request's tokens as they are generated; ``result()`` gives the end."""

    def __init__(self) -> None:
        self.events: queue.Queue[TokenEvent | None] = queue.Queue()
        self._future: Future[GenerationResult] | None = None
        self._count = 0

    def attach(self, future: Future[GenerationResult]) -> None:
        """Follow ``future``: iteration ends when it is done."""
        self._future = future
        future.add_done_callback(lambda _f: self.events.put(None))

    def on_token(self, request_id: str, token_id: int, text: str) -> None:
        self.events.put(TokenEvent(request_id, self._count, token_id, text))
        self._count += 1

    def __iter__(self) -> Iterator[TokenEvent]:
        while (event := self.events.get()) is not None:
            yield event

    def result(self, timeout: float | None = None) -> GenerationResult:
        if self._future is None:
            raise RuntimeError("the stream is not attached to a request")
        return self._future.result(timeout)


class EngineLoop:
    """Runs an LLMEngine on a background thread; submit from any thread or event loop.

    ``submit`` returns a Future of the GenerationResult (failing with GenerationError if the
    engine failed the request, EngineClosedError if the loop closed first); ``stream`` and
    ``astream`` also yield the tokens as they come.
    """

    def __init__(
        self, engine: LLMEngine, idle_wait_s: float = 0.05, torch_threads: int | None = None
    ) -> None:
        self.engine = engine
        self._idle_wait_s = idle_wait_s
        #: intra-op threads for the forward passes, set on the engine thread itself (OpenMP
        #: settings do not carry over from the thread that set them); None: leave as is
        self._torch_threads = torch_threads
        self._futures: dict[str, Future[GenerationResult]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        self._thread.start()

    def submit(
        self, request_id: str, request: GenerationRequest, on_token: TokenCallback | None = None
    ) -> Future[GenerationResult]:
        """Queue a request; InvalidInput / DuplicateRequestError are raised here."""
        future: Future[GenerationResult] = Future()
        with self._lock:
            if self._closed.is_set():
                raise EngineClosedError()
            if request_id in self._futures:
                raise DuplicateRequestError(request_id)
            self._futures[request_id] = future
        try:
            self.engine.add_request(request_id, request, on_token)
        except BaseException:
            with self._lock:
                self._futures.pop(request_id, None)
            raise
        return future

    def stream(self, request_id: str, request: GenerationRequest) -> TokenStream:
        """Submit and get a TokenStream (a blocking iterator of TokenEvent)."""
        stream = TokenStream()
        stream.attach(self.submit(request_id, request, stream.on_token))
        return stream

    async def astream(
        self, request_id: str, request: GenerationRequest
    ) -> AsyncIterator[TokenEvent]:
        """Async iterator of TokenEvent for an asyncio caller (a server-sent-events route)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[TokenEvent | None] = asyncio.Queue()
        count = 0

        def on_token(rid: str, token_id: int, text: str) -> None:
            nonlocal count
            loop.call_soon_threadsafe(events.put_nowait, TokenEvent(rid, count, token_id, text))
            count += 1

        future = self.submit(request_id, request, on_token)
        future.add_done_callback(lambda _f: loop.call_soon_threadsafe(events.put_nowait, None))
        while (event := await events.get()) is not None:
            yield event
        future.result()  # raise the engine's error, if any

    def abort(self, request_id: str) -> None:
        self.engine.abort_request(request_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop; unfinished requests fail with EngineClosedError."""
        with self._lock:
            self._closed.set()
        self.engine.wake()
        self._thread.join(timeout)
        with self._lock:
            pending, self._futures = self._futures, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(EngineClosedError())

    def __enter__(self) -> EngineLoop:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        while not self._closed.is_set():
            if not self.engine.has_unfinished_requests():
                self.engine.wait_for_work(self._idle_wait_s)
                continue
            try:
                results = self.engine.step()
            except Exception:
                log.exception("LLM engine loop step failed")
                self._fail_all("the engine step raised; see the worker log")
                continue
            for result in results:
                self._complete(result)

    def _complete(self, result: GenerationResult) -> None:
        with self._lock:
            future = self._futures.pop(result.request_id, None)
        if future is None or future.done():
            return
        if result.error is not None:
            future.set_exception(GenerationError(result.request_id, result.error))
        else:
            future.set_result(result)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            pending, self._futures = self._futures, {}
        for request_id, future in pending.items():
            self.engine.abort_request(request_id)  # the next step drops its state
            if not future.done():
                future.set_exception(GenerationError(request_id, reason))


def generate(
    llm: LoadedLLM, requests: Sequence[GenerationRequest], config: EngineConfig | None = None
) -> list[GenerationResult]:
    """Generate for ``requests`` together in a fresh engine; results in the same order."""
    engine = LLMEngine(llm, config)
    results = engine.run_to_completion({str(i): r for i, r in enumerate(requests)})
    return [results[str(i)] for i in range(len(requests))]
