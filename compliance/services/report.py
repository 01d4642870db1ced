"""Build the report context from the store (a few queries, all as of a time), render it, export
it, and record each output as a report run through the ledger.

The context is plain data (:mod:`compliance.report.context`); templates never see the database.
The report id is derived from (kind, quarter, scope, as-of, ledger head as of then, tool
version), so the same store, quarter, as-of and tool version always give the same id, context
and bytes; rendering the same report twice records one report run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance import __version__
from compliance.analysis.calendar import parse_quarter
from compliance.errors import Conflict, NotFound, UsageError
from compliance.hashing import canonical_json as _canon
from compliance.hashing import sha256_bytes
from compliance.report import context as C
from compliance.report.tables import FullTables
from compliance.runtime import without_gc_passes
from compliance.services import report_tables as RT
from compliance.services.report_tables import _d, _f
from compliance.services.analysis import analyse, fm_occurrences, load_input
from compliance.services.corrections import corrections
from compliance.services.governance import list_findings
from compliance.services.outcomes_report import outcome_sections
from compliance.services.policy import policy_record_at
from compliance.store.ledger import entries_at, entries_between, entry_at, head_as_of, record
from compliance.store.models import (
    Artifact,
    Attestation,
    Check,
    CheckFeature,
    DeploymentEvent,
    FailureMode,
    Model,
    ModelVersion,
    Dataset,
    LedgerEntry,
    ReportRun,
)
from compliance.store.raw import CHECK_COVER, on_path
from compliance.timeutil import iso

ORGANISATION = "Model Risk Management"
Say = Callable[[str], None]


def _i(x: Any) -> int:
    return int(round(x)) if isinstance(x, (int, float)) and math.isfinite(x) else 0


def report_id_for(kind: str, quarter: str, model_id: str | None, as_of: datetime, ledger_head: str) -> str:
    key = _canon({"kind": kind, "quarter": quarter, "model": model_id, "as_of": iso(as_of), "head": ledger_head,
                  "tool": __version__})
    scope = f"-{model_id}" if model_id else ""
    return f"{'MRM' if model_id else 'PACK'}-{quarter}{scope}-{sha256_bytes(key.encode())[:10]}"


def build_context(session: Session, quarter: str, as_of: datetime, *, model_id: str | None = None,
                  organisation: str | None = None) -> C.ReportContext:
    """The report context of a quarter as of a time (with its context hash)."""
    return build_context_json(session, quarter, as_of, model_id=model_id, organisation=organisation)[0]


@without_gc_passes
def build_context_json(session: Session, quarter: str, as_of: datetime, *, model_id: str | None = None,
                       organisation: str | None = None, full: FullTables | None = None
                       ) -> tuple[C.ReportContext, bytes]:
    """``build_context`` and the context's canonical JSON, converted to plain data once.

    The long tables (``tables.CAPPED_TABLES``) are page-sized in the context; ``full`` (a
    folder) receives every row of each as the export's CSV, written as the rows stream by."""
    full = full if full is not None else FullTables()
    try:
        return _build_context_json(session, quarter, as_of, model_id=model_id, organisation=organisation, full=full)
    finally:
        full.close()


