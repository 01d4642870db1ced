"""The SQL schema of the store of record (DESIGN §2), as SQLAlchemy 2 typed ORM.

Every table is evidence: rows are appended, never updated or deleted (database triggers
enforce it, see :mod:`compliance.store.triggers`), and each insert has a ledger entry in the
same transaction (:mod:`compliance.store.ledger`). Status changes are new event rows.
ORM classes never leave :mod:`compliance.store`; services return plain dataclasses.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Evidence:
    """Columns every evidence record carries: set by the store, never by the caller."""

    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))


class Model(Evidence, Base):
    __tablename__ = "model"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    business_use: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))
    tier: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list[Any]] = mapped_column(JSON)
    adapter: Mapped[str | None] = mapped_column(String(300))


class ModelVersion(Evidence, Base):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("model_id", "label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    weights_path: Mapped[str] = mapped_column(Text)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    trained_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    data_window_start: Mapped[date | None] = mapped_column(Date)
    data_window_end: Mapped[date | None] = mapped_column(Date)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))


class DeploymentEvent(Evidence, Base):
    __tablename__ = "deployment_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    action: Mapped[str] = mapped_column(String(10))  # deploy | retire
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Artifact(Evidence, Base):
    __tablename__ = "artifact"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    bound_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    format: Mapped[str] = mapped_column(String(40))
    architecture: Mapped[str | None] = mapped_column(String(40))
    hook_in: Mapped[str | None] = mapped_column(String(200))
    hook_out: Mapped[str | None] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON of `files`
    files: Mapped[dict[str, Any]] = mapped_column(JSON)  # relative path -> SHA-256
    d_in: Mapped[int | None] = mapped_column(Integer)
    d_sae: Mapped[int | None] = mapped_column(Integer)
    d_out: Mapped[int | None] = mapped_column(Integer)
    n_layers: Mapped[int | None] = mapped_column(Integer)
    labels_path: Mapped[str | None] = mapped_column(Text)
    labels_sha256: Mapped[str | None] = mapped_column(String(64))
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("artifact.id"))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Methodology v2 (migration 0002): membership of an artifact set, judged as one unit.
    set_id: Mapped[str | None] = mapped_column(String(200), index=True)
    set_member: Mapped[str | None] = mapped_column(String(200))  # e.g. "layer_2" or a hook point


class ArtifactSet(Evidence, Base):
    """Several artifacts that explain one version together (DESIGN §2/§3): valid only when every member is."""

    __tablename__ = "artifact_set"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # kind of every member (sae, transcoder)
    bound_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    format: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON of `files`
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    members: Mapped[list[Any]] = mapped_column(JSON)  # member names, in order (e.g. layer_0, layer_1, ...)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON)


class Dataset(Evidence, Base):
    """A registered data file (production window, training or reference sample) of a model."""

    __tablename__ = "dataset"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # production | train | reference
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[date | None] = mapped_column(Date)
    window_end: Mapped[date | None] = mapped_column(Date)
    # Methodology v2 (migration 0002): column roles {role: [column, ...]} (input, target, protected,
    # score, id, timestamp, weight) and, for development data, the version it was trained on.
    columns: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))


class Check(Evidence, Base):
    __tablename__ = "check_run"
    # Covering index for the coverage engine's load (kind-filtered scan without touching the table).
    __table_args__ = (Index("ix_check_run_cover", "kind", "artifact_id", "version_id", "finished_at", "status",
                            "explained_variance", "model_id", "other_artifact_id", "recorded_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(30))
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifact.id"))
    other_artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifact.id"))
    window_start: Mapped[date | None] = mapped_column(Date)
    window_end: Mapped[date | None] = mapped_column(Date)
    input_hashes: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))  # pass | warn | fail | error | inconclusive
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    flags: Mapped[list[Any]] = mapped_column(JSON)  # failure-mode codes this check revealed
    explained_variance: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    tool_version: Mapped[str] = mapped_column(String(40))
    formula_version: Mapped[str | None] = mapped_column(String(40))


class CheckFeature(Evidence, Base):
    """Per-feature results of a data-drift check (queryable, not only JSON)."""

    __tablename__ = "check_feature"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[int] = mapped_column(ForeignKey("check_run.id"), index=True)
    feature: Mapped[str] = mapped_column(String(200))
    feature_kind: Mapped[str] = mapped_column(String(20))
    n_ref: Mapped[int] = mapped_column(Integer)
    n_cur: Mapped[int] = mapped_column(Integer)
    missing_ref: Mapped[int] = mapped_column(Integer)
    missing_cur: Mapped[int] = mapped_column(Integer)
    psi: Mapped[float | None] = mapped_column(Float)
    ks_stat: Mapped[float | None] = mapped_column(Float)
    ks_pvalue: Mapped[float | None] = mapped_column(Float)
    wasserstein: Mapped[float | None] = mapped_column(Float)
    js_distance: Mapped[float | None] = mapped_column(Float)
    chi2_pvalue: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20))


class FailureMode(Evidence, Base):
    __tablename__ = "failure_mode"
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(20))
    detection_rule: Mapped[str] = mapped_column(Text)
    mitigation: Mapped[str] = mapped_column(Text)


class FailureModeOccurrence(Evidence, Base):
    __tablename__ = "fm_occurrence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(ForeignKey("failure_mode.code"), index=True)
    cause_key: Mapped[str] = mapped_column(String(400), unique=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifact.id"))
    check_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"))
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FailureModeStatusEvent(Evidence, Base):
    __tablename__ = "fm_status_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("fm_occurrence.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # open | mitigated | accepted | closed
    rationale: Mapped[str] = mapped_column(Text)


class Finding(Evidence, Base):
    __tablename__ = "finding"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(20))
    owner: Mapped[str] = mapped_column(String(200))
    due_date: Mapped[date] = mapped_column(Date)
    description: Mapped[str | None] = mapped_column(Text)


class FindingEvent(Evidence, Base):
    __tablename__ = "finding_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("finding.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # open | in_progress | remediated | closed | accepted
    note: Mapped[str] = mapped_column(Text)


class ReportRun(Evidence, Base):
    __tablename__ = "report_run"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # portfolio | model | export
    quarter: Mapped[str] = mapped_column(String(6))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"))
    scope: Mapped[list[Any]] = mapped_column(JSON)  # model ids in scope
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    context_sha256: Mapped[str] = mapped_column(String(64))
    # file name -> SHA-256; "pack:NAME" -> SHA-256 of a member of an exported zip; "pades:NAME" ->
    # the certificate (subject, issuer, SHA-256 fingerprint) that PAdES-signed file NAME
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    ledger_head: Mapped[str] = mapped_column(String(64))
    tool_version: Mapped[str] = mapped_column(String(40))


class Attestation(Evidence, Base):
    __tablename__ = "attestation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_run_id: Mapped[str] = mapped_column(ForeignKey("report_run.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(100))
    decision: Mapped[str] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)
    # Identity (migration 0007): the evidence the sign-off approves and the author's signature over
    # (report id, context hash, decision, comment, signed_at) -- see compliance.identity.keys.
    context_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    signed_at: Mapped[str | None] = mapped_column(String(40))
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(Text)


class Policy(Evidence, Base):
    """A version of the policy in force; the latest recorded at or before T applies at T."""

    __tablename__ = "policy"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)


class DecisionVolume(Evidence, Base):
    __tablename__ = "decision_volume"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    volume: Mapped[float] = mapped_column(Float)


class Acceptance(Evidence, Base):
    """A validator's acceptance of one ``warn`` check or of a failure-mode occurrence (DESIGN §4)."""

    __tablename__ = "acceptance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"), index=True)
    occurrence_id: Mapped[int | None] = mapped_column(ForeignKey("fm_occurrence.id"), index=True)
    rationale: Mapped[str] = mapped_column(Text)


