"""The settlement service on a real chain: it finalizes after the window and expires what is
overdue, in batches; killed between "nonce assigned" and "sent", it resumes without sending
anything twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.crypto import keccak

from market.chain.client import ChainClient
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import JobRequest, JobStatus, Segment
from market.db import Base, make_engine, make_sessions
from market.db.txstore import ChainTx
from market.settlement import Settler

from ..conftest import Chain

pytestmark = pytest.mark.integration


class Killed(BaseException):
    pass


def settler(chain: Chain, db: Path) -> Settler:
    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[ChainTx.__tablename__]])
    client = ChainClient(chain.anvil.rpc_url, chain.client(5).account.key.to_0x_hex())  # type: ignore[union-attr]
    return Settler(Market(client, chain.deployment), TxManager(client, make_sessions(engine)))


def test_settler_killed_before_send_resumes_without_a_double_send(
    chain: Chain, tmp_path: Path
) -> None:
    deployer, node, agent = chain.market(0), chain.market(1), chain.market(6)
    model_id = deployer.register_model(keccak(b"m"), 16, "", [Segment(keccak(b"s"))])
    node.register_node(5 * 10**18)
    node.set_model_price(model_id, 10**15)
    now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
    data = b"\x01\x00\x00" + (1).to_bytes(8, "big")
    req = JobRequest(
        model_id=model_id,
        input_hash=keccak(data),
        input=data,
        max_fee=2 * 10**15,
        deadline=now + 600,
    )
    done = agent.submit_jobs([req] * 6)
    overdue = agent.submit_jobs([JobRequest(**{**req.__dict__, "deadline": now + 30})] * 3)
    node.claim_jobs(done + overdue[:1])
    node.commit_results(done, [keccak(data)] * 6, [data] * 6, [""] * 6)
    chain.warp(700)  # past every window and deadline

    db = tmp_path / "settler.sqlite"
    first = settler(chain, db)

    def die(*_: object) -> None:
        raise Killed  # the process dies with the nonce assigned and the bytes signed

    first.txm._broadcast = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        first.settle_once()
    sender = first.txm.sender
    w3 = chain.client(0).w3
    assert w3.eth.get_transaction_count(sender) == 0
    assert all(agent.job(j).status == JobStatus.COMMITTED for j in done)

    second = settler(chain, db)  # restarted: finishes the signed transaction, then the rest
    while second.txm.pending_count():
        second.txm.step()
    second.settle_once()
    assert all(agent.job(j).status == JobStatus.SETTLED for j in done)
    assert all(agent.job(j).status == JobStatus.EXPIRED for j in overdue)
    # one finalizeMany (the resumed one) and one expireMany: two transactions, no more
    assert w3.eth.get_transaction_count(sender) == 2
    assert second.settle_once() == 0
    assert w3.eth.get_transaction_count(sender) == 2
    assert agent.total_escrow() == 0
