"""Acceptances (DESIGN §2/§4): a validator accepts one ``warn`` check, or a failure-mode occurrence,
with a rationale. Segregation of duties: nobody accepts the evidence about their own model.

"Who" is the authenticated person of the session (DESIGN §7); the rule is
``services.people.conflict``: the model's owner (``model.owner`` or an ``owner`` grant) and its
developers (a ``developer`` grant, or whoever recorded a version or artifact of it) may not
accept; the attempt is refused with one line and nothing is written (on PostgreSQL a database
trigger refuses a direct insert too).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound, UsageError
from compliance.services.people import refuse_conflicted
from compliance.services.registry import get_model, plain
from compliance.store.ledger import record
from compliance.store.models import (
    Acceptance,
    Check,
    FailureModeOccurrence,
    FailureModeStatusEvent,
)

# Check kinds whose warn may be accepted: the fidelity of an artifact (SAE, transcoder, CLT,
# probe, attribution baseline) -- evidence that an explanation is good enough with a caveat.
ACCEPTABLE_KINDS = ("fidelity",)


def _refuse_own(session: Session, model_id: str, what: str) -> str:
    get_model(session, model_id)
    return refuse_conflicted(session, [model_id], f"accept {what}")


def _rationale(text: str | None) -> str:
    if not text or not text.strip():
        raise UsageError("a rationale is required to accept")
    return text.strip()


def accept_check(session: Session, check_id: int, *, rationale: str) -> dict:
    """Accept one ``warn`` fidelity check of an artifact (it then makes the artifact valid, DESIGN §4)."""
    why = _rationale(rationale)
    c = session.get(Check, check_id)
    if c is None:
        raise NotFound(f"unknown check {check_id}")
    if c.status != "warn":
        raise Conflict(f"only a warn check can be accepted: check {check_id} is {c.status}")
    if c.kind not in ACCEPTABLE_KINDS or c.artifact_id is None:
        raise Conflict(f"only the fidelity check of an artifact can be accepted: check {check_id} is a {c.kind} check")
    _refuse_own(session, c.model_id, f"check {check_id}")
    done = session.scalars(select(Acceptance).where(Acceptance.check_id == check_id).limit(1)).first()
    if done is not None:
        raise Conflict(f"check {check_id} is already accepted (acceptance {done.id} by {done.actor})")
    return plain(record(session, Acceptance(check_id=check_id, occurrence_id=None, rationale=why)))


def accept_occurrence(session: Session, occurrence_id: int, *, rationale: str) -> dict:
    """Accept a failure-mode occurrence: an acceptance row and the occurrence's ``accepted`` status event."""
    why = _rationale(rationale)
    occ = session.get(FailureModeOccurrence, occurrence_id)
    if occ is None:
        raise NotFound(f"unknown failure-mode occurrence {occurrence_id}")
    last = session.scalars(select(FailureModeStatusEvent).where(FailureModeStatusEvent.occurrence_id == occurrence_id)
                           .order_by(FailureModeStatusEvent.id.desc()).limit(1)).first()
    if last is not None and last.status in ("closed", "accepted"):
        raise Conflict(f"occurrence {occurrence_id} is already {last.status}")
    _refuse_own(session, occ.model_id, f"occurrence {occurrence_id} ({occ.code})")
    a = record(session, Acceptance(check_id=None, occurrence_id=occurrence_id, rationale=why))
    ev = record(session, FailureModeStatusEvent(occurrence_id=occurrence_id, status="accepted", rationale=why))
    return dict(plain(a), status_event_id=ev.id, status="accepted")


def list_acceptances(session: Session, *, model_id: str | None = None) -> list[dict]:
    q = select(Acceptance).order_by(Acceptance.id)
    rows = [plain(a) for a in session.scalars(q)]
    if model_id is None:
        return rows
    checks = set(session.scalars(select(Check.id).where(Check.model_id == model_id)))
    occs = set(session.scalars(select(FailureModeOccurrence.id).where(FailureModeOccurrence.model_id == model_id)))
    return [r for r in rows if r["check_id"] in checks or r["occurrence_id"] in occs]
