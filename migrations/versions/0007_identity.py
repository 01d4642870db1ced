"""identity: people, role grants, signing keys, anchors, signed attestations (DESIGN §7)

Revision ID: 0007_identity
Revises: 0006_inconclusive_status
Create Date: 2026-11-29

Five new append-only tables (person, role_grant, signing_key, identity_epoch, anchor) and four
nullable columns on ``attestation`` (the context hash it approves, the signing time, the key
fingerprint and the signature; older payloads lack them and verify as NULL, see
``models.ADDED_COLUMNS``). On PostgreSQL, triggers make every ledger append name
``session_user`` and enforce segregation of duties (``store.triggers``). The upgrade writes an
``identity_epoch`` row -- entries before it were written before identity was enforced -- and makes
whoever runs it the first admin.

The downgrade drops only the PostgreSQL identity triggers: the tables, their rows and the new
columns are evidence with ledger entries, so they stay (an upgrade again finds them and creates
only what is missing; a downgrade to base drops them with the ledger, in 0001).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from compliance.store.seed import seed_identity
from compliance.store.triggers import create_append_only_triggers, create_identity_triggers, drop_identity_triggers

revision = "0007_identity"
down_revision = "0006_inconclusive_status"
branch_labels = None
depends_on = None

NEW_TABLES = ["person", "role_grant", "signing_key", "identity_epoch", "anchor"]


def _evidence() -> list[sa.Column]:
    return [sa.Column("recorded_at", sa.DateTime(), nullable=False),
            sa.Column("actor", sa.String(length=200), nullable=False)]


def upgrade() -> None:
    conn = op.get_bind()
    present = set(sa.inspect(conn).get_table_names())
    if "person" not in present:
        _create_tables()
    columns = {c["name"] for c in sa.inspect(conn).get_columns("attestation")}
    if "context_sha256" not in columns:
        op.add_column("attestation", sa.Column("context_sha256", sa.String(length=64), nullable=True))
        op.add_column("attestation", sa.Column("signed_at", sa.String(length=40), nullable=True))
        op.add_column("attestation", sa.Column("key_fingerprint", sa.String(length=64), nullable=True))
        op.add_column("attestation", sa.Column("signature", sa.Text(), nullable=True))
        op.create_index(op.f("ix_attestation_context_sha256"), "attestation", ["context_sha256"])
    create_identity_triggers(conn)
    attrs = op.get_context().config.attributes
    seed_identity(conn, attrs.get("clock"), attrs.get("admin"))


def _create_tables() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        *_evidence(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
    )
    op.create_table(
        "role_grant",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("model_id", sa.String(length=100), nullable=True),
        sa.Column("action", sa.String(length=10), nullable=False),
        *_evidence(),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], name=op.f("fk_role_grant_person_id_person")),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_role_grant_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grant")),
    )
    op.create_table(
        "signing_key",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        *_evidence(),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"], name=op.f("fk_signing_key_person_id_person")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_key")),
    )
    op.create_table(
        "identity_epoch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("mode", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        *_evidence(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_epoch")),
    )
    op.create_table(
        "anchor",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        *_evidence(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anchor")),
    )
    for t in NEW_TABLES:
        op.create_index(op.f(f"ix_{t}_recorded_at"), t, ["recorded_at"])
    op.create_index(op.f("ix_role_grant_person_id"), "role_grant", ["person_id"])
    op.create_index(op.f("ix_signing_key_fingerprint"), "signing_key", ["fingerprint"])
    create_append_only_triggers(op.get_bind(), NEW_TABLES)


def downgrade() -> None:
    drop_identity_triggers(op.get_bind())
