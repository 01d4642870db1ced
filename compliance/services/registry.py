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
    ArtifactSet,
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
    """Whether the version's latest deploy/retire event effective at or before ``at`` is a deploy
    (voided or superseded events do not count)."""
    ev = session.scalars(
        select(DeploymentEvent).where(DeploymentEvent.version_id == version_id, DeploymentEvent.effective_at <= at,
                                      DeploymentEvent.id.not_in(_corrected_events()))
        .order_by(DeploymentEvent.effective_at.desc(), DeploymentEvent.id.desc()).limit(1)
    ).first()
    return ev is not None and ev.action == "deploy"


def _corrected_events():
    from sqlalchemy import Integer, cast

    from compliance.store.models import Correction

    return select(cast(Correction.entity_id, Integer)).where(Correction.entity_type == "deployment_event")


# ---------------------------------------------------------------- models
def add_model(session: Session, model_id: str, *, name: str, owner: str, tier: int, use: str,
              tags: list[str] | None = None, adapter: str | None = None) -> dict:
    row = new_model_row(session, model_id, name=name, owner=owner, tier=tier, use=use, tags=tags, adapter=adapter)
    return plain(record(session, Model(**row)))


def new_model_row(session: Session, model_id: str, *, name: str, owner: str, tier: int, use: str,
                  tags: list[str] | None = None, adapter: str | None = None, lookup: Lookup | None = None) -> dict:
    """The validated column values of a new model (``lookup``: what exists, for the bulk path)."""
    if not SLUG.match(model_id or ""):
        raise UsageError(f"model id {model_id!r} must be a slug: lowercase letters, digits, '.', '_' or '-'")
    if type(tier) is not int or tier not in (1, 2, 3):
        raise UsageError(f"risk tier must be 1, 2 or 3, got {tier!r}")
    for field, value in (("name", name), ("owner", owner), ("use", use)):
        if not value or not str(value).strip():
            raise UsageError(f"model {model_id}: --{field} must not be empty")
    if (lookup or Lookup(session)).model_exists(model_id):
        raise Conflict(f"model {model_id!r} already exists")
    if adapter is not None:
        if lookup is None:
            from compliance.services.policy import check_adapter_allowed

            check_adapter_allowed(session, adapter)
        else:
            lookup.check_adapter(adapter)
    return dict(id=model_id, name=name, owner=owner, tier=int(tier), business_use=use,
                tags=sorted(set(tags or [])), adapter=adapter)


class Lookup:
    """What the store holds, asked row by row (the bulk import preloads it: services.bulk_import)."""

    def __init__(self, session: Session):
        self.session = session

    def model_exists(self, model_id: str) -> bool:
        return self.session.get(Model, model_id) is not None

    def version_id(self, model_id: str, label: str) -> int | None:
        return self.session.scalar(select(ModelVersion.id).where(ModelVersion.model_id == model_id,
                                                                 ModelVersion.label == label))

    def check_adapter(self, adapter: str) -> None:
        from compliance.services.policy import check_adapter_allowed

        check_adapter_allowed(self.session, adapter)

    def real_path(self, p: Path) -> str:
        return str(p.resolve())


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
    row = new_version_row(Lookup(session), model_id, label, weights=weights, trained_at=trained_at,
                          data_window=data_window, parent=parent)
    return plain(record(session, ModelVersion(**row)))


def new_version_row(lookup: Lookup, model_id: str, label: str, *, weights: str | Path,
                    trained_at: datetime | None = None, data_window: tuple[date | None, date | None] = (None, None),
                    parent: str | None = None) -> dict:
    """The validated column values of a new version (all but its id)."""
    if not lookup.model_exists(model_id):
        raise NotFound(f"unknown model {model_id!r} (see `compliance model list`)")
    if not label or not str(label).strip():
        raise UsageError("version label must not be empty")
    if lookup.version_id(model_id, label) is not None:
        raise Conflict(f"version {label!r} of model {model_id!r} already exists")
    parent_id = None
    if parent:
        parent_id = lookup.version_id(model_id, parent)
        if parent_id is None:
            raise NotFound(f"unknown version {parent!r} of model {model_id!r}")
    wpath = Path(weights)
    if not wpath.is_file():
        raise InputError(f"weights file not found: {wpath}")
    return dict(model_id=model_id, label=label, weights_path=lookup.real_path(wpath),
                weights_sha256=sha256_file(wpath), trained_at=trained_at,
                data_window_start=data_window[0], data_window_end=data_window[1], parent_id=parent_id)


def list_versions(session: Session, model_id: str | None = None) -> list[dict]:
    q = select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.id)
    if model_id:
        get_model(session, model_id)
        q = q.where(ModelVersion.model_id == model_id)
    return [plain(v) for v in session.scalars(q)]


