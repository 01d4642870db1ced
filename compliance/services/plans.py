"""Monitoring plans (DESIGN §10): set and show a model's plan, the plan in force at a time (its
own, else its tier's default from the policy), plan adherence, and ``FM-MISSED`` detections.

A plan is versioned like the policy: ``plan set`` records a new version; the latest version
recorded at or before T is in force at T. Only a plan the bank recorded opens ``FM-MISSED``; a
tier default schedules ``check run --due`` and its adherence is shown, marked as a default.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.analysis.plans import Adherence, adherence, kind_plans, normalise_plan
from compliance.errors import InputError
from compliance.policy_defaults import DEFAULT_POLICY
from compliance.safeyaml import load_yaml_file
from compliance.services.registry import get_model
from compliance.store.ledger import record
from compliance.store.models import Check, DeploymentEvent, Model, ModelVersion, MonitoringPlan
from compliance.store.raw import CHECK_COVER, on_path
from compliance.timeutil import iso


def _latest(session: Session, model_id: str, at: datetime | None) -> MonitoringPlan | None:
    q = select(MonitoringPlan).where(MonitoringPlan.model_id == model_id)
    if at is not None:
        q = q.where(MonitoringPlan.recorded_at <= at)
    return session.scalars(q.order_by(MonitoringPlan.version.desc()).limit(1)).first()


def set_plan(session: Session, model_id: str, document: dict, *, source: str) -> dict:
    """Record a new version of the model's plan (validated). The same document as the plan in
    force records nothing (an import run twice is a no-op)."""
    get_model(session, model_id)
    doc = normalise_plan(document, source)
    cur = _latest(session, model_id, None)
    if cur is not None and cur.document == doc:
        return dict(_view(cur), unchanged=True)
    p = record(session, MonitoringPlan(model_id=model_id, version=(cur.version + 1) if cur else 1, document=doc,
                                       source=source[:300]))
    return dict(_view(p), unchanged=False)


def set_plan_file(session: Session, model_id: str, path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"plan file not found: {p}")
    return set_plan(session, model_id, load_yaml_file(p) or {}, source=p.name)


def _view(p: MonitoringPlan) -> dict:
    return {"model_id": p.model_id, "version": p.version, "explicit": True, "source": p.source,
            "since": iso(p.recorded_at), "recorded_by": p.actor, "document": p.document}


def default_plan(policy: dict, tier: int) -> dict:
    tiers = policy.get("monitoring")
    if not isinstance(tiers, dict):  # a policy from before 0009: the code's defaults
        tiers = DEFAULT_POLICY["monitoring"]
    return normalise_plan(tiers.get(str(tier)) or {}, f"policy monitoring.{tier}")


def plan_in_force(session: Session, model_id: str, at: datetime, *, policy: dict | None = None,
                  tier: int | None = None) -> dict:
    """The model's own plan at ``at``, else its tier's default from the policy in force."""
    from compliance.services.policy import policy_record_at

    p = _latest(session, model_id, at)
    if p is not None:
        return _view(p)
    if tier is None:
        tier = get_model(session, model_id).tier
    rec = None
    if policy is None:
        rec = policy_record_at(session, at)
        policy = rec["document"]
    return _default_view(model_id, tier, iso(rec["recorded_at"]) if rec and rec.get("recorded_at") else None,
                         default_plan(policy, tier))


def _default_view(model_id: str, tier: int, since: str | None, document: dict) -> dict:
    """The view of a tier's default plan (``_view``'s shape for a plan the bank did not record)."""
    return {"model_id": model_id, "version": None, "explicit": False, "source": f"policy default for tier {tier}",
            "since": since, "recorded_by": None, "document": document}


def plans_in_force(session: Session, model_ids, at: datetime, *, policy: dict,
                   tiers: dict[str, int]) -> dict[str, dict]:
    """:func:`plan_in_force` with ``policy`` given, for many models in one query (the models' own
    latest plans), not one per model."""
    wanted = set(model_ids)
    own: dict[str, MonitoringPlan] = {}
    for p in session.scalars(select(MonitoringPlan).where(MonitoringPlan.recorded_at <= at)
                             .order_by(MonitoringPlan.model_id, MonitoringPlan.version)):
        if p.model_id in wanted:
            own[p.model_id] = p  # ordered by version: the last one is the latest
    defaults: dict[int, dict] = {}
    out: dict[str, dict] = {}
    for m in sorted(wanted):
        if m in own:
            out[m] = _view(own[m])
        else:
            tier = tiers[m]
            if tier not in defaults:
                defaults[tier] = default_plan(policy, tier)
            out[m] = _default_view(m, tier, None, defaults[tier])
    return out


def show_plan(session: Session, model_id: str, at: datetime) -> dict:
    m = get_model(session, model_id)
    out = plan_in_force(session, model_id, at, tier=m.tier)
    out["tier"] = m.tier
    out["history"] = [{"version": p.version, "since": iso(p.recorded_at), "source": p.source, "actor": p.actor}
                      for p in session.scalars(select(MonitoringPlan).where(MonitoringPlan.model_id == model_id,
                                                                            MonitoringPlan.recorded_at <= at)
                                               .order_by(MonitoringPlan.version))]
    return out


# ------------------------------------------------------------------ adherence
def _deployed_since(session: Session, at: datetime) -> dict[int, datetime]:
    """Versions deployed at ``at`` -> the effective time of the deploy in force (one query for
    the deployed versions, one for their deploy events)."""
    from compliance.services.due import deployed_versions

    ids = [v.id for v in deployed_versions(session, at)]
    out: dict[int, tuple[datetime, int]] = {}
    for i in range(0, len(ids), 5000):
        for vid, eff, eid in session.execute(select(DeploymentEvent.version_id, DeploymentEvent.effective_at,
                                                    DeploymentEvent.id).where(
                DeploymentEvent.version_id.in_(ids[i:i + 5000]), DeploymentEvent.action == "deploy",
                DeploymentEvent.effective_at <= at, DeploymentEvent.recorded_at <= at)):
            if vid not in out or (eff, eid) > out[vid]:  # the latest by (effective_at, id)
                out[vid] = (eff, eid)
    return {vid: eff for vid, (eff, _) in out.items()}


def plan_adherence(session: Session, at: datetime, model_ids: list[str] | None = None) -> list[dict]:
    """For every deployed version of every model (or those named) and every check kind of the
    plan in force: last check, next due, misses, state. Rows are plain dicts."""
    from compliance.services.corrections import corrected_ids
    from compliance.services.policy import policy_at

    policy = policy_at(session, at)
    since = _deployed_since(session, at)
    if not since:
        return []
    versions = {v.id: v for v in session.scalars(select(ModelVersion).where(ModelVersion.id.in_(list(since))))
                if model_ids is None or v.model_id in model_ids}
    tiers = dict(session.execute(select(Model.id, Model.tier)).all())
    plans = plans_in_force(session, {v.model_id for v in versions.values()}, at, policy=policy, tiers=tiers)
    kinds = sorted({kp.kind for p in plans.values() for kp in kind_plans(p["document"]) if kp.required})
    void = corrected_ids(session, "check", at)
    times: dict[tuple[int, str], list[datetime]] = {}
    ids = sorted(versions)
    for i in range(0, len(ids) if kinds else 0, 5000):
        for cid, vid, kind, fin in session.execute(on_path(
                select(Check.id, Check.version_id, Check.kind, Check.finished_at).where(
                    Check.version_id.in_(ids[i:i + 5000]), Check.kind.in_(kinds), Check.status != "error",
                    Check.finished_at <= at, Check.recorded_at <= at), CHECK_COVER)):
            if cid not in void:
                times.setdefault((vid, kind), []).append(fin)
    out = []
    for vid, dep in sorted(since.items()):
        if vid not in versions:
            continue
        v = versions[vid]
        plan = plans[v.model_id]
        plan_since = datetime.fromisoformat(plan["since"]) if plan["since"] else dep
        for kp in kind_plans(plan["document"]):
            if not kp.required:
                continue
            a: Adherence = adherence(kp, model_id=v.model_id, version_id=vid, version_label=v.label,
                                     deployed_since=dep, plan_since=plan_since, checks=times.get((vid, kp.kind), []),
                                     at=at, grace_days=int(plan["document"].get("grace_days", 1)))
            row = a.to_dict()
            row.update(model_id=v.model_id, version=v.label, cadence=kp.cadence_text(), explicit=plan["explicit"],
                       alert=plan["document"].get("alert") or {},
                       plan_version=plan["version"], data=kp.data, budget=kp.budget, reference=kp.reference)
            out.append(row)
    return out


def missed_detections(session: Session, at: datetime) -> list:
    """``FM-MISSED`` detections: a check a recorded plan required that did not run on time."""
    from compliance.analysis.failure_modes import Detection

    out = []
    for row in plan_adherence(session, at):
        if not row["explicit"]:
            continue
        for m in row["missed"]:
            out.append(Detection(code="FM-MISSED", model_id=row["model_id"], version_id=row["version_id"],
                                 artifact_id=None, check_id=None, cause_key=m["cause_key"], detail=m["detail"]))
    return out


def fidelity_every(plan: dict) -> int | None:
    """A plan's fidelity period in days (``plan``: as :func:`plan_in_force` returns it; None: no
    periodic fidelity in the plan)."""
    spec = (plan["document"].get("checks") or {}).get("fidelity") or {}
    return spec.get("every_days")


# ------------------------------------------------------------------ what the plan makes due
RUN_BY_DUE = ("data_drift", "overhead", "activation_drift")  # fidelity: services.due.due_pairs


def plan_tasks(session: Session, at: datetime) -> tuple[list[dict], list[dict]]:
    """Checks other than fidelity that the plans in force make due at ``at`` (state due or
    overdue), and those ``check run --due`` cannot run itself, with why. Fidelity stays with
    :func:`compliance.services.due.due_pairs` (per artifact), its window tightened by the plan."""
    from compliance.services.corrections import corrected_ids
    from compliance.store.models import Artifact

    tasks, not_run = [], []
    void = corrected_ids(session, "artifact", at)
    arts: dict[str, list[Artifact]] = {}
    all_arts = [a for a in session.scalars(select(Artifact).where(Artifact.recorded_at <= at).order_by(Artifact.id))
                if a.id not in void]
    replaced = {a.replaces_id for a in all_arts if a.replaces_id}
    for a in all_arts:
        if a.kind in ("sae", "transcoder", "clt") and a.id not in replaced:
            arts.setdefault(a.model_id, []).append(a)
    for row in plan_adherence(session, at):
        if row["kind"] == "fidelity" or row["state"] not in ("due", "overdue"):
            continue
        base = {"kind": row["kind"], "model_id": row["model_id"], "version": row["version"],
                "version_id": row["version_id"], "next_due": iso(row["next_due"]), "budget": row["budget"],
                "plan": "plan v%s" % row["plan_version"] if row["explicit"] else "tier default"}
        if row["kind"] not in RUN_BY_DUE:
            not_run.append({**base, "why": f"run {row['kind']} checks with `compliance check {row['kind']}`"})
        elif row["kind"] == "data_drift":
            tasks.append({**base, "artifact_id": None, "data": row["data"]})
        elif row["kind"] == "activation_drift" and not row["reference"]:
            not_run.append({**base, "why": "the plan names no reference file for activation drift"})
        else:
            members = arts.get(row["model_id"], [])
            if not members:
                not_run.append({**base, "why": f"no sae/transcoder/clt artifact registered for {row['model_id']}"})
            tasks.extend({**base, "artifact_id": a.id, "data": row["data"], "reference": row["reference"]}
                         for a in members)
    return tasks, not_run


def resolve_data(session: Session, model_id: str, spec: dict | None, every_days: int | None,
                 at: datetime) -> tuple[str | None, tuple]:
    """The current-data file a plan names: (path, stated window). None: the model's default
    (the latest production window ended by ``at``)."""
    import fnmatch

    from compliance.services.data_windows import available_at
    from compliance.store.models import Dataset

    if not spec:
        return None, (None, None)
    if "dataset" in spec:
        pat = spec["dataset"]
        rows = [d for d in session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.recorded_at <= at)
                                           .order_by(Dataset.id))
                if fnmatch.fnmatch(Path(d.path).name, pat) or fnmatch.fnmatch(d.path, pat)]
        ended = [d for d in rows if d.window_end is not None and available_at(d.window_end) <= at]
        pick = max(ended, key=lambda d: (d.window_end, d.id)) if ended else (rows[-1] if rows and all(
            d.window_end is None for d in rows) else None)
        if pick is None:
            raise InputError(f"no dataset of {model_id} matching {pat!r} whose window ended by {at.date()}")
        return pick.path, (None, None)
    from compliance.analysis.plans import period_window

    label, start, end = period_window(every_days, at)
    path = spec["path"].format(window=label, start=start.isoformat(), end=end.isoformat())
    if not Path(path).is_file():
        raise InputError(f"the plan's data file for window {label} is missing: {path}")
    return path, (start, end)
