"""validator narrative: conclusion, limitations, conditions, compensating controls (and rating)

Revision ID: 0005_narrative
Revises: 0002_methodology_v2
Create Date: 2026-11-29

One new append-only table. Each row is one version of one section of the validator's narrative
for a quarter (portfolio when ``model_id`` is null, else one model); the latest row per
(quarter, model, section) recorded at or before a pack's as-of is what the pack prints.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.triggers import create_append_only_triggers, drop_append_only_triggers

revision = "0005_narrative"
down_revision = "0003_door_checks"
branch_labels = None
depends_on = None

NEW_TABLES = ["narrative"]


def upgrade() -> None:
    op.create_table(
        "narrative",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("quarter", sa.String(length=6), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=True),
        sa.Column("section", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rating", sa.String(length=30), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_narrative_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_narrative")),
    )
    op.create_index(op.f("ix_narrative_quarter"), "narrative", ["quarter"])
    op.create_index(op.f("ix_narrative_recorded_at"), "narrative", ["recorded_at"])
    create_append_only_triggers(op.get_bind(), NEW_TABLES)


def downgrade() -> None:
    drop_append_only_triggers(op.get_bind(), NEW_TABLES)
    op.drop_table("narrative")
