"""The report context: the documented contract between the store and the templates.

The database side (``build_context``) fills these dataclasses; the templates render them and
never query anything. Every field carries help text in ``metadata["doc"]``;
``python -m compliance.report.context --doc`` prints the reference (``docs/report-context.md``).

The context is plain data: strings, ints, floats (never NaN/inf), bools, ``None``, lists and
nested dataclasses. Dates are ISO strings (``YYYY-MM-DD``), times ISO UTC (``...Z``), ratios are
fractions in [0, 1] (templates format them as percentages). ``context_to_json`` gives the
canonical bytes; ``context_hash`` is SHA-256 over them with ``cover.context_hash`` blanked, so
the hash printed on the cover is the hash of everything else.

Schema version 2 (issue 22) makes the context page-sized: the long tables that grow with the
number of checks or artifacts -- ``fidelity.checks``, ``fidelity.downstream``,
``fidelity.clt_layers``, ``check_reasons``, ``appendix.evidence``, ``changes`` and
``debt.staleness`` -- carry their first 250 rows (``PAGE_ROWS``) in
display order and a ``*_total`` beside each; every row is in the export's ``tables/<name>.csv``
in the same order (the CSV's first rows are the context's, ``verify --pack`` checks both the
prefix and the count). The fidelity chart's data is ``fidelity.chart``. A version-1 context
carried every row in the context itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from compliance.errors import InputError

#: "2": the long tables are page-sized (the first ``PAGE_ROWS`` rows in display order, with a
#: ``*_total`` count beside each); the export's CSVs hold every row (``CAPPED_TABLES``).
SCHEMA_VERSION = "2"
#: Rows of each capped table the context carries: the rows a page shows.
PAGE_ROWS = 250
REPORT_KINDS = ("portfolio", "model")
STATUSES = ("pass", "warn", "fail", "error")


def _f(doc: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A dataclass field with help text."""
    kw: dict[str, Any] = {"metadata": {"doc": doc}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    if factory is not dataclasses.MISSING:
        kw["default_factory"] = factory
    return field(**kw)


# --------------------------------------------------------------------------- cover & summary
@dataclass
class Cover:
    """Cover page: what the pack is about and the hashes that pin it."""

    title: str = _f("Document title printed on the cover, e.g. 'Interpretability audit pack'.")
    organisation: str = _f("Organisation (bank) name printed on the cover.")
    scope: str = _f("Scope in words, e.g. 'All models in inventory' or 'Model credit-pd'.")
    quarter: str = _f("Reporting quarter, e.g. '2026Q3'.")
    period_start: str = _f("First day of the quarter (ISO date).")
    period_end: str = _f("Last day of the quarter (ISO date).")
    as_of: str = _f("As-of time (ISO 8601 UTC, e.g. '2026-10-01T00:00:00Z'); only rows recorded "
                    "at or before it were used. Also the PDF's creation date.")
    report_id: str = _f("Report run id, printed in every page header.")
    tool_version: str = _f("Version of the tool that built the context.")
    ledger_head_hash: str = _f("Hash of the last ledger entry recorded at or before as_of.")
    context_hash: str = _f("SHA-256 of the canonical context JSON with this field blank; "
                           "set by `with_context_hash`.", default="")
    model_id: Optional[str] = _f("Model id for a per-model review, else null.", default=None)


@dataclass
class CountRow:
    """A labelled count."""

    code: str = _f("Failure-mode code (e.g. FM-STALE) or other key.")
    title: str = _f("Human title of the code.")
    severity: str = _f("Severity: critical, high, medium or low.")
    count: int = _f("Number of open occurrences.")


@dataclass
class CheckOutcomeRow:
    """Check outcomes of one check kind in the quarter."""

    kind: str = _f("Check kind: fidelity, alignment, data_drift, activation_drift, overhead.")
    passed: int = _f("Checks with status pass.")
    warned: int = _f("Checks with status warn.")
    failed: int = _f("Checks with status fail.")
    errored: int = _f("Checks with status error (could not run).")
    inconclusive: int = _f("Budgeted checks whose intervals could not decide (DESIGN §9): not valid.",
                           default=0)


@dataclass
class VerdictCount:
    """Number of models with one verdict."""

    verdict: str = _f("fit, fit with conditions, not fit, not required or not deployed.")
    models: int = _f("Number of models.")


@dataclass
class VerdictRow:
    """The computed verdict of one model at as_of (DESIGN §4) beside the validator's rating."""

    model_id: str = _f("Model id.")
    tier: int = _f("Risk tier.")
    verdict: str = _f("Computed verdict: fit, fit with conditions, not fit, not required or "
                      "not deployed.")
    reasons: list[str] = _f("Reasons of the verdict, one line each.", factory=list)
    pending_slot_days: int = _f("Pending slot-days of the model in the quarter.", default=0)
    debt_outstanding: Optional[int] = _f("Debt outstanding of the model at as_of.",
                                         default=None)
    rating: Optional[str] = _f("The validator's rating (fit, fit with conditions, not fit) "
                               "recorded with the conclusion; null when none.", default=None)


@dataclass
class ExecutiveSummary:
    """Headline numbers of the quarter and their change from the previous quarter."""

    coverage: Optional[float] = _f("Portfolio explanation coverage (fraction of deployed "
                                   "version-days covered); null when nothing was deployed.")
    coverage_prev: Optional[float] = _f("Same for the previous quarter; null when unknown.")
    debt_slot_days: int = _f("Interpretability debt: slot-days not fresh in the quarter.")
    debt_slot_days_prev: Optional[int] = _f("Debt of the previous quarter; null when unknown.")
    weighted_debt: int = _f("Debt weighted by tier (tier 1: 3, tier 2: 2, tier 3: 1).")
    weighted_debt_prev: Optional[int] = _f("Weighted debt of the previous quarter.")
    models_in_scope: int = _f("Number of models in scope.")
    deployed_versions: int = _f("Number of versions deployed at some time in the quarter.")
    open_failure_modes: list[CountRow] = _f("Open failure-mode occurrences by code and "
                                            "severity at as_of.", factory=list)
    check_outcomes: list[CheckOutcomeRow] = _f("Checks finished in the quarter, by kind and "
                                               "status.", factory=list)
    open_findings: int = _f("MRM findings open at as_of.", default=0)
    overdue_findings: int = _f("Open findings past their due date at as_of.", default=0)
    signoff_state: str = _f("Sign-off state: 'not signed', 'approved', "
                            "'approved with conditions' or 'rejected'.", default="not signed")
    models_covered: int = _f("Models the coverage and debt headline figures aggregate: in-scope "
                             "models (deployed, with required artifact groups) — DESIGN §4.",
                             default=0)
    not_required: list[str] = _f("Deployed models whose tier requires no artifact: 'not "
                                 "required', never 100 %, listed apart from the headline.",
                                 factory=list)
    debt_outstanding: Optional[int] = _f("Debt outstanding at as_of (slot-days since each "
                                         "not-fresh slot was last fresh); null when unknown.",
                                         default=None)
    debt_outstanding_prev: Optional[int] = _f("Debt outstanding at the end of the previous "
                                              "quarter.", default=None)
    weighted_debt_outstanding: Optional[int] = _f("Debt outstanding, tier-weighted.",
                                                  default=None)
    weighted_debt_outstanding_prev: Optional[int] = _f("Weighted debt outstanding at the end "
                                                       "of the previous quarter.", default=None)
    pending_slot_days: int = _f("Slot-days pending: best evidence a warn no validator has "
                                "accepted (counted in debt).", default=0)
    verdict_counts: list[VerdictCount] = _f("Models per verdict at as_of.", factory=list)
    verdicts: list[VerdictRow] = _f("Per-model verdict at as_of with its reasons, not fit "
                                    "first.", factory=list)


# --------------------------------------------------------------------------- inventory & changes
@dataclass
class ModelRow:
    """One model of the inventory in scope."""

    model_id: str = _f("Model id (slug).")
    name: str = _f("Model name.")
    owner: str = _f("Accountable owner.")
    tier: int = _f("Risk tier, 1 = highest.")
    business_use: str = _f("Business use in words.")
    tags: list[str] = _f("Regulatory tags, e.g. sr11-7, eu-ai-act-high-risk.", factory=list)
    deployed_versions: list[str] = _f("Versions deployed at some time in the quarter.",
                                      factory=list)


@dataclass
class ChangeRow:
    """One change in the quarter."""

    date: str = _f("Effective date (ISO).")
    event: str = _f("version_trained, version_deployed, version_retired, artifact_registered, "
                    "artifact_status_changed, artifact_adapted or adaptation_failed.")
    model_id: str = _f("Model id.")
    version: Optional[str] = _f("Model version label, if any.", default=None)
    artifact_id: Optional[str] = _f("Artifact id, if any.", default=None)
    detail: str = _f("One-line description.", default="")


@dataclass
class AdaptationRow:
    """One adaptation of a stale artifact (DESIGN §9): parent → child, figures on held-out rows."""

    adaptation_id: str = _f("Adaptation record id.")
    date: str = _f("Date the adaptation finished (ISO).")
    model_id: str = _f("Model id.")
    parent_artifact_id: str = _f("The artifact adapted (its evidence is kept as it is).")
    parent_bound_version: str = _f("The parent's bound version.")
    version: str = _f("The version adapted to.")
    child_artifact_id: Optional[str] = _f("The registered adapted artifact; null when the adaptation failed.")
    status: str = _f("succeeded (child registered and validated on held-out rows) or failed (nothing registered).")
    ev_before: Optional[float] = _f("The parent's explained variance on the held-out rows.")
    ev_after: Optional[float] = _f("The adapted weights' explained variance on the same rows.")
    survival_share: Optional[float] = _f("Share of the parent's features that survive (matched cosine > "
                                         "threshold on decoder and encoder).")
    labels_carried: int = _f("Feature labels carried to the child (survivors only).", default=0)
    steps: int = _f("Optimiser steps taken.", default=0)
    seconds: Optional[float] = _f("Wall seconds of the fine-tune.", default=None)
    flops: Optional[float] = _f("Compute spent (≈ 3 × forward FLOPs per row × rows seen).", default=None)
    stop_reason: str = _f("steps, time or converged.", default="")
    seed: Optional[int] = _f("Seed of the split and minibatches.", default=None)
    check_id: Optional[str] = _f("The child's held-out fidelity check, when registered.", default=None)
    reason: str = _f("Why it failed (the first recorded reason), else empty.", default="")


# --------------------------------------------------------------------------- coverage
@dataclass
class TierCoverage:
    """Explanation coverage of one risk tier."""

    tier: int = _f("Risk tier.")
    models: int = _f("Models of the tier in scope.")
    deployed_version_days: float = _f("Deployed version-days (volume-weighted where recorded).")
    covered_version_days: float = _f("Covered version-days (same weighting).")
    coverage: Optional[float] = _f("covered / deployed; null when nothing was deployed.")
    coverage_prev: Optional[float] = _f("Previous quarter's coverage.", default=None)


@dataclass
class ModelCoverage:
    """Explanation coverage of one model."""

    model_id: str = _f("Model id.")
    tier: int = _f("Risk tier.")
    deployed_version_days: float = _f("Deployed version-days.")
    covered_version_days: float = _f("Covered version-days.")
    coverage: Optional[float] = _f("covered / deployed; null when nothing was deployed.")
    coverage_prev: Optional[float] = _f("Previous quarter's coverage.", default=None)


@dataclass
class TimelineSeries:
    """Daily coverage of one tier (or of one model in a per-model review)."""

    label: str = _f("Series label, e.g. 'Tier 1'.")
    dates: list[str] = _f("ISO dates, ascending.", factory=list)
    values: list[Optional[float]] = _f("Coverage on each date (fraction); null where nothing "
                                       "was deployed.", factory=list)


@dataclass
class CoverageSection:
    """Explanation coverage (DESIGN §4)."""

    per_tier: list[TierCoverage] = _f("Coverage per tier.", factory=list)
    per_model: list[ModelCoverage] = _f("Coverage per model, worst first.", factory=list)
    timeline: list[TimelineSeries] = _f("Daily coverage per tier.", factory=list)


# --------------------------------------------------------------------------- debt
@dataclass
class ModelDebt:
    """Slot-days of one model by state."""

    model_id: str = _f("Model id.")
    tier: int = _f("Risk tier.")
    fresh: int = _f("Fresh (covered) slot-days.")
    stale: int = _f("Stale slot-days.")
    broken: int = _f("Broken slot-days.")
    missing: int = _f("Missing slot-days.")
    debt_slot_days: int = _f("Debt incurred: pending + stale + broken + missing slot-days.")
    weighted_debt: int = _f("debt_slot_days × tier weight.")
    pending: int = _f("Pending slot-days (a warn no validator has accepted).", default=0)
    debt_outstanding: int = _f("Debt outstanding at as_of: Σ over slots not fresh of the days "
                               "since each was last fresh.", default=0)


@dataclass
class ArtifactStaleness:
    """Staleness of one artifact against the deployed version at as_of."""

    artifact_id: str = _f("Artifact id.")
    kind: str = _f("Artifact kind: sae, transcoder, clt, probe, attribution_baseline, "
                   "feature_labels.")
    model_id: str = _f("Model id.")
    bound_version: str = _f("Version the artifact was trained/calibrated on.")
    deployed_version: Optional[str] = _f("Version deployed at as_of; null if none.")
    versions_behind: Optional[int] = _f("Versions between bound and deployed version.")
    days_since_valid: Optional[int] = _f("Days since the last passing validation on the "
                                         "deployed version; null if never.")
    fidelity_decay: Optional[float] = _f("Baseline EV on the bound version minus latest EV on "
                                         "the deployed version; null if unknown.")
    survival: Optional[float] = _f("Share of features surviving into the replacement; null if "
                                   "not replaced.")
    state: str = _f("State of the artifact on the deployed version: fresh, pending, stale, "
                    "broken or missing.")


@dataclass
class TrendRow:
    """One quarter of the four-quarter trend."""

    quarter: str = _f("Quarter, e.g. 2026Q2.")
    coverage: Optional[float] = _f("Portfolio coverage.")
    debt_slot_days: int = _f("Debt incurred (slot-days).")
    weighted_debt: int = _f("Weighted debt incurred.")
    debt_outstanding: Optional[int] = _f("Debt outstanding at the quarter's end (or as_of).",
                                         default=None)


@dataclass
class DebtSection:
    """Interpretability debt (DESIGN §4)."""

    per_model: list[ModelDebt] = _f("Debt per model, largest weighted debt first.",
                                    factory=list)
    staleness: list[ArtifactStaleness] = _f("Per-artifact staleness, worst first: the first 250 rows "
                                            "(PAGE_ROWS; all in tables/debt_staleness.csv).",
                                            factory=list)
    trend: list[TrendRow] = _f("Last four quarters, oldest first (ends with this quarter).",
                               factory=list)
    staleness_total: int = _f("Number of per-artifact staleness rows.", default=0)


# --------------------------------------------------------------------------- fidelity & drift
@dataclass
class FidelityRow:
    """One fidelity check."""

    check_id: str = _f("Check id.")
    artifact_id: str = _f("Artifact id.")
    kind: str = _f("Artifact kind.")
    model_id: str = _f("Model id.")
    version: str = _f("Model version checked against.")
    date: str = _f("Date the check finished (ISO).")
    explained_variance: Optional[float] = _f("Explained variance (DESIGN §3).")
    mse: Optional[float] = _f("Mean squared reconstruction error (sum over dims).")
    cossim: Optional[float] = _f("Mean cosine similarity of x and x̂.")
    l0: Optional[float] = _f("Mean number of active features per row.")
    dead_fraction: Optional[float] = _f("Share of features never active.")
    decision_flip_rate: Optional[float] = _f("Share of decisions flipped by splicing; null "
                                             "without an adapter.")
    status: str = _f("pass, warn, fail or error.")
    dense_fraction: Optional[float] = _f("Share of features active on more than 10 % of rows.",
                                         default=None)
    kl: Optional[float] = _f("Mean KL(clean ‖ spliced) of the output distribution; null "
                             "without an adapter.", default=None)
    loss_recovered: Optional[float] = _f("(L_zero − L_spliced) / (L_zero − L_clean); null "
                                         "without labels.", default=None)
    auc: Optional[float] = _f("Probe AUC on current data (probes only).", default=None)
    protected: Optional[bool] = _f("Probe target is a protected attribute (a high AUC is then "
                                   "a concern, not a pass): a column with the `protected` role "
                                   "in the model's datasets or, when none registers roles, a "
                                   "protected characteristic by name (age, sex, ...); null for "
                                   "other artifacts.", default=None)
    baseline_gap: Optional[float] = _f("|score(baseline) − mean score| of an attribution "
                                       "baseline; null for other artifacts.", default=None)
    reasons: list[str] = _f("Recorded reasons of the status (empty on pass).", factory=list)


@dataclass
class CltLayerRow:
    """Per-layer fidelity of a cross-layer transcoder check."""

    check_id: str = _f("Check id.")
    layer: int = _f("Output layer index.")
    explained_variance: Optional[float] = _f("Explained variance of this layer.")
    mse: Optional[float] = _f("MSE of this layer.")
    l0: Optional[float] = _f("Mean active features encoded at this layer.")


@dataclass
class FidelitySeries:
    """One artifact's explained variance on its successive checks (the fidelity chart)."""

    artifact_id: str = _f("Artifact id.")
    versions: list[str] = _f("Version of each check, oldest first (by date, version, check id).",
                             factory=list)
    values: list[float] = _f("Explained variance of each check, same order.", factory=list)


@dataclass
class FidelitySection:
    """Fidelity results of the quarter."""

    checks: list[FidelityRow] = _f("Fidelity checks of the last four quarters, by model, artifact, "
                                   "date and check id: the first 250 rows (PAGE_ROWS) (every row is in the "
                                   "export's tables/fidelity_checks.csv, in the same order).",
                                   factory=list)
    clt_layers: list[CltLayerRow] = _f("Optional per-layer rows of CLT checks: the first 250 rows (PAGE_ROWS) "
                                       "(all in tables/fidelity_clt_layers.csv).", factory=list)
    checks_total: int = _f("Number of fidelity checks (rows of tables/fidelity_checks.csv).", default=0)
    downstream: list[FidelityRow] = _f("The fidelity checks with a downstream figure (KL, loss recovered, "
                                       "flip rate, probe AUC or baseline gap), same order: the first "
                                       "PAGE_ROWS rows (all in tables/fidelity_downstream.csv).", factory=list)
    downstream_total: int = _f("Number of fidelity checks with a downstream figure.", default=0)
    clt_layers_total: int = _f("Number of per-layer CLT rows.", default=0)
    chart: list[FidelitySeries] = _f("The fidelity chart: the artifacts with the lowest latest explained "
                                     "variance (at most 10), lowest first.", factory=list)
    chart_artifacts: int = _f("Artifacts with at least one explained variance (the chart shows the "
                              "lowest of them).", default=0)


@dataclass
class DriftRow:
    """One drift check."""

    check_id: str = _f("Check id.")
    kind: str = _f("data_drift or activation_drift.")
    model_id: str = _f("Model id.")
    version: str = _f("Model version.")
    window_start: str = _f("Current window start (ISO date).")
    window_end: str = _f("Current window end (ISO date).")
    features: int = _f("Features compared.")
    drifted_share: float = _f("Share of features with PSI at or above the fail threshold.")
    status: str = _f("pass, warn, fail or error.")
    reference: str = _f("Reference sample the check compared against (file name as recorded).",
                        default="")
    reference_window: str = _f("Window of the reference sample ('start to end'), or '' when "
                               "not registered.", default="")
    current: str = _f("Current sample (file name as recorded).", default="")
    reasons: list[str] = _f("Recorded reasons of the status.", factory=list)


@dataclass
class DriftFeatureRow:
    """Statistics of one feature in one drift check."""

    check_id: str = _f("Check id.")
    feature: str = _f("Feature name.")
    psi: Optional[float] = _f("Population stability index.")
    ks: Optional[float] = _f("KS statistic (numeric features).")
    ks_pvalue: Optional[float] = _f("KS two-sided p-value, or chi-square p-value for "
                                    "categorical features.")
    wasserstein: Optional[float] = _f("Wasserstein distance / reference std.")
    js: Optional[float] = _f("Jensen-Shannon distance.")
    status: str = _f("pass, warn or fail by PSI.")
    model_id: str = _f("Model id.", default="")
    role: str = _f("Column role: input (input drift) or target (label shift).",
                   default="input")


@dataclass
class PsiMatrix:
    """Features × quarters PSI matrix for the heat-map."""

    features: list[str] = _f("Row labels (features).", factory=list)
    quarters: list[str] = _f("Column labels (quarters, oldest first).", factory=list)
    values: list[list[Optional[float]]] = _f("values[i][j] = PSI of feature i in quarter j; "
                                             "null where not measured.", factory=list)


@dataclass
class DriftSection:
    """Drift results of the quarter."""

    checks: list[DriftRow] = _f("Drift checks.", factory=list)
    features: list[DriftFeatureRow] = _f("Per-feature input-drift rows of the quarter's "
                                         "data-drift checks (all of them; the PDF shows the "
                                         "first rows, the export CSV holds every row).",
                                         factory=list)
    label_shift: list[DriftFeatureRow] = _f("Target (label) columns: prior shift, reported "
                                            "apart from input drift.", factory=list)
    psi_matrix: PsiMatrix = _f("PSI per feature and quarter.", factory=PsiMatrix)
    psi_matrix_total: int = _f("Features with a PSI in the four quarters (the heat-map keeps "
                               "the highest; psi_matrix.features says how many).", default=0)


@dataclass
class OverheadRow:
    """One overhead check: latency with the artifact attached against the policy budget."""

    check_id: str = _f("Check id.")
    artifact_id: str = _f("Artifact id.")
    model_id: str = _f("Model id.")
    version: str = _f("Model version measured.")
    date: str = _f("Date the check finished (ISO).")
    overhead_ratio: Optional[float] = _f("(latency attached − latency base) / latency base.")
    latency_base_ms: Optional[float] = _f("Median latency of a forward without the artifact (ms).")
    latency_attached_ms: Optional[float] = _f("Median latency with the artifact attached (ms).")
    flops_ratio: Optional[float] = _f("Artifact FLOPs per row / model FLOPs per row.")
    status: str = _f("pass, warn, fail or error.")
    reasons: list[str] = _f("Recorded reasons of the status.", factory=list)


@dataclass
class ComputeBudgetSection:
    """Compute budget: the overhead of each artifact against the policy budget (DESIGN §3)."""

    budget: Optional[float] = _f("Policy overhead budget (fraction of base latency).",
                                 default=None)
    warn_share: Optional[float] = _f("Share of the budget at which a check warns.", default=None)
    checks: list[OverheadRow] = _f("Latest overhead check per artifact and version, largest "
                                   "overhead first.", factory=list)


@dataclass
class PlanRow:
    """One check kind of the monitoring plan in force for one deployed version, and how the plan was kept."""

    model_id: str = _f("Model id.")
    version: str = _f("Deployed version label.")
    plan: str = _f("'plan vN' (recorded by the bank) or 'tier default' (from the policy; misses not opened).")
    kind: str = _f("Check kind the plan requires.")
    cadence: str = _f("Cadence in words, e.g. 'after every retrain and at least every 30 days'.")
    alerted: str = _f("Who the plan alerts (e-mail addresses and webhook names), or '—'.")
    last_check: Optional[str] = _f("Date of the latest check of that kind on the version (ISO), if any.")
    next_due: Optional[str] = _f("Date the next check is due (ISO); null when nothing more is due.")
    missed: list[str] = _f("Due dates missed (each opened FM-MISSED under a recorded plan).", factory=list)
    state: str = _f("on time | due | overdue, at the as-of.", default="on time")


@dataclass
class GateRow:
    """One pre-promotion gate decision recorded in the quarter."""

    model_id: str = _f("Model id.")
    version: str = _f("Version label.")
    date: str = _f("Date of the decision (ISO).")
    decision: str = _f("pass | refuse.")
    actor: str = _f("Who asked for the decision.")
    reasons: list[str] = _f("Why it refused (empty on pass).", factory=list)


@dataclass
class MonitoringSection:
    """Monitoring plans and their adherence at the as-of, and the quarter's gate decisions (DESIGN §10)."""

    plans: list[PlanRow] = _f("Plan rows by model, version and check kind.", factory=list)
    gates: list[GateRow] = _f("Gate decisions of the quarter, by date.", factory=list)


@dataclass
class CheckReasonRow:
    """One recorded reason of a check that warned, failed or errored in the quarter."""

    check_id: str = _f("Check id.")
    kind: str = _f("Check kind.")
    model_id: str = _f("Model id.")
    version: str = _f("Model version ('—' when none).")
    artifact_id: Optional[str] = _f("Artifact id, if any.")
    date: str = _f("Date the check finished (ISO).")
    status: str = _f("warn, fail or error.")
    reason: str = _f("The reason as recorded with the check.")


# --------------------------------------------------------------------------- governance
@dataclass
class FailureModeRow:
    """One failure-mode occurrence."""

    occurrence_id: str = _f("Occurrence id.")
    code: str = _f("Failure-mode code, e.g. FM-STALE.")
    title: str = _f("Failure-mode title.")
    severity: str = _f("critical, high, medium or low.")
    model_id: str = _f("Model id.")
    version: Optional[str] = _f("Model version, if any.")
    artifact_id: Optional[str] = _f("Artifact id, if any.")
    opened: str = _f("Date opened (ISO).")
    status: str = _f("open, mitigated, accepted or closed (latest status at as_of).")
    age_days: int = _f("Days from opened to as_of (or to closing).")
    rationale: str = _f("Rationale of the latest status event.", default="")


@dataclass
class FindingRow:
    """One MRM finding."""

    finding_id: str = _f("Finding id.")
    title: str = _f("Title.")
    severity: str = _f("critical, high, medium or low.")
    model_id: str = _f("Model id.")
    owner: str = _f("Owner responsible for remediation.")
    due: str = _f("Due date (ISO).")
    status: str = _f("Latest status at as_of.")
    age_days: int = _f("Days since opened.")
    overdue_days: int = _f("Days past due (0 when not overdue or closed).")


@dataclass
class AttestationRow:
    """One sign-off on this report run."""

    reviewer: str = _f("Reviewer name.")
    role: str = _f("Reviewer role.")
    decision: str = _f("approve, approve_with_conditions or reject.")
    comment: str = _f("Comment / conditions.")
    date: str = _f("Date signed (ISO).")
    key_fingerprint: str = _f("SHA-256 fingerprint of the Ed25519 key that signed (report id, "
                              "context hash, decision, comment, time); empty when not signed with a key.",
                              default="")


@dataclass
class NarrativeRow:
    """One section of the validator's narrative (latest version at as_of)."""

    model_id: Optional[str] = _f("Model id, or null for the portfolio narrative.")
    section: str = _f("conclusion, limitations, conditions or controls (compensating controls).")
    text: str = _f("The text as written (Markdown; rendered with HTML escaped, a small subset: "
                   "paragraphs, '-' lists, **bold**, *italic*).")
    rating: Optional[str] = _f("With the conclusion: the validator's rating (fit, fit with "
                               "conditions, not fit); else null.", default=None)
    author: str = _f("Who wrote this version (the authenticated actor).", default="")
    date: str = _f("Date this version was recorded (ISO).", default="")
    version: int = _f("Version number of the section (1 = first).", default=1)


# --------------------------------------------------------------------------- appendix
@dataclass
class TextBlock:
    """A titled paragraph of methodology text."""

    title: str = _f("Heading.")
    text: str = _f("Plain text paragraph.")


@dataclass
class PolicyRow:
    """One policy setting in force."""

    key: str = _f("Policy key, e.g. validity_days.")
    value: str = _f("Value as printed.")


@dataclass
class EvidenceRow:
    """One piece of evidence and its hash."""

    kind: str = _f("check, dataset, artifact or model_version.")
    ref: str = _f("Id or path.")
    description: str = _f("What it is.")
    sha256: str = _f("SHA-256 (hex): of the file (artifact, dataset, weights) or, for a check, "
                     "of the canonical JSON of its input hashes.")
    ledger_seq: Optional[int] = _f("Sequence number of the ledger entry that recorded the row "
                                   "(the export carries that entry); null when none.",
                                   default=None)
    ledger_hash: str = _f("Hash of that ledger entry.", default="")


@dataclass
class DataQualityRow:
    """A stored record the figures leave out: unusable (data quality) or voided/superseded."""

    record: str = _f("Table and id, e.g. 'decision_volume 812'.")
    problem: str = _f("What is wrong with it, or the correction's reason.")
    handling: str = _f("What the figures did: excluded, ignored a column, default used, voided, superseded.")


@dataclass
class CrosswalkRow:
    """Map of a regulatory requirement to pack sections."""

    framework: str = _f("OCC 2026-13 / SR 26-2, PRA SS1/23 or EU AI Act.")
    reference: str = _f("Clause or topic, e.g. 'Annex IV(2)'.")
    requirement: str = _f("Requirement in short.")
    sections: str = _f("Pack sections that evidence it, or why it is not covered.")
    covered: bool = _f("False when the pack holds no evidence for it (then `sections` says "
                       "so).", default=True)


@dataclass
class Appendix:
    """Methodology, policy in force, evidence index and regulatory crosswalk."""

    methodology: list[TextBlock] = _f("Methodology paragraphs.", factory=list)
    policy_version: str = _f("Id/version of the policy in force at as_of.", default="")
    policy: list[PolicyRow] = _f("Policy settings in force.", factory=list)
    evidence: list[EvidenceRow] = _f("Evidence index: every check, dataset, artifact and model "
                                     "version the pack relies on (earlier checks behind the "
                                     "register and baselines included), sorted by kind and ref: "
                                     "the first 250 rows (PAGE_ROWS) (all in tables/appendix_evidence.csv).",
                                     factory=list)
    evidence_total: int = _f("Number of evidence rows (rows of tables/appendix_evidence.csv).",
                             default=0)
    ledger_from_seq: int = _f("First ledger entry of the quarter: the export holds every entry "
                              "from it to the head, plus every older entry the evidence index "
                              "cites.", default=0)
    data_quality: list[DataQualityRow] = _f("Records the figures leave out, each named (data quality, corrections).",
                                            factory=list)
    crosswalk: list[CrosswalkRow] = _f("Regulatory crosswalk (compliance.report.crosswalk).",
                                       factory=list)
    not_covered: list[TextBlock] = _f("What the pack does not cover.", factory=list)


# --------------------------------------------------------------------------- outcomes and fairness
@dataclass
class PerformanceRow:
    """The latest performance check (outcomes analysis) of one model version in the quarter."""

    check_id: str = _f("Check id.")
    model_id: str = _f("Model id.")
    version: str = _f("Version label.")
    date: str = _f("Date the check finished (ISO).")
    status: str = _f("pass | warn | fail.")
    n_matured: int = _f("Rows judged: outcome known and matured by the check time.")
    n_not_matured: int = _f("Rows excluded because their outcome had not matured (label lag).")
    n_unlabelled: int = _f("Rows excluded because no outcome is known.")
    auc: Optional[float] = _f("AUC on the matured rows.")
    auc_lower: Optional[float] = _f("Lower end of the 95 % DeLong interval of the AUC.")
    auc_upper: Optional[float] = _f("Upper end of the 95 % DeLong interval of the AUC.")
    gini: Optional[float] = _f("Gini = 2·AUC − 1.")
    ks: Optional[float] = _f("Kolmogorov–Smirnov statistic between the score distributions of events and non-events.")
    brier: Optional[float] = _f("Brier score; null when the scores are not probabilities.")
    log_loss: Optional[float] = _f("Log loss; null when the scores are not probabilities.")
    calibration_error: Optional[float] = _f("Weighted mean |observed − predicted| over the calibration bins.")
    hosmer_lemeshow_pvalue: Optional[float] = _f("p-value of the Hosmer–Lemeshow statistic (reported, not judged).")
    threshold: Optional[float] = _f("Decision threshold: rows with score >= it are flagged (declined / alerted).")
    approval_rate: Optional[float] = _f("Share of judged rows not flagged.")
    precision: Optional[float] = _f("Precision of the flag at the threshold.")
    recall: Optional[float] = _f("Recall of the flag at the threshold.")
    baseline_auc: Optional[float] = _f("Development AUC the check back-tests against; null when none was recorded.")
    auc_drop: Optional[float] = _f("Development AUC − current AUC.")
    score_psi: Optional[float] = _f("PSI of the score against the development sample; null without one.")
    calibration_predicted: list[float] = _f("Mean predicted probability per calibration bin.", factory=list)
    calibration_observed: list[float] = _f("Observed event rate per calibration bin (same bins).", factory=list)
    roc_fpr: list[float] = _f("False positive rates of the ROC curve (thinned to ~100 points).", factory=list)
    roc_tpr: list[float] = _f("True positive rates of the ROC curve (same points).", factory=list)
    reasons: list[str] = _f("Why the check warned or failed.", factory=list)


@dataclass
class OutcomesSection:
    """Outcomes and performance: empty when no performance check finished in the quarter (not assessed)."""

    checks: list[PerformanceRow] = _f("Latest performance check per model version, by model and version.",
                                      factory=list)


@dataclass
class FairnessCheckRow:
    """The latest fairness check of one model version in the quarter."""

    check_id: str = _f("Check id.")
    model_id: str = _f("Model id.")
    version: str = _f("Version label.")
    date: str = _f("Date the check finished (ISO).")
    status: str = _f("pass | warn | fail (the worst judged group).")
    threshold: Optional[float] = _f("Decision threshold the approval rates are taken at.")
    n_rows: int = _f("Rows (decisions) in the data.")
    n_matured: int = _f("Rows whose outcome had matured (used for the outcome-based differences).")
    attributes: list[str] = _f("Protected attributes examined.", factory=list)
    flags: list[str] = _f("Failure-mode codes the check raised (FM-PROTECTED on a fail).", factory=list)
    reasons: list[str] = _f("Why the check warned or failed; groups too small to judge.", factory=list)


@dataclass
class FairnessGroupRow:
    """One group of one protected attribute in a fairness check."""

    check_id: str = _f("Check id.")
    model_id: str = _f("Model id.")
    version: str = _f("Version label.")
    attribute: str = _f("Protected attribute (column).")
    group: str = _f("Group value; '(missing)' for rows without one.")
    n: int = _f("Rows in the group.")
    approval_rate: Optional[float] = _f("Share of the group approved (not flagged).")
    air: Optional[float] = _f("Adverse impact ratio against the reference group; null when not judged.")
    air_lower: Optional[float] = _f("Lower end of the 95 % interval of the AIR.")
    air_upper: Optional[float] = _f("Upper end of the 95 % interval of the AIR.")
    eod: Optional[float] = _f("Equal-opportunity difference (approval among non-events) against the reference.")
    aod: Optional[float] = _f("Average-odds difference against the reference.")
    calibration_gap: Optional[float] = _f("Observed − predicted event rate in the group (matured rows).")
    reference: bool = _f("Whether this is the reference (most approved judged) group.", default=False)
    status: str = _f("pass | warn | fail | too_small (reported, not judged).", default="pass")
    calibration_gap_diff: Optional[float] = _f("The group's (observed − predicted) minus the reference group's: "
                                               "what the calibration rule judges.", default=None)


@dataclass
class FairnessSection:
    """Fairness: empty when no fairness check finished in the quarter (not assessed)."""

    checks: list[FairnessCheckRow] = _f("Latest fairness check per model version.", factory=list)
    groups: list[FairnessGroupRow] = _f("Groups of those checks, by check, attribute and group.", factory=list)


# --------------------------------------------------------------------------- per-model review
@dataclass
class VersionRow:
    """One version of the reviewed model."""

    version: str = _f("Version label.")
    sha256: str = _f("SHA-256 of the weights file.")
    trained_at: str = _f("Training time (ISO).")
    parent: Optional[str] = _f("Parent version, if any.")
    deployed_from: Optional[str] = _f("First deployment date, if ever deployed.")
    deployed_to: Optional[str] = _f("Retirement date; null while deployed.")


@dataclass
class LineageRow:
    """One step of an artifact's lineage."""

    artifact_id: str = _f("Artifact id.")
    kind: str = _f("Artifact kind.")
    bound_version: str = _f("Bound version.")
    registered: str = _f("Registration date (ISO).")
    replaces: Optional[str] = _f("Artifact it replaces, if any.")
    survival: Optional[float] = _f("Feature survival from the replaced artifact.")
    sha256: str = _f("SHA-256 of the artifact file.")
    adapted_from: Optional[str] = _f("The parent artifact it was adapted from (DESIGN §9), if any.",
                                     default=None)


@dataclass
class DensityHistogram:
    """Binned feature densities of one artifact on one sample."""

    artifact_id: str = _f("Artifact id.")
    label: str = _f("Sample label, e.g. 'reference 2026Q2' or 'current 2026Q3'.")
    bin_edges: list[float] = _f("Bin edges of log10(density), len = len(counts) + 1.",
                                factory=list)
    counts: list[int] = _f("Features per bin.", factory=list)
    dead: int = _f("Features with density 0 (not in the bins).", default=0)


@dataclass
class ModelDetail:
    """Extra detail of a per-model review (`--model M`)."""

    model: ModelRow = _f("The reviewed model.")
    versions: list[VersionRow] = _f("All versions, oldest first.", factory=list)
    lineage: list[LineageRow] = _f("Artifact lineage, oldest first.", factory=list)
    densities: list[DensityHistogram] = _f("Feature-density histograms.", factory=list)


# --------------------------------------------------------------------------- the context
@dataclass
class ReportContext:
    """Everything a pack shows. Built by the store side, rendered by the templates."""

    schema_version: str = _f("Context schema version.")
    kind: str = _f("'portfolio' or 'model' (per-model review).")
    cover: Cover = _f("Cover page.")
    summary: ExecutiveSummary = _f("Executive summary.")
    inventory: list[ModelRow] = _f("Models in scope.", factory=list)
    changes: list[ChangeRow] = _f("Change log of the quarter, by date: the first 250 rows (PAGE_ROWS; "
                                  "all in tables/changes.csv).", factory=list)
    changes_total: int = _f("Number of change-log rows.", default=0)
    adaptations: list[AdaptationRow] = _f("Adaptations of stale artifacts finished in the quarter "
                                          "(succeeded and failed), by date.", factory=list)
    coverage: CoverageSection = _f("Explanation coverage.", factory=CoverageSection)
    debt: DebtSection = _f("Interpretability debt.", factory=DebtSection)
    fidelity: FidelitySection = _f("Fidelity results.", factory=FidelitySection)
    drift: DriftSection = _f("Drift results.", factory=DriftSection)
    compute: ComputeBudgetSection = _f("Compute budget (overhead per artifact).",
                                       factory=ComputeBudgetSection)
    check_reasons: list[CheckReasonRow] = _f("Every recorded reason of every check of the "
                                             "quarter that warned, failed or errored, by check "
                                             "time and id: the first 250 rows (PAGE_ROWS) (all in "
                                             "tables/check_reasons.csv).", factory=list)
    check_reasons_total: int = _f("Number of check reasons (rows of tables/check_reasons.csv).",
                                  default=0)
    failure_modes: list[FailureModeRow] = _f("Failure-mode register.", factory=list)
    findings: list[FindingRow] = _f("Findings and exceptions.", factory=list)
    attestations: list[AttestationRow] = _f("Sign-offs; empty → blank signature block.",
                                            factory=list)
    narrative: list[NarrativeRow] = _f("The validator's conclusion, limitations, conditions "
                                       "and compensating controls (portfolio first, then per "
                                       "model); empty → the chapter says none was written.",
                                       factory=list)
    appendix: Appendix = _f("Appendix.", factory=Appendix)
    outcomes: OutcomesSection = _f("Outcomes and performance (performance checks).", factory=OutcomesSection)
    fairness: FairnessSection = _f("Fairness (fairness checks).", factory=FairnessSection)
    monitoring: MonitoringSection = _f("Monitoring plans, their adherence and gate decisions.",
                                       factory=MonitoringSection)
    model_detail: Optional[ModelDetail] = _f("Per-model detail; null in a portfolio pack.",
                                             default=None)


# --------------------------------------------------------------------------- serialisation
def _check_plain(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"report context: {path} is {value!r}; NaN/inf are not allowed")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(v, f"{path}[{i}]")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(tp: type) -> dict[str, Any]:
    if tp not in _HINTS:
        _HINTS[tp] = typing.get_type_hints(tp)
    return _HINTS[tp]


def _to_plain(tp: Any, value: Any, path: str) -> Any:
    """Type-checked conversion to JSON data; ints in float fields become floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"report context: {path} should be a list, "
                             f"got {type(value).__name__}")
        (arg,) = typing.get_args(tp)
        return [_to_plain(arg, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            raise InputError(f"report context: {path} should be {tp.__name__}, "
                             f"got {type(value).__name__}")
        hints = _hints(tp)
        return {f.name: _to_plain(hints[f.name], getattr(value, f.name), f"{path}.{f.name}")
                for f in dataclasses.fields(tp)}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"report context: {path} should be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise InputError(f"report context: {path} is {value!r}; NaN/inf are not allowed")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"report context: {path} should be an integer, got {value!r}")
        return int(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"report context: {path} should be a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"report context: {path} should be true/false, got {value!r}")
        return value
    raise InputError(f"report context: {path} has an unsupported type {tp!r}")


class _Slow(Exception):
    """The fast conversion met a value it does not take as is: convert with ``_to_plain``."""


_FAST: dict[Any, Any] = {}


def _fast(tp: Any):
    """A converter for ``tp`` compiled once (no type inspection per value). It returns exactly
    what ``_to_plain`` returns for well-typed values and raises ``_Slow`` on anything else, so
    the slow path produces the same value or names the bad field."""
    conv = _FAST.get(tp)
    if conv is not None:
        return conv
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _fast([a for a in typing.get_args(tp) if a is not type(None)][0])

        def conv(v):
            return None if v is None else inner(v)
    elif origin is list:
        (arg,) = typing.get_args(tp)
        if arg in (str, int, bool):
            def conv(v, arg=arg):
                if type(v) is not list or any(type(x) is not arg for x in v):
                    raise _Slow
                return list(v)
        else:
            item = _fast(arg)

            def conv(v):
                if type(v) is not list:
                    raise _Slow
                return [item(x) for x in v]
    elif dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        convs = [(n, _fast(hints[n])) for n in names]

        def conv(v):
            if type(v) is not tp:
                raise _Slow
            return {n: c(getattr(v, n)) for n, c in convs}
    elif tp is float:
        isfinite = math.isfinite

        def conv(v):
            t = type(v)
            if t is float:
                if not isfinite(v):
                    raise _Slow
                return v
            if t is int:
                return float(v)
            raise _Slow
    elif tp in (int, str, bool):
        def conv(v, tp=tp):
            if type(v) is not tp:
                raise _Slow
            return v
    else:
        def conv(v):
            raise _Slow
    _FAST[tp] = conv
    return conv


def context_to_dict(ctx: ReportContext) -> dict:
    """The context as plain dicts/lists (what the JSON holds), type-checked.

    Raises ``InputError`` naming the first field of the wrong type, NaN or infinity.
    """
    if not isinstance(ctx, ReportContext):
        raise InputError(f"expected a ReportContext, got {type(ctx).__name__}")
    try:
        return _fast(ReportContext)(ctx)
    except _Slow:
        return _to_plain(ReportContext, ctx, "$")


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, UTF-8, no insignificant whitespace, NaN forbidden."""
    try:
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        _check_plain(obj, "$")  # names the NaN/inf
        raise
    return text.encode("utf-8")


def context_to_json(ctx: ReportContext) -> bytes:
    """Canonical JSON bytes of the whole context (including ``cover.context_hash``)."""
    _validate_shapes(ctx)
    return canonical_json(context_to_dict(ctx))


def context_hash(ctx: ReportContext) -> str:
    """SHA-256 (hex) of the canonical JSON of the context with ``cover.context_hash`` = '' and the
    sign-off left out (``attestations`` empty, ``summary.signoff_state`` blank): the hash names the
    evidence a sign-off approves, so signing never changes it (DESIGN §7)."""
    blank = dataclasses.replace(ctx, cover=dataclasses.replace(ctx.cover, context_hash=""), attestations=[],
                                summary=dataclasses.replace(ctx.summary, signoff_state=""))
    return hashlib.sha256(context_to_json(blank)).hexdigest()


def with_context_hash(ctx: ReportContext) -> ReportContext:
    """A copy of ``ctx`` whose cover carries its own context hash."""
    return hashed_context(ctx)[0]


def hashed_context(ctx: ReportContext, bind=None) -> tuple[ReportContext, bytes]:
    """``with_context_hash`` and the context's canonical JSON, from ONE conversion to plain data
    (the costly step on a large estate): the hash is taken over the JSON with the hash field and
    the sign-off blank (as :func:`context_hash`), then the same plain data is written again with
    the hash in it. ``bind(ctx) -> ctx``, given the hashed context, may attach the sign-off
    recorded on that hash (attestations and ``summary.signoff_state``): it is written into the
    JSON without converting the rest again."""
    _validate_shapes(ctx)
    plain = context_to_dict(ctx)
    signoff = plain["attestations"], plain["summary"]["signoff_state"]
    plain["cover"]["context_hash"], plain["attestations"], plain["summary"]["signoff_state"] = "", [], ""
    digest = hashlib.sha256(canonical_json(plain)).hexdigest()
    plain["cover"]["context_hash"] = digest
    out = dataclasses.replace(ctx, cover=dataclasses.replace(ctx.cover, context_hash=digest))
    if bind is not None:
        out = bind(out)
        signoff = [dataclasses.asdict(a) for a in out.attestations], out.summary.signoff_state
    plain["attestations"], plain["summary"]["signoff_state"] = signoff
    return out, canonical_json(plain)


def json_context_hash(data: bytes) -> str:
    """The context hash recomputed from context JSON bytes (as found in a pack)."""
    try:
        obj = json.loads(data)
        obj["cover"]["context_hash"] = ""
        obj["attestations"] = []
        obj["summary"]["signoff_state"] = ""
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"context JSON is malformed: {exc}") from exc
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def validate_context(ctx: ReportContext) -> None:
    """Raise ``InputError`` when the context breaks the contract (types, NaN, shapes, kind)."""
    _validate_shapes(ctx)
    context_to_dict(ctx)


