"""`compliance import MANIFEST.yaml`: a whole inventory in one transaction, all or nothing.

Layout (paths are relative to the manifest file)::

    format: compliance-manifest/1
    models:      [{id, name, owner, tier, use, tags?, adapter?}]
    versions:    [{model, version, weights, trained_at?, data_window?, parent?}]
    deployments: [{model, version, action: deploy|retire, at}]
    artifacts:   [{id, model, kind, bound_version, path, hook?, hook_out?, labels?, replaces?}]
    datasets:    [{model, path, window?, role?, columns?: {input: [..], target: [..], ...}, version?}]
    plans:       [{model, plan: {checks: ..., alert: ...} | file: plans/model.yaml}]   (monitoring plans)

Every entry is validated before anything is written; an error names the section, the entry
(by index and id) and the field. Extra keys used by the demo replay (``registered_at``) are
allowed and ignored here: an import records everything now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from compliance.safeyaml import load_yaml_file
from compliance.errors import ComplianceError, InputError
from compliance.services import registry
from compliance.timeutil import parse_datetime, parse_window

SECTIONS = {
    "models": ({"id", "name", "owner", "tier", "use"}, {"tags", "adapter"}),
    "versions": ({"model", "version", "weights"}, {"trained_at", "data_window", "parent"}),
    "deployments": ({"model", "version", "action", "at"}, set()),
    "artifacts": ({"id", "model", "kind", "bound_version", "path"}, {"hook", "hook_out", "labels", "replaces", "registered_at"}),
    "datasets": ({"model", "path"}, {"window", "role", "columns", "version"}),
    "plans": ({"model"}, {"plan", "file"}),
}


def load_manifest(path: str | Path) -> tuple[dict[str, Any], Path]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"manifest not found: {p}")
    doc = load_yaml_file(p, json_ok=True)
    if not isinstance(doc, dict):
        raise InputError(f"{p.name}: expected a mapping with sections {', '.join(SECTIONS)}")
    fmt = doc.get("format", "compliance-manifest/1")
    if fmt != "compliance-manifest/1":
        raise InputError(f"{p.name}: unsupported format {fmt!r} (expected compliance-manifest/1)")
    unknown = set(doc) - set(SECTIONS) - {"format"}
    if unknown:
        raise InputError(f"{p.name}: unknown section(s) {', '.join(sorted(unknown))}")
    for section, (required, optional) in SECTIONS.items():
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            raise InputError(f"{p.name}: section {section!r} must be a list")
        allowed = required | optional
        for i, entry in enumerate(entries):
            if type(entry) is dict and required <= entry.keys() and entry.keys() <= allowed:
                continue  # the common case, checked without building a label
            label = f"{section}[{i}]"
            if not isinstance(entry, dict):
                raise InputError(f"{p.name}: {label} must be a mapping")
            ident = entry.get("id") or entry.get("version") or entry.get("path")
            if ident:
                label += f" ({ident})"
            missing = required - set(entry)
            if missing:
                raise InputError(f"{p.name}: {label} is missing field {sorted(missing)[0]!r}")
            extra = set(entry) - required - optional
            if extra:
                raise InputError(f"{p.name}: {label} has unknown field {sorted(extra)[0]!r}")
        doc[section] = entries
    return doc, p.parent


def import_manifest(session: Session, path: str | Path, *, bulk: bool = True) -> dict[str, int]:
    """Import a manifest in the caller's transaction. ``bulk`` (the default): models, versions and
    deployments go through :mod:`compliance.services.bulk_import` (same checks, rows and ledger
    entries, written in batches); ``bulk=False``: the row-by-row path, one service call per entry."""
    if not bulk:
        return _import(session, path, bulk=False)
    from compliance.runtime import gc_paused
    from compliance.services.bulk_import import page_cache
    from compliance.store.ledger import background_writes

    with gc_paused(), page_cache(session), background_writes(session):
        return _import(session, path, bulk=True)


def _import(session: Session, path: str | Path, *, bulk: bool) -> dict[str, int]:
    doc, base = load_manifest(path)
    name = Path(path).name
    counts = {k: 0 for k in SECTIONS}

    def rel(value: Any) -> Path:
        q = Path(str(value))
        return q if q.is_absolute() else base / q

    def label(section: str, i: int) -> str:
        e = doc[section][i]
        ident = e.get("id") or e.get("version") or e.get("path") or ""
        return f"{name}: {section}[{i}] {ident}"

    def run(section: str, i: int, entry: dict, fn) -> None:
        try:
            fn()
        except ComplianceError as exc:
            raise type(exc)(f"{label(section, i)}: {exc}") from None
        counts[section] += 1

    def model_args(e: dict) -> dict:
        return dict(model_id=str(e["id"]), name=str(e["name"]), owner=str(e["owner"]), tier=_int(e["tier"], "tier"),
                    use=str(e["use"]), tags=[str(t) for t in (e.get("tags") or [])], adapter=e.get("adapter"))

    def version_args(e: dict) -> dict:
        return dict(model_id=str(e["model"]), label=str(e["version"]), weights=rel(e["weights"]),
                    trained_at=parse_datetime(e["trained_at"], what="trained_at") if e.get("trained_at") else None,
                    data_window=parse_window(e.get("data_window"), what="data_window"),
                    parent=str(e["parent"]) if e.get("parent") else None)

    deployments = sorted(enumerate(doc["deployments"]), key=lambda ie: parse_datetime(ie[1]["at"], what="at"))
    for i, e in deployments:
        if e["action"] not in ("deploy", "retire"):
            raise InputError(f"{name}: deployments[{i}] field 'action' must be deploy or retire, got {e['action']!r}")
    if bulk:
        _bulk_sections(session, doc, counts, deployments, label, rel, model_args, version_args)
    else:
        for i, e in enumerate(doc["models"]):
            run("models", i, e, lambda e=e: registry.add_model(session, **model_args(e)))
        for i, e in enumerate(doc["versions"]):
            run("versions", i, e, lambda e=e: registry.add_version(session, **version_args(e)))
        for i, e in deployments:
            fn = registry.deploy if e["action"] == "deploy" else registry.retire
            run("deployments", i, e, lambda e=e, fn=fn: fn(session, str(e["model"]), str(e["version"]),
                                                           at=parse_datetime(e["at"], what="at")))
    for i, e in enumerate(doc["artifacts"]):
        run("artifacts", i, e, lambda e=e: registry.add_artifact(
            session, str(e["model"]), kind=str(e["kind"]), bound_version=str(e["bound_version"]),
            path=rel(e["path"]), hook=e.get("hook"), hook_out=e.get("hook_out"),
            labels=rel(e["labels"]) if e.get("labels") else None, artifact_id=str(e["id"]),
            replaces=e.get("replaces")))
    for i, e in enumerate(doc["datasets"]):
        run("datasets", i, e, lambda e=e: registry.add_dataset(
            session, str(e["model"]), path=rel(e["path"]), role=str(e.get("role") or "production"),
            window=parse_window(e.get("window"), what="window"), columns=e.get("columns"),
            version=str(e["version"]) if e.get("version") is not None else None))
    for i, e in enumerate(doc["plans"]):
        run("plans", i, e, lambda e=e: _plan(session, e, rel, name))
    if not counts["plans"]:
        del counts["plans"]  # a manifest without plans reports what it always did
    return counts


def _bulk_sections(session: Session, doc: dict, counts: dict[str, int], deployments: list, label, rel, model_args,
                   version_args) -> None:
    """Models, versions and deployments through :mod:`compliance.services.bulk_import`."""
    from compliance.services import bulk_import
    from compliance.store.ledger import locked_head, reserve_ids
    from compliance.store.models import DeploymentEvent

    locked_head(session)  # read what exists under the append lock: no other writer can add to it meanwhile
    lookup = bulk_import.Preloaded(session, [str(e["id"]) for e in doc["models"]]
                                   + [str(e["model"]) for e in doc["versions"] + doc["deployments"]])
    models = [_named(label, "models", i, lambda e=e: model_args(e)) for i, e in enumerate(doc["models"])]
    # the deployments' keys before any batch is written: on PostgreSQL the versions' batches are
    # then still going in while the deployments are checked (ledger.background_writes)
    deployment_ids = reserve_ids(session, DeploymentEvent, len(deployments))
    counts["models"] = bulk_import.add_models(session, lookup, models, lambda i: label("models", i))
    fast = bulk_import.version_rows(lookup, doc["versions"], rel)
    if fast is not None:
        counts["versions"] = bulk_import.write_versions(session, lookup, *fast, lambda i: label("versions", i))
    else:  # an entry that is not plain: entry by entry, for the exact error in the exact order
        versions = [_named(label, "versions", i, lambda e=e: version_args(e)) for i, e in enumerate(doc["versions"])]
        counts["versions"] = bulk_import.add_versions(session, lookup, versions, lambda i: label("versions", i))
    events = [(i, str(e["model"]), str(e["version"]), e["action"], parse_datetime(e["at"], what="at"))
              for i, e in deployments]
    counts["deployments"] = bulk_import.add_deployments(session, lookup, events, lambda i: label("deployments", i),
                                                        deployment_ids)


def _plan(session: Session, e: dict, rel, name: str) -> None:
    from compliance.safeyaml import load_yaml_file
    from compliance.services.plans import set_plan

    if ("plan" in e) == ("file" in e):
        raise InputError("give the plan inline (plan:) or as a file (file:), not both or neither")
    doc = e["plan"] if "plan" in e else load_yaml_file(rel(e["file"]))
    set_plan(session, str(e["model"]), doc or {}, source=f"{name}" if "plan" in e else str(e["file"]))


def _named(label, section: str, i: int, fn):
    try:
        return fn()
    except ComplianceError as exc:
        raise type(exc)(f"{label(section, i)}: {exc}") from None


def _int(value: Any, field: str) -> int:
    """An integer as written (2, "2"), never a truncated float (2.7) or a bool."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value.strip()) <= 19:
        return int(value)
    if type(value) is int and abs(value) < 2**63:
        return value
    raise InputError(f"field {field!r} must be an integer, got {value!r}")
