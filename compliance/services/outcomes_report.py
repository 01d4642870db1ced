"""The pack's "Outcomes and performance" and "Fairness" chapters from the quarter's checks.

The latest performance / fairness check of each (model, version) that finished in the quarter
(and was recorded by the as-of) is shown; none at all leaves the section empty, which the
templates print as "not assessed" — absence of evidence is never read as a pass.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from compliance.report import context as C
from compliance.store.models import Check


def _f(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _d(c: Check) -> str:
    return c.finished_at.date().isoformat()


def _latest(checks: Iterable[Check], kind: str) -> list[Check]:
    last: dict[tuple[str, int | None], Check] = {}
    for c in sorted((c for c in checks if c.kind == kind and c.status != "error"), key=lambda c: (c.finished_at, c.id)):
        last[(c.model_id, c.version_id)] = c
    return list(last.values())


def outcome_sections(checks: Iterable[Check], label: dict[int, str]) -> tuple[C.OutcomesSection, C.FairnessSection]:
    checks = list(checks)
    perf = []
    for c in _latest(checks, "performance"):
        m = c.metrics or {}
        cal = m.get("calibration") or []
        perf.append(C.PerformanceRow(
            check_id=str(c.id), model_id=c.model_id, version=label.get(c.version_id, "?"), date=_d(c), status=c.status,
            n_matured=int(m.get("n_matured") or 0), n_not_matured=int(m.get("n_not_matured") or 0),
            n_unlabelled=int(m.get("n_unlabelled") or 0), auc=_f(m.get("auc")), auc_lower=_f(m.get("auc_lower")),
            auc_upper=_f(m.get("auc_upper")), gini=_f(m.get("gini")), ks=_f(m.get("ks")), brier=_f(m.get("brier")),
            log_loss=_f(m.get("log_loss")), calibration_error=_f(m.get("calibration_error")),
            hosmer_lemeshow_pvalue=_f(m.get("hosmer_lemeshow_pvalue")), threshold=_f(m.get("threshold")),
            approval_rate=_f(m.get("approval_rate")), precision=_f(m.get("precision")), recall=_f(m.get("recall")),
            baseline_auc=_f(m.get("baseline_auc")), auc_drop=_f(m.get("auc_drop")), score_psi=_f(m.get("score_psi")),
            calibration_predicted=[float(b["mean_predicted"]) for b in cal],
            calibration_observed=[float(b["observed_rate"]) for b in cal],
            roc_fpr=[float(x) for x in m.get("roc_fpr") or []], roc_tpr=[float(x) for x in m.get("roc_tpr") or []],
            reasons=[str(r) for r in c.reasons or []]))
    perf.sort(key=lambda r: (r.model_id, r.version, int(r.check_id)))
    fchecks, groups = [], []
    for c in _latest(checks, "fairness"):
        m = c.metrics or {}
        attrs = m.get("attributes") or []
        v = label.get(c.version_id, "?")
        fchecks.append(C.FairnessCheckRow(
            check_id=str(c.id), model_id=c.model_id, version=v, date=_d(c), status=c.status, threshold=_f(m.get("threshold")),
            n_rows=int(m.get("n_rows") or 0), n_matured=int(m.get("n_matured") or 0),
            attributes=[str(a["attribute"]) for a in attrs], flags=[str(x) for x in c.flags or []],
            reasons=[str(r) for r in c.reasons or []]))
        for a in attrs:
            for g in a.get("groups") or []:
                groups.append(C.FairnessGroupRow(
                    check_id=str(c.id), model_id=c.model_id, version=v, attribute=str(a["attribute"]), group=str(g["group"]),
                    n=int(g["n"]), approval_rate=_f(g.get("approval_rate")), air=_f(g.get("air")),
                    air_lower=_f(g.get("air_lower")), air_upper=_f(g.get("air_upper")), eod=_f(g.get("eod")),
                    aod=_f(g.get("aod")), calibration_gap=_f(g.get("calibration_gap")),
                    reference=bool(g.get("reference")), status=str(g.get("status") or "pass"),
                    calibration_gap_diff=_f(g.get("calibration_gap_diff"))))
    fchecks.sort(key=lambda r: (r.model_id, r.version, int(r.check_id)))
    order = {r.check_id: i for i, r in enumerate(fchecks)}
    groups.sort(key=lambda g: (order[g.check_id], g.attribute, g.group))
    return C.OutcomesSection(checks=perf), C.FairnessSection(checks=fchecks, groups=groups)