# ---------------------------------------------------------------- deployments
def deploy(session: Session, model_id: str, label: str, *, at: datetime) -> dict:
    return _deployment_event(session, model_id, label, at=at, action="deploy")


def retire(session: Session, model_id: str, label: str, *, at: datetime) -> dict:
    return _deployment_event(session, model_id, label, at=at, action="retire")


def _deployment_event(session: Session, model_id: str, label: str, *, at: datetime, action: str) -> dict:
    from compliance.store.door import check_time

    check_time(at, session.info["clock"](), f"{action} time")
    v = get_version(session, model_id, label)
    # Serialised per version: concurrent deploys of one version queue on its row (PostgreSQL row
    # lock; SQLite writers are serialised by BEGIN IMMEDIATE), so the state read below is the
    # state the event is appended to, and a race cannot record the same event twice.
    session.execute(select(ModelVersion.id).where(ModelVersion.id == v.id).with_for_update())
    if action == "deploy" and deployed_at(session, v.id, at):
        raise Conflict(f"{model_id} {label} is already deployed at {at.isoformat()}")
    if action == "retire" and not deployed_at(session, v.id, at):
        raise Conflict(f"{model_id} {label} is not deployed at {at.isoformat()}: nothing to retire")
    _no_later_events(session, v, at)
    e = record(session, DeploymentEvent(version_id=v.id, action=action, effective_at=at))
    return dict(plain(e), model_id=model_id, version=label)


def _no_later_events(session: Session, v: ModelVersion, at: datetime) -> None:
    later = session.scalar(select(DeploymentEvent.effective_at).where(
        DeploymentEvent.version_id == v.id, DeploymentEvent.effective_at > at,
        DeploymentEvent.id.not_in(_corrected_events())).limit(1))
    if later is not None:
        raise Conflict(f"{v.model_id} {v.label} already has a deployment event after {at.isoformat()} "
                       "(events must be recorded in time order)")


# ---------------------------------------------------------------- artifacts
def add_artifact(session: Session, model_id: str, *, kind: str, bound_version: str, path: str | Path,
                 hook: str | None = None, hook_out: str | None = None, labels: str | Path | None = None,
                 artifact_id: str | None = None, replaces: str | None = None) -> dict:
    from compliance.interp.headers import detect_format, detect_set, file_hashes, read_feature_labels  # torch-free

    if kind not in ARTIFACT_KINDS:
        raise UsageError(f"unknown artifact kind {kind!r}: expected one of {', '.join(ARTIFACT_KINDS)}")
    get_model(session, model_id)
    v = get_version(session, model_id, bound_version)
    p = Path(path)
    if not p.exists():
        raise InputError(f"artifact not found: {p}")
    aset = detect_set(p)
    if aset is not None:
        if labels:
            raise UsageError("--labels applies to one artifact, not to a set: register labels per member")
        return _add_set(session, model_id, v, kind, p, aset, hook, hook_out, artifact_id, replaces)
    info = detect_format(p)
    _check_kind(p, info, kind)
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
        architecture=info.architecture, hook_in=hook or info.hook_name,
        hook_out=hook_out or info.extra.get("hook_name_out"),
        path=str(p.resolve()), sha256=sha256_bytes(canonical_json(files).encode()), files=files,
        d_in=info.d_in, d_sae=info.d_sae, d_out=info.d_out, n_layers=info.n_layers,
        labels_path=labels_path, labels_sha256=labels_sha, replaces_id=replaces,
        extra=_json_extra(info.extra),
    )
    return _artifact_view(session, record(session, a))


def _check_kind(p: Path, info, kind: str) -> None:
    if info.kind_hint != kind and kind not in info.extra.get("kinds", ()):
        raise InputError(f"{p}: files look like a {info.kind_hint} ({info.format}), not a {kind}")


def _rel_hashes(root: Path, paths: list[Path]) -> dict[str, str]:
    return {str(f.relative_to(root)): sha256_file(f) for f in paths}


