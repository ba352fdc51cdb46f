"""`verimarket api`: serve the market API with uvicorn.

Wired into the main CLI by ``market.cli_api.register(app)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

HostOpt = Annotated[str | None, typer.Option(help="bind address (default: VERIMARKET_API_HOST)")]
PortOpt = Annotated[int | None, typer.Option(help="port (default: VERIMARKET_API_PORT)")]
DbOpt = Annotated[
    str | None, typer.Option("--db", help="database URL (default: VERIMARKET_DATABASE_URL)")
]
ProxyOpt = Annotated[
    bool, typer.Option(help="trust X-Forwarded-For from --forwarded-allow-ips (behind a proxy)")
]
ForwardedOpt = Annotated[str, typer.Option(help="proxies trusted for X-Forwarded-*")]


def register(app: typer.Typer) -> None:
    """Add the ``api`` command to ``app``."""

    @app.command("api")
    def api(
        host: HostOpt = None,
        port: PortOpt = None,
        database_url: DbOpt = None,
        proxy_headers: ProxyOpt = False,
        forwarded_allow_ips: ForwardedOpt = "127.0.0.1",
        log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    ) -> None:
        """Serve the market API (jobs, nodes, models, stats, blobs, /metrics, /health).

        One process: sign-in nonces and rate-limit buckets live in it (docs/api.md).
        """
        import uvicorn

        from market.api.app import create_app
        from market.config import get_settings

        settings = get_settings()
        if database_url is not None:
            settings = settings.model_copy(update={"database_url": database_url})
        uvicorn.run(
            create_app(settings),
            host=host or settings.api_host,
            port=port or settings.api_port,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level=log_level,
        )
