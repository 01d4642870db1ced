"""`compliance init`, `compliance db upgrade|current`, `compliance verify`."""

from __future__ import annotations

from pathlib import Path

import typer

from compliance.cli.common import JsonOpt, emit, print_json, session, settings

db_app = typer.Typer(help="Schema migrations (Alembic).", no_args_is_help=True)


def init(ctx: typer.Context) -> None:
    """Create the database (or upgrade it) to the current schema, with the seeded catalog and policy.

    Example: compliance --db sqlite:///bank.db init
    """
    from compliance.store import migrate
    from compliance.store.engine import resolve_url

    url = resolve_url(settings(ctx).db_url)
    rev = migrate.upgrade(url)
    typer.echo(f"store ready at {_safe(url)} (schema {rev})")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Upgrade the schema to the latest revision.

    Example: compliance --db postgresql+psycopg://mrm@db/compliance db upgrade
    """
    init(ctx)


@db_app.command("current")
def db_current(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the schema revision of the database and the one this version expects.  Example: compliance db current --json"""
    from compliance.store import migrate
    from compliance.store.engine import SCHEMA_HEAD

    rev = migrate.current(settings(ctx).db_url)
    emit({"current": rev, "head": SCHEMA_HEAD, "up_to_date": rev == SCHEMA_HEAD}, as_json,
         lambda d: typer.echo(f"current: {d['current'] or '(not initialised)'}  head: {d['head']}"
                              + ("" if d["up_to_date"] else "  -> run `compliance db upgrade`")))


def verify(
    ctx: typer.Context,
    pack: Path | None = typer.Option(None, "--pack", help="Verify an export bundle (zip) instead of / as well as the store."),
    anchor: list[Path] = typer.Option([], "--anchor", help="An anchor file (`compliance anchor`); repeatable: the chain "
                                                           "must still contain every anchored entry."),
    as_json: JsonOpt = False,
) -> None:
    """Recompute the ledger's hash chain and compare every evidence row with its ledger entry.

    With --pack, verify a regulator export strictly (every file, the PDF's one attachment, every
    ledger entry re-hashed and chained); with a database too, verify the store's chain first and
    that the pack is exactly what the store recorded for that report run. Without a database, the
    summary says what could not be checked.

    \b
    Every signed attestation is checked against its reviewer's registered key (unknown, revoked
    or tampered: broken). A chain rewritten and re-hashed by someone with write access verifies on
    its own; with --anchor it is checked against checkpoints kept outside the database.

    \b
    Examples:
      compliance verify
      compliance verify --anchor anchors/2026-06-30.json --anchor anchors/2026-09-30.json
      compliance verify --pack pack.zip
    """
    from compliance.services.verification import verify_pack_cli, verify_store

    if pack is not None:
        result = verify_pack_cli(pack, settings(ctx).db_url if _db_given(ctx) else None)
    else:
        with session(ctx, readonly=True) as s:
            result = verify_store(s, anchors=anchor)
    if as_json:
        print_json(result)
    else:
        typer.echo(result["summary"], err=not result["ok"])
    if not result["ok"]:
        raise typer.Exit(1)


def _db_given(ctx: typer.Context) -> bool:
    import os

    return bool(settings(ctx).db_url or os.environ.get("COMPLIANCE_DB_URL"))


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
