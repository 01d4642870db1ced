"""The bulk reads of the check table name SQLite's access path (``compliance.store.raw``): with
statistics like a bank-sized store's, SQLite's planner would walk the ``recorded_at`` index with a
table look-up per check (3.6 s at two million checks); the analysis load must not."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from compliance.services.analysis import load_input
from compliance.store.analysis_reads import fidelity_query
from compliance.store import columnar
from compliance.store.columnar import ColumnarReader
from compliance.store.engine import session_scope
from compliance.store.models import Check
from compliance.store.raw import CHECK_COVER, CHECK_SCAN, Scan, raw_batches
from tests.test_analysis_store import T0, Clock, build, fidelity

# sqlite_stat1 as ANALYZE left it on the 2,000-model bench store (2,000,000 checks)
BANK_STATS = [("check_run", "ix_check_run_recorded_at", "2000000 5480"),
              ("check_run", "ix_check_run_model_id", "2000000 1000"),
              ("check_run", "ix_check_run_cover", "2000000 2000000 40 5 1 1 1 1 1 1")]


def test_scan_puts_the_hint_after_the_table():
    sql = "SELECT check_run.id \nFROM check_run \nWHERE check_run.kind = ?"
    assert CHECK_COVER.apply(sql) == "SELECT check_run.id \nFROM check_run INDEXED BY ix_check_run_cover \nWHERE check_run.kind = ?"
    assert CHECK_SCAN.apply("SELECT 1 FROM check_run WHERE x") == "SELECT 1 FROM check_run NOT INDEXED WHERE x"
    # another table of the same prefix is left alone; only the first FROM of the table is hinted
    assert Scan("check").apply("SELECT 1 FROM check_run WHERE x") == "SELECT 1 FROM check_run WHERE x"
    assert (CHECK_SCAN.apply("SELECT 1 FROM check_run\nWHERE id IN (SELECT id FROM check_run WHERE y)")
            == "SELECT 1 FROM check_run NOT INDEXED\nWHERE id IN (SELECT id FROM check_run WHERE y)")


@pytest.fixture
def bank_like(tmp_path):
    """A SQLite store with a few checks and the bank store's planner statistics."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    st = build(url, tmp_path, 2, Clock(T0 - timedelta(days=1)))
    for i, status in enumerate(["pass", "warn", "fail"]):
        fidelity(st, f"m{i % 2}-sae", f"m{i % 2}", status, T0 + timedelta(days=3 + i))
    con = sqlite3.connect(tmp_path / "store.db")
    con.execute("ANALYZE")
    con.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'check_run'")
    con.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", BANK_STATS)
    con.commit()
    con.close()
    return url, tmp_path / "store.db"


def _plans(db, statements: list[str]) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [" | ".join(r[-1] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
                for sql, params in statements]
    finally:
        con.close()


def test_the_statistics_alone_would_pick_the_recorded_at_index(bank_like):
    """The premise: without a hint, SQLite walks ``recorded_at`` for the fidelity read."""
    url, db = bank_like
    stmt = fidelity_query(datetime.now(timezone.utc))[0]
    with session_scope(url, readonly=True) as s:
        unhinted = [r for rows in raw_batches(s, stmt) for r in rows]
        hinted = [r for rows in raw_batches(s, stmt, scan=CHECK_COVER) for r in rows]
        compiled = stmt.compile(dialect=s.bind.dialect, compile_kwargs={"render_postcompile": True})
    assert sorted(unhinted) == sorted(hinted) and len(hinted) == 3  # the same rows either way
    params = ["fidelity", "2100-01-01 00:00:00.000000"]
    [plain] = _plans(db, [(str(compiled), params)])
    assert "ix_check_run_recorded_at" in plain


def test_the_analysis_load_never_walks_the_recorded_at_index(bank_like, monkeypatch):
    url, db = bank_like
    monkeypatch.setenv(columnar.ENV, "0")  # every read on the session, where the trace sees it
    seen: list[str] = []
    with session_scope(url, readonly=True) as s:
        s.connection().connection.driver_connection.set_trace_callback(seen.append)
        inp = load_input(s, datetime.now(timezone.utc), with_flags=True)
    assert len(inp.checks) == 3
    on_checks = [sql for sql in seen if "FROM check_run" in sql and "recorded_at <=" in sql]
    assert len(on_checks) >= 3  # fidelity, the other kinds, alignment metrics (flags: a full scan)
    # the traced statements carry their values: EXPLAIN them as they ran
    plans = _plans(db, [(sql, ()) for sql in on_checks])
    for sql, plan in zip(on_checks, plans):
        assert "ix_check_run_recorded_at" not in plan, (sql, plan)
    assert any("COVERING INDEX ix_check_run_cover" in p for p in plans)


def test_the_pack_never_walks_the_recorded_at_index(bank_like):
    """The report's reads of the check table (the lean fidelity rows, the other kinds of the
    quarter, the overhead checks, the plans' latest checks) name their path too, ORM selects
    included (``on_path``: the engine's hook writes the hint on SQLite)."""
    from compliance.services.report import build_context

    url, db = bank_like
    seen: list[str] = []
    at = T0 + timedelta(days=40)
    with session_scope(url, readonly=True) as s:
        s.connection().connection.driver_connection.set_trace_callback(seen.append)
        for model in (None, "m0"):
            build_context(s, "2026Q3", at, model_id=model)
    on_checks = [sql for sql in seen if "FROM check_run" in sql and "recorded_at <=" in sql
                 and sql.lstrip().upper().startswith("SELECT")]
    assert any("INDEXED BY ix_check_run_cover" in sql and "ORDER BY" in sql for sql in on_checks)  # an ORM select
    for sql, plan in zip(on_checks, _plans(db, [(sql, ()) for sql in on_checks])):
        assert "ix_check_run_recorded_at" not in plan, (sql, plan)


def test_on_path_is_sqlites_only(db_url, tmp_path):
    """The same rows with and without the path; only SQLite's statement carries the hint."""
    from compliance.store.raw import on_path

    st = build(db_url, tmp_path, 1, Clock(T0 - timedelta(days=1)))
    fidelity(st, "m0-sae", "m0", "pass", T0 + timedelta(days=2))
    stmt = select(Check.id, Check.status).where(Check.kind == "fidelity").order_by(Check.id)
    traced: list[str] = []
    with session_scope(db_url, readonly=True) as s:
        if db_url.startswith("sqlite"):
            s.connection().connection.driver_connection.set_trace_callback(traced.append)
        plain = s.execute(stmt).all()
        hinted = s.execute(on_path(stmt, CHECK_COVER)).all()
    assert plain == hinted and len(plain) == 1
    if db_url.startswith("sqlite"):
        reads = [sql for sql in traced if "FROM check_run" in sql]
        assert len(reads) == 2
        assert "INDEXED BY" not in reads[0] and "FROM check_run INDEXED BY ix_check_run_cover" in reads[1]


def test_the_reader_sends_the_hint(bank_like, monkeypatch):
    url, db = bank_like
    monkeypatch.setenv(columnar.ENV, "1")
    at = datetime.now(timezone.utc)
    with session_scope(url, readonly=True) as s:
        with ColumnarReader.open(s) as reader:
            sql, params = reader._compile(fidelity_query(at)[0], CHECK_COVER)
            assert reader.usable()
            rows = reader.submit(select(Check.id).where(Check.kind == "fidelity"), scan=CHECK_COVER).result()
    assert rows.num_rows == 3
    [plan] = _plans(db, [(sql, params)])
    assert "COVERING INDEX ix_check_run_cover" in plan
