"""The door of the store: every evidence row is checked before it is written (issue 21).

:func:`compliance.store.ledger.record_many` calls :func:`check_row` for each row, so no service,
import path or API caller can write a value that would poison later analyses:

- every float column holds a finite number (or NULL where the column allows it);
- every integer column holds an integer (not a bool, not 1.5, not a string);
- every date and time lies in a sane window: 1970-01-01 to one year after the store's clock
  (ten years for due dates), so that every later as-of stays computable;
- per-column ranges: risk tier 1–3, decision volume 0–1e15, enumerations (deployment action,
  check status, correction action).

Services validate first and give the friendlier message; this is the backstop every write
passes. The database enforces the same ranges for rows written behind the project's back
(migration 0003: CHECK constraints on PostgreSQL, BEFORE INSERT triggers on SQLite).
"""

from __future__ import annotations

import math
import numbers
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import Float, Integer

from compliance.errors import InputError

EARLIEST = date(1970, 1, 1)
FUTURE = timedelta(days=366)  # "now + 1 year"
FUTURE_LONG = timedelta(days=3653)  # due dates may lie further ahead
LONG_HORIZON_COLUMNS = {("finding", "due_date")}
MAX_VOLUME = 1e15

# (table, column) -> (low, high) inclusive, or a tuple of allowed values
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("model", "tier"): (1, 3),
    ("decision_volume", "volume"): (0.0, MAX_VOLUME),
}
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("deployment_event", "action"): ("deploy", "retire"),
    ("check_run", "status"): ("pass", "warn", "fail", "error", "inconclusive"),
    ("correction", "action"): ("void", "supersede"),
    ("adaptation", "status"): ("succeeded", "failed"),
}


@lru_cache(maxsize=1024)
def window(now: datetime, table: str, column: str) -> tuple[date, date]:
    """The dates a value of ``table.column`` may take when the store's clock reads ``now``."""
    ahead = FUTURE_LONG if (table, column) in LONG_HORIZON_COLUMNS else FUTURE
    return EARLIEST, (now.astimezone(timezone.utc) + ahead).date()


def check_time(value: datetime | date, now: datetime, what: str, table: str = "", column: str = "") -> None:
    """``InputError`` unless ``value`` lies in the sane window (see the module docstring)."""
    lo, hi = window(now, table, column)
    d = value.astimezone(timezone.utc).date() if isinstance(value, datetime) and value.tzinfo else (
        value.date() if isinstance(value, datetime) else value)
    if not lo <= d <= hi:
        raise InputError(f"{what} {value.isoformat()} is outside the accepted window {lo.isoformat()} .. "
                         f"{hi.isoformat()} (1970 to one year after now)")


def check_number(value: Any, what: str, *, low: float | None = None, high: float | None = None,
                 integer: bool = False) -> float:
    """``value`` as a finite number in ``[low, high]`` (an integer when ``integer``), else ``InputError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number, got {value!r}")
    if integer and not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and math.isfinite(value) and value.is_integer()):
            raise InputError(f"{what} must be a whole number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    if (low is not None and x < low) or (high is not None and x > high):
        lo = "-∞" if low is None else f"{low:g}"
        hi = "∞" if high is None else f"{high:g}"
        raise InputError(f"{what} must lie in [{lo}, {hi}], got {value!r}")
    return x


def check_row(obj: Any, now: datetime) -> None:
    """Refuse (``InputError``) a row with a value that analyses could not use."""
    check_values(obj.__table__, lambda key: getattr(obj, key, None), now)


def check_values(tbl: Any, value_of: Any, now: datetime) -> None:
    """:func:`check_row` for a row given as a table and ``value_of(column key)`` (the bulk path's dicts)."""
    table = tbl.name
    for ckey, name, kind, rng, choices in _plan(tbl):
        value = value_of(ckey)
        if value is not None:
            _check_value(table, name, kind, rng, choices, value, now)


def columns_pass(tbl: Any, columns: dict[str, list[Any]], now: datetime) -> bool:
    """Whether every value of a batch of rows, given column by column (key -> values), passes
    :func:`check_values`: each distinct value checked once. False says only that some row fails;
    :func:`check_values` row by row then names the first (the bulk path's backstop, issue 16)."""
    table = tbl.name
    for ckey, name, kind, rng, choices in _plan(tbl):
        values = columns.get(ckey, ())
        if kind == _OTHER and not choices:  # only dates and times are checked in such a column
            todo: Any = {v for v in values if isinstance(v, date)}  # equal times lie on the same day
        elif kind == _INT and not rng and {type(v) for v in values} <= {int, type(None)}:
            continue
        else:
            try:
                todo = [v for _t, v in {(type(v), v) for v in values}]
            except TypeError:  # an unhashable value
                todo = values
        try:
            for value in todo:
                if value is not None:
                    _check_value(table, name, kind, rng, choices, value, now)
        except Exception:  # noqa: BLE001 - any failure: the row-by-row check gives the error
            return False
    return True


def _check_value(table: str, name: str, kind: int, rng: Any, choices: Any, value: Any, now: datetime) -> None:
    if kind == _FLOAT:
        lo, hi = rng or (None, None)
        check_number(value, f"{table}.{name}", low=lo, high=hi)
    elif kind == _INT:
        if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise InputError(f"{table}.{name} must be an integer, got {value!r}")
        if rng:
            check_number(value, f"{table}.{name}", low=rng[0], high=rng[1], integer=True)
    elif isinstance(value, (datetime, date)):
        check_time(value, now, f"{table}.{name}", table, name)
    if choices and value not in choices:
        raise InputError(f"{table}.{name} must be one of {', '.join(choices)}, got {value!r}")


_FLOAT, _INT, _OTHER = range(3)
_PLANS: dict[Any, list[tuple[str, str, int, Any, Any]]] = {}


def _plan(tbl: Any) -> list[tuple[str, str, int, Any, Any]]:
    """Per column: key, name, kind, range and choices (computed once per table)."""
    plan = _PLANS.get(tbl)
    if plan is None:
        plan = []
        for col in tbl.columns:
            kind = (_FLOAT if isinstance(col.type, Float) else
                    _INT if isinstance(col.type, Integer) and not col.primary_key else _OTHER)
            plan.append((col.key, col.name, kind, RANGES.get((tbl.name, col.name)), CHOICES.get((tbl.name, col.name))))
        _PLANS[tbl] = plan
    return plan
