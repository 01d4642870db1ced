"""`compliance plan`: a model's monitoring plan (DESIGN §10)."""

from __future__ import annotations

from typing import Annotated

import typer

from compliance.cli.common import AtOpt, JsonOpt, emit, session, table, when

plan_app = typer.Typer(help="Monitoring plans: which checks run how often, on which data, and who is alerted.",
                       no_args_is_help=True)


@plan_app.command("set")
def plan_set(ctx: typer.Context, model: str,
             file: Annotated[str, typer.Option("--file", "-f", help="The plan (YAML, compliance-plan/1).")],
             as_json: JsonOpt = False) -> None:
    """Record a new version of MODEL's monitoring plan from a YAML file (validated first).

    Example: compliance plan set retail-pd --file plans/retail-pd.yaml
    """
    from compliance.services.plans import set_plan_file

    with session(ctx) as s:
        out = set_plan_file(s, model, file)
    emit(out, as_json, lambda o: typer.echo(
        f"plan of {model} unchanged (version {o['version']})" if o["unchanged"]
        else f"plan of {model}: version {o['version']} recorded"))


@plan_app.command("show")
def plan_show(ctx: typer.Context, model: str, at: AtOpt = None, as_json: JsonOpt = False) -> None:
    """Show the monitoring plan in force for MODEL (its own, else its tier's default) and its adherence.

    Example: compliance plan show retail-pd --json
    """
    from compliance.services.plans import plan_adherence, show_plan

    t = when(at)
    with session(ctx, readonly=True) as s:
        out = show_plan(s, model, t)
        out["adherence"] = plan_adherence(s, t, [model])

    def human(o):
        typer.echo(f"{model} (tier {o['tier']}): {'plan v%s' % o['version'] if o['explicit'] else o['source']}"
                   + (f", since {o['since']}" if o["since"] else ""))
        d = o["document"]
        table("Checks", ["kind", "cadence", "data", "budget"],
              [[k, _cadence(c), _data(c.get("data")), _budget(c.get("budget"))] for k, c in d["checks"].items()])
        a = d.get("alert") or {}
        typer.echo(f"alerted: e-mail {', '.join(a.get('email') or []) or '—'}; "
                   f"webhook {', '.join(a.get('webhook') or []) or '—'}; grace {d.get('grace_days', 1)} day(s)")
        if o["adherence"]:
            table("Adherence (deployed versions)", ["version", "kind", "last check", "next due", "missed", "state"],
                  [[r["version"], r["kind"], _t(r["last_check_at"]), _t(r["next_due"]),
                    ", ".join(m["due"].date().isoformat() for m in r["missed"]) or "—", r["state"]]
                   for r in o["adherence"]])

    emit(out, as_json, human)


def _t(x) -> str:
    return "—" if x is None else x.date().isoformat()


def _cadence(c: dict) -> str:
    parts = (["after_retrain"] if c.get("after_retrain") else []) + (
        [f"every {c['every_days']}d"] if c.get("every_days") else [])
    return " + ".join(parts) + ("" if c.get("required", True) else " (optional)")


def _data(d: dict | None) -> str:
    if not d:
        return "latest production window"
    return f"dataset {d['dataset']}" if "dataset" in d else f"path {d['path']}"


def _budget(b: dict | None) -> str:
    if not b:
        return "—"
    return " / ".join(x for x in ((f"{b['seconds']:g}s" if b.get("seconds") else ""),
                                  (f"{b['rows']} rows" if b.get("rows") else "")) if x)
