"""Registry commands: models, versions, deployments, artifacts, datasets, volumes, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import when, AtOpt, JsonOpt, emit, session, table

model_app = typer.Typer(help="Model inventory.", no_args_is_help=True)
version_app = typer.Typer(help="Model versions (weights hashed on registration).", no_args_is_help=True)
artifact_app = typer.Typer(help="Interpretability artifacts (SAEs, transcoders, CLTs, probes...).", no_args_is_help=True)
data_app = typer.Typer(help="Data files of a model (production windows, reference samples).", no_args_is_help=True)
volume_app = typer.Typer(help="Daily decision volumes (weight explanation coverage).", no_args_is_help=True)



# ------------------------------------------------------------------ model
@model_app.command("add")
def model_add(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Slug, e.g. retail-pd.")],
    name: Annotated[str, typer.Option(help="Human name.")],
    owner: Annotated[str, typer.Option(help="Accountable model owner (first line).")],
    tier: Annotated[int, typer.Option(help="Risk tier: 1 = highest, 3 = lowest.")],
    use: Annotated[str, typer.Option(help="Business use.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Regulatory tag, repeatable (sr11-7, eu-ai-act-high-risk).")] = None,
    adapter: Annotated[str | None, typer.Option(help="Model adapter 'module:callable' for checks that run the model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a model to the inventory.

    Example: compliance model add retail-pd --name "Retail PD" --owner alice --tier 1 --use "Retail credit PD" --tag sr11-7
    """
    from compliance.services import registry

    with session(ctx) as s:
        m = registry.add_model(s, model_id, name=name, owner=owner, tier=tier, use=use, tags=tag, adapter=adapter)
    emit(m, as_json, lambda d: typer.echo(f"added model {d['id']} (tier {d['tier']}, owner {d['owner']})"))


@model_app.command("list")
def model_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the inventory.  Example: compliance model list --json"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        rows = registry.list_models(s)
    emit(rows, as_json, lambda rs: table("Models", ["id", "name", "tier", "owner", "tags"],
                                          [[r["id"], r["name"], r["tier"], r["owner"], ", ".join(r["tags"])] for r in rs]))


@model_app.command("show")
def model_show(ctx: typer.Context, model_id: str, as_json: JsonOpt = False) -> None:
    """Show a model with its versions, deployments and artifacts.  Example: compliance model show retail-pd"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        m = registry.show_model(s, model_id)

    def human(d):
        typer.echo(f"{d['id']}: {d['name']} — tier {d['tier']}, owner {d['owner']}, tags {', '.join(d['tags']) or '-'}")
        typer.echo(f"use: {d['business_use']}")
        table("Versions", ["version", "weights sha256", "trained at"],
              [[v["label"], v["weights_sha256"][:16], v["trained_at"]] for v in d["versions"]])
        table("Deployments", ["version", "action", "effective"], [[e["version"], e["action"], e["effective_at"]] for e in d["deployments"]])
        table("Artifacts", ["id", "kind", "format"], [[a["id"], a["kind"], a["format"]] for a in d["artifacts"]])

    emit(m, as_json, human)


# ------------------------------------------------------------------ version
@version_app.command("add")
def version_add(
    ctx: typer.Context,
    model_id: str,
    version: str,
    weights: Annotated[Path, typer.Option(help="Weights file; its SHA-256 is recorded (streamed).")],
    trained_at: Annotated[str | None, typer.Option(help="ISO time the version was trained.")] = None,
    data_window: Annotated[str | None, typer.Option(help="Training data window START..END.")] = None,
    parent: Annotated[str | None, typer.Option(help="Parent version label.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model version.

    Example: compliance version add retail-pd v5 --weights v5.safetensors --trained-at 2026-07-01 --data-window 2026-01-01..2026-06-30 --parent v4
    """
    from compliance.services import registry
    from compliance.timeutil import parse_datetime, parse_window

    ta = parse_datetime(trained_at, what="--trained-at") if trained_at else None
    win = parse_window(data_window, what="--data-window")
    with session(ctx) as s:
        v = registry.add_version(s, model_id, version, weights=weights, trained_at=ta, data_window=win, parent=parent)
    emit(v, as_json, lambda d: typer.echo(f"registered {model_id} {d['label']} (sha256 {d['weights_sha256'][:16]}…)"))


