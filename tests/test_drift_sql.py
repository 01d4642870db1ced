"""Drift pushed down to a SQL engine (compliance.checks.drift_sql) against the in-memory exact path.

The same two frames are written to a real PostgreSQL and to SQLite; the push-down result must give
PSI, JS and chi-square equal to ``compute_drift`` to 1e-12 and KS / Wasserstein within the error
bounds it reports, on adversarial data: ties, a constant column, NULLs, NaN, ±inf, heavy tails,
categories unseen in the reference, a column missing on one side."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine

from compliance.checks.drift import compute_drift
from compliance.checks.drift_sql import compute_drift_sql
from compliance.errors import InputError


def _frames(seed: int = 0, n_ref: int = 6000, n_cur: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def side(n, shift, unseen):
        heavy = rng.lognormal(0, 2.5, n)
        heavy[:3] = [1e12, -1e9, 0.0]
        ties = rng.integers(0, 4, n).astype(float)
        gauss = rng.normal(shift, 1, n)
        gauss[rng.random(n) < 0.05] = np.nan  # NULLs
        with_inf = rng.normal(0, 1, n)
        with_inf[:7] = np.inf
        with_inf[7:9] = -np.inf
        cats = rng.choice(["a", "b", "c"] + (["z"] if unseen else []), n)
        cats = np.where(rng.random(n) < 0.02, None, cats)
        return pd.DataFrame({"heavy": heavy, "ties": ties, "gauss": gauss, "const": np.full(n, 3.25),
                             "with_inf": with_inf, "segment": cats,
                             "small_int": rng.integers(-2, 3, n).astype(np.int64)})

    return side(n_ref, 0.0, False), side(n_cur, 0.4, True)


def _load(url: str, ref: pd.DataFrame, cur: pd.DataFrame) -> None:
    eng = create_engine(url)
    with eng.begin() as conn:
        ref.to_sql("ref_rows", conn, index=False, if_exists="replace")
        cur.to_sql("cur_rows", conn, index=False, if_exists="replace")
    eng.dispose()


@pytest.fixture
def warehouse(db_url):
    """A real SQLite file and a real PostgreSQL database (the test store's own, on each backend)."""
    return db_url


def _compare(exact, pushed):
    assert exact.status == pushed.status
    for fe in exact.features:
        fp = pushed.feature(fe.feature)
        assert (fe.kind, fe.n_ref, fe.n_cur, fe.missing_ref, fe.missing_cur) == \
            (fp.kind, fp.n_ref, fp.n_cur, fp.missing_ref, fp.missing_cur), fe.feature
        assert fe.status == fp.status, fe.feature
        for key in ("psi", "js_distance", "chi2_pvalue"):
            a, b = getattr(fe, key), getattr(fp, key)
            assert (a is None) == (b is None), (fe.feature, key)
            if a is not None:
                assert abs(a - b) <= 1e-12 * max(1.0, abs(a)), (fe.feature, key, a, b)
        if fe.kind == "numeric" and fe.ks_stat is not None:
            assert fp.ks_stat <= fe.ks_stat + 1e-12 and fe.ks_stat - fp.ks_stat <= fp.ks_error_bound + 1e-12, fe.feature
            assert abs(fe.wasserstein - fp.wasserstein) <= fp.wasserstein_error_bound + 1e-9, fe.feature
            # a fine grid, not a token bound (the lognormal column piles 3 % into the cells near 0, as streaming does)
            assert fp.ks_error_bound < 0.05, fe.feature
        assert (fe.inf_ref, fe.inf_cur) == (fp.inf_ref, fp.inf_cur), fe.feature


def test_pushdown_equals_the_exact_path(warehouse):
    ref, cur = _frames()
    _load(warehouse, ref, cur)
    exact = compute_drift(ref, cur, categorical=["segment"])
    got = compute_drift_sql(warehouse, "SELECT * FROM ref_rows", "cur_rows", categorical=["segment"])
    _compare(exact, got.result)
    seg = got.result.feature("segment")
    assert "unseen in reference: z" in seg.note
    assert got.result.feature("const").note.startswith("constant reference column")
    assert got.statements >= 5 and len(got.aggregates_sha256) == 64
    again = compute_drift_sql(warehouse, "SELECT * FROM ref_rows", "cur_rows", categorical=["segment"])
    assert again.aggregates_sha256 == got.aggregates_sha256  # reproducible from the aggregates alone


def test_pushdown_subset_and_filters(warehouse):
    ref, cur = _frames(seed=3, n_ref=3000, n_cur=2500)
    _load(warehouse, ref, cur)
    exact = compute_drift(ref[ref.small_int >= 0], cur[cur.small_int >= 0], features=["heavy", "ties", "segment"])
    got = compute_drift_sql(warehouse, "SELECT heavy, ties, segment FROM ref_rows WHERE small_int >= 0",
                            "SELECT heavy, ties, segment FROM cur_rows WHERE small_int >= 0;")
    _compare(exact, got.result)


def test_bad_query_missing_column_unreachable_engine_are_one_line(warehouse, tmp_path):
    ref, cur = _frames(n_ref=200, n_cur=200)
    _load(warehouse, ref, cur)
    with pytest.raises(InputError, match="query failed"):
        compute_drift_sql(warehouse, "SELECT nope FROM ref_rows", "cur_rows")
    with pytest.raises(InputError, match="not in the current|missing|lacks"):
        compute_drift_sql(warehouse, "ref_rows", "SELECT heavy FROM cur_rows")
    with pytest.raises(InputError, match="cannot reach the warehouse"):
        compute_drift_sql("postgresql+psycopg://nobody@127.0.0.1:1/none", "ref_rows", "cur_rows")
    with pytest.raises(InputError, match="0 rows"):
        compute_drift_sql(warehouse, "SELECT * FROM ref_rows WHERE 1 = 0", "cur_rows")


def test_exact_deciles_resolve_on_adversarial_columns(tmp_path):
    """Values a histogram cannot split in one pass (adjacent doubles, a huge range) still resolve."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    x = np.concatenate([np.full(500, 1.0), np.nextafter(np.full(500, 1.0), 2), [1e300, -1e300]])
    ref = pd.DataFrame({"x": x})
    cur = pd.DataFrame({"x": np.concatenate([np.full(400, 1.0), [2.0] * 10])})
    _load(url, ref, cur)
    exact = compute_drift(ref, cur)
    got = compute_drift_sql(url, "ref_rows", "cur_rows")
    f, g = exact.feature("x"), got.result.feature("x")
    assert abs(f.psi - g.psi) <= 1e-12 and abs(f.js_distance - g.js_distance) <= 1e-12
    assert math.isfinite(g.wasserstein)


# ---------------------------------------------------------------- the check, end to end through the CLI
def _check_count(url):
    from sqlalchemy import func, select

    from compliance.store.engine import session_scope
    from compliance.store.ledger import head
    from compliance.store.models import Check

    with session_scope(url, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Check)), head(s)


def test_check_drift_on_a_warehouse_records_queries_engine_and_aggregates(cli, tmp_path):
    import json

    from tests.helpers import weights_file

    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "2", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"),
               "--data-window", "2025-01-01..2025-06-30")[0] == 0
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"income": rng.lognormal(10, 1, 4000), "utilisation": rng.uniform(0, 1, 4000),
                        "region": rng.choice(["N", "S", "E"], 4000), "default_12m": rng.integers(0, 2, 4000)})
    cur = pd.DataFrame({"income": rng.lognormal(10.6, 1, 3000), "utilisation": rng.uniform(0, 1, 3000),
                        "region": rng.choice(["N", "S", "E", "W"], 3000), "default_12m": rng.integers(0, 2, 3000)})
    wh = f"sqlite:///{tmp_path / 'dwh.db'}"
    _load(wh, ref, cur)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    before = _check_count(cli.url)
    args = ("check", "drift", "m", "--version", "v1", "--warehouse", wh, "--reference", "sql:SELECT * FROM ref_rows")
    # a bad query, a missing column, a window from the future: one line each, nothing recorded
    for bad, match in ((("--current", "sql:SELECT * FROM nowhere"), "query failed"),
                       (("--current", "sql:SELECT income FROM cur_rows"), "lack|missing|not in"),
                       (("--current", "sql:cur_rows", "--window", "2099-01-01..2099-03-31"), "look-ahead"),
                       (("--current", str(tmp_path / "cur.parquet")), "both sides")):
        code, out, err = cli(*args, *bad)
        assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(match, err), err
    assert _check_count(cli.url) == before
    code, out, err = cli(*args, "--current", "sql:cur_rows", "--window", "2025-07-01..2025-09-30", "--json")
    assert code == 0, err
    c = json.loads(out)
    p = c["parameters"]
    assert p["pushdown"]["engine"] == "sqlite" and p["pushdown"]["statements"] >= 5
    assert p["reference_data"]["query"] == "SELECT * FROM ref_rows" and p["current_data"]["window"] == ["2025-07-01", "2025-09-30"]
    assert c["input_hashes"]["aggregates"] == p["pushdown"]["aggregates_sha256"]
    # the same data as files through the in-memory exact path: the same PSI, JS and chi-square per feature
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--reference", tmp_path / "ref.parquet",
                         "--current", tmp_path / "cur.parquet", "--window", "2025-07-01..2025-09-30", "--json")
    assert code == 0, err
    f = {x["feature"]: x for x in json.loads(out)["features"]}
    assert set(f) == {x["feature"] for x in c["features"]}
    for x in c["features"]:
        for key in ("psi", "js_distance", "chi2_pvalue"):
            if x[key] is not None:
                assert abs(x[key] - f[x["feature"]][key]) <= 1e-12, (x["feature"], key)
        assert x["status"] == f[x["feature"]]["status"]
    assert c["status"] == json.loads(out)["status"]