def _validate_shapes(ctx: ReportContext) -> None:
    if not isinstance(ctx, ReportContext):
        raise InputError(f"expected a ReportContext, got {type(ctx).__name__}")
    if ctx.kind not in REPORT_KINDS:
        raise InputError(f"report context: kind must be one of {REPORT_KINDS}, got {ctx.kind!r}")
    if ctx.kind == "model" and ctx.model_detail is None:
        raise InputError("report context: a per-model review needs model_detail")
    m = ctx.drift.psi_matrix
    if len(m.values) != len(m.features) or any(len(r) != len(m.quarters) for r in m.values):
        raise InputError("report context: drift.psi_matrix shape does not match its labels")
    for s in ctx.coverage.timeline:
        if len(s.dates) != len(s.values):
            raise InputError(f"report context: timeline {s.label!r} has "
                             f"{len(s.dates)} dates but {len(s.values)} values")
    for h in (ctx.model_detail.densities if ctx.model_detail else []):
        if len(h.bin_edges) != len(h.counts) + 1:
            raise InputError(f"report context: density histogram of {h.artifact_id!r} needs "
                             "len(bin_edges) == len(counts) + 1")


def _from_obj(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _from_obj(args[0], value, path)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"context JSON: {path} should be a list")
        (arg,) = typing.get_args(tp)
        return [_from_obj(arg, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise InputError(f"context JSON: {path} should be an object")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise InputError(f"context JSON: {path} has unknown fields {sorted(unknown)}")
        kwargs = {k: _from_obj(hints[k], v, f"{path}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise InputError(f"context JSON: {path}: {exc}") from exc
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and not isinstance(value, tp):
        raise InputError(f"context JSON: {path} should be {tp.__name__}, got {value!r}")
    return value


def context_from_json(data: bytes) -> ReportContext:
    """Parse context JSON (e.g. from a pack) back into a ``ReportContext``."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise InputError(f"context JSON is not valid JSON: {exc}") from exc
    return _from_obj(ReportContext, obj, "$")


# --------------------------------------------------------------------------- documentation
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " | null"
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def all_dataclasses() -> list[type]:
    """Every dataclass of the contract, ReportContext first, in a stable (walk) order."""
    seen: list[type] = []

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            walk(arg)
        if dataclasses.is_dataclass(tp) and tp not in seen:
            seen.append(tp)
            hints = typing.get_type_hints(tp)
            for f in dataclasses.fields(tp):
                walk(hints[f.name])

    walk(ReportContext)
    return seen


def context_doc() -> str:
    """Markdown reference of the context (the content of docs/report-context.md)."""
    lines = [
        "# Report context reference",
        "",
        "Generated by `python -m compliance.report.context --doc`; do not edit by hand.",
        "",
        (__doc__ or "").strip(),
        "",
    ]
    for tp in all_dataclasses():
        lines += [f"## `{tp.__name__}`", "", (tp.__doc__ or "").strip(), "",
                  "| field | type | meaning |", "|---|---|---|"]
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            doc = f.metadata.get("doc", "").replace("|", "\\|")
            lines.append(f"| `{f.name}` | `{_type_name(hints[f.name])}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- defaults
def default_crosswalk(kinds=()) -> list[CrosswalkRow]:
    """The regulatory crosswalk of a pack whose checks are of ``kinds`` (one source:
    :mod:`compliance.report.crosswalk`, which also generates docs/regulatory-crosswalk.md)."""
    from compliance.report.crosswalk import crosswalk

    return [CrosswalkRow(fw, ref, req, where, ok) for fw, ref, req, where, ok in crosswalk(kinds)]


def default_not_covered(kinds=()) -> list[TextBlock]:
    """What a pack whose checks are of ``kinds`` does not cover."""
    from compliance.report.crosswalk import not_covered

    return [TextBlock(t, x) for t, x in not_covered(kinds)]


def default_methodology() -> list[TextBlock]:
    """Methodology paragraphs (DESIGN §3–§4) for the appendix."""
    t = TextBlock
    return [
        t("Validity", "An artifact is valid for a model version on a day when its latest "
          "fidelity check against that version, finished on or before the day, has status "
          "pass, or warn accepted by a validator (when the policy says warns need acceptance), "
          "and finished no more than validity_days before it. Binding an "
          "artifact to a version proves nothing without a passing check."),
        t("Explanation coverage", "A deployed version-day is covered when every artifact "
          "group the policy requires for the model's risk tier has an artifact valid for the "
          "version on that day. Coverage is covered version-days over deployed version-days, "
          "weighted by decision volume where volumes are recorded."),
        t("Interpretability debt", "Each (model, required group, deployed day) slot is fresh "
          "(covered), pending (best evidence a warn no validator accepted), broken (latest check "
          "on the deployed version failed or errored), stale (an artifact exists but none is "
          "valid for the deployed version) or missing (none registered). Debt incurred counts "
          "slot-days that are not fresh; debt outstanding sums, over the slots not fresh at a "
          "time, the days since each was last fresh. Weighted figures multiply by the tier "
          "weight of the policy. A model whose tier requires no artifact is not required: "
          "listed apart, never counted as covered."),
        t("Fidelity", "Reconstruction metrics follow SAELens 6.54: mse (sum over dimensions, "
          "mean over rows), explained variance pooled over rows, mean cosine similarity, l0, "
          "dead and dense feature fractions; transcoders reconstruct the MLP output, CLTs are "
          "measured per output layer and pooled. With a model adapter, the reconstruction is "
          "spliced into the forward pass to measure KL divergence and decision flip rate."),
        t("Drift", "Numeric features: PSI on ten reference quantile bins (empty shares "
          "1e-4), two-sided KS, Wasserstein distance over the reference standard deviation, "
          "Jensen-Shannon distance; categorical features: PSI over categories and a "
          "chi-square test. PSI below 0.1 passes, below 0.25 warns, otherwise fails (policy). A "
          "dataset fails when a key driver fails or the share of failed inputs reaches "
          "drift.share_fail; target columns are reported as label shift, not input drift."),
        t("Reproducibility", "Every write is a hash-chained ledger entry. The pack uses only "
          "rows recorded at or before the as-of time; the context hash and ledger head hash "
          "on the cover pin the exact evidence, and the same store, quarter, as-of and tool "
          "version give a byte-identical PDF."),
    ]


def _main(argv: list[str]) -> int:
    if argv == ["--doc"]:
        sys.stdout.write(context_doc() + "\n")
        return 0
    sys.stderr.write("usage: python -m compliance.report.context --doc\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))


# --------------------------------------------------------------------------- tables (CSV export)
def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join("" if v is None else str(v) for v in value)
    return value


def _rows_of(items: list) -> list[dict]:
    if not items:
        return []
    names = [f.name for f in dataclasses.fields(items[0])]
    # rows hold scalars and lists of scalars (read as asdict would, without its deep copy)
    return [{k: _cell(v) if not dataclasses.is_dataclass(v) else dataclasses.asdict(v)
             for k, v in ((n, getattr(it, n)) for n in names)} for it in items]


def _is_row_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0])


def _optional_inner(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def context_tables(ctx: ReportContext) -> dict[str, tuple[list[str], list[dict]]]:
    """Every table of the context as ``name -> (columns, rows of scalars)`` (the CSV files).

    A list of rows at ``a.b`` is table ``a_b``; the scalar fields of a section (cover, summary,
    appendix...) form a one-row table named after it; the timeline, the PSI matrix and the
    density histograms are given in long format. Lists inside a row (tags, versions) are
    joined with ';'. Empty tables keep their columns. Names are sorted.
    """
    tables: dict[str, tuple[list[str], list[dict]]] = {}
    special = {
        TimelineSeries: (["label", "date", "value"],
                         lambda v: [{"label": s.label, "date": d, "value": x}
                                    for s in v for d, x in zip(s.dates, s.values)]),
        DensityHistogram: (["artifact_id", "label", "bin_lo", "bin_hi", "count", "dead"],
                           lambda v: [{"artifact_id": h.artifact_id, "label": h.label,
                                       "bin_lo": lo, "bin_hi": hi, "count": n, "dead": h.dead}
                                      for h in v for lo, hi, n in
                                      zip(h.bin_edges, h.bin_edges[1:], h.counts)]),
    }

    def walk(obj: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(obj))
        scalar_cols, scalar_row = [], {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}{f.name}"
            tp = _optional_inner(hints[f.name])
            if _is_row_list(tp):
                (arg,) = typing.get_args(tp)
                if arg in special:
                    cols, fn = special[arg]
                    tables[name] = (cols, fn(value))
                else:
                    tables[name] = ([g.name for g in dataclasses.fields(arg)], _rows_of(value))
            elif tp is PsiMatrix:
                tables[name] = (["feature", "quarter", "psi"],
                                [{"feature": feat, "quarter": q, "psi": v}
                                 for feat, row in zip(value.features, value.values)
                                 for q, v in zip(value.quarters, row)])
            elif dataclasses.is_dataclass(tp):
                if value is not None:
                    walk(value, f"{name}_")
            else:
                scalar_cols.append(f.name)
                scalar_row[f.name] = _cell(value)
        if scalar_cols and prefix:
            tables[prefix[:-1]] = (scalar_cols, [scalar_row])
        elif scalar_cols:
            tables["report"] = (scalar_cols, [scalar_row])

    walk(ctx, "")
    return dict(sorted(tables.items()))
