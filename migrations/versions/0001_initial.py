"""initial schema

Revision ID: 0001_initial
Revises: 
Create Date: 2026-11-25
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa

from compliance.store.seed import seed_catalog
from compliance.store.triggers import create_append_only_triggers, drop_append_only_triggers

# Frozen list: every table of this revision is append-only evidence (DESIGN §7).
APPEND_ONLY = [
    "model", "model_version", "deployment_event", "artifact", "dataset", "check_run", "check_feature",
    "failure_mode", "fm_occurrence", "fm_status_event", "finding", "finding_event", "report_run",
    "attestation", "policy", "decision_volume", "ledger_entry",
]


revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('failure_mode',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('severity', sa.String(length=20), nullable=False),
    sa.Column('detection_rule', sa.Text(), nullable=False),
    sa.Column('mitigation', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_failure_mode'))
    )
    with op.batch_alter_table('failure_mode', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failure_mode_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('ledger_entry',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('entity_type', sa.String(length=40), nullable=False),
    sa.Column('entity_id', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_ledger_entry')),
    sa.UniqueConstraint('hash', name=op.f('uq_ledger_entry_hash'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('model',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('business_use', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('adapter', sa.String(length=300), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model'))
    )
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('policy',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_policy'))
    )
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policy_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('dataset',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.Date(), nullable=True),
    sa.Column('window_end', sa.Date(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_dataset_model_id_model')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset'))
    )
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('finding',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('severity', sa.String(length=20), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_finding_model_id_model')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_finding'))
    )
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('model_version',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('weights_path', sa.Text(), nullable=False),
    sa.Column('weights_sha256', sa.String(length=64), nullable=False),
    sa.Column('trained_at', sa.DateTime(), nullable=True),
    sa.Column('data_window_start', sa.Date(), nullable=True),
    sa.Column('data_window_end', sa.Date(), nullable=True),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_model_version_model_id_model')),
    sa.ForeignKeyConstraint(['parent_id'], ['model_version.id'], name=op.f('fk_model_version_parent_id_model_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_version')),
    sa.UniqueConstraint('model_id', 'label', name=op.f('uq_model_version_model_id'))
    )
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_version_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_version_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('report_run',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('quarter', sa.String(length=6), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=True),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('as_of', sa.DateTime(), nullable=False),
    sa.Column('context_sha256', sa.String(length=64), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('ledger_head', sa.String(length=64), nullable=False),
    sa.Column('tool_version', sa.String(length=40), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_report_run_model_id_model')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_run'))
    )
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_run_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('artifact',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('bound_version_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=40), nullable=False),
    sa.Column('architecture', sa.String(length=40), nullable=True),
    sa.Column('hook_in', sa.String(length=200), nullable=True),
    sa.Column('hook_out', sa.String(length=200), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('d_in', sa.Integer(), nullable=True),
    sa.Column('d_sae', sa.Integer(), nullable=True),
    sa.Column('d_out', sa.Integer(), nullable=True),
    sa.Column('n_layers', sa.Integer(), nullable=True),
    sa.Column('labels_path', sa.Text(), nullable=True),
    sa.Column('labels_sha256', sa.String(length=64), nullable=True),
    sa.Column('replaces_id', sa.String(length=200), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['bound_version_id'], ['model_version.id'], name=op.f('fk_artifact_bound_version_id_model_version')),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_artifact_model_id_model')),
    sa.ForeignKeyConstraint(['replaces_id'], ['artifact.id'], name=op.f('fk_artifact_replaces_id_artifact')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact'))
    )
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_artifact_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_artifact_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('attestation',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('report_run_id', sa.String(length=100), nullable=False),
    sa.Column('reviewer', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=100), nullable=False),
    sa.Column('decision', sa.String(length=40), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['report_run_id'], ['report_run.id'], name=op.f('fk_attestation_report_run_id_report_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attestation'))
    )
    with op.batch_alter_table('attestation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attestation_recorded_at'), ['recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attestation_report_run_id'), ['report_run_id'], unique=False)

    op.create_table('decision_volume',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('volume', sa.Float(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], name=op.f('fk_decision_volume_version_id_model_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_decision_volume'))
    )
    with op.batch_alter_table('decision_volume', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decision_volume_recorded_at'), ['recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_decision_volume_version_id'), ['version_id'], unique=False)

    op.create_table('deployment_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('effective_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], name=op.f('fk_deployment_event_version_id_model_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_event'))
    )
    with op.batch_alter_table('deployment_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_event_recorded_at'), ['recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployment_event_version_id'), ['version_id'], unique=False)

    op.create_table('finding_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('finding_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['finding_id'], ['finding.id'], name=op.f('fk_finding_event_finding_id_finding')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_finding_event'))
    )
    with op.batch_alter_table('finding_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finding_event_finding_id'), ['finding_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_event_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('check_run',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('artifact_id', sa.String(length=200), nullable=True),
    sa.Column('other_artifact_id', sa.String(length=200), nullable=True),
    sa.Column('window_start', sa.Date(), nullable=True),
    sa.Column('window_end', sa.Date(), nullable=True),
    sa.Column('input_hashes', sa.JSON(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('explained_variance', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.Column('tool_version', sa.String(length=40), nullable=False),
    sa.Column('formula_version', sa.String(length=40), nullable=True),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_check_run_artifact_id_artifact')),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_check_run_model_id_model')),
    sa.ForeignKeyConstraint(['other_artifact_id'], ['artifact.id'], name=op.f('fk_check_run_other_artifact_id_artifact')),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], name=op.f('fk_check_run_version_id_model_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_run'))
    )
    with op.batch_alter_table('check_run', schema=None) as batch_op:
        batch_op.create_index('ix_check_run_cover', ['kind', 'artifact_id', 'version_id', 'finished_at', 'status', 'explained_variance', 'model_id', 'other_artifact_id', 'recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_check_run_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_check_run_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('check_feature',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('check_id', sa.Integer(), nullable=False),
    sa.Column('feature', sa.String(length=200), nullable=False),
    sa.Column('feature_kind', sa.String(length=20), nullable=False),
    sa.Column('n_ref', sa.Integer(), nullable=False),
    sa.Column('n_cur', sa.Integer(), nullable=False),
    sa.Column('missing_ref', sa.Integer(), nullable=False),
    sa.Column('missing_cur', sa.Integer(), nullable=False),
    sa.Column('psi', sa.Float(), nullable=True),
    sa.Column('ks_stat', sa.Float(), nullable=True),
    sa.Column('ks_pvalue', sa.Float(), nullable=True),
    sa.Column('wasserstein', sa.Float(), nullable=True),
    sa.Column('js_distance', sa.Float(), nullable=True),
    sa.Column('chi2_pvalue', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['check_id'], ['check_run.id'], name=op.f('fk_check_feature_check_id_check_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_feature'))
    )
    with op.batch_alter_table('check_feature', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_feature_check_id'), ['check_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_check_feature_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('fm_occurrence',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('cause_key', sa.String(length=400), nullable=False),
    sa.Column('model_id', sa.String(length=100), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('artifact_id', sa.String(length=200), nullable=True),
    sa.Column('check_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('detected_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifact.id'], name=op.f('fk_fm_occurrence_artifact_id_artifact')),
    sa.ForeignKeyConstraint(['check_id'], ['check_run.id'], name=op.f('fk_fm_occurrence_check_id_check_run')),
    sa.ForeignKeyConstraint(['code'], ['failure_mode.code'], name=op.f('fk_fm_occurrence_code_failure_mode')),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_fm_occurrence_model_id_model')),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], name=op.f('fk_fm_occurrence_version_id_model_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fm_occurrence')),
    sa.UniqueConstraint('cause_key', name=op.f('uq_fm_occurrence_cause_key'))
    )
    with op.batch_alter_table('fm_occurrence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fm_occurrence_code'), ['code'], unique=False)
        batch_op.create_index(batch_op.f('ix_fm_occurrence_recorded_at'), ['recorded_at'], unique=False)

    op.create_table('fm_status_event',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('occurrence_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('rationale', sa.Text(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['occurrence_id'], ['fm_occurrence.id'], name=op.f('fk_fm_status_event_occurrence_id_fm_occurrence')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fm_status_event'))
    )
    with op.batch_alter_table('fm_status_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fm_status_event_occurrence_id'), ['occurrence_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fm_status_event_recorded_at'), ['recorded_at'], unique=False)

    conn = op.get_bind()
    # Seed the failure-mode catalog (DESIGN §6) and policy v1 (DESIGN §5) through the ledger.
    seed_catalog(conn, op.get_context().config.attributes.get("clock"))
    create_append_only_triggers(conn, APPEND_ONLY)


def downgrade() -> None:
    # Tables that a later migration keeps on its own downgrade (0007_identity: evidence is dropped
    # only here, at base, with the ledger itself).
    for t in ("anchor", "identity_epoch", "signing_key", "role_grant", "person"):
        op.execute(f"DROP TABLE IF EXISTS {t}")
    drop_append_only_triggers(op.get_bind(), APPEND_ONLY, drop_function=True)

    with op.batch_alter_table('fm_status_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fm_status_event_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_fm_status_event_occurrence_id'))

    op.drop_table('fm_status_event')
    with op.batch_alter_table('fm_occurrence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fm_occurrence_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_fm_occurrence_code'))

    op.drop_table('fm_occurrence')
    with op.batch_alter_table('check_feature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_feature_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_check_feature_check_id'))

    op.drop_table('check_feature')
    with op.batch_alter_table('check_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_run_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_check_run_model_id'))
        batch_op.drop_index('ix_check_run_cover')

    op.drop_table('check_run')
    with op.batch_alter_table('finding_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finding_event_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_finding_event_finding_id'))

    op.drop_table('finding_event')
    with op.batch_alter_table('deployment_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_event_version_id'))
        batch_op.drop_index(batch_op.f('ix_deployment_event_recorded_at'))

    op.drop_table('deployment_event')
    with op.batch_alter_table('decision_volume', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decision_volume_version_id'))
        batch_op.drop_index(batch_op.f('ix_decision_volume_recorded_at'))

    op.drop_table('decision_volume')
    with op.batch_alter_table('attestation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attestation_report_run_id'))
        batch_op.drop_index(batch_op.f('ix_attestation_recorded_at'))

    op.drop_table('attestation')
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_artifact_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_artifact_model_id'))

    op.drop_table('artifact')
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_run_recorded_at'))

    op.drop_table('report_run')
    with op.batch_alter_table('model_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_version_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_model_version_model_id'))

    op.drop_table('model_version')
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finding_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_finding_model_id'))

    op.drop_table('finding')
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_dataset_model_id'))

    op.drop_table('dataset')
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policy_recorded_at'))

    op.drop_table('policy')
    with op.batch_alter_table('model', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_recorded_at'))

    op.drop_table('model')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_recorded_at'))

    op.drop_table('ledger_entry')
    with op.batch_alter_table('failure_mode', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failure_mode_recorded_at'))

    op.drop_table('failure_mode')

