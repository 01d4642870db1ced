"""The pre-promotion gate (DESIGN §10): does a version have valid evidence for every required
artifact group under the policy in force, now? The decision (pass or refuse, reasons, the
evidence relied on, the policy version, who asked and when) is recorded; a refusal alerts.

*Valid* is DESIGN §4's definition read at the decision time: an artifact is valid for the version
when its latest fidelity check on that version (finished by now, not voided) is ``pass``, or
``warn`` with a validator's acceptance, and finished within ``validity_days``; an artifact set
only when every member is. ``inconclusive``, ``fail``, ``error``, an unaccepted warn, an expired
check or no check on this version (a *stale* artifact bound to an older version) refuse.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.services.policy import policy_record_at
from compliance.services.registry import get_model, get_version, version_by_id
from compliance.store.ledger import record
from compliance.store.models import Acceptance, Artifact, Check, GateDecision
from compliance.timeutil import iso


def _artifact_state(session: Session, a: Artifact, vid: int, at: datetime, since: datetime, void_checks: set,
                    accepted: set, warn_needs_acceptance: bool) -> tuple[bool, str, int | None]:
    c = session.scalars(select(Check).where(Check.kind == "fidelity", Check.artifact_id == a.id,
                                            Check.version_id == vid, Check.finished_at <= at,
                                            Check.recorded_at <= at,  # known at `at` (not a later backfill)
                                            Check.id.not_in(void_checks) if void_checks else True)
                        .order_by(Check.finished_at.desc(), Check.id.desc()).limit(1)).first()
    if c is None:
        bound = version_by_id(session, a.bound_version_id).label
        return False, f"{a.id} ({a.kind}) has no fidelity check on this version (stale: bound to {bound})", None
    when = c.finished_at.date().isoformat()
    if c.finished_at < since:
        return False, f"{a.id}: its latest check on this version ({c.id}, {when}) has expired", c.id
    if c.status == "pass" or (c.status == "warn" and (not warn_needs_acceptance or c.id in accepted)):
        return True, f"{a.id}: check {c.id} {c.status} on {when}", c.id
    if c.status == "warn":
        return False, f"{a.id}: check {c.id} warned on {when} and no validator has accepted it", c.id
    return False, f"{a.id}: latest check {c.id} on this version is {c.status} ({when})", c.id


def evaluate(session: Session, model_id: str, label: str, at: datetime) -> dict:
    """The gate's answer at ``at`` without recording it."""
    from compliance.services.corrections import corrected_ids

    m = get_model(session, model_id)
    v = get_version(session, model_id, label)
    pol = policy_record_at(session, at)
    from compliance.policy_defaults import policy_for_tier

    doc = policy_for_tier(pol["document"], m.tier)
    groups = (doc.get("required_groups") or {}).get(str(m.tier)) or []
    first_day = at.astimezone(timezone.utc).date() - timedelta(days=int(doc.get("validity_days", 90)))
    since = datetime.combine(first_day, time.min, tzinfo=timezone.utc)
    void_a, void_c = corrected_ids(session, "artifact", at), corrected_ids(session, "check", at)
    accepted = set(session.scalars(select(Acceptance.check_id).where(Acceptance.check_id.is_not(None),
                                                                     Acceptance.recorded_at <= at))) - {None}
    arts = [a for a in session.scalars(select(Artifact).where(Artifact.model_id == model_id, Artifact.recorded_at <= at)
                                       .order_by(Artifact.id)) if a.id not in void_a]
    reasons, evidence = [], {}
    for g in groups:
        name = " or ".join(g)
        cands = [a for a in arts if a.kind in g]
        if not cands:
            reasons.append(f"required group {name}: no artifact registered (missing)")
            continue
        units: dict[str, list[Artifact]] = {}
        for a in cands:
            units.setdefault(a.set_id or a.id, []).append(a)
        ok, why = None, []
        for unit, members in units.items():
            states = [_artifact_state(session, a, v.id, at, since, void_c, accepted,
                                      bool(doc.get("warn_needs_acceptance", True))) for a in members]
            if all(s[0] for s in states):
                ok = {"unit": unit, "artifacts": [a.id for a in members], "checks": [s[2] for s in states]}
                break
            why += [s[1] for s in states if not s[0]]
        if ok is None:
            reasons.append(f"required group {name}: no valid artifact — " + "; ".join(why))
        else:
            evidence[name] = ok
    reasons_note = [] if groups else [f"tier {m.tier} requires no artifact group: nothing to gate"]
    return {"model_id": model_id, "version": label, "version_id": v.id, "decision": "refuse" if reasons else "pass",
            "reasons": reasons, "notes": reasons_note, "evidence": evidence, "policy_version": pol["version"],
            "at": iso(at)}


