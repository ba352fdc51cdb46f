"""Read and decode contract events over block ranges (the poller, settler and indexer use it).

``fetch_logs`` narrows the block range when the node refuses a large one (too many results,
response size limits) and widens it again after successes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3RPCError

from market.chain.artifacts import _type_string, load
from market.chain.client import ChainClient

#: Messages nodes use when a log query is too large.
_TOO_LARGE = ("too many", "range", "limit", "exceed", "response size", "query returned more")


@dataclass(frozen=True)
class Event:
    """One decoded log."""

    contract: str
    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.tx_hash, self.log_index)


@dataclass(frozen=True)
class _EventSpec:
    contract: str
    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]
    order: tuple[str, ...]


@cache
def _specs(contract: str) -> dict[bytes, _EventSpec]:
    out: dict[bytes, _EventSpec] = {}
    for item in load(contract).abi:
        if item.get("type") != "event":
            continue
        topic = bytes(event_abi_to_log_topic(item))  # type: ignore[arg-type]
        ins = item["inputs"]
        out[topic] = _EventSpec(
            contract,
            item["name"],
            tuple((p["name"], _type_string(p)) for p in ins if p["indexed"]),
            tuple((p["name"], _type_string(p)) for p in ins if not p["indexed"]),
            tuple(p["name"] for p in ins),
        )
    return out


def _norm(typ: str, value: Any) -> Any:
    """Addresses as checksum strings (web3 refuses lowercase ones as call arguments)."""
    return Web3.to_checksum_address(value) if typ == "address" else value


def topic_of(contract: str, event: str) -> bytes:
    for topic, spec in _specs(contract).items():
        if spec.name == event:
            return topic
    raise KeyError(f"{contract} has no event {event}")


def decode_log(contract: str, log: dict[str, Any]) -> Event | None:
    """Decode a raw log of ``contract``; None for logs of events it does not declare."""
    topics = [bytes(HexBytes(t)) for t in log["topics"]]
    if not topics:
        return None
    spec = _specs(contract).get(topics[0])
    if spec is None:
        return None
    args: dict[str, Any] = {}
    for (name, typ), topic in zip(spec.indexed, topics[1:], strict=True):
        args[name] = _norm(typ, abi_decode([typ], topic)[0])
    values = abi_decode([t for _, t in spec.data], bytes(HexBytes(log["data"])))
    for (name, typ), value in zip(spec.data, values, strict=True):
        args[name] = _norm(typ, value)
    return Event(
        contract=contract,
        name=spec.name,
        args={k: args[k] for k in spec.order},
        address=Web3.to_checksum_address(log["address"]),
        block_number=int(log["blockNumber"]),
        block_hash=bytes(HexBytes(log["blockHash"])),
        tx_hash=bytes(HexBytes(log["transactionHash"])),
        log_index=int(log["logIndex"]),
    )


class LogReader:
    """Fetches and decodes the logs of a fixed set of contracts, adapting its range size."""

    def __init__(
        self,
        client: ChainClient,
        contracts: dict[str, str],
        *,
        max_range: int = 2000,
        topics: Sequence[bytes] | None = None,
    ) -> None:
        self.client = client
        self.by_address = {Web3.to_checksum_address(a): name for name, a in contracts.items()}
        self.max_range = max_range
        self.range = max_range
        self.topics = list(topics) if topics else None

    def fetch(self, from_block: int, to_block: int) -> list[Event]:
        """All decoded events in [from_block, to_block], in chain order."""
        events: list[Event] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + self.range - 1)
            try:
                logs = self._get_logs(start, end)
            except Web3RPCError as exc:
                if self.range > 1 and any(s in str(exc).lower() for s in _TOO_LARGE):
                    self.range = max(1, self.range // 2)
                    continue
                raise
            events.extend(self._decode(logs))
            start = end + 1
            self.range = min(self.max_range, self.range * 2)
        return events

    def _get_logs(self, start: int, end: int) -> list[Any]:
        params: dict[str, Any] = {
            "fromBlock": start,
            "toBlock": end,
            "address": list(self.by_address),
        }
        if self.topics:
            params["topics"] = [[HexBytes(t) for t in self.topics]]
        return list(self.client.rpc(lambda: self.client.w3.eth.get_logs(params)))  # type: ignore[arg-type]

    def _decode(self, logs: Iterable[Any]) -> list[Event]:
        out = []
        for log in logs:
            name = self.by_address.get(Web3.to_checksum_address(log["address"]))
            if name is None:
                continue
            ev = decode_log(name, dict(log))
            if ev is not None:
                out.append(ev)
        out.sort(key=lambda e: (e.block_number, e.log_index))
        return out
