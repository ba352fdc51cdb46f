"""Typed wrapper over RedundantJobs (k-of-n commit-reveal jobs); see docs/redundancy.md."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3.logs import DISCARD
from web3.types import TxReceipt

from market.chain.events import LogReader, topic_of
from market.chain.market import Market
from market.chain.txmanager import TxManager
from market.chain.types import ZERO_ADDRESS, ZERO_HASH
from market.errors import ChainError


class RedundantStatus(IntEnum):
    """Mirrors IRedundantJobs.Status."""

    NONE = 0
    OPEN = 1
    SETTLED = 2
    REFUNDED = 3


@dataclass(frozen=True)
class RedundantRequest:
    """What a requester submits (mirrors IRedundantJobs.Request); the fee is sent as value."""

    model_id: bytes
    input_hash: bytes
    fee: int
    k: int
    n: int
    bond: int
    commit_deadline: int
    reveal_deadline: int
    input: bytes = b""
    input_uri: str = ""

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.model_id,
            self.input_hash,
            self.input,
            self.input_uri,
            self.k,
            self.n,
            self.bond,
            self.commit_deadline,
            self.reveal_deadline,
        )


@dataclass(frozen=True)
class RedundantJob:
    """A redundant job as stored (mirrors IRedundantJobs.Job)."""

    job_id: int
    payer: str
    status: RedundantStatus
    k: int
    n: int
    commits: int
    reveals: int
    commit_deadline: int
    reveal_deadline: int
    fee: int
    bond: int
    model_id: bytes
    input_hash: bytes
    winner: bytes

    @classmethod
    def from_tuple(cls, job_id: int, t: Any) -> RedundantJob:
        return cls(
            job_id,
            str(t[0]),
            RedundantStatus(int(t[1])),
            int(t[2]),
            int(t[3]),
            int(t[4]),
            int(t[5]),
            int(t[6]),
            int(t[7]),
            int(t[8]),
            int(t[9]),
            bytes(t[10]),
            bytes(t[11]),
            bytes(t[12]),
        )

    @property
    def agreed(self) -> bool:
        return self.winner != ZERO_HASH


def commitment(result_hash: bytes, salt: bytes, node: str) -> bytes:
    """keccak256(abi.encode(resultHash, salt, node)): what a node commits (same as the
    contract's ``commitmentOf``)."""
    return keccak(abi_encode(["bytes32", "bytes32", "address"], [result_hash, salt, node]))


def new_salt() -> bytes:
    """32 random bytes: without them a commitment to a small output space could be guessed."""
    return secrets.token_bytes(32)


class Redundant:
    """RedundantJobs as seen by one key (the market's client).

    With ``txm`` (a node's transaction manager for the same key) transactions go through it,
    so they share one nonce sequence with the node's claims and commits, and each is sent at
    most once per ``(function, job)``; the methods then return None instead of a receipt.
    """

    def __init__(self, market: Market, txm: TxManager | None = None) -> None:
        if market.deployment.redundant_jobs == ZERO_ADDRESS:
            raise ChainError("this deployment has no RedundantJobs contract")
        self.market = market
        self.client = market.client
        self.txm = txm
        self._reader: LogReader | None = None
        self.contract = market.client.contract("RedundantJobs", market.deployment.redundant_jobs)

    def _send(self, fn: Any, key: str, value: int = 0) -> TxReceipt | None:
        if self.txm is None:
            return self.client.transact(fn, value=value)
        res = self.txm.send(
            self.market.deployment.redundant_jobs,
            bytes.fromhex(fn._encode_transaction_data()[2:]),
            value=value,
            key=f"redundant-{key}",
            purpose="redundant",
        )
        if not res.ok:
            if res.revert is not None:
                raise res.revert
            raise ChainError(f"redundant {key} failed: {res.error}")
        return None

    # ------------------------------------------------------------------ requester
    def submit(self, request: RedundantRequest) -> int:
        fn = self.contract.functions.submit(request.as_tuple())
        receipt = self.client.transact(fn, value=request.fee)
        return int(self.events(receipt, "RedundantJobSubmitted")[0]["jobId"])

    # ------------------------------------------------------------------ node
    def commit(self, job_id: int, result_hash: bytes, salt: bytes) -> TxReceipt | None:
        """Take a seat in ``job_id`` committed to ``result_hash`` (posts the job's bond)."""
        job = self.job(job_id)
        c = commitment(result_hash, salt, self.client.address)
        fn = self.contract.functions.commit(job_id, c)
        return self._send(fn, f"commit:{job_id}", value=job.bond)

    def reveal(
        self, job_id: int, result_hash: bytes, salt: bytes, output: bytes = b""
    ) -> TxReceipt | None:
        fn = self.contract.functions.reveal(job_id, result_hash, salt, output)
        return self._send(fn, f"reveal:{job_id}")

    # ------------------------------------------------------------------ anyone
    def finalize(self, job_id: int) -> TxReceipt | None:
        return self._send(self.contract.functions.finalize(job_id), f"finalize:{job_id}")

    def can_finalize(self, job_id: int) -> bool:
        return bool(self.client.call(self.contract.functions.canFinalize(job_id)))

    def withdraw(self) -> TxReceipt:
        """Always sent directly (an operator command, not part of the node's loop)."""
        return self.client.transact(self.contract.functions.withdraw())

    def withdrawable(self, account: str) -> int:
        return int(self.client.call(self.contract.functions.withdrawable(account)))

    def job(self, job_id: int) -> RedundantJob:
        t = self.client.call(self.contract.functions.getJob(job_id))
        if int(t[1]) == RedundantStatus.NONE:
            raise ChainError(f"no redundant job {job_id}")
        return RedundantJob.from_tuple(job_id, t)

    def nodes_of(self, job_id: int) -> list[str]:
        return [str(a) for a in self.client.call(self.contract.functions.nodesOf(job_id))]

    def input_of(self, job_id: int) -> tuple[bytes, str]:
        """The job's inline input and input URI (from its RedundantJobSubmitted event)."""
        logs = self.contract.events.RedundantJobSubmitted().get_logs(
            argument_filters={"jobId": job_id}, from_block=self.market.deployment.start_block
        )
        if not logs:
            raise ChainError(f"no redundant job {job_id}")
        args = logs[0]["args"]
        return bytes(args["input"]), str(args["inputURI"])

    def submitted_since(self, from_block: int, to_block: int) -> list[int]:
        """Ids of the jobs submitted in blocks ``from_block``..``to_block`` (ranges split
        when the endpoint finds them too large)."""
        if self._reader is None:
            self._reader = LogReader(
                self.client,
                {"RedundantJobs": self.market.deployment.redundant_jobs},
                topics=[topic_of("RedundantJobs", "RedundantJobSubmitted")],
            )
        events = self._reader.fetch(from_block, to_block)
        return [int(e.args["jobId"]) for e in events if e.name == "RedundantJobSubmitted"]

    def seat_of(self, job_id: int, node: str) -> tuple[bytes, bytes]:
        """(commitment, revealed result hash) of ``node`` in ``job_id`` (zeros: none)."""
        c, r = self.client.call(self.contract.functions.seatOf(job_id, node))
        return bytes(c), bytes(r)

    def revealed_output(self, job_id: int, result_hash: bytes) -> bytes | None:
        """The output some node revealed inline with ``result_hash`` (from the logs)."""
        logs = self.contract.events.Revealed().get_logs(
            argument_filters={"jobId": job_id}, from_block=self.market.deployment.start_block
        )
        for log in logs:
            args = log["args"]
            if bytes(args["resultHash"]) == result_hash and args["output"]:
                return bytes(args["output"])
        return None

    def total_owed(self) -> int:
        return int(self.client.call(self.contract.functions.totalOwed()))

    def events(self, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
        logs = self.contract.events[name]().process_receipt(receipt, errors=DISCARD)
        return [dict(log["args"]) for log in logs]
