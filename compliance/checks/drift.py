"""Data-drift statistics between a reference and a current window (DESIGN.md §3 "Drift").

Per numeric feature (computed on the non-missing values of each side):

* ``psi``  — Population Stability Index on the reference's decile bins:
  ``Σ (c_i − r_i) · ln(c_i / r_i)`` over bin shares, a share of 0 replaced by 1e-4 (both sides,
  no renormalisation — the convention Evidently uses).
* Bins: the 9 interior edges are the reference quantiles at 0.1 … 0.9 by numpy's default
  ``method='linear'`` (Hyndman–Fan type 7, the same as SQL ``percentile_cont``); repeated edges
  are merged; bins are right-closed ``(e_{i-1}, e_i]`` with open outer bins ``(-inf, e_1]`` and
  ``(e_9, +inf)``, so current values beyond the reference range land in the extreme bins.
  Bins empty on both sides contribute exactly 0 to PSI and JS, so merging repeated edges does not
  change the numbers.
* ``ks_stat`` / ``ks_pvalue`` — two-sided two-sample Kolmogorov–Smirnov exactly as
  ``scipy.stats.ks_2samp(method='auto')``: exact distribution when ``max(n_ref, n_cur) <= 10000``,
  otherwise Smirnov's asymptotic ``kstwo.sf(D, round(n·m/(n+m)))``.
* ``wasserstein`` — ``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref), 0.001)`` with the
  **population** standard deviation (``ddof=0``, as Evidently normalises).
* ``js_distance`` — Jensen–Shannon distance, natural log (``scipy.spatial.distance.jensenshannon``
  with ``base=None``), on the raw bin shares (no 1e-4 replacement; JS is finite with empty bins).

Per categorical feature: PSI and JS over the union of categories (a category never seen in the
reference is its own bin with reference share 0 → 1e-4), and ``chi2_pvalue`` from
``scipy.stats.chi2_contingency`` on the 2×k table of counts (scipy's default Yates correction
when k = 2; a single category gives dof 0 and p = 1).

Edge cases (decided here, reported in ``note``):

* Missing = NaN/None/NaT and, for numeric features, ±inf. They are counted in ``missing_ref`` /
  ``missing_cur`` and excluded from every statistic; ±inf are also counted on their own
  (``inf_ref`` / ``inf_cur``, exact path) and named in the feature's note.
* ``missing_rate_change`` = missing share of the current window − missing share of the reference
  (over all rows of each side) is a judged statistic: ``>= missing_warn`` warns, ``>=
  missing_fail`` fails (policy ``drift.missing_warn`` / ``drift.missing_fail``), whatever the PSI
  of the values that remain (a feature 20 % newly missing does not pass).
* A side with no non-missing value → the feature's status is ``'error'`` and all statistics are
  None (absence of evidence is never a pass).
* A constant reference column gives a single edge and two bins ``(-inf, v]``, ``(v, inf)``; its
  std is 0, so the Wasserstein distance is divided by the 0.001 floor.

Status by PSI: ``< psi_warn`` pass, ``< psi_fail`` warn, else fail. Dataset verdict: ``'fail'`` when
the share of failing features among the evaluated (non-error) ones is ``>= drift_share``; else the
worst of the feature statuses capped at ``'warn'`` (an errored feature makes the dataset at least
``'warn'``); ``'error'`` when no feature could be evaluated.

The work is vectorised per column: each column is sorted once and PSI, KS and Wasserstein are
derived from the two sorted arrays (one linear merge), columns run on a small
thread pool (numpy's sort and search release the GIL).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import rel_entr

from compliance.errors import InputError, UsageError

EPS_SHARE = 1e-4
STD_FLOOR = 0.001
N_QUANTILE_BINS = 10
KS_MAX_AUTO_N = 10_000  # scipy's MAX_AUTO_N for method='auto'
STATUS_ORDER = {"pass": 0, "warn": 1, "fail": 2, "error": 3}


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class DriftPolicy:
    """Thresholds (DESIGN.md §5): PSI warn/fail and the dataset-level drift share."""

    psi_warn: float = 0.1
    psi_fail: float = 0.25
    drift_share: float = 0.5
    missing_warn: float = 0.05  # increase of the missing share (current − reference) -> warn
    missing_fail: float = 0.1  # ... -> fail

    def __post_init__(self) -> None:
        if not (0 <= self.missing_warn <= self.missing_fail <= 1):
            raise UsageError(f"drift policy needs 0 <= missing_warn <= missing_fail <= 1, "
                             f"got {self.missing_warn}, {self.missing_fail}")
        if not (0 <= self.psi_warn <= self.psi_fail) or not math.isfinite(self.psi_fail):
            raise UsageError(
                f"drift policy needs 0 <= psi_warn <= psi_fail, got {self.psi_warn}, {self.psi_fail}"
            )
        if not (0 < self.drift_share <= 1):
            raise UsageError(f"drift policy drift_share must be in (0, 1], got {self.drift_share}")


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # 'numeric' | 'categorical'
    n_ref: int  # non-missing values used
    n_cur: int
    missing_ref: int
    missing_cur: int
    psi: float | None = None
    ks_stat: float | None = None
    ks_pvalue: float | None = None
    wasserstein: float | None = None
    js_distance: float | None = None
    chi2_pvalue: float | None = None
    status: str = "error"  # 'pass' | 'warn' | 'fail' | 'error'
    note: str | None = None
    n_bins: int | None = None
    # Streaming mode only: a-posteriori bounds |approx − exact| (None when exact).
    ks_error_bound: float | None = None
    wasserstein_error_bound: float | None = None
    inf_ref: int = 0  # ±inf values (counted in missing_*, excluded from the statistics)
    inf_cur: int = 0
    missing_rate_change: float | None = None  # current missing share − reference missing share

    def missing_shares(self) -> tuple[float | None, float | None]:
        tr, tc = self.n_ref + self.missing_ref, self.n_cur + self.missing_cur
        return (self.missing_ref / tr if tr else None), (self.missing_cur / tc if tc else None)


@dataclass
class DriftResult:
    features: list[FeatureDrift]
    drifted_share: float | None
    status: str
    n_ref: int  # rows per side
    n_cur: int
    approximate: bool
    method: str
    policy: DriftPolicy = field(default_factory=DriftPolicy)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; NaN/inf floats become None."""
        return _clean(asdict(self))

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# --------------------------------------------------------------------------- statistics on counts


