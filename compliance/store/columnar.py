"""Columnar reads for the read-only analysis load (Arrow Database Connectivity).

The analysis reads every fidelity check recorded by its as-of: two million rows on a bank-sized
store. Through the DBAPI driver each value becomes a Python object (≈ 0.2 µs a value) before
numpy sees it; an ADBC driver (``adbc-driver-sqlite``, ``adbc-driver-postgresql``) hands the rows
over as Arrow columns, read in C++ (bench/RESULTS-report.md, fifth pass). The reads run in a
process of their own (:mod:`compliance.store.columnar_child` says why), fed and read by a thread
of this one, while the session goes on with its other queries.

An Arrow read runs on a connection of its own, so it is used only for a **read-only** session and
only when that connection sees exactly what the session sees:

* PostgreSQL: the connection imports the session's snapshot (``pg_export_snapshot`` /
  ``SET TRANSACTION SNAPSHOT``) — the same committed state, by the server's guarantee;
* both backends: the ledger head (last sequence number and hash) read on both must be equal.
  Every write appends to the ledger in its own transaction (DESIGN §7), so equal heads mean the
  same committed records. A store that moved between the two reads (SQLite) makes every read of
  the reader fail with :class:`NotTheSameView`, and the caller reads through the session.

No ADBC driver installed or an in-memory SQLite store: no reader; a reader that cannot connect
fails its reads the same way as one that does not see the session's view, and the caller's
fallback is the session's own read. Both paths give the same frames
(tests compare them on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import queue
import re
import struct
import threading
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compliance.store.columnar_child import ENV, end_process, spawn, take
from compliance.store.columnar_child import mode as _mode
from compliance.store.models import Check, LedgerEntry
from compliance.store.raw import Scan, raw_param

__all__ = ["ENV", "ColumnarReader", "NotTheSameView", "enabled"]


# Below this many checks (by the largest check id) the session's own reads are as fast as
# starting a reader; COMPLIANCE_COLUMNAR=1 uses a reader whatever the size (the tests do).
MIN_CHECKS = 100_000


def enabled() -> bool:
    return _mode() != "off"


class NotTheSameView(RuntimeError):
    """The reader's connection does not see what the session sees (or could not be opened)."""


def _head_sql() -> Any:
    return select(LedgerEntry.seq, LedgerEntry.hash).order_by(LedgerEntry.seq.desc()).limit(1)


class ColumnarReader:
    """Arrow reads pinned to a read-only session's view of the store (see the module docstring).
    ``submit(stmt)`` queues a read and returns a Future of a ``pyarrow.Table`` (or of
    ``then(table)``); reads run in order on one thread. ``close()`` ends the reader."""

    def __init__(self, transport: _Child, dialect_name: str, session_dialect: Any, mine: tuple | None,
                 snapshot: str | None) -> None:
        self._transport = transport
        self._dialect_name = dialect_name
        self._session_dialect = session_dialect
        self._jobs: queue.Queue = queue.Queue()
        self._ready: Future = Future()
        # compiled here: on the reader's thread, SQLAlchemy's compiler would wait for the GIL while
        # the caller's thread runs its own queries (≈ 0.2 s)
        head = self._compile(_head_sql())
        self._thread = threading.Thread(target=self._run, args=(mine, snapshot, head), name="compliance-columnar",
                                        daemon=True)
        self._thread.start()

    @property
    def dialect_name(self) -> str:
        return self._dialect_name

    @classmethod
    def open(cls, session: Session) -> ColumnarReader | None:
        """A reader for a read-only session, or None (turned off, not read-only, a backend or a
        store it cannot read: the caller reads through the session)."""
        if not enabled() or not session.info.get("readonly"):
            return None
        if _mode() == "auto":
            if (session.scalar(select(func.max(Check.id))) or 0) < MIN_CHECKS:
                return None
        conn = session.connection()
        name = conn.dialect.name
        try:
            if name == "sqlite":
                transport = _Child.start_sqlite(conn.engine.url)
            elif name == "postgresql":
                transport = _Child.start_postgres(conn.engine.url)
            else:
                return None
        except Exception:  # no driver, no file: the session's own path reads
            return None
        try:
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar() if name == "postgresql" else None
            mine = session.execute(_head_sql()).first()
        except BaseException:
            transport.close()  # the child ends with its input
            raise
        return cls(transport, name, conn.dialect, tuple(mine) if mine else None, snapshot)

    # -- the reader's thread ---------------------------------------------------------------
    def _run(self, mine: tuple | None, snapshot: str | None, head_sql: tuple[str, list]) -> None:
        try:
            if snapshot is not None:
                self._transport.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", [])
                self._transport.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'", [])
            else:
                self._transport.execute("BEGIN", [])
            head = self._transport.execute(*head_sql).to_pylist()
            theirs = tuple(head[0].values()) if head else None
            if theirs != mine:
                raise NotTheSameView(f"the store moved: ledger head {theirs} here, {mine} in the session")
            self._ready.set_result(True)
        except BaseException as exc:
            self._ready.set_exception(exc if isinstance(exc, NotTheSameView) else NotTheSameView(str(exc)))
        while True:
            job = self._jobs.get()
            if job is None:
                break
            fut, sql, params, then, encode, window = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                self._ready.result()
                table = self._transport.execute(sql, params, encode=encode, window=window)
                result = then(table) if then is not None else table
                del table  # the Arrow columns go as soon as they are converted, and Arrow's pool
                _release_arrow_memory()  # keeps no freed buffers (RSS counts them)
                fut.set_result(result)
                del result
            except BaseException as exc:  # handed to the caller through the future
                fut.set_exception(exc)
            del fut, job
        self._transport.close()
        _release_arrow_memory()

    # -- the caller's side -----------------------------------------------------------------
    def _compile(self, stmt: Any, scan: Scan | None = None) -> tuple[str, list]:
        if self._dialect_name == "postgresql":
            from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

            dialect = PGDialect_psycopg(paramstyle="numeric_dollar")
        else:
            dialect = self._session_dialect
        compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
        params = [raw_param(compiled.params[k], self._dialect_name) for k in compiled.positiontup]
        sql = str(compiled)
        if self._dialect_name == "postgresql":
            return _inline_pg(sql, params)
        return (scan.apply(sql) if scan is not None else sql), params

    def usable(self) -> bool:
        """Whether the reader sees what the session sees (waits for its connection)."""
        try:
            return bool(self._ready.result())
        except NotTheSameView:
            return False

    def submit(self, stmt: Any, *, then: Any = None, encode: list | None = None,
               window: tuple[int, int] | None = None, scan: Scan | None = None) -> Future:
        """Queue a read of ``stmt`` (compiled here: SQLAlchemy objects stay on the caller's
        thread); ``then(table)``, if given, runs on the reader's thread and is the result.
        ``encode`` (per column: ``"dict"``, ``"ts"`` or None) and ``window`` (microseconds) let
        a reader in another process send text columns dictionary-encoded and times parsed
        (only when every value parses inside the window); the caller accepts either form.
        ``scan``: SQLite's access path (:mod:`compliance.store.raw`)."""
        fut: Future = Future()
        sql, params = self._compile(stmt, scan)
        self._jobs.put((fut, sql, params, then, encode, window))
        return fut

    def table(self, stmt: Any):
        """Read ``stmt`` and wait for its rows (a ``pyarrow.Table``)."""
        return self.submit(stmt).result()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def __enter__(self) -> ColumnarReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _libpq_dsn(url: Any) -> str:
    """The session's PostgreSQL URL as a libpq ``key=value`` string (query options included, e.g.
    the web view's ``options=-c default_transaction_read_only=on``, which a URI would mangle)."""
    parts = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
             "password": url.password}
    for k, v in url.query.items():
        parts[k] = v if isinstance(v, str) else v[-1]

    def quote(v: Any) -> str:
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quote(v)}" for k, v in parts.items() if v is not None)