@version_app.command("list")
def version_list(ctx: typer.Context, model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List model versions.  Example: compliance version list --model retail-pd"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        rows = registry.list_versions(s, model)
    emit(rows, as_json, lambda rs: table("Versions", ["model", "version", "sha256", "trained at"],
                                          [[r["model_id"], r["label"], r["weights_sha256"][:16], r["trained_at"]] for r in rs]))


def deploy(ctx: typer.Context, model_id: str, version: str, at: AtOpt = None, as_json: JsonOpt = False) -> None:
    """Record that a version went live (it stays deployed until retired).

    Example: compliance deploy retail-pd v5 --at 2026-07-01T06:00:00Z
    """
    from compliance.services import registry

    with session(ctx) as s:
        e = registry.deploy(s, model_id, version, at=when(at))
    emit(e, as_json, lambda d: typer.echo(f"deployed {model_id} {version} effective {d['effective_at']}"))


def retire(ctx: typer.Context, model_id: str, version: str, at: AtOpt = None, as_json: JsonOpt = False) -> None:
    """Record that a deployed version was taken out of service.

    Example: compliance retire retail-pd v4 --at 2026-07-01T06:00:00Z
    """
    from compliance.services import registry

    with session(ctx) as s:
        e = registry.retire(s, model_id, version, at=when(at))
    emit(e, as_json, lambda d: typer.echo(f"retired {model_id} {version} effective {d['effective_at']}"))


# ------------------------------------------------------------------ artifact
@artifact_app.command("add")
def artifact_add(
    ctx: typer.Context,
    model_id: str,
    kind: Annotated[str, typer.Option(help="sae | transcoder | clt | probe | attribution_baseline | feature_labels")],
    bound_version: Annotated[str, typer.Option(help="Version the artifact was trained/calibrated on.")],
    path: Annotated[Path, typer.Option(help="Artifact file or folder (SAELens, circuit-tracer, sparsify, Gemma Scope, dictionary_learning); a folder of several (a circuit-tracer transcoder set, a sparsify or SAELens multi-hook folder) registers an artifact set, one member each.")],
    hook: Annotated[str | None, typer.Option(help="Hook point read (default: from the artifact's cfg).")] = None,
    hook_out: Annotated[str | None, typer.Option(help="Hook point reconstructed (transcoders, CLTs).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Feature-label JSON {index: label}.")] = None,
    artifact_id: Annotated[str | None, typer.Option("--id", help="Artifact id (default: derived from model, kind, version, hash).")] = None,
    replaces: Annotated[str | None, typer.Option(help="Id of the artifact this one replaces (lineage).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an artifact: hashes every file, detects the format and reads shapes from the headers.

    Example: compliance artifact add retail-pd --kind sae --bound-version v2 --path saes/l1 --labels saes/l1/labels.json
    """
    from compliance.services import registry

    with session(ctx) as s:
        a = registry.add_artifact(s, model_id, kind=kind, bound_version=bound_version, path=path, hook=hook,
                                  hook_out=hook_out, labels=labels, artifact_id=artifact_id, replaces=replaces)
    emit(a, as_json, lambda d: typer.echo(
        f"registered artifact {'set ' if d.get('is_set') else ''}{d['id']} ({d['format']}, "
        f"{d['architecture'] or '-'}, d_in={d['d_in']}, features={d['d_sae']}"
        + (f", members: {', '.join(m['id'] for m in d['member_artifacts'])}" if d.get("is_set") else "")
        + f") bound to {model_id} {d['bound_version']}"))


@artifact_app.command("add-set")
def artifact_add_set(
    ctx: typer.Context,
    model_id: str,
    kind: Annotated[str, typer.Option(help="sae | transcoder | clt: the kind of every member.")],
    bound_version: Annotated[str, typer.Option(help="Version the artifacts were trained on.")],
    member: Annotated[list[str], typer.Option(help="NAME=PATH of one member (repeat, in order), e.g. layer_0=saes/l0.")],
    set_id: Annotated[str | None, typer.Option("--id", help="Set id (default: derived from model, kind, version, hash).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register single artifacts kept apart as one artifact set, judged as a unit (one member each).

    A folder holding a whole set (a circuit-tracer transcoder set, a sparsify or SAELens
    multi-hook folder) needs no add-set: `artifact add --path FOLDER` detects it.

    Example: compliance artifact add-set retail-pd --kind sae --bound-version v2 --member layer_0=saes/l0 --member layer_1=saes/l1
    """
    from compliance.errors import UsageError
    from compliance.services import registry

    pairs = []
    for m in member:
        name, sep, path = m.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--member {m!r}: expected NAME=PATH")
        pairs.append((name, Path(path)))
    with session(ctx) as s:
        d = registry.add_artifact_set(s, model_id, kind=kind, bound_version=bound_version, members=pairs,
                                      set_id=set_id)
    emit(d, as_json, lambda d: typer.echo(
        f"registered artifact set {d['id']} ({d['format']}, {d['architecture'] or '-'}, members: "
        f"{', '.join(m['id'] for m in d['member_artifacts'])}) bound to {model_id} {d['bound_version']}"))


@artifact_app.command("list")
def artifact_list(ctx: typer.Context, model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
                  as_json: JsonOpt = False) -> None:
    """List artifacts.  Example: compliance artifact list --model card-fraud"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        rows = registry.list_artifacts(s, model)
    emit(rows, as_json, lambda rs: table("Artifacts", ["id", "model", "kind", "format", "bound", "d_in", "features"],
                                          [[r["id"], r["model_id"], r["kind"], r["format"], r["bound_version"], r["d_in"], r["d_sae"]] for r in rs]))


@artifact_app.command("show")
def artifact_show(ctx: typer.Context, artifact_id: str, as_json: JsonOpt = False) -> None:
    """Show an artifact with its files, hashes and checks.  Example: compliance artifact show retail-pd-sae-l1-v1"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        a = registry.show_artifact(s, artifact_id)

    def human(d):
        if d.get("is_set"):
            typer.echo(f"{d['id']}: artifact set of {len(d['members'])} {d['kind']}s of {d['model_id']}, "
                       f"bound to {d['bound_version']}, format {d['format']}")
            table("Members", ["id", "member", "architecture", "hook", "d_in", "features"],
                  [[m["id"], m["set_member"], m["architecture"], m["hook_in"], m["d_in"], m["d_sae"]]
                   for m in d["member_artifacts"]])
            table("Files", ["file", "sha256"], [[k, v] for k, v in sorted(d["files"].items())])
            return
        typer.echo(f"{d['id']}: {d['kind']} of {d['model_id']}, bound to {d['bound_version']}, format {d['format']} "
                   f"({d['architecture'] or '-'}), hook {d['hook_in'] or '-'}{' -> ' + d['hook_out'] if d['hook_out'] else ''}")
        typer.echo(f"shape: d_in={d['d_in']} features={d['d_sae']} d_out={d['d_out']} layers={d['n_layers']}")
        table("Files", ["file", "sha256"], [[k, v] for k, v in sorted(d["files"].items())])
        table("Checks", ["id", "kind", "version", "status", "finished", "EV"],
              [[c["id"], c["kind"], c["version"], c["status"], c["finished_at"], c["explained_variance"]] for c in d["checks"]],
              status_col="status")

    emit(a, as_json, human)


# ------------------------------------------------------------------ data / volume
@data_app.command("add")
def data_add(
    ctx: typer.Context,
    model_id: str,
    path: Annotated[Path, typer.Option(help="CSV or Parquet file.")],
    window: Annotated[str | None, typer.Option(help="Data window START..END.")] = None,
    role: Annotated[list[str] | None, typer.Option(
        help="Repeatable. ROLE=col1,col2 gives column roles (input, target, protected, score, id, timestamp, "
             "weight); a bare production | train | reference says what the file is (default production). "
             "Columns without a role are inferred from their names and types, with a warning.")] = None,
    version: Annotated[str | None, typer.Option("--version", "-v", help="The model version this is development (training) data of: the default drift reference of that version.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a data file (hashed) for a model, with its column roles.

    Example: compliance data add retail-pd --path q3.parquet --window 2026-07-01..2026-09-30 --role input=income,age --role target=default_12m --role protected=age
    """
    from compliance.checks.roles import parse_role_options
    from compliance.errors import UsageError
    from compliance.services import registry
    from compliance.timeutil import parse_window

    purposes = [r for r in role or [] if "=" not in r]
    if len(purposes) > 1:
        raise UsageError(f"give at most one of production | train | reference, got {', '.join(purposes)}")
    purpose = purposes[0] if purposes else "production"
    columns = parse_role_options(r for r in role or [] if "=" in r)
    with session(ctx) as s:
        d = registry.add_dataset(s, model_id, path=path, role=purpose, window=parse_window(window, what="--window"),
                                 columns=columns or None, version=version)
    if d.get("inferred"):
        typer.echo(f"warning: column roles inferred from names and types (give --role ROLE=cols to set them): "
                   f"{'; '.join(d['inferred'])}", err=True)
    emit(d, as_json, lambda d: typer.echo(f"registered {purpose} data {d['id']} for {model_id} ({d['sha256'][:16]}…)"
                                          + (f", development data of {d['version']}" if d.get("version") else "")))


@data_app.command("list")
def data_list(ctx: typer.Context, model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
              as_json: JsonOpt = False) -> None:
    """List registered data files.  Example: compliance data list --model retail-pd"""
    from compliance.services import registry

    with session(ctx, readonly=True) as s:
        rows = registry.list_datasets(s, model)
    emit(rows, as_json, lambda rs: table("Data", ["id", "model", "role", "window", "version", "columns", "path"],
                                          [[r["id"], r["model_id"], r["role"], f"{r['window_start']}..{r['window_end']}",
                                            r.get("version") or "", _roles_brief(r.get("columns")), r["path"]] for r in rs]))


def _roles_brief(cols: dict | None) -> str:
    if not cols:
        return "—"
    return "; ".join(f"{role} {len(c)}" if role == "input" else f"{role} {','.join(c)}" for role, c in cols.items())


@volume_app.command("import")
def volume_import(ctx: typer.Context, csv_file: Annotated[Path, typer.Argument(help="CSV with columns model,version,day,volume.")],
                  as_json: JsonOpt = False) -> None:
    """Record daily decision volumes from a CSV (model,version,day,volume), all or nothing.

    Example: compliance volume import volumes.csv
    """
    import csv

    from compliance.errors import InputError
    from compliance.services import registry
    from compliance.timeutil import parse_date

    if not csv_file.is_file():
        raise InputError(f"file not found: {csv_file}")
    with csv_file.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"model", "version", "day", "volume"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise InputError(f"{csv_file.name}: expected columns {', '.join(sorted(need))}")
        rows = [(r["model"], r["version"], parse_date(r["day"], what=f"day on line {i + 2}"), r["volume"])
                for i, r in enumerate(reader)]
    with session(ctx) as s:
        res = registry.import_volumes(s, rows)
    emit(res, as_json, lambda d: typer.echo(f"recorded {d['recorded']} daily volumes"
                                            + (f" ({d['already_recorded']} already recorded, not written again)"
                                               if d["already_recorded"] else "")))


def import_cmd(ctx: typer.Context, manifest: Annotated[Path, typer.Argument(
               help="Manifest YAML, or JSON when named *.json (paths relative to it).")],
               as_json: JsonOpt = False) -> None:
    """Import a whole inventory (models, versions, deployments, artifacts, datasets) in one transaction.

    Models, versions and deployments are validated a section at a time and written in batches
    (docs/operations.md, "Import at estate scale"); any bad entry aborts the whole import.
    For tens of thousands of records write the manifest as JSON (same document, parsed ~10x
    faster than YAML).

    Example: compliance import sample_data/generated/manifest.yaml
    """
    from compliance.services.manifest import import_manifest

    with session(ctx) as s:
        counts = import_manifest(s, manifest)
    emit(counts, as_json, lambda c: typer.echo("imported " + ", ".join(f"{v} {k}" for k, v in c.items())))
