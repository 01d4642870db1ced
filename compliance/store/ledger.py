"""The tamper-evident ledger (DESIGN §7).

Every evidence insert goes through :func:`record`, which stamps ``recorded_at`` and ``actor``
from the session (never from the caller), flushes the row and appends a ledger entry in the same
transaction. Entries are hash-chained::

    hash = SHA-256(prev_hash ‖ canonical JSON of {seq, recorded_at, actor, action,
                                                   entity_type, entity_id, payload})

Appends are serialised: SQLite transactions that write start with ``BEGIN IMMEDIATE`` (see
:mod:`compliance.store.engine`); on PostgreSQL the first append of a transaction takes a
transaction-scoped advisory lock. The head is then read once per transaction and cached.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Integer, String, TypeDecorator, column, event, func, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError, InputError, UsageError
from compliance.hashing import GENESIS_HASH, canonical_json, json_safe, ledger_chain, ledger_entry_hash
from compliance.store.door import check_row, check_values, columns_pass
from compliance.store.engine import begin_writing
from compliance.store.models import ADDED_COLUMNS, BY_TABLE, EVIDENCE_MODELS, Base, LedgerEntry
from compliance.text import CONTROL as _CONTROL_CHARS
from compliance.text import escape_controls
from compliance.timeutil import iso

GENESIS = GENESIS_HASH
ADVISORY_LOCK_KEY = 0x636F6D70  # "comp"
_HEAD = "compliance.ledger_head"
_HEAD_AT = "compliance.ledger_head_recorded_at"


def row_payload(obj: Base) -> dict[str, Any]:
    """The canonical content of an evidence row: every column, JSON-safe."""
    return _payload(obj.__table__, lambda col: getattr(obj, col.key))


_FLOAT, _INT, _STR, _OTHER = range(4)
_PLANS: dict[Any, list[tuple[Any, str, int]]] = {}


def _plan(table) -> list[tuple[Any, str, int]]:
    """Each column with how its value becomes JSON (computed once per table: the bulk path and
    ``verify`` build a payload per row)."""
    plan = _PLANS.get(table)
    if plan is None:
        plan = [(col, col.name, _FLOAT if isinstance(col.type, Float) else _INT if isinstance(col.type, Integer)
                 else _STR if isinstance(col.type, String) else _OTHER) for col in table.columns]
        _PLANS[table] = plan
    return plan


def _payload(table, value_of) -> dict[str, Any]:
    plan = _plan(table)
    return _payload_values(plan, [value_of(col) for col, _name, _kind in plan])


def _payload_values(plan: list[tuple[Any, str, int]], values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (_col, name, kind), value in zip(plan, values):
        if value is None:
            out[name] = None
        elif kind == _FLOAT:
            value = float(value)
            out[name] = value if math.isfinite(value) else None
        elif kind == _INT:
            out[name] = int(value)
        elif kind == _STR and type(value) is str:
            out[name] = value
        else:
            out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return iso(value)
    return json_safe(value)


def entity_id_of(obj: Base) -> str:
    pk = inspect(obj).identity
    if pk is None or len(pk) != 1:
        raise ComplianceError(f"cannot record {type(obj).__name__}: no single primary key after flush")
    return str(pk[0])


entry_hash = ledger_entry_hash


def _lock_and_head(session: Session) -> tuple[int, str]:
    head = session.info.get(_HEAD)
    if head is not None:
        return head
    begin_writing(session)  # a short-writes session takes the write lock only now
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        if "ledger_actor" not in session.info:  # e.g. a migration's seeding session
            session.info["ledger_actor"] = str(session.execute(text("SELECT session_user")).scalar())
        if session.info.get("replay"):  # the database's identity rules read it (store.triggers)
            session.execute(text("SELECT set_config('compliance.replay', 'on', true)"))
    row = session.execute(
        select(LedgerEntry.seq, LedgerEntry.hash, LedgerEntry.recorded_at).order_by(LedgerEntry.seq.desc()).limit(1)
    ).first()
    head = (row.seq, row.hash) if row else (0, GENESIS)
    session.info[_HEAD] = head
    session.info[_HEAD_AT] = row.recorded_at if row else None
    return head


def locked_head(session: Session) -> tuple[int, str]:
    """The ledger head under the append lock (no other writer can append before this transaction ends)."""
    return _lock_and_head(session)


def record(session: Session, obj: Base, *, action: str = "insert") -> Base:
    """Insert one evidence row and its ledger entry (same transaction)."""
    return record_many(session, [obj], action=action)[0]


def record_many(session: Session, objs: list[Base], *, action: str = "insert") -> list[Base]:
    if not objs:
        return objs
    now = session.info["clock"]()
    for obj in objs:
        check_row(obj, now)  # the door: nothing that would poison an analysis gets in
    now, action, who, head_ = _open_append(session, now, action)
    actor = session.info["actor"]
    for obj in objs:
        _refuse_controls(obj.__table__, lambda key, obj=obj: getattr(obj, key, None))
        obj.recorded_at = now
        obj.actor = actor
    session.add_all(objs)
    session.flush()
    _append(session, head_, now, who, action,
            ((obj.__tablename__, entity_id_of(obj), canonical_json(row_payload(obj))) for obj in objs))
    return objs


def record_rows(session: Session, model: type[Base], rows: list[dict[str, Any]], *, action: str = "insert",
                where: Callable[[int], str] | None = None, batch: int = 5_000) -> list[str]:
    """The bulk path of :func:`record_many` (issue 16): rows given as dicts of column values (every
    primary key set, see :func:`reserve_ids`), inserted in batches by :func:`insert_rows`, one
    ledger append per batch. Same door, same stamps, same payloads, hashes and chain as
    :func:`record_many` of the same rows would write under the same clock and actor; the rows never
    enter the ORM session. ``where(i)`` names row ``i`` in an error. Returns each row's canonical
    payload (the JSON text its ledger entry holds).

    The door and the control-character rule are checked column by column over the whole batch
    (each distinct value once); only when that finds a problem are the rows checked one by one,
    which names the first bad row exactly as :func:`record_many` would. Payloads are assembled
    from per-column JSON pieces (:func:`_payload_texts`) and hashed by
    :func:`compliance.hashing.ledger_chain`: the same text and hashes as :func:`row_payload`,
    :func:`canonical_json` and :func:`ledger_entry_hash` give (tests/test_bulk_import.py)."""
    if not rows:
        return []
    table = model.__table__
    pk = list(table.primary_key.columns)
    if len(pk) != 1:
        raise ComplianceError(f"cannot record {model.__name__} in bulk: no single primary key")
    key = pk[0].key
    now = session.info["clock"]()
    keys = [col.key for col in table.columns]
    columns = {k: [row.get(k) for row in rows] for k in keys}
    if any(v is None for v in columns[key]) or not columns_pass(table, columns, now) or _controls_in(columns):
        for i, row in enumerate(rows):
            try:
                if row.get(key) is None:
                    raise ComplianceError(f"cannot record {model.__name__} in bulk without its primary key")
                check_values(table, row.get, now)
                _refuse_controls(table, row.get)
            except ComplianceError as exc:
                raise type(exc)(f"{where(i)}: {exc}" if where else str(exc)) from None
    actor = session.info["actor"]
    plan = _plan(table)
    payloads: list[str] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        stamped, act, who, head_ = _open_append(session, now, action)
        for row in chunk:
            row["recorded_at"] = stamped
            row["actor"] = actor
        values = [[stamped] * len(chunk) if k == "recorded_at" else [actor] * len(chunk) if k == "actor"
                  else columns[k][start:start + batch] for k in keys]
        texts = _payload_texts(plan, values)
        insert_columns(session, table, values)
        _append(session, head_, stamped, who, act,
                zip([str(table.name)] * len(chunk), map(str, columns[key][start:start + batch]), texts), bulk=True)
        payloads += texts
    return payloads


def _controls_in(columns: dict[str, list[Any]]) -> bool:
    """Whether any text value of a batch holds a control character (one scan of all of them:
    the separator, a newline, is not one)."""
    for values in columns.values():
        try:
            text = "\n".join(values)  # the common column: all text
        except TypeError:
            text = "\n".join(v for v in values if isinstance(v, str))
        if _CONTROL_CHARS.search(text):
            return True
    return False


_TEXT = json.encoder.encode_basestring  # the canonical encoder's own string form (ensure_ascii=False)


def _payload_texts(plan: list[tuple[Any, str, int]], values: list[list[Any]]) -> list[str]:
    """``canonical_json(_payload_values(plan, row))`` for each row of a batch given column by column
    (``values`` in ``plan`` order): each value's JSON piece made once per column, the pieces
    joined in sorted key order as the encoder joins them."""
    pieces = []
    for (_col, _name, kind), column_values in zip(plan, values):
        if kind == _STR:
            pieces.append([_TEXT(v) if type(v) is str else _value_text(kind, v) for v in column_values])
        elif kind == _INT:
            pieces.append([repr(v) if type(v) is int else _value_text(kind, v) for v in column_values])
        else:
            seen: dict[Any, str] = {}
            out = []
            for v in column_values:
                t = type(v)
                if t is datetime or t is date:  # equal values have one ISO text (iso() is in UTC)
                    text = seen.get(v)
                    if text is None:
                        text = seen[v] = _value_text(kind, v)
                    out.append(text)
                else:
                    out.append(_value_text(kind, v))
            pieces.append(out)
    order = sorted(range(len(plan)), key=lambda k: plan[k][1])
    template = "{" + ",".join(_TEXT(plan[k][1]).replace("%", "%%") + ":%s" for k in order) + "}"
    return [template % row for row in zip(*(pieces[k] for k in order))]


def _value_text(kind: int, value: Any) -> str:
    return canonical_json(_payload_values([(None, "v", kind)], [value])["v"])


def insert_columns(session: Session, table, columns: list[list[Any]]) -> None:
    """:func:`insert_rows` for rows given column by column (``columns`` in the table's column
    order). A date or time that repeats in a column goes through its bind processor once."""
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name not in ("postgresql", "sqlite"):
        insert_rows(session, table, [list(r) for r in zip(*columns)])
        return
    bound = []
    for col, vals in zip(table.columns, columns):
        proc = col.type._cached_bind_processor(dialect)
        if proc is None:
            bound.append(vals)
            continue
        seen: dict[Any, Any] = {}
        out = []
        for v in vals:
            t = type(v)
            if t is datetime or t is date:  # equal aware times are one instant: one stored value
                b = seen.get(v, seen)
                if b is seen:
                    b = seen[v] = proc(v)
                out.append(b)
            else:
                out.append(proc(v))
        bound.append(out)
    _write(conn, table, list(zip(*bound)))


def insert_rows(session: Session, table, rows: list[list[Any]]) -> None:
    """Insert rows (values in the table's column order) in the session's transaction, at the driver's speed:
    values go through each column type's own bind processor (what a Core insert applies), then
    PostgreSQL takes them by ``COPY`` and SQLite by ``executemany``. Constraints and row triggers
    (append-only, door checks, the identity check on ledger entries) fire as for any insert.
    Other dialects get a Core ``executemany``."""
    conn = session.connection()
    dialect = conn.dialect
    cols = list(table.columns)
    if dialect.name not in ("postgresql", "sqlite") or not rows:
        if rows:
            session.execute(table.insert(), [{c.key: v for c, v in zip(cols, r)} for r in rows])
        return
    procs = [c.type._cached_bind_processor(dialect) for c in cols]
    _write(conn, table, [tuple(p(v) if p is not None else v for p, v in zip(procs, r)) for r in rows])


def _write(conn, table, data: list[tuple[Any, ...]]) -> None:
    """Bound rows into ``table`` with the driver: PostgreSQL ``COPY`` (binary where every column's
    type allows it; on the writer thread inside :func:`background_writes`), SQLite ``executemany``."""
    if not data:
        return
    dialect = conn.dialect
    names = ", ".join(dialect.identifier_preparer.quote(c.name) for c in table.columns)
    raw = conn.connection.driver_connection
    if dialect.name == "postgresql":
        sql = f"COPY {dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN"
        types = _pg_types(conn, table)
        if types is not None:
            sql += " (FORMAT BINARY)"
        writer = conn.info.get(_WRITER)
        if writer is not None:
            writer.submit(lambda: _copy(raw, sql, data, types))
        else:
            _copy(raw, sql, data, types)
    else:
        raw.executemany(f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
                        f"VALUES ({', '.join('?' * len(table.columns))})", data)


_BINARY_TYPES = {"int4", "int8", "varchar", "text", "timestamptz", "timestamp", "date", "float8", "bool"}


_COPY_TYPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pg_types(conn, table) -> list[str] | None:
    """The server's type of each column of ``table``, for a binary ``COPY``; None when a column
    has a type that one does not take as is (JSON, say). Read once per connection checkout (a
    migration between two transactions cannot leave a stale type behind)."""
    cache = _COPY_TYPES.setdefault(conn, {})
    if table.name not in cache:
        rows = conn.exec_driver_sql(
            "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE a.attrelid = to_regclass(%(t)s) AND a.attnum > 0 AND NOT a.attisdropped",
            {"t": table.fullname}).all()
        by_name = dict(rows)
        types = [by_name.get(c.name) for c in table.columns]
        cache[table.name] = types if all(t in _BINARY_TYPES for t in types) else None
    return cache[table.name]


def _copy(raw, sql: str, data: list[tuple[Any, ...]], types: list[str] | None) -> None:
    with raw.cursor() as cur, cur.copy(sql) as cp:
        if types is not None:
            cp.set_types(types)
        for row in data:
            cp.write_row(row)


_WRITER = "compliance.copy_writer"


class _CopyWriter:
    """One thread that runs a transaction's ``COPY`` statements in the order they were handed in.
    After the first error it runs nothing more (the transaction is aborted); :meth:`drain` raises
    that error once, in the caller's thread."""

    def __init__(self) -> None:
        self._tasks: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="compliance-copy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                if not self._failed:
                    task()
            except BaseException as exc:  # handed to the caller's thread by drain()
                self._error, self._failed = exc, True
            finally:
                self._tasks.task_done()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def drain(self) -> None:
        """Wait until every statement handed in has run; raise the first error, if any."""
        self._tasks.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join()


@contextmanager
def background_writes(session: Session) -> Iterator[None]:
    """On PostgreSQL, the bulk path's ``COPY`` statements (:func:`insert_rows`,
    :func:`insert_columns`) run on a second thread, in order, while this one builds the next rows:
    the server ingests one batch while the client hashes, checks and formats the next (issue 16).
    Any other statement on the connection first waits for the ``COPY`` statements before it (the
    connection is never used by two threads at once) and so does leaving the block; a ``COPY``
    that failed raises its error there, in this thread, and the caller's transaction rolls back
    as it would have. Elsewhere a no-op: SQLite's ``executemany`` on a second thread was slower
    (measured: the two threads take turns at the interpreter lock row by row)."""
    conn = session.connection()
    if conn.dialect.name != "postgresql" or conn.info.get(_WRITER) is not None:
        yield
        return
    writer = _CopyWriter()

    def barrier(*_args: Any, **_kw: Any) -> None:
        writer.drain()  # raised inside the statement's execution: SQLAlchemy wraps it as its own

    conn.info[_WRITER] = writer
    event.listen(conn, "before_cursor_execute", barrier)
    try:
        yield
        try:
            writer.drain()
        except conn.dialect.loaded_dbapi.Error as exc:  # as a statement's error would reach the caller
            raise DBAPIError.instance(None, None, exc, conn.dialect.loaded_dbapi.Error) from None
    finally:
        event.remove(conn, "before_cursor_execute", barrier)
        conn.info.pop(_WRITER, None)
        try:
            writer.drain()  # an error on the way out: the statements handed in have stopped
        except BaseException:  # noqa: BLE001 - the error already propagating is the one to report
            pass
        writer.close()


def reserve_ids(session: Session, model: type[Base], n: int) -> list[int]:
    """``n`` fresh integer primary keys for ``model``, the ones the database would give ``n`` inserts
    now (under the append lock, so no other writer takes them): PostgreSQL draws them from the
    column's sequence; SQLite continues after the largest key (and ``sqlite_sequence`` if any)."""
    if n <= 0:
        return []
    _lock_and_head(session)
    table = model.__table__
    col = list(table.primary_key.columns)[0]
    if session.get_bind().dialect.name == "postgresql":
        ids = session.execute(text("SELECT nextval(pg_get_serial_sequence(:t, :c)) FROM generate_series(1, :n)"),
                              {"t": table.name, "c": col.name, "n": n}).scalars().all()
        return sorted(int(i) for i in ids)
    top = session.execute(select(func.max(col))).scalar() or 0
    has_seq = session.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first()
    if has_seq:
        top = max(top, session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :t"),
                                       {"t": table.name}).scalar() or 0)
    return list(range(top + 1, top + 1 + n))


