"""The ORM and the migrations agree; upgrade → downgrade → upgrade works on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from compliance.store import migrate
from compliance.store.engine import SCHEMA_HEAD, make_engine, session_scope
from compliance.store.ledger import verify
from compliance.store.models import APPEND_ONLY_TABLES, Base


def test_models_match_migrations(db_url):
    engine = make_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff


def test_schema_head_constant_matches_scripts():
    assert migrate.script_head() == SCHEMA_HEAD


def test_upgrade_downgrade_upgrade(db_url):
    assert migrate.current(db_url) == SCHEMA_HEAD
    assert migrate.downgrade(db_url, "base") is None
    names = set(inspect(make_engine(db_url)).get_table_names())
    assert not (names & set(APPEND_ONLY_TABLES))
    assert migrate.upgrade(db_url) == SCHEMA_HEAD
    assert migrate.upgrade(db_url) == SCHEMA_HEAD  # idempotent
    with session_scope(db_url, readonly=True) as s:
        r = verify(s)
    assert r.ok and r.entries == 16  # 9 + 3 (v2) failure modes + policy v1 + identity epoch, first admin and its grant (0007)
