"""door checks: the database refuses values that analyses could not use

Revision ID: 0003_door_checks
Revises: 0002_methodology_v2
Create Date: 2026-11-29

Risk tier 1-3, decision volume finite in [0, 1e15], deployment action, check status and
correction action from their enumerations, finite explained variance, and effective times and
volume days after 1970 (before 2200), enforced by the database for every new row, on both
backends alike (issue 21; the store's door, ``compliance.store.door``, gives the clear message
first, this is the backstop for a row written behind the project's back).

- PostgreSQL: named CHECK constraints added ``NOT VALID``: enforced for every new row, existing
  rows are not re-checked, so a store holding a record from an older release still upgrades (the
  analyses report such a record as a data-quality finding).
- SQLite cannot add a CHECK constraint without copying the table, which would rewrite every
  evidence row and drop its append-only triggers; the same conditions are enforced by
  ``BEFORE INSERT`` triggers named after the constraints instead. No row is rewritten, so every
  old ledger payload still verifies.

The conditions are frozen here (a later change of the models does not change this migration).
"""
from __future__ import annotations

import re

from alembic import op

from compliance.store.triggers import create_door_check, drop_door_check

revision = "0003_door_checks"
down_revision = "0002_methodology_v2"
branch_labels = None
depends_on = None

# (table, constraint name, condition over the table's columns)
CHECKS: list[tuple[str, str, str]] = [
    ("model", "tier", "tier IN (1, 2, 3)"),
    ("decision_volume", "volume", "volume >= 0 AND volume <= 1e15"),
    ("decision_volume", "day", "day >= '1970-01-01' AND day < '2200-01-01'"),
    ("deployment_event", "action", "action IN ('deploy', 'retire')"),
    ("deployment_event", "effective_at", "effective_at >= '1970-01-01' AND effective_at < '2200-01-01'"),
    ("check_run", "status", "status IN ('pass', 'warn', 'fail', 'error')"),
    ("check_run", "explained_variance",
     "explained_variance IS NULL OR (explained_variance >= -1e300 AND explained_variance <= 1e300)"),
    ("correction", "action", "action IN ('void', 'supersede')"),
]


def _sqlite_condition(table: str, cond: str) -> str:
    cols = {"tier", "volume", "day", "action", "effective_at", "status", "explained_variance"}
    return re.sub(r"\b(" + "|".join(sorted(cols, key=len, reverse=True)) + r")\b", r"NEW.\1", cond)


def upgrade() -> None:
    conn = op.get_bind()
    for table, name, cond in CHECKS:
        create_door_check(conn, table, f"ck_{table}_{name}", cond, sqlite_cond=_sqlite_condition(table, cond),
                          not_valid=True)


def downgrade() -> None:
    conn = op.get_bind()
    for table, name, _cond in reversed(CHECKS):
        drop_door_check(conn, table, f"ck_{table}_{name}")
