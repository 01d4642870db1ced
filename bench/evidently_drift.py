"""Run Evidently 0.7.23 DataDriftPreset on two Parquet files (runs in bench/.venv-evidently).

Usage: evidently_drift.py REF.parquet CUR.parquet [--num-method psi --cat-method psi]
Prints one JSON line: wall seconds (read, compute), peak RSS (MiB), drifted columns.
"""

import argparse
import json
import resource
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

ap = argparse.ArgumentParser()
ap.add_argument("ref")
ap.add_argument("cur")
ap.add_argument("--num-method", default=None)
ap.add_argument("--cat-method", default=None)
a = ap.parse_args()

t0 = time.perf_counter()
ref = pd.read_parquet(a.ref)
cur = pd.read_parquet(a.cur)
t1 = time.perf_counter()
num = [c for c in ref.columns if c.startswith("num_")]
cat = [c for c in ref.columns if c.startswith("cat_")]
dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
kw = {}
if a.num_method:
    kw["num_method"] = a.num_method
if a.cat_method:
    kw["cat_method"] = a.cat_method
report = Report([DataDriftPreset(**kw)])
snap = report.run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
d = snap.dict()
t2 = time.perf_counter()
drifted = None
for m in d.get("metrics", []):
    if "DriftedColumnsCount" in str(m.get("metric_id", "")):
        drifted = m.get("value")
print(json.dumps({
    "tool": "evidently-0.7.23", "num_method": a.num_method or "default", "cat_method": a.cat_method or "default",
    "read_s": t1 - t0, "compute_s": t2 - t1, "total_s": t2 - t0,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "drifted": drifted,
}))
