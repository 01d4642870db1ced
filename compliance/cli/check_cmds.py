"""`compliance check ...`: run interpretability and drift checks and record them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import JsonOpt, console, emit, session, status_markup, table

check_app = typer.Typer(help="Run checks (fidelity, alignment, drift, overhead, performance, fairness) and record the evidence.",
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
    artifact: Annotated[str, typer.Argument(help="Artifact id, or an artifact set's id (one check per member).")],
    version: VersionOpt = None,
    activations: Annotated[Path | None, typer.Option(help="safetensors file with `activations` (and `targets`), or `inputs_{l}`/`targets_{l}` per layer (CLTs, artifact sets).")] = None,
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
    if "set_id" in c:  # an artifact set: one check per member
        def human(r):
            cols = ["check", "member", "status", "explained_variance", "mse", "cossim", "l0", "dead_fraction"]
            table(f"Fidelity of set {r['set_id']}: {r['status']}", cols,
                  [[m["id"], m["artifact_id"], m["status"]] + [_fmt((m.get("metrics") or {}).get(k)) for k in cols[3:]]
                   for m in r["checks"]], status_col="status")
        emit(c, as_json, human)
        for m in c["checks"]:
            if m["status"] == "error":
                _exit_on_error(m)
        return
    emit(c, as_json, lambda c: _show_check(c, FIDELITY_KEYS))
    _exit_on_error(c)


@check_app.command("capture")
def capture(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id.")],
    version: Annotated[str, typer.Argument(help="Version label.")],
    hook: Annotated[list[str], typer.Option("--hook", help="Hook point to capture, repeatable (e.g. blocks.1.hook_resid_pre).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="safetensors file to write.")],
    data: Annotated[Path | None, typer.Option(help="Data file (default: the registered production window).")] = None,
    max_rows: MaxRowsOpt = 20_000,
    as_json: JsonOpt = False,
) -> None:
    """Capture a version's activations through its model adapter into a safetensors file that names the
    version's weights (SHA-256) in its metadata: `check fidelity --activations` refuses it for another version.

    Example: compliance check capture retail-pd v3 --hook blocks.1.hook_resid_pre --out acts-v3.safetensors
    """
    from compliance.services.checks import capture as do_capture

    with session(ctx, readonly=True) as s:
        d = do_capture(s, model, version, hooks=hook, out=out, data=data, max_rows=max_rows or None)
    emit(d, as_json, lambda d: typer.echo(f"wrote {d['path']}: {d['rows']} rows of {', '.join(d['hooks'])} from "
                                          f"{d['model_id']} {d['version']} (weights {d['weights_sha256'][:12]}…)"))


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
    reference: Annotated[str | None, typer.Option(help="Reference CSV/Parquet, or sql:QUERY / spark:QUERY on --warehouse (default: the version's registered development data).")] = None,
    current: Annotated[str | None, typer.Option(help="Current CSV/Parquet, or sql:QUERY / spark:QUERY on --warehouse (default: the latest registered production window that has ended).")] = None,
    window: Annotated[str | None, typer.Option(help="Window START..END of the --current data (default: its registered window; a sql: query has none unless given).")] = None,
    warehouse: Annotated[str | None, typer.Option(envvar="COMPLIANCE_WAREHOUSE_URL", help="Where sql:/spark: queries run: a SQLAlchemy URL (sql:) or a Spark master URL such as local[2] (spark:); only aggregates leave it.")] = None,
    features: Annotated[str | None, typer.Option(help="Comma-separated input columns to judge (default: the inputs of the registered column roles).")] = None,
    categorical: Annotated[str | None, typer.Option(help="Comma-separated features to treat as categorical.")] = None,
    streaming: Annotated[bool | None, typer.Option("--streaming/--in-memory", help="Force bounded-memory Parquet streaming (default: automatic for large files).")] = None,
    budget: BudgetOpt = None,
    budget_rows: BudgetRowsOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Input drift per feature (PSI, KS, Wasserstein, JS; chi-square for categories) and the dataset verdict.

    Only input columns are judged: the dataset fails when a key driver fails or when the share of
    failed inputs reaches drift.share_fail; target columns are reported apart as label shift. A
    data window that ends after the check time is refused (no look-ahead).

    With --reference and --current given as sql:QUERY (a SELECT or a table name) the statistics
    are computed where the data lives, from GROUP BY aggregates on --warehouse: PSI, JS and
    chi-square equal the in-memory path's, KS and Wasserstein come with error bounds.

    \b
    Examples:
      compliance check drift retail-pd --version v3 --current q3.parquet
      compliance check drift retail-pd --version v4 --warehouse postgresql+psycopg://dwh/risk \\
          --reference "sql:SELECT * FROM retail_dev" --current "sql:SELECT * FROM retail_2026q3" --window 2026-07-01..2026-09-30
    """
    from compliance.services.checks import run_drift
    from compliance.timeutil import parse_window

    b = _budget(budget, budget_rows, seed)
    split = (lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None)
    win = parse_window(window, what="--window")
    with session(ctx) as s:
        c = run_drift(s, model, version, reference=reference, current=current, window=win, features=split(features),
                      categorical=split(categorical), streaming=streaming, budget=b, warehouse=warehouse)

    def human(c):
        m = c["metrics"]
        share = m.get("drifted_share")
        ref = (c.get("parameters") or {}).get("reference_data") or {}
        console().print(f"check {c['id']} data_drift {model} {version}: {status_markup(c['status'])} — "
                        f"{m['n_drifted']}/{m['n_features']} inputs drifted (share {_fmt(share)}), "
                        f"{m['n_ref']} vs {m['n_cur']} rows, {m['method']}; reference "
                        f"{Path(ref.get('path') or '').name or 'sql: ' + str(ref.get('query'))[:40]} "
                        f"({'default: ' if ref.get('default') else ''}{ref.get('basis', '')})")
        for r in c.get("reasons") or []:
            console().print(f"  {r}")
        table(None, ["feature", "role", "kind", "PSI", "KS", "KS p", "Wass/σ", "JS", "χ² p", "missing", "status"],
              [[f["feature"], f.get("role", ""), f["kind"], _fmt(f["psi"]), _fmt(f["ks_stat"]), _fmt(f["ks_pvalue"]), _fmt(f["wasserstein"]),
                _fmt(f["js_distance"]), _fmt(f["chi2_pvalue"]), f"{f['missing_ref']}/{f['missing_cur']}", f["status"]]
               for f in c["features"]], status_col="status")
        for r in c.get("reasons") or [] if m.get("ci") is not None else []:
            console().print(f"  {r}")

    emit(c, as_json, human)


