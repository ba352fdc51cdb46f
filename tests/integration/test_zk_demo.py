"""`verimarket demo --verify zk-spot`: the zk path through the REAL processes (an inference
worker, a separate prove worker on the ``prove`` queue, the node, the settlement service)
on its own anvil, with the real prover; every job settles on its proof and every audit
checks out. About two minutes on a 2-core machine, so that test runs with `make test-long`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from market.cli import app

pytestmark = pytest.mark.integration


@pytest.mark.long
def test_demo_verify_zk_spot_settles_every_job_on_its_proof() -> None:
    res = CliRunner().invoke(app, ["demo", "--verify", "zk-spot", "--jobs", "3", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["ok"] and summary["jobs_settled"] == 3 and summary["audits_ok"] == 3
    assert all(len(segs) == 1 for segs in summary["segments_proven"].values())
    assert 0 < summary["gas"]["submitProof"] < 650_000


def test_demo_verify_refuses_unknown_modes_and_models() -> None:
    res = CliRunner().invoke(app, ["demo", "--verify", "zk-everything"])
    assert res.exit_code == 1 and "--verify must be one of zk-spot, zk-full" in res.output
    res = CliRunner().invoke(app, ["demo", "--verify", "zk-spot", "--model", "minilm"])
    assert res.exit_code == 1 and "needs a model with circuits" in res.output
