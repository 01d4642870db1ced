"""The `compliance` command line: parse, call a library function, print. Nothing else.

Torch is never imported here: commands that run torch checks import them inside their body.
"""

from __future__ import annotations

from typing import Annotated

import typer

from compliance import __version__
from compliance.cli import (
    adapt_cmds,
    alert_cmds,
    check_cmds,
    correction_cmds,
    db_cmds,
    gov_cmds,
    identity_cmds,
    integration_cmds,
    narrative_cmds,
    plan_cmds,
    registry_cmds,
    report_cmds,
    web_cmds,
)
from compliance.cli.common import ErrorMappingGroup, Settings

app = typer.Typer(
    cls=ErrorMappingGroup,
    name="compliance",
    help=("System of record and audit-report generator for interpretability in regulated ML.\n\n"
          "Quick start: compliance demo   (builds the sample bank and its 2026Q3 audit pack)"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"compliance {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option("--db", envvar="COMPLIANCE_DB_URL",
                                           help="Database URL (default sqlite:///compliance.db; PostgreSQL: postgresql+psycopg://user@host/db).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", envvar="COMPLIANCE_ACTOR",
                                              help="Replays only (with --replay): the historical actor to record. "
                                                   "Otherwise entries record who is authenticated: the PostgreSQL "
                                                   "role, or the OS user on SQLite.")] = None,
    replay: Annotated[bool, typer.Option("--replay", envvar="COMPLIANCE_REPLAY",
                                         help="This command replays history (e.g. an import of historical records): "
                                              "--actor may name another person; every entry is marked 'replay'.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    ctx.obj = Settings(db_url=db, actor=actor, replay=replay)


app.command("init")(db_cmds.init)
app.command("verify")(db_cmds.verify)
app.add_typer(db_cmds.db_app, name="db")
app.add_typer(registry_cmds.model_app, name="model")
app.add_typer(registry_cmds.version_app, name="version")
app.command("deploy")(registry_cmds.deploy)
app.command("retire")(registry_cmds.retire)
app.add_typer(registry_cmds.artifact_app, name="artifact")
app.add_typer(registry_cmds.data_app, name="data")
app.add_typer(registry_cmds.volume_app, name="volume")
app.command("import")(registry_cmds.import_cmd)
app.add_typer(check_cmds.check_app, name="check")
app.add_typer(plan_cmds.plan_app, name="plan")
app.add_typer(alert_cmds.alerts_app, name="alerts")
app.add_typer(integration_cmds.sync_app, name="sync")
app.command("gate")(integration_cmds.gate_cmd)
app.command("adapt")(adapt_cmds.adapt)
app.command("adaptations")(adapt_cmds.adaptations)
app.add_typer(gov_cmds.policy_app, name="policy")
app.add_typer(gov_cmds.fm_app, name="failure-modes")
app.add_typer(gov_cmds.finding_app, name="finding")
app.command("void")(correction_cmds.void)
app.command("supersede")(correction_cmds.supersede)
app.command("corrections")(correction_cmds.corrections)
app.command("signoff")(gov_cmds.signoff)
app.add_typer(narrative_cmds.narrative_app, name="narrative")
app.command("status")(gov_cmds.status)
app.command("report")(report_cmds.report)
app.command("export")(report_cmds.export)
app.command("reports")(report_cmds.report_list)
app.command("demo")(report_cmds.demo)
app.command("serve")(web_cmds.serve)
app.add_typer(identity_cmds.person_app, name="person")
app.add_typer(identity_cmds.role_app, name="role")
app.add_typer(identity_cmds.key_app, name="key")
app.command("anchor")(identity_cmds.anchor)


def run() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
