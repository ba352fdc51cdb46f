"""Commands for the market database and the chain indexer: ``db upgrade|downgrade|current``
and ``index``.

``register(app)`` adds them to the main ``verimarket`` command; ``python -m market.cli_index``
runs them alone (tests start the indexer that way to kill it). Errors a user can cause end as
one line and exit code 1.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from market.errors import ConfigError, VerimarketError
from market.paths import REPO_ROOT

#: The Alembic scripts (migrations/ at the repository root).
MIGRATIONS = REPO_ROOT / "migrations"

err_console = Console(stderr=True)
console = Console()
F = TypeVar("F", bound=Callable[..., Any])

DbUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: VERIMARKET_DATABASE_URL, else <data>/market.sqlite)",
        show_default=False,
    ),
]


def _friendly(fn: F) -> F:
    """Verimarket errors become one clear line and exit code 1 (VERIMARKET_DEBUG: raise)."""

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


def alembic_config(url: str) -> Any:
    """An Alembic Config for the market database at ``url`` (no alembic.ini needed)."""
    from alembic.config import Config

    if not (MIGRATIONS / "env.py").exists():
        raise ConfigError(f"cannot find the migrations at {MIGRATIONS}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    from alembic import command
    from sqlalchemy.exc import OperationalError

    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise ConfigError(f"cannot migrate the database: {exc.orig}") from exc


def _url(given: str | None) -> str:
    from market.db.models import database_url

    return given or database_url()


def register(app: typer.Typer) -> None:
    """Add ``db`` (upgrade / downgrade / current) and ``index`` to ``app``."""
    db_app = typer.Typer(no_args_is_help=True, help="Market database: migrations.")
    app.add_typer(db_app, name="db")

    @db_app.command("upgrade")
    @_friendly
    def db_upgrade(
        database_url: DbUrlOpt = None,
        revision: Annotated[str, typer.Option(help="target revision")] = "head",
    ) -> None:
        """Create or migrate the market database's tables (idempotent)."""
        url = _url(database_url)
        upgrade(url, revision)
        console.print(f"database at revision {revision}")

    @db_app.command("downgrade")
    @_friendly
    def db_downgrade(
        revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")],
        database_url: DbUrlOpt = None,
    ) -> None:
        """Migrate the market database down to REVISION (``base`` drops every table)."""
        from alembic import command

        command.downgrade(alembic_config(_url(database_url)), revision)
        console.print(f"database at revision {revision}")

    @db_app.command("current")
    @_friendly
    def db_current(database_url: DbUrlOpt = None) -> None:
        """Print the database's current revision."""
        from alembic import command

        command.current(alembic_config(_url(database_url)))

    @app.command("index")
    @_friendly
    def index(
        deployment: Annotated[
            Path | None,
            typer.Option(help="deployment file (default: VERIMARKET_DEPLOYMENT_FILE)"),
        ] = None,
        database_url: DbUrlOpt = None,
        rpc: Annotated[
            str | None, typer.Option("--rpc", help="JSON-RPC URL (default: the deployment's)")
        ] = None,
        confirmations: Annotated[int, typer.Option(help="blocks until final (K)")] = 12,
        keep_blocks: Annotated[int, typer.Option(help="block hashes kept for reorgs (N)")] = 128,
        batch_blocks: Annotated[int, typer.Option(help="most blocks per transaction")] = 2000,
        poll: Annotated[float, typer.Option(help="seconds between polls at the head")] = 1.0,
        max_backoff: Annotated[
            float, typer.Option(help="longest wait in seconds after failed chain reads")
        ] = 30.0,
        migrate: Annotated[bool, typer.Option(help="run `db upgrade` first")] = True,
        exit_at_head: Annotated[
            bool, typer.Option(help="stop once caught up instead of following the chain")
        ] = False,
    ) -> None:
        """Follow the deployment's contract events into the market database."""
        from market.chain.client import ChainClient
        from market.chain.types import Deployment
        from market.config import get_settings
        from market.db import make_engine
        from market.indexer import Indexer, IndexerConfig

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        path = deployment or get_settings().deployment_file
        if not path.exists():
            raise ConfigError(f"no deployment file at {path}: run `verimarket deploy` or pass one")
        dep = Deployment.load(path)
        url = _url(database_url)
        if migrate:
            upgrade(url)
        cfg = IndexerConfig(
            confirmations=confirmations,
            keep_blocks=keep_blocks,
            batch_blocks=batch_blocks,
            poll_interval=poll,
            max_backoff_s=max_backoff,
        )
        engine = make_engine(url)
        client = ChainClient(rpc or dep.rpc_url, timeout=get_settings().rpc_timeout_s)
        indexer = Indexer(client, dep, engine, cfg)
        indexer.setup()
        signal.signal(signal.SIGTERM, lambda *_: indexer.stop())
        signal.signal(signal.SIGINT, lambda *_: indexer.stop())
        console.print(
            f"indexing {dep.job_market} on chain {dep.chain_id} from block "
            f"{indexer.cursor().block + 1}"
        )
        if exit_at_head:
            block = indexer.sync()
            console.print(f"caught up at block {block}: {indexer.events_indexed} events")
        else:
            indexer.run_forever()
        engine.dispose()


app = typer.Typer(no_args_is_help=True, help="verimarket database and indexer commands.")
register(app)

if __name__ == "__main__":
    app()
