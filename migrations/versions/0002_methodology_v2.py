"""methodology v2: artifact sets, dataset column roles, acceptances, corrections, new catalog entries

Revision ID: 0002_methodology_v2
Revises: 0001_initial
Create Date: 2026-11-29

Only additions: new append-only tables, nullable columns on existing tables (added without
rewriting a row, so the append-only triggers stay in place and every old ledger payload still
verifies: a key absent from an old payload reads as NULL, see ``models.ADDED_COLUMNS``), three
failure modes and, for a store whose policy predates v2, a policy version with the v2 keys.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.seed import seed_methodology_v2
from compliance.store.triggers import create_append_only_triggers, drop_append_only_triggers

revision = "0002_methodology_v2"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

NEW_TABLES = ["artifact_set", "acceptance", "correction"]


def _evidence_cols() -> list[sa.Column]:
    return [sa.Column("recorded_at", sa.DateTime(), nullable=False),
            sa.Column("actor", sa.String(length=200), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "artifact_set",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("bound_version_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        *_evidence_cols(),
        sa.ForeignKeyConstraint(["bound_version_id"], ["model_version.id"],
                                name=op.f("fk_artifact_set_bound_version_id_model_version")),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_artifact_set_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_set")),
    )
    op.create_index(op.f("ix_artifact_set_model_id"), "artifact_set", ["model_id"])
    op.create_index(op.f("ix_artifact_set_recorded_at"), "artifact_set", ["recorded_at"])

    op.create_table(
        "acceptance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("check_id", sa.Integer(), nullable=True),
        sa.Column("occurrence_id", sa.Integer(), nullable=True),
        sa.Column("rationale", sa.Text(), nullable=False),
        *_evidence_cols(),
        sa.ForeignKeyConstraint(["check_id"], ["check_run.id"], name=op.f("fk_acceptance_check_id_check_run")),
        sa.ForeignKeyConstraint(["occurrence_id"], ["fm_occurrence.id"],
                                name=op.f("fk_acceptance_occurrence_id_fm_occurrence")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acceptance")),
    )
    op.create_index(op.f("ix_acceptance_check_id"), "acceptance", ["check_id"])
    op.create_index(op.f("ix_acceptance_occurrence_id"), "acceptance", ["occurrence_id"])
    op.create_index(op.f("ix_acceptance_recorded_at"), "acceptance", ["recorded_at"])

    op.create_table(
        "correction",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("replacement_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        *_evidence_cols(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction")),
    )
    op.create_index(op.f("ix_correction_recorded_at"), "correction", ["recorded_at"])

    # Nullable additions: ALTER TABLE ... ADD COLUMN rewrites no row (no batch copy on SQLite).
    op.add_column("artifact", sa.Column("set_id", sa.String(length=200), nullable=True))
    op.add_column("artifact", sa.Column("set_member", sa.String(length=200), nullable=True))
    op.create_index(op.f("ix_artifact_set_id"), "artifact", ["set_id"])
    op.add_column("dataset", sa.Column("columns", sa.JSON(), nullable=True))
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":  # SQLite cannot ALTER a constraint in, but takes it inline
        conn.exec_driver_sql("ALTER TABLE dataset ADD COLUMN version_id INTEGER "
                             "CONSTRAINT fk_dataset_version_id_model_version REFERENCES model_version (id)")
    else:
        op.add_column("dataset", sa.Column("version_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f("fk_dataset_version_id_model_version"), "dataset", "model_version",
                              ["version_id"], ["id"])

    create_append_only_triggers(conn, NEW_TABLES)
    seed_methodology_v2(conn, op.get_context().config.attributes.get("clock"))


def downgrade() -> None:
    conn = op.get_bind()
    drop_append_only_triggers(conn, NEW_TABLES)
    # The catalog rows and policy version seeded by upgrade stay: they are evidence with ledger
    # entries, in tables whose schema 0001 already has. Removing columns copies two tables on
    # SQLite, which drops their triggers: re-created below.
    drop_append_only_triggers(conn, ["artifact", "dataset"])
    with op.batch_alter_table("dataset") as batch_op:
        if conn.dialect.name != "sqlite":  # SQLite's reflected inline constraint goes with its column
            batch_op.drop_constraint(op.f("fk_dataset_version_id_model_version"), type_="foreignkey")
        batch_op.drop_column("version_id")
        batch_op.drop_column("columns")
    with op.batch_alter_table("artifact") as batch_op:
        batch_op.drop_index(op.f("ix_artifact_set_id"))
        batch_op.drop_column("set_member")
        batch_op.drop_column("set_id")
    op.drop_table("correction")
    op.drop_table("acceptance")
    op.drop_table("artifact_set")
    create_append_only_triggers(conn, ["artifact", "dataset"])
