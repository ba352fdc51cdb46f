"""The node, the settlement service and the indexer talk to the chain through a proxy that
fails 30 % of calls (timeouts after the request went through, HTTP 429, "too many results"):
every job still settles, no event is missed (the indexer's database equals a fresh index of
the chain read without faults), and no transaction is sent twice."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from market.chain.client import ChainClient
from market.chain.types import JobStatus
from market.cli_index import upgrade
from market.db import make_engine
from market.db.models import IndexerCursor, Job, RawEvent
from market.indexer import Indexer, IndexerConfig, dump
from market.procs import spawn, verimarket_argv

from ..conftest import Chain
from ..pg import pg_databases_fixture, pg_server_fixture  # noqa: F401
from ..stack import REDIS_URL, redis_prefix, start_node_stack
from .rpc_proxy import FaultPlan, RpcFaultProxy

pytestmark = pytest.mark.e2e


@pytest.fixture()
def prefix() -> Iterator[str]:
    yield from redis_prefix()


def sent_nonces(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return sorted(
            r[0]
            for r in conn.execute("select nonce from chain_transactions where nonce is not null")
        )


def indexed_block(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as s:
            return max(s.scalars(select(IndexerCursor.block)), default=-1)
    finally:
        engine.dispose()


def test_node_settler_and_indexer_converge_through_a_faulty_rpc(
    chain: Chain, tmp_path: Path, prefix: str, pg_databases: Callable[[], str]
) -> None:
    faulty_db, fresh_db = pg_databases(), pg_databases()
    plan = FaultPlan(rate=0.3, timeout_s=1.5)
    with RpcFaultProxy(chain.anvil.rpc_url, plan) as proxy:
        # the services read the RPC URL from the deployment file: point it at the proxy
        faulty = dataclasses.replace(chain.deployment, rpc_url=proxy.url)
        object.__setattr__(chain, "deployment", faulty)
        env = {
            "VERIMARKET_BROKER_URL": REDIS_URL,
            "VERIMARKET_BROKER_PREFIX": prefix,
            "VERIMARKET_RPC_TIMEOUT_S": "1",
            "VERIMARKET_TASK_LEASE_S": "3",
        }
        stack = start_node_stack(chain, tmp_path, env, workers=1)
        upgrade(faulty_db)
        indexer = spawn(  # the real `verimarket index`, reading the chain through the proxy
            "indexer",
            verimarket_argv(
                "index",
                "--deployment",
                str(tmp_path / "deployment.json"),
                "--poll",
                "0.2",
                "--max-backoff",  # 30 % of calls fail: a round of several calls often does
                "2",
            ),
            {**env, "VERIMARKET_DATABASE_URL": faulty_db, "VERIMARKET_HOME": str(tmp_path)},
            tmp_path / "logs",
        )
        stack.children.append(indexer)
        t0 = time.monotonic()
        try:
            ids = stack.submit_digits(30)
            statuses = stack.wait_terminal(ids, timeout=240)
            t_settled = time.monotonic() - t0
            assert Counter(statuses.values()) == {JobStatus.SETTLED: len(ids)}
            head, deadline = chain.client(0).block_number(), time.monotonic() + 60
            while indexed_block(faulty_db) < head:  # the indexer catches up on its own
                assert indexer.alive(), indexer.tail()
                assert time.monotonic() < deadline, f"indexer behind:\n{indexer.tail()}"
                time.sleep(0.2)
            t_indexed = time.monotonic() - t0
        finally:
            stack.stop()
    # 0 missed events: the index built through the faults equals a fresh one read directly
    upgrade(fresh_db)
    engine = make_engine(fresh_db)
    fresh = Indexer(ChainClient(chain.anvil.rpc_url), chain.deployment, engine, IndexerConfig())
    fresh.setup()
    fresh.sync()
    want, got_engine = dump(engine), make_engine(faulty_db)
    got = dump(got_engine)
    assert got.keys() == want.keys()
    for table in want:
        assert got[table] == want[table], f"table {table} differs from a fresh index"
    with Session(got_engine) as s:
        statuses_indexed = Counter(s.scalars(select(Job.status)))
        in_market = select(func.count()).where(RawEvent.contract == "JobMarket")
        market_events = s.scalar(in_market.select_from(RawEvent))
    engine.dispose()
    got_engine.dispose()
    assert statuses_indexed == {JobStatus.SETTLED: len(ids)}
    assert market_events == len(stack.events())
    print(
        f"\nsettled {len(ids)} jobs in {t_settled:.1f} s, indexer at the head "
        f"{t_indexed - t_settled:.1f} s later, {market_events} JobMarket events indexed; "
        f"faults injected {dict(plan.injected)}, {plan.forwarded} calls forwarded"
    )
    counts = Counter((e.name, int(e.args["jobId"])) for e in stack.events() if "jobId" in e.args)
    for j in ids:
        for name in ("JobClaimed", "ResultCommitted", "JobFinalized"):
            assert counts[(name, j)] == 1, (name, j)
    # no double sends: every nonce a key used belongs to exactly one transaction it recorded
    # (the node key's first two transactions are the test's own registration calls)
    w3 = chain.client(0).w3
    for key_index, db, before in (
        (1, tmp_path / "node.sqlite", 2),
        (2, tmp_path / "settler.sqlite", 0),
    ):
        used = w3.eth.get_transaction_count(chain.client(key_index).address)
        assert sent_nonces(db) == list(range(before, used)), db.name
    assert plan.injected["timeout"] > 0 and plan.injected["429"] > 0
    assert plan.injected["too-many"] > 0