def _open_append(session: Session, now: datetime, action: str) -> tuple[datetime, str, str, tuple[int, str]]:
    """Take the append lock and the head; the stamp, action and ledger actor of the next entries."""
    if session.info.get("replay") and action == "insert":
        action = "replay"  # written under a caller's clock: marked in the chain (issue 21)
    head_ = _lock_and_head(session)
    who = session.info.get("ledger_actor") or session.info["actor"]  # the authenticated writer (engine._identify)
    last_at = session.info.get(_HEAD_AT)
    if last_at is not None and now < last_at:
        if session.info.get("replay"):
            _refuse_backdating(now, last_at)
        else:
            now = last_at  # the system clock stepped back: recorded_at never decreases along seq
    return now, action, who, head_


def _append(session: Session, head_: tuple[int, str], now: datetime, who: str, action: str,
            items: Iterable[tuple[str, str, str]], *, bulk: bool = False) -> None:
    """Ledger entries for (entity type, entity id, canonical payload) in order, in one insert."""
    seq, prev = head_
    stamp = iso(now)
    if bulk:
        items = list(items)
        chain = list(ledger_chain(prev, seq, stamp, who, action, items))
        if chain:
            n = len(chain)
            by_key = {"seq": [c[0] for c in chain], "recorded_at": [now] * n, "actor": [who] * n, "action": [action] * n,
                      "entity_type": [i[0] for i in items], "entity_id": [i[1] for i in items],
                      "payload": [i[2] for i in items], "prev_hash": [c[1] for c in chain], "hash": [c[2] for c in chain]}
            insert_columns(session, LedgerEntry.__table__, [by_key[c.key] for c in LedgerEntry.__table__.columns])
            seq, prev = chain[-1][0], chain[-1][2]
        session.info[_HEAD] = (seq, prev)
        session.info[_HEAD_AT] = now
        return
    entries = []
    for etype, eid, payload in items:
        seq += 1
        h = entry_hash(prev, seq, stamp, who, action, etype, eid, payload)
        entries.append(dict(seq=seq, recorded_at=now, actor=who, action=action, entity_type=etype,
                            entity_id=eid, payload=payload, prev_hash=prev, hash=h))
        prev = h
    session.execute(LedgerEntry.__table__.insert(), entries)
    session.info[_HEAD] = (seq, prev)
    session.info[_HEAD_AT] = now


