"""`compliance alerts`: the alert outbox and its delivery (DESIGN §10)."""

from __future__ import annotations

from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session, settings, table

alerts_app = typer.Typer(help="Alerts: the outbox of alerts (occurrence opened, verdict worsened, gate refused, "
                              "check missed) and their webhook / e-mail deliveries.", no_args_is_help=True)
ConfigOpt = Annotated[str | None, typer.Option("--config", help="Delivery configuration (YAML); default "
                                               "$COMPLIANCE_ALERTS_CONFIG, else COMPLIANCE_WEBHOOK_* / "
                                               "COMPLIANCE_SMTP_* environment variables.")]


@alerts_app.command("list")
def alerts_list(ctx: typer.Context, config: ConfigOpt = None,
                state: Annotated[str | None, typer.Option("--state", help="Only alerts in this state: delivered, "
                                                          "failed, pending, no channel.")] = None,
                limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
                as_json: JsonOpt = False) -> None:
    """List alerts, newest first, with every delivery attempt and its outcome.

    Example: compliance alerts list --state failed
    """
    from compliance.integrations.alerts import load_config
    from compliance.services.alerts import list_alerts

    cfg = load_config(config)
    with session(ctx, readonly=True) as s:
        rows = list_alerts(s, targets_of=cfg.targets, state=state, limit=limit)

    def human(rows):
        from rich.markup import escape

        table(f"{len(rows)} alert(s)", ["id", "recorded", "event", "model", "subject", "attempts", "state"],
              [[a["id"], a["recorded_at"][:16], a["event"], a["model_id"] or "", escape(a["subject"]), len(a["deliveries"]),
                a["state"]] for a in rows])

    emit(rows, as_json, human)


@alerts_app.command("retry")
def alerts_retry(ctx: typer.Context, config: ConfigOpt = None,
                 alert_id: Annotated[list[int] | None, typer.Option("--id", help="Only this alert (repeatable).")] = None,
                 force: Annotated[bool, typer.Option("--force", help="Retry now, before each failed delivery's "
                                                     "next attempt time.")] = False,
                 as_json: JsonOpt = False) -> None:
    """Deliver alerts not delivered yet whose retry time has come; every attempt is recorded.

    Schedule it beside the due checks: `*/10 * * * * compliance --db $URL alerts retry`.
    Example: compliance alerts retry --force
    """
    from compliance.errors import UsageError
    from compliance.integrations.alerts import deliver_pending, load_config

    cfg = load_config(config)
    if not cfg.configured:
        raise UsageError("no alert channel configured: pass --config or set COMPLIANCE_ALERTS_CONFIG "
                         "(or COMPLIANCE_WEBHOOK_URL / COMPLIANCE_SMTP_HOST)")
    made = deliver_pending(lambda **kw: session(ctx, **kw), cfg, force=force, alert_ids=alert_id or None)

    def human(made):
        for m in made:
            typer.echo(f"alert {m['alert_id']} {m['channel']} {m['target']}: {m['outcome']} (attempt {m['attempt']}; "
                       f"{m['detail']})" + (f"; next try after {m['next_attempt_at']}" if m["next_attempt_at"] else ""))
        typer.echo(f"{sum(m['outcome'] == 'delivered' for m in made)} delivered, "
                   f"{sum(m['outcome'] == 'failed' for m in made)} failed attempt(s)")

    emit(made, as_json, human)
    if any(m["outcome"] == "failed" and m["next_attempt_at"] for m in made):
        raise typer.Exit(3)


def deliver_after_command(ctx: typer.Context) -> None:
    """After a command that wrote alerts has committed: try to deliver them. Never raises; a
    failure is recorded in the outbox and said in one line on stderr."""
    from compliance.services.alerts import ENQUEUED

    if not ENQUEUED:
        return
    ENQUEUED.clear()
    try:
        from compliance.integrations.alerts import deliver_pending, load_config

        cfg = load_config()
        if not cfg.configured:
            return
        from compliance.store.engine import session_scope

        st = settings(ctx)
        made = deliver_pending(lambda **kw: session_scope(st.db_url, actor=st.actor, **kw), cfg)
        for m in made:
            if m["outcome"] == "failed" and m["next_attempt_at"]:
                typer.echo(f"alert {m['alert_id']}: {m['channel']} {m['target']} not delivered ({m['detail']}); "
                           f"recorded, retried after {m['next_attempt_at']} (`compliance alerts retry`)", err=True)
    except Exception as exc:  # noqa: BLE001 - the command's own write has committed; delivery never undoes it
        typer.echo(f"alert delivery skipped: {type(exc).__name__}: {exc}", err=True)
