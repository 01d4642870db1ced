"""`compliance check ...`: run interpretability and drift checks and record them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, console, emit, session, status_markup, table

check_app = typer.Typer(help="Run checks (fidelity, alignment, drift, overhead) and record the evidence.",
                        no_args_is_help=True)

VersionOpt = Annotated[str | None, typer.Option("--version", "-v", help="Model version to check against (default: the artifact's bound version).")]
MaxRowsOpt = Annotated[int, typer.Option(help="Use at most this many data rows (0 = all).")]
BudgetOpt = Annotated[str | None, typer.Option("--budget", help="Time budget (e.g. 30s, 2m): a random row subsample, each metric with a 95 % interval; the status is decided by the intervals or is `inconclusive` (DESIGN §9).")]
BudgetRowsOpt = Annotated[int | None, typer.Option("--budget-rows", help="Row budget: evaluate this many randomly chosen rows (with --budget: whichever ends first).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of the budgeted subsample (default: random; always recorded).")]


def _budget(budget, budget_rows, seed):
    from compliance.checks.intervals import make_budget, process_start

    return make_budget(budget, budget_rows, seed, t0=process_start())


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def _show_check(c: dict, keys: list[str] | None = None) -> None:
    m = c.get("metrics") or {}
    con = console()
    con.print(f"check {c['id']} [bold]{c['kind']}[/] {c.get('artifact_id') or c['model_id']} on "
              f"{c.get('version') or '-'}: {status_markup(c['status'])}")
    keys = keys or [k for k in m if not isinstance(m[k], (list, dict))]
    rows = [[k, _fmt(m.get(k))] for k in keys if k in m]
    if rows:
        table(None, ["metric", "value"], rows)
    if m.get("per_layer"):
        cols = ["layer", "explained_variance", "mse", "cossim", "l0", "dead_fraction"]
        table("Per layer", cols, [[_fmt(r.get(k)) for k in cols] for r in m["per_layer"]])
    for r in c.get("reasons") or []:
        con.print(f"  {r}")


def _exit_on_error(c: dict) -> None:
    if c["status"] == "error":
        why = "; ".join(r.removeprefix("error: ") for r in c.get("reasons") or [])
        typer.echo(f"error: check {c['id']} could not run (recorded as an error check): {why}", err=True)
        raise typer.Exit(1)


FIDELITY_KEYS = ["explained_variance", "baseline_explained_variance", "mse", "cossim", "l2_ratio", "l0", "l0_total",
                 "l1", "dead_fraction", "dense_fraction", "kl", "decision_flip_rate", "loss_recovered", "completeness_mae",
                 "baseline_gap", "n_rows", "device"]


@check_app.command("fidelity")
def fidelity(
    ctx: typer.Context,
    artifact: Annotated[str, typer.Argument(help="Artifact id.")],
    version: VersionOpt = None,
    activations: Annotated[Path | None, typer.Option(help="safetensors file with `activations` (and `targets`, or `inputs_{l}`/`targets_{l}`).")] = None,
    adapter: Annotated[bool, typer.Option("--adapter", help="Compute activations by running the version through its model adapter (adds KL, decision flips, loss recovered).")] = False,
    data: Annotated[Path | None, typer.Option(help="Data file for --adapter (default: the registered production window).")] = None,
    max_rows: MaxRowsOpt = 20_000,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")] = None,
    budget: BudgetOpt = None,
    budget_rows: BudgetRowsOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-measure how faithfully an artifact explains a model version (DESIGN §3 metrics).

    \b
    Examples:
      compliance check fidelity retail-pd-sae-l1-v1 --version v3 --adapter
      compliance check fidelity my-sae --activations acts.safetensors --json
      compliance check fidelity my-sae --activations acts.safetensors --budget 30s
    """
    b = _budget(budget, budget_rows, seed)
    from compliance.services.checks import run_fidelity

    with session(ctx) as s:
        c = run_fidelity(s, artifact, version, activations=activations, adapter=adapter, data=data,
                         max_rows=max_rows or None, device=device, budget=b)
    emit(c, as_json, lambda c: _show_check(c, FIDELITY_KEYS))
    _exit_on_error(c)


