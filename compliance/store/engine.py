"""Engines, sessions and the schema-version guard.

One session per command: :func:`session_scope` commits on success, rolls back on any error,
and translates database errors into the project's exceptions. Writes on SQLite start with
``BEGIN IMMEDIATE`` so that concurrent writers queue instead of forking the ledger.
"""

from __future__ import annotations

import getpass
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError, Conflict, InputError, SchemaOutOfDate, UsageError
from compliance.timeutil import utcnow

from compliance.store import DEFAULT_DB_URL  # re-exported: it lives where the CLI imports it cheaply
# The Alembic head this code expects; a test keeps it equal to migrations/ head.
SCHEMA_HEAD = "0009_monitoring"


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in some containers
        return os.environ.get("USER", "unknown")


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("COMPLIANCE_DB_URL") or DEFAULT_DB_URL


def resolve_actor(actor: str | None) -> str:
    return actor or os.environ.get("COMPLIANCE_ACTOR") or default_actor()


def authenticated_login(session: Session) -> str:
    """Who is writing (DESIGN §7): the PostgreSQL role of the connection (``session_user``), which
    the database also enforces on every ledger append; on SQLite (a single-user file, no
    authentication) the operating-system user."""
    if session.get_bind().dialect.name == "postgresql":
        return str(session.execute(text("SELECT session_user")).scalar())
    return default_actor()


def _identify(session: Session, actor: str | None, *, readonly: bool, replay: bool) -> None:
    """Set the session's identities: ``login`` (authenticated), ``actor`` (recorded in the rows:
    the login, or in a replay the named historical actor) and ``ledger_actor`` (recorded in the
    ledger: on PostgreSQL always the login; on SQLite the login, or the named actor in a replay,
    which is marked ``replay`` in the chain)."""
    named = actor or os.environ.get("COMPLIANCE_ACTOR")
    if readonly:
        session.info["actor"] = named or default_actor()
        return
    login = authenticated_login(session)
    if named and named != login and not replay:
        raise UsageError(f"--actor/COMPLIANCE_ACTOR names {named!r}, but you are {login!r}: naming another actor is "
                         "allowed only for replays of history (--replay); entries record who is authenticated")
    session.info["login"] = login
    session.info["actor"] = named if replay and named else login
    pg = session.get_bind().dialect.name == "postgresql"
    session.info["ledger_actor"] = login if pg or not (replay and named) else named


_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@lru_cache(maxsize=16)
def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 120})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _ENGINES.add(engine)
    return engine


def _after_fork_in_child() -> None:
    """A forked child must not use the parent's pooled connections (two processes on one socket
    or one SQLite handle corrupt each other's transactions): drop them from the child's pools
    without closing them (they still belong to the parent); the child opens its own."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _sqlite_setup(engine: Engine) -> None:
    from compliance.store.raw import install_scan_hook

    install_scan_hook(engine)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # pragma: no cover - trivial
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA busy_timeout = 120000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        opts = conn.get_execution_options()
        if opts.get("compliance_readonly") or opts.get("compliance_short_writes"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def begin_writing(session: Session) -> None:
    """Called by the ledger before the first append of a transaction. In a ``short_writes``
    session on SQLite, the reading transaction ends here and a ``BEGIN IMMEDIATE`` one starts, so
    the write lock is held only from the first append to the commit. (What was read before is
    not re-read: a check's appends do not depend on rows written meanwhile; the ledger head is
    read after this point.) PostgreSQL needs nothing: its appends take the ledger's advisory lock."""
    if not session.info.get("short_writes") or session.info.get("writing"):
        return
    session.info["writing"] = True
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        if raw.in_transaction:
            raw.execute("COMMIT")
        raw.execute("BEGIN IMMEDIATE")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def check_schema(engine: Engine) -> None:
    try:
        rev = current_revision(engine)
    except OperationalError as exc:
        raise ComplianceError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {_short(exc)}") from None
    if rev is None:
        raise SchemaOutOfDate("database is not initialised: run `compliance init`")
    if rev != SCHEMA_HEAD:
        raise SchemaOutOfDate(f"database schema is at {rev}, this version needs {SCHEMA_HEAD}: run `compliance db upgrade`")


def _short(exc: Exception) -> str:
    msg = str(getattr(exc, "orig", exc)).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


@contextmanager
def session_scope(url: str | None = None, *, actor: str | None = None, readonly: bool = False,
                  clock: Callable[[], datetime] | None = None, replay: bool = False,
                  check: bool = True, short_writes: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, map DB errors to ours.

    ``short_writes``: for a long computation that ends in a few appends (a due check): the
    transaction reads without taking the write lock, and takes it only at its first append
    (:func:`begin_writing`), so other writers never wait for the computation.

    ``clock`` replaces the system clock for ``recorded_at``: only for replaying history, so it
    must come with ``replay=True``; every ledger entry written under it has the action ``replay``.
    ``replay`` (with or without a clock) also lets ``actor`` name someone other than the
    authenticated login (a replay of history, an import of historical records); see ``_identify``.
    """
    if clock is not None and not replay:
        raise UsageError("a caller's clock is for replaying history only: pass replay=True "
                         "(every entry written under it is marked as replayed in the ledger)")
    engine = make_engine(resolve_url(url))
    if check:
        check_schema(engine)
    bind = (engine.execution_options(compliance_readonly=True) if readonly else
            engine.execution_options(compliance_short_writes=True) if short_writes else engine)
    session = Session(bind=bind, expire_on_commit=False, autoflush=False)
    session.info["short_writes"] = short_writes and not readonly
    session.info["readonly"] = readonly
    session.info["clock"] = clock or utcnow
    session.info["replay"] = replay
    try:
        _identify(session, actor, readonly=readonly, replay=replay)
        yield session
        if readonly:
            session.rollback()
        else:
            session.commit()
    except ComplianceError:
        session.rollback()
        raise
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"the store refused the write: {_short(exc)}") from None
    except DBAPIError as exc:
        session.rollback()
        raise ComplianceError(f"database error: {_short(exc)}") from None
    except OverflowError:  # e.g. an id of 10**23 given to a lookup: no such row can exist
        session.rollback()
        raise InputError("a number is out of range for the store (integers are at most 2**63 - 1)") from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
