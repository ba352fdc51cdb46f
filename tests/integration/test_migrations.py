"""Alembic migrations against SQLite and a real PostgreSQL: upgrade, downgrade, and the models
agree with the migration (autogenerate finds nothing to do)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import market.db.txstore  # noqa: F401  (chain_transactions belongs to the schema)
from market.cli_index import alembic_config, app, upgrade
from market.db import Base, make_engine
from market.db.models import Node

from ..pg import pg_databases_fixture, pg_server_fixture  # noqa: F401

pytestmark = pytest.mark.integration

TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'market.sqlite'}"
    make: Callable[[], str] = request.getfixturevalue("pg_databases")
    return make()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_matches_the_models(db_url: str) -> None:
    res = CliRunner().invoke(app, ["db", "upgrade", "--database-url", db_url])
    assert res.exit_code == 0, res.output
    assert _tables(db_url) == TABLES | {"alembic_version"}
    assert _diff(db_url, Base.metadata) == []
    # the comparison is not blind: a column the migration lacks shows up
    extra = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(extra)
    extra.tables["jobs"].append_column(Column("not_migrated", Integer))
    assert any("not_migrated" in repr(d) for d in _diff(db_url, extra))


def test_upgrade_is_idempotent_and_downgrade_removes_everything(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "base")
    assert _tables(db_url) <= {"alembic_version"}
    upgrade(db_url)
    assert _tables(db_url) == TABLES | {"alembic_version"}


def test_wei_amounts_are_exact_and_ordered_on_both_backends(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    amounts = [2**256 - 1, 10**18, 9, 2**96 + 1, 0]
    try:
        with Session(engine) as s, s.begin():
            for i, amount in enumerate(amounts):
                s.add(Node(address=f"0x{i:040x}", stake=amount, updated_block=1))
        with Session(engine) as s:
            got = s.scalars(select(Node.stake).order_by(Node.stake)).all()
            big = s.scalars(select(Node.stake).where(Node.stake > 10**18)).all()
        assert got == sorted(amounts)
        assert sorted(big) == [2**96 + 1, 2**256 - 1]
    finally:
        engine.dispose()


def test_upgrade_of_an_unreachable_database_says_so() -> None:
    res = CliRunner().invoke(
        app, ["db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:9/none"]
    )
    assert res.exit_code == 1
    assert "cannot migrate the database" in res.output
