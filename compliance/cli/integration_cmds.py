"""`compliance sync mlflow` and `compliance gate`: registry sync and the pre-promotion gate (DESIGN §10)."""

from __future__ import annotations

from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, emit, session

sync_app = typer.Typer(help="Registry sync: record versions and deployments as they happen in a model registry.",
                       no_args_is_help=True)


@sync_app.command("mlflow")
def sync_mlflow_cmd(
    ctx: typer.Context,
    tracking_uri: Annotated[str, typer.Option("--tracking-uri", help="MLflow tracking/registry URI "
                                              "(http://…, sqlite:///mlflow.db, file:…).")],
    model: Annotated[list[str] | None, typer.Option("--model", help="Registered model name (repeatable; default all).")] = None,
    mapping: Annotated[str | None, typer.Option("--mapping", help="YAML mapping registered model names to id, tier, "
                                                "owner, use (wins over the model's tags).")] = None,
    artifacts_dir: Annotated[str, typer.Option("--artifacts-dir", help="Where version artifacts are downloaded "
                                               "(the store keeps their path).")] = "mlflow-artifacts",
    alias: Annotated[list[str] | None, typer.Option("--alias", help="Alias that means live (repeatable; default champion).")] = None,
    stage: Annotated[list[str] | None, typer.Option("--stage", help="Stage that means live (repeatable; default Production).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record MLflow registered models, versions (weights SHA-256, training window, lineage) and
    alias / stage moves as deploy and retire events, in one transaction. A second sync writes nothing.

    Example: compliance sync mlflow --tracking-uri http://mlflow.bank.internal:5000 --model retail-pd
    """
    from compliance.integrations.mlflow_sync import sync_mlflow
    from compliance.safeyaml import load_yaml_file

    doc = load_yaml_file(mapping) if mapping else None
    with session(ctx) as s:
        out = sync_mlflow(s, tracking_uri, models=model or None, mapping=doc, artifacts_dir=artifacts_dir,
                          aliases=tuple(alias or ("champion",)), stages=tuple(stage or ("Production",)))

    def human(o):
        for k, label in (("models_added", "model"), ("versions_added", "version"), ("events", "event")):
            for x in o[k]:
                typer.echo(f"+ {label} {x}")
        for x in o["skipped"]:
            typer.echo(f"skipped: {x}")
        typer.echo(f"{o['written']} record(s) written from {o['registry']}" if o["written"] else
                   f"nothing new in {o['registry']}")

    emit(out, as_json, human)


def gate_cmd(
    ctx: typer.Context,
    model: str,
    version: Annotated[str | None, typer.Argument(help="Version label, e.g. v4.")] = None,
    version_opt: Annotated[str | None, typer.Option("--version", help="Version label (same as the argument).")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Also write the decision as tags on the MLflow model "
                                         "version it was synced from.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pre-promotion gate: exit 0 when every required artifact group has valid evidence on VERSION
    under the policy in force, 1 with the reasons otherwise. The decision is recorded (who, when,
    evidence); a refusal alerts. Run it in CI/CD before setting the alias or stage.

    Example: compliance gate retail-pd v4 --mlflow && mlflow-set-alias retail-pd champion 4
    """
    from compliance.errors import UsageError
    from compliance.services.gate import gate

    label = version or version_opt
    if not label:
        raise UsageError("name the version: compliance gate MODEL VERSION")
    with session(ctx) as s:
        out = gate(s, model, label)
        link = None
        if mlflow:
            from compliance.integrations.mlflow_sync import mlflow_version_of

            link = mlflow_version_of(s, out["version_id"])
            if link is None:
                raise UsageError(f"{model} {label} was not synced from MLflow: no version to tag")
    if link is not None:
        from compliance.integrations.mlflow_sync import write_gate_tags

        try:
            out["mlflow_tags"] = write_gate_tags(link[0], link[1], link[2], out)
        except Exception as exc:  # noqa: BLE001 - the decision is recorded; the tag write is reported
            typer.echo(f"error: decision {out['id']} recorded, but the MLflow tags were not written: "
                       f"{type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(2) from None

    def human(o):
        typer.echo(f"gate {o['decision'].upper()}: {model} {label} (decision {o['id']}, policy v{o['policy_version']})")
        for r in o["reasons"] + o["notes"]:
            typer.echo(f"  - {r}")
        for g, e in o["evidence"].items():
            typer.echo(f"  ok {g}: {', '.join(e['artifacts'])} (checks {', '.join(map(str, e['checks']))})")

    emit(out, as_json, human)
    if out["decision"] != "pass":
        raise typer.Exit(1)
