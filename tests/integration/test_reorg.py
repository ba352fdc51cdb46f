"""Reorg awareness on a real anvil: the monitor measures each reorg's depth and raises the
alarm above K confirmations; the transaction manager re-sends what a reorg dropped, with the
same nonce and bytes, and never sends anything twice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from eth_account import Account

from market.chain.client import ChainClient
from market.chain.reorg import ReorgMonitor, read_metrics
from market.db.txstore import ChainTx, TxState

from ..conftest import Chain
from .test_txmanager import fresh_key, manager

pytestmark = pytest.mark.integration


def mine(chain: Chain, n: int) -> None:
    chain.rpc("anvil_mine", hex(n))


def reorg(chain: Chain, depth: int) -> None:
    """Replace the last ``depth`` blocks with a branch that surely differs: a transfer from
    key 8 goes into its first block (empty blocks re-mined in the same second could come
    back with the same hashes)."""
    c = chain.client(8)
    tx = {
        "to": Account.create().address,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "nonce": c.w3.eth.get_transaction_count(c.address),
        "chainId": c.chain_id,
        "type": 2,
    }
    raw = c.account.sign_transaction(tx).raw_transaction  # type: ignore[union-attr]
    chain.rpc("anvil_reorg", depth, [["0x" + bytes(raw).hex(), 0]])


def test_monitor_measures_each_reorg_and_alerts_only_above_k(
    chain: Chain, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = tmp_path / "metrics" / "test.prom"
    mon = ReorgMonitor(chain.client(0), "test", confirmations=4, metrics_path=metrics)
    mine(chain, 8)
    assert mon.check() is None
    mine(chain, 3)
    assert mon.check() is None  # new blocks on top are no reorg
    with caplog.at_level(logging.WARNING, logger="market.chain.reorg"):
        for depth in (1, 2, 3, 4, 5, 7):
            head = chain.client(0).block_number()
            reorg(chain, depth)
            found = mon.check()
            assert found is not None, depth
            assert (found.depth, found.ancestor) == (depth, head - depth)
            assert found.deep is (depth > 4)
            assert mon.check() is None  # reported once
            mine(chain, 2)
            assert mon.check() is None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("ALERT test" in r.getMessage() for r in errors)
    assert read_metrics(metrics) == {
        "verimarket_reorgs_total": 6,
        "verimarket_deep_reorgs_total": 2,
        "verimarket_reorg_max_depth": 7,
        "verimarket_confirmations": 4,
    }


def test_monitor_notices_a_reorg_of_a_block_only_a_service_saw(chain: Chain) -> None:
    """The service read block n before the monitor recorded it; a reorg then replaced n
    and the monitor recorded the new one: the conflicting observation still counts."""
    client = chain.client(0)
    mon = ReorgMonitor(client, "test", confirmations=4)
    mine(chain, 3)
    mon.check()
    mine(chain, 1)
    head = client.block_number()
    seen = client.w3.eth.get_block(head)["hash"]
    reorg(chain, 1)
    assert mon.check() is None  # it only knows the new block so far ...
    mon.observe(head, bytes(seen))  # ... until the service reports what it acted on
    found = mon.check()
    assert found is not None and found.ancestor == head - 1 and found.depth == 1


def test_txmanager_resends_what_a_reorg_dropped_once_with_the_same_nonce(
    chain: Chain, tmp_path: Path
) -> None:
    key = fresh_key(chain)
    txm = manager(chain, key, tmp_path / "tx.sqlite")
    mon = ReorgMonitor(txm.client, "test", confirmations=12)
    txm.observer = mon.observe
    mon.check()
    sink = Account.create().address
    first = [txm.send(sink, b"", value=v, key=f"pay-{v}") for v in (1, 2, 3, 4)]
    assert all(r.ok for r in first)
    w3 = chain.client(0).w3
    sender = txm.sender
    # drop the last 3 blocks (pay-2..pay-4) but mine pay-2 again one block later
    raw2 = chain.rpc("eth_getRawTransactionByHash", first[1].tx_hash)
    chain.rpc("anvil_reorg", 3, [[raw2, 1]])
    assert w3.eth.get_transaction_count(sender) == 2
    found = mon.check()
    assert found is not None and found.depth == 3
    assert txm.reorged(found.ancestor) == 2  # pay-3 and pay-4; pay-2 was mined again
    assert txm.reorged_total == 2
    while txm.pending_count():
        txm.step()
    assert ChainClient(chain.anvil.rpc_url).balance(sink) == 1 + 2 + 3 + 4
    assert w3.eth.get_transaction_count(sender) == 4
    with txm.sessions() as s:
        rows = list(s.query(ChainTx).order_by(ChainTx.nonce))
    assert [r.state for r in rows] == [TxState.CONFIRMED] * 4
    assert [r.nonce for r in rows] == [0, 1, 2, 3]
    for row, before in zip(rows, first, strict=True):
        assert row.tx_hash == before.tx_hash  # the same signed bytes, not a new transaction
        receipt = w3.eth.get_transaction_receipt(row.tx_hash)
        assert receipt["blockNumber"] == row.block_number and receipt["status"] == 1
    assert rows[1].block_number == (first[1].block_number or 0) + 1  # mined one block later


def test_monitor_notices_a_reorg_below_blocks_recorded_after_it(chain: Chain) -> None:
    """The race the quick path alone would miss: the service saw block n, then the chain
    replaced n and grew, and the monitor recorded the new blocks above n before comparing
    (it happens when a reorg lands in the middle of a check): a new block whose parent is
    not the n it knows is a reorg too."""
    client = chain.client(0)
    mon = ReorgMonitor(client, "test", confirmations=4)
    mine(chain, 3)
    mon.check()
    mine(chain, 1)
    n = client.block_number()
    mon.observe(n, bytes(client.w3.eth.get_block(n)["hash"]))
    reorg(chain, 1)
    mine(chain, 2)
    with mon._lock:  # the end of a check that compared before the reorg: record what is new
        mon._record_up_to(client.block_number())
    found = mon.check()
    assert found is not None and (found.ancestor, found.depth) == (n - 1, 1)
