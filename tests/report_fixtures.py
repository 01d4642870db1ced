"""TEST DATA: a realistic, deterministic report context for the report tests and the bench.

Not product code: the real context is built from the store by ``build_context``. This generator
only fills the contract with plausible numbers so that templates, charts, export and pack
verification can be exercised at any size (``n_models`` up to thousands).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

from compliance.report import context as c
from compliance.report.tables import derive_in_memory

_USES = [
    ("credit-pd", "Retail credit probability of default", 1),
    ("fraud-card", "Card transaction fraud detection", 1),
    ("aml-txn", "Anti-money-laundering transaction monitoring", 1),
    ("mortgage-lgd", "Mortgage loss given default", 2),
    ("collections-prio", "Collections prioritisation", 2),
    ("churn-retail", "Retail customer churn", 3),
    ("marketing-next", "Next best offer", 3),
    ("sme-rating", "SME credit rating", 1),
]
_KINDS = ["sae", "transcoder", "clt", "attribution_baseline", "probe"]
_FM = [
    ("FM-STALE", "Artifact not re-validated after retraining", "high"),
    ("FM-DECAY", "Fidelity below floor or decayed from baseline", "high"),
    ("FM-DRIFT-BRITTLE", "Drift fails and fidelity degrades under shift", "critical"),
    ("FM-SILENT", "Deployed version with no check in the validity window", "critical"),
    ("FM-OVERHEAD", "Interpretability compute over latency budget", "low"),
    ("FM-DEAD", "Dead or dense features beyond policy", "medium"),
    ("FM-ERROR", "A check could not run", "medium"),
]
_FEATURES = ["income", "age", "utilisation", "loan_amount", "tenure_months", "dti_ratio",
             "num_delinquencies", "card_spend_30d", "merchant_category", "channel",
             "country_risk", "txn_velocity_1h"]


def _sha(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _day(start: dt.date, n: int) -> str:
    return (start + dt.timedelta(days=n)).isoformat()


def make_context(n_models: int = 12, *, seed: int = 7, kind: str = "portfolio",
                 quarter: str = "2026Q3", attestations: int = 2,
                 hashed: bool = True) -> c.ReportContext:
    """Build a plausible context; ``kind='model'`` adds detail for the first model."""
    rng = random.Random(seed)
    q_start = dt.date(2026, 7, 1)
    q_days = 92
    period_end = _day(q_start, q_days - 1)

    models: list[c.ModelRow] = []
    for i in range(n_models):
        base, use, tier = _USES[i % len(_USES)]
        mid = base if i < len(_USES) else f"{base}-{i:04d}"
        nver = rng.randint(1, 3)
        models.append(c.ModelRow(
            model_id=mid, name=use if i < len(_USES) else f"{use} #{i}",
            owner=rng.choice(["A. Okafor", "M. Lindqvist", "J. Tanaka", "R. Costa"]),
            tier=tier, business_use=use,
            tags=sorted(rng.sample(["sr11-7", "eu-ai-act-high-risk", "pra-ss1-23"], 2)),
            deployed_versions=[f"v{v}" for v in range(1, nver + 1)]))

    changes, per_model_cov, per_model_debt, staleness, fid, drift = [], [], [], [], [], []
    fm_rows, findings, evidence = [], [], []
    for m in models:
        dep = float(q_days * len(m.deployed_versions))
        cov = round(rng.choice([1.0, 1.0, rng.uniform(0.3, 1.0), 0.0]), 4)
        per_model_cov.append(c.ModelCoverage(
            model_id=m.model_id, tier=m.tier, deployed_version_days=dep,
            covered_version_days=round(dep * cov, 2), coverage=cov,
            coverage_prev=round(min(1.0, cov + rng.uniform(-0.1, 0.2)), 4)))
        slots = int(dep) * 2
        fresh = int(slots * cov)
        rest = slots - fresh
        stale = rng.randint(0, rest)
        broken = rng.randint(0, rest - stale)
        missing = rest - stale - broken
        weight = {1: 3, 2: 2, 3: 1}[m.tier]
        per_model_debt.append(c.ModelDebt(
            model_id=m.model_id, tier=m.tier, fresh=fresh, stale=stale, broken=broken,
            missing=missing, debt_slot_days=rest, weighted_debt=rest * weight))
        for v in m.deployed_versions:
            d = rng.randint(0, 60)
            changes.append(c.ChangeRow(date=_day(q_start, d), event="version_trained",
                                       model_id=m.model_id, version=v,
                                       detail=f"trained on window to {_day(q_start, d - 3)}"))
            changes.append(c.ChangeRow(date=_day(q_start, d + 2), event="version_deployed",
                                       model_id=m.model_id, version=v))
            evidence.append(c.EvidenceRow("model_version", f"{m.model_id}@{v}",
                                          "weights file", _sha(m.model_id, v)))
        for k in rng.sample(_KINDS[:2], 1) + ["attribution_baseline"]:
            aid = f"{m.model_id}-{k}-{rng.randint(1, 9)}"
            bound = m.deployed_versions[0]
            dv = m.deployed_versions[-1]
            behind = len(m.deployed_versions) - 1
            state = "fresh" if cov == 1.0 else rng.choice(["stale", "broken", "stale"])
            staleness.append(c.ArtifactStaleness(
                artifact_id=aid, kind=k, model_id=m.model_id, bound_version=bound,
                deployed_version=dv, versions_behind=behind,
                days_since_valid=None if state == "broken" else rng.randint(0, 200),
                fidelity_decay=round(rng.uniform(0, 0.3), 4) if behind else 0.0,
                survival=round(rng.uniform(0.4, 1), 3) if behind else None, state=state))
            changes.append(c.ChangeRow(date=_day(q_start, rng.randint(0, 80)),
                                       event="artifact_registered", model_id=m.model_id,
                                       version=bound, artifact_id=aid))
            evidence.append(c.EvidenceRow("artifact", aid, f"{k} weights", _sha(aid)))
            for vi, v in enumerate(m.deployed_versions):
                ev = round(max(0.3, min(0.99, 0.93 - 0.08 * vi + rng.uniform(-0.05, 0.03))), 4)
                status = "pass" if ev >= 0.8 else ("warn" if ev >= 0.6 else "fail")
                cid = f"chk-{_sha(aid, v)[:10]}"
                fid.append(c.FidelityRow(
                    check_id=cid, artifact_id=aid, kind=k, model_id=m.model_id, version=v,
                    date=_day(q_start, 10 + 20 * vi), explained_variance=ev,
                    mse=round((1 - ev) * 12.5, 5), cossim=round(0.5 + ev / 2, 4),
                    l0=round(rng.uniform(20, 80), 2), dead_fraction=round(rng.uniform(0, .3), 4),
                    decision_flip_rate=round(rng.uniform(0, 0.04), 4) if k != "probe" else None,
                    status=status))
                evidence.append(c.EvidenceRow("check", cid, f"fidelity {aid} on {v}",
                                              _sha("check", cid)))
        share = round(rng.choice([0.0, 0.1, 0.25, 0.6]), 3)
        did = f"chk-{_sha('drift', m.model_id)[:10]}"
        drift.append(c.DriftRow(
            check_id=did, kind="data_drift", model_id=m.model_id,
            version=m.deployed_versions[-1], window_start=_day(q_start, 0),
            window_end=period_end, features=len(_FEATURES), drifted_share=share,
            status="fail" if share >= 0.5 else ("warn" if share > 0 else "pass")))
        evidence.append(c.EvidenceRow("check", did, f"data drift {m.model_id}",
                                      _sha("check", did)))
        if cov < 1.0:
            code, title, sev = rng.choice(_FM)
            opened = rng.randint(0, 80)
            fm_rows.append(c.FailureModeRow(
                occurrence_id=f"fmo-{_sha(m.model_id, code)[:8]}", code=code, title=title,
                severity=sev, model_id=m.model_id, version=m.deployed_versions[-1],
                artifact_id=staleness[-1].artifact_id, opened=_day(q_start, opened),
                status=rng.choice(["open", "open", "accepted", "mitigated"]),
                age_days=q_days - opened, rationale="detected by nightly checks"))
        if rng.random() < 0.3:
            due = rng.randint(30, 120)
            findings.append(c.FindingRow(
                finding_id=f"F-{len(findings) + 1:04d}",
                title=f"Re-validate explanations of {m.model_id} after retraining",
                severity=rng.choice(["high", "medium", "low"]), model_id=m.model_id,
                owner=m.owner, due=_day(q_start, due), status="open",
                age_days=rng.randint(5, 120), overdue_days=max(0, q_days - due)))

    per_model_cov.sort(key=lambda r: (r.coverage if r.coverage is not None else -1, r.model_id))
    per_model_debt.sort(key=lambda r: (-r.weighted_debt, r.model_id))
    staleness.sort(key=lambda r: (r.state == "fresh", -(r.versions_behind or 0), r.artifact_id))
    changes.sort(key=lambda r: (r.date, r.model_id, r.event, r.artifact_id or ""))
    evidence.sort(key=lambda r: (r.kind, r.ref))

    per_tier, timeline = [], []
    for tier in (1, 2, 3):
        rows = [r for r in per_model_cov if r.tier == tier]
        dep = sum(r.deployed_version_days for r in rows)
        covd = sum(r.covered_version_days for r in rows)
        cov = round(covd / dep, 4) if dep else None
        per_tier.append(c.TierCoverage(tier=tier, models=len(rows), deployed_version_days=dep,
                                       covered_version_days=round(covd, 2), coverage=cov,
                                       coverage_prev=None if cov is None else
                                       round(min(1.0, cov + 0.05), 4)))
        vals, level = [], (cov or 0.0) + 0.1
        for d in range(q_days):
            if d in (30, 61):
                level -= 0.08
            vals.append(round(max(0.0, min(1.0, level + rng.uniform(-0.02, 0.02))), 4))
        timeline.append(c.TimelineSeries(label=f"Tier {tier}",
                                         dates=[_day(q_start, d) for d in range(q_days)],
                                         values=vals if rows else [None] * q_days))
    dep_all = sum(r.deployed_version_days for r in per_model_cov)
    cov_all = round(sum(r.covered_version_days for r in per_model_cov) / dep_all, 4)
    debt = sum(r.debt_slot_days for r in per_model_debt)
    wdebt = sum(r.weighted_debt for r in per_model_debt)
    trend = [c.TrendRow("2025Q4", round(min(1, cov_all + .12), 4), int(debt * .55), int(wdebt * .5)),
             c.TrendRow("2026Q1", round(min(1, cov_all + .08), 4), int(debt * .7), int(wdebt * .68)),
             c.TrendRow("2026Q2", round(min(1, cov_all + .05), 4), int(debt * .85), int(wdebt * .8)),
             c.TrendRow(quarter, cov_all, debt, wdebt)]

    open_fm: dict[tuple, int] = {}
    for r in fm_rows:
        if r.status == "open":
            open_fm[(r.code, r.title, r.severity)] = open_fm.get((r.code, r.title, r.severity), 0) + 1
    outcomes = []
    for kind_, rows in (("fidelity", fid), ("data_drift", drift)):
        outcomes.append(c.CheckOutcomeRow(kind_, *[sum(r.status == s for r in rows)
                                                   for s in c.STATUSES]))
    outcomes.append(c.CheckOutcomeRow("overhead", len(models), 0, 0, 0))

    quarters = ["2025Q4", "2026Q1", "2026Q2", quarter]
    psi_vals = []
    for i, _f in enumerate(_FEATURES):
        base = rng.uniform(0.01, 0.08)
        psi_vals.append([round(base * (1 + j * rng.uniform(0.2, 1.5 if i % 3 == 0 else 0.4)), 4)
                         if not (i == 5 and j == 0) else None for j in range(4)])

    att = [c.AttestationRow("C. Moreau", "Head of Model Validation", "approve_with_conditions",
                            "Approved on condition that FM-STALE occurrences on tier-1 models "
                            "are re-validated by 2026-11-30.", "2026-10-03"),
           c.AttestationRow("P. Iyer", "Chief Risk Officer", "approve", "", "2026-10-05")]

    policy = [c.PolicyRow(k, v) for k, v in [
        ("validity_days", "90"), ("fidelity.ev_warn", "0.8"), ("fidelity.ev_fail", "0.6"),
        ("fidelity.decay_warn", "0.1"), ("fidelity.decay_fail", "0.2"),
        ("fidelity.dead_fraction_warn", "0.2"), ("fidelity.flip_warn", "0.01"),
        ("fidelity.flip_fail", "0.05"), ("drift.psi_warn", "0.1"), ("drift.psi_fail", "0.25"),
        ("drift.share", "0.5"), ("overhead.budget", "0.10"),
        ("required.tier1", "{sae|transcoder|clt} + attribution_baseline"),
        ("required.tier2", "{sae|transcoder|clt}"), ("required.tier3", "{sae|transcoder|clt|probe}")]]

    detail = None
    drift_features: list[c.DriftFeatureRow] = []
    if kind == "model":
        m = models[0]
        detail = c.ModelDetail(
            model=m,
            versions=[c.VersionRow(v, _sha(m.model_id, v), f"2026-0{5 + i}-1{i}T09:00:00Z",
                                   None if i == 0 else m.deployed_versions[i - 1],
                                   _day(q_start, 2 + 20 * i),
                                   None if i == len(m.deployed_versions) - 1
                                   else _day(q_start, 22 + 20 * i))
                      for i, v in enumerate(m.deployed_versions)],
            lineage=[c.LineageRow(s.artifact_id, s.kind, s.bound_version, _day(q_start, 1),
                                  None, s.survival, _sha(s.artifact_id))
                     for s in staleness if s.model_id == m.model_id],
            densities=[])
        edges = [round(-6 + 0.5 * i, 2) for i in range(13)]
        for label, shift in (("reference 2026Q2", 0.0), ("current 2026Q3", 0.8)):
            counts = [int(400 * pow(2.718, -((e + 2.5 + shift) ** 2) / 1.5)) + 2
                      for e in edges[:-1]]
            detail.densities.append(c.DensityHistogram(
                artifact_id=staleness[0].artifact_id if staleness else "none", label=label,
                bin_edges=edges, counts=counts, dead=int(20 + 60 * shift)))
        did = next(d.check_id for d in drift if d.model_id == m.model_id)
        for i, fname in enumerate(_FEATURES):
            psi = psi_vals[i][-1]
            drift_features.append(c.DriftFeatureRow(
                check_id=did, feature=fname, psi=psi, ks=round(min(1, psi * 1.3), 4),
                ks_pvalue=round(max(0.0, 1 - psi * 4), 4), wasserstein=round(psi * 0.9, 4),
                js=round(psi * 0.5, 4),
                status="fail" if psi >= 0.25 else ("warn" if psi >= 0.1 else "pass")))

    cover = c.Cover(
        title="Interpretability audit pack" if kind == "portfolio" else "Model interpretability review",
        organisation="Northbridge Bank plc",
        scope="All models in inventory" if kind == "portfolio" else f"Model {models[0].model_id}",
        quarter=quarter, period_start=_day(q_start, 0), period_end=period_end,
        as_of="2026-10-01T00:00:00Z", report_id=f"RPT-{quarter}-{_sha(seed, n_models)[:8]}",
        tool_version="0.1.0", ledger_head_hash=_sha("ledger", seed, n_models),
        model_id=models[0].model_id if kind == "model" else None)
    ctx = c.ReportContext(
        schema_version=c.SCHEMA_VERSION, kind=kind, cover=cover,
        summary=c.ExecutiveSummary(
            coverage=cov_all, coverage_prev=trend[2].coverage, debt_slot_days=debt,
            debt_slot_days_prev=trend[2].debt_slot_days, weighted_debt=wdebt,
            weighted_debt_prev=trend[2].weighted_debt, models_in_scope=len(models),
            deployed_versions=sum(len(m.deployed_versions) for m in models),
            open_failure_modes=[c.CountRow(*k, v) for k, v in sorted(open_fm.items())],
            check_outcomes=outcomes, open_findings=len(findings),
            overdue_findings=sum(f.overdue_days > 0 for f in findings),
            signoff_state="approved with conditions" if attestations else "not signed"),
        inventory=models, changes=changes,
        coverage=c.CoverageSection(per_tier=per_tier, per_model=per_model_cov, timeline=timeline),
        debt=c.DebtSection(per_model=per_model_debt, staleness=staleness, trend=trend),
        fidelity=c.FidelitySection(checks=fid, clt_layers=[]),
        drift=c.DriftSection(checks=drift, features=drift_features,
                             psi_matrix=c.PsiMatrix(_FEATURES, quarters, psi_vals)),
        failure_modes=fm_rows, findings=findings, attestations=att[:attestations],
        appendix=c.Appendix(methodology=c.default_methodology(), policy_version="POL-0003",
                            policy=policy, evidence=evidence, crosswalk=c.default_crosswalk()),
        model_detail=detail)
    _v2_figures(ctx, psi_vals)
    derive_in_memory(ctx)
    return c.with_context_hash(ctx) if hashed else ctx


def _v2_figures(ctx, psi_vals) -> None:
    """Methodology v2 and issue-13 figures, sized like a real store's: a verdict per model, the
    reason of every non-pass check, an overhead row per artifact, every drift check's features."""
    s = ctx.summary
    s.models_covered = len(ctx.inventory)
    s.debt_outstanding, s.debt_outstanding_prev = s.debt_slot_days * 2, s.debt_slot_days
    s.weighted_debt_outstanding, s.weighted_debt_outstanding_prev = s.weighted_debt * 2, s.weighted_debt
    debt = {d.model_id: d for d in ctx.debt.per_model}
    for m in ctx.inventory:
        d = debt.get(m.model_id)
        verdict = "fit" if d is None or d.debt_slot_days == 0 else "not fit"
        s.verdicts.append(c.VerdictRow(model_id=m.model_id, tier=m.tier, verdict=verdict,
                                       reasons=["every required slot fresh"] if verdict == "fit" else
                                       [f"{m.model_id} {m.deployed_versions[-1]} sae: stale (never re-validated)"],
                                       debt_outstanding=(d.debt_slot_days * 2) if d else 0))
    counts = {}
    for r in s.verdicts:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    s.verdict_counts = [c.VerdictCount(v, n) for v, n in sorted(counts.items())]
    for f in ctx.fidelity.checks:
        if f.status != "pass":
            f.reasons = [f"{f.status}: explained variance {f.explained_variance:.4f} < 0.8"]
            ctx.check_reasons.append(c.CheckReasonRow(f.check_id, "fidelity", f.model_id, f.version, f.artifact_id,
                                                      f.date, f.status, f.reasons[0]))
    seen = set()
    for f in ctx.fidelity.checks:
        if f.artifact_id not in seen:
            seen.add(f.artifact_id)
            ratio = (len(seen) % 17) / 100
            ctx.compute.checks.append(c.OverheadRow(f"ovh-{f.check_id}", f.artifact_id, f.model_id, f.version, f.date,
                                                    ratio, 5.0, 5.0 * (1 + ratio), ratio * 0.8,
                                                    "fail" if ratio > 0.1 else "pass"))
    ctx.compute.budget, ctx.compute.warn_share = 0.1, 0.8
    if ctx.kind == "portfolio":
        for d in ctx.drift.checks:
            for i, fname in enumerate(_FEATURES):
                psi = psi_vals[i][-1]
                ctx.drift.features.append(c.DriftFeatureRow(
                    check_id=d.check_id, feature=fname, psi=psi, ks=round(min(1, psi * 1.3), 4),
                    ks_pvalue=round(max(0.0, 1 - psi * 4), 4), wasserstein=round(psi * 0.9, 4), js=round(psi * 0.5, 4),
                    status="fail" if psi >= 0.25 else ("warn" if psi >= 0.1 else "pass"), model_id=d.model_id))
    ctx.drift.psi_matrix_total = len(ctx.drift.psi_matrix.features)
    for d in ctx.drift.checks:
        d.reference, d.reference_window, d.current = "train.parquet", "2025-01-01 to 2025-12-31", "window.parquet"