OutcomeVersionOpt = Annotated[str, typer.Option("--version", "-v", help="Model version whose decisions are judged.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Labelled CSV/Parquet: one row per decision (score or model inputs, outcome).")]
TargetOpt = Annotated[str | None, typer.Option(help="Outcome column, 0/1 (1 = the event: default, fraud); empty = not yet known. Default: the dataset's target role.")]
ScoreOpt = Annotated[str | None, typer.Option(help="Score column (predicted probability of the event). Default: the score role, else the version scores the rows through its adapter.")]
WeightOpt = Annotated[str | None, typer.Option(help="Row weight column. Default: the weight role, else every row weighs 1.")]
TimestampOpt = Annotated[str | None, typer.Option(help="Decision time column, for the label lag. Default: the timestamp role.")]
ThresholdOpt = Annotated[float | None, typer.Option(help="Flag (decline / alert) when score >= this. Default: the adapter's decision threshold, else 0.5.")]
MaturityOpt = Annotated[float | None, typer.Option("--maturity-days", help="Days until an outcome is known (policy performance.maturity_days, default 365; fraud ~60).")]


def _split(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _outcome_counts(m: dict) -> str:
    return (f"{m['n_matured']} of {m['n_rows_file']} rows judged ({m['n_not_matured']} not matured, "
            f"{m['n_unlabelled']} without an outcome)")


@check_app.command("performance")
def performance(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id.")],
    version: OutcomeVersionOpt,
    data: DataOpt,
    target: TargetOpt = None,
    score: ScoreOpt = None,
    weight: WeightOpt = None,
    timestamp: TimestampOpt = None,
    threshold: ThresholdOpt = None,
    maturity_days: MaturityOpt = None,
    reference: Annotated[Path | None, typer.Option(help="Development sample (same columns): score PSI and the development AUC to back-test against.")] = None,
    calibration: Annotated[str, typer.Option(help="Calibration bins: quantile (deciles of risk, Hosmer-Lemeshow) or uniform.")] = "quantile",
    as_json: JsonOpt = False,
) -> None:
    """Outcomes analysis on rows whose outcome has matured: AUC (DeLong interval), Gini, KS, Brier,
    log loss, calibration (Hosmer-Lemeshow), decisions at the threshold; score PSI and the AUC drop
    against development figures.

    \b
    Examples:
      compliance check performance retail-pd --version v3 --data outcomes.parquet --target defaulted --score pd --timestamp decided_at
      compliance check performance card-fraud --version v2 --data labelled.csv --maturity-days 60 --reference dev.csv --json
    """
    from compliance.services.outcomes import run_performance

    with session(ctx) as s:
        c = run_performance(s, model, version, data=data, target=target, score=score, weight=weight, timestamp=timestamp,
                            threshold=threshold, maturity_days=maturity_days, reference=reference, calibration=calibration)

    def human(c):
        m = c["metrics"]
        console().print(f"check {c['id']} performance {model} {version}: {status_markup(c['status'])} — {_outcome_counts(m)}")
        auc = f"{m['auc']:.4f} [{_fmt(m['auc_lower'])}, {_fmt(m['auc_upper'])}]"
        rows = [["AUC (95% DeLong)", auc]] + [[k, _fmt(m.get(k))] for k in
                                              ("gini", "ks", "brier", "log_loss", "hosmer_lemeshow", "hosmer_lemeshow_pvalue",
                                               "calibration_error", "event_rate", "mean_score", "threshold", "approval_rate",
                                               "alert_rate", "precision", "recall", "f1", "score_psi", "baseline_auc",
                                               "auc_drop")]
        table(None, ["metric", "value"], rows)
        cm = m["confusion"]
        table("Confusion matrix (weighted)", ["", "flagged", "not flagged"],
              [["event (1)", _fmt(cm["tp"]), _fmt(cm["fn"])], ["no event (0)", _fmt(cm["fp"]), _fmt(cm["tn"])]])
        for r in c.get("reasons") or []:
            console().print(f"  {r}")

    emit(c, as_json, human)


@check_app.command("fairness")
def fairness(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model id.")],
    version: OutcomeVersionOpt,
    data: DataOpt,
    protected: Annotated[str | None, typer.Option(help="Comma-separated protected attribute columns (default: the dataset's protected role).")] = None,
    target: TargetOpt = None,
    score: ScoreOpt = None,
    weight: WeightOpt = None,
    timestamp: TimestampOpt = None,
    threshold: ThresholdOpt = None,
    maturity_days: MaturityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Group fairness of the decisions: approval rate per group, adverse impact ratio (four-fifths
    rule), equal-opportunity and average-odds differences and calibration within groups (matured
    outcomes), with 95% intervals; groups below the policy minimum are reported, not judged.
    A fail flags FM-PROTECTED.

    \b
    Examples:
      compliance check fairness retail-pd --version v3 --data outcomes.parquet --protected age_band,sex --score pd --target defaulted
      compliance check fairness card-fraud --version v2 --data labelled.csv --protected age_band --json
    """
    from compliance.services.outcomes import run_fairness

    with session(ctx) as s:
        c = run_fairness(s, model, version, data=data, protected=_split(protected), target=target, score=score,
                         weight=weight, timestamp=timestamp, threshold=threshold, maturity_days=maturity_days)

    def human(c):
        m = c["metrics"]
        console().print(f"check {c['id']} fairness {model} {version}: {status_markup(c['status'])} — "
                        f"threshold {m['threshold']:g}; {_outcome_counts(m)}")
        for a in m["attributes"]:
            table(f"{a['attribute']} (reference: {a['reference_group'] or '—'})",
                  ["group", "rows", "approval", "AIR", "AIR 95%", "EOD", "AOD", "obs − pred", "status"],
                  [[g["group"], g["n"], _fmt(g["approval_rate"]), _fmt(g["air"]),
                    f"{_fmt(g['air_lower'])}–{_fmt(g['air_upper'])}" if g["air_lower"] is not None else "—",
                    _fmt(g["eod"]), _fmt(g["aod"]), _fmt(g["calibration_gap"]), g["status"]] for g in a["groups"]],
                  status_col="status")
        for r in c.get("reasons") or []:
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
    adapt: Annotated[bool, typer.Option("--adapt", help="First adapt every stale or broken SAE/transcoder/CLT whose tier's policy allows it (adaptation.allowed), sharing --budget between the adaptations; then run the due validations.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run each due check as a task on a Ray cluster (pip install 'compliance[ray]'); workers write to the shared store under your identity, a retried task never records twice.")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", envvar="RAY_ADDRESS", help="Ray cluster to submit to (e.g. ray://head:10001); default: a local cluster on this machine.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the due fidelity checks through each model's adapter and the checks each model's
    monitoring plan makes due (data drift, overhead, activation drift; see `compliance plan show`),
    then detect failure modes (a check the plan required that did not run on time opens FM-MISSED).

    Schedule it: `0 3 * * * compliance --db $URL check run --due`.

    \b
    Examples:
      compliance check run --due --dry-run
      compliance --db postgresql+psycopg://carol@db/compliance check run --due --ray --ray-address ray://head:10001
    """
    from compliance.errors import UsageError
    from compliance.services.due import run_due_each
    from compliance.timeutil import parse_datetime, utcnow

    if not due:
        raise UsageError("nothing to run: pass --due")
    when = parse_datetime(at, what="--at") if at else utcnow()
    if adapt:
        return _run_adapt(ctx, when, budget, budget_rows, seed, dry_run, as_json)
    b = _budget(budget, budget_rows, seed)
    if ray:
        if b is not None:
            raise UsageError("--ray runs every due check in full; a shared --budget needs the sequential run")
        return _run_ray(ctx, when, ray_address, dry_run, as_json)
    bar = None
    if not as_json and not dry_run:
        from rich.progress import Progress

        bar = Progress(console=console(), transient=True)

    def opener(**kw):
        return session(ctx, **kw)

    if b is not None:  # a shared budget: one transaction, highest outstanding debt first
        from compliance.services.due import run_due

        with session(ctx) as s:
            if bar:
                with bar:
                    task = bar.add_task("due checks (budgeted)", total=None)

                    def progress(i, n, p):
                        bar.update(task, total=n, completed=i, description=f"{p.get('artifact_id', 'done')}")

                    out = run_due(s, when, dry_run=dry_run, progress=progress, budget=b)
            else:
                out = run_due(s, when, dry_run=dry_run, budget=b)
    elif bar:  # each check commits on its own: a crash keeps what finished, other writers never wait long
        with bar:
            task = bar.add_task("due checks", total=None)

            def progress(i, n, p):
                bar.update(task, total=n, completed=i, description=f"{p.get('artifact_id', 'done')} on {p.get('version', '')}")

            out = run_due_each(opener, when, dry_run=dry_run, progress=progress)
    else:
        out = run_due_each(opener, when, dry_run=dry_run)

    def human(o):
        if dry_run:
            table(f"Due at {when.isoformat()}", ["check", "artifact", "kind", "model", "version"],
                  [["fidelity", p["artifact_id"], p["kind"], p["model_id"], p["version"]] for p in o["due"]]
                  + [[p["kind"], p.get("artifact_id") or "", "", p["model_id"], p["version"]]
                     for p in o.get("planned") or []])
        else:
            table(f"Ran {len(o['ran'])} due checks", ["check", "kind", "artifact", "version", "EV", "status"],
                  [[r["check_id"], r.get("kind") if r.get("kind") in ("data_drift", "overhead", "activation_drift")
                    else "fidelity", r.get("artifact_id") or "", r["version"], _fmt(r.get("explained_variance")),
                    r["status"]] for r in o["ran"]], status_col="status")
        for p in o.get("not_run") or []:
            what = p.get("artifact_id") or f"{p['kind']} of {p['model_id']}"
            typer.echo(f"not run: {what} on {p['version']} ({p['why']})")
        if dry_run:
            return
        typer.echo(f"{len(o['failure_modes_opened'])} failure-mode occurrence(s) opened")

    emit(out, as_json, human)


def _run_ray(ctx, when, address, dry_run, as_json) -> None:
    """`check run --due --ray`: each due check a Ray task (compliance.integrations.ray_due)."""
    from compliance.cli.common import settings
    from compliance.integrations.ray_due import run_due_ray

    st = settings(ctx)
    if as_json or dry_run:
        out = run_due_ray(st.db_url, when, address=address, actor=st.actor, replay=st.replay, dry_run=dry_run)
    else:
        from rich.progress import Progress

        with Progress(console=console(), transient=True) as bar:
            task = bar.add_task("due checks on Ray", total=None)

            def progress(i, n, p):
                bar.update(task, total=n, completed=i, description=f"{p.get('artifact_id') or p.get('model_id')} on {p.get('version', '')}")

            out = run_due_ray(st.db_url, when, address=address, actor=st.actor, replay=st.replay, progress=progress)

    def human(o):
        table(f"Ran {len(o['ran'])} due checks on Ray", ["check", "kind", "artifact", "version", "EV", "status"],
              [[r["check_id"], r.get("kind") if r.get("kind") in ("data_drift", "overhead", "activation_drift")
                else "fidelity", r.get("artifact_id") or "", r["version"], _fmt(r.get("explained_variance")),
                r["status"]] for r in o["ran"]], status_col="status")
        for p in o.get("not_run") or []:
            typer.echo(f"not run: {p.get('artifact_id') or p['kind'] + ' of ' + p['model_id']} on {p['version']} ({p['why']})")
        if not dry_run:
            r = o["ray"]
            typer.echo(f"{r['tasks']} tasks on {r['worker_processes']} worker process(es) ({r['address']}); "
                       f"{r['already_recorded']} retried task(s) found their check already recorded; "
                       f"{len(o['failure_modes_opened'])} failure-mode occurrence(s) opened")

    emit(out, as_json, human)


def _run_adapt(ctx, when, budget, budget_rows, seed, dry_run, as_json) -> None:
    """`check run --due --adapt`: adaptations, then the due validations, in one transaction."""
    from compliance.checks.intervals import parse_duration
    from compliance.errors import UsageError
    from compliance.services.adaptation import run_due_adapt

    if budget_rows is not None:
        raise UsageError("--budget-rows does not apply to --adapt: give a time budget (--budget 5m)")
    seconds = parse_duration(budget) if budget is not None else None
    with session(ctx) as s:
        out = run_due_adapt(s, when, seconds=seconds, seed=seed, dry_run=dry_run)

    def human(o):
        if dry_run:
            table(f"To adapt at {when.isoformat()}", ["artifact", "kind", "model", "version", "state"],
                  [[p["artifact_id"], p["kind"], p["model_id"], p["version"], p["state"]] for p in o["adapt"]])
        else:
            table(f"Adapted {len(o['adapted'])} artifact(s)", ["adaptation", "parent", "version", "child", "EV before",
                                                                 "EV after", "status"],
                  [[r["adaptation_id"], r["artifact_id"], r["version"], r["child_artifact_id"] or "—",
                    _fmt(r["explained_variance_before"]), _fmt(r["explained_variance_after"]), r["status"]]
                   for r in o["adapted"]])
            table(f"Ran {len(o['ran'])} due checks", ["check", "artifact", "version", "EV", "status"],
                  [[r["check_id"], r["artifact_id"], r["version"], _fmt(r["explained_variance"]), r["status"]]
                   for r in o["ran"]], status_col="status")
        for p in o.get("not_adapted") or []:
            typer.echo(f"not adapted: {p['artifact_id']} on {p['version']} ({p['why']})")

    emit(out, as_json, human)


@check_app.command("accept")
def accept_cmd(ctx: typer.Context, check_id: int,
               rationale: Annotated[str, typer.Option(help="Why the warning is acceptable (required).")],
               as_json: JsonOpt = False) -> None:
    """Accept a warn fidelity check of an artifact (a validator; not the model's owner or developer).

    An accepted warn makes the artifact valid for that version (methodology v2).
    Example: compliance check accept 42 --rationale "EV 0.78 on a tier-2 model: adequate for reason codes"
    """
    from compliance.services.acceptance import accept_check

    with session(ctx) as s:
        a = accept_check(s, check_id, rationale=rationale)
    emit(a, as_json, lambda a: typer.echo(f"check {check_id} accepted by {a['actor']} (acceptance {a['id']})"))


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
