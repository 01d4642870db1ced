"""Drift pushed down to Spark (local mode) vs the local streaming path, on the same Parquet files.

    python bench/bench_pushdown.py gen --rows 20000000      # bench/data/pd_{ref,cur}.parquet
    python bench/bench_pushdown.py run [--master local[2]] [--driver-memory 1g]

The files hold ``--numeric`` numeric and ``--categorical`` categorical columns of bench_drift.py's
generator (normal, lognormal, t(3), integer ties, exponential with 1 % NaN; Zipf categories; a third
of the columns shifted in the current file). ``run`` measures, each in a fresh process:

* **local streaming** — ``compute_drift_parquet_stream``: the rows come to this process in batches;
* **Spark push-down** — ``compute_drift_spark`` on ``spark.read.parquet``: Spark scans the files,
  only aggregates reach the Python driver.

Each prints wall time, the Python process's peak RSS and, for Spark, the JVM driver's peak RSS
(VmHWM, read from /proc before the session stops) and the number of aggregate statements; then
the largest PSI / JS / chi-square difference between the two (both use exact reference deciles:
expected 0 to rounding) and the KS / Wasserstein differences against their bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


def gen(rows: int, numeric: int, categorical: int) -> None:
    import bench_drift
    import pyarrow as pa
    import pyarrow.parquet as pq

    bench_drift.N_NUM, bench_drift.N_CAT = numeric, categorical
    DATA.mkdir(parents=True, exist_ok=True)
    chunk = 500_000
    t0 = time.perf_counter()
    for name, seed, shifted in (("pd_ref", 21, False), ("pd_cur", 22, True)):
        path = DATA / f"{name}.parquet"
        writer, done = None, 0
        while done < rows:
            n = min(chunk, rows - done)
            t = pa.Table.from_pandas(bench_drift.make_frame(n, seed * 1000 + done // chunk, shifted), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, t.schema, compression="snappy")
            writer.write_table(t, row_group_size=500_000)
            done += n
        writer.close()
        print(f"wrote {path}: {rows:,} rows × {numeric + categorical} columns, {path.stat().st_size / 2**30:.2f} GiB",
              flush=True)
    print(f"generation {time.perf_counter() - t0:.0f} s", flush=True)


def _features(res) -> dict:
    return {f.feature: {k: getattr(f, k) for k in ("psi", "js_distance", "chi2_pvalue", "ks_stat", "wasserstein",
                                                   "ks_error_bound", "wasserstein_error_bound")}
            for f in res.features}


def one(which: str, master: str, driver_memory: str) -> None:
    ref, cur = DATA / "pd_ref.parquet", DATA / "pd_cur.parquet"
    t0 = time.perf_counter()
    out: dict = {"path": which}
    if which == "local-streaming":
        from compliance.checks.drift_stream import compute_drift_parquet_stream

        res = compute_drift_parquet_stream(ref, cur)
    else:
        from pyspark.sql import SparkSession

        from compliance.checks.drift_sql import compute_drift_spark

        spark = (SparkSession.builder.master(master).config("spark.ui.enabled", "false")
                 .config("spark.driver.memory", driver_memory).config("spark.sql.shuffle.partitions", "8").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        t_start = time.perf_counter()
        pushed = compute_drift_spark(spark, spark.read.parquet(str(ref)), spark.read.parquet(str(cur)))
        res = pushed.result
        out.update(spark_start_s=round(t_start - t0, 1), statements=pushed.statements, engine=pushed.engine_version,
                   jvm_peak_mib=_jvm_peak_mib())
        spark.stop()
    out.update(seconds=round(time.perf_counter() - t0, 1), method=res.method, n_ref=res.n_ref, n_cur=res.n_cur,
               python_peak_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               load_avg=[round(x, 1) for x in os.getloadavg()], features=_features(res))
    print(json.dumps(out))


def _jvm_peak_mib() -> float | None:
    """Peak RSS of the JVM child (Spark's driver in local mode) of this process."""
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().split()
            if stat[3] != me or b"java" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return None


def run(master: str, driver_memory: str) -> None:
    res = {}
    for which in ("local-streaming", "spark"):
        r = subprocess.run([sys.executable, __file__, "one", which, "--master", master, "--driver-memory", driver_memory],
                           capture_output=True, text=True, cwd=ROOT)
        if r.returncode:
            raise SystemExit(f"{which} failed:\n{r.stderr[-3000:]}")
        res[which] = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
        print(json.dumps({k: v for k, v in res[which].items() if k != "features"}), flush=True)
    a, b = res["local-streaming"]["features"], res["spark"]["features"]
    worst = {k: 0.0 for k in ("psi", "js_distance", "chi2_pvalue")}
    within = True
    for f, x in a.items():
        y = b[f]
        for k in worst:
            if x[k] is not None:
                worst[k] = max(worst[k], abs(x[k] - y[k]))
        if x["ks_stat"] is not None:  # both approximate: their difference is within the sum of the bounds
            within &= abs(x["ks_stat"] - y["ks_stat"]) <= x["ks_error_bound"] + y["ks_error_bound"] + 1e-12
            within &= abs(x["wasserstein"] - y["wasserstein"]) <= (x["wasserstein_error_bound"]
                                                                    + y["wasserstein_error_bound"] + 1e-9)
    print(json.dumps({"max_abs_diff": worst, "ks_wasserstein_within_bounds": bool(within)}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen")
    g.add_argument("--rows", type=int, default=20_000_000)
    g.add_argument("--numeric", type=int, default=10)
    g.add_argument("--categorical", type=int, default=2)
    for name in ("run", "one"):
        p = sp.add_parser(name)
        if name == "one":
            p.add_argument("which", choices=["local-streaming", "spark"])
        p.add_argument("--master", default="local[2]")
        p.add_argument("--driver-memory", default="1g")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.rows, a.numeric, a.categorical)
    elif a.cmd == "run":
        run(a.master, a.driver_memory)
    else:
        one(a.which, a.master, a.driver_memory)
