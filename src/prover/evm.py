"""Solidity verifiers for segment circuits, and the calldata that calls them.

ezkl writes the verifier (``Halo2Verifier``, one contract per verifying key, the key baked in
as constants); we compile it with solcjs 0.8.20 ourselves. Its entry point is
``verifyProof(bytes proof, uint256[] instances) returns (bool)``: it returns true for a valid
proof and **reverts** for anything else. It reads the proof at fixed calldata offsets, so it
must be called with the standard ABI encoding (what a Solidity caller produces).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from prover import ezkl_async
from prover.config import SolcOptions
from prover.errors import BuildError
from prover.solc import compile_standard_json, write_svm_wrapper

#: ``verifyProof(bytes,uint256[])``
VERIFY_SIGNATURE = "verifyProof(bytes,uint256[])"
VERIFY_SELECTOR = keccak(text=VERIFY_SIGNATURE)[:4]


@dataclass(frozen=True)
class VerifierArtifact:
    """A compiled verifier: deploy ``bytecode``; ``runtime`` is the code that ends on chain."""

    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime: bytes

    @property
    def runtime_size(self) -> int:
        return len(self.runtime)

    def to_json(self) -> dict[str, Any]:
        return {
            "contract_name": self.contract_name,
            "abi": self.abi,
            "bytecode": "0x" + self.bytecode.hex(),
            "runtime": "0x" + self.runtime.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifierArtifact:
        return cls(
            contract_name=str(data["contract_name"]),
            abi=list(data["abi"]),
            bytecode=bytes.fromhex(str(data["bytecode"])[2:]),
            runtime=bytes.fromhex(str(data["runtime"])[2:]),
        )

    @classmethod
    def read(cls, path: Path) -> VerifierArtifact:
        return cls.from_json(json.loads(path.read_text()))


def write_verifier_source(
    *, circuit: str, vk: Path, settings: Path, srs: Path, sol_out: Path, solc: SolcOptions
) -> None:
    """Have ezkl write the Solidity verifier for ``vk`` to ``sol_out``."""
    with tempfile.TemporaryDirectory(prefix="prover-svm-") as home:
        write_svm_wrapper(Path(home), solc)
        try:
            ezkl_async.call(
                "create_evm_verifier",
                {
                    "vk_path": str(vk),
                    "settings_path": str(settings),
                    "sol_code_path": str(sol_out),
                    "abi_path": str(sol_out.with_suffix(".abi")),
                    "srs_path": str(srs),
                    "reusable": False,
                },
                home=Path(home),
                timeout_s=solc.timeout_s,
            )
        except ezkl_async.EzklCallFailed as exc:
            raise BuildError(circuit, "create_evm_verifier", exc.reason) from exc
    if not sol_out.is_file():
        raise BuildError(circuit, "create_evm_verifier", f"ezkl wrote no {sol_out.name}")


def compile_verifier(circuit: str, sol: Path, solc: SolcOptions) -> VerifierArtifact:
    """Compile an ezkl verifier with solcjs (optimizer on) and return its bytecode."""
    output = compile_standard_json(sol.name, sol.read_text(), solc)
    contracts = output.get("contracts", {}).get(sol.name, {})
    if len(contracts) != 1:
        raise BuildError(
            circuit, "compile verifier", f"expected one contract, got {list(contracts)}"
        )
    (name, contract), *_ = contracts.items()
    evm = contract["evm"]
    return VerifierArtifact(
        contract_name=name,
        abi=contract["abi"],
        bytecode=bytes.fromhex(evm["bytecode"]["object"]),
        runtime=bytes.fromhex(evm["deployedBytecode"]["object"]),
    )


def verify_calldata(proof: bytes, instances: list[int] | tuple[int, ...]) -> bytes:
    """Calldata for ``verifyProof(proof, instances)`` in the standard ABI encoding."""
    return VERIFY_SELECTOR + encode(["bytes", "uint256[]"], [proof, list(instances)])
