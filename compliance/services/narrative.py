"""The validator's narrative of a quarter: conclusion and rating, limitations and use
restrictions, conditions, compensating controls. Written through the ledger, versioned (a new
row per change; the latest at a pack's as-of is printed), attributed to the authenticated actor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.analysis.calendar import parse_quarter
from compliance.errors import NotFound, UsageError
from compliance.services import people
from compliance.store.ledger import record
from compliance.store.models import Model, Narrative

SECTIONS = ("conclusion", "limitations", "conditions", "controls")
RATINGS = ("fit", "fit with conditions", "not fit")
MAX_CHARS = 20_000


def set_narrative(session: Session, quarter: str, section: str, text: str, *, model_id: str | None = None,
                  rating: str | None = None) -> dict:
    """Record a new version of one section. The narrative is the second line's judgement, under
    the segregation-of-duties rules of :mod:`compliance.services.people`: the author (the actor)
    may not be conflicted on the model (its owner or developer; for the portfolio narrative, on
    any model) and needs the ``validator`` or ``approver`` role on it (for the portfolio, on every
    model: a global grant covers them all)."""
    q = str(parse_quarter(quarter))
    if section not in SECTIONS:
        raise UsageError(f"--section must be one of {', '.join(SECTIONS)}")
    if rating is not None and rating not in RATINGS:
        raise UsageError(f"--rating must be one of {', '.join(RATINGS)}")
    if rating is not None and section != "conclusion":
        raise UsageError("a --rating goes with the conclusion section")
    text = (text or "").strip()
    if not text:
        raise UsageError("the narrative text is empty")
    if len(text) > MAX_CHARS:
        raise UsageError(f"the narrative text is {len(text):,} characters; at most {MAX_CHARS:,}")
    if model_id is not None:
        if session.get(Model, model_id) is None:
            raise NotFound(f"unknown model {model_id!r}")
        scope = [model_id]
    else:
        scope = list(session.scalars(select(Model.id).order_by(Model.id)))
    what = "write the validator's narrative" + (f" of {model_id}" if model_id else " of the portfolio")
    people.refuse_conflicted(session, scope, what)
    people.require_reviewer(session, scope, "the validator's narrative")
    n = record(session, Narrative(quarter=q, model_id=model_id, section=section, text=text, rating=rating))
    version = len(_versions(session, q, model_id, section, None))
    return {"id": n.id, "quarter": q, "model_id": model_id, "section": section, "rating": rating,
            "author": n.actor, "recorded_at": n.recorded_at.isoformat(), "version": version}


def _versions(session: Session, quarter: str, model_id: str | None, section: str, as_of: datetime | None) -> list[Narrative]:
    q = select(Narrative).where(Narrative.quarter == quarter, Narrative.section == section,
                                Narrative.model_id.is_(None) if model_id is None else Narrative.model_id == model_id)
    if as_of is not None:
        q = q.where(Narrative.recorded_at <= as_of)
    return list(session.scalars(q.order_by(Narrative.recorded_at, Narrative.id)))


def narratives_at(session: Session, quarter: str, as_of: datetime, model_ids: list[str] | None = None) -> list[dict]:
    """The latest version of every section at ``as_of``: portfolio sections (model null) and,
    for ``model_ids``, each model's. Each carries its author, date and version number."""
    q = str(parse_quarter(quarter))
    rows = session.scalars(select(Narrative).where(Narrative.quarter == q, Narrative.recorded_at <= as_of)
                           .order_by(Narrative.recorded_at, Narrative.id)).all()
    latest: dict[tuple, tuple[Narrative, int]] = {}
    for r in rows:
        if r.model_id is not None and (model_ids is None or r.model_id not in model_ids):
            continue
        key = (r.model_id, r.section)
        latest[key] = (r, latest[key][1] + 1 if key in latest else 1)
    order = {s: i for i, s in enumerate(SECTIONS)}
    out = [{"model_id": r.model_id, "section": r.section, "text": r.text, "rating": r.rating, "author": r.actor,
            "date": r.recorded_at.date().isoformat(), "version": v, "id": r.id}
           for r, v in latest.values()]
    out.sort(key=lambda d: (d["model_id"] is not None, d["model_id"] or "", order[d["section"]]))
    return out
