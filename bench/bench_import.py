"""`compliance import` at estate scale: 1,000 models, 10,000 versions (one small weights file
each), 1,000 deployments — through the real import code path, beside a raw ``executemany`` of
the same rows in the same run (issue 16, item 5).

    python bench/bench_import.py --db sqlite:///bench/data/import.db [--scale 1.0] [--row-by-row]
    python bench/bench_import.py --db postgresql+psycopg://postgres@127.0.0.1/bench_import

The database is emptied (SQLite: file removed; PostgreSQL: schema dropped) and initialised
before each run. Timed: ``import_manifest`` inside one ``session_scope`` (YAML load, validation,
file hashing, inserts, ledger, commit) — what ``compliance import`` runs after argument parsing —
and the whole ``compliance import`` process (start-up included). The raw baseline inserts the
rows the import wrote (read back from the store, ledger entries included) into an empty copy of
the same tables with the driver's own ``executemany`` (psycopg: also ``COPY``), in one
transaction, with no hashing or checking: the floor for writing these rows at all.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def build_manifest(root: Path, scale: float = 1.0, versions_per_model: int = 10) -> tuple[Path, int]:
    """Write the estate's manifest and weights files under ``root``; returns (manifest, records)."""
    n_models = max(1, int(1000 * scale))
    wdir = root / "weights"
    wdir.mkdir(parents=True, exist_ok=True)
    models, versions, deployments = [], [], []
    for i in range(n_models):
        mid = f"m{i:04d}"
        models.append({"id": mid, "name": f"Model {i}", "owner": f"owner{i % 50}", "tier": 1 + i % 3,
                       "use": f"synthetic use {i % 17}", "tags": ["sr11-7"] if i % 2 else []})
        for k in range(1, versions_per_model + 1):
            w = wdir / f"{mid}-v{k}.bin"
            w.write_bytes(f"{mid} v{k} ".encode() * 8)
            v = {"model": mid, "version": f"v{k}", "weights": f"weights/{w.name}",
                 "trained_at": f"2025-{1 + k % 12:02d}-{1 + i % 28:02d}T00:00:00Z",
                 "data_window": f"2024-01-01..2024-{1 + k % 12:02d}-28"}
            if k > 1:
                v["parent"] = f"v{k - 1}"
            versions.append(v)
        deployments.append({"model": mid, "version": f"v{versions_per_model}", "action": "deploy",
                            "at": f"2026-01-{1 + i % 28:02d}T00:00:00Z"})
    doc = {"format": "compliance-manifest/1", "models": models, "versions": versions, "deployments": deployments}
    m = root / "manifest.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    m.write_text(yaml.dump(doc, Dumper=dumper, sort_keys=False))
    m.with_suffix(".json").write_text(json.dumps(doc))  # the same manifest as JSON
    return m, len(models) + len(versions) + len(deployments)


def fresh_store(url: str) -> None:
    from sqlalchemy import text

    from compliance.store import migrate
    from compliance.store.engine import make_engine

    make_engine(url).dispose()  # pooled connections to a removed file would still see the old store
    if url.startswith("sqlite:///"):
        p = Path(url[len("sqlite:///"):])
        for suffix in ("", "-wal", "-shm"):
            Path(str(p) + suffix).unlink(missing_ok=True)
        p.parent.mkdir(parents=True, exist_ok=True)
    else:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)


def timed_import(url: str, manifest: Path, records: int, *, bulk: bool) -> dict:
    from compliance.services.manifest import import_manifest
    from compliance.store.engine import session_scope

    t, c = time.perf_counter(), time.process_time()
    with session_scope(url) as s:
        counts = import_manifest(s, manifest, bulk=bulk)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    assert sum(counts.values()) == records, counts
    return {"path": "bulk" if bulk else "row-by-row", "records": records, "seconds": round(dt, 3),
            "records_per_s": round(records / dt), "cpu_s": round(cpu, 3), "records_per_cpu_s": round(records / cpu)}


