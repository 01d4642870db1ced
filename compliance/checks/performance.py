"""Outcomes analysis of a binary classifier: discrimination, calibration and decisions (numpy/scipy only).

Conventions (docs/methodology.md, "Outcomes and performance"):

* ``y`` is the observed outcome, 1 = the event the model predicts (default, fraud); ``score`` is
  the model's predicted probability of the event (any real score for the rank metrics).
* A row is *flagged* (declined, alerted) when ``score >= threshold``; the approval rate is the
  weighted share of rows not flagged, the alert rate the share flagged.
* Weights are honoured by every figure: in every point estimate a weight of 2 counts exactly as
  two rows with weight 1 (except the edges of quantile calibration bins, taken over rows);
  intervals treat them as sampling weights (Kish's effective sample size). Weights must be
  finite, >= 0 and not all zero.
* AUC is the weighted Mann–Whitney statistic with ties counted one half (average ranks), i.e.
  ``sklearn.metrics.roc_auc_score``; its variance is DeLong's (1988) from the placement values.
  With unequal weights the placement variances are weighted and divided by Kish's effective
  sample sizes, which reduces to DeLong's exactly when all weights are equal.
* Calibration: 10 bins of the score, ``uniform`` (equal width on [0, 1], as
  ``sklearn.calibration.calibration_curve``) or ``quantile`` (deciles of risk, the Hosmer–
  Lemeshow convention, bin edges from the unweighted score quantiles). The Hosmer–Lemeshow
  statistic is computed with the weights rescaled to sum to the number of rows, df = bins − 2.

All-one-class outcomes, NaN/Inf and wrong shapes raise :class:`InputError` (one line).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from compliance.errors import InputError

FORMULA_VERSION = "performance-1"
Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal (scipy.stats.norm.ppf(0.975))
EPS_SHARE = 1e-4  # PSI: an empty bin's share, as the drift module (compliance.checks.drift)
N_CAL_BINS = 10
ROC_POINTS = 101  # points kept for the report's ROC curve


# --------------------------------------------------------------------------- inputs
def as_arrays(y, score, weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 arrays (y in {0, 1}, finite scores, weights >= 0 with a positive sum)."""
    y = np.asarray(y)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise InputError(f"target and score must be 1-D of the same length (got {y.shape} and {s.shape})")
    if len(y) == 0:
        raise InputError("no rows to judge")
    if y.dtype == bool:
        y = y.astype(np.float64)
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError("target must be 0/1") from None
    if not np.all((y == 0) | (y == 1)):
        bad = y[~((y == 0) | (y == 1))][0]
        raise InputError(f"target must be 0/1 (found {bad!r})")
    if not np.all(np.isfinite(s)):
        raise InputError("score has NaN or infinite values")
    if weight is None:
        w = np.ones(len(y))
    else:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != y.shape:
            raise InputError(f"weight must have one value per row (got {w.shape} for {y.shape})")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise InputError("weights must be finite and >= 0")
    wp, wn = float(w[y == 1].sum()), float(w[y == 0].sum())
    if wp <= 0 or wn <= 0:
        cls = 1 if wn <= 0 else 0
        raise InputError(f"all rows (with positive weight) have target {cls}: discrimination (AUC, KS) "
                         "is undefined with one outcome class")
    return y, s, w


def is_probability(s: np.ndarray) -> bool:
    return bool(s.size and s.min() >= 0.0 and s.max() <= 1.0)


# --------------------------------------------------------------------------- ranks
@dataclass
class Ranked:
    """The scores sorted once, grouped by distinct value: weighted positives/negatives per value."""
    values: np.ndarray  # distinct scores, ascending
    pos: np.ndarray  # weight of y=1 rows per distinct score
    neg: np.ndarray
    inverse: np.ndarray  # row -> index of its distinct score


