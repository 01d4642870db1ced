"""Registry use cases: models, versions, deployments, artifacts, datasets, volumes.

Every function takes a session (one transaction per command, owned by the caller), validates
its input completely before writing, writes through the ledger, and returns plain dicts —
ORM rows never leave this layer.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, InputError, NotFound, UsageError
from compliance.hashing import canonical_json, sha256_bytes, sha256_file
from compliance.store.ledger import record, record_many, row_payload
from compliance.store.models import (
    Artifact,
    Base,
    Dataset,
    DecisionVolume,
    DeploymentEvent,
    Model,
    ModelVersion,
)

ARTIFACT_KINDS = ("sae", "transcoder", "clt", "probe", "attribution_baseline", "feature_labels")
DATASET_ROLES = ("production", "train", "reference")
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def plain(obj: Base) -> dict[str, Any]:
    return row_payload(obj)


# ---------------------------------------------------------------- lookups
def get_model(session: Session, model_id: str) -> Model:
    m = session.get(Model, model_id)
    if m is None:
        raise NotFound(f"unknown model {model_id!r} (see `compliance model list`)")
    return m


def get_version(session: Session, model_id: str, label: str) -> ModelVersion:
    get_model(session, model_id)
    v = session.scalar(select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.label == label))
    if v is None:
        raise NotFound(f"unknown version {label!r} of model {model_id!r}")
    return v


def get_artifact(session: Session, artifact_id: str) -> Artifact:
    a = session.get(Artifact, artifact_id)
    if a is None:
        raise NotFound(f"unknown artifact {artifact_id!r} (see `compliance artifact list`)")
    return a


def version_by_id(session: Session, version_id: int) -> ModelVersion:
    v = session.get(ModelVersion, version_id)
    if v is None:
        raise NotFound(f"unknown version id {version_id}")
    return v


def deployed_at(session: Session, version_id: int, at: datetime) -> bool:
    """Whether the version's latest deploy/retire event effective at or before ``at`` is a deploy."""
    ev = session.scalars(
        select(DeploymentEvent).where(DeploymentEvent.version_id == version_id, DeploymentEvent.effective_at <= at)
        .order_by(DeploymentEvent.effective_at.desc(), DeploymentEvent.id.desc()).limit(1)
    ).first()
    return ev is not None and ev.action == "deploy"


# ---------------------------------------------------------------- models
def add_model(session: Session, model_id: str, *, name: str, owner: str, tier: int, use: str,
              tags: list[str] | None = None, adapter: str | None = None) -> dict:
    if not SLUG.match(model_id or ""):
        raise UsageError(f"model id {model_id!r} must be a slug: lowercase letters, digits, '.', '_' or '-'")
    if type(tier) is not int or tier not in (1, 2, 3):
        raise UsageError(f"risk tier must be 1, 2 or 3, got {tier!r}")
    for field, value in (("name", name), ("owner", owner), ("use", use)):
        if not value or not str(value).strip():
            raise UsageError(f"model {model_id}: --{field} must not be empty")
    if session.get(Model, model_id) is not None:
        raise Conflict(f"model {model_id!r} already exists")
    if adapter is not None:
        from compliance.services.policy import check_adapter_allowed

        check_adapter_allowed(session, adapter)
    m = Model(id=model_id, name=name, owner=owner, tier=int(tier), business_use=use,
              tags=sorted(set(tags or [])), adapter=adapter)
    return plain(record(session, m))


def list_models(session: Session) -> list[dict]:
    return [plain(m) for m in session.scalars(select(Model).order_by(Model.tier, Model.id))]


def show_model(session: Session, model_id: str) -> dict:
    m = plain(get_model(session, model_id))
    versions = session.scalars(select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(ModelVersion.id)).all()
    events = session.execute(
        select(DeploymentEvent, ModelVersion.label).join(ModelVersion, ModelVersion.id == DeploymentEvent.version_id)
        .where(ModelVersion.model_id == model_id).order_by(DeploymentEvent.effective_at, DeploymentEvent.id)).all()
    m["versions"] = [plain(v) for v in versions]
    m["deployments"] = [dict(plain(e), version=label) for e, label in events]
    m["artifacts"] = [plain(a) for a in session.scalars(select(Artifact).where(Artifact.model_id == model_id).order_by(Artifact.id))]
    return m


