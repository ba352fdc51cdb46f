"""`verimarket audit` from public data alone: an honest job checks out; a node that
committed a wrong output is caught; bad job ids are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from market.chain.types import JobRequest, Segment
from market.cli import app
from market.paths import artifacts_dir
from worker.models import build_models, digits_test_split, encode_digits_input, load_model

from ..conftest import Chain

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_audit_verdicts(chain: Chain, tmp_path: Path) -> None:
    manifest = build_models(artifacts_dir(), ["digits-mlp"], progress=False)[0]
    model = load_model(artifacts_dir(), "digits-mlp")
    model_id = chain.market(0).register_model(
        manifest.artifacts_hash_bytes,
        manifest.output_scale,
        "",
        [Segment(*s) for s in manifest.chain_segments()],
    )
    node, agent = chain.market(1), chain.market(6)
    node.register_node(5 * 10**18)
    node.set_model_price(model_id, 10**15)
    now = int(chain.client(0).w3.eth.get_block("latest")["timestamp"])
    inputs = [encode_digits_input(img) for img in digits_test_split()[0][:2]]
    honest, cheat = agent.submit_jobs(
        [
            JobRequest(
                model_id=model_id,
                input_hash=keccak(x),
                input=x,
                max_fee=2 * 10**15,
                deadline=now + 600,
            )
            for x in inputs
        ]
    )
    node.claim_jobs([honest, cheat])
    right = model.run_inputs(inputs)
    wrong = right[0]  # the honest output of the other image: well-formed, but not this job's
    node.commit_results(
        [honest, cheat], [keccak(right[0]), keccak(wrong)], [right[0], wrong], ["", ""]
    )
    dep = tmp_path / "dep.json"
    chain.deployment.save(dep)

    res = runner.invoke(app, ["audit", str(honest), "--deployment", str(dep), "--json"])
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.output)
    assert verdict["ok"] and {c["name"] for c in verdict["checks"] if c["ok"]} >= {
        "model artefacts",
        "input",
        "output",
        "re-execution",
    }

    res = runner.invoke(app, ["audit", str(cheat), "--deployment", str(dep)])
    assert res.exit_code == 1
    assert "FAIL  re-execution" in res.output and "does NOT check out" in res.output

    res = runner.invoke(app, ["audit", "999", "--deployment", str(dep)])
    assert res.exit_code == 1 and "no job 999" in res.output
