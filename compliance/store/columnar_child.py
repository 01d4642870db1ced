"""The Arrow reader of a store, in a process of its own (see :mod:`compliance.store.columnar`).

Why a process: its memory (the driver's buffers, Arrow's pool) is returned when it ends, and the
analysis' peak does not add to it. For SQLite there is a second reason: the ADBC SQLite driver carries its own copy of the SQLite library. Two copies of
SQLite in one process do not know each other's POSIX file locks, and closing a file in one copy
drops the locks the other holds on it (https://sqlite.org/howtocorrupt.html, §2.2.1). In a
process of its own the reader takes and releases its own locks like any other reader.

Protocol (stdin → stdout): a first line ``{"driver": "sqlite"|"postgresql", "uri": ...}``; then one JSON request a line, ``{"sql": ..., "params": [...]}``; for each,
one reply: a byte ``T`` and an Arrow IPC stream of the rows, or ``E`` and a UTF-8 message, each
preceded by its length (8 bytes, little-endian). End of input ends the read transaction.
Imports only the driver and pyarrow (no pandas): it starts in a fraction of a second, and
:func:`prestarted` starts it before the caller's own imports, so the two overlap. This module
imports nothing heavy: the CLI calls it first.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# COMPLIANCE_COLUMNAR=0 turns the Arrow reads off (the benchmark's side-by-side reference; a
# site that wants one read path); =1 uses them whatever the store's size (the tests do).
ENV = "COMPLIANCE_COLUMNAR"


def mode() -> str:
    """``off``, ``on`` or ``auto`` (the default) from :data:`ENV`."""
    v = os.environ.get(ENV, "auto").strip().lower()
    return "off" if v in ("0", "false", "no", "off") else "on" if v in ("1", "true", "yes", "on") else "auto"


def spawn():
    """A new reader process, waiting for its first line."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "compliance.store.columnar_child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


_prestarted: list = []


def readers_for(dialect: str) -> int:
    """How many reader processes read the checks of a store of ``dialect`` at once: two for SQLite
    on a machine of two or more cores (a SQLite read runs on one thread of its process), else one
    (a PostgreSQL read already runs on two processes: the server's and the reader's)."""
    return 2 if dialect == "sqlite" and (os.cpu_count() or 1) > 1 else 1


# A SQLite file this small holds fewer checks than a reader is used for (columnar.MIN_CHECKS:
# 100,000 checks take ≈ 36 MB): no process is prestarted for it.
SMALL_SQLITE_BYTES = 16 * 2**20


def _worth_it(url: str | None) -> bool:
    if mode() == "on":
        return True
    if mode() == "off":
        return False
    if url is None:
        url = _default_url()
    if not url.startswith("sqlite"):
        return True  # a server's store: no size to look at
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path.startswith(":memory:"):
        return False  # in memory: no other connection can read it
    if "?" in path:
        return True  # a URI filename (the web view's read-only form): not looked up
    try:
        return os.path.getsize(path) >= SMALL_SQLITE_BYTES
    except OSError:  # no file (yet): nothing to read
        return False


def _default_url() -> str:
    from compliance.store import DEFAULT_DB_URL

    return DEFAULT_DB_URL


@contextmanager
def prestarted(url: str | None = None) -> Iterator[None]:
    """Start the reader processes now (:func:`readers_for`), for the readers opened inside the block
    to take: their interpreter and driver imports (≈ 0.4 s) run while the caller imports the
    analysis and opens its session. Those no reader took (a writing session, a store that moved)
    end on leaving. ``url``: the store to be read (None: the default store); none is started for
    a small SQLite file, or when the reads are turned off."""
    if not _worth_it(url) or _prestarted:
        yield
        return
    dialect = (url or _default_url()).split(":", 1)[0].split("+", 1)[0]
    _prestarted.extend(spawn() for _ in range(readers_for(dialect)))
    try:
        yield
    finally:
        procs = list(_prestarted)
        _prestarted.clear()
        for proc in procs:
            end_process(proc)


