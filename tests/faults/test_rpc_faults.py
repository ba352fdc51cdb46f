"""The node and the settlement service talk to the chain through a proxy that fails 30 % of
calls (timeouts after the request went through, HTTP 429, "too many results"): every job
still settles, no event is missed, and no transaction is sent twice."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.chain.types import JobStatus

from ..conftest import Chain
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


def test_node_and_settler_converge_through_a_faulty_rpc(
    chain: Chain, tmp_path: Path, prefix: str
) -> None:
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
        try:
            ids = stack.submit_digits(30)
            statuses = stack.wait_terminal(ids, timeout=240)
            assert Counter(statuses.values()) == {JobStatus.SETTLED: len(ids)}
        finally:
            stack.stop()
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
