"""DynamicBatcher with real threads: batch limits, flushing, isolation, draining.

No test asserts a timing: waits are bounded by generous timeouts and batches are held back
with a large ``max_wait_ms`` where a test needs them to fill up.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import wait as wait_futures

import pytest

from worker.batcher import BatcherClosedError, DynamicBatcher

TIMEOUT = 30.0  # seconds; only reached if something is broken
NEVER_MS = 600_000.0  # a max_wait no test waits out


class Recorder:
    """A run_batch that records every call and can be held at a gate."""

    def __init__(self, poison: object = None) -> None:
        self.calls: list[tuple[str, list[object]]] = []
        self.lock = threading.Lock()
        self.poison = poison
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, key: str, items: list[object]) -> list[object]:
        with self.lock:
            self.calls.append((key, list(items)))
        self.entered.set()
        assert self.gate.wait(TIMEOUT)
        if self.poison is not None and self.poison in items:
            raise ValueError(f"poisoned by {self.poison!r}")
        return [(key, item) for item in items]

    def sizes(self, key: str | None = None) -> list[int]:
        with self.lock:
            return [len(items) for k, items in self.calls if key is None or k == key]


def results(futures: list[Future[object]]) -> list[object]:
    return [f.result(timeout=TIMEOUT) for f in futures]


def test_batches_never_exceed_max_batch() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=4, max_wait_ms=NEVER_MS)
    futures = [batcher.submit("m", i) for i in range(10)]
    # Two full batches go at once; the last two wait until close drains them.
    wait_futures(futures[:8], timeout=TIMEOUT)
    assert all(f.done() for f in futures[:8])
    assert not futures[8].done()
    batcher.close()
    assert results(futures) == [("m", i) for i in range(10)]
    assert run.sizes() == [4, 4, 2]
    stats = batcher.stats()
    assert stats.batch_sizes == {4: 2, 2: 1}
    assert (stats.batches, stats.items, stats.failed_items) == (3, 10, 0)


def test_partial_batch_is_flushed_after_max_wait() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=100, max_wait_ms=5)
    try:
        futures = [batcher.submit("m", i) for i in range(3)]
        assert results(futures) == [("m", 0), ("m", 1), ("m", 2)]
        assert sum(run.sizes()) == 3
        assert max(run.sizes()) < 100
    finally:
        batcher.close()


def test_items_keep_submission_order_within_a_batch() -> None:
    run = Recorder()
    with DynamicBatcher(run, max_batch=5, max_wait_ms=NEVER_MS) as batcher:
        futures = [batcher.submit("m", i) for i in range(5)]
        assert results(futures) == [("m", i) for i in range(5)]
    assert run.calls == [("m", [0, 1, 2, 3, 4])]


def test_keys_are_never_mixed() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=8, max_wait_ms=1)
    futures = {key: [batcher.submit(key, f"{key}-{i}") for i in range(50)] for key in "abc"}
    for key, fs in futures.items():
        assert results(fs) == [(key, f"{key}-{i}") for i in range(50)]
    batcher.close()
    for key, items in run.calls:
        assert items
        assert all(str(item).startswith(f"{key}-") for item in items)


def test_a_poison_item_fails_alone() -> None:
    run = Recorder(poison="bad")
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=4, max_wait_ms=NEVER_MS)
    futures = [batcher.submit("m", item) for item in ["a", "bad", "c", "d"]]
    with pytest.raises(ValueError, match="poisoned"):
        futures[1].result(timeout=TIMEOUT)
    assert [futures[i].result(timeout=TIMEOUT) for i in (0, 2, 3)] == [
        ("m", "a"),
        ("m", "c"),
        ("m", "d"),
    ]
    batcher.close()
    # the batch of four failed, then each item ran alone
    assert run.sizes() == [4, 1, 1, 1, 1]
    stats = batcher.stats()
    assert (stats.split_batches, stats.failed_items, stats.items) == (1, 1, 4)


def test_a_failing_single_item_is_not_retried() -> None:
    run = Recorder(poison="bad")
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=4, max_wait_ms=0)
    with pytest.raises(ValueError):
        batcher.submit("m", "bad").result(timeout=TIMEOUT)
    batcher.close()
    assert run.sizes() == [1]


def test_wrong_number_of_results_fails_the_futures() -> None:
    def short(key: str, items: list[int]) -> list[int]:
        return items[:-1]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(short, max_batch=2, max_wait_ms=NEVER_MS)
    futures = [batcher.submit("m", i) for i in range(2)]
    for future in futures:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
            future.result(timeout=TIMEOUT)
    batcher.close()


def test_close_drains_queued_items_and_refuses_new_ones() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=3, max_wait_ms=NEVER_MS)
    futures = [batcher.submit(key, i) for key in ("x", "y") for i in range(4)]
    batcher.close()
    assert all(f.done() for f in futures)
    assert results(futures) == [(key, i) for key in ("x", "y") for i in range(4)]
    assert sorted(run.sizes("x")) == [1, 3]
    assert batcher.pending() == 0
    with pytest.raises(BatcherClosedError):
        batcher.submit("x", 99)
    batcher.close()  # idempotent


def test_close_waits_for_the_batch_in_flight() -> None:
    run = Recorder()
    run.gate.clear()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=1, max_wait_ms=0)
    first = batcher.submit("m", 1)
    assert run.entered.wait(TIMEOUT)
    second = batcher.submit("m", 2)  # queued behind the held batch
    closer = threading.Thread(target=batcher.close)
    closer.start()
    run.gate.set()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert results([first, second]) == [("m", 1), ("m", 2)]


def test_a_cancelled_item_never_runs() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=3, max_wait_ms=NEVER_MS)
    keep = batcher.submit("m", "keep")
    dropped = batcher.submit("m", "drop")
    assert dropped.cancel()
    batcher.close()
    assert keep.result(timeout=TIMEOUT) == ("m", "keep")
    with pytest.raises(CancelledError):
        dropped.result(timeout=TIMEOUT)
    assert run.calls == [("m", ["keep"])]
    assert batcher.stats().cancelled == 1


def test_concurrent_submitters_all_get_their_own_results() -> None:
    run = Recorder()
    batcher: DynamicBatcher[object, object] = DynamicBatcher(run, max_batch=16, max_wait_ms=2)
    collected: dict[int, list[Future[object]]] = {}
    start = threading.Barrier(8)

    def submitter(worker: int) -> None:
        start.wait(TIMEOUT)
        collected[worker] = [batcher.submit(f"k{worker % 2}", (worker, i)) for i in range(200)]

    threads = [threading.Thread(target=submitter, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    for worker, futures in collected.items():
        assert results(futures) == [(f"k{worker % 2}", (worker, i)) for i in range(200)]
    batcher.close()
    stats = batcher.stats()
    assert stats.items == 1600
    assert sum(size * n for size, n in stats.batch_sizes.items()) == 1600
    assert max(stats.batch_sizes) <= 16
    assert stats.mean_batch_size >= 1.0


@pytest.mark.parametrize(("max_batch", "max_wait_ms"), [(0, 1.0), (1, -1.0)])
def test_bad_settings_are_refused(max_batch: int, max_wait_ms: float) -> None:
    with pytest.raises(ValueError):
        DynamicBatcher(lambda key, items: items, max_batch, max_wait_ms)