def _build_context_json(session: Session, quarter: str, as_of: datetime, *, model_id: str | None,
                        organisation: str | None, full: FullTables) -> tuple[C.ReportContext, bytes]:
    q = parse_quarter(quarter)
    qstart = datetime(q.start.year, q.start.month, q.start.day, tzinfo=timezone.utc)
    qend = datetime(q.end.year, q.end.month, q.end.day, tzinfo=timezone.utc) + timedelta(days=1)
    if as_of < qstart:
        raise UsageError(f"as-of {iso(as_of)} is before {quarter} starts")
    period_end = min(qend, as_of)
    kind = "model" if model_id else "portfolio"
    models = {m.id: m for m in session.scalars(select(Model).where(Model.recorded_at <= as_of).order_by(Model.tier, Model.id))}
    if model_id and model_id not in models:
        raise NotFound(f"unknown model {model_id!r} (as of {iso(as_of)})")
    scope = [model_id] if model_id else list(models)
    in_scope = set(scope)
    inp = load_input(session, as_of, with_flags=False)
    a = analyse(session, quarter, as_of, inp=inp)
    # Records the data-quality screen left out (or that a correction known at as_of voided) are
    # left out of every section too; the evidence index still lists them, marked.
    fixes = corrections(session, as_of)
    left_out = {(f["entity_type"], f["entity_id"]) for f in a["data_quality"]["findings"] if f["handling"] == "excluded"}
    left_out |= {(c["entity_type"], c["entity_id"]) for c in a["data_quality"]["corrections_applied"]}
    ok_models, ok_versions = set(inp.models["model_id"]), {int(v) for v in inp.versions["version_id"]}
    ok_artifacts = set(inp.artifacts["artifact_id"])
    model_trend = _model_trend(session, quarter, as_of, model_id, inp) if model_id else None
    del inp  # the analysis' frames (every check's lean row): not needed past here
    models = {k: m for k, m in models.items() if k in ok_models}
    if model_id and model_id not in models:
        raise NotFound(f"model {model_id!r} is left out of the figures as of {iso(as_of)} (see `compliance status`)")
    scope = [model_id] if model_id else list(models)
    in_scope = set(scope)
    seq, head = head_as_of(session, as_of)
    rid = report_id_for(kind, str(q), model_id, as_of, head)
    pol = policy_record_at(session, as_of)

    all_versions = {v.id: v for v in session.scalars(select(ModelVersion).where(ModelVersion.recorded_at <= as_of))}
    versions = {k: v for k, v in all_versions.items() if k in ok_versions}
    label = {vid: v.label for vid, v in all_versions.items()}
    events = [e for e in session.scalars(select(DeploymentEvent).where(DeploymentEvent.recorded_at <= as_of)
                                         .order_by(DeploymentEvent.effective_at, DeploymentEvent.id))
              if e.version_id in versions and ("deployment_event", str(e.id)) not in left_out]
    all_artifacts = {x.id: x for x in session.scalars(select(Artifact).where(Artifact.recorded_at <= as_of).order_by(Artifact.id))}
    artifacts = {k: x for k, x in all_artifacts.items() if k in ok_artifacts}
    # the quarter's checks other than fidelity as objects (drift, outcomes, fairness, overhead:
    # a few per version); fidelity checks (most of the store) are read as lean streamed rows. The
    # kinds are named (a kind the analysis does not know is left out by its screen anyway), so
    # the covering index finds them: "kind != 'fidelity'" made SQLite probe the model index and
    # look up every check of the scope (4.5 s at two million checks)
    from compliance.analysis.frames import CHECK_KINDS

    all_checks = session.scalars(on_path(select(Check).where(
        Check.recorded_at <= as_of, Check.finished_at >= qstart, Check.finished_at < qend, Check.model_id.in_(scope),
        Check.kind.in_([k for k in CHECK_KINDS if k != "fidelity"])).order_by(Check.finished_at, Check.id),
        CHECK_COVER)).all()  # (named: with a bank's statistics SQLite walks recorded_at instead)

    usable_row = RT.Keep({int(i) for t, i in left_out if t == "check_run" and str(i).isdigit()}, versions, artifacts)

    checks = [c for c in all_checks if usable_row(c.id, c.version_id, c.artifact_id, c.other_artifact_id)]
    # Fidelity is shown over the four-quarter trend window, so decay across versions is visible.
    q0 = q.previous(3)
    hist_start = datetime(q0.start.year, q0.start.month, q0.start.day, tzinfo=timezone.utc)

    # -- inventory and change log
    deployed_in_q: dict[str, set[str]] = defaultdict(set)
    events_of: dict[int, list] = defaultdict(list)  # grouped once: scanning every event per version is quadratic
    for e in events:
        events_of[e.version_id].append(e)
    for vid, v in versions.items():
        if _deployed_during(events_of.get(vid, ()), vid, qstart, period_end):
            deployed_in_q[v.model_id].add(v.label)
    inventory = [C.ModelRow(model_id=m.id, name=m.name, owner=m.owner, tier=m.tier, business_use=m.business_use,
                            tags=list(m.tags or []), deployed_versions=sorted(deployed_in_q.get(m.id, set())))
                 for mid, m in models.items() if mid in in_scope]
    changes: list[C.ChangeRow] = []
    for v in versions.values():
        if v.model_id in in_scope and v.trained_at and qstart <= v.trained_at < period_end:
            changes.append(C.ChangeRow(date=_d(v.trained_at), event="version_trained", model_id=v.model_id, version=v.label,
                                       detail=f"weights {v.weights_sha256[:12]}…"))
    for e in events:
        v = versions.get(e.version_id)
        if v and v.model_id in in_scope and qstart <= e.effective_at < period_end:
            changes.append(C.ChangeRow(date=_d(e.effective_at), event=f"version_{'deployed' if e.action == 'deploy' else 'retired'}",
                                       model_id=v.model_id, version=v.label, detail=f"{e.action} effective {iso(e.effective_at)[:16]}Z"))
    for x in artifacts.values():
        if x.model_id in in_scope and qstart <= x.recorded_at < period_end:
            changes.append(C.ChangeRow(date=_d(x.recorded_at), event="artifact_registered", model_id=x.model_id,
                                       version=label.get(x.bound_version_id), artifact_id=x.id,
                                       detail=f"{x.kind} ({x.format}{', replaces ' + x.replaces_id if x.replaces_id else ''})"))
    changes.sort(key=lambda r: (r.date, r.model_id, r.event, r.version or "", r.artifact_id or ""))

    # -- coverage and debt (from the analysis)
    bym = [m for m in a["by_model"] if m["model_id"] in in_scope]
    per_tier = []
    for t in a["by_tier"]:
        sub = [m for m in bym if m["tier"] == t["tier"] and m["deployed"] and not m["no_requirements"]]
        if not sub:
            continue
        per_tier.append(C.TierCoverage(
            tier=t["tier"], models=len(sub), deployed_version_days=float(sum(m["deployed_version_days"] for m in sub)),
            covered_version_days=float(sum(m["covered_version_days"] for m in sub)),
            coverage=_mean([m["coverage"] for m in sub]), coverage_prev=_mean([m.get("coverage_prev") for m in sub])))
    per_model_cov = [C.ModelCoverage(model_id=m["model_id"], tier=m["tier"],
                                     deployed_version_days=float(m["deployed_version_days"]),
                                     covered_version_days=float(m["covered_version_days"]),
                                     coverage=_f(m["coverage"]), coverage_prev=_f(m.get("coverage_prev")))
                     for m in bym if m["deployed"] and not m["no_requirements"]]
    per_model_cov.sort(key=lambda r: (r.coverage if r.coverage is not None else 2, r.model_id))
    timeline = _timeline(a, model_id)
    per_model_debt = [C.ModelDebt(model_id=m["model_id"], tier=m["tier"], fresh=_i(m["fresh_slot_days"]),
                                  stale=_i(m["stale_slot_days"]), broken=_i(m["broken_slot_days"]),
                                  missing=_i(m["missing_slot_days"]), debt_slot_days=_i(m["debt"]),
                                  weighted_debt=_i(m["weighted_debt"]), pending=_i(m.get("pending_slot_days")),
                                  debt_outstanding=_i(m.get("debt_outstanding")))
                      for m in bym if m["deployed"] and not m["no_requirements"]]
    per_model_debt.sort(key=lambda r: (-r.weighted_debt, r.model_id))
    staleness = [C.ArtifactStaleness(
        artifact_id=s["artifact_id"], kind=s["kind"], model_id=s["model_id"], bound_version=s["bound_label"],
        deployed_version=s.get("deployed_label"), versions_behind=s.get("versions_behind"),
        days_since_valid=s.get("days_since_validation"), fidelity_decay=_f(s.get("fidelity_decay")),
        survival=_f(s.get("survival")), state=_ART_STATE.get(s.get("artifact_state"), s.get("artifact_state") or "—"))
        for s in a["staleness"] if s["model_id"] in in_scope]
    rank = {"broken": 0, "missing": 1, "stale": 2, "fresh": 3}
    staleness.sort(key=lambda r: (rank.get(r.state, 4), -(r.versions_behind or 0), r.artifact_id))
    if model_id:
        trend = model_trend
    else:
        trend = [C.TrendRow(quarter=t["quarter"], coverage=_f(t.get("coverage")), debt_slot_days=_i(t.get("debt")),
                            weighted_debt=_i(t.get("weighted_debt")), debt_outstanding=_opt_i(t.get("debt_outstanding")))
                 for t in a["trend"]]
    if model_id:
        m0 = next((m for m in bym), None) or {}
        head_cov = (_f(m0.get("coverage")), _f(m0.get("coverage_prev")), _i(m0.get("debt")), m0.get("debt_prev"),
                    _i(m0.get("weighted_debt")), m0.get("weighted_debt_prev"))
        prev_out = trend[-2].debt_outstanding if len(trend) > 1 else None
        head_out = (_opt_i(m0.get("debt_outstanding")), prev_out, _opt_i(m0.get("weighted_debt_outstanding")),
                    None if prev_out is None else _opt_i(prev_out * m0.get("tier_weight", 1)))
        models_covered = 1 if m0.get("in_scope") else 0
        not_required = [m0["model_id"]] if m0.get("verdict") == "not required" else []
    else:
        p = a["portfolio"]
        head_cov = (_f(p.get("coverage")), _f(p.get("coverage_prev")), _i(p.get("debt")), p.get("debt_prev"),
                    _i(p.get("weighted_debt")), p.get("weighted_debt_prev"))
        head_out = (_opt_i(p.get("debt_outstanding")), _opt_i(p.get("debt_outstanding_prev")),
                    _opt_i(p.get("weighted_debt_outstanding")), _opt_i(p.get("weighted_debt_outstanding_prev")))
        models_covered = int(p.get("models_in_scope") or 0)
        not_required = list(p.get("not_required") or [])
    vorder = {"not fit": 0, "fit with conditions": 1, "fit": 2, "not deployed": 3, "not required": 4}
    verdict_rows = sorted((C.VerdictRow(model_id=m["model_id"], tier=int(m["tier"]), verdict=m.get("verdict") or "—",
                                        reasons=[str(x) for x in m.get("verdict_reasons") or []],
                                        pending_slot_days=_i(m.get("pending_slot_days")),
                                        debt_outstanding=_opt_i(m.get("debt_outstanding")))
                           for m in bym if m.get("verdict") and m.get("verdict") != "not deployed"),
                          key=lambda r: (vorder.get(r.verdict, 5), r.tier, r.model_id))
    vcount = Counter(r.verdict for r in verdict_rows)
    verdict_counts = [C.VerdictCount(verdict=v, models=vcount[v]) for v in vorder if vcount[v]]
    datasets = session.scalars(select(Dataset).where(Dataset.recorded_at <= as_of, Dataset.model_id.in_(scope))
                               .order_by(Dataset.id)).all()
    ds_by_sha = {d.sha256: d for d in datasets}
    protected_cols: dict[str, set[str]] = defaultdict(set)
    target_cols: dict[str, set[str]] = defaultdict(set)
    for d in datasets:
        roles = d.columns or {}
        if roles:
            protected_cols[d.model_id].update(roles.get("protected") or [])
        target_cols[d.model_id].update(roles.get("target") or [])

    # -- fidelity and drift
    # every fidelity check of the scope, lean, read once: the fidelity section, the status
    # changes and the relied-on checks are computed from these rows
    lean = RT.lean_fidelity(session, as_of=as_of, scope=scope, aids=sorted(all_artifacts))
    fidelity, fid_outcomes, fid_ids = RT.fidelity_section(
        session, lean, as_of=as_of, hist_start=hist_start, qstart=qstart, qend=qend, keep=usable_row,
        label=label, artifacts=artifacts, protected=lambda art, m: _protected(art, m, protected_cols), full=full)
    drift_rows, outcomes = [], Counter({("fidelity", s): n for s, n in fid_outcomes.items()})
    for c in checks:
        outcomes[(c.kind, c.status)] += 1
        m = c.metrics or {}
        if c.kind in ("data_drift", "activation_drift"):
            par, hs = c.parameters or {}, c.input_hashes or {}
            cur_ds, ref_ds = ds_by_sha.get(hs.get("current")), ds_by_sha.get(hs.get("reference"))
            w0 = _d(c.window_start) or _d(cur_ds.window_start if cur_ds else None)
            w1 = _d(c.window_end) or _d(cur_ds.window_end if cur_ds else None)
            drift_rows.append(C.DriftRow(
                check_id=str(c.id), kind=c.kind, model_id=c.model_id, version=label.get(c.version_id, "?"),
                window_start=w0 or "not registered", window_end=w1 or "not registered",
                features=int(m.get("n_features") or 0),
                drifted_share=float(_f(m.get("drifted_share")) or (m.get("n_newly_dead", 0) / max(1, m.get("n_features") or 1))),
                status=c.status, reference=str(par.get("reference") or (par.get("reference_dataset") or "")),
                reference_window=_window(ref_ds), current=str(par.get("current") or ""),
                reasons=[str(x) for x in c.reasons or []]))
    feature_rows, label_rows = [], []
    drift_model = {c.id: c.model_id for c in checks if c.kind == "data_drift"}
    if drift_model:
        for f in session.scalars(select(CheckFeature).where(CheckFeature.check_id.in_(list(drift_model)))
                                 .order_by(CheckFeature.check_id, CheckFeature.id)):
            mid = drift_model[f.check_id]
            is_target = f.feature in target_cols.get(mid, ())
            row = C.DriftFeatureRow(check_id=str(f.check_id), feature=f.feature, psi=_f(f.psi), ks=_f(f.ks_stat),
                                    ks_pvalue=_f(f.ks_pvalue if f.ks_pvalue is not None else f.chi2_pvalue),
                                    wasserstein=_f(f.wasserstein), js=_f(f.js_distance), status=f.status,
                                    model_id=mid, role="target" if is_target else "input")
            (label_rows if is_target else feature_rows).append(row)
    for c in checks:
        for r in (c.metrics or {}).get("label_shift") or [] if c.kind == "data_drift" else []:
            if isinstance(r, dict) and r.get("feature") is not None:
                label_rows.append(C.DriftFeatureRow(check_id=str(c.id), feature=str(r["feature"]), psi=_f(r.get("psi")),
                                                    ks=_f(r.get("ks")), ks_pvalue=_f(r.get("pvalue", r.get("ks_pvalue"))),
                                                    wasserstein=_f(r.get("wasserstein")), js=_f(r.get("js")),
                                                    status=str(r.get("status") or "—"), model_id=c.model_id, role="target"))
    psi_matrix, psi_total = _psi_matrix(session, q, as_of, scope, single=bool(model_id), exclude=target_cols)
    compute = _compute_budget(session, as_of, scope, label, pol["document"])
    reasons_t = RT.check_reasons(session, as_of=as_of, scope=scope, qstart=qstart, qend=qend, usable=usable_row,
                                 label=label, full=full)
    changes += _status_changes(session, lean, qstart, period_end, label, all_artifacts)
    adaptations = _adaptations(session, as_of, in_scope, qstart, period_end, label, artifacts)
    for r in adaptations:
        changes.append(C.ChangeRow(
            date=r.date, event="artifact_adapted" if r.status == "succeeded" else "adaptation_failed",
            model_id=r.model_id, version=r.version, artifact_id=r.child_artifact_id or r.parent_artifact_id,
            detail=_adaptation_detail(r)))
    changes.sort(key=lambda r: (r.date, r.model_id, r.event, r.version or "", r.artifact_id or ""))
    changes_t = full.table("changes", C.ChangeRow)
    for r in changes:
        changes_t.add(r)
    del changes
    staleness_t = full.table("debt_staleness", C.ArtifactStaleness)
    for r in staleness:
        staleness_t.add(r)
    del staleness

    # -- failure modes, findings, attestations
    fm_titles = {f.code: f for f in session.scalars(select(FailureMode))}
    fms = []
    occs = fm_occurrences(session, as_of)
    for o in occs:
        if o["model_id"] not in in_scope:
            continue
        fm = fm_titles.get(o["code"])
        end = o["status_at"] if o["status"] == "closed" else as_of
        fms.append(C.FailureModeRow(occurrence_id=str(o["id"]), code=o["code"], title=fm.title if fm else o["code"],
                                    severity=fm.severity if fm else "", model_id=o["model_id"],
                                    version=label.get(o["version_id"]) if o["version_id"] else None,
                                    artifact_id=o["artifact_id"], opened=_d(o["detected_at"]), status=o["status"],
                                    age_days=max(0, (end - o["detected_at"]).days),
                                    rationale=(o["detail"] if o["status"] == "open" else o["rationale"]) or ""))
    fms.sort(key=lambda r: (r.status != "open", {"critical": 0, "high": 1, "medium": 2, "low": 3}.get(r.severity, 4), r.code, int(r.occurrence_id)))
    asof_day = as_of.date()
    findings = []
    for f in list_findings(session, as_of=as_of):
        if f["model_id"] not in in_scope:
            continue
        due = date.fromisoformat(f["due_date"])
        opened = datetime.fromisoformat(f["recorded_at"].replace("Z", "+00:00"))
        findings.append(C.FindingRow(finding_id=str(f["id"]), title=f["title"], severity=f["severity"], model_id=f["model_id"],
                                     owner=f["owner"], due=f["due_date"], status=f["status"],
                                     age_days=max(0, (as_of - opened).days),
                                     overdue_days=max(0, (asof_day - due).days) if f["is_open"] else 0))
    signoff_state = "not signed"  # set by _bind_attestations once the evidence hash is known

    from compliance.services.narrative import narratives_at

    narrative = [C.NarrativeRow(model_id=n["model_id"], section=n["section"], text=n["text"], rating=n["rating"],
                                author=n["author"], date=n["date"], version=n["version"])
                 for n in narratives_at(session, str(q), as_of, scope)]
    ratings = {n.model_id: n.rating for n in narrative if n.section == "conclusion" and n.rating}
    for r in verdict_rows:
        r.rating = ratings.get(r.model_id)
    open_fm = Counter((r.code, r.title, r.severity) for r in fms if r.status == "open")
    kinds = ["fidelity", "alignment", "data_drift", "activation_drift", "overhead", "performance", "fairness"]
    summary = C.ExecutiveSummary(
        coverage=head_cov[0], coverage_prev=head_cov[1], debt_slot_days=head_cov[2],
        debt_slot_days_prev=None if head_cov[3] is None else _i(head_cov[3]), weighted_debt=head_cov[4],
        weighted_debt_prev=None if head_cov[5] is None else _i(head_cov[5]), models_in_scope=len(inventory),
        deployed_versions=sum(len(r.deployed_versions) for r in inventory),
        open_failure_modes=[C.CountRow(code=k[0], title=k[1], severity=k[2], count=n) for k, n in sorted(open_fm.items())],
        check_outcomes=[C.CheckOutcomeRow(kind=k, passed=outcomes[(k, "pass")], warned=outcomes[(k, "warn")],
                                          failed=outcomes[(k, "fail")], errored=outcomes[(k, "error")],
                                          inconclusive=outcomes[(k, "inconclusive")])
                        for k in kinds if any(outcomes[(k, s)] for s in ("pass", "warn", "fail", "error", "inconclusive"))],
        open_findings=sum(1 for f in findings if f.status not in ("closed", "accepted", "remediated")),
        overdue_findings=sum(1 for f in findings if f.overdue_days > 0), signoff_state=signoff_state,
        models_covered=models_covered, not_required=not_required, debt_outstanding=head_out[0],
        debt_outstanding_prev=head_out[1], weighted_debt_outstanding=head_out[2],
        weighted_debt_outstanding_prev=head_out[3],
        pending_slot_days=sum(_i(m.get("pending_slot_days")) for m in bym if m.get("in_scope")),
        verdict_counts=verdict_counts, verdicts=verdict_rows)

    # -- appendix
    def mark(table: str, eid: Any) -> str:
        fix = fixes.get((table, str(eid)))
        if fix is not None:
            how = "void" if fix["action"] == "void" else f"superseded by {fix['replacement_id']}"
            return f" — {how} since {_d(fix['recorded_at'])} (correction {fix['id']})"
        return " — left out (data quality)" if (table, str(eid)) in left_out else ""

    # -- appendix: the evidence index cites every row the pack relies on, with its ledger entry
    # the export's excerpt runs from the quarter's first entry to the head (the head at least)
    from_seq = min(session.scalar(select(LedgerEntry.seq).where(LedgerEntry.recorded_at >= qstart,
                                                                LedgerEntry.recorded_at <= as_of)
                                  .order_by(LedgerEntry.seq).limit(1)) or seq, seq)
    more = {c.id for c in checks} | {int(r.check_id) for r in compute.checks}
    more |= {int(o["check_id"]) for o in occs if o["model_id"] in scope and o.get("check_id")}
    relied = RT.relied_checks(session, lean, qstart=qstart, ids=fid_ids, more=more, artifacts=artifacts)
    del lean
    others: list[tuple[C.EvidenceRow, tuple[str, str]]] = []
    for d in datasets:
        others.append((C.EvidenceRow(kind="dataset", ref=f"dataset {d.id}",
                                     description=f"{d.model_id} {d.role} {Path(d.path).name}"
                                                 f"{' (' + _window(d) + ')' if _window(d) else ''}",
                                     sha256=d.sha256), ("dataset", str(d.id))))
    for x in artifacts.values():
        if x.model_id in in_scope:
            others.append((C.EvidenceRow(kind="artifact", ref=x.id, description=f"{x.kind}, {x.format}" + mark("artifact", x.id),
                                         sha256=x.sha256), ("artifact", x.id)))
    for v in all_versions.values():
        if v.model_id in in_scope:
            others.append((C.EvidenceRow(kind="model_version", ref=f"{v.model_id} {v.label}", description="weights file",
                                         sha256=v.weights_sha256), ("model_version", str(v.id))))
    cited = cited_entries(session, as_of, [k for _, k in others])
    for row, key in others:
        seq_hash = cited.get(key)
        if seq_hash is not None:
            row.ledger_seq, row.ledger_hash = seq_hash
    others.sort(key=lambda rk: (rk[0].kind, _natural(rk[0].ref)))
    # evidence in display order (by kind, then ref): the checks, by id, stream in at their place
    evidence_t = full.table("appendix_evidence", C.EvidenceRow)
    before_checks = [r for r, _ in others if r.kind < "check"]
    every = full.folder is not None
    need = len(relied) if every else max(0, evidence_t.limit - len(before_checks))
    marked = {int(e) for t, e in itertools.chain(fixes, left_out) if t == "check_run" and str(e).isdigit()}
    check_rows = RT.check_evidence(session, as_of=as_of, relied=relied[:need], label=label,
                                   marks={i: mark("check_run", i) for i in marked}, all_of_them=every)
    cited_seqs = full.cited_seqs

    def cite(seq: int | None) -> None:  # the export carries the cited entries older than its excerpt
        if seq is not None and seq < from_seq:
            cited_seqs.add(seq)

    for r in before_checks:
        evidence_t.add(r)
        cite(r.ledger_seq)
    for values in check_rows:  # field values: a row object only for the rows the page keeps
        cite(values[4])
        evidence_t.add_values(values)
    for r, _ in others[len(before_checks):]:
        evidence_t.add(r)
        cite(r.ledger_seq)
    evidence_t.total = len(others) + len(relied)
    dq_rows = [C.DataQualityRow(record=f["record"], problem=f["problem"],
                                handling=f["handling"] + (f" (+{f['dependents']} dependent records)" if f["dependents"] else ""))
               for f in a["data_quality"]["findings"]]
    dq_rows += [C.DataQualityRow(record=f"{c['entity_type']} {c['entity_id']}", problem=c["reason"],
                                 handling=("voided" if c["action"] == "void" else f"superseded by {c['replacement_id']}")
                                 + f" on {_d(c['recorded_at'])} by {c['actor']} (correction {c['id']})")
                for c in sorted(fixes.values(), key=lambda c: c["id"])]
    kinds_shown = {r.kind for r in summary.check_outcomes}
    appendix = C.Appendix(methodology=C.default_methodology(), policy_version=str(pol["version"]),
                          policy=[C.PolicyRow(key=k, value=v) for k, v in _flatten(pol["document"])],
                          evidence=evidence_t.rows, evidence_total=evidence_t.total, data_quality=dq_rows, crosswalk=C.default_crosswalk(kinds_shown),
                          not_covered=C.default_not_covered(kinds_shown), ledger_from_seq=int(from_seq))

    detail = _model_detail(session, models[model_id], versions, events, artifacts, as_of) if model_id else None
    if detail is not None:
        detail.model.deployed_versions = sorted(deployed_in_q.get(model_id, set()))
    cover = C.Cover(
        title="Interpretability audit pack" if not model_id else "Model risk review: interpretability",
        organisation=organisation or ORGANISATION,
        scope="All models in the inventory" if not model_id else f"Model {model_id} — {models[model_id].name}",
        quarter=str(q), period_start=q.start.isoformat(), period_end=q.end.isoformat(), as_of=iso(as_of),
        report_id=rid, tool_version=__version__, ledger_head_hash=head, context_hash="", model_id=model_id)
    ctx = C.ReportContext(
        schema_version=C.SCHEMA_VERSION, kind=kind, cover=cover, summary=summary,
        inventory=inventory, changes=changes_t.rows, changes_total=changes_t.total, adaptations=adaptations,
        coverage=C.CoverageSection(per_tier=per_tier, per_model=per_model_cov, timeline=timeline),
        debt=C.DebtSection(per_model=per_model_debt, staleness=staleness_t.rows, staleness_total=staleness_t.total,
                           trend=trend),
        fidelity=fidelity,
        drift=C.DriftSection(checks=drift_rows, features=feature_rows, label_shift=label_rows, psi_matrix=psi_matrix,
                             psi_matrix_total=psi_total),
        compute=compute, check_reasons=reasons_t.rows, check_reasons_total=reasons_t.total,
        failure_modes=fms, findings=findings, attestations=[], narrative=narrative, appendix=appendix,
        model_detail=detail)
    ctx.outcomes, ctx.fairness = outcome_sections(checks, label)
    ctx.monitoring = monitoring_section(session, as_of, sorted(in_scope), qstart)
    return C.hashed_context(ctx, bind=lambda c: _bind_attestations(session, c))