@check_app.command("alignment")
def alignment(
    ctx: typer.Context,
    old: Annotated[str | None, typer.Option(help="The replaced artifact.")] = None,
    new: Annotated[str | None, typer.Option(help="The replacement artifact.")] = None,
    model: Annotated[str | None, typer.Option(help="Model, for representation shift between two versions.")] = None,
    from_version: Annotated[str | None, typer.Option("--from", help="Earlier version.")] = None,
    to_version: Annotated[str | None, typer.Option("--to", help="Later version.")] = None,
    hook: Annotated[str | None, typer.Option(help="Hook point compared (e.g. blocks.1.hook_resid_pre).")] = None,
    data: Annotated[Path | None, typer.Option(help="Inputs run through both versions (default: registered production data).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare versions: feature survival between an artifact and its replacement (Hungarian
    matching, MMCS, label carry-over), or linear CKA between two versions' activations.

    \b
    Examples:
      compliance check alignment --old pd-sae-v1 --new pd-sae-v3
      compliance check alignment --model retail-pd --from v1 --to v3 --hook blocks.1.hook_resid_pre
    """
    from compliance.services.checks import run_alignment

    with session(ctx) as s:
        c = run_alignment(s, old=old, new=new, model_id=model, from_version=from_version, to_version=to_version,
                          hook=hook, data=data)
    emit(c, as_json, lambda c: _show_check(c, ["survival_share", "n_survived", "n_old", "n_new", "mmcs",
                                               "mean_matched_decoder_cosine", "n_carried_labels", "n_lost_labels",
                                               "cka", "mean_row_cosine", "n_rows"]))
    _exit_on_error(c)


@check_app.command("activation-drift")
def activation_drift(
    ctx: typer.Context,
    artifact: str,
    reference: Annotated[Path, typer.Option(help="Reference data (e.g. the training window).")],
    version: VersionOpt = None,
    current: Annotated[Path | None, typer.Option(help="Current data (default: the registered production window).")] = None,
    max_rows: MaxRowsOpt = 20_000,
    budget: BudgetOpt = None,
    budget_rows: BudgetRowsOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Feature densities of an artifact on a reference vs a current sample; newly dead/dense features.

    Example: compliance check activation-drift pd-sae-v1 --version v3 --reference q4.parquet --current q3.parquet
    """
    b = _budget(budget, budget_rows, seed)
    from compliance.services.checks import run_activation_drift

    with session(ctx) as s:
        c = run_activation_drift(s, artifact, version, reference=reference, current=current,
                                 max_rows=None if b is not None else (max_rows or None), budget=b)
    emit(c, as_json, lambda c: _show_check(c, ["psi", "ks_statistic", "js_distance", "n_newly_dead", "n_newly_dense",
                                               "dead_fraction_reference", "dead_fraction_current",
                                               "dense_fraction_current", "n_rows_current"]))
    _exit_on_error(c)


@check_app.command("overhead")
def overhead(
    ctx: typer.Context,
    artifact: str,
    version: VersionOpt = None,
    data: Annotated[Path | None, typer.Option(help="Input rows (default: registered production data).")] = None,
    rows: Annotated[int, typer.Option(help="Rows per forward pass (a production-sized batch; tiny batches measure hook overhead, not compute).")] = 2048,
    repeats: Annotated[int, typer.Option(help="Timed repetitions (median reported).")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Latency of the model with and without the artifact attached, against the policy budget.

    Example: compliance check overhead card-fraud-sae-wide --version v2
    """
    from compliance.services.checks import run_overhead

    with session(ctx) as s:
        c = run_overhead(s, artifact, version, data=data, rows=rows, repeats=repeats)
    emit(c, as_json, lambda c: _show_check(c, ["overhead_ratio", "latency_base_s", "latency_attached_s",
                                               "model_flops_per_row", "artifact_flops_per_row", "flops_ratio", "n_rows"]))
    _exit_on_error(c)


@check_app.command("drift")
def drift(
    ctx: typer.Context,
    model: str,
    version: Annotated[str, typer.Option("--version", "-v", help="Model version the data feeds.")],
    reference: Annotated[Path, typer.Option(help="Reference CSV/Parquet.")],
    current: Annotated[Path, typer.Option(help="Current CSV/Parquet.")],
    window: Annotated[str | None, typer.Option(help="Current data window START..END.")] = None,
    features: Annotated[str | None, typer.Option(help="Comma-separated feature subset.")] = None,
    categorical: Annotated[str | None, typer.Option(help="Comma-separated features to treat as categorical.")] = None,
    streaming: Annotated[bool | None, typer.Option("--streaming/--in-memory", help="Force bounded-memory Parquet streaming (default: automatic for large files).")] = None,
    budget: BudgetOpt = None,
    budget_rows: BudgetRowsOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Input drift per feature (PSI, KS, Wasserstein, JS; chi-square for categories) and the dataset verdict.

    Example: compliance check drift retail-pd --version v3 --reference q4.parquet --current q3.parquet --window 2026-07-01..2026-09-30
    """
    from compliance.services.checks import run_drift
    from compliance.timeutil import parse_window

    b = _budget(budget, budget_rows, seed)
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None)
    win = parse_window(window, what="--window")
    with session(ctx) as s:
        c = run_drift(s, model, version, reference=reference, current=current, window=win, features=split(features),
                      categorical=split(categorical), streaming=streaming, budget=b)

    def human(c):
        m = c["metrics"]
        console().print(f"check {c['id']} data_drift {model} {version}: {status_markup(c['status'])} — "
                        f"{m['n_drifted']}/{m['n_features']} features drifted (share {m['drifted_share']:.2f}), "
                        f"{m['n_ref']} vs {m['n_cur']} rows, {m['method']}")
        table(None, ["feature", "kind", "PSI", "KS", "KS p", "Wass/σ", "JS", "χ² p", "missing", "status"],
              [[f["feature"], f["kind"], _fmt(f["psi"]), _fmt(f["ks_stat"]), _fmt(f["ks_pvalue"]), _fmt(f["wasserstein"]),
                _fmt(f["js_distance"]), _fmt(f["chi2_pvalue"]), f"{f['missing_ref']}/{f['missing_cur']}", f["status"]]
               for f in c["features"]], status_col="status")
        for r in c.get("reasons") or [] if m.get("ci") is not None else []:
            console().print(f"  {r}")

    emit(c, as_json, human)


@check_app.command("run")
def run(
    ctx: typer.Context,
    due: Annotated[bool, typer.Option("--due", help="Run every due validation (required artifact × deployed version).")] = False,
    at: Annotated[str | None, typer.Option(help="Evaluate what is due at this time (default now).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would run.")] = False,
    budget: Annotated[str | None, typer.Option("--budget", help="Total time budget shared by all due checks (e.g. 5m), spent on the highest tier-weighted outstanding debt first; leftover budget escalates inconclusive checks.")] = None,
    budget_rows: Annotated[int | None, typer.Option("--budget-rows", help="Total row budget shared by all due checks.")] = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the due fidelity checks through each model's adapter, then detect failure modes.

    Schedule it: `0 3 * * * compliance --db $URL check run --due`.
    Example: compliance check run --due --dry-run
    """
    b = _budget(budget, budget_rows, seed)
    from compliance.errors import UsageError
    from compliance.services.due import run_due
    from compliance.timeutil import parse_datetime, utcnow

    if not due:
        raise UsageError("nothing to run: pass --due")
    when = parse_datetime(at, what="--at") if at else utcnow()
    bar = None
    if not as_json and not dry_run:
        from rich.progress import Progress

        bar = Progress(console=console(), transient=True)
    with session(ctx) as s:
        if bar:
            with bar:
                task = bar.add_task("due checks", total=None)

                def progress(i, n, p):
                    bar.update(task, total=n, completed=i, description=f"{p.get('artifact_id', 'done')} on {p.get('version', '')}")

                out = run_due(s, when, dry_run=dry_run, progress=progress, budget=b)
        else:
            out = run_due(s, when, dry_run=dry_run, budget=b)

    def human(o):
        if dry_run:
            table(f"Due at {when.isoformat()}", ["artifact", "kind", "model", "version"],
                  [[p["artifact_id"], p["kind"], p["model_id"], p["version"]] for p in o["due"]])
            return
        table(f"Ran {len(o['ran'])} due checks", ["check", "artifact", "version", "EV", "status"],
              [[r["check_id"], r["artifact_id"], r["version"], _fmt(r["explained_variance"]), r["status"]] for r in o["ran"]],
              status_col="status")
        for p in o.get("not_run") or []:
            typer.echo(f"not run: {p['artifact_id']} on {p['version']} ({p['why']})")
        typer.echo(f"{len(o['failure_modes_opened'])} failure-mode occurrence(s) opened")

    emit(out, as_json, human)


@check_app.command("list")
def list_cmd(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    artifact: Annotated[str | None, typer.Option(help="Only this artifact.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recorded checks.  Example: compliance check list --model retail-pd --kind fidelity"""
    from compliance.services.checks import list_checks

    with session(ctx, readonly=True) as s:
        rows = list_checks(s, model_id=model, artifact_id=artifact, kind=kind, limit=limit)
    emit(rows, as_json, lambda rs: table("Checks", ["id", "kind", "model", "artifact", "version", "finished", "EV", "status"],
                                          [[r["id"], r["kind"], r["model_id"], r["artifact_id"], r["version"], r["finished_at"][:19],
                                            _fmt(r["explained_variance"]), r["status"]] for r in rs], status_col="status"))


@check_app.command("show")
def show_cmd(ctx: typer.Context, check_id: int, as_json: JsonOpt = False) -> None:
    """Show one recorded check with every metric (and per-feature drift rows).  Example: compliance check show 42 --json"""
    from compliance.services.checks import show_check

    with session(ctx, readonly=True) as s:
        d = show_check(s, check_id)
    emit(d, as_json, lambda d: _show_check(d))