class Narrative(Evidence, Base):
    """One version of one section of the validator's narrative for a quarter (migration 0005):
    conclusion (with the validator's rating), limitations, conditions or compensating controls;
    portfolio-wide when ``model_id`` is null. The latest row per (quarter, model, section) wins."""

    __tablename__ = "narrative"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    quarter: Mapped[str] = mapped_column(String(6), index=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"))
    section: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    rating: Mapped[str | None] = mapped_column(String(30))


class Correction(Evidence, Base):
    """An append-only correction: ``void`` a record, or ``supersede`` it by another (same type)."""

    __tablename__ = "correction"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # void | supersede
    replacement_id: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)


class MonitoringPlan(Evidence, Base):
    """One version of a model's monitoring plan (DESIGN §10, migration 0009): which check kinds run,
    how often, on which data, under which budget, and who is alerted. The latest version recorded
    at or before T is the plan in force at T; a model without one follows its tier's default."""

    __tablename__ = "monitoring_plan"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(300))  # the file (or manifest) it came from
    __table_args__ = (UniqueConstraint("model_id", "version"),)


class Alert(Evidence, Base):
    """An alert in the outbox, written in the transaction of the event that caused it (so it is
    never lost); delivery attempts are :class:`AlertDelivery` rows written afterwards."""

    __tablename__ = "alert"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(40))  # occurrence_opened | verdict_worsened | gate_refused | check_missed
    cause_key: Mapped[str] = mapped_column(String(400), unique=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    recipients: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"email": [...], "webhook": [...]} from the plan


class AlertDelivery(Evidence, Base):
    """One delivery attempt of one alert on one channel, and its outcome."""

    __tablename__ = "alert_delivery"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))  # webhook | email
    target: Mapped[str] = mapped_column(String(500))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))  # delivered | failed
    detail: Mapped[str] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GateDecision(Evidence, Base):
    """A pre-promotion gate decision on one version: pass or refuse, the reasons, the evidence."""

    __tablename__ = "gate_decision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    decision: Mapped[str] = mapped_column(String(20))  # pass | refuse
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)  # group -> artifact / check ids relied on
    policy_version: Mapped[int] = mapped_column(Integer)


