"""The committed ABI files must match a fresh forge build (run `make abi` when this fails)."""

from __future__ import annotations

from market.chain.artifacts import decode_revert, error_table, load
from market.chain.codegen import CONTRACTS, FORGE_OUT, stale


def test_committed_abis_match_forge_output() -> None:
    assert FORGE_OUT.exists(), "contracts are not built: run `make setup`"
    assert stale() == [], "ABI files are stale: run `make abi` and commit src/market/chain/abi"


def test_every_contract_has_abi_and_bytecode_under_the_size_limit() -> None:
    for name in CONTRACTS:
        art = load(name)
        assert art.abi and art.bytecode.startswith("0x") and len(art.bytecode) > 2
        assert art.deployed_size <= 24_576, f"{name} is {art.deployed_size} bytes"


def test_custom_errors_decode_with_their_arguments() -> None:
    table = error_table()
    spec = next(s for s in table.values() if s.name == "DeadlinePassed")
    selector = next(k for k, v in table.items() if v is spec)
    from eth_abi import encode

    data = selector + encode(["uint256", "uint256"], [7, 1234])
    err = decode_revert(data)
    assert err is not None and err.name == "DeadlinePassed"
    assert err.args_by_name == {"jobId": 7, "deadline": 1234}
    assert "DeadlinePassed(jobId=7, deadline=1234)" in str(err)
    assert decode_revert(b"\x12\x34\x56\x78") is None