_PG_PLACEHOLDER = re.compile(r"\$(\d+)(?!\d)")


def _pg_literal(v: Any) -> str | None:
    """``v`` as a PostgreSQL literal, or None for a value not inlined (kept as a parameter)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, datetime) and v.tzinfo is None:
        return f"'{v.isoformat(sep=' ')}'"
    if isinstance(v, str) and v.isprintable() and "\\" not in v:
        return "'" + v.replace("'", "''") + "'"
    return None


def _inline_pg(sql: str, params: list) -> tuple[str, list]:
    """The statement with its parameters written in as literals, when every one of them is a
    plain value (an integer, a printable string without backslashes, a naive UTC time) and the
    statement has no quoted text of its own; otherwise unchanged. With bound parameters the
    PostgreSQL driver reads the result row by row instead of with ``COPY``: twice as slow for
    two million checks (2.0 s against 1.0 s)."""
    lits = [_pg_literal(v) for v in params]
    if not params or "'" in sql or any(x is None for x in lits):
        return sql, params
    return _PG_PLACEHOLDER.sub(lambda m: lits[int(m.group(1)) - 1], sql), []


def _json_param(v: Any) -> str:
    """A bound time as text (the compiled SQL casts its parameter: ``$1::TIMESTAMP``)."""
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ")
    raise TypeError(f"cannot send a parameter of type {type(v).__name__} to the reader")


def _release_arrow_memory() -> None:
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # an allocator without the call: nothing to release
        pass


class _Child:
    """The reader in a child process (:mod:`compliance.store.columnar_child`)."""

    def __init__(self, driver: str, uri: str) -> None:
        self._proc = take() or spawn()
        self._proc.stdin.write(json.dumps({"driver": driver, "uri": uri}).encode() + b"\n")
        self._proc.stdin.flush()

    @classmethod
    def start_sqlite(cls, url: Any) -> _Child:
        from pathlib import Path
        from urllib.parse import quote, unquote

        import adbc_driver_sqlite  # noqa: F401 - fail at open when the driver is missing

        db = url.database
        if not db or db == ":memory:":
            raise NotTheSameView("an in-memory store cannot be read from another connection")
        if db.startswith("file:"):  # a URI filename (the web view's read-only form): the path before '?'
            db = unquote(db[len("file:"):].split("?", 1)[0])
        path = Path(db)
        if not path.is_file():
            raise NotTheSameView(f"no store file at {path}")
        return cls("sqlite", f"file:{quote(str(path.resolve()))}?mode=ro")

    @classmethod
    def start_postgres(cls, url: Any) -> _Child:
        import adbc_driver_postgresql  # noqa: F401 - fail at open when the driver is missing

        return cls("postgresql", _libpq_dsn(url))

    def execute(self, sql: str, params: list, *, encode: list | None = None, window: Any = None):
        import pyarrow as pa
        import pyarrow.ipc as ipc

        p = self._proc
        req = {"sql": sql, "params": params, "encode": encode or [], "window": list(window) if window else None}
        p.stdin.write(json.dumps(req, default=_json_param).encode() + b"\n")
        p.stdin.flush()
        head = p.stdout.read(9)
        if len(head) < 9:
            raise NotTheSameView("the reader process ended")
        kind, n = head[:1], struct.unpack("<Q", head[1:])[0]
        payload = p.stdout.read(n)
        if kind != b"T":
            raise NotTheSameView(payload.decode(errors="replace"))
        return ipc.open_stream(pa.py_buffer(payload)).read_all()

    def close(self) -> None:
        end_process(self._proc)
