"""Roles and the segregation-of-duties rules (DESIGN §7), as plain data."""

from __future__ import annotations

ROLES = ("admin", "owner", "developer", "validator", "approver")
# Roles that make a person interested in a model: they may not judge its evidence.
CONFLICTED_ROLES = ("owner", "developer")
# Roles that may sign a pack off, accept a warn or an occurrence, verify or close a finding.
REVIEWER_ROLES = ("validator", "approver")
# An automatic action recorded under a reserved name (by the authenticated writer who caused it).
SYSTEM_PREFIX = "system"


def is_system(actor: str) -> bool:
    return actor == SYSTEM_PREFIX or actor.startswith(SYSTEM_PREFIX + ":")


def in_force(events: list[tuple[str, str | None, str]]) -> set[tuple[str, str | None]]:
    """``events``: (role, model_id, action) in ledger order → the (role, model_id) pairs granted now."""
    last: dict[tuple[str, str | None], str] = {}
    for role, model_id, action in events:
        last[(role, model_id)] = action
    return {k for k, action in last.items() if action == "grant"}


def holds(granted: set[tuple[str, str | None]], role: str, model_id: str | None = None) -> bool:
    """A global grant covers every model; a per-model grant only that model."""
    return (role, None) in granted or (model_id is not None and (role, model_id) in granted)
