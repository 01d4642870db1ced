"""Time handling: everything is timezone-aware UTC; days are UTC dates."""

from __future__ import annotations

from datetime import date, datetime, timezone

from compliance.errors import UsageError

UTC = timezone.utc
MIN_YEAR, MAX_YEAR = 1900, 2200  # inside every library's range (pandas ends in 2262)


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_datetime(text: str | datetime | date, *, what: str = "time") -> datetime:
    """Parse an ISO 8601 date or datetime; naive values are taken as UTC."""
    if isinstance(text, datetime):
        dt = text
    elif isinstance(text, date):
        dt = datetime(text.year, text.month, text.day)
    else:
        s = str(text).strip()
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise UsageError(f"cannot parse {what} {text!r}: expected ISO 8601, e.g. 2026-07-01 or 2026-07-01T09:30:00Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise UsageError(f"{what} {text!s} is out of range: years {MIN_YEAR}-{MAX_YEAR} only")
    return dt.astimezone(UTC)


def parse_date(text: str | date, *, what: str = "date") -> date:
    if isinstance(text, datetime):
        return text.astimezone(UTC).date()
    if isinstance(text, date):
        return text
    try:
        d = date.fromisoformat(str(text).strip())
    except ValueError:
        raise UsageError(f"cannot parse {what} {text!r}: expected YYYY-MM-DD") from None
    if not MIN_YEAR <= d.year <= MAX_YEAR:
        raise UsageError(f"{what} {text!s} is out of range: years {MIN_YEAR}-{MAX_YEAR} only")
    return d


def parse_window(text: str | None, *, what: str = "window") -> tuple[date | None, date | None]:
    """Parse ``START..END`` (ISO dates, inclusive)."""
    if text is None or text == "":
        return None, None
    if ".." not in str(text):
        raise UsageError(f"cannot parse {what} {text!r}: expected START..END, e.g. 2026-01-01..2026-03-31")
    a, _, b = str(text).partition("..")
    start, end = parse_date(a, what=what), parse_date(b, what=what)
    if end < start:
        raise UsageError(f"{what} {text!r} ends before it starts")
    return start, end


def iso(dt: datetime | date | None) -> str | None:
    """Canonical ISO text: datetimes in UTC with microseconds and a Z suffix."""
    if dt is None:
        return None
    if isinstance(dt, datetime):
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.isoformat()
