"""Reads on the raw DBAPI cursor (no per-value ORM or type processing) and the SQLite access
paths the bulk reads of the check table need.

SQLite's planner picks the ``recorded_at`` index for ``recorded_at <= :as_of`` whenever the
statistics make the range look narrow, then looks each row up in the table: ≈ 1.8 µs a check,
3.6 s for two million. The bulk reads match most of the table, so they name their access path:

* :data:`CHECK_COVER` — the covering index ``ix_check_run_cover`` (kind, artifact, version,
  finished_at, status, explained variance, model, other artifact, recorded_at; the id is the
  rowid): for a read of those columns of one kind (1.2 s for two million fidelity checks);
* :data:`CHECK_SCAN` — the table in full (``NOT INDEXED``): for reads of columns the index does
  not hold (``flags``, ``reasons``), filtered on most rows.

PostgreSQL plans these reads as sequential scans by itself; the hints are SQLite's only. A
statement run through the session (an ORM select) takes its path as an execution option:
``session.scalars(on_path(stmt, CHECK_COVER))``; the engine's hook writes it into the SQL on SQLite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Scan:
    """How SQLite reads ``table``: ``how`` is ``NOT INDEXED`` or ``INDEXED BY <index>``."""

    table: str
    how: str = "NOT INDEXED"

    def apply(self, sql: str) -> str:
        """``sql`` with the hint after the first ``FROM <table>`` (only the first)."""
        return re.sub(rf"\bFROM {re.escape(self.table)}(?=[ \n])", f"FROM {self.table} {self.how}", sql, count=1)


CHECK_SCAN = Scan("check_run")
CHECK_COVER = Scan("check_run", "INDEXED BY ix_check_run_cover")


_OPTION = "compliance_sqlite_scan"


def on_path(stmt: Any, scan: Scan) -> Any:
    """``stmt`` to be run on SQLite through ``scan`` (see :func:`install_scan_hook`)."""
    return stmt.execution_options(**{_OPTION: scan})


def install_scan_hook(engine: Engine) -> None:
    """On a SQLite engine: statements carrying :func:`on_path`'s option get its hint."""

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _hint(conn, cursor, statement, parameters, context, executemany):
        scan = context.execution_options.get(_OPTION) if context is not None else None
        return (scan.apply(statement) if scan is not None else statement), parameters


def raw_param(v: Any, dialect: str) -> Any:
    """A bound value as the DBAPI driver compares it with what SQLAlchemy stored."""
    if isinstance(v, datetime):
        naive = v.astimezone(timezone.utc).replace(tzinfo=None)
        # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff'; compare in that form.
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else naive
    return v


def raw_batches(session: Session, stmt, size: int | None = None, *, scan: Scan | None = None) -> Iterator[list]:
    """Run a Core select on the raw DBAPI cursor and yield its rows as lists: all at once, or
    ``size`` at a time (memory bounded by one batch). ``scan``: SQLite's access path for a read
    of most of a table (see the module docstring)."""
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = {k: raw_param(v, conn.dialect.name) for k, v in compiled.params.items()}
    args = [params[k] for k in compiled.positiontup] if compiled.positional else params
    sql = scan.apply(str(compiled)) if scan and conn.dialect.name == "sqlite" else str(compiled)
    cur = conn.connection.cursor()
    try:
        cur.execute(sql, args)
        while True:
            rows = cur.fetchall() if size is None else cur.fetchmany(size)
            if rows:
                yield rows
            if size is None or not rows:
                break
    finally:
        cur.close()
