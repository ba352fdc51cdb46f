"""Token streams of generative jobs: what a worker publishes while it generates, and what the
API's ``GET /jobs/{id}/stream`` relays to the requester as server-sent events.

One Redis stream per job, ``<prefix>verimarket:tokens:<job id>`` (the prefix is the
deployment's ``VERIMARKET_BROKER_PREFIX``), each entry one JSON event in the field ``data``:

- ``{"event": "token", "job_id", "index", "token_id", "text"}`` — the ``index``-th generated
  token and the text it completes (empty while a UTF-8 character is incomplete);
- ``{"event": "done", "job_id", "token_ids", "text", "result_hash", "finish_reason"}`` — the
  worker's canonical result (what the node then commits on chain);
- ``{"event": "error", "job_id", "reason"}`` — this attempt produced no result.

A Redis stream rather than pub/sub: a client that connects late (or reconnects) still gets
every token from the first one, and the entries expire ``ttl_s`` after the last write. A
redelivered job runs again and writes the same tokens again (greedy and seeded sampling are
deterministic); readers keep only the next index they expect, so they see each token once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger(__name__)

KEY_FORMAT = "{prefix}verimarket:tokens:{job_id}"
#: Longest stream kept (approximately): 256 tokens at most per job, plus start/done events
#: of a few redeliveries.
MAX_ENTRIES = 2048


def stream_key(prefix: str, job_id: int) -> str:
    return KEY_FORMAT.format(prefix=prefix, job_id=job_id)


def token_event(job_id: int, index: int, token_id: int, text: str) -> dict[str, Any]:
    return {"event": "token", "job_id": job_id, "index": index, "token_id": token_id, "text": text}


def done_event(
    job_id: int, token_ids: Sequence[int], text: str, result_hash: str, finish_reason: str
) -> dict[str, Any]:
    return {
        "event": "done",
        "job_id": job_id,
        "token_ids": list(token_ids),
        "text": text,
        "result_hash": result_hash,
        "finish_reason": finish_reason,
    }


def error_event(job_id: int, reason: str) -> dict[str, Any]:
    return {"event": "error", "job_id": job_id, "reason": reason}


def parse_entry(fields: dict[bytes, bytes]) -> dict[str, Any] | None:
    """One stream entry's event, or None when it is not one of ours."""
    raw = fields.get(b"data")
    if raw is None:
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


@dataclass
class _Item:
    key: str
    event: dict[str, Any]


class TokenPublisher:
    """Writes events to the job streams from a background thread.

    ``publish`` never blocks and never raises: it is called on the LLM engine's thread once
    per token, and a slow or unreachable Redis must not stall the batch (events are then
    dropped and logged; the result on chain is unaffected).
    """

    def __init__(
        self, url: str, prefix: str = "", ttl_s: int = 3600, max_queue: int = 100_000
    ) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._queue: queue.Queue[_Item | None] = queue.Queue(max_queue)
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="token-publisher", daemon=True)
        self._thread.start()

    def publish(self, job_id: int, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(_Item(stream_key(self.prefix, job_id), event))
        except queue.Full:
            self._dropped += 1
            if self._dropped in (1, 10, 100) or self._dropped % 1000 == 0:
                log.warning("token stream queue full: %d events dropped", self._dropped)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything published so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(_Item("", {"flush": done}))
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(5)
        self._redis.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 512:  # write what has piled up in one round trip
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            flushes = [b.event["flush"] for b in batch if b is not None and not b.key]
            items = [b for b in batch if b is not None and b.key]
            if items:
                self._write(items)
            for f in flushes:
                f.set()
            if any(b is None for b in batch):
                return

    def _write(self, items: list[_Item]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for it in items:
                pipe.xadd(
                    it.key,
                    {"data": json.dumps(it.event, separators=(",", ":"))},
                    maxlen=MAX_ENTRIES,
                    approximate=True,
                )
            for key in {it.key for it in items}:
                pipe.expire(key, self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not write %d token events: %s", len(items), exc)