def take() -> Any:
    """A prestarted process still running, if there is one (each is taken once)."""
    while _prestarted:
        proc = _prestarted.pop(0)
        if proc.poll() is None:
            return proc
        end_process(proc)
    return None


def end_process(proc: Any) -> None:
    """End a reader process: its input closed, it ends (killed if it does not within 30 s)."""
    try:
        proc.stdin.close()  # end of input: the process ends
        proc.wait(timeout=30)
    except Exception:
        proc.kill()


def _reply(out, kind: bytes, payload: Any) -> None:
    """``payload``: bytes, or an Arrow buffer (written as it is, not copied to bytes first)."""
    out.write(kind + struct.pack("<Q", len(payload)))
    out.write(payload)
    out.flush()


# Rows per Arrow batch from the SQLite driver (its default, 1,024, makes two thousand batches of two
# million checks: their encoding and IPC framing cost 0.5 s, against 0.13 s in batches of this size)
SQLITE_BATCH_ROWS = 131_072


def encode_columns(table, encode: list, window: Any):
    """Smaller on the wire: text columns marked ``dict`` dictionary-encoded, ``ts`` columns parsed
    into timestamps when every value parses inside ``window`` (microseconds since the epoch;
    otherwise the column keeps its text, for the parent's data-quality screen to name)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = list(table.columns)
    for i, how in enumerate(encode[:len(cols)]):
        col = cols[i]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        if how == "dict":
            cols[i] = pc.dictionary_encode(col.combine_chunks())
        elif how == "ts" and window:
            try:
                ts = pc.cast(col, pa.timestamp("us"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            us = ts.cast(pa.int64())
            inside = pc.and_(pc.greater_equal(us, pa.scalar(window[0], pa.int64())), pc.less(us, pa.scalar(window[1], pa.int64())))
            if ts.null_count == 0 and pc.all(inside).as_py():
                cols[i] = ts
    return pa.table(cols, names=table.column_names)


def main(argv: list[str]) -> int:
    import adbc_driver_manager as dm
    import adbc_driver_sqlite
    import pyarrow as pa
    import pyarrow.ipc as ipc

    out = sys.stdout.buffer
    line = sys.stdin.buffer.readline()
    if not line.strip():  # a prestarted reader nobody took
        return 0
    first = json.loads(line)  # on stdin: a URI can hold a password (not in `ps`)
    if first["driver"] == "postgresql":
        import adbc_driver_postgresql

        db = adbc_driver_postgresql.connect(first["uri"])
    else:
        db = adbc_driver_sqlite.connect(first["uri"])
    conn = dm.AdbcConnection(db)
    try:
        for line in sys.stdin.buffer:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                stmt = dm.AdbcStatement(conn)
                try:
                    if first["driver"] == "sqlite":
                        stmt.set_options(**{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)})
                    stmt.set_sql_query(req["sql"])
                    params = req.get("params") or []
                    if params:
                        batch = pa.record_batch([pa.array([p]) for p in params], names=[f"p{i}" for i in range(len(params))])
                        schema, array = batch.__arrow_c_array__()
                        stmt.bind(array, schema)
                    handle, _ = stmt.execute_query()
                    table = pa.RecordBatchReader._import_from_c(handle.address).read_all()
                finally:
                    stmt.close()
                table = encode_columns(table, req.get("encode") or [], req.get("window"))
                sink = pa.BufferOutputStream()
                with ipc.new_stream(sink, table.schema) as w:
                    w.write_table(table)
                _reply(out, b"T", sink.getvalue())
            except Exception as exc:  # reported to the parent, which reads through its session instead
                _reply(out, b"E", f"{type(exc).__name__}: {exc}".encode())
    finally:
        conn.close()
        db.close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    # everything is sent and the connection closed: the interpreter's teardown (freeing Arrow's and
    # the driver's modules, ≈ 0.2-0.5 s) is skipped, the parent waits for the process to end
    os._exit(code)
