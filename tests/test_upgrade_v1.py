"""A store written by release 0.1.0 (schema 0001_initial, checked in as a SQL dump made by
scripts/make_v1_store.py) upgrades in place, keeps every row and keeps verifying."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from compliance.store import migrate
from compliance.store.engine import SCHEMA_HEAD, make_engine, session_scope
from compliance.store.ledger import verify

DUMP = Path(__file__).parent / "fixtures" / "store-0.1.0.sql"


def _load(tmp_path: Path) -> str:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(DUMP.read_text(encoding="utf-8"))
    con.close()
    return f"sqlite:///{db}"


def _rows(url: str, table: str) -> list[tuple]:
    with make_engine(url).connect() as c:
        return [tuple(r) for r in c.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]


def test_old_store_upgrades_in_place_and_verifies(tmp_path):
    url = _load(tmp_path)
    assert migrate.current(url) == "0001_initial"
    checks_before = _rows(url, "check_run")
    ledger_before = _rows(url, "ledger_entry")

    assert migrate.upgrade(url) == SCHEMA_HEAD
    with session_scope(url, readonly=True) as s:
        after = verify(s)
    assert after.ok, after.summary()
    # the old rows are untouched, old ledger entries identical; the upgrade appended its own
    assert _rows(url, "check_run") == checks_before
    assert _rows(url, "ledger_entry")[: len(ledger_before)] == ledger_before
    codes = {r[0] for r in _rows(url, "failure_mode")}
    assert {"FM-PROTECTED", "FM-UNVALIDATED", "FM-MISSED"} <= codes
    policies = _rows(url, "policy")
    assert len(policies) == 3  # v1 default, v2 (validity_days 60), v3 = v2 + methodology v2 keys
    import json

    doc = json.loads(policies[-1][1]) if isinstance(policies[-1][1], str) else policies[-1][1]
    assert doc["methodology"] == 2 and doc["validity_days"] == 60  # the bank's own value kept
    # upgrading again writes nothing
    n = len(_rows(url, "ledger_entry"))
    migrate.upgrade(url)
    assert len(_rows(url, "ledger_entry")) == n


def test_old_payload_missing_column_matches_only_null(tmp_path):
    """An old entry lacks the v2 columns: that reads as NULL, but a value written behind the
    ledger into such a column is still caught."""
    url = _load(tmp_path)
    migrate.upgrade(url)
    eng = make_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("DROP TRIGGER artifact_no_update")
        c.exec_driver_sql("UPDATE artifact SET set_id = 'forged-set'")
    with session_scope(url, readonly=True) as s:
        r = verify(s)
    assert not r.ok and "set_id" in r.problem
