"""Drift statistics: agreement with scipy and with straightforward references, streaming mode,
pre-aggregated counts, bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from compliance.checks.drift import (
    DriftPolicy,
    compute_drift,
    compute_drift_counts,
    compute_drift_files,
    read_frame,
)
from compliance.checks.drift_counts import drift_counts_frame
from compliance.errors import InputError, UsageError

TOL = 1e-9


# --------------------------------------------------------------------------- references


def ref_bins(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts per decile bin, written the slow obvious way."""
    edges = sorted(set(np.quantile(ref, [i / 10 for i in range(1, 10)]).tolist()))
    def count(x):
        out = [0] * (len(edges) + 1)
        for v in x:
            i = 0
            while i < len(edges) and v > edges[i]:
                i += 1
            out[i] += 1
        return np.array(out)
    return count(ref), count(cur)


def ref_psi(rc, cc) -> float:
    rs = [a / sum(rc) for a in rc]
    cs = [a / sum(cc) for a in cc]
    total = 0.0
    for r, c in zip(rs, cs):
        r = r or 1e-4
        c = c or 1e-4
        total += (c - r) * math.log(c / r)
    return total


def check_numeric(fd, ref, cur):
    ref = np.asarray(ref, float)
    cur = np.asarray(cur, float)
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    ks = stats.ks_2samp(ref, cur)
    assert fd.ks_stat == pytest.approx(ks.statistic, abs=TOL)
    assert fd.ks_pvalue == pytest.approx(ks.pvalue, abs=TOL, rel=1e-9)
    w = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    assert fd.wasserstein == pytest.approx(w, abs=TOL, rel=1e-12)
    rc, cc = ref_bins(ref, cur)
    assert fd.psi == pytest.approx(ref_psi(rc, cc), abs=TOL)
    assert fd.js_distance == pytest.approx(jensenshannon(rc / rc.sum(), cc / cc.sum()), abs=TOL)
    assert fd.n_bins == len(rc)


def check_categorical(fd, ref: pd.Series, cur: pd.Series):
    r = ref.dropna().astype(str)
    c = cur.dropna().astype(str)
    cats = sorted(set(r) | set(c))
    rc = np.array([(r == k).sum() for k in cats])
    cc = np.array([(c == k).sum() for k in cats])
    assert fd.psi == pytest.approx(ref_psi(rc, cc), abs=TOL)
    assert fd.js_distance == pytest.approx(jensenshannon(rc / rc.sum(), cc / cc.sum()), abs=TOL)
    table = np.vstack([rc, cc])
    if len(cats) > 1:
        p = stats.chi2_contingency(table).pvalue
    else:
        p = 1.0
    assert fd.chi2_pvalue == pytest.approx(p, abs=TOL, rel=1e-9)


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("n_ref,n_cur", [(300, 200), (5000, 7000), (12000, 11000)])
@pytest.mark.parametrize("seed", [0, 1])
def test_numeric_random_matches_scipy(n_ref, n_cur, seed):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({
        "normal": rng.normal(size=n_ref),
        "shifted": rng.normal(size=n_ref),
        "heavy": rng.standard_cauchy(size=n_ref),
        "ties": rng.integers(0, 4, n_ref).astype(float),
        "int": rng.integers(-50, 50, n_ref),
    })
    cur = pd.DataFrame({
        "normal": rng.normal(size=n_cur),
        "shifted": rng.normal(0.7, 1.5, size=n_cur),
        "heavy": rng.standard_cauchy(size=n_cur) * 3,
        "ties": rng.integers(1, 6, n_cur).astype(float),
        "int": rng.integers(-40, 70, n_cur),
    })
    res = compute_drift(ref, cur)
    assert not res.approximate and res.method == "exact-sorted"
    for col in ref.columns:
        check_numeric(res.feature(col), ref[col], cur[col])
    if n_ref >= 5000:  # PSI on 10 bins is noisy for a few hundred rows
        assert res.feature("normal").status == "pass"
    assert res.feature("shifted").status == "fail"


