"""The real report path at estate scale: `compliance report`, `compliance export` and
`compliance status --json` run as a user runs them (one process each), timed with their peak
memory (the child's ru_maxrss), beside a raw fetch of the rows they read.

    python bench/bench_report.py --db sqlite:////work/benchdata/bank2000.db            # store built already
    python bench/bench_report.py --db sqlite:///tmp/b.db --build 0.1                    # build a 200-model store first
    python bench/bench_report.py --db postgresql+psycopg://postgres@127.0.0.1/bench --only status,report

The store is the coverage bench's (bench/bench_coverage.py: 2,000 models, 20,000 versions,
50,000 artifacts, 2,000,000 checks at scale 1), filled with bulk inserts that bypass the ledger.
Every result is one JSON line: command, seconds, peak RSS in MiB, exit code, and the load
average before and after (the machine is shared: read the load with the numbers).
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

QUARTER = "2026Q3"
AS_OF = "2026-10-01T00:00:00Z"
CLI = "from compliance.cli.main import run; run()"


def _child(argv: list[str]) -> dict:
    """Run ``argv`` as a child process; wall time, peak RSS (MiB), exit code, stderr tail."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.perf_counter() - t
        err.seek(0)
        out.seek(0)
        return {"seconds": round(secs, 2), "peak_mib": round(usage.ru_maxrss / 1024, 1), "rc": p.returncode,
                "stdout": out.read().decode(errors="replace")[-2000:], "stderr": err.read().decode(errors="replace")[-600:]}


def raw_fetch(url: str, what: str) -> None:
    """The rows a command needs, fetched on the raw DBAPI cursor with no processing (child mode)."""
    from compliance.store.engine import make_engine

    engine = make_engine(url)
    sql = {
        # every check recorded by the as-of (the analysis' load + the pack's checks and evidence)
        "checks": "SELECT id, kind, model_id, version_id, artifact_id, status, finished_at, explained_variance, "
                  "metrics, reasons, input_hashes FROM check_run WHERE recorded_at <= :t",
        # what the analysis reads for status: the lean fidelity columns
        "lean": "SELECT id, version_id, artifact_id, status, finished_at, explained_variance FROM check_run "
                "WHERE recorded_at <= :t",
    }[what]
    with engine.connect() as conn:
        t = "2026-10-01 00:00:00.000000" if engine.dialect.name == "sqlite" else "2026-10-01 00:00:00"
        cur = conn.connection.cursor()
        q = sql.replace(":t", "?" if engine.dialect.name == "sqlite" else "%s")
        if engine.dialect.name == "sqlite":  # one sequential scan: the fastest the driver delivers these rows
            q = q.replace("FROM check_run", "FROM check_run NOT INDEXED")
        cur.execute(q, (t,))
        n = len(cur.fetchall())
    print(json.dumps({"rows": n}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--build", type=float, default=None, help="Build the coverage bench's store at this scale first.")
    ap.add_argument("--only", default="status,report,export", help="Comma-separated: status, report, export.")
    ap.add_argument("--out", type=Path, default=None, help="Where the PDF and zip go (default: a temp folder).")
    ap.add_argument("--as-of", default=AS_OF, help="As-of of the runs (a store already holding a report run as of "
                    "the default from other code needs another one: the same report id must keep its context).")
    ap.add_argument("--raw", choices=["checks", "lean"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw:
        raw_fetch(args.db, args.raw)
        return
    if args.build is not None:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_coverage import generate

        from compliance.store import migrate

        t = time.perf_counter()
        migrate.upgrade(args.db)
        sizes = generate(args.db, args.build)
        print(json.dumps({"built": sizes, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-report-"))
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    cli = [py, "-c", CLI, "--db", args.db]
    runs = {
        "status": (cli + ["status", "--quarter", QUARTER, "--as-of", args.as_of, "--json"], "lean"),
        "report": (cli + ["report", "--quarter", QUARTER, "--as-of", args.as_of, "--out", str(out / "pack.pdf"),
                          "--json"], "checks"),
        "export": (cli + ["export", "--quarter", QUARTER, "--as-of", args.as_of, "--out", str(out / "pack.zip"),
                          "--json"], "checks"),
    }
    for name in [x.strip() for x in args.only.split(",") if x.strip()]:
        argv, raw = runs[name]
        load0 = os.getloadavg()[0]
        r = _child(argv)
        fetch = _child([py, __file__, "--db", args.db, "--raw", raw])
        rows = json.loads(fetch["stdout"] or "{}").get("rows") if fetch["rc"] == 0 else None
        line = {"command": name, "db": args.db.split(":")[0], "seconds": r["seconds"], "peak_mib": r["peak_mib"],
                "rc": r["rc"], "raw_fetch": {"rows": rows, "seconds": fetch["seconds"], "peak_mib": fetch["peak_mib"]},
                "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
        if r["rc"] != 0:
            line["stderr"] = r["stderr"]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