# ---------------------------------------------------------------- versions
def add_version(session: Session, model_id: str, label: str, *, weights: str | Path,
                trained_at: datetime | None = None, data_window: tuple[date | None, date | None] = (None, None),
                parent: str | None = None) -> dict:
    get_model(session, model_id)
    if not label or not str(label).strip():
        raise UsageError("version label must not be empty")
    if session.scalar(select(ModelVersion.id).where(ModelVersion.model_id == model_id, ModelVersion.label == label)):
        raise Conflict(f"version {label!r} of model {model_id!r} already exists")
    parent_id = get_version(session, model_id, parent).id if parent else None
    wpath = Path(weights)
    if not wpath.is_file():
        raise InputError(f"weights file not found: {wpath}")
    v = ModelVersion(model_id=model_id, label=label, weights_path=str(wpath.resolve()),
                     weights_sha256=sha256_file(wpath), trained_at=trained_at,
                     data_window_start=data_window[0], data_window_end=data_window[1], parent_id=parent_id)
    return plain(record(session, v))


def list_versions(session: Session, model_id: str | None = None) -> list[dict]:
    q = select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.id)
    if model_id:
        get_model(session, model_id)
        q = q.where(ModelVersion.model_id == model_id)
    return [plain(v) for v in session.scalars(q)]


# ---------------------------------------------------------------- deployments
def deploy(session: Session, model_id: str, label: str, *, at: datetime) -> dict:
    v = get_version(session, model_id, label)
    if deployed_at(session, v.id, at):
        raise Conflict(f"{model_id} {label} is already deployed at {at.isoformat()}")
    _no_later_events(session, v, at)
    e = record(session, DeploymentEvent(version_id=v.id, action="deploy", effective_at=at))
    return dict(plain(e), model_id=model_id, version=label)


def retire(session: Session, model_id: str, label: str, *, at: datetime) -> dict:
    v = get_version(session, model_id, label)
    if not deployed_at(session, v.id, at):
        raise Conflict(f"{model_id} {label} is not deployed at {at.isoformat()}: nothing to retire")
    _no_later_events(session, v, at)
    e = record(session, DeploymentEvent(version_id=v.id, action="retire", effective_at=at))
    return dict(plain(e), model_id=model_id, version=label)


def _no_later_events(session: Session, v: ModelVersion, at: datetime) -> None:
    later = session.scalar(select(DeploymentEvent.effective_at).where(
        DeploymentEvent.version_id == v.id, DeploymentEvent.effective_at > at).limit(1))
    if later is not None:
        raise Conflict(f"{v.model_id} {v.label} already has a deployment event after {at.isoformat()} "
                       "(events must be recorded in time order)")


# ---------------------------------------------------------------- artifacts
def add_artifact(session: Session, model_id: str, *, kind: str, bound_version: str, path: str | Path,
                 hook: str | None = None, hook_out: str | None = None, labels: str | Path | None = None,
                 artifact_id: str | None = None, replaces: str | None = None) -> dict:
    from compliance.interp.headers import detect_format, file_hashes, read_feature_labels  # torch-free

    if kind not in ARTIFACT_KINDS:
        raise UsageError(f"unknown artifact kind {kind!r}: expected one of {', '.join(ARTIFACT_KINDS)}")
    get_model(session, model_id)
    v = get_version(session, model_id, bound_version)
    p = Path(path)
    info = detect_format(p)
    compatible = {"sae": {"sae"}, "transcoder": {"transcoder"}, "clt": {"clt"}, "probe": {"probe"},
                  "attribution_baseline": {"attribution_baseline"}, "feature_labels": {"feature_labels"}}[kind]
    if info.kind_hint not in compatible:
        raise InputError(f"{p}: files look like a {info.kind_hint} ({info.format}), not a {kind}")
    files = file_hashes(p)
    labels_path = labels_sha = None
    if labels:
        lp = Path(labels)
        read_feature_labels(lp)  # validates
        labels_path, labels_sha = str(lp.resolve()), sha256_file(lp)
    aid = artifact_id or f"{model_id}-{kind}-{bound_version}-{sha256_bytes(canonical_json(files).encode())[:8]}"
    if not SLUG.match(aid):
        raise UsageError(f"artifact id {aid!r} must be a slug")
    if session.get(Artifact, aid) is not None:
        raise Conflict(f"artifact {aid!r} already exists")
    if replaces:
        old = get_artifact(session, replaces)
        if old.model_id != model_id:
            raise UsageError(f"artifact {replaces!r} belongs to model {old.model_id}, not {model_id}")
    a = Artifact(
        id=aid, model_id=model_id, kind=kind, bound_version_id=v.id, format=info.format,
        architecture=info.architecture, hook_in=hook or info.hook_name, hook_out=hook_out,
        path=str(p.resolve()), sha256=sha256_bytes(canonical_json(files).encode()), files=files,
        d_in=info.d_in, d_sae=info.d_sae, d_out=info.d_out, n_layers=info.n_layers,
        labels_path=labels_path, labels_sha256=labels_sha, replaces_id=replaces,
        extra=_json_extra(info.extra),
    )
    return _artifact_view(session, record(session, a))


