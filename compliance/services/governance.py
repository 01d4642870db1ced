"""Failure-mode occurrences, MRM findings and sign-off (attestation). Status changes are new
event rows pointing at the original; nothing is updated in place."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound, UsageError
from compliance.services import people
from compliance.services.analysis import detect, fm_occurrences
from compliance.services.registry import get_model, plain
from compliance.store.ledger import record, record_many
from compliance.store.models import (
    Attestation,
    Check,
    DeploymentEvent,
    FailureMode,
    FailureModeOccurrence,
    FailureModeStatusEvent,
    Finding,
    FindingEvent,
    ModelVersion,
    ReportRun,
)
from compliance.timeutil import iso

FM_STATUSES = ("mitigated", "accepted", "closed")
FINDING_STATUSES = ("open", "in_progress", "remediated", "verified", "accepted", "closed")
# Statuses that judge a finding: refused to its model's owners and developers (DESIGN §7).
JUDGING_STATUSES = ("verified", "accepted", "closed")
SEVERITIES = ("low", "medium", "high", "critical")
DECISIONS = ("approve", "approve_with_conditions", "reject")


# ------------------------------------------------------------------ failure modes
def detect_failure_modes(session: Session, at: datetime) -> list[dict]:
    """Open an occurrence for every detection whose cause has none yet (idempotent)."""
    known = set(session.scalars(select(FailureModeOccurrence.cause_key)))
    from compliance.services.gate import ungated_detections
    from compliance.services.plans import missed_detections

    found = detect(session, at) + missed_detections(session, at) + ungated_detections(session, at)
    new = list({d.cause_key: d for d in reversed(found) if d.cause_key not in known}.values())[::-1]
    labels = {vid: f"{m} {label}" for vid, m, label in session.execute(
        select(ModelVersion.id, ModelVersion.model_id, ModelVersion.label))}
    why = _check_reasons(session, [d.check_id for d in new if d.cause_key == f"{d.code}:check={d.check_id}"])
    occs = record_many(session, [FailureModeOccurrence(code=d.code, cause_key=d.cause_key, model_id=d.model_id,
                                                       version_id=d.version_id, artifact_id=d.artifact_id,
                                                       check_id=d.check_id,
                                                       detail=_readable(d.detail, labels) + why.get(d.check_id, ""),
                                                       detected_at=at)
                                 for d in new])
    record_many(session, [FailureModeStatusEvent(occurrence_id=o.id, status="open", rationale="detected automatically")
                          for o in occs])
    close_retired_occurrences(session, at)
    opened = [plain(o) for o in occs]
    if opened:  # the outbox, in this transaction: delivered after the commit (services.alerts)
        from compliance.services.alerts import occurrence_alerts

        cat = {f.code: (f.title, f.severity) for f in session.scalars(select(FailureMode))}
        occurrence_alerts(session, [o for o in opened if o["version_id"] not in retired_version_ids(session, at)], cat)
    return opened


def _check_reasons(session: Session, check_ids: list[int]) -> dict[int, str]:
    """``": <reasons>"`` of each check that opened an occurrence, its fail reasons first, so the
    register names what was found (e.g. the attribute and ratio of a fairness fail), not only where."""
    if not check_ids:
        return {}
    out = {}
    for cid, reasons in session.execute(select(Check.id, Check.reasons).where(Check.id.in_(set(check_ids)))):
        rs = [str(r) for r in reasons or []]
        rs = [r for r in rs if r.startswith("fail")] or rs
        if rs:
            text = "; ".join(rs)
            out[cid] = ": " + (text if len(text) <= 240 else text[:239] + "…")
    return out


SYSTEM_ACTOR = "system"
RETIRED_RATIONALE = "version retired"


def retired_version_ids(session: Session, at: datetime) -> set[int]:
    """Versions that were deployed at some time up to ``at`` and are not deployed at ``at``
    (the last deployment event in force decides, as in the analysis)."""
    rows = session.execute(select(DeploymentEvent.version_id, DeploymentEvent.action)
                           .where(DeploymentEvent.recorded_at <= at, DeploymentEvent.effective_at <= at)
                           .order_by(DeploymentEvent.version_id, DeploymentEvent.effective_at,
                                     DeploymentEvent.recorded_at, DeploymentEvent.id)).all()
    last: dict[int, str] = {}
    for vid, action in rows:
        last[vid] = action
    return {vid for vid, action in last.items() if action == "retire"}


def close_retired_occurrences(session: Session, at: datetime) -> list[int]:
    """DESIGN §6: an occurrence tied to a version that is no longer deployed is closed by the
    system with the rationale "version retired" (a ledger event by actor ``system``)."""
    retired = retired_version_ids(session, at)
    if not retired:
        return []
    todo = [o["id"] for o in fm_occurrences(session) if o["status"] == "open" and o["version_id"] in retired]
    if not todo:
        return []
    actor = session.info.get("actor")
    session.info["actor"] = SYSTEM_ACTOR
    try:
        record_many(session, [FailureModeStatusEvent(occurrence_id=i, status="closed", rationale=RETIRED_RATIONALE)
                              for i in todo])
    finally:
        session.info["actor"] = actor
    return todo


_VERSION_REF = re.compile(r"\bversion (\d+)\b")


def _readable(detail: str, labels: dict[int, str]) -> str:
    """The analysis names versions by store id; a validator reads 'retail-pd v3'."""
    return _VERSION_REF.sub(lambda m: f"version {labels.get(int(m.group(1)), m.group(1))}", detail)


def list_failure_modes(session: Session, *, open_only: bool = False, as_of: datetime | None = None) -> list[dict]:
    catalog = {f.code: f for f in session.scalars(select(FailureMode))}
    out = []
    for o in fm_occurrences(session, as_of):
        if open_only and o["status"] != "open":
            continue
        fm = catalog.get(o["code"])
        o.update(title=fm.title if fm else o["code"], severity=fm.severity if fm else "")
        out.append(o)
    return out


def catalog(session: Session) -> list[dict]:
    return [plain(f) for f in session.scalars(select(FailureMode).order_by(FailureMode.code))]


def update_failure_mode(session: Session, occurrence_id: int, *, status: str, rationale: str) -> dict:
    if status not in FM_STATUSES:
        raise UsageError(f"status must be one of {', '.join(FM_STATUSES)}")
    if not rationale or not rationale.strip():
        raise UsageError("a rationale is required for every status change")
    if status == "accepted":  # an acceptance: segregation of duties applies (services.acceptance)
        from compliance.services.acceptance import accept_occurrence

        return accept_occurrence(session, occurrence_id, rationale=rationale)
    occ = session.get(FailureModeOccurrence, occurrence_id)
    if occ is None:
        raise NotFound(f"unknown failure-mode occurrence {occurrence_id}")
    last = session.scalars(select(FailureModeStatusEvent).where(FailureModeStatusEvent.occurrence_id == occurrence_id)
                           .order_by(FailureModeStatusEvent.id.desc()).limit(1)).first()
    if last is not None and last.status == "closed":
        raise Conflict(f"occurrence {occurrence_id} is closed")
    ev = record(session, FailureModeStatusEvent(occurrence_id=occurrence_id, status=status, rationale=rationale.strip()))
    return plain(ev)


# ------------------------------------------------------------------ findings
def add_finding(session: Session, *, model_id: str, severity: str, title: str, owner: str, due: date,
                description: str | None = None) -> dict:
    get_model(session, model_id)
    if severity not in SEVERITIES:
        raise UsageError(f"severity must be one of {', '.join(SEVERITIES)}")
    if not title.strip() or not owner.strip():
        raise UsageError("title and owner must not be empty")
    f = record(session, Finding(model_id=model_id, title=title.strip(), severity=severity, owner=owner.strip(),
                                due_date=due, description=description))
    record(session, FindingEvent(finding_id=f.id, status="open", note="raised"))
    return dict(plain(f), status="open")


def list_findings(session: Session, *, open_only: bool = False, overdue_at: date | None = None,
                  as_of: datetime | None = None) -> list[dict]:
    q = select(Finding).order_by(Finding.id)
    e = select(FindingEvent).order_by(FindingEvent.id)
    if as_of is not None:
        q, e = q.where(Finding.recorded_at <= as_of), e.where(FindingEvent.recorded_at <= as_of)
    last: dict[int, FindingEvent] = {}
    for ev in session.scalars(e):
        last[ev.finding_id] = ev
    out = []
    for f in session.scalars(q):
        ev = last.get(f.id)
        status = ev.status if ev else "open"
        is_open = status not in ("closed", "accepted", "remediated", "verified")
        if open_only and not is_open:
            continue
        if overdue_at is not None and not (is_open and f.due_date < overdue_at):
            continue
        out.append(dict(plain(f), status=status, status_note=ev.note if ev else "", is_open=is_open))
    return out


def update_finding(session: Session, finding_id: int, *, status: str, note: str) -> dict:
    if status not in FINDING_STATUSES:
        raise UsageError(f"status must be one of {', '.join(FINDING_STATUSES)}")
    if not note or not note.strip():
        raise UsageError("a note is required for every status change")
    f = session.get(Finding, finding_id)
    if f is None:
        raise NotFound(f"unknown finding {finding_id}")
    if status in JUDGING_STATUSES:
        people.refuse_conflicted(session, [f.model_id], f"mark finding {finding_id} {status}")
    if status == "verified":
        people.require_reviewer(session, [f.model_id], f"verifying finding {finding_id}")
    if status == "closed":
        last = session.scalars(select(FindingEvent).where(FindingEvent.finding_id == finding_id)
                               .order_by(FindingEvent.id.desc()).limit(1)).first()
        if last is None or last.status != "verified":
            raise Conflict(f"finding {finding_id} is closed only after a validator verifies it "
                           f"(status {last.status if last else 'open'}; `finding update {finding_id} --status verified`)")
    return plain(record(session, FindingEvent(finding_id=finding_id, status=status, note=note.strip())))


# ------------------------------------------------------------------ attestation
def signoff(session: Session, report_id: str, *, decision: str, role: str | None = None,
            comment: str | None = None, key: Path | None = None, passphrase: str | None = None) -> dict:
    """Sign off a report run (DESIGN §7). The reviewer is the authenticated person; they hold the
    validator or approver role (globally or on every model in scope) and own or develop none of
    them. ``approve`` after an ``approve_with_conditions`` on the same evidence needs a second,
    distinct person (four eyes). The attestation is bound to the run's context hash; with ``key``
    it is signed (Ed25519) over (report id, context hash, decision, comment, time)."""
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}")
    run = session.get(ReportRun, report_id)
    if run is None:
        raise NotFound(f"unknown report {report_id!r} (see `compliance report list`)")
    scope = sorted(run.scope or [])
    reviewer = people.refuse_conflicted(session, scope, f"sign off {report_id}")
    people.require_reviewer(session, scope, "a sign-off")
    if role is not None and role not in ("validator", "approver"):
        raise UsageError("--role is the reviewer role the sign-off is made in: validator or approver")
    if role is not None:
        people.require_reviewer(session, scope, f"a sign-off as {role}", roles=(role,))
    if decision == "approve_with_conditions" and not (comment or "").strip():
        raise UsageError("approve_with_conditions needs a --comment stating the conditions")
    earlier = session.scalars(select(Attestation).where(Attestation.context_sha256 == run.context_sha256)
                              .order_by(Attestation.id)).all()
    if decision == "approve" and any(a.decision == "approve_with_conditions" for a in earlier):
        conditional = {a.reviewer for a in earlier if a.decision == "approve_with_conditions"}
        if conditional == {reviewer}:
            raise Conflict(f"four eyes: {reviewer} approved this evidence with conditions; the final approval "
                           "needs a second, distinct person")
    signed_at = iso(session.info["clock"]())
    sig: dict = {}
    if key is not None:
        from compliance.identity.keys import attestation_fields
        from compliance.services.signing import signed_attestation

        fields = attestation_fields(report_id, run.context_sha256, decision, comment, signed_at)
        sig = signed_attestation(session, key, passphrase or "", fields)
    a = record(session, Attestation(report_run_id=report_id, reviewer=reviewer,
                                    role=role or people.reviewer_role(session, reviewer, scope), decision=decision,
                                    comment=comment, context_sha256=run.context_sha256, signed_at=signed_at, **sig))
    return plain(a)


def attestations(session: Session, report_ids: list[str] | None = None, as_of: datetime | None = None) -> list[dict]:
    q = select(Attestation).order_by(Attestation.id)
    if report_ids is not None:
        q = q.where(Attestation.report_run_id.in_(report_ids))
    if as_of is not None:
        q = q.where(Attestation.recorded_at <= as_of)
    return [plain(a) for a in session.scalars(q)]


__all__ = ["iso"]