def rank(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> Ranked:
    order = np.argsort(s, kind="stable")
    ss = s[order]
    start = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    group = np.cumsum(np.r_[True, ss[1:] != ss[:-1]]) - 1
    inverse = np.empty(len(s), dtype=np.int64)
    inverse[order] = group
    yo, wo = y[order], w[order]
    ng = len(start)
    pos = np.bincount(group, weights=wo * yo, minlength=ng)
    neg = np.bincount(group, weights=wo * (1 - yo), minlength=ng)
    return Ranked(ss[start], pos, neg, inverse)


def auc_from_ranked(r: Ranked) -> float:
    wp, wn = r.pos.sum(), r.neg.sum()
    below = np.cumsum(r.neg) - r.neg
    return float(np.sum(r.pos * (below + 0.5 * r.neg)) / (wp * wn))


def _kish(w: np.ndarray) -> float:
    s2 = float(np.dot(w, w))
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def delong(y: np.ndarray, w: np.ndarray, r: Ranked, auc: float) -> tuple[float, float, float]:
    """(standard error, lower, upper) of the AUC: DeLong's placement-value variance, 95 % normal interval.

    Placement of a positive: weighted share of negatives below it (ties ½); of a negative: share of
    positives above it. Var = S10 / m + S01 / n (sample variances, ddof 1); with weights the
    variances are weighted and m, n are Kish's effective sizes."""
    wp, wn = r.pos.sum(), r.neg.sum()
    below_neg = np.cumsum(r.neg) - r.neg
    above_pos = wp - np.cumsum(r.pos)
    v10_g = (below_neg + 0.5 * r.neg) / wn  # per distinct score, for positives
    v01_g = (above_pos + 0.5 * r.pos) / wp  # per distinct score, for negatives
    pm, nm = y == 1, y == 0
    v10, w10 = v10_g[r.inverse[pm]], w[pm]
    v01, w01 = v01_g[r.inverse[nm]], w[nm]
    var = 0.0
    for v, ww in ((v10, w10), (v01, w01)):
        keep = ww > 0
        v, ww = v[keep], ww[keep]
        n_eff = _kish(ww)
        if n_eff <= 1:
            return float("nan"), float("nan"), float("nan")
        # weighted mean of the placements is the AUC itself
        s = float(np.dot(ww, (v - auc) ** 2) / ww.sum()) * n_eff / (n_eff - 1)
        var += s / n_eff
    se = math.sqrt(max(var, 0.0))
    return se, max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se)


def roc_points(r: Ranked, k: int = ROC_POINTS) -> tuple[list[float], list[float], float]:
    """(false positive rates, true positive rates) at every distinct threshold, thinned to about
    ``k`` points for a chart, and the KS statistic max |TPR − FPR| over all thresholds."""
    wp, wn = r.pos.sum(), r.neg.sum()
    tpr = np.r_[0.0, np.cumsum(r.pos[::-1]) / wp]
    fpr = np.r_[0.0, np.cumsum(r.neg[::-1]) / wn]
    ks = float(np.max(np.abs(tpr - fpr)))
    if len(tpr) > k:
        idx = np.unique(np.r_[np.searchsorted(fpr, np.linspace(0, 1, k), "left").clip(0, len(fpr) - 1), len(fpr) - 1])
        tpr, fpr = tpr[idx], fpr[idx]
    return [float(x) for x in fpr], [float(x) for x in tpr], ks


