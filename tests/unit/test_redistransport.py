"""The hardened Redis transport: a channel closed after its connection was released raises
an error kombu treats as a lost connection (ignored while closing), not an AttributeError
that Celery calls unrecoverable (the worker would exit)."""

from __future__ import annotations

import pytest
from kombu import Connection

from worker import redistransport


def test_redis_urls_use_the_hardened_transport() -> None:
    redistransport.register()
    conn = Connection("redis://127.0.0.1:6379/0")
    assert isinstance(conn.transport, redistransport.Transport)
    assert conn.transport.Channel is redistransport.Channel


def test_released_connection_raises_a_connection_error() -> None:
    redistransport.register()
    conn = Connection("redis://127.0.0.1:6379/0")
    channel = conn.channel()
    try:
        channel.connection.client = None  # what release() leaves behind during a broker restart
        with pytest.raises(conn.connection_errors):
            channel._connparams()
    finally:
        conn.release()
