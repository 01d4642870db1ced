"""Corrections: void or supersede a record without rewriting history."""

from __future__ import annotations

from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session, table

EntityArg = Annotated[str, typer.Argument(help="model | version | deployment | artifact | check | volume")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (required; recorded with the correction).")]


def _said(d: dict) -> None:
    what = "voided" if d["action"] == "void" else f"superseded by {d['replacement_id']}"
    typer.echo(f"{d['entity']} {d['entity_id']} {what} (correction {d['id']}); it stays in the store and "
               "every analysis as of now or later leaves it out")


def void(ctx: typer.Context, entity: EntityArg, entity_id: Annotated[str, typer.Argument(help="Its id.")],
         reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Void a record from now on: it stays in the store and the evidence index, marked; reports as of an
    earlier time are unchanged.

    Example: compliance void volume 812 --reason "imported twice"
    """
    from compliance.services.corrections import void as do_void

    with session(ctx) as s:
        d = do_void(s, entity, entity_id, reason=reason)
    emit(d, as_json, _said)


def supersede(ctx: typer.Context, entity: EntityArg, entity_id: Annotated[str, typer.Argument(help="Its id.")],
              by: Annotated[str, typer.Option("--by", help="Id of the record (same type) that replaces it.")],
              reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Supersede a record by another of the same type, from now on (both stay in the store).

    Example: compliance supersede check 41 --by 57 --reason "re-run on the corrected window"
    """
    from compliance.services.corrections import supersede as do_supersede

    with session(ctx) as s:
        d = do_supersede(s, entity, entity_id, by=by, reason=reason)
    emit(d, as_json, _said)


def corrections(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the corrections recorded (void and supersede).  Example: compliance corrections --json"""
    from compliance.services.corrections import list_corrections

    with session(ctx, readonly=True) as s:
        rows = list_corrections(s)
    emit(rows, as_json, lambda rs: table(f"Corrections ({len(rs)})", ["id", "record", "action", "by", "reason", "actor", "at"],
                                         [[r["id"], f"{r['entity']} {r['entity_id']}", r["action"], r["replacement_id"],
                                           r["reason"], r["actor"], r["recorded_at"]] for r in rs]))
