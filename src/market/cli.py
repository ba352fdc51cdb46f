"""The `verimarket` command line: deploy, models, node, agent, demo.

Every error a user can cause ends as one line saying what went wrong and what to do, with
exit code 1 (never a traceback); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from market.errors import VerimarketError

app = typer.Typer(no_args_is_help=True, help="verimarket: verifiable AI inference for on-chain agents.")
models_app = typer.Typer(no_args_is_help=True, help="Build, list and show models.")
app.add_typer(models_app, name="models")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

RpcOpt = Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL (default: VERIMARKET_RPC_URL)")]
KeyOpt = Annotated[str | None, typer.Option("--key", help="private key (default: VERIMARKET_PRIVATE_KEY)", show_default=False)]


def friendly(fn: F) -> F:
    """Turn verimarket errors into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VerimarketError as exc:
            if os.environ.get("VERIMARKET_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@friendly
def deploy(
    rpc: RpcOpt = None,
    key: KeyOpt = None,
    out: Annotated[Path | None, typer.Option(help="deployment file to write")] = None,
) -> None:
    """Deploy the protocol contracts and write the deployment file."""
    from market.chain.client import ChainClient
    from market.chain.deploy import deploy as do_deploy
    from market.config import get_settings
    from market.errors import ConfigError

    s = get_settings()
    key = key or s.private_key
    if not key:
        raise ConfigError("deploying needs a funded key: pass --key or set VERIMARKET_PRIVATE_KEY")
    client = ChainClient(rpc or s.rpc_url, key)
    dep = do_deploy(client)
    target = out or s.deployment_file
    dep.save(target)
    console.print(f"deployed to chain {dep.chain_id}: market {dep.job_market}; wrote {target}")


@models_app.command("build")
@friendly
def models_build(
    out: Annotated[Path | None, typer.Option(help="artefact folder")] = None,
    only: Annotated[list[str] | None, typer.Option("--model", help="build only these")] = None,
) -> None:
    """Build the models offline and deterministically (digits MLP and CNN, MiniLM)."""
    from market.config import get_settings
    from worker.models import build_models

    target = out or get_settings().artifacts
    manifests = build_models(target, only or None, progress=True)
    for m in manifests:
        console.print(f"{m.name}: model id 0x{m.model_id.hex()} ({len(m.segments)} segments)")


if __name__ == "__main__":
    app()
