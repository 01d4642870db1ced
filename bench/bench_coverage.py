"""Coverage and debt for a synthetic bank: 2,000 models, 20,000 versions, 50,000 artifacts,
2,000,000 checks — SQL load + analysis, on SQLite and PostgreSQL.

    python bench/bench_coverage.py --db sqlite:///bench/data/bank.db [--scale 1.0]
    python bench/bench_coverage.py --db postgresql+psycopg://postgres@127.0.0.1/bench_bank

The store is filled with bulk Core inserts that bypass the ledger: this benchmark measures
reading and computing, not writing (writes through the ledger are measured elsewhere). The
generated store therefore does not pass `compliance verify` and must not be used for anything else.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

import numpy as np

from compliance.store import migrate
from compliance.store.engine import make_engine, session_scope
from compliance.store.models import Artifact, Check, DeploymentEvent, Model, ModelVersion

T0 = datetime(2025, 10, 1, tzinfo=timezone.utc)


def generate(url: str, scale: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_models = int(2000 * scale)
    versions_per_model = 10
    artifacts_per_model = 25
    n_checks = int(2_000_000 * scale)
    engine = make_engine(url)
    kinds = ["sae", "transcoder", "clt", "attribution_baseline", "probe"]
    with engine.begin() as conn:
        conn.execute(Model.__table__.insert(), [
            dict(id=f"m{i:05d}", name=f"Model {i}", business_use="synthetic", owner=f"owner{i % 50}",
                 tier=int(1 + i % 3), tags=[], adapter=None, recorded_at=T0 - timedelta(days=30), actor="bench")
            for i in range(n_models)])
        vrows, drows = [], []
        vid = 0
        for i in range(n_models):
            for k in range(versions_per_model):
                vid += 1
                t = T0 + timedelta(days=36 * k)
                vrows.append(dict(id=vid, model_id=f"m{i:05d}", label=f"v{k + 1}", weights_path="-", weights_sha256="0" * 64,
                                  trained_at=t - timedelta(days=5), data_window_start=None, data_window_end=None,
                                  parent_id=vid - 1 if k else None, recorded_at=t - timedelta(days=5), actor="bench"))
                drows.append(dict(version_id=vid, action="deploy", effective_at=t, recorded_at=t, actor="bench"))
                if k:
                    drows.append(dict(version_id=vid - 1, action="retire", effective_at=t, recorded_at=t, actor="bench"))
        conn.execute(ModelVersion.__table__.insert(), vrows)
        conn.execute(DeploymentEvent.__table__.insert(), drows)
        arows = []
        art_version = []
        for i in range(n_models):
            for j in range(artifacts_per_model):
                k = int(rng.integers(0, versions_per_model))
                v = i * versions_per_model + k + 1
                arows.append(dict(id=f"a{i:05d}-{j:02d}", model_id=f"m{i:05d}", kind=kinds[j % len(kinds)], bound_version_id=v,
                                  format="saelens", architecture="standard", hook_in="h", hook_out=None, path="-",
                                  sha256="0" * 64, files={}, d_in=8, d_sae=16, d_out=None, n_layers=None, labels_path=None,
                                  labels_sha256=None, replaces_id=None, extra={},
                                  recorded_at=T0 + timedelta(days=36 * k), actor="bench"))
                art_version.append((f"a{i:05d}-{j:02d}", f"m{i:05d}", i * versions_per_model))
        conn.execute(Artifact.__table__.insert(), arows)
        chunk = 200_000
        statuses = np.array(["pass", "warn", "fail", "error"])
        for start in range(0, n_checks, chunk):
            n = min(chunk, n_checks - start)
            a_idx = rng.integers(0, len(art_version), n)
            k = rng.integers(0, versions_per_model, n)
            day = rng.integers(0, 365, n)
            st = statuses[rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05])]
            ev = rng.uniform(0.4, 0.99, n)
            rows = []
            for a, kk, d, s, e in zip(a_idx, k, day, st, ev):
                aid, mid, base = art_version[a]
                t = T0 + timedelta(days=int(d), seconds=int(d) * 7)
                rows.append(dict(kind="fidelity", model_id=mid, version_id=int(base + kk + 1), artifact_id=aid,
                                 other_artifact_id=None, window_start=None, window_end=None, input_hashes={}, parameters={},
                                 metrics={}, status=str(s), reasons=[], flags=[], explained_variance=float(e),
                                 started_at=t, finished_at=t, tool_version="bench", formula_version=None,
                                 recorded_at=t, actor="bench"))
            conn.execute(Check.__table__.insert(), rows)
    # planner statistics, as autovacuum would gather them after a load this size (this machine's
    # PostgreSQL runs with autovacuum off: without them it picks sequential scans per artifact)
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("ANALYZE")
    return {"models": n_models, "versions": vid, "artifacts": len(arows), "checks": n_checks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--quarter", default="2026Q3")
    ap.add_argument("--reuse", action="store_true", help="Reuse an already generated store.")
    args = ap.parse_args()
    if not args.reuse:
        t = time.perf_counter()
        migrate.upgrade(args.db)
        sizes = generate(args.db, args.scale)
        print(f"generated {sizes} in {time.perf_counter() - t:.1f}s")
    from compliance.services.analysis import load_input

    as_of = datetime(2026, 10, 1, tzinfo=timezone.utc)
    with session_scope(args.db, readonly=True) as s:
        t0 = time.perf_counter()
        inp = load_input(s, as_of, with_flags=False)
        t1 = time.perf_counter()
        from compliance.analysis.quarter import analyse_quarter
        from compliance.services.policy import policy_at

        a = analyse_quarter(inp, args.quarter, as_of, policy_at(s, as_of))
        t2 = time.perf_counter()
    p = a.portfolio
    print(f"{make_engine(args.db).dialect.name}: load {t1 - t0:.2f}s + analysis {t2 - t1:.2f}s = {t2 - t0:.2f}s total; "
          f"coverage {p.get('coverage')}, debt {p.get('debt')}, weighted {p.get('weighted_debt')}")


if __name__ == "__main__":
    main()
