"""Reading the ledger for people: pages of entries, the entry that recorded a row, its neighbours.

Read-only use cases for the web view (``compliance serve``); entries come back as the plain
dicts of :mod:`compliance.store.ledger` (seq, recorded_at, actor, action, entity, payload, hashes).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compliance.errors import NotFound
from compliance.store.ledger import entries_at, entry_at, head_as_of
from compliance.store.models import LedgerEntry


def ledger_page(session: Session, *, as_of: datetime, page: int = 1, per_page: int = 50,
                entity_type: str | None = None, entity_id: str | None = None, actor: str | None = None) -> dict:
    """Entries recorded at or before ``as_of``, newest first, one page at a time, with optional
    filters (exact entity type, entity id, actor)."""
    q = select(LedgerEntry.seq).where(LedgerEntry.recorded_at <= as_of)
    if entity_type:
        q = q.where(LedgerEntry.entity_type == entity_type)
    if entity_id:
        q = q.where(LedgerEntry.entity_id == entity_id)
    if actor:
        q = q.where(LedgerEntry.actor == actor)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    seqs = list(session.scalars(q.order_by(LedgerEntry.seq.desc()).offset((page - 1) * per_page).limit(per_page)))
    seq, h = head_as_of(session, as_of)
    return {"entries": sorted(entries_at(session, seqs), key=lambda e: -e["seq"]), "total": int(total or 0),
            "page": page, "per_page": per_page, "head_seq": seq, "head_hash": h,
            "entity_types": list(session.scalars(select(LedgerEntry.entity_type).distinct().order_by(LedgerEntry.entity_type)))}


def ledger_entry(session: Session, seq: int, *, around: int = 3) -> dict:
    """One entry with the ``around`` entries before and after it (the chain they form)."""
    e = entry_at(session, seq)
    if e is None:
        raise NotFound(f"no ledger entry {seq}")
    near = entries_at(session, list(range(max(1, seq - around), seq + around + 1)))
    return {"entry": e, "before": [x for x in near if x["seq"] < seq], "after": [x for x in near if x["seq"] > seq]}


def entry_seq_for(session: Session, entity_type: str, entity_id: str) -> int | None:
    """The sequence number of the ledger entry that inserted the row (None when there is none)."""
    return session.scalar(select(func.min(LedgerEntry.seq)).where(
        LedgerEntry.entity_type == entity_type, LedgerEntry.entity_id == str(entity_id)))


def head_at(session: Session, as_of: datetime) -> tuple[int, str]:
    """(seq, hash) of the last entry recorded at or before ``as_of``."""
    return head_as_of(session, as_of)


def last_recorded_at(session: Session) -> datetime | None:
    """When the last ledger entry was recorded (UTC), or None for an empty ledger."""
    from datetime import timezone

    t = session.scalar(select(LedgerEntry.recorded_at).order_by(LedgerEntry.seq.desc()).limit(1))
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t