def test_numeric_adversarial():
    rng = np.random.default_rng(7)
    n = 400
    const = np.full(n, 3.0)
    ref = pd.DataFrame({
        "const_same": const, "const_moved": const,
        "mostly_one": np.where(rng.random(n) < 0.95, 1.0, rng.normal(size=n)),
        "with_nan": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        "with_inf": np.where(rng.random(n) < 0.05, np.inf, rng.normal(size=n)),
        "tiny_scale": rng.normal(scale=1e-6, size=n),
        "outside": rng.uniform(0, 1, n),
    })
    cur = pd.DataFrame({
        "const_same": np.full(250, 3.0), "const_moved": np.full(250, 4.0),
        "mostly_one": np.where(rng.random(250) < 0.5, 1.0, rng.normal(size=250)),
        "with_nan": np.where(rng.random(250) < 0.6, np.nan, rng.normal(size=250)),
        "with_inf": np.where(rng.random(250) < 0.05, -np.inf, rng.normal(size=250)),
        "tiny_scale": rng.normal(scale=1e-6, size=250) + 1e-6,
        "outside": rng.uniform(5, 6, 250),
    })
    res = compute_drift(ref, cur)
    for col in ref.columns:
        check_numeric(res.feature(col), ref[col], cur[col])
    same, moved = res.feature("const_same"), res.feature("const_moved")
    assert same.psi == 0 and same.status == "pass" and same.n_bins == 2
    assert "constant reference column" in same.note
    assert moved.status == "fail" and moved.wasserstein == pytest.approx(1.0 / 0.001)
    nan = res.feature("with_nan")
    assert nan.missing_ref == int(ref["with_nan"].isna().sum()) and nan.n_ref + nan.missing_ref == n
    assert res.feature("with_inf").missing_ref == int(np.isinf(ref["with_inf"]).sum())
    assert res.feature("outside").psi > 5  # all current mass in the open top bin


def test_all_missing_and_single_category_and_unseen():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({
        "gone": [np.nan] * 100,
        "single": ["a"] * 100,
        "seg": rng.choice(["x", "y", "z"], 100),
        "flag": rng.random(100) < 0.3,
        "code": rng.integers(0, 3, 100),
        "ok": rng.normal(size=100),
    })
    cur = pd.DataFrame({
        "gone": rng.normal(size=80),
        "single": ["a"] * 79 + [None],
        "seg": rng.choice(["x", "y", "new1", "new2"], 80),
        "flag": rng.random(80) < 0.6,
        "code": rng.integers(0, 4, 80),
        "ok": rng.normal(size=80),
    })
    res = compute_drift(ref, cur, categorical=["code"])
    gone = res.feature("gone")
    assert gone.status == "error" and gone.psi is None and gone.missing_ref == 100
    assert "reference" in gone.note
    single = res.feature("single")
    assert single.kind == "categorical" and single.chi2_pvalue == 1.0 and single.psi == pytest.approx(0.0)
    assert single.missing_cur == 1 and "single category" in single.note
    seg = res.feature("seg")
    assert seg.n_bins == 5 and "2 categories unseen" in seg.note
    for col in ("single", "seg", "flag", "code"):
        check_categorical(res.feature(col), ref[col], cur[col])
    assert res.feature("flag").kind == "categorical"
    assert res.feature("code").kind == "categorical"
    # the errored feature does not count in the share but keeps the verdict at least 'warn'
    evaluated = [f for f in res.features if f.status != "error"]
    assert res.drifted_share == pytest.approx(sum(f.status == "fail" for f in evaluated) / len(evaluated))
    assert res.status in ("warn", "fail")
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["features"][0]["psi"] is None


def test_two_categories_uses_yates_like_scipy():
    ref = pd.DataFrame({"c": ["a"] * 30 + ["b"] * 70})
    cur = pd.DataFrame({"c": ["a"] * 45 + ["b"] * 55})
    fd = compute_drift(ref, cur).feature("c")
    expected = stats.chi2_contingency(np.array([[30, 70], [45, 55]])).pvalue
    assert fd.chi2_pvalue == pytest.approx(expected, rel=1e-12)
    assert fd.chi2_pvalue != pytest.approx(stats.chi2_contingency(np.array([[30, 70], [45, 55]]), correction=False).pvalue)


def test_policy_thresholds_and_dataset_verdict():
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=2000) for i in range(4)})
    cur = pd.DataFrame({f"f{i}": rng.normal(size=2000) + (2.0 if i < 2 else 0.0) for i in range(4)})
    res = compute_drift(ref, cur)
    assert [f.status for f in res.features] == ["fail", "fail", "pass", "pass"]
    assert res.drifted_share == 0.5 and res.status == "fail"
    res = compute_drift(ref, cur, policy=DriftPolicy(drift_share=0.75))
    assert res.status == "warn"
    psi = res.feature("f2").psi
    res = compute_drift(ref, cur, features=["f2"], policy=DriftPolicy(psi_warn=psi / 2, psi_fail=psi))
    assert res.feature("f2").status == "fail" and res.status == "fail"
    res = compute_drift(ref, cur, features=["f2"], policy=DriftPolicy(psi_warn=psi / 2, psi_fail=psi * 2))
    assert res.feature("f2").status == "warn" and res.status == "warn"
    with pytest.raises(UsageError):
        DriftPolicy(psi_warn=0.3, psi_fail=0.2)