def _add_set(session: Session, model_id: str, v: ModelVersion, kind: str, p: Path, aset, hook: str | None,
             hook_out: str | None, set_id: str | None, replaces: str | None) -> dict:
    """An artifact set: one ArtifactSet row and one Artifact row per member, in one transaction."""
    if aset.kind_hint != kind:
        raise InputError(f"{p}: files look like a set of {aset.kind_hint}s ({aset.format}), not of {kind}s")
    if hook or hook_out:
        raise UsageError("--hook/--hook-out apply to one artifact: a set's members take their hooks from its config")
    if replaces:
        raise UsageError("--replaces applies to one artifact, not to a set")
    files = _rel_hashes(p, aset.files)
    digest = sha256_bytes(canonical_json(files).encode())
    sid = set_id or f"{model_id}-{kind}-set-{v.label}-{digest[:8]}"
    if not SLUG.match(sid):
        raise UsageError(f"artifact set id {sid!r} must be a slug")
    if session.get(ArtifactSet, sid) is not None or session.get(Artifact, sid) is not None:
        raise Conflict(f"artifact set {sid!r} already exists")
    rows: list[Base] = [ArtifactSet(
        id=sid, model_id=model_id, kind=kind, bound_version_id=v.id, format=aset.format,
        path=str(p.resolve()), sha256=digest, files=files, members=[name for name, _, _ in aset.members],
        extra=_json_extra(aset.extra))]
    for name, mpath, info in aset.members:
        mfiles = {f.name if mpath.is_file() else str(f.relative_to(mpath)): files[str(f.relative_to(p))]
                  for f in info.files}
        mid = f"{sid}/{name}"
        if session.get(Artifact, mid) is not None:
            raise Conflict(f"artifact {mid!r} already exists")
        rows.append(Artifact(
            id=mid, model_id=model_id, kind=kind, bound_version_id=v.id, format=info.format,
            architecture=info.architecture, hook_in=info.hook_name, hook_out=info.extra.get("hook_name_out"),
            path=str(mpath.resolve()), sha256=sha256_bytes(canonical_json(mfiles).encode()), files=mfiles,
            d_in=info.d_in, d_sae=info.d_sae, d_out=info.d_out, n_layers=info.n_layers,
            extra=_json_extra(info.extra), set_id=sid, set_member=name))
    record_many(session, rows)
    return show_artifact_set(session, sid)


MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._{}-]{0,99}$")


def add_artifact_set(session: Session, model_id: str, *, kind: str, bound_version: str,
                     members: list[tuple[str, str | Path]], set_id: str | None = None) -> dict:
    """Group single artifacts given as (member name, path) into one artifact set, registered in
    one transaction (e.g. per-layer SAELens folders or Gemma Scope files kept apart)."""
    import os

    from compliance.interp.headers import SetInfo, detect_format, detect_set

    if kind not in ARTIFACT_KINDS:
        raise UsageError(f"unknown artifact kind {kind!r}: expected one of {', '.join(ARTIFACT_KINDS)}")
    get_model(session, model_id)
    v = get_version(session, model_id, bound_version)
    if not members:
        raise UsageError("an artifact set needs at least one --member NAME=PATH")
    names = [n for n, _ in members]
    bad = [n for n in names if not MEMBER_NAME.match(n or "")]
    if bad:
        raise UsageError(f"member name {bad[0]!r} must be letters, digits, '.', '_' or '-'")
    if len(set(names)) != len(names):
        raise UsageError(f"member names must be unique, got {names}")
    infos = []
    for name, path in members:
        mp = Path(path)
        if not mp.exists():
            raise InputError(f"member {name}: artifact not found: {mp}")
        if detect_set(mp) is not None:
            raise InputError(f"member {name}: {mp} is itself an artifact set")
        info = detect_format(mp)
        _check_kind(mp, info, kind)
        infos.append((name, mp, info))
    formats = {i.format for _, _, i in infos}
    if len(formats) > 1:
        raise InputError(f"the members mix formats {sorted(formats)}: a set holds one format")
    files = [f for _, _, i in infos for f in i.files]
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    infos = [(n, mp.resolve(), i) for n, mp, i in infos]
    for _, _, i in infos:
        i.files = [f.resolve() for f in i.files]
    aset = SetInfo(f"{formats.pop()}_set", kind, infos, [f for _, _, i in infos for f in i.files],
                   {"grouped": True})
    return _add_set(session, model_id, v, kind, root, aset, None, None, set_id, None)


def get_artifact_set(session: Session, set_id: str) -> ArtifactSet:
    s = session.get(ArtifactSet, set_id)
    if s is None:
        raise NotFound(f"unknown artifact set {set_id!r} (see `compliance artifact list`)")
    return s


def set_members(session: Session, set_id: str) -> list[Artifact]:
    """The member artifacts of a set, in the set's order."""
    s = get_artifact_set(session, set_id)
    by_name = {a.set_member: a for a in session.scalars(select(Artifact).where(Artifact.set_id == set_id))}
    return [by_name[n] for n in s.members]


