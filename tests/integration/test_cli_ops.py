"""Operator and agent commands on a real anvil: what they print and how they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from market.chain.anvil import DEV_KEYS
from market.cli import app
from market.paths import artifacts_dir
from worker.models import build_models, digits_test_split

from ..conftest import Chain

pytestmark = pytest.mark.integration
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_operator_and_agent_flow(chain: Chain, tmp_path: Path) -> None:
    build_models(artifacts_dir(), ["digits-mlp"], progress=False)
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)
    d = ["--deployment", str(dep)]
    node_key, agent_key = DEV_KEYS[1], DEV_KEYS[6]
    node_addr, agent_addr = chain.client(1).address, chain.client(6).address

    code, out = cli("node", "status", *d, "--key", node_key)
    assert code == 1 and "not a registered node" in out

    code, out = cli(
        "node",
        "register",
        "--stake",
        "3",
        "--model",
        "digits-mlp",
        "--price",
        str(10**15),
        *d,
        "--key",
        node_key,
    )
    assert code == 1 and "verimarket models register digits-mlp" in out
    assert not chain.market(1).node_info(node_addr).registered  # checked before paying
    code, out = cli("models", "register", "digits-mlp", *d, "--key", DEV_KEYS[0])
    assert code == 0, out
    code, out = cli(
        "node",
        "register",
        "--stake",
        "3",
        "--model",
        "digits-mlp",
        "--price",
        str(10**15),
        *d,
        "--key",
        node_key,
    )
    assert code == 0 and "serving digits-mlp" in out

    code, out = cli("node", "status", *d, "--key", node_key)
    assert code == 0 and "3.000000 ETH" in out

    code, out = cli("node", "withdraw", *d, "--key", node_key)
    assert code == 1 and "nothing to withdraw" in out

    code, out = cli(
        "agent",
        "fund",
        agent_addr,
        "--amount",
        "0.5",
        "--max-fee",
        "0.002",
        "--budget",
        "0.1",
        *d,
        "--key",
        DEV_KEYS[3],
    )
    assert code == 0, out
    code, out = cli("agent", "policy", agent_addr, *d)
    assert code == 0 and "0.500000 ETH" in out and "0.002000 ETH" in out
    code, out = cli("agent", "policy", agent_addr, "--max-fee", "0.003", *d, "--key", DEV_KEYS[3])
    assert code == 0 and "0.003000 ETH" in out
    code, out = cli("agent", "policy", agent_addr, "--max-fee", "0.004", *d, "--key", agent_key)
    assert code == 1 and "NotFunder" in out  # only the funder may change the policy

    code, out = cli("agent", "fund", "0x1234", "--amount", "1", *d, "--key", DEV_KEYS[3])
    assert code == 1 and "is not an address" in out

    code, out = cli("agent", "watch", "999", *d)
    assert code == 1 and "there is no job 999" in out

    code, out = cli("models", "show", "0x" + "ab" * 32, *d)
    assert code == 1 and "not registered" in out


def test_submit_pays_only_after_checking_the_input(chain: Chain, tmp_path: Path) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    from market.chain.types import Segment

    chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[99] * 8] * 8))  # pixels go up to 16
    code, out = cli(
        "submit",
        "--model",
        "digits-mlp",
        "--input",
        str(bad),
        "--deployment",
        str(dep),
        "--key",
        DEV_KEYS[6],
        "--no-wait",
    )
    assert code == 1 and "invalid input" in out
    assert chain.market(6).job_count() == 0  # nothing was paid

    good = tmp_path / "digit.npy"
    np.save(good, digits_test_split()[0][0])
    code, out = cli(
        "agent",
        "submit",
        "--model",
        "digits-mlp",
        "--input",
        str(good),
        "--deployment",
        str(dep),
        "--key",
        DEV_KEYS[6],
        "--no-wait",
    )
    assert code == 0 and "job 1 submitted" in out
    code, out = cli("models", "show", "digits-mlp", "--deployment", str(dep))
    assert code == 0 and manifest.segments[0].segment_hash in out
