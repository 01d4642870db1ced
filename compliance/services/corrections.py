"""Corrections without rewriting history: ``void`` and ``supersede`` (DESIGN §2, issue 21).

Evidence is append-only, so a mistaken record (a volume imported twice, a deployment dated
0001-01-01, a check run on the wrong file) is never edited or deleted: a ``correction`` row,
written through the ledger like every other record, says that from its ``recorded_at`` on the
record is void (or superseded by another record of the same type). Every analysis as of a time
at or after the correction leaves the record out; an analysis as of an earlier time sees the
store exactly as it was (the correction did not exist yet). The corrected record itself stays
in the store and in the evidence index, marked.

Who may correct what: today any writer whose name the ledger records (the correction carries
the actor); once roles exist ("Who did what"), voiding follows the same rules as writing the
record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound, UsageError
from compliance.store.ledger import record
from compliance.store.models import (
    Artifact,
    Base,
    Check,
    Correction,
    DecisionVolume,
    DeploymentEvent,
    Model,
    ModelVersion,
)

# The records a correction may name (the ones every analysis honours), by the name users type.
ENTITIES: dict[str, type[Base]] = {
    "model": Model,
    "version": ModelVersion,
    "deployment": DeploymentEvent,
    "artifact": Artifact,
    "check": Check,
    "volume": DecisionVolume,
}
BY_TABLE = {m.__tablename__: name for name, m in ENTITIES.items()}


def entity_model(entity: str) -> type[Base]:
    """The ORM class of a user-facing entity name (or of its table name)."""
    name = BY_TABLE.get(entity, entity)
    if name not in ENTITIES:
        raise UsageError(f"cannot correct {entity!r}: expected one of {', '.join(ENTITIES)}")
    return ENTITIES[name]


def _get(session: Session, model: type[Base], entity_id: str) -> Base:
    pk = list(model.__table__.primary_key.columns)[0]
    key: object = entity_id
    if pk.type.python_type is int:
        try:
            key = int(entity_id)
        except ValueError:
            raise UsageError(f"{BY_TABLE[model.__tablename__]} ids are integers, got {entity_id!r}") from None
    obj = session.get(model, key)
    if obj is None:
        raise NotFound(f"unknown {BY_TABLE[model.__tablename__]} {entity_id!r}")
    return obj


def corrections(session: Session, as_of: datetime | None = None) -> dict[tuple[str, str], dict]:
    """``(table, id) -> correction`` for every record corrected at or before ``as_of`` (the first
    correction of a record counts; a record cannot be corrected twice)."""
    q = select(Correction).order_by(Correction.id)
    if as_of is not None:
        q = q.where(Correction.recorded_at <= as_of)
    out: dict[tuple[str, str], dict] = {}
    for c in session.scalars(q):
        out.setdefault((c.entity_type, c.entity_id), {
            "id": c.id, "entity_type": c.entity_type, "entity_id": c.entity_id, "action": c.action,
            "replacement_id": c.replacement_id, "reason": c.reason, "actor": c.actor, "recorded_at": c.recorded_at})
    return out


def corrected_ids(session: Session, entity: str, as_of: datetime | None = None) -> set:
    """Primary keys (typed as the table's) of the records of ``entity`` corrected by ``as_of``."""
    model = entity_model(entity)
    table = model.__tablename__
    pk = list(model.__table__.primary_key.columns)[0]
    q = select(Correction.entity_id).where(Correction.entity_type == table)
    if as_of is not None:
        q = q.where(Correction.recorded_at <= as_of)
    ids = set(session.scalars(q))
    return {int(i) for i in ids} if pk.type.python_type is int else ids


def _correct(session: Session, entity: str, entity_id: str, *, action: str, reason: str,
             replacement_id: str | None = None) -> dict:
    model = entity_model(entity)
    table = model.__tablename__
    if not reason or not reason.strip():
        raise UsageError("a reason is required for every correction")
    entity_id = str(entity_id).strip()
    _get(session, model, entity_id)
    already = session.scalar(select(Correction).where(Correction.entity_type == table, Correction.entity_id == entity_id))
    if already is not None:
        raise Conflict(f"{BY_TABLE[table]} {entity_id} was already {'voided' if already.action == 'void' else 'superseded'} "
                       f"(correction {already.id}, {already.recorded_at.isoformat()})")
    if replacement_id is not None:
        replacement_id = str(replacement_id).strip()
        if replacement_id == entity_id:
            raise UsageError(f"{BY_TABLE[table]} {entity_id} cannot supersede itself")
        _get(session, model, replacement_id)
        if session.scalar(select(Correction.id).where(Correction.entity_type == table,
                                                      Correction.entity_id == replacement_id)) is not None:
            raise Conflict(f"the replacement {BY_TABLE[table]} {replacement_id} is itself voided or superseded")
    c = record(session, Correction(entity_type=table, entity_id=entity_id, action=action,
                                   replacement_id=replacement_id, reason=reason.strip()))
    return {"id": c.id, "entity": BY_TABLE[table], "entity_type": table, "entity_id": entity_id, "action": action,
            "replacement_id": replacement_id, "reason": c.reason, "actor": c.actor, "recorded_at": c.recorded_at}


def void(session: Session, entity: str, entity_id: str, *, reason: str) -> dict:
    """Record that ``entity`` ``entity_id`` is void from now on (it stays in the store, marked)."""
    return _correct(session, entity, entity_id, action="void", reason=reason)


def supersede(session: Session, entity: str, entity_id: str, *, by: str, reason: str) -> dict:
    """Record that ``entity_id`` is replaced by the record ``by`` (same type) from now on."""
    return _correct(session, entity, entity_id, action="supersede", reason=reason, replacement_id=by)


def list_corrections(session: Session) -> list[dict]:
    return [dict(v, entity=BY_TABLE.get(k[0], k[0])) for k, v in sorted(corrections(session).items(),
                                                                        key=lambda kv: kv[1]["id"])]
