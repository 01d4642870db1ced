"""monitoring plans, the alert outbox, pre-promotion gate decisions and registry-sync links (DESIGN §10)

Revision ID: 0009_monitoring
Revises: 0008_adaptation
Create Date: 2026-11-29

Five new append-only tables, each written through the ledger: ``monitoring_plan`` (versions of a
model's plan), ``alert`` (the outbox, written in the transaction of the event that caused it),
``alert_delivery`` (one row per delivery attempt), ``gate_decision`` and ``registry_link`` (what a
registry sync recorded for an external object, so a second sync writes nothing). No existing row
is touched.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.triggers import create_append_only_triggers, drop_append_only_triggers

revision = "0009_monitoring"
down_revision = "0008_adaptation"
branch_labels = None
depends_on = None

NEW_TABLES = ["monitoring_plan", "alert", "alert_delivery", "gate_decision", "registry_link"]


def _evidence() -> list[sa.Column]:
    return [sa.Column("recorded_at", sa.DateTime(), nullable=False),
            sa.Column("actor", sa.String(length=200), nullable=False)]


def _ix(table: str, *cols: str) -> None:
    for c in cols:
        op.create_index(op.f(f"ix_{table}_{c}"), table, [c])


def upgrade() -> None:
    op.create_table(
        "monitoring_plan",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        *_evidence(),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_monitoring_plan_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_plan")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_monitoring_plan_model_id")),
    )
    _ix("monitoring_plan", "model_id", "recorded_at")
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("cause_key", sa.String(length=400), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=True),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        *_evidence(),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_alert_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("cause_key", name=op.f("uq_alert_cause_key")),
    )
    _ix("alert", "model_id", "recorded_at")
    op.create_table(
        "alert_delivery",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        *_evidence(),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"], name=op.f("fk_alert_delivery_alert_id_alert")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_delivery")),
    )
    _ix("alert_delivery", "alert_id", "recorded_at")
    op.create_table(
        "gate_decision",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        *_evidence(),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_gate_decision_model_id_model")),
        sa.ForeignKeyConstraint(["version_id"], ["model_version.id"],
                                name=op.f("fk_gate_decision_version_id_model_version")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_decision")),
    )
    _ix("gate_decision", "model_id", "version_id", "recorded_at")
    op.create_table(
        "registry_link",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registry_uri", sa.String(length=500), nullable=False),
        sa.Column("external_key", sa.String(length=500), nullable=False),
        sa.Column("entity_type", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        *_evidence(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_link")),
        sa.UniqueConstraint("registry_uri", "external_key", name=op.f("uq_registry_link_registry_uri")),
    )
    _ix("registry_link", "recorded_at")
    create_append_only_triggers(op.get_bind(), NEW_TABLES)


def downgrade() -> None:
    drop_append_only_triggers(op.get_bind(), NEW_TABLES)
    for t in reversed(NEW_TABLES):
        op.drop_table(t)
