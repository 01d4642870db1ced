"""Shared CLI plumbing: global settings, option aliases, output (human or --json), errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import typer
from typer.core import TyperGroup

from compliance.errors import ComplianceError
from compliance.text import escape_controls

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
AtOpt = Annotated[str | None, typer.Option("--at", help="Effective time, ISO 8601 (default: now, UTC).")]
QuarterOpt = Annotated[str | None, typer.Option("--quarter", "-q", help="Quarter like 2026Q3 (default: the current quarter).")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Use only evidence recorded at or before this time (ISO 8601; default: now).")]


@dataclass
class Settings:
    db_url: str | None
    actor: str | None
    replay: bool = False


def when(value: str | None, what: str = "--at"):
    """Parse an optional ISO time option; default now (UTC)."""
    from compliance.timeutil import parse_datetime, utcnow

    return parse_datetime(value, what=what) if value else utcnow()


def past(value: str, what: str):
    """Parse an as-of option: a time that has passed (a view of the future is refused, not guessed)."""
    from compliance.errors import UsageError
    from compliance.timeutil import iso, parse_datetime, utcnow

    t, now = parse_datetime(value, what=what), utcnow()
    if t > now:
        raise UsageError(f"{what} {iso(t)} is in the future (now is {iso(now)})")
    return t


def settings(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else Settings(None, None)


def session(ctx: typer.Context, *, readonly: bool = False, short_writes: bool = False):
    from compliance.store.engine import session_scope

    s = settings(ctx)
    return session_scope(s.db_url, actor=s.actor, readonly=readonly, short_writes=short_writes, replay=s.replay)


def console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        print_json(data)
    else:
        human(data)


def table(title: str | None, columns: list[str], rows: list[list[Any]], *, status_col: str | None = None):
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        cells = []
        for c, v in zip(columns, r):
            text = "" if v is None else str(v)
            if status_col and c == status_col:
                text = status_markup(text)
            cells.append(text)
        t.add_row(*cells)
    console().print(t)


STATUS_COLOURS = {"pass": "green", "fresh": "green", "warn": "yellow", "stale": "yellow", "fail": "red",
                  "broken": "red", "error": "magenta", "missing": "red", "open": "red", "pending": "yellow",
                  "inconclusive": "cyan"}


def status_markup(s: str) -> str:
    colour = STATUS_COLOURS.get(s)
    return f"[bold {colour}]{s}[/]" if colour else s


VERDICT_COLOURS = {"fit": "green", "fit with conditions": "yellow", "not fit": "red"}


def verdict_markup(v: str | None) -> str:
    colour = VERDICT_COLOURS.get(v or "")
    return f"[bold {colour}]{v}[/]" if colour else (v or "—")


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


try:  # typer >= 0.16 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException as _ClickException


class ErrorMappingGroup(TyperGroup):
    """Root command group: turns ComplianceError into one line on stderr and its exit code."""

    def invoke(self, ctx):
        import os

        try:
            try:
                return super().invoke(ctx)
            finally:  # alerts written by a committed command go out now (never changes its outcome)
                _outbox = sys.modules.get("compliance.services.alerts")  # not imported: nothing written
                if _outbox is not None and _outbox.ENQUEUED:
                    from compliance.cli.alert_cmds import deliver_after_command

                    deliver_after_command(ctx)
        except ComplianceError as exc:
            typer.echo(f"error: {escape_controls(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, _ClickException):
            raise
        except Exception as exc:  # a bug or an environment problem: one line, unless debugging
            if os.environ.get("COMPLIANCE_DEBUG"):
                raise
            typer.echo(f"error: unexpected {type(exc).__name__}: {escape_controls(str(exc).splitlines()[0]) if str(exc) else ''} "
                       "(set COMPLIANCE_DEBUG=1 for the traceback)", err=True)
            ctx.exit(1)
