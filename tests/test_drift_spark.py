"""Drift pushed down to Spark (local mode, Java 17 from Debian's packages) against the in-memory
exact path: the same adversarial frames as tests/test_drift_sql.py, read by Spark from Parquet."""

from __future__ import annotations

import pytest

from compliance.checks.drift import compute_drift
from compliance.checks.drift_sql import compute_drift_spark
from compliance.errors import InputError
from tests.test_drift_sql import _compare, _frames

pyspark = pytest.importorskip("pyspark", reason="the spark extra is part of the test extra; install .[test]")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    s = (SparkSession.builder.master("local[2]").appName("compliance-tests")
         .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
         .config("spark.driver.memory", "1g").getOrCreate())
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def test_spark_pushdown_equals_the_exact_path(spark, tmp_path):
    ref, cur = _frames(seed=11, n_ref=5000, n_cur=4000)
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    exact = compute_drift(ref, cur, categorical=["segment"])
    df_ref = spark.read.parquet(str(tmp_path / "ref.parquet"))
    got = compute_drift_spark(spark, df_ref, f"SELECT * FROM parquet.`{tmp_path / 'cur.parquet'}`", categorical=["segment"])
    _compare(exact, got.result)
    assert got.engine == "spark" and got.engine_version.startswith("Spark ") and len(got.aggregates_sha256) == 64
    assert got.queries["current"].startswith("SELECT * FROM parquet.")
    assert not [t for t in spark.catalog.listTables() if t.name.startswith("compliance_")]  # views dropped


def test_spark_bad_query_and_missing_column_are_one_line(spark, tmp_path):
    ref, cur = _frames(n_ref=300, n_cur=300)
    ref.to_parquet(tmp_path / "ref.parquet")
    df = spark.read.parquet(str(tmp_path / "ref.parquet"))
    with pytest.raises(InputError, match="query failed"):
        compute_drift_spark(spark, df, "SELECT * FROM no_such_table")
    with pytest.raises(InputError):
        compute_drift_spark(spark, df, df.select("heavy"))


def test_check_drift_with_spark_queries_through_the_cli(cli, spark, tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from tests.helpers import weights_file

    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "2", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    rng = np.random.default_rng(2)
    pd.DataFrame({"income": rng.lognormal(10, 1, 3000), "region": rng.choice(["N", "S"], 3000)}).to_parquet(tmp_path / "r.parquet")
    pd.DataFrame({"income": rng.lognormal(10.5, 1, 2000), "region": rng.choice(["N", "S", "W"], 2000)}).to_parquet(tmp_path / "c.parquet")
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--warehouse", "local[2]",
                         "--reference", f"spark:SELECT * FROM parquet.`{tmp_path / 'r.parquet'}`",
                         "--current", f"spark:SELECT * FROM parquet.`{tmp_path / 'c.parquet'}`", "--json")
    assert code == 0, err
    c = json.loads(out)
    assert c["parameters"]["pushdown"]["engine"] == "spark" and c["parameters"]["reference_data"]["engine"] == "spark"
    assert {f["feature"] for f in c["features"]} == {"income", "region"}
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--warehouse", "local[2]",
                       "--reference", f"spark:SELECT * FROM parquet.`{tmp_path / 'r.parquet'}`", "--current", "sql:t")
    assert code != 0 and "both as sql:QUERY or both as spark:QUERY" in err and len(err.strip().splitlines()) == 1