def test_threads_give_identical_results():
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=3000) for i in range(6)})
    cur = pd.DataFrame({f"f{i}": rng.normal(size=2000) * (1 + i / 10) for i in range(6)})
    assert compute_drift(ref, cur, threads=1).to_dict() == compute_drift(ref, cur, threads=2).to_dict()


# --------------------------------------------------------------------------- files, counts


def _mixed_frames(seed=0, n_ref=3000, n_cur=2500):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({
        "amount": rng.lognormal(3, 1, n_ref),
        "score": np.where(rng.random(n_ref) < 0.1, np.nan, rng.normal(size=n_ref)),
        "ties": rng.integers(0, 3, n_ref).astype(float),
        "segment": rng.choice(["retail", "sme", "corp"], n_ref),
    })
    cur = pd.DataFrame({
        "amount": rng.lognormal(3.3, 1, n_cur),
        "score": np.where(rng.random(n_cur) < 0.2, np.nan, rng.normal(0.2, 1, n_cur)),
        "ties": rng.integers(0, 4, n_cur).astype(float),
        "segment": pd.Series(rng.choice(["retail", "sme", "corp", "gov"], n_cur)).where(rng.random(n_cur) > 0.05),
    })
    return ref, cur


def _same_binned_stats(a, b, approx_ks=False):
    for fa, fb in zip(a.features, b.features):
        assert fa.feature == fb.feature and fa.kind == fb.kind
        assert (fa.n_ref, fa.n_cur, fa.missing_ref, fa.missing_cur) == (fb.n_ref, fb.n_cur, fb.missing_ref, fb.missing_cur)
        for attr in ("psi", "js_distance", "chi2_pvalue"):
            va, vb = getattr(fa, attr), getattr(fb, attr)
            assert (va is None) == (vb is None), (fa.feature, attr)
            if va is not None:
                assert va == pytest.approx(vb, abs=TOL, rel=1e-12), (fa.feature, attr)
        assert fa.status == fb.status


def test_counts_layout_matches_raw(tmp_path):
    ref, cur = _mixed_frames()
    raw = compute_drift(ref, cur)
    counts = drift_counts_frame(ref, cur)
    path = tmp_path / "counts.csv"
    counts.to_csv(path, index=False)
    for src in (counts, path):
        agg = compute_drift_counts(src)
        assert agg.method == "pre-aggregated-counts"
        _same_binned_stats(raw, agg)
        assert agg.status == raw.status and agg.drifted_share == raw.drifted_share
        assert agg.feature("amount").ks_stat is None


def test_counts_with_repeated_edges_like_sql(tmp_path):
    # percentile_cont can repeat an edge; the SQL then leaves some bin indices empty on both sides
    ref = pd.DataFrame({"x": [1.0] * 60 + [2.0, 3.0, 4.0, 5.0] * 10})
    cur = pd.DataFrame({"x": [1.0] * 30 + [2.0, 3.0, 4.0, 6.0] * 15})
    edges = np.quantile(ref["x"], np.arange(1, 10) / 10)
    rows = []
    for side, f in (("reference", ref), ("current", cur)):
        idx = np.array([(edges < v).sum() for v in f["x"]])
        for i, c in zip(*np.unique(idx, return_counts=True)):
            up = edges[i] if i < 9 else np.inf
            rows.append(("x", "numeric", side, str(i), str(up), int(c)))
    df = pd.DataFrame(rows, columns=["feature", "kind", "side", "bin", "upper", "count"])
    _same_binned_stats(compute_drift(ref, cur), compute_drift_counts(df))


def test_counts_bad_layout(tmp_path):
    ref, cur = _mixed_frames()
    counts = drift_counts_frame(ref, cur)
    with pytest.raises(InputError, match="lacks column"):
        compute_drift_counts(counts.drop(columns=["upper"]))
    bad = counts.copy()
    bad.loc[0, "count"] = -1
    with pytest.raises(InputError, match="non-negative integer"):
        compute_drift_counts(bad)
    with pytest.raises(InputError, match="no current rows"):
        compute_drift_counts(counts[~((counts.feature == "segment") & (counts.side == "current"))])
    bad = counts.copy()
    bad.loc[bad.side == "current", "count"] = 0
    with pytest.raises(InputError, match="current window has 0 rows"):
        compute_drift_counts(bad)
    with pytest.raises(InputError, match="no such file"):
        compute_drift_counts(tmp_path / "nope.csv")


