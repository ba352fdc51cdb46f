"""A web3 connection with one signing key: calls, transactions and error decoding.

Transactions are signed locally and sent raw. Reverts are decoded into
:class:`market.errors.ContractRevert` carrying the custom error's arguments; an unreachable
RPC and an unfunded key become errors that say what to do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError
from web3.types import BlockIdentifier, Nonce, TxParams, TxReceipt, Wei

from market.chain.artifacts import decode_revert, load
from market.errors import (
    ChainError,
    ContractRevert,
    InsufficientFunds,
    RpcUnreachable,
    TransactionFailed,
)

T = TypeVar("T")

#: Gas head-room on top of eth_estimateGas (callbacks make estimates tight: EIP-150).
GAS_MARGIN = 1.25


def revert_from_exception(exc: BaseException) -> ContractRevert | None:
    """Dig the revert data out of a web3 exception and decode it."""
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        return decode_revert(bytes.fromhex(data[2:]))
    if isinstance(data, bytes | HexBytes) and len(data) >= 4:
        return decode_revert(bytes(data))
    return None


class ChainClient:
    """One RPC endpoint and (optionally) one key that signs and sends.

    Thread-safe for sending: one lock serialises nonce assignment and submission, so
    concurrent callers never reuse a nonce.
    """

    def __init__(self, rpc_url: str, private_key: str | None = None, *, timeout: float = 30.0):
        self.rpc_url = rpc_url
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.account: LocalAccount | None = Account.from_key(private_key) if private_key else None
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._clock_offset: float | None = None

    # ------------------------------------------------------------------ basics
    def rpc(self, fn: Callable[[], T]) -> T:
        """Run a read against the node, turning connection failures into RpcUnreachable."""
        try:
            return fn()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RpcUnreachable(self.rpc_url, type(exc).__name__) from exc

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    @property
    def address(self) -> ChecksumAddress:
        if self.account is None:
            raise ChainError("this operation needs a key (--key / VERIMARKET_PRIVATE_KEY)")
        return self.account.address

    def block_number(self) -> int:
        return int(self.rpc(lambda: self.w3.eth.block_number))

    def now(self) -> float:
        """The chain's current time as best known: wall clock plus the largest offset seen
        between a block's timestamp and the wall clock when it was read (a local chain
        may have been moved forward with evm_increaseTime; an idle one mines no blocks)."""
        block = self.rpc(lambda: self.w3.eth.get_block("latest"))
        wall = time.time()
        offset = float(block["timestamp"]) - wall
        if self._clock_offset is None or offset > self._clock_offset:
            self._clock_offset = offset
        return wall + self._clock_offset

    def base_fee(self) -> int:
        """The base fee the next block will charge (the pending block's, else the latest's)."""
        fees = []
        for tag in ("pending", "latest"):
            try:
                block = self.rpc(partial(self.w3.eth.get_block, tag))
            except Web3RPCError:
                continue
            fees.append(int(block.get("baseFeePerGas", 0) or 0))
        return max(fees, default=0)

    def balance(self, address: str) -> int:
        return int(self.rpc(lambda: self.w3.eth.get_balance(Web3.to_checksum_address(address))))

    def contract(self, name: str, address: str) -> Contract:
        art = load(name)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=art.abi)

    def call(self, fn: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
        """eth_call a view function; reverts become ContractRevert."""
        try:
            return self.rpc(lambda: fn.call(block_identifier=block))
        except (ContractCustomError, ContractLogicError) as exc:
            raise (revert_from_exception(exc) or exc) from exc

    # ------------------------------------------------------------------ sending
    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = int(
                self.rpc(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
            )
        return self._nonce

    def resync_nonce(self) -> None:
        """Forget the local nonce; the next send asks the node again."""
        with self._lock:
            self._nonce = None

    def build(
        self,
        fn: ContractFunction | None,
        *,
        to: str | None = None,
        data: bytes = b"",
        value: int = 0,
        gas: int | None = None,
    ) -> TxParams:
        """Transaction fields for ``fn`` (or raw ``to``/``data``), gas estimated with margin."""
        tx: TxParams = {"from": self.address, "value": Wei(value), "chainId": self.chain_id}
        if fn is not None:
            tx["to"] = fn.address
            tx["data"] = fn._encode_transaction_data()
        else:
            if to is not None:
                tx["to"] = Web3.to_checksum_address(to)
            tx["data"] = HexBytes(data)
        if gas is None:
            gas = int(self._estimate(tx) * GAS_MARGIN) + 30_000
        tx["gas"] = gas
        base = self.base_fee()
        tip = 10**9
        tx["maxPriorityFeePerGas"] = Wei(tip)
        tx["maxFeePerGas"] = Wei(base * 2 + tip)
        return tx

    def _estimate(self, tx: TxParams) -> int:
        try:
            return int(self.rpc(lambda: self.w3.eth.estimate_gas(tx)))
        except (ContractCustomError, ContractLogicError) as exc:
            raise (revert_from_exception(exc) or exc) from exc
        except Web3RPCError as exc:
            raise self._rpc_error(exc) from exc

    def _rpc_error(self, exc: Web3RPCError) -> ChainError:
        text = str(exc)
        if "insufficient funds" in text.lower():
            return InsufficientFunds(self.address, self.balance(self.address))
        revert = revert_from_exception(exc)
        if revert is not None:
            return revert
        return ChainError(f"the node refused the request: {text}")

    def send(
        self,
        fn: ContractFunction | None = None,
        *,
        value: int = 0,
        gas: int | None = None,
        to: str | None = None,
        data: bytes = b"",
        wait: bool = True,
        timeout: float = 120.0,
    ) -> TxReceipt | HexBytes:
        """Sign and send; with ``wait`` return the receipt and raise on revert."""
        assert self.account is not None, "send needs a key"
        with self._lock:
            tx = self.build(fn, to=to, data=data, value=value, gas=gas)
            tx["nonce"] = Nonce(self._next_nonce())
            signed = self.account.sign_transaction(cast(dict[str, Any], tx))
            try:
                tx_hash = self.rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
            except Web3RPCError as exc:
                self._nonce = None
                raise self._rpc_error(exc) from exc
            self._nonce = int(tx["nonce"]) + 1
        if not wait:
            return tx_hash
        return self.wait(tx_hash, timeout=timeout, tx=tx)

    def transact(
        self, fn: ContractFunction, *, value: int = 0, gas: int | None = None
    ) -> TxReceipt:
        """Send a contract call and wait for its receipt (reverts raise ContractRevert)."""
        receipt = self.send(fn, value=value, gas=gas)
        return cast(TxReceipt, receipt)

    def wait(
        self, tx_hash: HexBytes, *, timeout: float = 120.0, tx: TxParams | None = None
    ) -> TxReceipt:
        receipt = self.rpc(
            lambda: self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=timeout, poll_latency=0.05
            )
        )
        if receipt["status"] != 1:
            raise self._explain_failure(tx_hash, receipt, tx)
        return receipt

    def _explain_failure(
        self, tx_hash: HexBytes, receipt: TxReceipt, tx: TxParams | None
    ) -> ChainError:
        if tx is not None:
            replay = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value", "gas")}
            try:
                self.w3.eth.call(
                    cast(TxParams, replay), block_identifier=receipt["blockNumber"] - 1
                )
            except (ContractCustomError, ContractLogicError, Web3RPCError) as exc:
                revert = revert_from_exception(exc)
                if revert is not None:
                    return revert
        return TransactionFailed(tx_hash.to_0x_hex(), f"gas used {receipt['gasUsed']}")

    def deploy(self, name: str, *args: Any, value: int = 0) -> tuple[str, TxReceipt]:
        """Deploy contract ``name`` with constructor ``args``; returns (address, receipt)."""
        art = load(name)
        factory = self.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        data = HexBytes(factory.constructor(*args).data_in_transaction)
        receipt = cast(TxReceipt, self.send(None, data=data, value=value))
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploying {name} produced no contract address")
        return str(address), receipt
