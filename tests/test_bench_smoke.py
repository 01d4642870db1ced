"""Bench smoke test: the real report path (`status --json`, `report`, `export`) on a CI-sized
version of the estate bench's store (bench/bench_report.py over bench/bench_coverage.py's
generator), each command in its own process with its time and peak memory, so that a regression
in the report path shows here and not only in BENCHMARKS.md. The full-size numbers (2,000 models)
are in BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCALE = 0.01  # 20 models, 200 versions, 500 artifacts, 20,000 checks


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("bench-smoke")
    url = f"sqlite:///{root / 'bank.db'}"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_report.py"), "--db", url, "--build", str(SCALE),
                        "--out", str(root / "out")], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    return [{**x, "out": root / "out"} for x in lines]


def test_every_command_runs_on_the_bench_store(bench_run):
    built = next(x for x in bench_run if "built" in x)
    assert built["built"] == {"models": 20, "versions": 200, "artifacts": 500, "checks": 20_000}
    runs = {x["command"]: x for x in bench_run if "command" in x}
    assert set(runs) == {"status", "report", "export"}
    for name, r in runs.items():
        assert r["rc"] == 0, (name, r.get("stderr"))
        assert r["raw_fetch"]["rows"] == 20_000
        # Bounds with room for a loaded 2-core CI machine; at this size the commands need ~0.2-0.6 GiB.
        assert r["peak_mib"] < 1536, (name, r["peak_mib"])
        assert r["seconds"] < 600, (name, r["seconds"])


def test_the_bench_export_verifies(bench_run):
    from compliance.report.verify_pack import verify_pack

    out = bench_run[0]["out"]
    rep = verify_pack(out / "pack.zip")
    assert rep.ok, rep.problems
    assert (out / "pack.pdf").stat().st_size > 0


def test_the_import_bench_runs_and_its_stores_verify(tmp_path):
    """bench/bench_import.py at 2 % of its size (20 models, 200 versions, 20 deployments): every
    import through the bulk path verifies, and the raw baseline wrote the same rows."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_import.py"), "--db", f"sqlite:///{tmp_path / 'i.db'}",
                        "--scale", "0.02", "--repeat", "1", "--no-cli", "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    runs = [x for x in lines if x.get("path") == "bulk"]
    assert [x["manifest"] for x in runs] == ["manifest.yaml", "manifest.json"]
    assert all(x["verify_ok"] and x["records"] == 240 for x in runs)
    raw = [x for x in lines if x.get("path", "").startswith("raw")]
    assert len(raw) == 2 and all(x["records"] == 240 for x in raw)  # into empty tables, into the store's schema
