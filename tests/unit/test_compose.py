"""docker-compose.yml cannot run here (no Docker engine), so it is kept honest by reading:
every command it names is a real `verimarket` command with real options, and every
VERIMARKET_* setting it passes is one the services read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
import yaml

from market.cli import app
from market.config import Settings
from market.paths import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


def services() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    return dict(doc["services"])


def resolve(argv: list[str]) -> tuple[Any, list[str]]:
    """The click command an argv names, and the arguments left for it."""
    cmd: Any = typer.main.get_command(app)
    rest = list(argv)
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"`verimarket {' '.join(argv)}`: no command {rest[0]!r}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def test_every_service_command_is_a_real_cli_command_with_real_options() -> None:
    checked = 0
    for name, svc in services().items():
        if "command" not in svc or svc.get("entrypoint"):
            continue  # third-party images (postgres, redis) and anvil's own entrypoint
        if str(svc.get("image", "")).startswith(("postgres", "redis")):
            continue
        cmd, rest = resolve(list(map(str, svc["command"])))
        assert not hasattr(cmd, "commands"), f"{name}: `{svc['command']}` names a group"
        ctx = cmd.make_context(f"verimarket-{name}", rest, resilient_parsing=False)
        assert ctx.params is not None
        checked += 1
    assert checked >= 7


def test_every_setting_passed_is_read_by_the_services() -> None:
    known = {f"VERIMARKET_{f.upper()}" for f in Settings.model_fields}
    for name, svc in services().items():
        for key in svc.get("environment") or {}:
            if key.startswith("VERIMARKET_"):
                assert key in known, f"{name}: {key} is not a setting (market.config.Settings)"


def test_services_with_state_keep_it_in_volumes_and_have_health_checks() -> None:
    svcs = services()
    for name in ("postgres", "redis", "api", "anvil"):
        assert "healthcheck" in svcs[name], name
    for name in ("postgres", "redis"):
        assert svcs[name]["volumes"], name
    assert Path(REPO_ROOT / "Dockerfile").exists()
