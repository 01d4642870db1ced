"""Budgeted checks keep their time budget (DESIGN §9): wall time of the real CLI, process start to
exit (imports, store, artifact and data loading included), for ``check fidelity --budget`` on an
activations file far larger than the budget can read, and ``check drift --budget`` on two large
Parquet files. Optionally the full (unbudgeted) fidelity check for comparison.

    python bench/bench_budget.py [--budget 30s] [--rows 400000] [--d 512] [--m 8192] [--full] [--keep DIR]

Prints one JSON line per run; the target is wall <= 1.1 x budget (33 s for 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(Path(sys.executable).with_name("compliance"))]


def sh(db: str, *args: str) -> tuple[float, dict | None, str]:
    t = time.perf_counter()
    r = subprocess.run([*CLI, "--db", db, *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode not in (0, 1):
        raise SystemExit(f"{args[:2]} failed ({r.returncode}): {r.stderr.strip()}")
    try:
        out = json.loads(r.stdout) if "--json" in args else None
    except json.JSONDecodeError:
        out = None
    return wall, out, r.stderr.strip()


def make_bank(d: Path, rows: int, d_in: int, m: int, seed: int = 0) -> dict:
    import pandas as pd
    import torch

    from compliance.interp.synthetic import write_activations, write_saelens

    rng = np.random.default_rng(seed)
    sae = d / "sae"
    if not sae.exists():
        write_saelens(sae, rng, d_in, m, hook_name="blocks.0.hook_resid_pre")
    acts = d / "acts.safetensors"
    if not acts.exists():
        # a low-rank signal plus noise, so the SAE's EV is neither 0 nor 1; written in chunks of rows
        basis = rng.standard_normal((32, d_in)).astype(np.float32)
        x = np.empty((rows, d_in), np.float32)
        for s in range(0, rows, 50_000):
            b = min(50_000, rows - s)
            x[s:s + b] = rng.standard_normal((b, 32)).astype(np.float32) @ basis + 0.3 * rng.standard_normal(
                (b, d_in)).astype(np.float32)
        write_activations(acts, {"activations": x})
        del x
    weights = d / "w.safetensors"
    if not weights.exists():
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(4)}, str(weights))
    ref, cur = d / "ref.parquet", d / "cur.parquet"
    if not ref.exists():
        n = 1_000_000
        cols = {f"x{i}": rng.normal(size=n) for i in range(30)}
        pd.DataFrame(cols).to_parquet(ref, index=False)
        cols = {f"x{i}": rng.normal(0.05 * (i % 5), 1.0, size=n) for i in range(30)}
        pd.DataFrame(cols).to_parquet(cur, index=False)
    return {"sae": sae, "acts": acts, "weights": weights, "ref": ref, "cur": cur}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", default="30s")
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also time the unbudgeted check")
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated files in this folder")
    a = ap.parse_args()
    d = a.keep or Path(tempfile.mkdtemp(prefix="bench_budget_"))
    d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    files = make_bank(d, a.rows, a.d, a.m)
    print(json.dumps({"setup_s": round(time.perf_counter() - t, 1), "dir": str(d)}), flush=True)
    db = f"sqlite:///{d / 'store.db'}"
    if os.path.exists(d / "store.db"):
        os.unlink(d / "store.db")
    sh(db, "init")
    sh(db, "model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "bench")
    sh(db, "version", "add", "m", "v1", "--weights", str(files["weights"]))
    sh(db, "artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", str(files["sae"]), "--id", "sae")
    from compliance.checks.intervals import parse_duration

    budget_s = parse_duration(a.budget)
    load = os.getloadavg()[0]
    for i in range(a.repeats):
        wall, c, err = sh(db, "check", "fidelity", "sae", "--activations", str(files["acts"]), "--budget", a.budget,
                          "--seed", str(i), "--json")
        m = c["metrics"]
        print(json.dumps({"check": "fidelity", "budget_s": budget_s, "wall_s": round(wall, 2),
                          "kept": wall <= 1.1 * budget_s, "rows_used": c["parameters"]["rows_used"],
                          "rows_available": c["parameters"]["rows_available"],
                          "check_wall_s": c["parameters"].get("wall_seconds"), "status": c["status"],
                          "ev": round(m["explained_variance"], 4), "ev_ci": [round(v, 4) for v in m["ci"]["explained_variance"]],
                          "load_avg": round(load, 1)}), flush=True)
        wall, c, err = sh(db, "check", "drift", "m", "--version", "v1", "--reference", str(files["ref"]), "--current",
                          str(files["cur"]), "--budget", a.budget, "--seed", str(i), "--json")
        print(json.dumps({"check": "drift", "budget_s": budget_s, "wall_s": round(wall, 2),
                          "kept": wall <= 1.1 * budget_s, "rows_used": c["parameters"]["rows_used"],
                          "status": c["status"], "load_avg": round(os.getloadavg()[0], 1)}), flush=True)
    if a.full:
        wall, c, err = sh(db, "check", "fidelity", "sae", "--activations", str(files["acts"]), "--json")
        print(json.dumps({"check": "fidelity (full)", "wall_s": round(wall, 2), "rows": c["metrics"]["n_rows"],
                          "ev": round(c["metrics"]["explained_variance"], 4), "status": c["status"]}), flush=True)


if __name__ == "__main__":
    main()