def psi_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """PSI over bins: shares, 0 → 1e-4 on both sides, Σ (c − r) ln(c / r)."""
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    rs = r / r.sum()
    cs = c / c.sum()
    rs = np.where(rs == 0, EPS_SHARE, rs)
    cs = np.where(cs == 0, EPS_SHARE, cs)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def js_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen–Shannon distance (natural log) between the two bin-share vectors."""
    p = np.asarray(ref_counts, dtype=np.float64)
    q = np.asarray(cur_counts, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    return float(np.sqrt(max(js, 0.0) / 2.0))


def chi2_pvalue_from_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """p-value of ``scipy.stats.chi2_contingency`` on the 2×k table (categories seen on a side)."""
    table = np.vstack([np.asarray(ref_counts), np.asarray(cur_counts)]).astype(np.int64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] <= 1:
        return 1.0  # dof 0: scipy returns p = 1
    return float(stats.chi2_contingency(table).pvalue)


def ks_pvalue(d: float, n1: int, n2: int) -> tuple[float, float]:
    """(statistic, p-value) exactly as ``scipy.stats.ks_2samp(method='auto')`` derives them from D.

    scipy rounds D to a multiple of 1/lcm(n1, n2) in its exact branch; that rounded D is returned.
    """
    if max(n1, n2) <= KS_MAX_AUTO_N:
        try:
            from scipy.stats._stats_py import _attempt_exact_2kssamp

            ok, d_exact, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
            if ok:
                return float(d_exact), float(np.clip(prob, 0, 1))
        except ImportError:  # pragma: no cover - scipy moved its private helper: asymptotic
            pass
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(d), float(np.clip(stats.kstwo.sf(d, np.round(en)), 0, 1))


def quantile_edges_from_order_stats(get, n: int) -> np.ndarray:
    """Type-7 quantiles at 0.1..0.9 as numpy computes them, given ``get(k)`` = k-th order stat.

    Mirrors numpy's virtual index ``(n - 1) * q`` and its two-sided lerp, so the edges equal
    ``np.quantile(x, q)`` bit for bit (tested)."""
    qs = np.arange(1, N_QUANTILE_BINS) / N_QUANTILE_BINS
    vi = (n - 1) * qs
    prev = np.floor(vi)
    gamma = vi - prev
    lo_idx = np.clip(prev.astype(np.int64), 0, n - 1)
    hi_idx = np.clip(lo_idx + 1, 0, n - 1)
    a = np.array([get(int(k)) for k in lo_idx], dtype=np.float64)
    b = np.array([get(int(k)) for k in hi_idx], dtype=np.float64)
    diff = b - a
    out = a + diff * gamma
    out = np.where(gamma >= 0.5, b - diff * (1 - gamma), out)
    return np.where(a == b, a, out)


def order_stat_indices(n: int) -> np.ndarray:
    """The order-statistic ranks that :func:`quantile_edges_from_order_stats` will ask for."""
    qs = np.arange(1, N_QUANTILE_BINS) / N_QUANTILE_BINS
    vi = (n - 1) * qs
    lo = np.clip(np.floor(vi).astype(np.int64), 0, n - 1)
    return np.unique(np.concatenate([lo, np.clip(lo + 1, 0, n - 1)]))


def status_for(psi: float | None, policy: DriftPolicy) -> str:
    if psi is None or not math.isfinite(psi):
        return "error"
    if psi < policy.psi_warn:
        return "pass"
    if psi < policy.psi_fail:
        return "warn"
    return "fail"


def finish(
    features: list[FeatureDrift], n_ref: int, n_cur: int, policy: DriftPolicy, *, approximate: bool, method: str
) -> DriftResult:
    """Apply the policy: per-feature status from PSI and the missing-rate change, and the dataset verdict."""
    for f in features:
        mr, mc = f.missing_shares()
        f.missing_rate_change = None if mr is None or mc is None else mc - mr
        if f.status != "error":
            f.status = status_for(f.psi, policy)
            ch = f.missing_rate_change
            if ch is not None and ch >= policy.missing_warn:
                worse = "fail" if ch >= policy.missing_fail else "warn"
                if STATUS_ORDER[worse] > STATUS_ORDER[f.status]:
                    f.status = worse
                what = f"missing share {mr:.1%} → {mc:.1%} ({worse})"
                f.note = f"{f.note}; {what}" if f.note else what
    evaluated = [f for f in features if f.status != "error"]
    if not evaluated:
        return DriftResult(features, None, "error", n_ref, n_cur, approximate, method, policy)
    share = sum(f.status == "fail" for f in evaluated) / len(evaluated)
    if share >= policy.drift_share:
        verdict = "fail"
    else:
        worst = max(STATUS_ORDER[f.status] for f in features)
        verdict = "pass" if worst == 0 else "warn"
    return DriftResult(features, share, verdict, n_ref, n_cur, approximate, method, policy)


# --------------------------------------------------------------------------- exact per-column work


def numeric_drift_sorted(name: str, r: np.ndarray, c: np.ndarray, missing_ref: int, missing_cur: int) -> FeatureDrift:
    """All numeric statistics from the two **sorted**, finite arrays."""
    n1, n2 = r.size, c.size
    fd = FeatureDrift(name, "numeric", n1, n2, missing_ref, missing_cur)
    if n1 == 0 or n2 == 0:
        fd.note = f"no non-missing values in the {'reference' if n1 == 0 else 'current'} window"
        return fd
    edges = np.unique(quantile_edges_from_order_stats(lambda k: r[k], n1))
    rc = np.diff(np.concatenate([[0], np.searchsorted(r, edges, "right"), [n1]]))
    cc = np.diff(np.concatenate([[0], np.searchsorted(c, edges, "right"), [n2]]))
    fd.psi = psi_from_counts(rc, cc)
    fd.js_distance = js_from_counts(rc, cc)
    fd.n_bins = int(edges.size + 1)

    d, w = _ks_wasserstein_sorted(r, c)
    fd.ks_stat, fd.ks_pvalue = ks_pvalue(d, n1, n2)
    std = _pop_std(r)
    fd.wasserstein = w / max(std, STD_FLOOR)
    fd.status = "pass"  # provisional; finish() applies the policy
    notes = []
    if edges.size == 1 and r[0] == r[-1]:
        notes.append("constant reference column")
    if std < STD_FLOOR:
        notes.append(f"reference std {std:.3g} < {STD_FLOOR}: Wasserstein divided by the floor")
    fd.note = "; ".join(notes) or None
    return fd


def _ks_wasserstein_sorted(r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """KS D and the (unnormalised) Wasserstein-1 distance of two sorted samples.

    One linear merge: each reference value's position in the merged order is its index plus the
    number of current values strictly below it. Both ECDFs are evaluated at the last element of
    each run of equal values — the same numbers scipy gets from ``searchsorted(..., 'right')`` at
    every point (inside a run the CDFs are constant and the gaps to the next value are 0)."""
    n1, n2 = r.size, c.size
    total = n1 + n2
    pos = np.arange(n1) + np.searchsorted(c, r, "left")
    from_ref = np.zeros(total, dtype=np.int8)
    from_ref[pos] = 1
    allv = np.empty(total, dtype=np.float64)
    allv[pos] = r
    allv[from_ref == 0] = c
    k1 = np.cumsum(from_ref, dtype=np.int64)
    end = np.empty(total, dtype=bool)
    np.not_equal(allv[1:], allv[:-1], out=end[:-1])
    end[-1] = True
    e = np.flatnonzero(end)
    k1 = k1[e]
    dd = k1 / n1 - (e + 1 - k1) / n2
    d = max(float(np.clip(-dd.min(), 0, 1)), float(dd.max()))
    w = float(np.dot(np.abs(dd[:-1]), np.diff(allv[e])))
    return d, w


def _pop_std(x: np.ndarray) -> float:
    return float(np.std(x)) if x.size else float("nan")


def categorical_drift_counts(name: str, labels: Sequence[str], rc: np.ndarray, cc: np.ndarray,
                             missing_ref: int, missing_cur: int) -> FeatureDrift:
    """Categorical statistics from per-category counts on each side (same category order)."""
    rc = np.asarray(rc, dtype=np.int64)
    cc = np.asarray(cc, dtype=np.int64)
    n1, n2 = int(rc.sum()), int(cc.sum())
    fd = FeatureDrift(name, "categorical", n1, n2, missing_ref, missing_cur)
    if n1 == 0 or n2 == 0:
        fd.note = f"no non-missing values in the {'reference' if n1 == 0 else 'current'} window"
        return fd
    fd.psi = psi_from_counts(rc, cc)
    fd.js_distance = js_from_counts(rc, cc)
    fd.chi2_pvalue = chi2_pvalue_from_counts(rc, cc)
    fd.n_bins = int(len(labels))
    fd.status = "pass"
    notes = []
    unseen = [lab for lab, a in zip(labels, rc) if a == 0]
    if unseen:
        shown = ", ".join(map(str, unseen[:5])) + (" …" if len(unseen) > 5 else "")
        notes.append(f"{len(unseen)} categor{'y' if len(unseen) == 1 else 'ies'} unseen in reference: {shown}")
    if len(labels) == 1:
        notes.append("single category")
    fd.note = "; ".join(notes) or None
    return fd


# --------------------------------------------------------------------------- frames


def feature_kind(series: pd.Series, name: str) -> str:
    dt = series.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dt):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
        raise InputError(f"feature {name!r} has unsupported dtype {dt}; cast it or leave it out")
    return "categorical"


def resolve_features(ref_cols: Sequence[str], cur_cols: Sequence[str], features: Iterable[str] | None,
                     categorical: Iterable[str] | None) -> tuple[list[str], set[str]]:
    ref_set, cur_set = set(ref_cols), set(cur_cols)
    if features is None:
        feats = list(ref_cols)
    else:
        feats = list(dict.fromkeys(features))
        if not feats:
            raise UsageError("features is empty: name at least one feature")
    missing_ref = [f for f in feats if f not in ref_set]
    if missing_ref:
        raise InputError(f"feature(s) missing from the reference data: {', '.join(map(str, missing_ref))}")
    missing_cur = [f for f in feats if f not in cur_set]
    if missing_cur:
        raise InputError(f"feature(s) missing from the current data: {', '.join(map(str, missing_cur))}")
    cats = set(categorical or ())
    unknown = cats - set(feats)
    if unknown:
        raise UsageError(f"categorical names features that are not compared: {', '.join(sorted(map(str, unknown)))}")
    return feats, cats


def kinds_for(ref_kinds: dict[str, str], cur_kinds: dict[str, str], feats: list[str], cats: set[str]) -> dict[str, str]:
    out = {}
    for f in feats:
        if f in cats:
            out[f] = "categorical"
            continue
        if ref_kinds[f] != cur_kinds[f]:
            raise InputError(
                f"feature {f!r} is {ref_kinds[f]} in the reference but {cur_kinds[f]} in the current data"
            )
        out[f] = ref_kinds[f]
    return out


def _numeric_values(s: pd.Series) -> tuple[np.ndarray, int, int]:
    """(sorted finite values, missing count incl. ±inf, ±inf count)."""
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(x)
    good = x[ok] if not ok.all() else x.copy()
    good.sort()
    n_inf = int(np.isinf(x).sum()) if not ok.all() else 0
    return good, int(x.size - good.size), n_inf


def _numeric_job(name: str, rs: pd.Series, cs: pd.Series) -> FeatureDrift:
    r, mr, ir = _numeric_values(rs)
    c, mc, ic = _numeric_values(cs)
    fd = numeric_drift_sorted(name, r, c, mr, mc)
    fd.inf_ref, fd.inf_cur = ir, ic
    if ir or ic:
        what = f"±inf: {ir} in the reference, {ic} in the current window (counted as missing)"
        fd.note = f"{fd.note}; {what}" if fd.note else what
    return fd


def category_labels(values) -> np.ndarray:
    """String labels of category values (the form the pre-aggregated layout uses)."""
    return np.asarray([str(v) for v in values], dtype=object)


def _categorical_job(name: str, rs: pd.Series, cs: pd.Series) -> FeatureDrift:
    rm, cm = rs.isna(), cs.isna()
    rv, cv = rs[~rm], cs[~cm]
    if not (pd.api.types.is_string_dtype(rv.dtype) or isinstance(rv.dtype, pd.CategoricalDtype)):
        rv = rv.astype(str)
    if not (pd.api.types.is_string_dtype(cv.dtype) or isinstance(cv.dtype, pd.CategoricalDtype)):
        cv = cv.astype(str)
    rv = rv.astype(object) if isinstance(rv.dtype, pd.CategoricalDtype) else rv
    cv = cv.astype(object) if isinstance(cv.dtype, pd.CategoricalDtype) else cv
    codes_r, uniq = pd.factorize(rv, sort=False)
    labels_r = category_labels(uniq)
    codes_c, uniq_c = pd.factorize(cv, sort=False)
    labels_c = category_labels(uniq_c)
    all_labels = np.array(sorted(set(labels_r) | set(labels_c)), dtype=object)
    pos = {lab: i for i, lab in enumerate(all_labels)}
    map_r = np.array([pos[lab] for lab in labels_r], dtype=np.int64)
    map_c = np.array([pos[lab] for lab in labels_c], dtype=np.int64)
    k = len(all_labels)
    rc = np.bincount(map_r[codes_r], minlength=k) if codes_r.size else np.zeros(k, np.int64)
    cc = np.bincount(map_c[codes_c], minlength=k) if codes_c.size else np.zeros(k, np.int64)
    return categorical_drift_counts(name, list(all_labels), rc, cc, int(rm.sum()), int(cm.sum()))


def default_threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    policy: DriftPolicy = DriftPolicy(),
    threads: int | None = None,
) -> DriftResult:
    """Exact drift statistics of every feature between two in-memory frames.

    ``features``: subset to compare (default: every reference column; all must exist on both
    sides). ``categorical``: names forced categorical (others: detected from dtype — numeric
    dtypes are numeric, bool/string/object/category are categorical).
    """
    if not isinstance(reference, pd.DataFrame) or not isinstance(current, pd.DataFrame):
        raise InputError("compute_drift needs two pandas DataFrames")
    if len(reference) == 0:
        raise InputError("the reference window has 0 rows")
    if len(current) == 0:
        raise InputError("the current window has 0 rows")
    feats, cats = resolve_features(list(reference.columns), list(current.columns), features, categorical)
    kinds = kinds_for(
        {f: feature_kind(reference[f], f) for f in feats if f not in cats},
        {f: feature_kind(current[f], f) for f in feats if f not in cats},
        feats, cats,
    )
    jobs = [
        (_numeric_job if kinds[f] == "numeric" else _categorical_job, f, reference[f], current[f])
        for f in feats
    ]
    threads = threads or default_threads()
    if threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda j: j[0](str(j[1]), j[2], j[3]), jobs))
    else:
        results = [fn(str(f), rs, cs) for fn, f, rs, cs in jobs]
    return finish(results, len(reference), len(current), policy, approximate=False, method="exact-sorted")


# --------------------------------------------------------------------------- files


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise InputError(f"{path}: unsupported file type (expected .csv or .parquet)")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def read_frame(path: Path | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into a frame; any failure is an ``InputError``."""
    path = Path(path)
    fmt = _file_format(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if columns is not None:
                have = set(pq.ParquetFile(path).schema_arrow.names)
                gone = [c for c in columns if c not in have]
                if gone:
                    raise InputError(f"{path}: missing column(s) {', '.join(map(str, gone))}")
            return pd.read_parquet(path, columns=list(columns) if columns is not None else None)
        frame = pd.read_csv(path, usecols=list(columns) if columns is not None else None)
    except InputError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types for a bad file
        raise InputError(f"{path}: cannot read ({_one_line(e)})") from e
    return frame


def compute_drift_files(
    reference: Path | str,
    current: Path | str,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    policy: DriftPolicy = DriftPolicy(),
    streaming: bool | None = None,
    batch_rows: int = 262_144,
    threads: int | None = None,
    streaming_threshold_bytes: int = 1 << 30,
) -> DriftResult:
    """Drift between two CSV/Parquet files.

    ``streaming=None`` streams when both files are Parquet and together exceed
    ``streaming_threshold_bytes`` (1 GiB); ``True`` forces it (Parquet only). Streaming reads
    row-group batches of ``batch_rows`` with bounded memory; see ``drift_stream``.
    """
    reference, current = Path(reference), Path(current)
    fr, fc = _file_format(reference), _file_format(current)
    for p in (reference, current):
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    both_parquet = fr == fc == "parquet"
    if streaming is None:
        streaming = both_parquet and (reference.stat().st_size + current.stat().st_size) > streaming_threshold_bytes
    if streaming:
        if not both_parquet:
            raise UsageError("streaming mode reads Parquet only: convert the CSV files or use streaming=False")
        from compliance.checks.drift_stream import compute_drift_parquet_stream

        return compute_drift_parquet_stream(
            reference, current, features=features, categorical=categorical, policy=policy, batch_rows=batch_rows
        )
    cols = list(features) if features is not None else None
    ref = read_frame(reference, cols)
    cur = read_frame(current, cols)
    return compute_drift(ref, cur, features=features, categorical=categorical, policy=policy, threads=threads)


def compute_drift_counts(counts, *, policy: DriftPolicy = DriftPolicy()) -> DriftResult:
    """Drift from pre-aggregated per-bin counts (see ``drift_counts`` for the layout)."""
    from compliance.checks.drift_counts import compute_drift_counts as _impl

    return _impl(counts, policy=policy)
