"""Benchmark the outcomes analysis on 1M scored rows, with scikit-learn's time for the same figures.

    .venv/bin/python bench/bench_performance.py [--rows 1000000] [--repeat 3] [--workdir /tmp/bench-perf]

Three timings, all in this one run (compare the ratios, FACTS.md):

* ``evaluate``: ``compliance.checks.performance.evaluate`` on in-memory arrays (AUC with the DeLong
  interval, Gini, KS, Brier, log loss, 10-bin calibration with Hosmer–Lemeshow, the confusion
  matrix and the decision figures at the threshold, the thinned ROC curve), weighted;
* ``check``: the whole ``compliance check performance`` command on a fresh SQLite store — read the
  Parquet file, label lag on a timestamp column (half the rows not matured, still the 1M rows read),
  the figures, the score PSI against a 1M-row development file, one ledger write;
* ``sklearn``: the same figures from scikit-learn on the same arrays (``roc_auc_score``,
  ``roc_curve`` for KS, ``brier_score_loss``, ``log_loss``, ``calibration_curve``,
  ``confusion_matrix``, ``precision_recall_fscore_support``) — no DeLong interval, no HL: it has none.

Results go to BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def make_rows(n: int, seed: int, now: pd.Timestamp, matured_share: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    pd_ = 1 / (1 + np.exp(-(1.2 * z - 2.0)))
    y = (rng.random(n) < pd_).astype(np.float64)
    age = np.where(rng.random(n) < matured_share, 400, 100) + rng.integers(0, 30, n)
    t = now - pd.to_timedelta(age, unit="D")
    return pd.DataFrame({"pd": np.round(pd_, 6), "defaulted": y, "decided_at": t, "w": rng.random(n) + 0.5})


def time_it(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def sklearn_figures(y, s, w, threshold):
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import (brier_score_loss, confusion_matrix, log_loss, precision_recall_fscore_support,
                                 roc_auc_score, roc_curve)

    auc = roc_auc_score(y, s, sample_weight=w)
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
    ks = float(np.max(np.abs(tpr - fpr)))
    flag = (s >= threshold).astype(int)
    return (auc, ks, brier_score_loss(y, s, sample_weight=w), log_loss(y, s, sample_weight=w),
            calibration_curve(y, s, n_bins=10, strategy="quantile"), confusion_matrix(y, flag, sample_weight=w),
            precision_recall_fscore_support(y, flag, sample_weight=w, average="binary"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-perf"))
    a = ap.parse_args(argv)
    from compliance.checks.performance import evaluate

    a.workdir.mkdir(parents=True, exist_ok=True)
    now = pd.Timestamp.now(tz="UTC")
    cur = make_rows(a.rows, 1, now)
    dev = make_rows(a.rows, 2, now, matured_share=1.0)
    y, s, w = cur["defaulted"].to_numpy(), cur["pd"].to_numpy(), cur["w"].to_numpy()
    print(f"rows {a.rows:,}; event rate {y.mean():.3f}; distinct scores {len(np.unique(s)):,}")

    t_ours, perf = time_it(lambda: evaluate(y, s, w, threshold=0.2), a.repeat)
    t_sk, ref = time_it(lambda: sklearn_figures(y, s, w, 0.2), a.repeat)
    assert abs(perf.auc - ref[0]) < 1e-9 and abs(perf.brier - ref[2]) < 1e-9 and abs(perf.log_loss - ref[3]) < 1e-9
    print(f"evaluate (ours, + DeLong + HL):  {t_ours:6.2f} s   AUC {perf.auc:.6f} [{perf.auc_lower:.4f}, {perf.auc_upper:.4f}]")
    print(f"scikit-learn, same figures:      {t_sk:6.2f} s   AUC {ref[0]:.6f}   ratio sklearn/ours {t_sk / t_ours:.2f}")

    from compliance.checks.fairness import evaluate as fairness

    rng = np.random.default_rng(3)
    prot = {"age_band": rng.choice(["18-25", "26-35", "36-50", "51-65", "65+"], len(s)),
            "sex": rng.choice(["F", "M", "X"], len(s), p=[0.49, 0.49, 0.02])}
    yy = np.where(rng.random(len(s)) < 0.5, y, np.nan)
    t_fair, fres = time_it(lambda: fairness(prot, s, 0.2, yy, w), a.repeat)
    print(f"fairness, 2 attributes / 8 groups:  {t_fair:6.2f} s   status {fres.status}")

    data, ref_path = a.workdir / "current.parquet", a.workdir / "development.parquet"
    cur.to_parquet(data, index=False)
    dev.to_parquet(ref_path, index=False)
    db = a.workdir / "store.db"
    env = dict(os.environ, COMPLIANCE_DB_URL=f"sqlite:///{db}", COMPLIANCE_ACTOR="bench")
    exe = [sys.executable, "-m", "compliance.cli.main"] if not (ROOT / ".venv/bin/compliance").exists() else [str(ROOT / ".venv/bin/compliance")]
    if db.exists():
        db.unlink()
    weights = a.workdir / "w.bin"
    weights.write_bytes(b"bench weights")
    for cmd in (["init"], ["model", "add", "pd", "--name", "PD", "--owner", "o", "--tier", "1", "--use", "credit"],
                ["version", "add", "pd", "v1", "--weights", str(weights)]):
        subprocess.run(exe + cmd, env=env, check=True, capture_output=True)
    check = exe + ["check", "performance", "pd", "--version", "v1", "--data", str(data), "--target", "defaulted",
                   "--score", "pd", "--weight", "w", "--timestamp", "decided_at", "--threshold", "0.2",
                   "--reference", str(ref_path), "--json"]
    t_cli = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        r = subprocess.run(check, env=env, capture_output=True, text=True)
        t_cli.append(time.perf_counter() - t0)
        if r.returncode != 0:
            print(r.stderr)
            return 1
    import json

    m = json.loads(r.stdout)["metrics"]
    print(f"`compliance check performance` end to end (process start, read 2 × {a.rows:,} rows, label lag, "
          f"figures, PSI, ledger write): {statistics.median(t_cli):6.2f} s (median of {a.repeat}; "
          f"{m['n_matured']:,} matured rows judged, {m['n_not_matured']:,} not matured)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
