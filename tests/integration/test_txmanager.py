"""The persisted transaction sender on a real anvil: nonces, crashes, gas bumps, reverts."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from eth_account import Account
from hexbytes import HexBytes

from market.chain.client import ChainClient
from market.chain.txmanager import GasPolicy, TxManager
from market.db import Base, make_engine, make_sessions
from market.db.txstore import ChainTx, TxState

from ..conftest import Chain

pytestmark = pytest.mark.integration


def fresh_key(chain: Chain) -> str:
    """A new key funded with 100 ETH (each test gets a clean nonce sequence)."""
    acct = Account.create()
    chain.client(9).send(to=acct.address, value=100 * 10**18, gas=21_000)
    return acct.key.to_0x_hex()


def manager(chain: Chain, key: str, db: Path, gas: GasPolicy | None = None) -> TxManager:
    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine, tables=[ChainTx.__table__])
    return TxManager(ChainClient(chain.anvil.rpc_url, key), make_sessions(engine), gas)


def test_concurrent_sends_get_gapless_nonces(chain: Chain, tmp_path: Path) -> None:
    key = fresh_key(chain)
    txm = manager(chain, key, tmp_path / "tx.sqlite")
    sink = Account.create().address
    results = []
    lock = threading.Lock()

    def send(i: int) -> None:
        res = txm.send(sink, b"", value=i + 1, key=f"pay-{i}")
        with lock:
            results.append(res)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    assert sorted(r.nonce for r in results) == list(range(40))
    assert chain.client(0).balance(sink) == sum(range(1, 41))
    # idempotent on its key: the same key does not send again
    again = txm.send(sink, b"", value=1, key="pay-0")
    assert again.nonce == next(r.nonce for r in results if r.id == again.id)
    assert chain.client(0).balance(sink) == sum(range(1, 41))


def test_crash_between_nonce_assignment_and_send_resumes_without_double_send(
    chain: Chain, tmp_path: Path
) -> None:
    key = fresh_key(chain)
    db = tmp_path / "tx.sqlite"
    first = manager(chain, key, db)
    sink = Account.create().address
    tx_id = first.enqueue(sink, b"", value=12345, key="once")

    class Killed(BaseException):
        pass

    def die(*_: object) -> None:
        raise Killed  # the process dies after the nonce and signed bytes were committed

    first._broadcast = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        first.step()
    with first.sessions() as s:
        row = s.get(ChainTx, tx_id)
        assert row is not None and row.state is TxState.SIGNED and row.nonce == 0
        signed_hash = row.tx_hash
    assert chain.client(0).balance(sink) == 0

    second = manager(chain, key, db)  # the restarted process
    res = second.wait(tx_id)
    assert res.ok and res.nonce == 0 and res.tx_hash == signed_hash
    assert chain.client(0).balance(sink) == 12345
    w3 = chain.client(0).w3
    assert w3.eth.get_transaction_count(second.sender) == 1  # one transaction, not two
    # a third process finds nothing left to do
    assert manager(chain, key, db).step() is False
    assert chain.client(0).balance(sink) == 12345


def test_stuck_transaction_is_bumped_by_at_least_20_percent_up_to_the_cap(
    chain: Chain, tmp_path: Path
) -> None:
    key = fresh_key(chain)
    cap = 8 * 10**9  # about a dozen bumps above the ~1 gwei start
    txm = manager(
        chain,
        key,
        tmp_path / "tx.sqlite",
        GasPolicy(bump_after_s=0.0, bump_percent=20, fee_cap_wei=cap),
    )
    sink = Account.create().address
    chain.rpc("evm_setAutomine", False)
    try:
        tx_id = txm.enqueue(sink, b"", value=7)
        fees = []
        for _ in range(20):
            txm.step()
            with txm.sessions() as s:
                row = s.get(ChainTx, tx_id)
                assert row is not None
                fees.append((int(row.max_fee_per_gas or 0), int(row.max_priority_fee_per_gas or 0)))
        hashes = list(row.all_hashes)
    finally:
        chain.rpc("evm_setAutomine", True)
    chain.rpc("evm_mine")
    res = txm.wait(tx_id)
    assert res.ok and res.tx_hash in hashes
    distinct = sorted(set(fees))
    assert len(distinct) >= 3
    for (f0, t0), (f1, t1) in itertools.pairwise(distinct):
        assert f1 >= f0 * 1.2 or f1 == cap
        assert t1 >= t0 * 1.2 or f1 == cap
    assert max(f for f, _ in fees) == cap, fees
    assert chain.client(0).balance(sink) == 7
    assert chain.client(0).w3.eth.get_transaction_count(txm.sender) == 1


def test_reverting_call_fails_with_decoded_error_and_uses_no_nonce(
    chain: Chain, tmp_path: Path
) -> None:
    key = fresh_key(chain)
    txm = manager(chain, key, tmp_path / "tx.sqlite")
    market = chain.market(0)
    data = HexBytes(market.jobs.functions.finalize(999)._encode_transaction_data())
    res = txm.send(chain.deployment.job_market, bytes(data))
    assert not res.ok and res.state is TxState.FAILED
    assert res.revert is not None and res.revert.name == "JobNotFound"
    assert res.revert.args_by_name == {"jobId": 999}
    assert res.nonce is None
    ok = txm.send(Account.create().address, b"", value=1)
    assert ok.ok and ok.nonce == 0


def test_gas_spike_and_dropped_transaction_settle_within_bounded_blocks(
    chain: Chain, tmp_path: Path
) -> None:
    """Base fee x10 after signing, then the transaction dropped from the pool: the sender
    bumps (>= 20 % each time, never above the cap) and re-broadcasts until it is mined."""
    key = fresh_key(chain)
    cap = 200 * 10**9
    txm = manager(
        chain,
        key,
        tmp_path / "tx.sqlite",
        GasPolicy(bump_after_s=0.0, bump_percent=20, fee_cap_wei=cap),
    )
    sink = Account.create().address
    w3 = chain.client(0).w3
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    start_block = w3.eth.block_number
    chain.rpc("evm_setAutomine", False)
    try:
        tx_id = txm.enqueue(sink, b"", value=5)
        txm.step()  # signed at today's fees and broadcast, not yet mined
        with txm.sessions() as s:
            first = s.get(ChainTx, tx_id)
            assert first is not None and first.tx_hash is not None
            signed_fee = int(first.max_fee_per_gas or 0)
        chain.rpc("anvil_dropTransaction", first.tx_hash)  # the pool forgets it
        spike = max(base * 10, 3 * signed_fee)  # and the base fee jumps past what it pays
        chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(spike))
        chain.rpc("evm_mine")
        fees = []
        for _ in range(40):
            txm.step()
            chain.rpc("evm_mine")
            with txm.sessions() as s:
                row = s.get(ChainTx, tx_id)
                assert row is not None
                fees.append(int(row.max_fee_per_gas or 0))
                if row.state is TxState.CONFIRMED:
                    break
    finally:
        chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(base))  # calm the market again
        chain.rpc("evm_setAutomine", True)
    res = txm.wait(tx_id)
    assert res.ok and chain.client(0).balance(sink) == 5
    assert w3.eth.get_transaction_count(txm.sender) == 1  # one transaction, never two
    # every fee it signed rose >= 20 % over the one before, never above the cap, and the
    # bump also caught up with the market at once (2 x the new base fee + tip)
    signed = [signed_fee, *sorted(set(fees))]
    assert all(b >= a * 1.2 for a, b in itertools.pairwise(signed))
    assert spike < max(fees) <= cap
    assert res.block_number is not None and res.block_number - start_block <= 25
    steps = [round(b / a, 2) for a, b in itertools.pairwise(signed)]
    print(
        f"\ngas spike x{spike / base:.0f} + dropped tx: mined {res.block_number - start_block} "
        f"blocks after signing, {len(signed) - 1} bumps (factors {steps}), "
        f"max fee {max(fees) / 1e9:.1f} gwei, cap {cap / 1e9:.0f} gwei"
    )


def test_one_hundred_concurrent_settlements_from_one_key(chain: Chain, tmp_path: Path) -> None:
    """100 finalizations sent at once through one key: gapless nonces, each job settled once."""
    from eth_utils.crypto import keccak

    from market.chain.types import JobRequest, Segment

    deployer, node, agent = chain.market(0), chain.market(1), chain.market(6)
    model_id = deployer.register_model(keccak(b"m"), 16, "", [Segment(keccak(b"s"))])
    node.register_node(50 * 10**18)
    node.set_model_price(model_id, 10**15)
    now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
    data = b"\x01\x00\x00" + (5).to_bytes(8, "big")
    ids: list[int] = []
    for _ in range(4):
        ids += agent.submit_jobs(
            [
                JobRequest(
                    model_id=model_id,
                    input_hash=keccak(data),
                    input=data,
                    max_fee=2 * 10**15,
                    deadline=now + 3000,
                )
            ]
            * 25
        )
    node.claim_jobs(ids)
    for i in range(0, 100, 25):
        chunk = ids[i : i + 25]
        node.commit_results(chunk, [keccak(data)] * 25, [data] * 25, [""] * 25)
    chain.warp(chain.deployment.params.challenge_window + 1)

    txm = manager(chain, fresh_key(chain), tmp_path / "tx.sqlite")
    results = []
    lock = threading.Lock()

    def settle(job_id: int) -> None:
        call = agent.jobs.functions.finalize(job_id)._encode_transaction_data()
        res = txm.send(chain.deployment.job_market, bytes(HexBytes(call)), key=f"fin-{job_id}")
        with lock:
            results.append(res)

    threads = [threading.Thread(target=settle, args=(j,)) for j in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert sorted(r.nonce for r in results) == list(range(100))
    assert chain.client(0).w3.eth.get_transaction_count(txm.sender) == 100
    assert all(agent.job(j).status.name == "SETTLED" for j in ids)