def _json_extra(extra: dict) -> dict:
    import json

    return json.loads(json.dumps(extra, default=str))


def _artifact_view(session: Session, a: Artifact) -> dict:
    d = plain(a)
    d["bound_version"] = version_by_id(session, a.bound_version_id).label
    return d


def list_artifacts(session: Session, model_id: str | None = None) -> list[dict]:
    q = select(Artifact, ModelVersion.label).join(ModelVersion, ModelVersion.id == Artifact.bound_version_id)
    if model_id:
        get_model(session, model_id)
        q = q.where(Artifact.model_id == model_id)
    return [dict(plain(a), bound_version=label) for a, label in session.execute(q.order_by(Artifact.model_id, Artifact.id))]


def show_artifact(session: Session, artifact_id: str) -> dict:
    from compliance.store.models import Check

    a = get_artifact(session, artifact_id)
    d = _artifact_view(session, a)
    checks = session.execute(
        select(Check, ModelVersion.label).outerjoin(ModelVersion, ModelVersion.id == Check.version_id)
        .where((Check.artifact_id == artifact_id) | (Check.other_artifact_id == artifact_id))
        .order_by(Check.finished_at, Check.id)).all()
    d["checks"] = [dict(id=c.id, kind=c.kind, version=label, status=c.status, finished_at=plain(c)["finished_at"],
                        explained_variance=c.explained_variance) for c, label in checks]
    return d


# ---------------------------------------------------------------- datasets and volumes
def add_dataset(session: Session, model_id: str, *, path: str | Path, role: str = "production",
                window: tuple[date | None, date | None] = (None, None)) -> dict:
    get_model(session, model_id)
    if role not in DATASET_ROLES:
        raise UsageError(f"unknown dataset role {role!r}: expected one of {', '.join(DATASET_ROLES)}")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file not found: {p}")
    d = Dataset(model_id=model_id, role=role, path=str(p.resolve()), sha256=sha256_file(p),
                window_start=window[0], window_end=window[1])
    return plain(record(session, d))


def list_datasets(session: Session, model_id: str | None = None) -> list[dict]:
    q = select(Dataset).order_by(Dataset.model_id, Dataset.window_start, Dataset.id)
    if model_id:
        q = q.where(Dataset.model_id == model_id)
    return [plain(d) for d in session.scalars(q)]


def add_volumes(session: Session, rows: list[tuple[str, str, date, float]]) -> int:
    """Record daily decision volumes: (model, version, day, volume) rows, all or nothing."""
    objs = []
    cache: dict[tuple[str, str], int] = {}
    for i, (model_id, label, day, volume) in enumerate(rows, 1):
        key = (model_id, label)
        if key not in cache:
            cache[key] = get_version(session, model_id, label).id
        try:
            vol = float(volume)
        except (TypeError, ValueError):
            raise InputError(f"row {i}: volume {volume!r} is not a number") from None
        if not vol >= 0:
            raise InputError(f"row {i}: volume must be a non-negative number, got {volume!r}")
        objs.append(DecisionVolume(version_id=cache[key], day=day, volume=vol))
    record_many(session, objs)
    return len(objs)