def _refuse_backdating(now: datetime, last_at: datetime) -> None:
    """A replay writes history in order: never before the ledger's head (``verify`` would rightly
    call such an entry back-dated). Replay into a store whose history ends before the replay."""
    raise UsageError(f"a replay cannot write at {iso(now)}, before the ledger head ({iso(last_at)}): "
                     "replay into a store whose history ends before it")


def _refuse_controls(table, value_of: Callable[[str], Any]) -> None:
    """Evidence text never carries control characters (they would reach terminals and PDFs raw)."""
    for col in table.columns:
        value = value_of(col.key)
        if isinstance(value, str) and _CONTROL_CHARS.search(value):
            raise InputError(f"{table.name}.{col.name} contains control characters: "
                             f"{escape_controls(value)[:120]!s}")


def head(session: Session) -> tuple[int, str]:
    row = session.execute(select(LedgerEntry.seq, LedgerEntry.hash).order_by(LedgerEntry.seq.desc()).limit(1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def head_recorded_at(session: Session) -> datetime | None:
    """When the ledger's head entry was recorded (None for an empty ledger): the earliest time a
    replay may write at (times never decrease along the chain)."""
    return session.scalar(select(LedgerEntry.recorded_at).order_by(LedgerEntry.seq.desc()).limit(1))


def head_as_of(session: Session, as_of: datetime) -> tuple[int, str]:
    row = session.execute(
        select(LedgerEntry.seq, LedgerEntry.hash).where(LedgerEntry.recorded_at <= as_of)
        .order_by(LedgerEntry.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def contains_hash(session: Session, h: str) -> bool:
    return session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.hash == h)) > 0


def _entry_dict(e: LedgerEntry) -> dict[str, Any]:
    return dict(seq=e.seq, recorded_at=iso(e.recorded_at), actor=e.actor, action=e.action,
                entity_type=e.entity_type, entity_id=e.entity_id, payload=e.payload,
                prev_hash=e.prev_hash, hash=e.hash)


def entries_between(session: Session, start: datetime | None, end: datetime) -> list[dict[str, Any]]:
    q = select(LedgerEntry).where(LedgerEntry.recorded_at <= end)
    if start is not None:
        q = q.where(LedgerEntry.recorded_at >= start)
    return [_entry_dict(e) for e in session.scalars(q.order_by(LedgerEntry.seq))]


def entry_at(session: Session, seq: int) -> dict[str, Any] | None:
    """The ledger entry with this ``seq`` as a plain dict (None for seq 0, before the chain)."""
    e = session.get(LedgerEntry, seq) if seq > 0 else None
    return _entry_dict(e) if e is not None else None


def _entry_dict(e: LedgerEntry) -> dict[str, Any]:
    return dict(seq=e.seq, recorded_at=iso(e.recorded_at), actor=e.actor, action=e.action,
                entity_type=e.entity_type, entity_id=e.entity_id, payload=e.payload,
                prev_hash=e.prev_hash, hash=e.hash)


def entries_from_seq(session: Session, seq: int, end: datetime) -> list[dict[str, Any]]:
    """Entries from sequence number ``seq`` to the last one recorded at or before ``end``."""
    q = select(LedgerEntry).where(LedgerEntry.seq >= seq, LedgerEntry.recorded_at <= end)
    return [_entry_dict(e) for e in session.scalars(q.order_by(LedgerEntry.seq))]


def entries_at(session: Session, seqs: list[int]) -> list[dict[str, Any]]:
    """The ledger entries with the given sequence numbers (as ``entries_between`` gives them)."""
    out = []
    for i in range(0, len(seqs), 500):
        out += [_entry_dict(e) for e in session.scalars(select(LedgerEntry).where(LedgerEntry.seq.in_(seqs[i:i + 500]))
                                         .order_by(LedgerEntry.seq))]
    return out


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    head_hash: str
    problem: str | None = None
    seq: int | None = None

    def summary(self) -> str:
        if self.ok:
            return f"ledger OK: {self.entries} entries verified, every evidence row matches; head {self.head_hash}"
        return f"ledger BROKEN at entry {self.seq}: {self.problem}" if self.seq else f"ledger BROKEN: {self.problem}"


def _iter_entries(session: Session, batch: int = 20_000) -> Iterator[LedgerEntry]:
    last = 0
    while True:
        rows = session.scalars(select(LedgerEntry).where(LedgerEntry.seq > last).order_by(LedgerEntry.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Recompute the chain and compare every evidence row with its ledger payload.

    Reports the first broken entry in sequence order: a broken link or hash, a payload that
    differs from its row (which column), a ledger entry whose row is gone, or (after the chain)
    a row that has no ledger entry at all.
    """
    rows: dict[str, dict[str, str]] = {}
    for model in EVIDENCE_MODELS:
        rows[model.__table__.name] = _stored_payloads(session, model.__table__)
    prev = GENESIS
    prev_at = None
    expected_seq = 1
    count = 0
    entries = _iter_entries(session)
    while True:
        try:
            e = next(entries, None)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            bad = sorted((int(k), v[1:]) for k, v in _stored_payloads(session, LedgerEntry.__table__).items()
                         if v.startswith(_UNREADABLE) and k.isdigit())
            seq, what = bad[0] if bad else (expected_seq, f"a value of the wrong type ({_short(exc)})")
            return VerifyResult(False, count, prev, f"ledger entry {seq} cannot be read: it has {what}", seq)
        if e is None:
            break
        if prev_at is not None and e.recorded_at < prev_at:
            return VerifyResult(False, count, prev, f"recorded_at {iso(e.recorded_at)} is earlier than the previous "
                                f"entry's {iso(prev_at)} (back-dated entry)", e.seq)
        prev_at = e.recorded_at
        if e.seq != expected_seq:
            return VerifyResult(False, count, prev, f"sequence gap: expected {expected_seq}, found {e.seq}", e.seq)
        if e.prev_hash != prev:
            return VerifyResult(False, count, prev, "prev_hash does not link to the previous entry", e.seq)
        h = entry_hash(prev, e.seq, iso(e.recorded_at), e.actor, e.action, e.entity_type, e.entity_id, e.payload)
        if h != e.hash:
            return VerifyResult(False, count, prev, "hash does not match the entry's content (entry edited)", e.seq)
        table_rows = rows.get(e.entity_type)
        if table_rows is None:
            return VerifyResult(False, count, prev, f"unknown entity type {e.entity_type!r}", e.seq)
        current = table_rows.pop(e.entity_id, None)
        if current is None:
            return VerifyResult(False, count, prev, f"{e.entity_type} {e.entity_id} is missing from the store (deleted)", e.seq)
        if current.startswith(_UNREADABLE):
            return VerifyResult(False, count, prev, f"{e.entity_type} {e.entity_id} has {current[1:]}", e.seq)
        if current != e.payload and not _equal_but_for_added_columns(e.entity_type, e.payload, current):
            a, b = json.loads(e.payload), json.loads(current)
            cols = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            return VerifyResult(False, count, prev,
                                f"{e.entity_type} {e.entity_id} differs from its ledger payload in column(s) {', '.join(cols)}",
                                e.seq)
        prev = h
        count += 1
        expected_seq += 1
    for table, leftover in rows.items():
        if leftover:
            eid = sorted(leftover)[0]
            return VerifyResult(False, count, prev, f"{table} {eid} has no ledger entry (inserted behind the ledger)")
    return VerifyResult(True, count, prev)


def _equal_but_for_added_columns(table: str, payload: str, current: str) -> bool:
    """An entry written before a migration added columns to its table lacks those keys: they
    match only a NULL in the row (``models.ADDED_COLUMNS``), never a value."""
    added = ADDED_COLUMNS.get(table)
    if not added:
        return False
    a, b = json.loads(payload), json.loads(current)
    missing = set(b) - set(a)
    if not missing or not missing <= added or any(b[k] is not None for k in missing):
        return False
    return a == {k: v for k, v in b.items() if k not in missing}


_UNREADABLE = "\x00"


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _check_type(col, value: Any) -> str | None:
    """None when ``value`` (as the ORM gives it) has the column's type, else what is wrong."""
    if value is None:
        return None if col.nullable or col.primary_key else "NULL in a NOT NULL column"
    t = col.type
    ok = {Integer: lambda v: isinstance(v, int) and not isinstance(v, bool),
          Float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          Boolean: lambda v: isinstance(v, bool), JSON: lambda v: True,
          DateTime: lambda v: isinstance(v, datetime),
          Date: lambda v: isinstance(v, date) and not isinstance(v, datetime),
          String: lambda v: isinstance(v, str)}
    impl = t.impl if isinstance(t, TypeDecorator) else t
    for kind, test in ok.items():
        if isinstance(impl, kind):
            return None if test(value) else f"a {type(value).__name__} where {kind.__name__} belongs"
    return None


def _stored_payloads(session: Session, table) -> dict[str, str]:
    """Primary key -> canonical payload of every row, read value by value and type-checked, so a
    value of the wrong type (possible on SQLite) is reported as that row's problem, never a crash.
    An unreadable row maps to ``_UNREADABLE`` + a description."""
    dialect = session.get_bind().dialect
    cols = list(table.columns)
    pk = list(table.primary_key.columns)[0]
    out: dict[str, str] = {}
    if dialect.name == "sqlite":  # any value fits any column: fetch untyped, convert value by value
        procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in cols]
        query = select(*[column(c.name) for c in cols]).select_from(table)
    else:  # the database enforces column types itself
        procs, query = [None] * len(cols), select(table)
    for row in session.execute(query):
        values, problem = {}, None
        for c, proc, value in zip(cols, procs, row):
            try:
                v = proc(value) if proc is not None and value is not None else value
            except Exception as exc:  # noqa: BLE001 - any conversion failure is that value's problem
                problem = f"a value of the wrong type in column {c.name} ({_short(exc)})"
                break
            if isinstance(value, str) and isinstance(c.type, (Integer, Float, Boolean)):
                problem = f"a value of the wrong type in column {c.name} (text where a number belongs)"
                break
            wrong = _check_type(c, v)
            if wrong:
                problem = f"a value of the wrong type in column {c.name} ({wrong})"
                break
            values[c.key] = v
        key = str(values.get(pk.key, row[cols.index(pk)]))
        if problem is None:
            try:
                out[key] = canonical_json(_payload(table, lambda col: values[col.key]))
                continue
            except (ValueError, TypeError, OverflowError) as exc:
                problem = f"a value that cannot be written as JSON ({_short(exc)})"
        out[key] = _UNREADABLE + problem
    return out


def iter_model_rows(session: Session, table: str) -> Iterable[Base]:
    return session.scalars(select(BY_TABLE[table]))