class RegistryLink(Evidence, Base):
    """What a registry sync recorded for one external object (an MLflow model, version or
    alias/stage event): the key that makes a re-sync idempotent and incremental."""

    __tablename__ = "registry_link"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registry_uri: Mapped[str] = mapped_column(String(500))  # e.g. mlflow:<tracking uri>
    external_key: Mapped[str] = mapped_column(String(500))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (UniqueConstraint("registry_uri", "external_key"),)
class Adaptation(Evidence, Base):
    """One adaptation of an SAE, transcoder or CLT to a newer version or data (DESIGN §9, migration
    0008): warm-started from ``parent_artifact_id``, fine-tuned under a budget, checked on held-out
    rows. ``succeeded``: the child is registered (``child_artifact_id``) with its held-out fidelity
    check (``check_id``); ``failed``: nothing registered, the figures and reasons are kept here."""

    __tablename__ = "adaptation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("model.id"), index=True)
    parent_artifact_id: Mapped[str] = mapped_column(ForeignKey("artifact.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))  # the version adapted to
    child_artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifact.id"))
    check_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"))
    status: Mapped[str] = mapped_column(String(20))  # succeeded | failed
    path: Mapped[str | None] = mapped_column(Text)  # where the adapted files were written
    files: Mapped[dict[str, Any]] = mapped_column(JSON)  # relative path -> SHA-256 (also when failed)
    input_hashes: Mapped[dict[str, Any]] = mapped_column(JSON)  # parent, data, weights, held-out rows
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)  # seed, budget, learning rate, batch, split
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # steps, seconds, final loss, EV before/after, survival
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    tool_version: Mapped[str] = mapped_column(String(40))
class Person(Evidence, Base):
    """A person who may act on the store (migration 0007). ``id`` is their login: the PostgreSQL
    role they connect as (``session_user``), or their operating-system user on SQLite."""

    __tablename__ = "person"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))


class RoleGrant(Evidence, Base):
    """A grant or revocation of a role (admin, owner, developer, validator, approver), global when
    ``model_id`` is null; the latest event per (person, role, model) is in force."""

    __tablename__ = "role_grant"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("person.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    model_id: Mapped[str | None] = mapped_column(ForeignKey("model.id"))
    action: Mapped[str] = mapped_column(String(10))  # grant | revoke


class SigningKey(Evidence, Base):
    """A public Ed25519 key registered (or revoked) for a person or for the organisation
    (``person_id`` null). The private key never enters the store."""

    __tablename__ = "signing_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str | None] = mapped_column(ForeignKey("person.id"))
    public_key: Mapped[str] = mapped_column(Text)  # base64 of the raw 32-byte Ed25519 public key
    action: Mapped[str] = mapped_column(String(10))  # register | revoke


class IdentityEpoch(Evidence, Base):
    """Where authenticated identity starts in the chain (migration 0007): entries before this
    row's ledger entry were written before identity was enforced."""

    __tablename__ = "identity_epoch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text)


class Anchor(Evidence, Base):
    """A signed checkpoint of the ledger head (``compliance anchor``); the file is kept outside
    the database, this row lets an export carry the anchors up to its head."""

    __tablename__ = "anchor"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    head_seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)  # the anchor file's content


class LedgerEntry(Base):
    """One entry per write, hash-chained: hash = SHA-256(prev_hash ‖ canonical entry)."""

    __tablename__ = "ledger_entry"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


EVIDENCE_MODELS: tuple[type[Base], ...] = (
    Model,
    ModelVersion,
    DeploymentEvent,
    Artifact,
    ArtifactSet,
    Dataset,
    Check,
    CheckFeature,
    FailureMode,
    FailureModeOccurrence,
    FailureModeStatusEvent,
    Finding,
    FindingEvent,
    ReportRun,
    Attestation,
    Policy,
    DecisionVolume,
    Acceptance,
    Correction,
    Narrative,
    MonitoringPlan,
    Alert,
    AlertDelivery,
    GateDecision,
    RegistryLink,
    Adaptation,
    Person,
    RoleGrant,
    SigningKey,
    IdentityEpoch,
    Anchor,
)
# Columns added to existing tables after 0001_initial: ledger payloads written before the
# migration that added them lack the key, which ``verify`` reads as NULL (and only as NULL).
ADDED_COLUMNS: dict[str, frozenset[str]] = {
    "artifact": frozenset({"set_id", "set_member"}),
    "dataset": frozenset({"columns", "version_id"}),
    "attestation": frozenset({"context_sha256", "signed_at", "key_fingerprint", "signature"}),
}
EVIDENCE_TABLES: tuple[str, ...] = tuple(m.__tablename__ for m in EVIDENCE_MODELS)
APPEND_ONLY_TABLES: tuple[str, ...] = EVIDENCE_TABLES + ("ledger_entry",)
BY_TABLE: dict[str, type[Base]] = {m.__tablename__: m for m in EVIDENCE_MODELS}
