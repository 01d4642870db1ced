"""People, roles and segregation of duties (DESIGN §7).

A person's id is their login: the PostgreSQL role they connect as, or their OS user on SQLite.
Roles (``admin``, ``owner``, ``developer``, ``validator``, ``approver``) are granted globally or
per model by an admin, as ledger events; the latest event per (person, role, model) is in force.
The first admin is whoever initialised the store (migration 0007).

Segregation of duties, enforced here on both backends (and by database triggers on PostgreSQL,
see ``store.triggers``): a person is *conflicted* on a model when they own it (``model.owner`` or
an ``owner`` grant), develop it (a ``developer`` grant, or they recorded a version or artifact of
it). A conflicted person cannot accept the model's warns or failure-mode occurrences, verify or
close its findings, or sign off a pack with the model in scope. A sign-off, and a finding's
verification, need the ``validator`` or ``approver`` role.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound, UsageError
from compliance.identity.roles import CONFLICTED_ROLES, REVIEWER_ROLES, ROLES, holds, in_force
from compliance.services.registry import get_model, plain
from compliance.store.ledger import record
from compliance.store.models import Artifact, Model, ModelVersion, Person, RoleGrant


def me(session: Session) -> str:
    """The person acting in this session: the authenticated login (or, in a replay, the named actor)."""
    return session.info["actor"]


# ---------------------------------------------------------------- people
def add_person(session: Session, person_id: str, *, name: str | None = None) -> dict:
    require_admin(session, f"add person {person_id}")
    pid = (person_id or "").strip()
    if not pid:
        raise UsageError("a person needs a login (their PostgreSQL role, or OS user on SQLite)")
    if session.get(Person, pid) is not None:
        raise Conflict(f"person {pid} exists")
    if session.get_bind().dialect.name == "postgresql" and not session.info.get("replay"):
        found = session.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r AND rolcanlogin"), {"r": pid}).first()
        if found is None:
            raise Conflict(f"no PostgreSQL login role {pid!r}: a person is the role they connect as "
                           f"(ask the DBA: CREATE ROLE \"{pid}\" LOGIN)")
    return plain(record(session, Person(id=pid, name=(name or pid).strip())))


def get_person(session: Session, person_id: str) -> Person:
    p = session.get(Person, person_id)
    if p is None:
        raise NotFound(f"unknown person {person_id!r} (see `compliance person list`; an admin adds people)")
    return p


def list_people(session: Session) -> list[dict]:
    return [plain(p) for p in session.scalars(select(Person).order_by(Person.id))]


# ---------------------------------------------------------------- roles
def granted(session: Session, person_id: str) -> set[tuple[str, str | None]]:
    """The (role, model_id) pairs in force for a person (model_id None = global)."""
    rows = session.execute(select(RoleGrant.role, RoleGrant.model_id, RoleGrant.action)
                           .where(RoleGrant.person_id == person_id).order_by(RoleGrant.id)).all()
    return in_force([tuple(r) for r in rows])


def has_role(session: Session, person_id: str, role: str, model_id: str | None = None) -> bool:
    return holds(granted(session, person_id), role, model_id)


def require_admin(session: Session, what: str) -> None:
    who = me(session)
    any_admin = session.scalars(select(RoleGrant.id).where(RoleGrant.role == "admin").limit(1)).first()
    if any_admin is not None and not has_role(session, who, "admin"):
        raise Conflict(f"only an admin may {what}: {who} is not an admin")


def _role_event(session: Session, person_id: str, role: str, model_id: str | None, action: str) -> dict:
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    require_admin(session, f"{action} roles")
    get_person(session, person_id)
    if model_id is not None:
        get_model(session, model_id)
        if role == "admin":
            raise UsageError("admin is a global role (no --model)")
    on = (role, model_id) in granted(session, person_id)
    scope = f" on {model_id}" if model_id else " (global)"
    if action == "grant" and on:
        raise Conflict(f"{person_id} already holds {role}{scope}")
    if action == "revoke" and not on:
        raise Conflict(f"{person_id} does not hold {role}{scope}")
    if action == "revoke" and role == "admin" and _admins(session) == {person_id}:
        raise Conflict(f"{person_id} is the last admin: grant admin to someone else first")
    return plain(record(session, RoleGrant(person_id=person_id, role=role, model_id=model_id, action=action)))


def grant_role(session: Session, person_id: str, role: str, *, model_id: str | None = None) -> dict:
    return _role_event(session, person_id, role, model_id, "grant")


def revoke_role(session: Session, person_id: str, role: str, *, model_id: str | None = None) -> dict:
    return _role_event(session, person_id, role, model_id, "revoke")


def _admins(session: Session) -> set[str]:
    return {r["person"] for r in list_roles(session) if r["role"] == "admin"}


def list_roles(session: Session, *, person_id: str | None = None, model_id: str | None = None) -> list[dict]:
    """Roles in force: one row per (person, role, model)."""
    q = select(RoleGrant).order_by(RoleGrant.id)
    if person_id is not None:
        q = q.where(RoleGrant.person_id == person_id)
    last: dict[tuple[str, str, str | None], RoleGrant] = {}
    for g in session.scalars(q):
        last[(g.person_id, g.role, g.model_id)] = g
    out = [dict(person=g.person_id, role=g.role, model_id=g.model_id, granted_by=g.actor, granted_at=plain(g)["recorded_at"])
           for g in last.values() if g.action == "grant" and (model_id is None or g.model_id in (None, model_id))]
    return sorted(out, key=lambda r: (r["person"], r["role"], r["model_id"] or ""))


# ---------------------------------------------------------------- segregation of duties
def conflict(session: Session, person_id: str, model_id: str) -> str | None:
    """Why ``person_id`` may not judge ``model_id``'s evidence, or None."""
    m = session.get(Model, model_id)
    if m is not None and m.owner == person_id:
        return f"{person_id} owns {model_id}"
    roles = granted(session, person_id)
    for role in CONFLICTED_ROLES:
        if holds(roles, role, model_id):
            return f"{person_id} is {'an' if role == 'owner' else 'a'} {role} of {model_id}"
    recorded = session.scalars(select(ModelVersion.id).where(ModelVersion.model_id == model_id,
                                                             ModelVersion.actor == person_id).limit(1)).first() or \
        session.scalars(select(Artifact.id).where(Artifact.model_id == model_id, Artifact.actor == person_id).limit(1)).first()
    if recorded is not None:
        return f"{person_id} is a developer of {model_id} (recorded a version or artifact of it)"
    return None


def refuse_conflicted(session: Session, model_ids: list[str], what: str) -> str:
    who = me(session)
    for mid in model_ids:
        why = conflict(session, who, mid)
        if why:
            raise Conflict(f"segregation of duties: {why} and cannot {what}")
    return who


def require_reviewer(session: Session, model_ids: list[str], what: str, *, roles: tuple[str, ...] = REVIEWER_ROLES) -> str:
    """The actor holds one of ``roles`` (globally or on every model in ``model_ids``)."""
    who = me(session)
    held = granted(session, who)
    missing = [m for m in model_ids or [None] if not any(holds(held, r, m) for r in roles)]
    if missing:
        on = f" on {', '.join(m for m in missing if m)}" if any(missing) else ""
        raise Conflict(f"{what} needs the {' or '.join(roles)} role: {who} does not hold it{on}")
    return who


def reviewer_role(session: Session, person_id: str, model_ids: list[str]) -> str:
    """The reviewer role the person signs with (approver when they hold it, else validator)."""
    roles = granted(session, person_id)
    for r in ("approver", "validator"):
        if all(holds(roles, r, m) for m in model_ids or [None]):
            return r
    return "validator"
