"""Engines, sessions and the schema-version guard.

One session per command: :func:`session_scope` commits on success, rolls back on any error,
and translates database errors into the project's exceptions. Writes on SQLite start with
``BEGIN IMMEDIATE`` so that concurrent writers queue instead of forking the ledger.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError, Conflict, SchemaOutOfDate
from compliance.timeutil import utcnow

DEFAULT_DB_URL = "sqlite:///compliance.db"
# The Alembic head this code expects; a test keeps it equal to migrations/ head.
SCHEMA_HEAD = "0003_inconclusive_status"


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in some containers
        return os.environ.get("USER", "unknown")


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("COMPLIANCE_DB_URL") or DEFAULT_DB_URL


def resolve_actor(actor: str | None) -> str:
    return actor or os.environ.get("COMPLIANCE_ACTOR") or default_actor()


@lru_cache(maxsize=16)
def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 120})
        _sqlite_setup(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def _sqlite_setup(engine: Engine) -> None:
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
        if conn.get_execution_options().get("compliance_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


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
                  clock: Callable[[], datetime] | None = None, check: bool = True) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, map DB errors to ours."""
    engine = make_engine(resolve_url(url))
    if check:
        check_schema(engine)
    bind = engine.execution_options(compliance_readonly=True) if readonly else engine
    session = Session(bind=bind, expire_on_commit=False, autoflush=False)
    session.info["actor"] = resolve_actor(actor)
    session.info["clock"] = clock or utcnow
    session.info["replay"] = clock is not None
    try:
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
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
