"""Group fairness of a binary decision (numpy/scipy only).

Conventions (docs/methodology.md, "Fairness"): the model flags a row (declines, alerts) when
``score >= threshold``; the *favourable* outcome is not being flagged (approval). ``y`` = 1 is the
adverse event (default, fraud); ``y`` is NaN where the outcome is not known or not matured: those
rows count for approval rates but not for the outcome-based figures.

Per protected attribute and group:

* approval rate = weighted share of the group approved (all rows, matured or not);
* adverse impact ratio (AIR) = approval rate / the reference group's approval rate; the
  reference is the judged group with the highest approval rate (the four-fifths rule compares
  each group with the most favoured one: AIR < 0.8 is adverse impact);
* equal-opportunity difference (EOD) = P(approved | y = 0, group) − the same for the reference
  (qualified applicants approved alike);
* average-odds difference (AOD) = ½ [(P(approved | y = 0) − ref) + (P(approved | y = 1) − ref)];
* calibration within the group: observed event rate − mean predicted score on matured rows, judged
  against the reference group's (a model miscalibrated alike for everyone is an outcomes finding,
  ``check performance``; one miscalibrated *differently* for a group is a fairness finding).

Intervals are 95 % normal intervals (log scale for the AIR, the delta method), with Kish's
effective sample size under weights. A group with fewer rows than ``min_group_size`` is reported
with its counts and approval rate but *not judged* (no ratio, difference or verdict); the same
for its outcome figures when fewer than ``min_group_size`` of its rows have matured outcomes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from compliance.errors import InputError

from .performance import Z95

FORMULA_VERSION = "fairness-1"
MISSING_GROUP = "(missing)"


@dataclass
class FairnessPolicy:
    air_warn: float = 0.8
    air_fail: float = 0.7
    eod_warn: float = 0.1
    eod_fail: float = 0.2
    aod_warn: float = 0.1
    aod_fail: float = 0.2
    calibration_gap_warn: float = 0.05
    min_group_size: int = 50

    @classmethod
    def from_policy(cls, section: dict | None) -> "FairnessPolicy":
        kw = {k: v for k, v in (section or {}).items() if k in cls.__dataclass_fields__ and v is not None}
        if "min_group_size" in kw:
            kw["min_group_size"] = int(kw["min_group_size"])
        return cls(**kw)


@dataclass
class GroupResult:
    attribute: str
    group: str
    n: int
    weight: float
    approval_rate: float
    approval_lower: float
    approval_upper: float
    n_matured: int = 0
    observed_rate: float | None = None
    mean_predicted: float | None = None
    calibration_gap: float | None = None
    calibration_gap_lower: float | None = None
    calibration_gap_upper: float | None = None
    calibration_gap_diff: float | None = None  # the group's gap − the reference group's gap
    tpr: float | None = None  # P(approved | y = 0)
    fpr: float | None = None  # P(approved | y = 1)
    air: float | None = None
    air_lower: float | None = None
    air_upper: float | None = None
    eod: float | None = None
    eod_lower: float | None = None
    eod_upper: float | None = None
    aod: float | None = None
    aod_lower: float | None = None
    aod_upper: float | None = None
    reference: bool = False
    judged: bool = True  # False: too small (fewer rows than min_group_size)
    outcomes_judged: bool = False  # enough matured outcomes for EOD / AOD / calibration
    status: str = "pass"  # pass | warn | fail | too_small
    reasons: list[str] = field(default_factory=list)


@dataclass
class AttributeResult:
    attribute: str
    reference_group: str | None
    status: str
    groups: list[GroupResult]

    def to_dict(self) -> dict:
        return {"attribute": self.attribute, "reference_group": self.reference_group, "status": self.status,
                "groups": [_clean(asdict(g)) for g in self.groups]}


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class _Rate:
    p: float | None
    var: float  # variance of the estimate (effective n)


def _rate(hit: np.ndarray, w: np.ndarray) -> _Rate:
    tot = float(w.sum())
    if tot <= 0:
        return _Rate(None, float("nan"))
    p = float(np.dot(w, hit) / tot)
    n_eff = tot * tot / float(np.dot(w, w))
    return _Rate(p, p * (1 - p) / n_eff)


def _interval(est: float, var: float) -> tuple[float, float]:
    h = Z95 * math.sqrt(max(var, 0.0))
    return est - h, est + h


def _worse(a: str, b: str) -> str:
    order = {"pass": 0, "too_small": 0, "warn": 1, "fail": 2}
    return a if order[a] >= order[b] else b


def group_labels(values) -> np.ndarray:
    """Group label per row as strings; missing values form the group ``(missing)``."""
    import pandas as pd

    s = pd.Series(values)
    return s.astype(object).where(s.notna(), MISSING_GROUP).astype(str).to_numpy(dtype=object)


def attribute_fairness(attribute: str, groups, score, threshold: float, y=None, weight=None,
                       policy: FairnessPolicy = FairnessPolicy()) -> AttributeResult:
    """Fairness of the decision ``score >= threshold`` across the groups of one attribute."""
    s = np.asarray(score, dtype=np.float64)
    n = len(s)
    g = group_labels(groups)
    if len(g) != n:
        raise InputError(f"{attribute}: one group label per row needed ({len(g)} for {n} rows)")
    if not np.all(np.isfinite(s)):
        raise InputError("score has NaN or infinite values")
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    if w.shape != s.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("weights must be finite, >= 0 and one per row")
    yy = np.full(n, np.nan) if y is None else np.asarray(y, dtype=np.float64)
    known = ~np.isnan(yy)
    if np.any(known & (yy != 0) & (yy != 1)):
        raise InputError("target must be 0/1 (or missing for outcomes not yet known)")
    approved = (s < threshold).astype(np.float64)
    import pandas as pd

    codes, uniq = pd.factorize(g, sort=True)
    rates: dict[str, dict[str, _Rate]] = {}
    out: list[GroupResult] = []
    for code, name in enumerate(uniq):
        m = codes == code
        wm = w[m]
        ap = _rate(approved[m], wm)
        lo, hi = _interval(ap.p, ap.var) if ap.p is not None else (float("nan"), float("nan"))
        r = GroupResult(attribute, name, int(m.sum()), float(wm.sum()), ap.p if ap.p is not None else float("nan"),
                        max(0.0, lo), min(1.0, hi))
        r.judged = r.n >= policy.min_group_size and r.weight > 0
        mk = m & known
        r.n_matured = int(mk.sum())
        rr = {"approval": ap}
        if r.n_matured:
            wk, yk, sk = w[mk], yy[mk], s[mk]
            if wk.sum() > 0:
                obs = _rate(yk, wk)
                r.observed_rate = obs.p
                r.mean_predicted = float(np.dot(wk, sk) / wk.sum())
                r.calibration_gap = r.observed_rate - r.mean_predicted
                r.calibration_gap_lower, r.calibration_gap_upper = _interval(r.calibration_gap, obs.var)
            good, bad = mk & (yy == 0), mk & (yy == 1)
            rr["tpr"], rr["fpr"] = _rate(approved[good], w[good]), _rate(approved[bad], w[bad])
            r.tpr, r.fpr = rr["tpr"].p, rr["fpr"].p
        r.outcomes_judged = r.judged and r.n_matured >= policy.min_group_size
        rates[name] = rr
        out.append(r)
    judged = [r for r in out if r.judged]
    if not judged:
        for r in out:
            r.status = "too_small"
            r.reasons.append(f"too small: {r.n} rows < {policy.min_group_size} (not judged)")
        return AttributeResult(attribute, None, "too_small" if out else "pass", out)
    ref = max(judged, key=lambda r: (r.approval_rate, r.weight))
    ref.reference = True
    rref = rates[ref.group]
    status = "pass"
    for r in out:
        if not r.judged:
            r.status = "too_small"
            r.reasons.append(f"too small: {r.n} rows < {policy.min_group_size} (not judged)")
            continue
        rg = rates[r.group]
        _ratio(r, rg["approval"], rref["approval"])
        if r.outcomes_judged and ref.outcomes_judged:
            _differences(r, rg, rref)
            if r.calibration_gap is not None and ref.calibration_gap is not None:
                r.calibration_gap_diff = r.calibration_gap - ref.calibration_gap
        r.status = _judge(r, policy)
        status = _worse(status, r.status)
    return AttributeResult(attribute, ref.group, status, out)


def _ratio(r: GroupResult, a: _Rate, ref: _Rate) -> None:
    if a.p is None or ref.p is None or ref.p <= 0:
        return
    r.air = a.p / ref.p
    if a.p > 0:
        v = a.var / a.p ** 2 + ref.var / ref.p ** 2  # delta method on log(AIR)
        h = Z95 * math.sqrt(max(v, 0.0))
        r.air_lower, r.air_upper = r.air * math.exp(-h), r.air * math.exp(h)


def _differences(r: GroupResult, rg: dict, rref: dict) -> None:
    t, tr = rg.get("tpr"), rref.get("tpr")
    f, fr = rg.get("fpr"), rref.get("fpr")
    if t and tr and t.p is not None and tr.p is not None:
        r.eod = t.p - tr.p
        r.eod_lower, r.eod_upper = _interval(r.eod, t.var + tr.var)
        if f and fr and f.p is not None and fr.p is not None:
            r.aod = 0.5 * ((f.p - fr.p) + (t.p - tr.p))
            r.aod_lower, r.aod_upper = _interval(r.aod, 0.25 * (f.var + fr.var + t.var + tr.var))


def _judge(r: GroupResult, p: FairnessPolicy) -> str:
    st = "pass"

    def hit(level: str, why: str) -> None:
        nonlocal st
        st = _worse(st, level)
        r.reasons.append(f"{level}: {r.attribute}={r.group} {why}")

    if r.air is not None:
        if r.air < p.air_fail:
            hit("fail", f"adverse impact ratio {r.air:.3f} < {p.air_fail}")
        elif r.air < p.air_warn:
            hit("warn", f"adverse impact ratio {r.air:.3f} < {p.air_warn} (four-fifths rule)")
    for name, val, warn, fail in (("equal-opportunity difference", r.eod, p.eod_warn, p.eod_fail),
                                  ("average-odds difference", r.aod, p.aod_warn, p.aod_fail)):
        if val is None:
            continue
        if abs(val) > fail:
            hit("fail", f"{name} {val:+.3f} beyond ±{fail}")
        elif abs(val) > warn:
            hit("warn", f"{name} {val:+.3f} beyond ±{warn}")
    d = r.calibration_gap_diff
    if d is not None and abs(d) > p.calibration_gap_warn:
        hit("warn", f"calibrated differently from the reference: (observed − predicted) differs by {d:+.3f}, "
                    f"beyond ±{p.calibration_gap_warn}")
    return st


@dataclass
class Fairness:
    threshold: float
    n_rows: int
    n_matured: int
    status: str
    attributes: list[AttributeResult]
    formula_version: str = FORMULA_VERSION

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "n_rows": self.n_rows, "n_matured": self.n_matured, "status": self.status,
                "attributes": [a.to_dict() for a in self.attributes], "formula_version": self.formula_version}

    def reasons(self) -> list[str]:
        return [x for a in self.attributes for g in a.groups for x in g.reasons if not x.startswith("too small")]


def evaluate(protected: dict[str, object], score, threshold: float, y=None, weight=None,
             policy: FairnessPolicy = FairnessPolicy()) -> Fairness:
    """Fairness across every protected attribute (``{name: values per row}``)."""
    if not protected:
        raise InputError("no protected attribute given: pass --protected or register the dataset with a protected role")
    attrs = [attribute_fairness(a, v, score, threshold, y, weight, policy) for a, v in protected.items()]
    status = "pass"
    for a in attrs:
        status = _worse(status, "pass" if a.status == "too_small" else a.status)
    n_matured = int((~np.isnan(np.asarray(y, dtype=np.float64))).sum()) if y is not None else 0
    return Fairness(float(threshold), len(np.asarray(score)), n_matured, status, attrs)
