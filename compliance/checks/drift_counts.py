"""Drift from pre-aggregated bin counts (data that lives in a warehouse).

Layout — one CSV (or frame) with the columns ``feature,kind,side,bin,upper,count``:

``feature``  feature name
``kind``     ``numeric`` or ``categorical``
``side``     ``reference`` or ``current``
``bin``      numeric: the bin index 0..B-1; categorical: the category label (compared as text);
             the label ``__missing__`` (either kind) carries the count of missing values
``upper``    numeric only: the bin's inclusive upper edge (the reference decile edges, see
             ``compliance.checks.drift``), empty or ``inf`` for the last bin; must agree between
             the two sides; empty for categorical rows
``count``    a non-negative integer; a bin missing on one side counts 0

Numeric bins are right-closed: bin ``i`` holds ``e_{i-1} < x <= e_i``, i.e. its index is the
number of edges strictly below ``x``. One GROUP BY produces it, e.g. in PostgreSQL::

    WITH e AS (SELECT percentile_cont(ARRAY[.1,.2,.3,.4,.5,.6,.7,.8,.9])
                      WITHIN GROUP (ORDER BY amount) AS q FROM reference_window),
    v AS (SELECT 'reference' AS side, amount FROM reference_window
          UNION ALL SELECT 'current', amount FROM current_window)
    SELECT 'amount' AS feature, 'numeric' AS kind, side,
           CASE WHEN amount IS NULL THEN '__missing__'
                ELSE (SELECT count(*) FROM unnest(e.q) t WHERE t < amount)::text END AS bin,
           CASE WHEN amount IS NULL THEN NULL
                ELSE e.q[(SELECT count(*) FROM unnest(e.q) t WHERE t < amount) + 1] END AS upper,
           count(*) AS count
    FROM v, e GROUP BY 1, 2, 3, 4, 5;

(``percentile_cont`` is the same linear, type-7 quantile numpy uses, so the edges match.)
Categorical: ``SELECT 'segment', 'categorical', side, coalesce(segment, '__missing__'), NULL,
count(*) … GROUP BY 1, 2, 3, 4``.

PSI, JS and the chi-square p-value are the same as on the raw data (tested); KS and Wasserstein
need the values themselves and are reported as None with a note.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from compliance.checks.drift import (
    DriftPolicy,
    DriftResult,
    FeatureDrift,
    categorical_drift_counts,
    category_labels,
    feature_kind,
    finish,
    js_from_counts,
    kinds_for,
    psi_from_counts,
    quantile_edges_from_order_stats,
    resolve_features,
)
from compliance.errors import InputError

COLUMNS = ["feature", "kind", "side", "bin", "upper", "count"]
MISSING = "__missing__"
SIDES = ("reference", "current")


def _load(counts) -> pd.DataFrame:
    if isinstance(counts, pd.DataFrame):
        df = counts.copy()
    else:
        path = Path(counts)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as e:
            raise InputError(f"{path}: cannot read counts ({str(e).strip().splitlines()[0]})") from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"counts table lacks column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})")
    if df.empty:
        raise InputError("counts table has no rows")
    df = df[COLUMNS].copy()
    for c in ("feature", "kind", "side", "bin"):
        df[c] = df[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    bad_side = sorted(set(df["side"]) - set(SIDES))
    if bad_side:
        raise InputError(f"counts table: side must be reference or current, got {bad_side[0]!r}")
    bad_kind = sorted(set(df["kind"]) - {"numeric", "categorical"})
    if bad_kind:
        raise InputError(f"counts table: kind must be numeric or categorical, got {bad_kind[0]!r}")
    cnt = pd.to_numeric(df["count"], errors="coerce")
    if cnt.isna().any() or (cnt < 0).any() or (cnt != np.floor(cnt)).any():
        row = int(np.flatnonzero((cnt.isna() | (cnt < 0) | (cnt != np.floor(cnt))).to_numpy())[0])
        raise InputError(f"counts table row {row + 1}: count must be a non-negative integer, got {df['count'].iloc[row]!r}")
    df["count"] = cnt.astype(np.int64)
    up = df["upper"].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip())
    df["upper"] = pd.to_numeric(up.replace("", "inf"), errors="coerce")
    if df["upper"].isna().any():
        row = int(np.flatnonzero(df["upper"].isna().to_numpy())[0])
        raise InputError(f"counts table row {row + 1}: upper edge {up.iloc[row]!r} is not a number")
    return df


def _numeric_feature(name: str, g: pd.DataFrame) -> FeatureDrift:
    miss = g[g["bin"] == MISSING]
    mr = int(miss.loc[miss["side"] == "reference", "count"].sum())
    mc = int(miss.loc[miss["side"] == "current", "count"].sum())
    b = g[g["bin"] != MISSING]
    idx = pd.to_numeric(b["bin"], errors="coerce")
    if idx.isna().any() or (idx < 0).any() or (idx != np.floor(idx)).any():
        raise InputError(f"counts table: numeric feature {name!r} has a bin that is not an index: {b['bin'][idx.isna()].iloc[0] if idx.isna().any() else idx.min()!r}")
    b = b.assign(idx=idx.astype(np.int64))
    uppers = b.groupby("idx")["upper"].agg(["min", "max"])
    if (uppers["min"] != uppers["max"]).any():
        i = int(uppers.index[(uppers["min"] != uppers["max"]).to_numpy()][0])
        raise InputError(f"counts table: numeric feature {name!r} bin {i} has different upper edges on the two sides")
    up = uppers["min"].to_numpy()
    if np.any(np.diff(up) < 0):
        raise InputError(f"counts table: numeric feature {name!r} upper edges are not increasing with the bin index")
    if up.size and math.isfinite(up[-1]):
        raise InputError(f"counts table: numeric feature {name!r} last bin must be open (upper empty or inf)")
    # Merge bins sharing an upper edge (repeated quantile edges); both-empty bins change nothing.
    groups = np.unique(up, return_inverse=True)[1]
    pos = dict(zip(uppers.index.to_numpy(), groups))
    k = int(groups.max()) + 1 if groups.size else 0
    rc = np.zeros(k, np.int64)
    cc = np.zeros(k, np.int64)
    for side, arr in (("reference", rc), ("current", cc)):
        s = b[b["side"] == side]
        np.add.at(arr, np.array([pos[i] for i in s["idx"]], dtype=np.int64), s["count"].to_numpy())
    n1, n2 = int(rc.sum()), int(cc.sum())
    fd = FeatureDrift(name, "numeric", n1, n2, mr, mc)
    if n1 == 0 or n2 == 0:
        fd.note = f"no non-missing values in the {'reference' if n1 == 0 else 'current'} window"
        return fd
    fd.psi = psi_from_counts(rc, cc)
    fd.js_distance = js_from_counts(rc, cc)
    fd.n_bins = k
    fd.status = "pass"
    fd.note = "pre-aggregated counts: KS and Wasserstein need raw values"
    return fd


def _categorical_feature(name: str, g: pd.DataFrame) -> FeatureDrift:
    miss = g[g["bin"] == MISSING]
    mr = int(miss.loc[miss["side"] == "reference", "count"].sum())
    mc = int(miss.loc[miss["side"] == "current", "count"].sum())
    b = g[g["bin"] != MISSING]
    tab = b.pivot_table(index="bin", columns="side", values="count", aggfunc="sum", fill_value=0)
    tab = tab.reindex(columns=list(SIDES), fill_value=0)
    tab = tab[(tab["reference"] + tab["current"]) > 0].sort_index()
    return categorical_drift_counts(name, list(tab.index), tab["reference"].to_numpy(), tab["current"].to_numpy(), mr, mc)


def compute_drift_counts(counts, *, policy: DriftPolicy = DriftPolicy()) -> DriftResult:
    """Drift from a counts table (path to CSV or a frame in the layout above)."""
    df = _load(counts)
    features: list[FeatureDrift] = []
    n_ref = n_cur = 0
    for name, g in df.groupby("feature", sort=False):
        kinds = set(g["kind"])
        if len(kinds) != 1:
            raise InputError(f"counts table: feature {name!r} is both numeric and categorical")
        sides = set(g["side"])
        for side in SIDES:
            if side not in sides:
                raise InputError(f"counts table: feature {name!r} has no {side} rows")
        fd = _numeric_feature(name, g) if kinds == {"numeric"} else _categorical_feature(name, g)
        features.append(fd)
        n_ref = max(n_ref, fd.n_ref + fd.missing_ref)
        n_cur = max(n_cur, fd.n_cur + fd.missing_cur)
    if n_cur == 0:
        raise InputError("the current window has 0 rows in the counts table")
    if n_ref == 0:
        raise InputError("the reference window has 0 rows in the counts table")
    return finish(features, n_ref, n_cur, policy, approximate=False, method="pre-aggregated-counts")


def drift_counts_frame(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The counts table the SQL above would produce, built from raw frames (reference layout)."""
    feats, cats = resolve_features(list(reference.columns), list(current.columns), features, categorical)
    kinds = kinds_for(
        {f: feature_kind(reference[f], f) for f in feats if f not in cats},
        {f: feature_kind(current[f], f) for f in feats if f not in cats},
        feats, cats,
    )
    rows: list[tuple] = []
    for f in feats:
        if kinds[f] == "numeric":
            r = reference[f].to_numpy(dtype=np.float64, na_value=np.nan)
            r_ok = np.sort(r[np.isfinite(r)])
            edges = (
                quantile_edges_from_order_stats(lambda k: r_ok[k], r_ok.size) if r_ok.size else np.array([])
            )
            uppers = np.concatenate([edges, [np.inf]])
            for side, frame in (("reference", reference), ("current", current)):
                x = frame[f].to_numpy(dtype=np.float64, na_value=np.nan)
                ok = np.isfinite(x)
                idx = np.searchsorted(edges, x[ok], side="left")  # edges strictly below x
                cnt = np.bincount(idx, minlength=uppers.size)
                rows += [(str(f), "numeric", side, str(i), repr(float(uppers[i])), int(c)) for i, c in enumerate(cnt) if c]
                if (~ok).sum():
                    rows.append((str(f), "numeric", side, MISSING, "", int((~ok).sum())))
        else:
            for side, frame in (("reference", reference), ("current", current)):
                s = frame[f]
                m = s.isna()
                vc = pd.Series(category_labels(s[~m].to_numpy())).value_counts(sort=False)
                rows += [(str(f), "categorical", side, str(k), "", int(v)) for k, v in vc.items()]
                if m.sum():
                    rows.append((str(f), "categorical", side, MISSING, "", int(m.sum())))
    return pd.DataFrame(rows, columns=COLUMNS)