def test_files_csv_and_parquet(tmp_path):
    ref, cur = _mixed_frames(1)
    raw = compute_drift(ref, cur)
    ref.to_csv(tmp_path / "r.csv", index=False)
    cur.to_csv(tmp_path / "c.csv", index=False)
    ref.to_parquet(tmp_path / "r.parquet")
    cur.to_parquet(tmp_path / "c.parquet")
    a = compute_drift_files(tmp_path / "r.csv", tmp_path / "c.csv")
    b = compute_drift_files(tmp_path / "r.parquet", tmp_path / "c.parquet", streaming=False)
    _same_binned_stats(raw, a)
    assert b.to_dict() == raw.to_dict()
    sub = compute_drift_files(tmp_path / "r.parquet", tmp_path / "c.parquet", features=["segment", "ties"], streaming=False)
    assert [f.feature for f in sub.features] == ["segment", "ties"]
    forced = compute_drift_files(tmp_path / "r.csv", tmp_path / "c.csv", categorical=["ties"])
    assert forced.feature("ties").kind == "categorical" and forced.feature("ties").chi2_pvalue is not None


# --------------------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path):
    ref, cur = _mixed_frames(2)
    with pytest.raises(InputError, match="missing from the current data: score"):
        compute_drift(ref, cur.drop(columns=["score"]))
    with pytest.raises(InputError, match="missing from the reference data: nope"):
        compute_drift(ref, cur, features=["amount", "nope"])
    with pytest.raises(InputError, match="current window has 0 rows"):
        compute_drift(ref, cur.iloc[:0])
    with pytest.raises(InputError, match="reference window has 0 rows"):
        compute_drift(ref.iloc[:0], cur)
    mixed = cur.assign(amount=cur["amount"].astype(str))
    with pytest.raises(InputError, match="'amount' is numeric in the reference but categorical in the current"):
        compute_drift(ref, mixed)
    with pytest.raises(InputError, match="unsupported dtype"):
        compute_drift(ref.assign(t=pd.Timestamp("2024-01-01")), cur.assign(t=pd.Timestamp("2024-01-02")))
    (tmp_path / "garbage.parquet").write_bytes(b"not a parquet file at all")
    with pytest.raises(InputError, match="cannot read") as e:
        read_frame(tmp_path / "garbage.parquet")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="no such file"):
        read_frame(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="unsupported file type"):
        read_frame(tmp_path / "data.xlsx")
    (tmp_path / "empty.csv").write_text("amount,score\n")
    ref.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(InputError, match="current window has 0 rows"):
        compute_drift_files(tmp_path / "r.csv", tmp_path / "empty.csv", features=["amount", "score"])
    with pytest.raises(UsageError, match="not compared: zzz"):
        compute_drift(ref, cur, categorical=["zzz"])
    with pytest.raises(UsageError, match="Parquet only"):
        compute_drift_files(tmp_path / "r.csv", tmp_path / "r.csv", streaming=True)


# --------------------------------------------------------------------------- streaming


def _write_row_groups(df: pd.DataFrame, path, rows_per_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=rows_per_group)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1


def _stream_frames(seed=4, n_ref=40_000, n_cur=30_000):
    rng = np.random.default_rng(seed)
    ref, cur = _mixed_frames(seed, n_ref, n_cur)
    ref["cauchy"] = rng.standard_cauchy(n_ref)
    cur["cauchy"] = rng.standard_cauchy(n_cur) * 1.5 + 0.3
    ref["const"] = 7.0
    cur["const"] = np.where(rng.random(n_cur) < 0.5, 7.0, 8.0)
    ref["spike"] = np.where(rng.random(n_ref) < 0.7, 0.0, rng.normal(size=n_ref))
    cur["spike"] = np.where(rng.random(n_cur) < 0.5, 0.0, rng.normal(size=n_cur))
    ref["count"] = rng.poisson(3, n_ref)
    cur["count"] = rng.poisson(3.2, n_cur)
    return ref, cur


