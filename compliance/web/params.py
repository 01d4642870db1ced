"""Validation of every path and query parameter: a bad value is a UsageError (400) or a NotFound
(404), never a traceback. No starlette here: these take plain strings."""

from __future__ import annotations

import re
from datetime import datetime

from compliance.errors import NotFound, UsageError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_WORD = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
MAX_INT = 2**63 - 1


def entity_id(value: str, what: str) -> str:
    """A model/artifact/report id: letters, digits and . _ : @ + - (no slashes, no '..' tricks)."""
    if not isinstance(value, str) or not _ID.match(value) or ".." in value:
        raise NotFound(f"no {what} {value!r}")
    return value


def int_id(value: str, what: str) -> int:
    if not isinstance(value, str) or not value.isdigit() or len(value) > 19 or int(value) > MAX_INT or int(value) < 1:
        raise NotFound(f"no {what} {value!r}")
    return int(value)


def file_name(value: str) -> str:
    """A download name: one plain file name (no folder, no leading dot, no '..')."""
    if not isinstance(value, str) or not _FILE.match(value) or ".." in value:
        raise NotFound(f"no file {value!r}")
    return value


def quarter(value: str | None) -> str | None:
    from compliance.analysis.calendar import parse_quarter

    if value in (None, ""):
        return None
    if len(value) > 10:
        raise UsageError(f"malformed quarter {value[:20]!r}: expected YYYYQn, e.g. 2026Q3")
    q = parse_quarter(value)
    if q.year > 9000:
        raise UsageError(f"quarter {value!r} is out of range")
    return str(q)


def as_of(value: str | None, now: datetime) -> datetime | None:
    """An as-of: ISO date or time, not in the future (a view of the future is refused, not guessed)."""
    from compliance.timeutil import iso, parse_datetime

    if value in (None, ""):
        return None
    if len(value) > 40:
        raise UsageError("malformed as-of: expected ISO 8601, e.g. 2026-09-30 or 2026-09-30T23:59:59Z")
    t = parse_datetime(value, what="as-of")
    if t > now:
        raise UsageError(f"as-of {iso(t)} is in the future (now is {iso(now)})")
    if t.year < 1971:
        raise UsageError(f"as-of {iso(t)} is before 1971")
    return t


def page(value: str | None) -> int:
    if value in (None, ""):
        return 1
    if not value.isdigit() or len(value) > 7 or int(value) < 1:
        raise UsageError(f"page must be a positive whole number, got {value[:20]!r}")
    return int(value)


def choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in allowed:
        raise UsageError(f"{what} must be one of {', '.join(allowed)}; got {value[:40]!r}")
    return value


def word(value: str | None, what: str) -> str | None:
    """A free filter value (a code, an entity type, an actor name): short, plain characters."""
    if value in (None, ""):
        return None
    if not _WORD.match(value) and not _ID.match(value):
        raise UsageError(f"{what} has characters a filter cannot hold: {value[:40]!r}")
    return value


def only(query: dict, allowed: set[str]) -> None:
    """Unknown query parameters are refused (a typo must not silently show unfiltered data)."""
    extra = sorted(set(query) - allowed)
    if extra:
        raise UsageError(f"unknown query parameter(s): {', '.join(e[:40] for e in extra)}")
