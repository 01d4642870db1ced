"""Writers at estate scale: N concurrent writer processes against one PostgreSQL store.

    python bench/bench_writers.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_writers \
        [--writers 50] [--seconds 60]

The database is dropped and re-created, migrated, and seeded with one model (m0, version v1,
deployed) and two small data files. Each writer process (spawned, its own engine) then loops for
``--seconds`` picking, by weight, one of three real service calls, each in its own transaction
through the ledger:

* registry write (70 %): ``registry.add_model`` of a new model;
* check result (25 %): ``checks.run_drift`` of m0 v1 on the two files (a real drift computation);
* report run (5 %): ``report.render_report`` of m0's per-model review as HTML (context built from
  the store, recorded as a report run).

Writers import and connect first; the measured window starts when all are ready. Every
transaction's wall time (session open → commit) is recorded per kind. Afterwards the ledger
is read back: sequence numbers must be contiguous from the seed's head, every model, check and
report run a writer saw committed must be in the store (none lost), and ``ledger.verify`` must pass
(no fork: one chain, every evidence row with its entry, every payload equal to its row). Prints one JSON line with throughput
(transactions/s and ledger appends/s) and p50/p95/p99 latency per kind.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WEIGHTS = (("registry", 0.70), ("check", 0.25), ("report", 0.05))


def _seed(url: str, work: Path) -> tuple[str, str]:
    import numpy as np
    import pandas as pd

    from compliance.services import registry
    from compliance.store import migrate
    from compliance.store.engine import session_scope
    from tests.helpers import weights_file

    migrate.upgrade(url)
    rng = np.random.default_rng(0)
    ref, cur = work / "ref.csv", work / "cur.csv"
    pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(0, 1, 2000), "seg": rng.choice(list("xyz"), 2000)}).to_csv(ref, index=False)
    pd.DataFrame({"a": rng.normal(0.3, 1, 2000), "b": rng.normal(0, 1, 2000), "seg": rng.choice(list("xyzw"), 2000)}).to_csv(cur, index=False)
    with session_scope(url) as s:
        registry.add_model(s, "m0", name="M0", owner="o", tier=2, use="bench")
        registry.add_version(s, "m0", "v1", weights=weights_file(work / "w.safetensors"))
        registry.deploy(s, "m0", "v1", at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    return str(ref), str(cur)


def _writer(url: str, wid: int, seconds: float, ref: str, cur: str, out_dir: str, q, ready, go, weights) -> None:
    from compliance.services import registry
    from compliance.services.checks import run_drift
    from compliance.services.report import render_report
    from compliance.store.engine import make_engine, session_scope

    import compliance.checks.drift  # noqa: F401 - imports (numpy, scipy, pandas) happen before the clock starts
    import compliance.report.render  # noqa: F401

    with session_scope(url, readonly=True) as s:  # a pooled connection, opened before the clock starts
        registry.get_model(s, "m0")
    ready.put(wid)
    go.wait()

    rnd = random.Random(wid)
    lat: dict[str, list[float]] = {k: [] for k, _ in WEIGHTS}
    made: dict[str, list] = {"models": [], "checks": [], "reports": []}
    errors, n = 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        kind = rnd.choices([k for k, _ in weights], [w for _, w in weights])[0]
        t = time.perf_counter()
        try:
            with session_scope(url) as s:
                if kind == "registry":
                    got = ("models", registry.add_model(s, f"w{wid}-{n}", name="x", owner="o", tier=3, use="u")["id"])
                elif kind == "check":
                    got = ("checks", run_drift(s, "m0", "v1", reference=ref, current=cur)["id"])
                else:
                    got = ("reports", render_report(s, "2026Q4", datetime.now(timezone.utc),
                                                    Path(out_dir) / f"r{wid}-{n}.html", model_id="m0", fmt="html")["run_id"])
            lat[kind].append(time.perf_counter() - t)  # committed: session_scope has exited
            made[got[0]].append(got[1])
        except Exception as e:  # noqa: BLE001 - a bench reports every failure, it does not stop
            errors += 1
            print(f"writer {wid}: {kind}: {str(e).splitlines()[0]}", file=sys.stderr)
        n += 1
    make_engine(url).dispose()
    q.put({"wid": wid, "lat": lat, "errors": errors, "made": made})


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True, help="PostgreSQL URL of a database this bench may drop and re-create.")
    ap.add_argument("--writers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--mix", default=",".join(f"{k}={w}" for k, w in WEIGHTS),
                    help="weights of the transaction kinds, e.g. registry=1 for appends only")
    args = ap.parse_args()
    weights = [(k, float(w)) for k, w in (x.split("=") for x in args.mix.split(","))]
    from sqlalchemy import create_engine, func, select, text

    from compliance.store.engine import session_scope
    from compliance.store.ledger import head, verify
    from compliance.store.models import Check, LedgerEntry, Model, ReportRun

    base, name = args.db.rsplit("/", 1)
    admin = create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    work = Path(tempfile.mkdtemp(prefix="bench-writers-"))
    ref, cur = _seed(args.db, work)
    with session_scope(args.db, readonly=True) as s:
        start = head(s)[0]
    ctx = mp.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_writer, args=(args.db, w, args.seconds, ref, cur, str(work), q, ready, go, weights))
             for w in range(args.writers)]
    for p in procs:
        p.start()
    for _ in procs:  # every writer has imported and connected: the measured minute starts together
        ready.get(timeout=900)
    t0 = time.perf_counter()
    go.set()
    results = [q.get(timeout=args.seconds + 600) for _ in procs]
    for p in procs:
        p.join(60)
    wall = time.perf_counter() - t0
    lat = {k: [x for r in results for x in r["lat"][k]] for k, _ in WEIGHTS}
    txns = sum(len(v) for v in lat.values())
    t1 = time.perf_counter()
    with session_scope(args.db, readonly=True) as s:
        seqs = s.scalars(select(LedgerEntry.seq).where(LedgerEntry.seq > start).order_by(LedgerEntry.seq)).all()
        n_new = s.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.seq > start))
        ok = verify(s)
        made = {k: {x for r in results for x in r["made"][k]} for k in ("models", "checks", "reports")}
        found = {"models": set(s.scalars(select(Model.id).where(Model.id.in_(made["models"])))),
                 "checks": set(s.scalars(select(Check.id).where(Check.id.in_(made["checks"])))),
                 "reports": set(s.scalars(select(ReportRun.id).where(ReportRun.id.in_(made["reports"]))))}
        lost = {k: len(made[k] - found[k]) for k in made}
    verify_s = time.perf_counter() - t1
    contiguous = list(seqs) == list(range(start + 1, start + 1 + n_new))
    print(json.dumps({
        "writers": args.writers, "seconds": args.seconds, "mix": args.mix, "wall_s": round(wall, 1), "load_avg": os.getloadavg(),
        "transactions": txns, "txn_per_s": round(txns / args.seconds, 1),
        "ledger_entries": n_new, "appends_per_s": round(n_new / args.seconds, 1),
        "errors": sum(r["errors"] for r in results), "committed": {k: len(v) for k, v in made.items()}, "lost": lost,
        "contiguous": contiguous, "verify_ok": ok.ok,
        "verify_s": round(verify_s, 1),
        "latency_ms": {k: {"n": len(v), "p50": _pct(v, .5), "p95": _pct(v, .95), "p99": _pct(v, .99)}
                       for k, v in lat.items()},
    }))
    if not (contiguous and ok.ok) or any(lost.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
