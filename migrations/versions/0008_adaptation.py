"""adaptation: warm-started fine-tunes of stale SAEs, transcoders and CLTs (DESIGN §9)

Revision ID: 0008_adaptation
Revises: 0007_identity
Create Date: 2026-11-29

One new append-only table. Each row is one adaptation of a parent artifact to a version: its
lineage (parent, version, data hashes, seed, budget, steps, final loss), its held-out figures
(explained variance before and after, feature survival) and its outcome. A ``succeeded`` row
names the registered child artifact and its held-out fidelity check; a ``failed`` row registers
nothing. The door's status check is enforced by the database as for ``check_run`` (0003).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.triggers import (create_append_only_triggers, create_door_check, drop_append_only_triggers,
                                       drop_door_check)

revision = "0008_adaptation"
down_revision = "0007_identity"
branch_labels = None
depends_on = None

NEW_TABLES = ["adaptation"]
_STATUS_CK = "ck_adaptation_status"


def upgrade() -> None:
    op.create_table(
        "adaptation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("parent_artifact_id", sa.String(length=200), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("child_artifact_id", sa.String(length=200), nullable=True),
        sa.Column("check_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("input_hashes", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("tool_version", sa.String(length=40), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_adaptation_model_id_model")),
        sa.ForeignKeyConstraint(["parent_artifact_id"], ["artifact.id"],
                                name=op.f("fk_adaptation_parent_artifact_id_artifact")),
        sa.ForeignKeyConstraint(["version_id"], ["model_version.id"],
                                name=op.f("fk_adaptation_version_id_model_version")),
        sa.ForeignKeyConstraint(["child_artifact_id"], ["artifact.id"],
                                name=op.f("fk_adaptation_child_artifact_id_artifact")),
        sa.ForeignKeyConstraint(["check_id"], ["check_run.id"], name=op.f("fk_adaptation_check_id_check_run")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adaptation")),
    )
    op.create_index(op.f("ix_adaptation_model_id"), "adaptation", ["model_id"])
    op.create_index(op.f("ix_adaptation_parent_artifact_id"), "adaptation", ["parent_artifact_id"])
    op.create_index(op.f("ix_adaptation_recorded_at"), "adaptation", ["recorded_at"])
    create_append_only_triggers(op.get_bind(), NEW_TABLES)
    create_door_check(op.get_bind(), "adaptation", _STATUS_CK, "status IN ('succeeded', 'failed')",
                      sqlite_cond="NEW.status IN ('succeeded', 'failed')")


def downgrade() -> None:
    drop_door_check(op.get_bind(), "adaptation", _STATUS_CK)
    drop_append_only_triggers(op.get_bind(), NEW_TABLES)
    op.drop_table("adaptation")
