"""Load the generated ABI files and decode custom errors from any of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from market.chain.codegen import ABI_DIR, CONTRACTS
from market.errors import ContractRevert

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)


@dataclass(frozen=True)
class ContractArtifact:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_size: int


@cache
def load(name: str) -> ContractArtifact:
    """The artefact of ``name`` from ``market/chain/abi``."""
    path = ABI_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run `make abi`")
    doc = json.loads(path.read_text())
    return ContractArtifact(name, doc["abi"], doc["bytecode"], int(doc["deployedBytecodeSize"]))


def _type_string(param: dict[str, Any]) -> str:
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


@dataclass(frozen=True)
class ErrorSpec:
    contract: str
    name: str
    names: tuple[str, ...]
    types: tuple[str, ...]


@cache
def error_table() -> dict[bytes, ErrorSpec]:
    """Every custom error of every known contract, by 4-byte selector."""
    table: dict[bytes, ErrorSpec] = {}
    for contract in CONTRACTS:
        for item in load(contract).abi:
            if item.get("type") != "error":
                continue
            types = tuple(_type_string(p) for p in item["inputs"])
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            names = tuple(p["name"] or f"arg{i}" for i, p in enumerate(item["inputs"]))
            table.setdefault(selector, ErrorSpec(contract, item["name"], names, types))
    return table


def decode_revert(data: bytes) -> ContractRevert | None:
    """Turn revert data into a ContractRevert that keeps the error's arguments, if known."""
    if len(data) < 4:
        return None
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        (message,) = abi_decode(["string"], body)
        return ContractRevert("Error", {"message": message}, data=data)
    if selector == _PANIC:
        (code,) = abi_decode(["uint256"], body)
        return ContractRevert("Panic", {"code": hex(code)}, data=data)
    spec = error_table().get(selector)
    if spec is None:
        return None
    values = abi_decode(list(spec.types), body) if spec.types else ()
    return ContractRevert(
        spec.name, dict(zip(spec.names, values, strict=True)), spec.contract, data=data
    )
