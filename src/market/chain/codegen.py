"""Generate the Python package's ABI files from forge's build output.

``make abi`` (part of ``make setup``) runs ``python -m market.chain.codegen``: it reads
``contracts/out/<Name>.sol/<Name>.json`` for every contract the Python side uses and writes
``src/market/chain/abi/<Name>.json`` with the ABI and creation bytecode. The files are
committed so the package works without a Foundry build; ``tests/unit/test_abi_fresh.py``
fails when they differ from a fresh build (``--check`` does the same from the shell).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from market.paths import REPO_ROOT

#: Contracts whose ABI and bytecode the Python side needs.
CONTRACTS: tuple[str, ...] = (
    "ModelRegistry",
    "NodeRegistry",
    "PaymentVault",
    "JobMarket",
    "ZkVerification",
    "DigitsConsumer",
    "RedundantJobs",
    "PipelineJobs",
)

ABI_DIR = Path(__file__).resolve().parent / "abi"
FORGE_OUT = REPO_ROOT / "contracts" / "out"


def render(name: str, forge_out: Path = FORGE_OUT) -> str:
    """The ABI file for ``name`` as text, from forge's artefact."""
    matches = sorted(forge_out.glob(f"*/{name}.json"))
    exact = [m for m in matches if m.parent.name == f"{name}.sol"] or matches
    if not exact:
        raise FileNotFoundError(
            f"no forge artefact for {name} under {forge_out}; run `make contracts` first"
        )
    artefact: dict[str, Any] = json.loads(exact[0].read_text())
    doc = {
        "contractName": name,
        "abi": artefact["abi"],
        "bytecode": artefact["bytecode"]["object"],
        "deployedBytecodeSize": (len(artefact["deployedBytecode"]["object"]) - 2) // 2,
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def stale(forge_out: Path = FORGE_OUT, abi_dir: Path = ABI_DIR) -> list[str]:
    """Names of contracts whose committed ABI file differs from forge's output."""
    out = []
    for name in CONTRACTS:
        target = abi_dir / f"{name}.json"
        if not target.exists() or target.read_text() != render(name, forge_out):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        if names:
            print(f"stale ABI files: {', '.join(names)} (run `make abi`)", file=sys.stderr)
            return 1
        return 0
    ABI_DIR.mkdir(parents=True, exist_ok=True)
    for name in CONTRACTS:
        (ABI_DIR / f"{name}.json").write_text(render(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
