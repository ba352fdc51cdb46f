"""Send transactions through a persisted state machine: gapless nonces, one in flight per
key, gas bumping up to a cap, and resumption after a crash without sending anything twice.

The model is Chainlink's transaction manager. Every transaction is a row (`ChainTx`) before
anything touches the network; the nonce, the signed bytes and the hash are written in one
database commit *before* the broadcast, so a process killed between "nonce assigned" and
"sent" re-broadcasts exactly the same signed transaction when it restarts: the chain sees one
transaction, never two. Only one process may drive a given key (the worker and the settlement
service each own theirs).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from hexbytes import HexBytes
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)
from web3.types import TxParams, Wei

from market.chain.artifacts import decode_revert
from market.chain.client import ChainClient, revert_from_exception
from market.db.txstore import ChainTx, TxState
from market.errors import ChainError, ContractRevert

log = logging.getLogger(__name__)

_ALREADY_KNOWN = (
    "already known",
    "already imported",
    "known transaction",
    "nonce too low",
    "replacement transaction underpriced",
)


@dataclass(frozen=True)
class TxResult:
    """The outcome of a transaction that reached a terminal state."""

    id: int
    state: TxState
    tx_hash: str | None
    nonce: int | None
    block_number: int | None
    gas_used: int | None
    error: str | None
    revert: ContractRevert | None = None

    @property
    def ok(self) -> bool:
        return self.state is TxState.CONFIRMED


@dataclass(frozen=True)
class GasPolicy:
    """How fees start and grow. A bump raises both fees by at least ``bump_percent``."""

    bump_after_s: float = 15.0
    #: the same signed bytes are broadcast again this often while waiting (not a bump)
    resend_after_s: float = 3.0
    bump_percent: int = 20
    fee_cap_wei: int = 500 * 10**9
    tip_wei: int = 10**9
    gas_margin: float = 1.25


class TxManager:
    """Persisted, crash-safe sender for one key."""

    def __init__(
        self, client: ChainClient, sessions: sessionmaker[Session], gas: GasPolicy | None = None
    ) -> None:
        if client.account is None:
            raise ChainError("TxManager needs a client with a key")
        self.client = client
        self.account: LocalAccount = client.account
        self.sender = client.address
        self.sessions = sessions
        self.gas = gas or GasPolicy()
        self._lock = threading.RLock()
        #: told (block number, block hash) of every receipt this manager acts on, so that a
        #: reorg monitor can notice when one of those blocks is replaced (market.chain.reorg)
        self.observer: Callable[[int, bytes], None] | None = None
        self.reorged_total = 0  # mined transactions found dropped by a reorg and re-sent
        self._last_resend: dict[int, float] = {}

    # ------------------------------------------------------------------ public
    def enqueue(
        self,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        key: str | None = None,
        purpose: str = "",
        gas_limit: int | None = None,
        session: Session | None = None,
    ) -> int:
        """Record a transaction to send; returns its id. Idempotent on ``key``.

        With ``session`` the row is added to the caller's transaction (so the caller can
        record, atomically, which of its own rows wait on this transaction).
        """
        if session is not None:
            return self._add(session, to, data, value, key, purpose, gas_limit)
        with self.sessions.begin() as s:
            return self._add(s, to, data, value, key, purpose, gas_limit)

    def _add(
        self,
        s: Session,
        to: str,
        data: bytes,
        value: int,
        key: str | None,
        purpose: str,
        gas_limit: int | None,
    ) -> int:
        if key is not None:
            existing = s.scalar(
                select(ChainTx.id).where(
                    ChainTx.sender == self.sender, ChainTx.idempotency_key == key
                )
            )
            if existing is not None:
                return int(existing)
        row = ChainTx(
            chain_id=self.client.chain_id,
            sender=self.sender,
            idempotency_key=key,
            purpose=purpose,
            to_address=Web3.to_checksum_address(to),
            data=data,
            value=str(value),
            gas_limit=gas_limit,
            state=TxState.UNSTARTED,
            all_hashes=[],
        )
        s.add(row)
        s.flush()
        return int(row.id)

    def step(self) -> bool:
        """Advance the oldest work by one move. Returns True when something changed."""
        with self._lock, self.sessions() as s:
            inflight = s.scalars(
                select(ChainTx)
                .where(
                    ChainTx.sender == self.sender,
                    ChainTx.state.in_([TxState.SIGNED, TxState.SENT]),
                )
                .order_by(ChainTx.nonce)
                .limit(1)
            ).first()
            if inflight is not None:
                return self._advance(s, inflight)
            nxt = s.scalars(
                select(ChainTx)
                .where(
                    ChainTx.sender == self.sender,
                    ChainTx.state == TxState.UNSTARTED,
                )
                .order_by(ChainTx.id)
                .limit(1)
            ).first()
            if nxt is None:
                return False
            self._start(s, nxt)
            return True

    def result(self, tx_id: int) -> TxResult | None:
        """The terminal outcome of ``tx_id``, or None while it is still pending."""
        with self.sessions() as s:
            row = s.get(ChainTx, tx_id)
            if row is None:
                raise ChainError(f"no transaction with id {tx_id}")
            if row.state not in (TxState.CONFIRMED, TxState.FAILED):
                return None
            return TxResult(
                row.id,
                row.state,
                row.tx_hash,
                row.nonce,
                row.block_number,
                row.gas_used,
                row.error,
                decode_revert(bytes.fromhex(row.revert_data[2:])) if row.revert_data else None,
            )

    def wait(self, tx_id: int, timeout: float = 120.0, poll: float = 0.02) -> TxResult:
        """Drive the queue until ``tx_id`` is confirmed or failed."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.result(tx_id)
            if res is not None:
                return res
            if time.monotonic() > deadline:
                raise ChainError(f"transaction {tx_id} still pending after {timeout} s")
            if not self.step():
                time.sleep(poll)

    def send(self, to: str, data: bytes, **kwargs: Any) -> TxResult:
        """enqueue + wait."""
        timeout = kwargs.pop("timeout", 120.0)
        return self.wait(self.enqueue(to, data, **kwargs), timeout=timeout)

    def pending_count(self) -> int:
        with self.sessions() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(ChainTx)
                    .where(
                        ChainTx.sender == self.sender,
                        ChainTx.state.in_([TxState.UNSTARTED, TxState.SIGNED, TxState.SENT]),
                    )
                )
                or 0
            )

    def run(self, stop: threading.Event, idle_sleep: float = 0.02) -> None:
        """Drive the queue until ``stop`` is set (a background thread's body)."""
        while not stop.is_set():
            try:
                if not self.step():
                    stop.wait(idle_sleep)
            except ChainError as exc:
                log.warning("txmanager step failed: %s", exc)
                stop.wait(0.5)

    def reorged(self, ancestor: int) -> int:
        """The chain was reorganised above block ``ancestor``: look again at every transaction
        of this key mined above it. One whose receipt is gone goes back to ``sent`` and its
        signed bytes are broadcast again — the same nonce and the same hash, so it can be
        mined once at most; one mined again elsewhere gets its new block (and outcome).
        Transactions in flight are re-broadcast too (a dropped block took them out of the
        pool). Returns how many mined transactions were re-opened."""
        with self._lock, self.sessions() as s:
            mined = list(
                s.scalars(
                    select(ChainTx)
                    .where(
                        ChainTx.sender == self.sender,
                        ChainTx.nonce.is_not(None),
                        ChainTx.raw.is_not(None),
                        ChainTx.state.in_([TxState.CONFIRMED, TxState.FAILED]),
                        ChainTx.block_number > ancestor,
                    )
                    .order_by(ChainTx.nonce)
                )
            )
            reopened = self._recheck_mined(s, mined)
            for row in s.scalars(
                select(ChainTx)
                .where(ChainTx.sender == self.sender, ChainTx.state == TxState.SENT)
                .order_by(ChainTx.nonce)
            ):
                self._resend(row)
            return reopened

    def _recheck_mined(self, s: Session, rows: list[ChainTx]) -> int:
        """Look for the receipts of ``rows`` (held as mined) again; re-open and re-broadcast,
        lowest nonce first, those a reorg dropped. Returns how many were re-opened."""
        reopened = []
        for row in rows:
            receipt = self._find_receipt(row)
            if receipt is None:
                log.warning(
                    "tx %s (nonce %s, %s) was in block %s, dropped by a reorg: re-sending",
                    row.id,
                    row.nonce,
                    row.purpose,
                    row.block_number,
                )
                row.state, row.block_number, row.gas_used = TxState.SENT, None, None
                row.error, row.revert_data = None, None
                reopened.append(row)
                continue
            if self.observer is not None:
                self.observer(int(receipt["blockNumber"]), bytes(receipt["blockHash"]))
            row.block_number = int(receipt["blockNumber"])
            row.gas_used = int(receipt["gasUsed"])
            ok = int(receipt["status"]) == 1
            if ok and row.state is TxState.FAILED:
                row.state, row.error, row.revert_data = TxState.CONFIRMED, None, None
                row.tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
            elif not ok and row.state is TxState.CONFIRMED:
                log.error("tx %s (nonce %s) reverted when mined again", row.id, row.nonce)
                revert = self._replay(row, row.block_number)
                row.state, row.error = TxState.FAILED, str(revert) if revert else "reverted"
                if revert is not None and revert.data is not None:
                    row.revert_data = "0x" + revert.data.hex()
        s.commit()
        self.reorged_total += len(reopened)
        for row in reopened:  # lowest nonce first: a gap would hold back the rest
            self._resend(row)
        return len(reopened)

    def _resend(self, row: ChainTx) -> None:
        """Broadcast the row's signed bytes again (not a new transaction: same nonce, same
        hash); "already known" and the like are fine. Does not restart the bump timer."""
        raw = row.raw
        if raw is None:
            return
        self._last_resend[row.id] = time.time()
        try:
            self.client.rpc(lambda: self.client.w3.eth.send_raw_transaction(raw))
        except Web3RPCError as exc:
            log.info("re-broadcast of tx %s: %s", row.id, exc)

    # ------------------------------------------------------------------ moves
    def _start(self, s: Session, row: ChainTx) -> None:
        tx: TxParams = {
            "from": self.sender,
            "to": row.to_address,
            "data": HexBytes(row.data),
            "value": Wei(int(row.value)),
            "chainId": row.chain_id,
        }
        if row.gas_limit is None:
            try:
                estimate = int(self.client.rpc(lambda: self.client.w3.eth.estimate_gas(tx)))
            except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
                revert = revert_from_exception(exc)
                self._fail(s, row, str(revert or exc), revert)
                return
            row.gas_limit = int(estimate * self.gas.gas_margin) + 30_000
        tip, max_fee = self._initial_fees()
        row.nonce = self._next_nonce(s)
        row.max_priority_fee_per_gas, row.max_fee_per_gas = str(tip), str(max_fee)
        self._sign(row)
        row.state = TxState.SIGNED
        s.commit()  # nonce + signed bytes are durable before anything is broadcast
        self._broadcast(s, row)

    def _advance(self, s: Session, row: ChainTx) -> bool:
        if row.state is TxState.SIGNED:
            self._broadcast(s, row)
            return True
        receipt = self._find_receipt(row)
        if receipt is not None:
            if self.observer is not None:
                self.observer(int(receipt["blockNumber"]), bytes(receipt["blockHash"]))
            row.block_number = int(receipt["blockNumber"])
            row.gas_used = int(receipt["gasUsed"])
            if int(receipt["status"]) == 1:
                row.state = TxState.CONFIRMED
                row.tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
                s.commit()
            else:
                revert = self._replay(row, int(receipt["blockNumber"]))
                self._fail(s, row, str(revert) if revert else "reverted", revert)
            return True
        mined_nonce = self._chain_nonce()
        if row.nonce is not None and mined_nonce < row.nonce:
            # a lower nonce of ours is no longer mined: a reorg dropped a transaction held as
            # mined (seen here even before a reorg monitor reports it); re-send it first
            below = list(
                s.scalars(
                    select(ChainTx)
                    .where(
                        ChainTx.sender == self.sender,
                        ChainTx.nonce >= mined_nonce,
                        ChainTx.nonce < row.nonce,
                        ChainTx.state.in_([TxState.CONFIRMED, TxState.FAILED]),
                        ChainTx.block_number.is_not(None),
                    )
                    .order_by(ChainTx.nonce)
                )
            )
            if below and self._recheck_mined(s, below):
                return True
        if row.nonce is not None and mined_nonce > row.nonce:
            # our nonce was used, but by none of our hashes: give the receipt a moment first
            if time.time() - (row.sent_at or 0) > 5.0:
                self._fail(s, row, f"nonce {row.nonce} was consumed by another transaction", None)
                return True
            return False
        if time.time() - (row.sent_at or 0) >= self.gas.bump_after_s:
            self._bump(s, row)
            return True
        last = max(row.sent_at or 0, self._last_resend.get(row.id, 0))
        if time.time() - last >= self.gas.resend_after_s:
            self._resend(row)  # a reorg or a restarted RPC node may have lost it
        return False

    def _broadcast(self, s: Session, row: ChainTx) -> None:
        assert row.raw is not None
        raw = row.raw
        try:
            self.client.rpc(lambda: self.client.w3.eth.send_raw_transaction(raw))
        except Web3RPCError as exc:
            if not any(m in str(exc).lower() for m in _ALREADY_KNOWN):
                text = str(exc)
                if "insufficient funds" in text.lower():
                    text = f"insufficient funds in {self.sender}: fund the key"
                self._fail(s, row, text, None)
                return
        row.state = TxState.SENT
        row.broadcasts += 1
        row.sent_at = time.time()
        s.commit()

    def _bump(self, s: Session, row: ChainTx) -> None:
        old_tip, old_max = int(row.max_priority_fee_per_gas or 0), int(row.max_fee_per_gas or 0)
        if old_max >= self.gas.fee_cap_wei:
            row.sent_at = time.time()  # at the cap: keep waiting, re-broadcast the same bytes
            self._broadcast(s, row)
            return
        factor = 1 + self.gas.bump_percent / 100
        tip = math.ceil(old_tip * factor)
        base = self._base_fee()
        max_fee = max(math.ceil(old_max * factor), 2 * base + tip)
        max_fee = min(max_fee, self.gas.fee_cap_wei)
        tip = min(tip, max_fee)
        row.max_priority_fee_per_gas, row.max_fee_per_gas = str(tip), str(max_fee)
        row.bumps += 1
        self._sign(row)
        s.commit()
        log.info("bumped tx %s (nonce %s) to max fee %s", row.id, row.nonce, max_fee)
        self._broadcast(s, row)

    # ------------------------------------------------------------------ helpers
    def _sign(self, row: ChainTx) -> None:
        tx = {
            "from": self.sender,
            "to": row.to_address,
            "data": HexBytes(row.data),
            "value": Wei(int(row.value)),
            "chainId": row.chain_id,
            "nonce": row.nonce,
            "gas": row.gas_limit,
            "maxFeePerGas": int(row.max_fee_per_gas or 0),
            "maxPriorityFeePerGas": int(row.max_priority_fee_per_gas or 0),
            "type": 2,
        }
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        row.raw = bytes(signed.raw_transaction)
        row.tx_hash = HexBytes(signed.hash).to_0x_hex()
        row.all_hashes = [*row.all_hashes, row.tx_hash]

    def _fail(self, s: Session, row: ChainTx, error: str, revert: ContractRevert | None) -> None:
        row.state = TxState.FAILED
        row.error = error
        if revert is not None and revert.data is not None:
            row.revert_data = "0x" + revert.data.hex()
        s.commit()

    def _next_nonce(self, s: Session) -> int:
        chain_next = self._chain_nonce()
        last = s.scalar(select(func.max(ChainTx.nonce)).where(ChainTx.sender == self.sender))
        return max(chain_next, (int(last) + 1) if last is not None else 0)

    def _chain_nonce(self) -> int:
        """How many transactions of this key the chain has mined."""
        eth = self.client.w3.eth
        return int(
            self.client.rpc(lambda: eth.get_transaction_count(self.client.address, "latest"))
        )

    def _base_fee(self) -> int:
        return self.client.base_fee()

    def _initial_fees(self) -> tuple[int, int]:
        tip = self.gas.tip_wei
        max_fee = min(2 * self._base_fee() + tip, self.gas.fee_cap_wei)
        return min(tip, max_fee), max_fee

    def _find_receipt(self, row: ChainTx) -> Any:
        for h in reversed(row.all_hashes):
            try:
                receipt = self.client.rpc(
                    partial(self.client.w3.eth.get_transaction_receipt, HexStr(h))
                )
            except TransactionNotFound:
                continue
            if receipt is not None and self._canonical(receipt):
                return receipt
        return None

    def _canonical(self, receipt: Any) -> bool:
        """Whether the receipt's block is still the chain's block at that height: after a
        reorg a node can keep serving the receipt of a transaction whose block was replaced
        (seen with anvil), which would hide a dropped transaction."""
        try:
            block = self.client.rpc(
                partial(self.client.w3.eth.get_block, int(receipt["blockNumber"]))
            )
        except BlockNotFound:
            return False
        return HexBytes(block["hash"]) == HexBytes(receipt["blockHash"])

    def _replay(self, row: ChainTx, block: int) -> ContractRevert | None:
        call: TxParams = {
            "from": self.sender,
            "to": row.to_address,
            "data": HexBytes(row.data),
            "value": Wei(int(row.value)),
            "gas": row.gas_limit or 0,
        }
        try:
            self.client.w3.eth.call(call, block_identifier=block - 1)
        except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
            return revert_from_exception(exc)
        return None
