"""Dynamic batching of inference jobs: gather items per model, run them together.

Callers ``submit(key, item)`` from any thread and get a Future. Items with the same key
(the model name) are grouped into batches of at most ``max_batch``; a batch is dispatched
as soon as it is full, or when its oldest item has waited ``max_wait_ms``. Each key has its
own dispatch thread, so a slow model does not hold up another, and batches never mix keys.

Failure isolation: if ``run_batch`` raises for a batch of several items, every item is run
again on its own, so one bad input fails only its own future.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[str, list[T]], list[R]]


class BatcherClosedError(RuntimeError):
    """``submit`` was called after ``close``."""


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of what the batcher has done since it started.

    ``batches`` counts calls to ``run_batch`` (the one-by-one retries after a failed batch
    included) and ``batch_sizes`` is their histogram (size -> count). ``items`` counts items
    whose future was completed, ``failed_items`` those completed with an exception,
    ``split_batches`` the failed batches that were retried item by item, and ``cancelled``
    the items cancelled by their caller before they ran.
    """

    batches: int = 0
    items: int = 0
    failed_items: int = 0
    split_batches: int = 0
    cancelled: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch_size(self) -> float:
        total = sum(size * count for size, count in self.batch_sizes.items())
        return total / self.batches if self.batches else 0.0


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: Future[R]
    enqueued: float


class DynamicBatcher(Generic[T, R]):
    """Groups submitted items per key into batches and runs them on background threads.

    ``run_batch(key, items)`` must return one result per item, in order. It is called from
    the key's dispatch thread, never concurrently for the same key, possibly concurrently
    for different keys.
    """

    def __init__(self, run_batch: RunBatch[T, R], max_batch: int, max_wait_ms: float) -> None:
        """Create a batcher; threads start lazily, one per key, on the key's first submit.

        Raises ValueError if ``max_batch`` < 1 or ``max_wait_ms`` < 0.
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Pending[T, R]]] = {}
        self._wakeups: dict[str, threading.Condition] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False
        self._sizes: Counter[int] = Counter()
        self._counts: Counter[str] = Counter()

    def submit(self, key: str, item: T) -> Future[R]:
        """Queue ``item`` for the model ``key``; return the Future of its result.

        Contract: the future completes exactly once, with the item's result or with the
        exception that running it raised (after the one-by-one retry). It can be cancelled
        while still queued; it then never reaches ``run_batch``. Thread-safe. Raises
        BatcherClosedError once ``close`` has been called.
        """
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed; no more items are accepted")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._start_key(key)
            queue.append(_Pending(item, future, time.monotonic()))
            if len(queue) == 1 or len(queue) >= self.max_batch:
                self._wakeups[key].notify()
        return future

    def pending(self, key: str | None = None) -> int:
        """Items queued and not yet dispatched, for ``key`` or for all keys."""
        with self._lock:
            if key is not None:
                return len(self._queues.get(key, ()))
            return sum(len(q) for q in self._queues.values())

    def stats(self) -> BatcherStats:
        """A consistent snapshot of the counters (see BatcherStats)."""
        with self._lock:
            return BatcherStats(
                batches=sum(self._sizes.values()),
                items=self._counts["items"],
                failed_items=self._counts["failed"],
                split_batches=self._counts["split"],
                cancelled=self._counts["cancelled"],
                batch_sizes=dict(sorted(self._sizes.items())),
            )

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items, run everything already queued, and stop the threads.

        Contract: after ``close`` returns (without timeout) every future from ``submit`` is
        done. Queued items are dispatched at once, without waiting out ``max_wait_ms``, still
        in batches of at most ``max_batch``. Idempotent; must not be called from inside
        ``run_batch``. ``timeout`` bounds the wait for each key's thread (seconds).
        """
        with self._lock:
            self._closed = True
            for wakeup in self._wakeups.values():
                wakeup.notify_all()
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def __enter__(self) -> DynamicBatcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- dispatch thread -------------------------------------------------------------

    def _start_key(self, key: str) -> deque[_Pending[T, R]]:
        queue: deque[_Pending[T, R]] = deque()
        self._queues[key] = queue
        self._wakeups[key] = threading.Condition(self._lock)
        thread = threading.Thread(
            target=self._dispatch_loop, args=(key,), name=f"batcher-{key}", daemon=True
        )
        self._threads[key] = thread
        thread.start()
        return queue

    def _dispatch_loop(self, key: str) -> None:
        while True:
            batch = self._next_batch(key)
            if batch is None:
                return
            self._run(key, batch)

    def _next_batch(self, key: str) -> list[_Pending[T, R]] | None:
        """Wait until a batch is due (full, oldest item too old, or closing); take it."""
        queue, wakeup = self._queues[key], self._wakeups[key]
        with self._lock:
            while True:
                if queue:
                    waited = time.monotonic() - queue[0].enqueued
                    if len(queue) >= self.max_batch or self._closed or waited >= self.max_wait_s:
                        count = min(len(queue), self.max_batch)
                        return [queue.popleft() for _ in range(count)]
                    wakeup.wait(self.max_wait_s - waited)
                elif self._closed:
                    return None
                else:
                    wakeup.wait()

    def _run(self, key: str, batch: list[_Pending[T, R]]) -> None:
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if len(live) < len(batch):
            self._count("cancelled", len(batch) - len(live))
        if not live:
            return
        try:
            results = self._call(key, live)
        except Exception as exc:  # noqa: BLE001 - any failure goes to the items' futures
            if len(live) == 1:
                self._fail(live[0], exc)
                return
            self._count("split")
            for pending in live:
                self._run_alone(key, pending)
            return
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: fail, then stop
            for pending in live:
                self._fail(pending, exc)
            raise
        for pending, result in zip(live, results, strict=True):
            self._succeed(pending, result)

    def _run_alone(self, key: str, pending: _Pending[T, R]) -> None:
        try:
            (result,) = self._call(key, [pending])
        except Exception as exc:  # noqa: BLE001 - the item's own failure, to its future
            self._fail(pending, exc)
        else:
            self._succeed(pending, result)

    def _call(self, key: str, batch: list[_Pending[T, R]]) -> list[R]:
        with self._lock:
            self._sizes[len(batch)] += 1
        results = self._run_batch(key, [p.item for p in batch])
        if len(results) != len(batch):
            raise RuntimeError(
                f"run_batch for {key!r} returned {len(results)} results for {len(batch)} items"
            )
        return list(results)

    # Counters are updated before the future completes, so a caller that has its result
    # sees it counted in stats().
    def _succeed(self, pending: _Pending[T, R], result: R) -> None:
        self._count("items")
        pending.future.set_result(result)

    def _fail(self, pending: _Pending[T, R], error: BaseException) -> None:
        self._count("items")
        self._count("failed")
        pending.future.set_exception(error)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount
