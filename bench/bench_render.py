"""Benchmark the report renderer: table-heavy pages/s and the 2,000-model pack.

Usage:
    .venv/bin/python bench/bench_render.py                 # all scenarios
    .venv/bin/python bench/bench_render.py --only pack --models 2000

Scenarios (each prints one JSON line):
  tables  a context of --table-models models rendered with no row limit (every row of every
          table in the PDF): pages, seconds, pages/s, stage split (charts+HTML / layout / write)
  pack    the portfolio pack for --models models with the default row limit (the worst
          DEFAULT_ROW_LIMIT rows per table in the PDF, every row in the CSVs/attached JSON)
  export  the whole regulator zip for --models models (PDF + CSVs + context + manifest)
Contexts come from tests/report_fixtures.py (synthetic, deterministic).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from compliance.report import export, render  # noqa: E402
from compliance.report.context import context_to_json  # noqa: E402
from report_fixtures import make_context  # noqa: E402


def _pages(pdf: bytes) -> int:
    import pypdf

    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def _timed_render(ctx, row_limit):
    import weasyprint

    stamps = {}
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()

    def progress(stage, _frac):
        stamps[stage] = time.perf_counter() - t0

    pdf = render.render_pdf_bytes(ctx, row_limit=row_limit, progress=progress)
    total = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return pdf, total, {
        "cpu_s": round(cpu, 2),
        "charts_html_s": round(stamps.get("layout", 0), 2),
        "layout_s": round(stamps.get("write", 0) - stamps.get("layout", 0), 2),
        "write_s": round(total - stamps.get("write", 0), 2),
        "weasyprint": weasyprint.__version__,
    }


def bench_tables(models: int) -> dict:
    ctx = make_context(models)
    pdf, secs, split = _timed_render(ctx, row_limit=10**9)
    pages = _pages(pdf)
    return {"scenario": "tables", "models": models, "row_limit": "none", "pages": pages,
            "seconds": round(secs, 2), "pages_per_s": round(pages / secs, 2),
            "pages_per_cpu_s": round(pages / split["cpu_s"], 2), **split}


def bench_pack(models: int) -> dict:
    t = time.perf_counter()
    ctx = make_context(models)
    build = time.perf_counter() - t
    pdf, secs, split = _timed_render(ctx, row_limit=render.DEFAULT_ROW_LIMIT)
    pages = _pages(pdf)
    return {"scenario": "pack", "models": models, "row_limit": render.DEFAULT_ROW_LIMIT,
            "pages": pages, "seconds": round(secs, 2), "pages_per_s": round(pages / secs, 2),
            "pages_per_cpu_s": round(pages / split["cpu_s"], 2), "fixture_build_s": round(build, 2), "pdf_bytes": len(pdf),
            "context_json_bytes": len(context_to_json(ctx)), **split}


def bench_export(models: int) -> dict:
    ctx = make_context(models)
    with tempfile.TemporaryDirectory() as d:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        manifest = export.write_export(ctx, Path(d) / "pack.zip", ledger_excerpt=[])
        secs = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        size = (Path(d) / "pack.zip").stat().st_size
    return {"scenario": "export", "models": models, "seconds": round(secs, 2),
            "cpu_s": round(cpu, 2),
            "files": len(manifest["files"]), "zip_bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["tables", "pack", "export"])
    ap.add_argument("--models", type=int, default=2000)
    ap.add_argument("--table-models", type=int, default=60)
    args = ap.parse_args()
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "python": platform.python_version(),
                      "loadavg_1m": round(os.getloadavg()[0], 2)}))
    runs = {"tables": lambda: bench_tables(args.table_models),
            "pack": lambda: bench_pack(args.models),
            "export": lambda: bench_export(args.models)}
    for name, fn in runs.items():
        if args.only and name != args.only:
            continue
        out = fn()
        out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