def timed_steps(url: str, manifest: Path, records: int) -> dict:
    """One bulk import with its steps timed (CPU and wall ms, µs of CPU per record). Top level:
    the manifest's load and structural check, each section's validation and writes, the commit;
    ``within`` the writes: the door and control-character checks, the payload texts, the ledger
    chain's hashes, the driver inserts (rows and ledger rows). The wrappers cost a few µs a call."""
    from compliance.services import bulk_import
    from compliance.services import manifest as service
    from compliance.services.manifest import import_manifest
    from compliance.store import ledger
    from compliance.store.engine import session_scope

    acc: dict[str, list[float]] = {}

    def timed(name: str, fn, consume: bool = False):
        def wrapper(*a, **k):
            c, w = time.process_time(), time.perf_counter()
            try:
                out = fn(*a, **k)
                return iter(list(out)) if consume else out
            finally:
                got = acc.setdefault(name, [0.0, 0.0])
                got[0] += time.process_time() - c
                got[1] += time.perf_counter() - w
        return wrapper

    patches = [(service, "load_manifest", False)] + [(bulk_import, n, False) for n in
               ("add_models", "version_rows", "write_versions", "add_deployments")] + [
               (ledger, n, n == "ledger_chain") for n in ("columns_pass", "_controls_in", "_payload_texts", "ledger_chain",
                                                         "insert_columns")]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, consume in patches:
        setattr(mod, name, timed(name, getattr(mod, name), consume))
    try:
        fresh_store(url)
        c0, w0 = time.process_time(), time.perf_counter()
        with session_scope(url) as s:
            import_manifest(s, manifest, bulk=True)
            c1, w1 = time.process_time(), time.perf_counter()
        acc["commit"] = [time.process_time() - c1, time.perf_counter() - w1]
        total = [time.process_time() - c0, time.perf_counter() - w0]
    finally:
        for mod, name, fn in saved:
            setattr(mod, name, fn)
    top = ("load_manifest", "add_models", "version_rows", "write_versions", "add_deployments", "commit")
    acc["other"] = [total[i] - sum(acc.get(k, [0, 0])[i] for k in top) for i in (0, 1)]

    def row(v: list[float]) -> dict:
        return {"cpu_ms": round(v[0] * 1e3, 1), "wall_ms": round(v[1] * 1e3, 1), "cpu_us_per_record": round(v[0] * 1e6 / records, 1)}

    return {"path": "bulk, steps timed", "manifest": manifest.name, "records": records, "total": row(total),
            "steps": {k: row(acc[k]) for k in (*top, "other") if k in acc},
            "within": {k: row(v) for k, v in acc.items() if k not in (*top, "other")}}


def timed_cli(url: str, manifest: Path, records: int) -> dict:
    env = dict(os.environ, COMPLIANCE_DB_URL=url)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "compliance.cli.main", "import", str(manifest)], env=env,
                       capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr)
    return {"path": "compliance import (process)", "records": records, "seconds": round(dt, 3),
            "records_per_s": round(records / dt)}


def verify(url: str) -> dict:
    from compliance.store.engine import session_scope
    from compliance.store.ledger import verify as verify_ledger

    t = time.perf_counter()
    with session_scope(url, readonly=True) as s:
        res = verify_ledger(s)
    return {"verify_ok": res.ok, "entries": res.entries, "verify_seconds": round(time.perf_counter() - t, 3)}


TABLES = ("model", "model_version", "deployment_event", "ledger_entry")


def raw_baseline(url: str) -> list[dict]:
    """The rows the import wrote, re-inserted raw into empty tables of the same schema."""
    from sqlalchemy import text

    from compliance.store.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        data = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}"))] for t in TABLES}
        cols = {t: list(conn.execute(text(f"SELECT * FROM {t} LIMIT 0")).keys()) for t in TABLES}
    n = sum(len(data[t]) for t in TABLES if t != "ledger_entry")
    out = []
    if url.startswith("sqlite"):
        import sqlite3

        path = url[len("sqlite:///"):] + ".raw"
        Path(path).unlink(missing_ok=True)
        src = sqlite3.connect(url[len("sqlite:///"):])
        ddl = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name IN (%s)"
                                         % ",".join("?" * len(TABLES)), TABLES)]
        src.close()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        for d in ddl:
            conn.execute(d)
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for tbl in TABLES:
            conn.executemany(f"INSERT INTO {tbl} ({','.join(cols[tbl])}) VALUES ({','.join('?' * len(cols[tbl]))})",
                             data[tbl])
        conn.execute("COMMIT")
        dt = time.perf_counter() - t
        conn.close()
        Path(path).unlink(missing_ok=True)
        out.append({"path": "raw sqlite3.executemany (rows + ledger rows)", "records": n, "seconds": round(dt, 3),
                    "records_per_s": round(n / dt)})
        return out + [raw_into_store(url, data, cols, n)]
    import psycopg
    from psycopg.types.json import Json

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    data = {t: [tuple(Json(v) if isinstance(v, (dict, list)) else v for v in r) for r in rows] for t, rows in data.items()}
    for how in ("executemany", "COPY", "COPY, identity trigger on"):
        with psycopg.connect(dsn) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS raw_bench")
            for tbl in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS raw_bench.{tbl}")
                conn.execute(f"CREATE TABLE raw_bench.{tbl} (LIKE public.{tbl} INCLUDING ALL)")
            if "trigger" in how:  # the per-row session_user check every ledger append passes (migration 0007)
                conn.execute("CREATE TRIGGER ledger_entry_identity BEFORE INSERT ON raw_bench.ledger_entry "
                             "FOR EACH ROW EXECUTE FUNCTION public.compliance_ledger_identity()")
            conn.commit()
            t = time.perf_counter()
            with conn.cursor() as cur:
                for tbl in TABLES:
                    names = ",".join(cols[tbl])
                    if how.startswith("COPY"):
                        with cur.copy(f"COPY raw_bench.{tbl} ({names}) FROM STDIN") as cp:
                            for row in data[tbl]:
                                cp.write_row(row)
                    else:
                        cur.executemany(f"INSERT INTO raw_bench.{tbl} ({names}) VALUES "
                                        f"({','.join(['%s'] * len(cols[tbl]))})", data[tbl])
            conn.commit()
            dt = time.perf_counter() - t
            conn.execute("DROP SCHEMA raw_bench CASCADE")
            conn.commit()
        out.append({"path": f"raw psycopg {how} (rows + ledger rows)", "records": n, "seconds": round(dt, 3),
                    "records_per_s": round(n / dt)})
    return out + [raw_into_store(url, data, cols, n)]


