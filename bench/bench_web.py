"""Server time of the web view on the synthetic bank of bench_coverage.py (2,000 models at scale 1).

    python bench/bench_web.py --db sqlite:///bench/data/bank.db --reuse     # a store bench_coverage.py made
    python bench/bench_web.py --db sqlite:///bench/data/web.db --scale 0.1  # generate a smaller one first

Requests go through an HTTP client (httpx over the ASGI transport, i.e. Starlette's TestClient), so
the time is the server's: routing, validation, the read-only session, the services, rendering.
'cold' is the first page of a quarter and as-of (the analysis runs); 'warm' is the next page with
the same quarter and as-of (the analysis is shared, as when a person clicks through).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--quarter", default="2026Q3")
    ap.add_argument("--as-of", default="2026-10-01T00:00:00Z")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not args.reuse:
        from bench_coverage import generate

        from compliance.store import migrate

        t = time.perf_counter()
        migrate.upgrade(args.db)
        print(f"generated {generate(args.db, args.scale)} in {time.perf_counter() - t:.1f}s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from compliance.web.app import create_app
    from compliance.web.config import WebConfig

    c = TestClient(create_app(WebConfig(db_url=args.db)))
    qa = f"quarter={args.quarter}&as_of={args.as_of}"

    def timed(path: str) -> float:
        t = time.perf_counter()
        r = c.get(path)
        dt = time.perf_counter() - t
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return dt

    cold = timed(f"/?{qa}")
    models = c.get("/api/models").json()
    mid = models[len(models) // 2]["id"]
    rows = {"dashboard (cold: analysis runs)": [cold],
            "dashboard (warm)": [timed(f"/?{qa}") for _ in range(args.repeat)],
            "model page (warm)": [timed(f"/models/{models[i * 7 % len(models)]['id']}?{qa}") for i in range(args.repeat)],
            "/api/status (warm)": [timed(f"/api/status?{qa}") for _ in range(args.repeat)],
            "failure-mode register, page 1": [timed(f"/failure-modes?as_of={args.as_of}") for _ in range(args.repeat)],
            "ledger page 1": [timed("/ledger") for _ in range(args.repeat)],
            "/api/models/ID": [timed(f"/api/models/{mid}") for _ in range(args.repeat)]}
    print(f"{len(models)} models, {args.db.split(':')[0]}")
    for k, v in rows.items():
        print(f"  {k:34s} median {statistics.median(v) * 1000:8.1f} ms  (n={len(v)}, max {max(v) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
