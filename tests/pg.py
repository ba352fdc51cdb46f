"""PostgreSQL fixtures: a throw-away database per use on a real server.

The server is ``VERIMARKET_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
an existing database used only to create and drop others). Each database is named
``vm_<uuid>`` and dropped (connections forced closed) when the test ends. Without a reachable
server the tests that need one fail with a message that says so: PostgreSQL is a required
part of the test setup, never silently skipped.

Import the fixtures into a test module (they register under the names ``pg_server``,
``pg_databases`` and ``pg_url``)::

    from ..pg import pg_databases_fixture, pg_server_fixture  # noqa: F401
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ADMIN_URL = os.environ.get("VERIMARKET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _admin_engine() -> Engine:
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server (plain ``postgresql://`` form)."""
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database() -> str:
    """Create an empty ``vm_<uuid>`` database; returns its URL."""
    name = f"vm_{uuid.uuid4().hex}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return database_url(name)


def drop_database(url: str) -> None:
    """Drop the database at ``url`` (closing its connections first)."""
    name = make_url(url).database
    assert name and name.startswith("vm_"), f"refusing to drop {name!r}"
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> str:
    """The admin URL of a reachable server; the tests fail (never skip) without one."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL not reachable at {ADMIN_URL}: {exc.orig}. These tests need a real "
            "server (README: PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)."
        )
    finally:
        engine.dispose()
    return ADMIN_URL


@pytest.fixture(name="pg_databases")
def pg_databases_fixture(pg_server: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases (URLs); every one is dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(create_database())
        return made[-1]

    try:
        yield make
    finally:
        for url in made:
            drop_database(url)


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_databases: Callable[[], str]) -> str:
    """One fresh, empty database for the test."""
    return pg_databases()
