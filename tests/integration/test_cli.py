"""The command line against a real anvil: deploy, and errors a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from market.chain.anvil import DEV_KEYS, Anvil
from market.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_deploy_writes_a_deployment_file_with_live_contracts(
    anvil_node: Anvil, tmp_path: Path
) -> None:
    out = tmp_path / "dep.json"
    res = runner.invoke(
        app, ["deploy", "--rpc", anvil_node.rpc_url, "--key", DEV_KEYS[7], "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["chain_id"] == 31337 and doc["start_block"] >= 0
    from market.chain.client import ChainClient

    client = ChainClient(anvil_node.rpc_url)
    for field in ("model_registry", "node_registry", "payment_vault", "job_market"):
        assert len(client.w3.eth.get_code(doc[field])) > 100, field


def test_deploy_to_an_unreachable_rpc_says_so(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "deploy",
            "--rpc",
            "http://127.0.0.1:9",
            "--key",
            DEV_KEYS[7],
            "--out",
            str(tmp_path / "d.json"),
        ],
    )
    assert res.exit_code == 1
    assert "cannot reach the chain at http://127.0.0.1:9" in res.output
    assert not (tmp_path / "d.json").exists()


def test_deploy_with_an_unfunded_key_says_fund_it(anvil_node: Anvil, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "deploy",
            "--rpc",
            anvil_node.rpc_url,
            "--key",
            Account.create().key.to_0x_hex(),
            "--out",
            str(tmp_path / "d.json"),
        ],
    )
    assert res.exit_code == 1
    assert "Fund it" in res.output


def test_deploy_without_a_key_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERIMARKET_PRIVATE_KEY", raising=False)
    res = runner.invoke(
        app, ["deploy", "--rpc", "http://127.0.0.1:9", "--out", str(tmp_path / "d.json")]
    )
    assert res.exit_code == 1
    assert "--key" in res.output and "VERIMARKET_PRIVATE_KEY" in res.output


def test_submit_with_a_missing_deployment_or_input_is_refused(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "submit",
            "--model",
            "digits-mlp",
            "--input",
            str(tmp_path / "x.npy"),
            "--deployment",
            str(tmp_path / "nope.json"),
            "--key",
            DEV_KEYS[7],
        ],
    )
    assert res.exit_code == 1
    assert "no deployment file" in res.output