# --------------------------------------------------------------------------- probability scores
def brier(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    return float(np.dot(w, (s - y) ** 2) / w.sum())


def log_loss(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean negative log-likelihood; probabilities clipped to [eps, 1 − eps] (float64 eps)."""
    eps = np.finfo(np.float64).eps
    p = np.clip(s, eps, 1 - eps)
    ll = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return float(np.dot(w, ll) / w.sum())


def calibration_bins(s: np.ndarray, strategy: str = "quantile", n_bins: int = N_CAL_BINS) -> np.ndarray:
    """Bin index per row, as ``sklearn.calibration.calibration_curve`` assigns them."""
    if strategy == "quantile":
        edges = np.percentile(s, np.linspace(0, 1, n_bins + 1) * 100)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise InputError(f"calibration strategy must be quantile or uniform, not {strategy!r}")
    return np.searchsorted(edges[1:-1], s)


@dataclass
class CalibrationBin:
    bin: int
    n: int
    weight: float
    mean_predicted: float
    observed_rate: float
    lower: float  # 95 % Wilson interval of the observed rate (effective n)
    upper: float


def wilson(p: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return float("nan"), float("nan")
    z2 = Z95 * Z95
    den = 1 + z2 / n
    mid = (p + z2 / (2 * n)) / den
    half = Z95 * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def calibration(y: np.ndarray, s: np.ndarray, w: np.ndarray, strategy: str = "quantile",
                n_bins: int = N_CAL_BINS) -> tuple[list[CalibrationBin], float, float | None, float]:
    """(non-empty bins, Hosmer–Lemeshow statistic, its p-value (None when fewer than 3 bins),
    expected calibration error = weighted mean |observed − predicted| over bins)."""
    b = calibration_bins(s, strategy, n_bins)
    nb = n_bins
    scale = len(w) / w.sum()  # HL with the weights rescaled to sum to the row count
    wsum = np.bincount(b, weights=w, minlength=nb)
    obs = np.bincount(b, weights=w * y, minlength=nb)
    exp = np.bincount(b, weights=w * s, minlength=nb)
    cnt = np.bincount(b, minlength=nb)
    w2 = np.bincount(b, weights=w * w, minlength=nb)
    out: list[CalibrationBin] = []
    hl, ece = 0.0, 0.0
    for i in np.flatnonzero(wsum > 0):
        o, e, n = obs[i] / wsum[i], exp[i] / wsum[i], wsum[i]
        lo, hi = wilson(o, n * n / w2[i])
        out.append(CalibrationBin(int(i), int(cnt[i]), float(n), float(e), float(o), lo, hi))
        ece += n * abs(o - e)
        ns, os_, es = n * scale, obs[i] * scale, exp[i] * scale
        denom = es * (1 - es / ns)
        if denom > 0:
            hl += (os_ - es) ** 2 / denom
    g = len(out)
    p = chi2_sf(hl, g - 2) if g > 2 else None
    return out, float(hl), p, float(ece / w.sum())


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x) for an integer df, in closed form (the regularised upper gamma Q(df/2, x/2)):
    equal to ``scipy.stats.chi2.sf`` (tested) without importing scipy.stats (seconds) on the check path."""
    if x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return float(min(1.0, math.exp(-h) * total))
    total = math.erfc(math.sqrt(h))
    term = math.sqrt(h) / math.gamma(1.5)  # h^(1/2) / Γ(3/2)
    for i in range(1, (df - 1) // 2 + 1):
        if i > 1:
            term *= h / (i + 0.5 - 1)
        total += math.exp(-h) * term
    return float(min(1.0, total))


# --------------------------------------------------------------------------- decisions
@dataclass
class Confusion:
    tp: float
    fp: float
    tn: float
    fn: float

    @property
    def total(self) -> float:
        return self.tp + self.fp + self.tn + self.fn


def confusion(y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> Confusion:
    flag = s >= threshold
    return Confusion(tp=float(w[flag & (y == 1)].sum()), fp=float(w[flag & (y == 0)].sum()),
                     tn=float(w[~flag & (y == 0)].sum()), fn=float(w[~flag & (y == 1)].sum()))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def decision_metrics(c: Confusion) -> dict:
    """Precision, recall, F1, accuracy, alert and approval rates; None where a denominator is 0."""
    precision, recall = _ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn)
    f1 = _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)
    alert = (c.tp + c.fp) / c.total
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": (c.tp + c.tn) / c.total,
            "alert_rate": alert, "approval_rate": 1.0 - alert,
            "false_positive_rate": _ratio(c.fp, c.fp + c.tn)}


# --------------------------------------------------------------------------- label lag
def matured_mask(timestamps, as_of: np.datetime64, maturity_days: float) -> np.ndarray:
    """Rows whose outcome window has closed by ``as_of``: timestamp + maturity <= as_of.

    ``timestamps`` is anything numpy reads as datetime64 (naive = UTC); missing times never mature."""
    t = np.asarray(timestamps, dtype="datetime64[ns]")
    cutoff = np.datetime64(as_of, "ns") - np.timedelta64(int(round(maturity_days * 86400)), "s")
    return ~np.isnat(t) & (t <= cutoff)


# --------------------------------------------------------------------------- score drift
def score_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of the score: deciles of the reference (numpy type-7 quantiles) and the drift module's PSI
    formula (shares, empty bins at 1e-4, Σ (c − r) ln(c / r); equal to it, tested)."""
    r = np.sort(np.asarray(reference, dtype=np.float64))
    c = np.sort(np.asarray(current, dtype=np.float64))
    if r.size == 0 or c.size == 0:
        raise InputError("score drift needs scores on both sides")
    edges = np.unique(np.quantile(r, np.arange(1, 10) / 10))
    rc = np.diff(np.r_[0, np.searchsorted(r, edges, "right"), r.size])
    cc = np.diff(np.r_[0, np.searchsorted(c, edges, "right"), c.size])
    rs, cs = rc / rc.sum(), cc / cc.sum()
    rs, cs = np.where(rs == 0, EPS_SHARE, rs), np.where(cs == 0, EPS_SHARE, cs)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


# --------------------------------------------------------------------------- all together
@dataclass
class Performance:
    n_rows: int
    weight_total: float
    event_rate: float
    auc: float
    auc_se: float
    auc_lower: float
    auc_upper: float
    gini: float
    ks: float
    threshold: float
    confusion: dict
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float
    alert_rate: float
    approval_rate: float
    false_positive_rate: float | None
    mean_score: float
    brier: float | None = None
    log_loss: float | None = None
    hosmer_lemeshow: float | None = None
    hosmer_lemeshow_pvalue: float | None = None
    calibration_error: float | None = None
    calibration_strategy: str = "quantile"
    calibration: list[dict] = field(default_factory=list)
    roc_fpr: list[float] = field(default_factory=list)
    roc_tpr: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    formula_version: str = FORMULA_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        return d


def auc(y, score, weight=None) -> float:
    y, s, w = as_arrays(y, score, weight)
    return auc_from_ranked(rank(y, s, w))


def evaluate(y, score, weight=None, *, threshold: float = 0.5, calibration_strategy: str = "quantile") -> Performance:
    """Every outcome figure of one labelled sample (see the module docstring)."""
    y, s, w = as_arrays(y, score, weight)
    r = rank(y, s, w)
    a = auc_from_ranked(r)
    se, lo, hi = delong(y, w, r, a)
    fpr, tpr, ks = roc_points(r)
    c = confusion(y, s, w, threshold)
    p = Performance(n_rows=int(len(y)), weight_total=float(w.sum()), event_rate=float(np.dot(w, y) / w.sum()),
                    auc=a, auc_se=se, auc_lower=lo, auc_upper=hi, gini=2 * a - 1, ks=ks, threshold=float(threshold),
                    confusion=asdict(c), mean_score=float(np.dot(w, s) / w.sum()), roc_fpr=fpr, roc_tpr=tpr,
                    calibration_strategy=calibration_strategy, **decision_metrics(c))
    if is_probability(s):
        p.brier, p.log_loss = brier(y, s, w), log_loss(y, s, w)
        bins, p.hosmer_lemeshow, p.hosmer_lemeshow_pvalue, p.calibration_error = calibration(y, s, w, calibration_strategy)
        p.calibration = [asdict(b) for b in bins]
    else:
        p.notes.append("scores are not probabilities in [0, 1]: Brier, log loss and calibration not computed")
    return p


# --------------------------------------------------------------------------- verdict
@dataclass
class PerformancePolicy:
    maturity_days: float = 365
    min_matured_rows: int = 100
    auc_warn: float = 0.65
    auc_fail: float = 0.55
    auc_drop_warn: float = 0.05
    auc_drop_fail: float = 0.10
    psi_warn: float = 0.1
    psi_fail: float = 0.25
    calibration_error_warn: float = 0.02
    calibration_error_fail: float = 0.05

    @classmethod
    def from_policy(cls, section: dict | None) -> "PerformancePolicy":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in (section or {}).items() if k in names and v is not None})


def judge(perf: Performance, policy: PerformancePolicy, *, baseline_auc: float | None = None,
          score_psi_value: float | None = None) -> tuple[str, list[str]]:
    """(status, reasons) of an outcomes analysis under the policy; fewer matured rows than the
    policy minimum make a ``warn`` whatever the figures (too little evidence to judge)."""
    order = {"pass": 0, "warn": 1, "fail": 2}
    status, reasons = "pass", []

    def hit(level: str, why: str) -> None:
        nonlocal status
        status = level if order[level] > order[status] else status
        reasons.append(f"{level}: {why}")

    if perf.n_rows < policy.min_matured_rows:
        hit("warn", f"only {perf.n_rows} rows with matured outcomes (< {policy.min_matured_rows}): figures not judged")
        return status, reasons
    if perf.auc < policy.auc_fail:
        hit("fail", f"AUC {perf.auc:.3f} < {policy.auc_fail}")
    elif perf.auc < policy.auc_warn:
        hit("warn", f"AUC {perf.auc:.3f} < {policy.auc_warn}")
    if baseline_auc is not None:
        drop = baseline_auc - perf.auc
        if drop > policy.auc_drop_fail:
            hit("fail", f"AUC dropped {drop:.3f} from development {baseline_auc:.3f} (> {policy.auc_drop_fail})")
        elif drop > policy.auc_drop_warn:
            hit("warn", f"AUC dropped {drop:.3f} from development {baseline_auc:.3f} (> {policy.auc_drop_warn})")
    if score_psi_value is not None:
        if score_psi_value > policy.psi_fail:
            hit("fail", f"score PSI {score_psi_value:.3f} vs development > {policy.psi_fail}")
        elif score_psi_value > policy.psi_warn:
            hit("warn", f"score PSI {score_psi_value:.3f} vs development > {policy.psi_warn}")
    ece = perf.calibration_error
    if ece is not None:
        if ece > policy.calibration_error_fail:
            hit("fail", f"calibration error {ece:.3f} > {policy.calibration_error_fail}")
        elif ece > policy.calibration_error_warn:
            hit("warn", f"calibration error {ece:.3f} > {policy.calibration_error_warn}")
    return status, reasons