def monitoring_section(session: Session, as_of: datetime, model_ids: list[str], qstart: datetime) -> C.MonitoringSection:
    """Plan and adherence of every deployed version in scope at the as-of; the quarter's gate decisions."""
    from compliance.services.plans import plan_adherence
    from compliance.store.models import GateDecision

    def d(x):
        return x.date().isoformat() if x is not None else None

    plans = []
    for r in plan_adherence(session, as_of, model_ids):
        alert = r.get("alert") or {}
        plans.append(C.PlanRow(model_id=r["model_id"], version=r["version"],
                               plan=f"plan v{r['plan_version']}" if r["explicit"] else "tier default", kind=r["kind"],
                               cadence=r["cadence"], alerted=", ".join((alert.get("email") or []) + (alert.get("webhook") or []))
                               or "—", last_check=d(r["last_check_at"]), next_due=d(r["next_due"]),
                               missed=[m["due"].date().isoformat() for m in r["missed"]], state=r["state"]))
    labels = {v.id: v.label for v in session.scalars(select(ModelVersion).where(ModelVersion.model_id.in_(model_ids)))}
    gates = [C.GateRow(model_id=g.model_id, version=labels.get(g.version_id, str(g.version_id)), date=_d(g.recorded_at),
                       decision=g.decision, actor=g.actor, reasons=[str(x) for x in g.reasons or []])
             for g in session.scalars(select(GateDecision).where(GateDecision.model_id.in_(model_ids),
                                                                 GateDecision.recorded_at >= qstart,
                                                                 GateDecision.recorded_at <= as_of)
                                      .order_by(GateDecision.recorded_at, GateDecision.id))]
    return C.MonitoringSection(plans=plans, gates=gates)


