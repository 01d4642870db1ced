"""`compliance serve`: the read-only web view (starlette and uvicorn are imported only here, when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import settings


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8600,
    reports_dir: Annotated[Path | None, typer.Option("--reports-dir", help="Folder of rendered packs offered for download "
                                                     "(only files whose SHA-256 a report run recorded).")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option("--trusted-proxy", help="Address or network of the SSO reverse "
                                                             "proxy allowed to name the user (repeatable).")] = None,
    user_header: Annotated[str, typer.Option(help="Header in which the trusted proxy names the signed-in user.")] = "X-Remote-User",
    require_user: Annotated[bool, typer.Option("--require-user", help="Refuse requests that do not come through a trusted "
                                                "proxy naming a user.")] = False,
) -> None:
    """Serve a read-only web view of the store: dashboard, models, artifacts, checks, failure modes,
    findings, ledger and reports, each with a JSON twin under /api. Needs the `web` extra
    (pip install 'compliance[web]'). The database is opened read-only; only GET is answered.

    Example: compliance --db sqlite:///compliance-demo/compliance.db serve --reports-dir compliance-demo
    """
    from compliance.errors import UsageError
    from compliance.store.engine import check_schema, make_engine, resolve_url

    try:
        from compliance.web.app import serve as run_server
        from compliance.web.config import WebConfig, readonly_url
    except ImportError as exc:
        raise UsageError(f"the web view needs the `web` extra: pip install 'compliance[web]' ({exc.name} is missing)") from None
    cfg = WebConfig(db_url=resolve_url(settings(ctx).db_url), reports_dir=reports_dir, trusted_proxies=tuple(trusted_proxy or ()),
                    user_header=user_header, require_user=require_user)
    check_schema(make_engine(readonly_url(cfg.db_url)))
    if host not in ("127.0.0.1", "localhost", "::1") and not cfg.networks:
        typer.echo(f"warning: binding {host} without --trusted-proxy: anyone who reaches this address reads the store",
                   err=True)
    typer.echo(f"serving {host}:{port} read-only (Ctrl-C stops)", err=True)
    run_server(cfg, host, port)
