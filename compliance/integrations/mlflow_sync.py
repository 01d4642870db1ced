"""MLflow registry sync (DESIGN §10): registered models → models, model versions → versions,
aliases / stages → deploy and retire events. Needs ``pip install 'compliance[mlflow]'``.

* **Models.** Tier, owner, business use and id come from the registered model's tags
  (``tier``, ``owner``, ``use`` or ``business_use``, ``compliance.id``) or from a mapping file
  (``models: {NAME: {id, tier, owner, use, name}}``, which wins); a model missing its tier or owner is
  reported and skipped. A model already in the store under that id is linked, never re-created.
* **Versions.** Label ``v<N>`` for MLflow version N. The weights are the version's logged artifact
  (downloaded into ``artifacts_dir``): the single file, or the file named by the version tag
  ``compliance.weights``, or the only ``*.safetensors``; SHA-256 computed by the store. Training
  window from the run's params or tags (``data_window: 2025-01-01..2025-12-31``, or
  ``data_window_start`` / ``data_window_end``), trained-at from ``trained_at`` (param or tag) or the
  run's end time; parent from the version tag ``compliance.parent`` (an MLflow version number), else
  the previous version. A version whose artifact cannot be fetched or hashed is reported and skipped
  (its deployments too); the rest of the run is recorded.
* **Deployments.** A version is live while it carries one of the ``aliases`` (default
  ``champion``) or is in one of the ``stages`` (default ``Production``). A stage change is dated by
  the version's ``last_updated_timestamp``; MLflow keeps no time per alias, so an alias move is
  dated by the registered model's ``last_updated_timestamp`` (which MLflow bumps when an alias is
  set) — sync often to keep that close. Only what changed since the store's state is written.
* **Idempotent and incremental.** Every model, version and event the sync records is linked in
  ``registry_link`` under ``mlflow:<tracking uri>``: a second sync reads MLflow, finds nothing
  new, writes nothing; only versions not linked yet are downloaded and hashed.
* **All-or-nothing.** The whole run is one transaction (the caller's session). Reading MLflow
  happens before the first write.
* It never writes to MLflow (the gate's tags are written by :func:`write_gate_tags`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError, InputError, UsageError
from compliance.services import registry
from compliance.store.ledger import record
from compliance.store.models import Model, RegistryLink
from compliance.timeutil import parse_datetime, parse_window


def _client(tracking_uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise UsageError("MLflow sync needs the mlflow extra: pip install 'compliance[mlflow]'") from None
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _ms(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts / 1000, tz=timezone.utc)


def _slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return s[:100] or "model"


@dataclass
class SyncReport:
    registry: str
    models_added: list[str] = field(default_factory=list)
    versions_added: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return len(self.models_added) + len(self.versions_added) + len(self.events)

    def to_dict(self) -> dict:
        return {"registry": self.registry, "models_added": self.models_added, "versions_added": self.versions_added,
                "events": self.events, "skipped": self.skipped, "written": self.written}


def _links(session: Session, reg: str) -> dict[str, RegistryLink]:
    return {r.external_key: r for r in session.scalars(select(RegistryLink).where(RegistryLink.registry_uri == reg))}


def _link(session: Session, reg: str, key: str, etype: str, eid: str, state: dict) -> None:
    record(session, RegistryLink(registry_uri=reg, external_key=key, entity_type=etype, entity_id=str(eid), state=state))


def _param(run, key: str) -> str | None:
    if run is None:
        return None
    return run.data.params.get(key) or run.data.tags.get(key)


def _weights_file(tracking_uri: str, mv, dest: Path) -> Path:
    import mlflow.artifacts

    dest.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(dest),
                                                     tracking_uri=tracking_uri))
    if local.is_file():
        return local
    files = sorted(p for p in local.rglob("*") if p.is_file())
    named = (mv.tags or {}).get("compliance.weights")
    if named:
        hit = [p for p in files if p.relative_to(local).as_posix() == named or p.name == named]
        if not hit:
            raise InputError(f"artifact has no file {named!r} (tag compliance.weights)")
        return hit[0]
    if len(files) == 1:
        return files[0]
    st = [p for p in files if p.suffix == ".safetensors"]
    if len(st) == 1:
        return st[0]
    raise InputError(f"cannot tell which of {len(files)} artifact files holds the weights: "
                     "tag the version with compliance.weights")


def sync_mlflow(session: Session, tracking_uri: str, *, models: list[str] | None = None,
                mapping: dict | None = None, artifacts_dir: str | Path = "mlflow-artifacts",
                aliases: tuple[str, ...] = ("champion",), stages: tuple[str, ...] = ("Production",)) -> dict:
    client = _client(tracking_uri)
    reg = f"mlflow:{tracking_uri}"
    rep = SyncReport(reg)
    mapping = (mapping or {}).get("models") or {}
    try:
        found = client.search_registered_models(max_results=1000)
    except Exception as exc:  # noqa: BLE001 - an unreachable or malformed tracking store: one clear line
        raise InputError(f"cannot read the MLflow registry at {tracking_uri}: {type(exc).__name__}: {exc}") from None
    names = {m.name: m for m in found}
    for n in models or []:
        if n not in names:
            raise InputError(f"no registered model {n!r} in {tracking_uri}")
    wanted = [names[n] for n in (models or sorted(names))]
    # ---- read everything first (no write before MLflow has answered)
    plan = []
    for rm in wanted:
        rm = client.get_registered_model(rm.name)  # with its aliases (a search may leave them out)
        versions = sorted(client.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version))
        plan.append((rm, versions))
    links = _links(session, reg)
    now = session.info["clock"]()
    for rm, versions in plan:
        _sync_model(session, client, rm, versions, mapping.get(rm.name) or {}, links, rep, reg, Path(artifacts_dir),
                    aliases, stages, now)
    return rep.to_dict()


def _sync_model(session, client, rm, versions, mapped: dict, links, rep: SyncReport, reg: str, adir: Path,
                aliases, stages, now) -> None:
    tags = dict(rm.tags or {})
    key = f"model:{rm.name}"
    if key in links:
        mid = links[key].entity_id
    else:
        mid = str(mapped.get("id") or tags.get("compliance.id") or _slug(rm.name))
        if session.get(Model, mid) is None:
            tier, owner = mapped.get("tier", tags.get("tier")), mapped.get("owner", tags.get("owner"))
            if tier is None or not owner:
                rep.skipped.append(f"{rm.name}: no tier/owner (tags 'tier' and 'owner', or the mapping file)")
                return
            try:
                registry.add_model(session, mid, name=str(mapped.get("name") or rm.name), owner=str(owner),
                                   tier=int(str(tier)), use=str(mapped.get("use") or tags.get("use")
                                                                or tags.get("business_use") or rm.description
                                                                or f"MLflow registered model {rm.name}"),
                                   tags=["mlflow"])
            except (ComplianceError, ValueError) as exc:
                rep.skipped.append(f"{rm.name}: {exc}")
                return
            rep.models_added.append(mid)
        _link(session, reg, key, "model", mid, {"name": rm.name})
    labels: dict[str, str] = {}  # MLflow version -> our label, for versions in the store
    for mv in versions:
        vkey = f"version:{rm.name}/{mv.version}"
        label = f"v{mv.version}"
        if vkey in links:
            labels[str(mv.version)] = label
            continue
        try:
            _add_version(session, client, rm, mv, mid, label, labels, adir)
        except (ComplianceError, OSError, ValueError) as exc:
            rep.skipped.append(f"{rm.name} version {mv.version}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - MLflow's own errors (artifact store unreachable...)
            rep.skipped.append(f"{rm.name} version {mv.version}: {type(exc).__name__}: {exc}")
            continue
        v = registry.get_version(session, mid, label)
        _link(session, reg, vkey, "model_version", v.id, {"sha256": v.weights_sha256, "run_id": mv.run_id})
        labels[str(mv.version)] = label
        rep.versions_added.append(f"{mid} {label}")
    # ---- deployments: what MLflow says is live now, against the store
    alias_at = _ms(rm.last_updated_timestamp)
    live = {}
    aliased = {str(v) for a, v in (getattr(rm, "aliases", None) or {}).items() if a in aliases}
    for mv in versions:
        on_alias = str(mv.version) in aliased or bool(set(mv.aliases or []) & set(aliases))
        on_stage = (mv.current_stage or "") in stages
        if on_alias or on_stage:
            live[str(mv.version)] = _ms(mv.last_updated_timestamp) if on_stage else alias_at
    changes = []
    for mv in versions:
        label = labels.get(str(mv.version))
        if label is None:
            continue
        v = registry.get_version(session, mid, label)
        t_live = live.get(str(mv.version))
        is_live = registry.deployed_at(session, v.id, now)
        if t_live is not None and not is_live:
            changes.append((min(t_live, now), "deploy", label, v.id))
        elif t_live is None and is_live:
            t = _ms(mv.last_updated_timestamp) if (mv.current_stage or "None") not in ("None", *stages) else alias_at
            changes.append((min(max(t, _ms(mv.creation_timestamp)), now), "retire", label, v.id))
    for t, action, label, vid in sorted(changes, key=lambda c: (c[0], c[1] != "retire")):
        try:
            e = getattr(registry, action)(session, mid, label, at=t)
        except ComplianceError as exc:
            rep.skipped.append(f"{mid} {label} {action} at {t.isoformat()}: {exc}")
            continue
        _link(session, reg, f"{action}:{rm.name}/{label}@{int(t.timestamp() * 1000)}", "deployment_event", e["id"],
              {"action": action, "at": t.isoformat()})
        rep.events.append(f"{action} {mid} {label} at {t.isoformat()}")


def _add_version(session, client, rm, mv, mid: str, label: str, labels: dict, adir: Path) -> None:
    run = client.get_run(mv.run_id) if mv.run_id else None
    weights = _weights_file(client.tracking_uri, mv, adir / mid / label)
    window = (None, None)
    dw = _param(run, "data_window")
    if dw:
        window = parse_window(dw, what="data_window")
    elif _param(run, "data_window_start") and _param(run, "data_window_end"):
        window = parse_window(f"{_param(run, 'data_window_start')}..{_param(run, 'data_window_end')}",
                              what="data_window")
    ta = _param(run, "trained_at")
    trained = parse_datetime(ta, what="trained_at") if ta else (_ms(run.info.end_time) if run and run.info.end_time
                                                                 else None)
    parent_n = (mv.tags or {}).get("compliance.parent")
    if parent_n is not None:
        parent = labels.get(str(parent_n))
        if parent is None:
            raise InputError(f"parent version {parent_n} is not in the store")
    else:
        earlier = [int(n) for n in labels if int(n) < int(mv.version)]
        parent = labels[str(max(earlier))] if earlier else None
    registry.add_version(session, mid, label, weights=weights, trained_at=trained, data_window=window, parent=parent)


def mlflow_version_of(session: Session, version_id: int) -> tuple[str, str, str] | None:
    """(tracking uri, registered model name, MLflow version) a store version was synced from."""
    row = session.scalars(select(RegistryLink).where(RegistryLink.entity_type == "model_version",
                                                     RegistryLink.entity_id == str(version_id),
                                                     RegistryLink.registry_uri.like("mlflow:%"))).first()
    if row is None:
        return None
    name, _, number = row.external_key.removeprefix("version:").rpartition("/")
    return row.registry_uri.removeprefix("mlflow:"), name, number


def write_gate_tags(tracking_uri: str, name: str, version: str, decision: dict) -> dict[str, Any]:
    """The gate's decision as tags on the MLflow model version (the only write to MLflow)."""
    client = _client(tracking_uri)
    tags = {"compliance.gate": decision["decision"], "compliance.gate_decision_id": str(decision["id"]),
            "compliance.gate_at": decision["recorded_at"], "compliance.gate_by": decision["actor"],
            "compliance.gate_reasons": "; ".join(decision["reasons"])[:4000] or "—"}
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    return tags