SIGNOFF_STATES = {"approve": "approved", "approve_with_conditions": "approved with conditions", "reject": "rejected"}


def _bind_attestations(session: Session, ctx: C.ReportContext) -> C.ReportContext:
    """DESIGN §7: a sign-off belongs to the exact evidence it approved. The context hash leaves
    the sign-off out (``context.context_hash``), so the attestations shown are those recorded on
    this hash -- whenever they were made; a pack with different evidence starts unsigned."""
    rows = session.scalars(select(Attestation).where(Attestation.context_sha256 == ctx.cover.context_hash)
                           .order_by(Attestation.id)).all()
    atts = [C.AttestationRow(reviewer=x.reviewer, role=x.role, decision=x.decision, comment=x.comment or "",
                             date=_d(x.recorded_at), key_fingerprint=x.key_fingerprint or "") for x in rows]
    state = SIGNOFF_STATES.get(atts[-1].decision, "not signed") if atts else "not signed"
    return dataclasses.replace(ctx, attestations=atts, summary=dataclasses.replace(ctx.summary, signoff_state=state))


# The artifact's own standing on the deployed version (its slot may still be fresh through another artifact).
_ART_STATE = {"valid": "fresh", "broken": "broken", "stale": "stale", None: "missing"}


def _mean(xs) -> float | None:
    vals = [float(x) for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else None


def _deployed_during(events, vid: int, start: datetime, end: datetime) -> bool:
    """Whether a deployed interval [deploy, retire) of the version overlaps [start, end): the
    analysis' whole-day rule, so a version retired at 00:00 of the first day is not counted."""
    on_since = None
    for e in events:
        if e.version_id != vid:
            continue
        if e.action == "deploy" and on_since is None:
            on_since = e.effective_at
        elif e.action == "retire" and on_since is not None:
            if on_since < end and e.effective_at > start and e.effective_at > on_since:
                return True
            on_since = None
    return on_since is not None and on_since < end


def _timeline(a: dict, model_id: str | None) -> list[C.TimelineSeries]:
    series: dict[str, tuple[list, list]] = {}
    if model_id:
        for r in a["timeline_by_model"]:
            if r["model_id"] == model_id:
                s = series.setdefault(model_id, ([], []))
                s[0].append(r["day"])
                s[1].append(_f(r["share"]))
    else:
        for r in a["timeline"]:
            name = "Portfolio" if r["scope"] == "portfolio" else f"Tier {r['tier']}"
            s = series.setdefault(name, ([], []))
            s[0].append(r["day"])
            s[1].append(_f(r["share"]))
    return [C.TimelineSeries(label=k, dates=v[0], values=v[1]) for k, v in series.items()]


def _model_trend(session: Session, quarter: str, as_of: datetime, model_id: str, inp) -> list[C.TrendRow]:
    # The analysis returns per-model rows for its own quarter only; the model's four-quarter trend
    # analyses each quarter from the same load, as of the same time (as the portfolio trend does).
    q = parse_quarter(quarter)
    out = []
    for i in (3, 2, 1, 0):
        qq = q.previous(i)
        a = analyse(session, str(qq), as_of, inp=inp, detail=False)
        m = next((r for r in a["by_model"] if r["model_id"] == model_id), None)
        out.append(C.TrendRow(quarter=str(qq), coverage=_f(m.get("coverage")) if m and m["deployed"] else None,
                              debt_slot_days=_i(m["debt"]) if m else 0, weighted_debt=_i(m["weighted_debt"]) if m else 0,
                              debt_outstanding=_opt_i(m.get("debt_outstanding")) if m else None))
    return out


def _psi_matrix(session: Session, q, as_of: datetime, scope: list[str], *, single: bool, top: int = 18,
                exclude: dict[str, set[str]] | None = None) -> tuple[C.PsiMatrix, int]:
    quarters = [q.previous(i) for i in (3, 2, 1, 0)]
    start = datetime(quarters[0].start.year, quarters[0].start.month, quarters[0].start.day, tzinfo=timezone.utc)
    rows = session.execute(
        select(Check.model_id, Check.finished_at, CheckFeature.feature, CheckFeature.psi)
        .join(CheckFeature, CheckFeature.check_id == Check.id)
        .where(Check.kind == "data_drift", Check.recorded_at <= as_of, Check.finished_at >= start,
               Check.model_id.in_(scope))).all()
    cell: dict[tuple[str, int], float] = {}
    for mid, fin, feat, psi in rows:
        if psi is None or feat in (exclude or {}).get(mid, ()):
            continue
        name = feat if single else f"{mid} · {feat}"
        d = fin.date()
        for j, qq in enumerate(quarters):
            if qq.start <= d <= qq.end:
                cell[(name, j)] = max(cell.get((name, j), 0.0), float(psi))
    every = {k[0] for k in cell}
    feats = sorted(every, key=lambda n: (-max(cell.get((n, j), 0) for j in range(4)), n))[:top]
    feats.sort()
    return C.PsiMatrix(features=feats, quarters=[str(x) for x in quarters],
                       values=[[cell.get((f, j)) for j in range(4)] for f in feats]), len(every)


def _natural(ref: str) -> tuple:
    """Sort key that orders 'check 9' before 'check 10'."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", ref))


def cited_entries(session: Session, as_of: datetime, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(entity_type, entity_id) → (seq, hash) of the ledger entry that inserted the row (an insert
    written by a replay is marked ``replay`` in the chain: it inserted the row all the same)."""
    out: dict[tuple[str, str], tuple[int, str]] = {}
    by_type: dict[str, list[str]] = defaultdict(list)
    for t, i in keys:
        by_type[t].append(i)
    for t, ids in by_type.items():
        for j in range(0, len(ids), 500):
            for seq_, h, eid in session.execute(
                    select(LedgerEntry.seq, LedgerEntry.hash, LedgerEntry.entity_id)
                    .where(LedgerEntry.entity_type == t, LedgerEntry.entity_id.in_(ids[j:j + 500]),
                           LedgerEntry.action.in_(("insert", "replay")), LedgerEntry.recorded_at <= as_of)
                    .order_by(LedgerEntry.seq)):
                out.setdefault((t, eid), (int(seq_), h))
    return out


def _opt_i(x: Any) -> int | None:
    return int(round(x)) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _window(ds) -> str:
    if ds is None or (ds.window_start is None and ds.window_end is None):
        return ""
    return f"{_d(ds.window_start) or '…'} to {_d(ds.window_end) or '…'}"


def _protected(artifact, metrics: dict, protected_cols: dict[str, set[str]]) -> bool | None:
    """Whether a probe's target is a protected attribute (recorded flag, artifact cfg, or a
    column with the `protected` role in the model's registered datasets)."""
    if artifact is None or artifact.kind != "probe":
        return None
    if isinstance(metrics.get("protected"), bool):
        return metrics["protected"]
    extra = artifact.extra or {}
    cfg = extra.get("cfg") or {}
    if isinstance(extra.get("protected"), bool) or isinstance(cfg.get("protected"), bool):
        return bool(extra.get("protected") or cfg.get("protected"))
    col = cfg.get("target_column")
    if artifact.model_id in protected_cols:  # roles registered: they decide
        return col in protected_cols[artifact.model_id]
    return str(col or "").lower() in _PROTECTED_NAMES


# Protected characteristics (e.g. UK Equality Act 2010, US ECOA), used only when no dataset of the
# model registers column roles: a probe of such a column is then flagged as protected.
_PROTECTED_NAMES = {"age", "sex", "gender", "race", "ethnicity", "religion", "disability", "marital_status",
                    "national_origin", "nationality", "pregnancy", "sexual_orientation", "color", "colour"}


def _compute_budget(session: Session, as_of: datetime, scope: list[str], label: dict, policy: dict) -> C.ComputeBudgetSection:
    """The latest overhead check per (artifact, version) at as_of, against the policy budget."""
    ov = policy.get("overhead") or {}
    latest: dict[tuple, Check] = {}
    for c in session.scalars(on_path(select(Check).where(Check.kind == "overhead", Check.recorded_at <= as_of,
                                                         Check.model_id.in_(scope)).order_by(Check.finished_at, Check.id),
                                     CHECK_COVER)):
        latest[(c.artifact_id, c.version_id)] = c
    rows = []
    for c in latest.values():
        m = c.metrics or {}
        base, att = _f(m.get("latency_base_s")), _f(m.get("latency_attached_s"))
        rows.append(C.OverheadRow(check_id=str(c.id), artifact_id=c.artifact_id or "—", model_id=c.model_id,
                                  version=label.get(c.version_id, "—"), date=_d(c.finished_at),
                                  overhead_ratio=_f(m.get("overhead_ratio")),
                                  latency_base_ms=None if base is None else base * 1000,
                                  latency_attached_ms=None if att is None else att * 1000,
                                  flops_ratio=_f(m.get("flops_ratio")), status=c.status,
                                  reasons=[str(x) for x in c.reasons or []]))
    rows.sort(key=lambda r: (-(r.overhead_ratio if r.overhead_ratio is not None else -1e9), r.artifact_id, r.version))
    return C.ComputeBudgetSection(budget=_f(ov.get("overhead_budget")), warn_share=_f(ov.get("overhead_warn_share")),
                                  checks=rows)


def _adaptations(session: Session, as_of: datetime, in_scope: set, start: datetime, end: datetime, label: dict,
                 artifacts: dict) -> list[C.AdaptationRow]:
    """Adaptations finished in the period (DESIGN §9), both outcomes, as the ledger knew them at as_of."""
    from compliance.store.models import Adaptation

    rows = []
    for x in session.scalars(select(Adaptation).where(Adaptation.recorded_at <= as_of, Adaptation.finished_at >= start,
                                                      Adaptation.finished_at < end)
                             .order_by(Adaptation.finished_at, Adaptation.id)):
        if x.model_id not in in_scope or x.parent_artifact_id not in artifacts:
            continue
        m, p = x.metrics or {}, x.parameters or {}
        surv = m.get("survival") or {}
        parent = artifacts[x.parent_artifact_id]
        rows.append(C.AdaptationRow(
            adaptation_id=str(x.id), date=_d(x.finished_at), model_id=x.model_id,
            parent_artifact_id=x.parent_artifact_id, parent_bound_version=label.get(parent.bound_version_id, "—"),
            version=label.get(x.version_id, "—"),
            child_artifact_id=x.child_artifact_id if x.child_artifact_id in artifacts else None, status=x.status,
            ev_before=_f(m.get("explained_variance_before")), ev_after=_f(m.get("explained_variance_after")),
            survival_share=_f(surv.get("survival_share")), labels_carried=_i(surv.get("n_carried_labels")),
            steps=_i(m.get("steps")), seconds=_f(m.get("seconds")), flops=_f(m.get("flops")),
            stop_reason=str(m.get("stop_reason") or ""),
            seed=int(p["seed"]) if isinstance(p.get("seed"), int) else None,
            check_id=None if x.check_id is None else str(x.check_id),
            reason="" if x.status == "succeeded" else str((x.reasons or [""])[0])))
    return rows


def _adaptation_detail(r: C.AdaptationRow) -> str:
    ev = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    surv = "—" if r.survival_share is None else f"{100 * r.survival_share:.0f}%"
    flops = "" if r.flops is None else f", {r.flops:.2g} FLOP"
    head = f"{r.parent_artifact_id} → {r.child_artifact_id}" if r.child_artifact_id else f"{r.parent_artifact_id} (nothing registered)"
    return (f"{head}: EV {ev(r.ev_before)} → {ev(r.ev_after)} on held-out {r.version} rows, survival {surv}, "
            f"{r.steps} steps{flops}")


def _status_changes(session: Session, lean: RT.LeanChecks, start: datetime, end: datetime, label: dict,
                    artifacts: dict) -> list[C.ChangeRow]:
    """Artifacts whose fidelity status changed in the period (against their previous check), from
    the lean rows of every fidelity check."""
    out = RT.status_changes(lean, start, end)
    missing = {r[1] for r in out} - set(artifacts)
    mids = {a: x.model_id for a, x in artifacts.items()}
    if missing:
        mids.update(session.execute(select(Artifact.id, Artifact.model_id).where(Artifact.id.in_(missing))).all())
    return [C.ChangeRow(date=str(np.datetime64(fin // 86_400_000_000_000, "D")), event="artifact_status_changed",
                        model_id=mids.get(aid, ""), version=label.get(vid), artifact_id=aid,
                        detail=f"fidelity {before.upper()} → {status.upper()} (check {cid})")
            for cid, aid, vid, status, fin, before in out]


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k in sorted(d):
        v = d[k]
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("required_groups", "tier_weights"):
            out += _flatten(v, key + ".")
        elif k == "required_groups":
            for tier in sorted(v):
                groups = v[tier]
                out.append((f"required_groups.tier{tier}", " AND ".join("one of {" + ", ".join(g) + "}" for g in groups) or "none"))
        else:
            out.append((key, json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else ("—" if v is None else str(v))))
    return out


def _model_detail(session: Session, m: Model, versions: dict, events, artifacts: dict, as_of: datetime) -> C.ModelDetail:
    vrows = []
    mine = sorted((v for v in versions.values() if v.model_id == m.id), key=lambda v: (v.trained_at or v.recorded_at, v.id))
    for v in mine:
        evs = [e for e in events if e.version_id == v.id]
        first = next((e.effective_at for e in evs if e.action == "deploy"), None)
        last = evs[-1] if evs else None
        retired = last.effective_at if last is not None and last.action == "retire" else None
        vrows.append(C.VersionRow(version=v.label, sha256=v.weights_sha256, trained_at=_d(v.trained_at) or "",
                                  parent=versions[v.parent_id].label if v.parent_id in versions else None,
                                  deployed_from=_d(first), deployed_to=_d(retired)))
    survival = {}
    for c in session.scalars(select(Check).where(Check.kind == "alignment", Check.model_id == m.id,
                                                 Check.recorded_at <= as_of, Check.artifact_id.is_not(None))
                             .order_by(Check.finished_at, Check.id)):
        survival[c.artifact_id] = _f((c.metrics or {}).get("survival_share"))
    from compliance.store.models import Adaptation

    adapted_from = {}
    for x in session.scalars(select(Adaptation).where(Adaptation.model_id == m.id, Adaptation.recorded_at <= as_of,
                                                      Adaptation.child_artifact_id.is_not(None))):
        adapted_from[x.child_artifact_id] = x.parent_artifact_id
        survival[x.child_artifact_id] = _f(((x.metrics or {}).get("survival") or {}).get("survival_share"))
    lineage = [C.LineageRow(artifact_id=x.id, kind=x.kind, bound_version=versions[x.bound_version_id].label,
                            registered=_d(x.recorded_at), replaces=x.replaces_id, survival=survival.get(x.id), sha256=x.sha256,
                            adapted_from=adapted_from.get(x.id))
               for x in sorted(artifacts.values(), key=lambda x: (x.recorded_at, x.id)) if x.model_id == m.id]
    # the baseline (first check on the bound version) beside the latest check, per artifact, from
    # one query: how the feature-density distribution moved
    by_artifact: dict[str, list[Check]] = defaultdict(list)
    for c in session.scalars(select(Check).where(Check.kind == "fidelity", Check.model_id == m.id,
                                                 Check.status != "error", Check.recorded_at <= as_of)
                             .order_by(Check.finished_at, Check.id)):
        by_artifact[c.artifact_id].append(c)
    dens = []
    for x in lineage:
        hist = by_artifact.get(x.artifact_id, [])
        for c in hist[:1] + hist[-1:] if len(hist) > 1 else hist:
            h = (c.metrics or {}).get("density_histogram")
            if h:
                dens.append(C.DensityHistogram(artifact_id=x.artifact_id,
                                               label=f"{versions[c.version_id].label} on {_d(c.finished_at)}",
                                               bin_edges=[float(e) for e in h["edges"]], counts=[int(n) for n in h["counts"]],
                                               dead=int(h["dead"])))
    row = C.ModelRow(model_id=m.id, name=m.name, owner=m.owner, tier=m.tier, business_use=m.business_use,
                     tags=list(m.tags or []), deployed_versions=[])
    return C.ModelDetail(model=row, versions=vrows, lineage=lineage, densities=dens)


# ---------------------------------------------------------------------------- outputs and runs
def record_run(session: Session, ctx: C.ReportContext, kind: str, outputs: dict[str, str]) -> dict:
    """Record a report run (idempotent for the same report id and context)."""
    existing = session.get(ReportRun, ctx.cover.report_id)
    if existing is not None:
        if existing.context_sha256 != ctx.cover.context_hash:
            raise Conflict(f"report {ctx.cover.report_id} was recorded with a different context")
        merged = dict(existing.outputs or {})
        # a signed file is always recorded with its signer (a signature makes every render unique)
        signed = any(k.startswith(PADES_OUTPUT_PREFIX) for k in outputs)
        if kind != existing.kind or any(merged.get(k) != v if signed else merged.get(k) not in (None, v)
                                        for k, v in outputs.items()):
            # same report, another rendering (e.g. HTML after PDF): a new run id keeps both on record
            rid = f"{ctx.cover.report_id}-{kind}-{sha256_bytes(_canon(outputs).encode())[:6]}"
            if session.get(ReportRun, rid) is None:
                record(session, ReportRun(id=rid, kind=kind, quarter=ctx.cover.quarter, model_id=ctx.cover.model_id,
                                          scope=[r.model_id for r in ctx.inventory], as_of=_parse(ctx.cover.as_of),
                                          context_sha256=ctx.cover.context_hash, outputs=outputs,
                                          ledger_head=ctx.cover.ledger_head_hash, tool_version=ctx.cover.tool_version))
            return {"report_id": ctx.cover.report_id, "run_id": rid, "recorded": True}
        return {"report_id": ctx.cover.report_id, "run_id": existing.id, "recorded": False}
    record(session, ReportRun(id=ctx.cover.report_id, kind=kind, quarter=ctx.cover.quarter, model_id=ctx.cover.model_id,
                              scope=[r.model_id for r in ctx.inventory], as_of=_parse(ctx.cover.as_of),
                              context_sha256=ctx.cover.context_hash, outputs=outputs,
                              ledger_head=ctx.cover.ledger_head_hash, tool_version=ctx.cover.tool_version))
    return {"report_id": ctx.cover.report_id, "run_id": ctx.cover.report_id, "recorded": True}


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _refuse_future(session: Session, as_of: datetime) -> None:
    from compliance.timeutil import utcnow

    now = max(session.info["clock"](), utcnow())  # a replay's clock may run ahead of the wall clock
    if as_of > now:
        raise UsageError(f"as-of {iso(as_of)} is in the future (now is {iso(now)}): a report can only be "
                         "as of a time that has passed")


def publish_on_commit(session: Session, path: Path, data: bytes) -> None:
    """Stage ``data`` beside ``path`` now; move it into place only when the session commits.

    A command that fails (the transaction rolls back) leaves nothing at ``path``.
    """
    import os

    from sqlalchemy import event

    from compliance.report.render import discard, stage_write

    tmp = stage_write(path, data)
    event.listen(session, "after_commit", lambda _s: os.replace(tmp, path), once=True)
    event.listen(session, "after_rollback", lambda _s: discard(tmp), once=True)


@without_gc_passes
def render_report(session: Session, quarter: str, as_of: datetime, out: Path, *, model_id: str | None = None,
                  fmt: str = "pdf", organisation: str | None = None,
                  progress: Callable[[str, float], None] | None = None,
                  sign_pdf: Path | None = None, passphrase: str | None = None) -> dict:
    """Render, record the run, and write ``out`` when the transaction commits (never on failure).

    ``sign_pdf``: a PKCS#12 file (``passphrase`` opens it): the PDF gets a PAdES signature as an
    incremental update after the PDF/A render, and the run records the signer's certificate
    (subject, issuer, SHA-256 fingerprint) under ``pades:<file name>``. The certificate is
    checked before anything is rendered or recorded.
    """
    from compliance.report.render import render_html, render_pdf_bytes

    if fmt not in ("pdf", "html", "docx"):
        raise UsageError("--format must be pdf, html or docx")
    ident = None
    if sign_pdf is not None:
        if fmt != "pdf":
            raise UsageError("--sign-pdf signs a PDF: use --format pdf")
        from compliance.report.pades import load_identity
        from compliance.timeutil import utcnow

        ident = load_identity(sign_pdf, passphrase, at=utcnow())
    _refuse_future(session, as_of)
    ctx, ctx_json = build_context_json(session, quarter, as_of, model_id=model_id, organisation=organisation)
    signed: dict[str, Any] = {}
    if fmt == "pdf":
        data = render_pdf_bytes(ctx, progress=progress, attachments=[("context.json", ctx_json)], validated=True)
        if ident is not None:
            from compliance.report.pades import sign_pdf as pades_sign

            data = pades_sign(data, ident, reason=f"report {ctx.cover.report_id}, context sha256 {ctx.cover.context_hash}")
            signed = {f"{PADES_OUTPUT_PREFIX}{out.name}": ident.record()}
    elif fmt == "docx":
        from compliance.report.docx_render import render_docx_bytes

        data = render_docx_bytes(ctx)
    else:
        data = render_html(ctx, validated=True).encode("utf-8")
    digest = sha256_bytes(data)
    run = record_run(session, ctx, "model" if model_id else "portfolio", {out.name: digest, **signed})
    session.flush()
    publish_on_commit(session, out, data)
    p = ctx.summary
    return {**run, "path": str(out), "sha256": digest, "context_sha256": ctx.cover.context_hash,
            "ledger_head": ctx.cover.ledger_head_hash, "coverage": p.coverage, "debt": p.debt_slot_days,
            "weighted_debt": p.weighted_debt, **({"pades": next(iter(signed.values()))} if signed else {})}


PACK_OUTPUT_PREFIX = "pack:"
# A report run's ``outputs`` entry for a PAdES-signed file: the signer's certificate (not a file).
PADES_OUTPUT_PREFIX = "pades:"


@without_gc_passes
def export_pack(session: Session, quarter: str, as_of: datetime, out: Path, *, organisation: str | None = None,
                progress: Callable[[str, float], None] | None = None,
                rendered: tuple[str, bytes] | None = None) -> dict:
    """Build the regulator zip, record the run (with the SHA-256 of every file of the pack), and
    write ``out`` when the transaction commits (never on failure). The full long tables are
    written to a temporary folder while the context is built and copied into the zip from there.
    ``rendered``: ``(context SHA-256, PDF)`` of an unsigned portfolio pack :func:`render_report`
    has just written; the zip takes those bytes when its own context has that hash (the same
    context.json, so the same render), else it renders its own."""
    _refuse_future(session, as_of)
    with tempfile.TemporaryDirectory(prefix="compliance-tables-") as folder:
        full = FullTables(Path(folder))
        ctx, ctx_json = build_context_json(session, quarter, as_of, organisation=organisation, full=full)
        pdf = rendered[1] if rendered is not None and rendered[0] == ctx.cover.context_hash else None
        return _export_pack(session, quarter, as_of, out, ctx, ctx_json, full, progress, pdf)


def _export_pack(session: Session, quarter: str, as_of: datetime, out: Path, ctx: C.ReportContext, ctx_json: bytes,
                 full: FullTables, progress, pdf: bytes | None = None) -> dict:

    from compliance.report.export import build_export, member_hashes

    q = parse_quarter(quarter)
    qstart = datetime(q.start.year, q.start.month, q.start.day, tzinfo=timezone.utc)
    excerpt = entries_between(session, qstart, as_of)
    start = entry_at(session, excerpt[0]["seq"] - 1) if excerpt else entry_at(session, head_as_of(session, as_of)[0])
    # the entries the evidence index cites from before the excerpt: each verified on its own
    first = excerpt[0]["seq"] if excerpt else (start["seq"] + 1 if start else 1)
    older = sorted(x for x in full.cited_seqs if x < first)
    from compliance.services.signing import export_tables

    extra = export_tables(session, ctx.cover.context_hash, head_as_of(session, as_of)[0])
    data, manifest = build_export(ctx, ledger_excerpt=excerpt, ledger_start=start, cited=entries_at(session, older),
                                  extra_tables=extra, progress=progress, ctx_json=ctx_json,
                                  full_tables=full.files(), pdf=pdf)
    zip_sha = sha256_bytes(data)
    members = {f"{PACK_OUTPUT_PREFIX}{n}": h for n, h in member_hashes(manifest).items()}
    run = record_run(session, ctx, "export", {out.name: zip_sha, **members})
    session.flush()
    publish_on_commit(session, out, data)
    return {**run, "path": str(out), "sha256": zip_sha, "manifest": manifest}


def list_reports(session: Session) -> list[dict]:
    from compliance.services.registry import plain

    return [plain(r) for r in session.scalars(select(ReportRun).order_by(ReportRun.recorded_at, ReportRun.id))]


def render_demo_outputs(url: str, out_dir: Path, quarter: str, as_of: datetime, *, say: Say = print) -> dict:
    from compliance.store.engine import session_scope
    from compliance.store.ledger import head_recorded_at

    org = "Northwind Bank (sample)"
    with session_scope(url, readonly=True) as s:
        last = head_recorded_at(s)
    # the runs are recorded at the quarter close review; a rerun (the store reused, its sign-off
    # after that) records them at the ledger's head, since a replay never writes before it
    at = max(as_of + timedelta(hours=12), last or as_of)
    clock = lambda: at  # noqa: E731
    res = {}
    with session_scope(url, actor="mrm-reporting", clock=clock, replay=True) as s:
        r = render_report(s, quarter, as_of, out_dir / f"audit-pack-{quarter}.pdf", organisation=org)
        say(f"      portfolio pack  {r['path']}")
        res["pack"], res["pack_report_id"], pack_hash = Path(r["path"]), r["report_id"], r["context_sha256"]
    with session_scope(url, actor="mrm-reporting", clock=clock, replay=True) as s:
        worst = _worst_model(s, quarter, as_of)
        r = render_report(s, quarter, as_of, out_dir / f"review-{worst}-{quarter}.pdf", model_id=worst, organisation=org)
        say(f"      model review    {r['path']}")
        res["review"] = Path(r["path"])
    with session_scope(url, actor="mrm-reporting", clock=clock, replay=True) as s:
        r = export_pack(s, quarter, as_of, out_dir / f"regulator-export-{quarter}.zip", organisation=org,
                        rendered=(pack_hash, res["pack"].read_bytes()))  # the pack just written, not rendered twice
        say(f"      regulator zip   {r['path']}")
        res["export"] = Path(r["path"])
    return res


def _worst_model(session: Session, quarter: str, as_of: datetime) -> str:
    a = analyse(session, quarter, as_of)
    rows = [m for m in a["by_model"] if m["deployed"] and not m["no_requirements"]]
    if not rows:
        raise NotFound("no deployed model with requirements to review")
    return sorted(rows, key=lambda m: (-(m["weighted_debt"] or 0), m["model_id"]))[0]["model_id"]
