"""Drift benchmark: compliance's compute_drift vs Evidently 0.7.23, and the streaming mode.

    .venv/bin/python bench/bench_drift.py gen            # bench/data/{ref,cur}.parquet, 1M x (30 num + 5 cat)
    .venv/bin/python bench/bench_drift.py compare        # ours (2 threads, 1 thread) and Evidently, side by side
    .venv/bin/python bench/bench_drift.py big --gb 4     # large multi-row-group Parquet + streaming run

Each measured run is a fresh subprocess; peak memory is its ru_maxrss. Evidently runs in its own
venv (bench/.venv-evidently, pandas<3): see bench/evidently_drift.py.
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
EVIDENTLY_PY = ROOT / "bench" / ".venv-evidently" / "bin" / "python"
N_NUM, N_CAT = 30, 5


def make_frame(n: int, seed: int, shifted: bool):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cols = {}
    for i in range(N_NUM):
        shift = 0.5 if shifted and i % 3 == 0 else 0.0  # 10 of 30 numeric columns drift
        kind = i % 5
        if kind == 0:
            x = rng.normal(shift, 1.0, n)
        elif kind == 1:
            x = rng.lognormal(1.0 + shift, 0.8, n)
        elif kind == 2:
            x = rng.standard_t(3, n) + shift
        elif kind == 3:
            x = rng.integers(0, 20, n).astype(np.float64) + np.round(shift * 4)
        else:
            x = np.where(rng.random(n) < 0.01, np.nan, rng.exponential(1.0 + shift, n))
        cols[f"num_{i:02d}"] = x
    for j in range(N_CAT):
        k = 5 + 10 * j
        p = np.arange(1, k + 1, dtype=float) ** -1.0
        if shifted and j % 2 == 0:
            p = p[::-1]
        p /= p.sum()
        labels = np.array([f"c{j}_{v}" for v in range(k)], dtype=object)
        cols[f"cat_{j}"] = pd.Categorical.from_codes(rng.choice(k, n, p=p), categories=labels).astype(str)
    return pd.DataFrame(cols)


def gen(rows: int) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name, seed, shifted in (("ref", 1, False), ("cur", 2, True)):
        df = make_frame(rows, seed, shifted)
        df.to_parquet(DATA / f"{name}.parquet", row_group_size=250_000)
        print(f"wrote {DATA / f'{name}.parquet'}: {len(df):,} rows, {(DATA / f'{name}.parquet').stat().st_size / 2**20:.0f} MiB")


def run_ours(ref: str, cur: str, threads: int, streaming: bool) -> None:
    t0 = time.perf_counter()
    from compliance.checks.drift import compute_drift, compute_drift_files, read_frame

    if streaming:
        res = compute_drift_files(ref, cur, streaming=True)
        t1 = t0
    else:
        r, c = read_frame(ref), read_frame(cur)
        t1 = time.perf_counter()
        res = compute_drift(r, c, threads=threads)
    t2 = time.perf_counter()
    print(json.dumps({
        "tool": "compliance", "threads": threads, "streaming": streaming, "method": res.method,
        "read_s": t1 - t0, "compute_s": t2 - t1, "total_s": t2 - t0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "drifted": sum(f.status == "fail" for f in res.features), "status": res.status,
        "n_ref": res.n_ref, "n_cur": res.n_cur,
    }))


def sub(cmd: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{cmd} failed:\n{out.stderr[-3000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    r = json.loads(line)
    print(json.dumps(r), flush=True)
    return r


def compare(evidently: bool, methods: list[str]) -> None:
    ref, cur = str(DATA / "ref.parquet"), str(DATA / "cur.parquet")
    me = [sys.executable, __file__, "ours", ref, cur]
    results = [sub(me + ["--threads", "2"]), sub(me + ["--threads", "1"])]
    if evidently:
        for m in methods:
            args = [] if m == "default" else ["--num-method", m, "--cat-method", m]
            results.append(sub([str(EVIDENTLY_PY), str(ROOT / "bench" / "evidently_drift.py"), ref, cur, *args]))
    ours = results[0]["total_s"]
    for r in results[2:]:
        print(f"speed-up vs Evidently ({r['num_method']}): {r['total_s'] / ours:.1f}x (end to end incl. read)")


def big(gb: float, rows_per_file: int | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    DATA.mkdir(parents=True, exist_ok=True)
    chunk = 500_000
    per_row = 30 * 8 + 5 * 8  # rough uncompressed size per row
    rows = rows_per_file or int(gb * 2**30 / 2 / per_row)
    t0 = time.perf_counter()
    for name, seed, shifted in (("big_ref", 11, False), ("big_cur", 12, True)):
        path = DATA / f"{name}.parquet"
        writer = None
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            t = pa.Table.from_pandas(make_frame(n, seed * 1000 + done // chunk, shifted), preserve_index=False)
            writer = writer or pq.ParquetWriter(path, t.schema, compression="snappy")
            writer.write_table(t, row_group_size=250_000)
            done += n
        writer.close()
        print(f"wrote {path}: {rows:,} rows, {path.stat().st_size / 2**30:.2f} GiB on disk", flush=True)
    print(f"generation {time.perf_counter() - t0:.0f} s", flush=True)
    sub([sys.executable, __file__, "ours", str(DATA / "big_ref.parquet"), str(DATA / "big_cur.parquet"), "--streaming"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen"); g.add_argument("--rows", type=int, default=1_000_000)
    c = sp.add_parser("compare"); c.add_argument("--no-evidently", action="store_true")
    c.add_argument("--methods", default="psi,default")
    o = sp.add_parser("ours"); o.add_argument("ref"); o.add_argument("cur")
    o.add_argument("--threads", type=int, default=2); o.add_argument("--streaming", action="store_true")
    b = sp.add_parser("big"); b.add_argument("--gb", type=float, default=4.0); b.add_argument("--rows", type=int)
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.rows)
    elif a.cmd == "compare":
        compare(not a.no_evidently, a.methods.split(","))
    elif a.cmd == "ours":
        run_ours(a.ref, a.cur, a.threads, a.streaming)
    else:
        big(a.gb, a.rows)
