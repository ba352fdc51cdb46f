"""`verimarket demo --redundant --cache`: both of issue #10's extras on a fresh chain."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from market.cli import app

pytestmark = pytest.mark.integration


def test_demo_redundant_and_cache_flags() -> None:
    res = CliRunner().invoke(app, ["demo", "--redundant", "--cache", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    red, cache = out["redundant"], out["cache"]
    assert red["status"] == "settled" and (red["k"], red["n"]) == (2, 3)
    assert red["predicted"] == red["label"]
    assert len(red["gas"]["commit"]) == 3 and len(red["gas"]["reveal"]) == 3
    assert red["gas_total"] == sum(sum(v) for v in red["gas"].values())
    assert cache["answered_from"] == cache["reference_job"]
    assert cache["same_result"] and cache["settled_at_once"]
    assert cache["reference_checked_on_chain"]
    assert cache["cache_price_wei"] < cache["price_wei"]
