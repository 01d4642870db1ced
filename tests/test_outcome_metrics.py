"""Outcome metrics against scikit-learn / scipy and independent implementations (no store)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from compliance.checks import performance as P
from compliance.errors import InputError

sk = pytest.importorskip("sklearn.metrics")
skcal = pytest.importorskip("sklearn.calibration")

TOL = 1e-9


def _data(seed: int, n: int, kind: str):
    rng = np.random.default_rng(seed)
    if kind == "random":
        s = rng.random(n)
    elif kind == "ties":  # few distinct scores: most pairs are tied
        s = rng.integers(0, 5, n) / 4.0
    elif kind == "extreme":  # exact 0 and 1 scores, and scores a hair from them
        s = rng.choice([0.0, 1.0, 1e-300, 1 - 1e-16, 0.5, 1e-12], n)
    elif kind == "imbalanced":
        s = rng.beta(0.5, 8, n)
    else:
        raise ValueError(kind)
    y = (rng.random(n) < np.clip(s * 0.8 + 0.1, 0, 1)).astype(int)
    if kind == "imbalanced":
        y = (rng.random(n) < 0.02).astype(int)
        y[:2] = [0, 1]
    w = rng.random(n) * 3
    w[rng.random(n) < 0.1] = 0.0  # zero weights are allowed
    return y, s, w


CASES = [(seed, kind) for seed in (0, 1, 2) for kind in ("random", "ties", "extreme", "imbalanced")]


@pytest.mark.parametrize("seed,kind", CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_scores_match_sklearn(seed, kind, weighted):
    y, s, w = _data(seed, 3000, kind)
    w = w if weighted else None
    p = P.evaluate(y, s, w, threshold=0.5)
    assert abs(p.auc - sk.roc_auc_score(y, s, sample_weight=w)) < TOL
    assert abs(p.gini - (2 * sk.roc_auc_score(y, s, sample_weight=w) - 1)) < TOL
    assert abs(p.brier - sk.brier_score_loss(y, s, sample_weight=w)) < TOL
    assert abs(p.log_loss - sk.log_loss(y, s, sample_weight=w)) < TOL
    fpr, tpr, _ = sk.roc_curve(y, s, sample_weight=w)
    assert abs(p.ks - np.max(np.abs(tpr - fpr))) < TOL  # two-sided, as scipy.stats.ks_2samp
    flag = (s >= 0.5).astype(int)
    assert abs(p.precision - sk.precision_score(y, flag, sample_weight=w)) < TOL
    assert abs(p.recall - sk.recall_score(y, flag, sample_weight=w)) < TOL
    assert abs(p.f1 - sk.f1_score(y, flag, sample_weight=w)) < TOL
    assert abs(p.accuracy - sk.accuracy_score(y, flag, sample_weight=w)) < TOL
    tn, fp, fn, tp = sk.confusion_matrix(y, flag, sample_weight=w).ravel()
    for k, v in {"tn": tn, "fp": fp, "fn": fn, "tp": tp}.items():
        assert abs(p.confusion[k] - v) < TOL * max(1.0, abs(v))
    ww = np.ones(len(y)) if w is None else w
    assert abs(p.alert_rate - ww[s >= 0.5].sum() / ww.sum()) < TOL
    assert abs(p.approval_rate + p.alert_rate - 1) < TOL


@pytest.mark.parametrize("seed,kind", CASES)
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_matches_sklearn(seed, kind, strategy):
    y, s, _ = _data(seed, 2000, kind)
    prob_true, prob_pred = skcal.calibration_curve(y, s, n_bins=10, strategy=strategy)
    bins, _, _, _ = P.calibration(y.astype(float), s, np.ones(len(y)), strategy)
    assert len(bins) == len(prob_true)
    assert np.max(np.abs(np.array([b.observed_rate for b in bins]) - prob_true)) < TOL
    assert np.max(np.abs(np.array([b.mean_predicted for b in bins]) - prob_pred)) < TOL


def test_ks_matches_scipy_unweighted():
    y, s, _ = _data(4, 5000, "random")
    p = P.evaluate(y, s)
    assert abs(p.ks - stats.ks_2samp(s[y == 1], s[y == 0]).statistic) < TOL


def test_hosmer_lemeshow_by_hand():
    """HL over deciles of risk written out independently (pandas qcut on distinct quantiles)."""
    rng = np.random.default_rng(5)
    s = rng.random(4000)
    y = (rng.random(4000) < s ** 1.2).astype(float)
    _, hl, pval, ece = P.calibration(y, s, np.ones(len(y)), "quantile")
    edges = np.percentile(s, np.arange(0, 101, 10))
    b = np.searchsorted(edges[1:-1], s)
    ref, ref_ece = 0.0, 0.0
    for g in range(10):
        m = b == g
        o, e, n = y[m].sum(), s[m].sum(), m.sum()
        ref += (o - e) ** 2 / (e * (1 - e / n))
        ref_ece += abs(o - e)
    assert abs(hl - ref) < 1e-9 and abs(pval - stats.chi2.sf(ref, 8)) < 1e-12
    assert abs(ece - ref_ece / len(y)) < 1e-12
    # a well-calibrated sample does not reject; a miscalibrated one does
    y2 = (rng.random(4000) < s).astype(float)
    assert P.calibration(y2, s, np.ones(4000), "quantile")[2] > 0.001
    assert P.calibration(y2, np.clip(s * 0.5, 0, 1), np.ones(4000), "quantile")[2] < 1e-6


def _delong_pairwise(y, s):
    """DeLong (1988) straight from the definition: the O(m·n) kernel matrix, no ranks."""
    x, z = s[y == 1], s[y == 0]
    k = (x[:, None] > z[None, :]).astype(float) + 0.5 * (x[:, None] == z[None, :])
    auc = k.mean()
    v10, v01 = k.mean(axis=1), k.mean(axis=0)
    var = v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(z)
    return auc, math.sqrt(var)


@pytest.mark.parametrize("kind", ["random", "ties", "imbalanced"])
def test_delong_matches_pairwise_definition(kind):
    y, s, _ = _data(11, 700, kind)
    p = P.evaluate(y, s)
    auc, se = _delong_pairwise(y, s)
    assert abs(p.auc - auc) < 1e-12 and abs(p.auc_se - se) < 1e-12
    assert abs(p.auc_lower - max(0, auc - 1.959963984540054 * se)) < 1e-12
    # equal weights are no weights
    q = P.evaluate(y, s, np.full(len(y), 2.5))
    assert abs(q.auc_se - se) < 1e-12


def test_delong_agrees_with_bootstrap():
    rng = np.random.default_rng(3)
    n = 1500
    s = rng.random(n)
    y = (rng.random(n) < s).astype(int)
    p = P.evaluate(y, s)
    boots = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        boots.append(sk.roc_auc_score(y[i], s[i]))
    assert abs(np.std(boots, ddof=1) / p.auc_se - 1) < 0.15
    assert p.auc_lower < p.auc < p.auc_upper


def test_frequency_weights_equal_replicated_rows_for_point_figures():
    y, s, _ = _data(6, 500, "ties")
    w = np.random.default_rng(6).integers(0, 4, len(y)).astype(float)
    w[:2] = 1
    rep = np.repeat(np.arange(len(y)), w.astype(int))
    # uniform bins: quantile bin edges are taken over rows, not weights (documented)
    a, b = P.evaluate(y, s, w, calibration_strategy="uniform"), P.evaluate(y[rep], s[rep], calibration_strategy="uniform")
    for k in ("auc", "ks", "brier", "log_loss", "precision", "recall", "f1", "alert_rate", "calibration_error"):
        assert abs(getattr(a, k) - getattr(b, k)) < TOL, k


@pytest.mark.parametrize("y,s,w,needle", [
    ([1, 1, 1], [0.1, 0.5, 0.9], None, "target 1"),
    ([0, 0, 0], [0.1, 0.5, 0.9], None, "target 0"),
    ([0, 1, 1], [0.1, 0.5, 0.9], [1, 0, 0], "target 0"),  # the only positives weigh nothing
    ([0, 1, 2], [0.1, 0.5, 0.9], None, "0/1"),
    ([0, 1, 1], [0.1, np.nan, 0.9], None, "NaN"),
    ([0, 1, 1], [0.1, np.inf, 0.9], None, "infinite"),
    ([0, 1, 1], [0.1, 0.5, 0.9], [1, -1, 1], ">= 0"),
    ([0, 1], [0.1, 0.5, 0.9], None, "same length"),
    ([], [], None, "no rows"),
])
def test_bad_input_is_a_clear_error(y, s, w, needle):
    with pytest.raises(InputError, match=needle):
        P.evaluate(np.array(y), np.array(s, dtype=float), None if w is None else np.array(w, dtype=float))


def test_non_probability_scores_skip_probability_figures():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([300.0, 420, 650, 700, 500, 800])
    p = P.evaluate(y, s, threshold=600)
    assert p.brier is None and p.calibration == [] and p.notes
    assert abs(p.auc - sk.roc_auc_score(y, s)) < TOL and p.alert_rate == 0.5


def test_matured_mask_counts_label_lag():
    as_of = np.datetime64("2026-09-30T00:00:00")
    t = np.array(["2025-09-01", "2025-09-30", "2025-10-01T00:00:01", "2026-09-29", "NaT"], dtype="datetime64[ns]")
    assert P.matured_mask(t, as_of, 365).tolist() == [True, True, False, False, False]
    assert P.matured_mask(t, as_of, 0).tolist() == [True, True, True, True, False]
    assert P.matured_mask(t, as_of, 60).tolist() == [True, True, True, False, False]


def test_score_psi_matches_drift_module():
    from compliance.checks.drift import numeric_drift_sorted

    rng = np.random.default_rng(8)
    r, c = rng.beta(2, 5, 4000), rng.beta(2.5, 5, 3000)
    fd = numeric_drift_sorted("score", np.sort(r), np.sort(c), 0, 0)
    assert abs(P.score_psi(r, c) - fd.psi) < 1e-12
    assert P.score_psi(r, r) == 0.0


def test_judge_thresholds():
    rng = np.random.default_rng(9)
    s = rng.random(5000)
    y = (rng.random(5000) < s).astype(int)
    perf = P.evaluate(y, s)
    pol = P.PerformancePolicy()
    assert P.judge(perf, pol)[0] == "pass"
    assert P.judge(perf, pol, baseline_auc=perf.auc + 0.07)[0] == "warn"
    st, why = P.judge(perf, pol, baseline_auc=perf.auc + 0.12)
    assert st == "fail" and "dropped" in why[0]
    assert P.judge(perf, pol, score_psi_value=0.3)[0] == "fail"
    small = P.evaluate(y[:50], s[:50])
    st, why = P.judge(small, pol)
    assert st == "warn" and "only 50 rows" in why[0]


def test_chi2_sf_closed_form_matches_scipy():
    for df in range(1, 12):
        for x in (0.0, 1e-6, 0.5, 3.0, 8.0, 25.0, 120.0, 900.0):
            assert abs(P.chi2_sf(x, df) - stats.chi2.sf(x, df)) < 1e-12, (x, df)


def test_check_path_does_not_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from compliance.checks import performance as P, fairness as F; "
            "P.evaluate(np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.6, 0.3])); "
            "import compliance.services.outcomes; print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