def raw_into_store(url: str, data: dict, cols: dict, n: int) -> dict:
    """The same rows written raw into a freshly migrated store: the store's own tables with every
    index, foreign key and trigger the import meets (SQLite: foreign keys on, as the store's
    connections have them; PostgreSQL: the ledger's identity trigger, the foreign-key checks),
    the ledger entries the migrations seeded left out. The floor for writing these rows into
    this schema, beside the import's own figure."""
    fresh_store(url)
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        seeded = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_entry").fetchone()[0]
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for tbl in TABLES:
            rows = [r for r in data[tbl] if tbl != "ledger_entry" or r[0] > seeded]
            conn.executemany(f"INSERT INTO {tbl} ({','.join(cols[tbl])}) VALUES ({','.join('?' * len(cols[tbl]))})", rows)
        conn.execute("COMMIT")
        dt = time.perf_counter() - t
        conn.close()
        how = "raw sqlite3.executemany into the store's schema (indexes, triggers, foreign keys)"
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            seeded = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_entry").fetchone()[0]
            conn.commit()
            t = time.perf_counter()
            with conn.cursor() as cur:
                for tbl in TABLES:
                    with cur.copy(f"COPY {tbl} ({','.join(cols[tbl])}) FROM STDIN") as cp:
                        for row in data[tbl]:
                            if tbl != "ledger_entry" or row[0] > seeded:
                                cp.write_row(row)
            conn.commit()
            dt = time.perf_counter() - t
        how = "raw psycopg COPY into the store's schema (indexes, foreign keys, identity trigger)"
    return {"path": how, "records": n, "seconds": round(dt, 3), "records_per_s": round(n / dt)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--work", default=str(ROOT / "bench" / "data" / "import"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each bulk import (each into a fresh store)")
    ap.add_argument("--row-by-row", action="store_true", help="also time the row-by-row path (slow)")
    ap.add_argument("--no-cli", action="store_true", help="skip the timed `compliance import` process")
    ap.add_argument("--steps", action="store_true", help="also one import per manifest form with its steps timed")
    a = ap.parse_args()
    work = Path(a.work)
    manifest, records = build_manifest(work, a.scale)
    print(json.dumps({"load": os.getloadavg(), "records": records, "manifest_mib": round(manifest.stat().st_size / 2**20, 2)}))
    runs = [(manifest, True), (manifest.with_suffix(".json"), True)] + ([(manifest, False)] if a.row_by_row else [])
    for path, bulk in runs:
        for _ in range(a.repeat if bulk else 1):
            fresh_store(a.db)
            r = timed_import(a.db, path, records, bulk=bulk)
            print(json.dumps({**r, "manifest": path.name, **verify(a.db), "load": os.getloadavg()}), flush=True)
    if a.steps:
        for path in (manifest, manifest.with_suffix(".json")):
            print(json.dumps({**timed_steps(a.db, path, records), "load": os.getloadavg()}), flush=True)
    for r in raw_baseline(a.db):
        print(json.dumps({**r, "load": os.getloadavg()}), flush=True)
    if not a.no_cli:
        fresh_store(a.db)
        print(json.dumps({**timed_cli(a.db, manifest, records), "load": os.getloadavg()}), flush=True)


if __name__ == "__main__":
    main()
