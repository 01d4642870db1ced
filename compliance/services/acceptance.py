"""Acceptances (DESIGN §2/§4): a validator accepts one ``warn`` check, or a failure-mode occurrence,
with a rationale. Segregation of duties: nobody accepts the evidence about their own model.

Until identities are authenticated (a later issue), "who" is the actor name of the session:

- the model's **owner** is ``model.owner``;
- a **developer** of the model is an actor who recorded any version or artifact of it.

Neither may accept; the attempt is refused with one line and nothing is written.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound, UsageError
from compliance.services.registry import get_model, plain
from compliance.store.ledger import record
from compliance.store.models import (
    Acceptance,
    Artifact,
    Check,
    FailureModeOccurrence,
    FailureModeStatusEvent,
    ModelVersion,
)

# Check kinds whose warn may be accepted: the fidelity of an artifact (SAE, transcoder, CLT,
# probe, attribution baseline) -- evidence that an explanation is good enough with a caveat.
ACCEPTABLE_KINDS = ("fidelity",)


def developers(session: Session, model_id: str) -> set[str]:
    """Actors who recorded a version or an artifact of the model."""
    return set(session.scalars(select(ModelVersion.actor).where(ModelVersion.model_id == model_id))) | \
        set(session.scalars(select(Artifact.actor).where(Artifact.model_id == model_id)))


def _refuse_own(session: Session, model_id: str, what: str) -> str:
    actor = session.info["actor"]
    m = get_model(session, model_id)
    if actor == m.owner:
        raise Conflict(f"segregation of duties: {actor} owns {model_id} and cannot accept {what}")
    if actor in developers(session, model_id):
        raise Conflict(f"segregation of duties: {actor} is a developer of {model_id} (recorded a version or "
                       f"artifact of it) and cannot accept {what}")
    return actor


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