@pytest.mark.parametrize("collect_cap", [1 << 16, 64])
def test_streaming_matches_exact_within_bounds(tmp_path, collect_cap):
    from compliance.checks.drift_stream import compute_drift_parquet_stream

    ref, cur = _stream_frames()
    _write_row_groups(ref, tmp_path / "r.parquet", 7_000)
    _write_row_groups(cur, tmp_path / "c.parquet", 6_000)
    exact = compute_drift(ref, cur)
    # collect_cap=64 forces the refinement passes of the exact order statistics
    st = compute_drift_parquet_stream(tmp_path / "r.parquet", tmp_path / "c.parquet", batch_rows=5_000,
                                      collect_cap=collect_cap)
    assert st.approximate and st.method.startswith("streaming-grid")
    _same_binned_stats(exact, st)
    for fe, fs in zip(exact.features, st.features):
        if fe.kind != "numeric":
            continue
        assert fs.n_bins == fe.n_bins
        # KS on the grid is a lower bound of the exact D, within the stated bound
        assert fs.ks_stat <= fe.ks_stat + 1e-12, fe.feature
        assert fe.ks_stat - fs.ks_stat <= fs.ks_error_bound + 1e-12, fe.feature
        assert abs(fs.wasserstein - fe.wasserstein) <= fs.wasserstein_error_bound * (1 + 1e-9) + 1e-12, fe.feature
        assert fs.ks_error_bound < 0.01 or fe.feature in ("const", "spike", "ties", "count")
    # the bounds are useful, not vacuous, on continuous data
    assert st.feature("amount").ks_error_bound < 1e-3
    assert st.feature("amount").wasserstein_error_bound < 1e-2
    assert st.feature("cauchy").wasserstein_error_bound < 0.05 * st.feature("cauchy").wasserstein


def test_streaming_auto_and_errors(tmp_path):
    ref, cur = _stream_frames(n_ref=3000, n_cur=2000)
    _write_row_groups(ref, tmp_path / "r.parquet", 1000)
    _write_row_groups(cur, tmp_path / "c.parquet", 1000)
    auto = compute_drift_files(tmp_path / "r.parquet", tmp_path / "c.parquet", streaming_threshold_bytes=1)
    assert auto.approximate
    assert not compute_drift_files(tmp_path / "r.parquet", tmp_path / "c.parquet").approximate
    _write_row_groups(cur.assign(amount=cur["amount"].astype(str)), tmp_path / "bad.parquet", 1000)
    with pytest.raises(InputError, match="numeric in the reference but categorical"):
        compute_drift_files(tmp_path / "r.parquet", tmp_path / "bad.parquet", streaming=True)
    cur.iloc[:0].to_parquet(tmp_path / "empty.parquet")
    cur.drop(columns=["segment"]).to_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(InputError, match="current window has 0 rows"):
        compute_drift_files(tmp_path / "r.parquet", tmp_path / "empty.parquet", streaming=True)
    with pytest.raises(InputError, match="missing from the reference data: nope"):
        compute_drift_files(tmp_path / "r.parquet", tmp_path / "c.parquet", features=["nope"], streaming=True)
    with pytest.raises(InputError, match="missing from the current data: segment"):
        compute_drift_files(tmp_path / "r.parquet", tmp_path / "nocol.parquet", streaming=True, features=["segment"])


def test_newly_missing_values_are_judged_not_hidden():
    """Issue 21: 20 % of a feature newly missing fails even when the values left do not drift;
    ±inf are counted, reported and excluded."""
    from compliance.checks.drift import DriftPolicy, compute_drift

    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"a": rng.standard_normal(5000), "b": rng.standard_normal(5000)})
    cur = pd.DataFrame({"a": rng.standard_normal(5000), "b": rng.standard_normal(5000)})
    cur.loc[: 999, "a"] = np.nan  # 20 % newly missing, the rest from the same distribution
    cur.loc[:149, "b"] = np.inf
    cur.loc[150:199, "b"] = -np.inf  # 4 % ±inf: counted and reported, below missing_warn (5 %)
    res = compute_drift(ref, cur)
    a, b = res.feature("a"), res.feature("b")
    assert a.psi < 0.1 and a.missing_cur == 1000 and a.missing_rate_change == pytest.approx(0.2)
    assert a.status == "fail" and "missing share 0.0% → 20.0%" in a.note
    assert (b.inf_ref, b.inf_cur, b.missing_cur, b.n_cur) == (0, 200, 200, 4800)
    assert b.status == "pass" and "±inf: 0 in the reference, 200 in the current window" in b.note
    assert res.to_dict()["features"][1]["inf_cur"] == 200
    # thresholds are policy
    lax = compute_drift(ref, cur, policy=DriftPolicy(missing_warn=0.25, missing_fail=0.5))
    assert lax.feature("a").status == "pass"
    strict = compute_drift(ref, cur, policy=DriftPolicy(missing_warn=0.01, missing_fail=0.03))
    assert strict.feature("b").status == "fail"
    with pytest.raises(Exception, match="missing_warn"):
        DriftPolicy(missing_warn=0.5, missing_fail=0.1)
