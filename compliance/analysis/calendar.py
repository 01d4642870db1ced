"""Quarters and UTC days.

A quarter is written ``2026Q3`` and spans the UTC dates 2026-07-01 .. 2026-09-30 inclusive.
Internally the analysis works on *day numbers*: whole days since 1970-01-01 (UTC), as int64,
so that day grids can be built with numpy without per-day Python loops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd

from compliance.errors import UsageError

_QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")
_EPOCH = date(1970, 1, 1)
NS_PER_DAY = 86_400 * 1_000_000_000


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter: ``year`` and ``q`` (1..4)."""

    year: int
    q: int

    def __str__(self) -> str:
        return f"{self.year}Q{self.q}"

    @property
    def start(self) -> date:
        """First day (inclusive)."""
        return date(self.year, 3 * (self.q - 1) + 1, 1)

    @property
    def end(self) -> date:
        """Last day (inclusive)."""
        return self.next().start - timedelta(days=1)

    @property
    def start_day(self) -> int:
        return day_number(self.start)

    @property
    def end_day(self) -> int:
        return day_number(self.end)

    def end_instant(self) -> datetime:
        """The first instant after the quarter (exclusive end), UTC."""
        s = self.next().start
        return datetime(s.year, s.month, s.day, tzinfo=timezone.utc)

    def next(self) -> "Quarter":
        return Quarter(self.year + 1, 1) if self.q == 4 else Quarter(self.year, self.q + 1)

    def previous(self, n: int = 1) -> "Quarter":
        idx = self.year * 4 + (self.q - 1) - n
        return Quarter(idx // 4, idx % 4 + 1)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.end_day - self.start_day + 1)]


def parse_quarter(text: str) -> Quarter:
    """Parse ``'2026Q3'`` (a ``Quarter`` passes through); ``UsageError`` when malformed."""
    if isinstance(text, Quarter):
        return text
    m = _QUARTER_RE.match(str(text).strip().upper()) if text is not None else None
    if not m:
        raise UsageError(f"malformed quarter {text!r}: expected YYYYQn, e.g. 2026Q3")
    year = int(m.group(1))
    if year < 1971:
        raise UsageError(f"quarter {text!r} is before 1971")
    return Quarter(year, int(m.group(2)))


def format_quarter(q: Quarter) -> str:
    return str(q)


def quarter_of(d: date | datetime) -> Quarter:
    """The quarter containing a date (datetimes are converted to their UTC date)."""
    if isinstance(d, datetime):
        d = utc_date(d)
    return Quarter(d.year, (d.month - 1) // 3 + 1)


def utc_date(ts: datetime | pd.Timestamp) -> date:
    """UTC calendar date of a tz-aware instant (naive instants are rejected)."""
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        raise UsageError(f"timestamp {ts!r} has no time zone; give it in UTC, e.g. 2026-09-30T23:59:59Z")
    return t.tz_convert("UTC").date()


def day_number(d: date) -> int:
    return (d - _EPOCH).days


def day_date(n: int) -> date:
    return _EPOCH + timedelta(days=int(n))


def to_utc_timestamp(ts: datetime | str | pd.Timestamp) -> pd.Timestamp:
    """A tz-aware ``pd.Timestamp`` in UTC (``UsageError`` for naive or unparsable input)."""
    try:
        t = pd.Timestamp(ts)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"unparsable timestamp {ts!r}") from exc
    if t is pd.NaT or t.tzinfo is None:
        raise UsageError(f"timestamp {ts!r} has no time zone; give it in UTC, e.g. 2026-09-30T23:59:59Z")
    return t.tz_convert("UTC").as_unit("ns")


def ns_values(s: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch of a ``datetime64[ns, UTC]`` series (NaT → int64 min)."""
    return s.array.asi8


def day_numbers(s: pd.Series) -> np.ndarray:
    """UTC day numbers of a ``datetime64[ns, UTC]`` series (NaT is not allowed here)."""
    return np.floor_divide(ns_values(s), NS_PER_DAY)
