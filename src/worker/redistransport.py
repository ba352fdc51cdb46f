"""kombu's Redis transport, hardened against one crash seen when the broker restarts.

When Redis goes away, Celery's consumer releases the broker connection; closing the channel
then tries to put its unacknowledged messages back (``restore_unacked``), which needs a new
Redis client — but the connection's ``client`` is already ``None`` by then, so kombu 5.7
fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``. That is not
one of the transport's connection errors, so Celery calls it unrecoverable and the worker
exits, leaving its jobs to the node's lease sweeper. Seen in
``tests/faults/test_worker_faults.py::test_broker_restarts_lose_no_job``.

Here the same situation raises Redis's own ``ConnectionError`` instead: kombu ignores it
while closing, the worker reconnects when the broker is back, and the messages it held stay
in the broker's unacked set, restored after the visibility timeout (and the node re-queues
what its lease says is unfinished anyway; tasks are idempotent).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel


def register() -> None:
    """Make ``redis://`` (and ``rediss://``) URLs use this transport."""
    TRANSPORT_ALIASES["redis"] = "worker.redistransport:Transport"
    TRANSPORT_ALIASES["rediss"] = "worker.redistransport:Transport"
