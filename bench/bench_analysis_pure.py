"""Benchmark the pure analysis (no database) on a synthetic bank.

Default size is the lead's benchmark bank: 2,000 models, 20,000 versions, 50,000 artifacts,
2,000,000 checks (+ decision volumes for half the models over the trend window).

    .venv/bin/python bench/bench_analysis_pure.py [--models 2000] [--checks-per-model 1000] [--repeat 3]

Prints the time of each stage; results go to bench/RESULTS-analysis.md by hand.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from compliance.analysis.calendar import parse_quarter
from compliance.analysis.coverage import build_grid, model_coverage
from compliance.analysis.debt import model_debt
from compliance.analysis.failure_modes import detect_failure_modes
from compliance.analysis.frames import AnalysisInput
from compliance.analysis.policy import normalise_policy
from compliance.analysis.quarter import analyse_quarter

DAY = np.int64(86_400 * 10**9)
AS_OF = pd.Timestamp("2026-10-15T00:00:00Z")


def ts(ns: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(ns, utc=True)).astype("datetime64[ns, UTC]")


def synthetic_bank(n_models: int = 2000, versions_per_model: int = 10, artifacts_per_model: int = 25,
                   checks_per_model: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    end = AS_OF.value
    start = end - 730 * DAY
    mids = np.array([f"m{i:05d}" for i in range(n_models)], dtype=object)
    models = pd.DataFrame({"model_id": mids, "tier": rng.integers(1, 4, n_models), "owner": "owner"})
    # versions: evenly spread retrains with jitter over two years
    nv = n_models * versions_per_model
    vm = np.repeat(np.arange(n_models), versions_per_model)
    k = np.tile(np.arange(versions_per_model), n_models)
    trained = start + (k * (730 // versions_per_model) + rng.integers(0, 20, nv)) * DAY + rng.integers(0, DAY, nv)
    vid = np.arange(1, nv + 1)
    versions = pd.DataFrame({"version_id": vid, "model_id": mids[vm], "label": "v" + pd.Series(k).astype(str),
                             "trained_at": ts(trained), "recorded_at": ts(trained + DAY)})
    # deployments: each version deployed ~10 days after training; retired when the next is deployed
    # (+0..5 days overlap); the last one stays deployed; 5 % of versions are never deployed
    dep_at = trained + 10 * DAY + rng.integers(0, DAY, nv)
    nxt = np.r_[dep_at[1:], 0]
    last = k == versions_per_model - 1
    deployed = rng.random(nv) > 0.05
    ret_at = nxt + rng.integers(0, 5, nv) * DAY
    d1 = pd.DataFrame({"version_id": vid[deployed], "model_id": mids[vm][deployed], "action": "deploy",
                       "effective_at": dep_at[deployed]})
    rmask = deployed & ~last
    d2 = pd.DataFrame({"version_id": vid[rmask], "model_id": mids[vm][rmask], "action": "retire",
                       "effective_at": ret_at[rmask]})
    dep = pd.concat([d1, d2], ignore_index=True)
    dep = dep[dep["effective_at"] <= end]
    dep["effective_at"] = ts(dep["effective_at"].to_numpy())
    dep["recorded_at"] = dep["effective_at"]
    # artifacts
    na = n_models * artifacts_per_model
    am = np.repeat(np.arange(n_models), artifacts_per_model)
    kinds = np.array(["sae", "transcoder", "clt", "attribution_baseline", "probe", "feature_labels"], dtype=object)
    akind = kinds[rng.choice(6, na, p=[0.35, 0.1, 0.1, 0.25, 0.1, 0.1])]
    abound_k = rng.integers(0, versions_per_model, na)
    abound = am * versions_per_model + abound_k + 1
    arec = trained[abound - 1] + rng.integers(1, 30, na) * DAY
    arec = np.minimum(arec, end - DAY)
    aids = np.array([f"a{i:06d}" for i in range(na)], dtype=object)
    replaces = np.full(na, None, dtype=object)
    artifacts = pd.DataFrame({"artifact_id": aids, "model_id": mids[am], "kind": akind, "bound_version_id": abound,
                              "recorded_at": ts(arec), "replaces": replaces})
    # checks: on the artifact's bound version or a later one, after both were recorded
    nc = n_models * checks_per_model
    ca = rng.integers(0, na, nc)
    cm = am[ca]
    ck = np.minimum(abound_k[ca] + rng.integers(0, 3, nc), versions_per_model - 1)
    cv = cm * versions_per_model + ck + 1
    lo = np.maximum(arec[ca], trained[cv - 1] + DAY)
    cfin = lo + (rng.random(nc) * np.maximum(end - lo, DAY)).astype(np.int64)
    ckind = np.array(["fidelity", "alignment", "data_drift", "activation_drift", "overhead"], dtype=object)[
        rng.choice(5, nc, p=[0.7, 0.05, 0.1, 0.1, 0.05])]
    status = np.array(["pass", "warn", "fail", "error"], dtype=object)[rng.choice(4, nc, p=[0.7, 0.15, 0.1, 0.05])]
    cart = aids[ca].copy()
    cart[ckind == "data_drift"] = None
    fl = (status == "fail") & (ckind == "fidelity")
    empty, decay = (), ("FM-DECAY",)
    flags = pd.Series([decay if f else empty for f in fl.tolist()], dtype=object)
    checks = pd.DataFrame({"check_id": np.arange(1, nc + 1), "kind": ckind, "model_id": mids[cm], "version_id": cv,
                           "artifact_id": cart, "status": status, "finished_at": ts(cfin), "recorded_at": ts(cfin),
                           "explained_variance": np.where(ckind == "fidelity", rng.uniform(0.5, 1.0, nc), np.nan),
                           "survival_share": np.where(ckind == "alignment", rng.uniform(0, 1, nc), np.nan),
                           "other_artifact_id": None, "is_baseline": (cv == abound[ca]) & (ckind == "fidelity"),
                           "flags": flags})
    # volumes: half the models, every version for the 4-quarter window days it could be deployed
    q0 = parse_quarter("2026Q3").previous(3).start_day
    days = np.arange(q0, AS_OF.value // DAY)
    vsel = vid[(vm % 2 == 0)]
    vv = np.repeat(vsel, len(days))
    vd = np.tile(days, len(vsel))
    dd = dep_at[vv - 1] // DAY
    rr = np.where(last[vv - 1], 10**9, ret_at[vv - 1] // DAY)
    keep = (vd >= dd) & (vd <= rr) & (rng.random(len(vv)) > 0.1)
    volumes = pd.DataFrame({"version_id": vv[keep], "day": ts(vd[keep] * DAY),
                            "volume": rng.integers(100, 10000, int(keep.sum())).astype(float)})
    return dict(models=models, versions=versions, deployments=dep, artifacts=artifacts, checks=checks,
                volumes=volumes)


def timed(label: str, fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    print(f"{label:<48s} {best:7.2f} s (best of {repeat})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--checks-per-model", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    t = time.perf_counter()
    frames = synthetic_bank(args.models, checks_per_model=args.checks_per_model)
    print("rows:", {k: len(v) for k, v in frames.items()}, f"(generated in {time.perf_counter() - t:.1f} s)")
    inp = timed("AnalysisInput(...) with validation", lambda: AnalysisInput(**frames), 1)
    pol = normalise_policy({})
    q = parse_quarter("2026Q3")

    def coverage_and_debt():
        data = inp.as_of(AS_OF)
        g = build_grid(data, pol, q.start_day, q.end_day)
        sl = g.day_slice(q.start_day, q.end_day)
        return model_coverage(g, sl, pol), model_debt(g, sl, pol), g

    cov, debt, g = timed("coverage + debt, one quarter (as_of + grid + agg)", coverage_and_debt, args.repeat)
    print(f"  grid: {len(g.ver_ids)} deployed versions x {g.nd} days, {len(g.slot_ver)} slot rows; "
          f"portfolio coverage_days={cov['covered_version_days'].sum() / cov['deployed_version_days'].sum():.3f}, "
          f"debt={int(debt['debt'].sum())}")
    res = timed("analyse_quarter (4-quarter trend, staleness, timeline)",
                lambda: analyse_quarter(inp, q, AS_OF, {}), args.repeat)
    print(f"  staleness rows {len(res.staleness)}, timeline_by_model rows {len(res.timeline_by_model)}")
    d = timed("to_dict() of the QuarterAnalysis", lambda: res.to_dict(), 1)
    _ = d
    dets = timed("detect_failure_modes", lambda: detect_failure_modes(inp, AS_OF), max(1, args.repeat - 2))
    from collections import Counter
    print("  detections:", dict(Counter(x.code for x in dets)))


if __name__ == "__main__":
    main()
