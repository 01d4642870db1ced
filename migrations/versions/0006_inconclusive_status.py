"""check status `inconclusive` (budgeted checks, DESIGN §9): widen the status columns

Revision ID: 0006_inconclusive_status
Revises: 0005_narrative
Create Date: 2026-11-29

``check_run.status`` and ``check_feature.status`` were VARCHAR(10); ``inconclusive`` has 12
characters. Widening a VARCHAR on PostgreSQL changes only the catalog (no row is rewritten, the
append-only triggers stay). SQLite does not enforce VARCHAR lengths (the column's affinity is
TEXT either way), but the declared schema is kept equal to the models. A batch copy of
``check_run`` is impossible there (``check_feature`` references it and foreign keys cannot be
switched off inside the migration's transaction), so the declared type is rewritten in
``sqlite_schema`` (``PRAGMA writable_schema``, the schema cookie bumped): a change SQLite documents
as safe when it does not alter the on-disk format. No row is touched; every ledger payload still
verifies.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.triggers import create_door_check, drop_door_check


revision = "0006_inconclusive_status"
down_revision = "0005_narrative"
branch_labels = None
depends_on = None

TABLES = ("check_run", "check_feature")


def _widen(old: int, new: int) -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA writable_schema=ON")
        for t in TABLES:
            conn.exec_driver_sql(
                "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = ?",
                (f"status VARCHAR({old})", f"status VARCHAR({new})", t))
        version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
        conn.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
        conn.exec_driver_sql("PRAGMA writable_schema=OFF")
        return
    for t in TABLES:
        op.alter_column(t, "status", existing_type=sa.String(length=old), type_=sa.String(length=new),
                        existing_nullable=False)


_STATUS_CK = "ck_check_run_status"  # the door's status check of 0003_door_checks


def _status_check(statuses: tuple[str, ...]) -> None:
    """Re-create the door's check on ``check_run.status`` for the given statuses."""
    conn = op.get_bind()
    allowed = ", ".join(f"'{x}'" for x in statuses)
    drop_door_check(conn, "check_run", _STATUS_CK)
    create_door_check(conn, "check_run", _STATUS_CK, f"status IN ({allowed})",
                      sqlite_cond=f"NEW.status IN ({allowed})", not_valid=True)


def upgrade() -> None:
    _widen(10, 20)
    _status_check(("pass", "warn", "fail", "error", "inconclusive"))


def downgrade() -> None:
    _status_check(("pass", "warn", "fail", "error"))
    _widen(20, 10)