def show_artifact_set(session: Session, set_id: str) -> dict:
    s = get_artifact_set(session, set_id)
    d = plain(s)
    d["bound_version"] = version_by_id(session, s.bound_version_id).label
    d["is_set"] = True
    d["member_artifacts"] = [_artifact_view(session, a) for a in set_members(session, set_id)]
    first = d["member_artifacts"][0]
    d.update(architecture=first["architecture"], d_in=first["d_in"], d_sae=first["d_sae"], d_out=first["d_out"])
    return d


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

    if session.get(Artifact, artifact_id) is None and session.get(ArtifactSet, artifact_id) is not None:
        return show_artifact_set(session, artifact_id)
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
                window: tuple[date | None, date | None] = (None, None),
                columns: dict[str, list[str]] | None = None, version: str | None = None) -> dict:
    """Register a data file. ``columns``: column roles {role: [column, ...]} (DESIGN §2); columns
    without a given role are inferred from names and dtypes, and the result says what was inferred
    (``inferred``: notes to show the user). ``version``: the version this is development data of."""
    from compliance.checks.roles import check_roles_shape, file_schema, resolve_roles

    get_model(session, model_id)
    if role not in DATASET_ROLES:
        raise UsageError(f"unknown dataset role {role!r}: expected one of {', '.join(DATASET_ROLES)}")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file not found: {p}")
    v = get_version(session, model_id, version) if version else None
    given = check_roles_shape(columns, where="column roles") if columns else None
    roles, inferred = resolve_roles(file_schema(p), given, where=p.name)
    d = Dataset(model_id=model_id, role=role, path=str(p.resolve()), sha256=sha256_file(p),
                window_start=window[0], window_end=window[1], columns=roles, version_id=v.id if v else None)
    out = plain(record(session, d))
    out["inferred"] = inferred
    if v is not None:
        out["version"] = v.label
    return out


def list_datasets(session: Session, model_id: str | None = None) -> list[dict]:
    q = select(Dataset).order_by(Dataset.model_id, Dataset.window_start, Dataset.id)
    if model_id:
        q = q.where(Dataset.model_id == model_id)
    labels = dict(session.execute(select(ModelVersion.id, ModelVersion.label)).all())
    return [dict(plain(d), version=labels.get(d.version_id)) for d in session.scalars(q)]


def add_volumes(session: Session, rows: list[tuple[str, str, date, float]]) -> int:
    """Record daily decision volumes: (model, version, day, volume) rows, all or nothing.
    Returns the number of rows written (see :func:`import_volumes`)."""
    return import_volumes(session, rows)["recorded"]


def import_volumes(session: Session, rows: list[tuple[str, str, date, float]]) -> dict:
    """Validate every row, then write the new ones: a (version, day) already recorded with the
    same volume is recognised as a re-import and not written again; with another volume it is
    refused (void the stored row first: ``compliance void volume ID --reason ...``)."""
    from compliance.services.corrections import corrected_ids
    from compliance.store.door import MAX_VOLUME, check_number, check_time

    now = session.info["clock"]()
    cache: dict[tuple[str, str], int] = {}
    seen: dict[tuple[int, date], tuple[int, float]] = {}
    for i, (model_id, label, day, volume) in enumerate(rows, 1):
        key = (model_id, label)
        if key not in cache:
            cache[key] = get_version(session, model_id, label).id
        if isinstance(volume, str):
            try:
                volume = float(volume)
            except ValueError:
                raise InputError(f"row {i}: volume {volume!r} is not a number") from None
        try:
            vol = check_number(volume, f"row {i}: volume", low=0.0, high=MAX_VOLUME)
            check_time(day, now, f"row {i}: day")
        except InputError as exc:
            raise InputError(str(exc)) from None
        k = (cache[key], day)
        if k in seen and seen[k][1] != vol:
            raise InputError(f"row {i}: {model_id} {label} {day.isoformat()} already appears on row {seen[k][0]} "
                             f"with another volume ({seen[k][1]:g} vs {vol:g})")
        seen.setdefault(k, (i, vol))
    stored: dict[tuple[int, date], DecisionVolume] = {}
    if seen:
        void = corrected_ids(session, "volume")
        vids = sorted({v for v, _d in seen})
        for r in session.scalars(select(DecisionVolume).where(DecisionVolume.version_id.in_(vids))
                                 .order_by(DecisionVolume.id)):
            if r.id not in void:
                stored.setdefault((r.version_id, r.day), r)
    objs, already = [], 0
    for (vid, day), (i, vol) in seen.items():
        old = stored.get((vid, day))
        if old is None:
            objs.append(DecisionVolume(version_id=vid, day=day, volume=vol))
        elif float(old.volume) == vol:
            already += 1
        else:
            raise Conflict(f"row {i}: a volume for {rows[i - 1][0]} {rows[i - 1][1]} on {day.isoformat()} is already "
                           f"recorded (volume {old.id}: {float(old.volume):g}, not {vol:g}); to correct it, "
                           f"`compliance void volume {old.id} --reason ...` and import again")
    record_many(session, objs)
    return {"recorded": len(objs), "already_recorded": already}
