"""check status `inconclusive` (budgeted checks, DESIGN §9): widen the status columns

Revision ID: 0003_inconclusive_status
Revises: 0002_methodology_v2
Create Date: 2026-11-29

``check_run.status`` and ``check_feature.status`` were VARCHAR(10); ``inconclusive`` has 12
characters. Widening a VARCHAR on PostgreSQL changes only the catalog (no row is rewritten, the
append-only triggers stay). SQLite does not enforce VARCHAR lengths, and a batch copy would drop
the triggers, so nothing is done there: the declared type is only documentation on SQLite.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_inconclusive_status"
down_revision = "0002_methodology_v2"
branch_labels = None
depends_on = None

TABLES = ("check_run", "check_feature")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for t in TABLES:
        op.alter_column(t, "status", existing_type=sa.String(length=10), type_=sa.String(length=20),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for t in TABLES:
        op.alter_column(t, "status", existing_type=sa.String(length=20), type_=sa.String(length=10),
                        existing_nullable=False)