def gate(session: Session, model_id: str, label: str) -> dict:
    """Decide and record; a refusal writes a ``gate_refused`` alert in the same transaction."""
    at = session.info["clock"]()
    out = evaluate(session, model_id, label, at)
    g = record(session, GateDecision(model_id=model_id, version_id=out["version_id"], decision=out["decision"],
                                     reasons=out["reasons"], evidence=out["evidence"],
                                     policy_version=int(out["policy_version"])))
    out.update(id=g.id, actor=g.actor, recorded_at=iso(g.recorded_at))
    if out["decision"] == "refuse":
        from compliance.services.alerts import enqueue

        enqueue(session, "gate_refused", f"gate:{g.id}", model_id=model_id,
                subject=f"gate refused {model_id} {label}: {len(out['reasons'])} reason(s)",
                payload={"gate_decision_id": g.id, "version": label, "reasons": out["reasons"]})
    return out


def latest_pass(session: Session, version_id: int, at: datetime) -> GateDecision | None:
    return session.scalars(select(GateDecision).where(GateDecision.version_id == version_id,
                                                      GateDecision.decision == "pass", GateDecision.recorded_at <= at)
                           .order_by(GateDecision.id.desc()).limit(1)).first()


def ungated_detections(session: Session, at: datetime) -> list:
    """``FM-UNVALIDATED`` for a deploy recorded by a registry sync (a promotion managed in the
    registry, where the gate is the control) of a version of an in-scope model with no passing gate
    decision recorded at or before it. Same key as the evidence rule of the analysis (one cause: the
    deploy), so a deploy both ungated and unevidenced opens one occurrence."""
    import pandas as pd

    from compliance.analysis.failure_modes import Detection
    from compliance.services.corrections import corrected_ids
    from compliance.store.models import DeploymentEvent, Model, ModelVersion, RegistryLink

    synced = {int(e) for e in session.scalars(select(RegistryLink.entity_id).where(
        RegistryLink.entity_type == "deployment_event", RegistryLink.recorded_at <= at))}
    if not synced:
        return []
    void = corrected_ids(session, "deployment", at)
    pol = policy_record_at(session, at)["document"]
    groups = pol.get("required_groups") or {}
    out = []
    for e, v, m in session.execute(select(DeploymentEvent, ModelVersion, Model)
                                   .join(ModelVersion, ModelVersion.id == DeploymentEvent.version_id)
                                   .join(Model, Model.id == ModelVersion.model_id)
                                   .where(DeploymentEvent.id.in_(synced), DeploymentEvent.action == "deploy",
                                          DeploymentEvent.effective_at <= at, DeploymentEvent.recorded_at <= at)):
        if e.id in void or not groups.get(str(m.tier)):
            continue
        if latest_pass(session, v.id, e.effective_at) is not None:
            continue
        when = pd.Timestamp(e.effective_at).tz_convert("UTC").isoformat()
        out.append(Detection("FM-UNVALIDATED", m.id, v.id, None, None, f"FM-UNVALIDATED:version={v.id}:deployed={when}",
                             f"version {v.id} went live at {when} (registry) with no passing pre-promotion gate "
                             "decision"))
    return out
