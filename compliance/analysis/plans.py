"""Monitoring plans (DESIGN §10): the plan document, its validation, and plan adherence.

Pure functions, no database: the service hands in the plan, the version's deployed interval and
the times of the checks that ran; this module says what was due when, what was missed and what
is due next. The same function feeds ``check run --due``, ``FM-MISSED`` and the pack.

A plan document (YAML, ``compliance-plan/1``)::

    checks:
      fidelity:   {cadence: [after_retrain, {every: 30d}]}
      data_drift: {cadence: weekly, data: {dataset: "retail-pd-prod-*"}, budget: 2m}
      overhead:   {cadence: after_retrain}
    alert: {email: [mrm@bank.example], webhook: [mrm-hook]}
    grace: 1d            # a check is missed once its due date + grace has passed

Cadences: ``after_retrain`` (once per deployed version), ``daily``, ``weekly``, ``monthly`` (30
days), ``quarterly`` (91 days), ``{every: Nd}`` / ``{every: Nw}``; several in a list (all apply).
Data sources: ``{dataset: GLOB}`` (the latest registered dataset of the model whose file name
matches and whose window has ended) or ``{path: TEMPLATE}`` with ``{window}``, ``{start}`` and
``{end}`` filled from the last complete period (ISO week ``2026-W27`` for weekly, ``2026-07`` for
monthly, the date for daily, ``START_END`` otherwise).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from compliance.errors import InputError

PLAN_FORMAT = "compliance-plan/1"
PLAN_KINDS = ("fidelity", "alignment", "data_drift", "activation_drift", "overhead", "performance", "fairness")
NAMED_PERIODS = {"daily": 1, "weekly": 7, "monthly": 30, "quarterly": 91}
_EVERY = re.compile(r"^\s*(\d+)\s*([dw])\s*$")
_TOP_KEYS = {"format", "checks", "alert", "grace", "comment"}
_CHECK_KEYS = {"cadence", "data", "budget", "required", "reference"}


@dataclass(frozen=True)
class KindPlan:
    kind: str
    after_retrain: bool
    every_days: int | None
    required: bool = True
    data: dict | None = None
    budget: dict | None = None
    reference: str | None = None

    def cadence_text(self) -> str:
        parts = (["after every retrain"] if self.after_retrain else []) + (
            [f"every {self.every_days} days"] if self.every_days else [])
        return " and at least ".join(parts) if parts else "—"


def _days(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _EVERY.match(str(value))
    if not m or int(m.group(1)) < 1:
        raise InputError(f"{where}: expected a period like 30d or 2w, got {value!r}")
    n = int(m.group(1)) * (7 if m.group(2) == "w" else 1)
    if n > 3650:
        raise InputError(f"{where}: a period longer than 3650 days ({value!r})")
    return n


def _cadence(value: Any, where: str) -> tuple[bool, int | None]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InputError(f"{where}: the cadence is empty")
    after, every = False, None
    for item in items:
        if item == "after_retrain":
            after = True
            continue
        if isinstance(item, str) and item in NAMED_PERIODS:
            n = NAMED_PERIODS[item]
        elif isinstance(item, dict) and set(item) == {"every"}:
            n = _days(item["every"], f"{where}.every")
        else:
            raise InputError(f"{where}: unknown cadence {item!r} (use after_retrain, daily, weekly, monthly, "
                             "quarterly or {every: 30d})")
        every = n if every is None else min(every, n)
    return after, every


def _budget(value: Any, where: str) -> dict | None:
    from compliance.checks.intervals import parse_duration

    if value is None:
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"seconds": parse_duration(str(value)), "rows": None}
    if isinstance(value, dict) and value and set(value) <= {"time", "rows"}:
        rows = value.get("rows")
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise InputError(f"{where}.rows must be a positive whole number, got {rows!r}")
        t = value.get("time")
        return {"seconds": parse_duration(str(t)) if t is not None else None, "rows": rows}
    raise InputError(f"{where}: expected a duration like 2m or {{time: 2m, rows: 50000}}, got {value!r}")


def _data(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, dict) and len(value) == 1:
        (k, v), = value.items()
        if k in ("dataset", "path") and isinstance(v, str) and v.strip():
            if k == "path" and "{" in v:
                try:
                    v.format(window="w", start="s", end="e")
                except (KeyError, IndexError, ValueError):
                    raise InputError(f"{where}.path: only {{window}}, {{start}} and {{end}} may be filled in, "
                                     f"got {v!r}") from None
            return {k: v}
    raise InputError(f"{where}: expected {{dataset: GLOB}} or {{path: TEMPLATE}}, got {value!r}")


def _names(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(x, str) and x.strip() and len(x) <= 300 for x in items):
        raise InputError(f"{where}: expected a list of names or addresses")
    return [x.strip() for x in items]


def normalise_plan(doc: Any, where: str = "plan") -> dict:
    """Validate a plan document and return its canonical form (what is stored and hashed).
    Any problem is one ``InputError`` naming the key."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: a plan must be a mapping with a 'checks' section")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    if doc.get("format", PLAN_FORMAT) != PLAN_FORMAT:
        raise InputError(f"{where}: unsupported format {doc.get('format')!r} (expected {PLAN_FORMAT})")
    checks = doc.get("checks") or {}
    if not isinstance(checks, dict):
        raise InputError(f"{where}: 'checks' must map check kinds to their schedule")
    out_checks = {}
    for kind, spec in checks.items():
        w = f"{where}: checks.{kind}"
        if kind not in PLAN_KINDS:
            raise InputError(f"{w}: unknown check kind (one of {', '.join(PLAN_KINDS)})")
        if not isinstance(spec, dict) or "cadence" not in spec:
            raise InputError(f"{w}: needs a cadence")
        extra = set(spec) - _CHECK_KEYS
        if extra:
            raise InputError(f"{w}: unknown key {sorted(map(str, extra))[0]!r}")
        after, every = _cadence(spec["cadence"], f"{w}.cadence")
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise InputError(f"{w}.required must be true or false")
        ref = spec.get("reference")
        if ref is not None and not (isinstance(ref, str) and ref.strip()):
            raise InputError(f"{w}.reference must be a file path")
        out_checks[str(kind)] = {"after_retrain": after, "every_days": every, "required": required,
                                 "data": _data(spec.get("data"), f"{w}.data"),
                                 "budget": _budget(spec.get("budget"), f"{w}.budget"), "reference": ref}
    alert = doc.get("alert") or {}
    if not isinstance(alert, dict) or not set(alert) <= {"email", "webhook"}:
        raise InputError(f"{where}: 'alert' must be a mapping with email and/or webhook lists")
    emails = _names(alert["email"], f"{where}: alert.email") if alert.get("email") else []
    for e in emails:
        if not re.match(r"^[^@\s]+@[^@\s]+$", e):
            raise InputError(f"{where}: alert.email: {e!r} is not an e-mail address")
    hooks = _names(alert["webhook"], f"{where}: alert.webhook") if alert.get("webhook") else []
    grace = _days(doc.get("grace", "1d"), f"{where}: grace") if doc.get("grace") not in (0, "0d") else 0
    comment = doc.get("comment")
    return {"format": PLAN_FORMAT, "checks": dict(sorted(out_checks.items())),
            "alert": {"email": emails, "webhook": hooks}, "grace_days": grace,
            **({"comment": str(comment)} if comment else {})}


def kind_plans(plan: dict) -> list[KindPlan]:
    return [KindPlan(kind=k, after_retrain=bool(s.get("after_retrain")), every_days=s.get("every_days"),
                     required=bool(s.get("required", True)), data=s.get("data"), budget=s.get("budget"),
                     reference=s.get("reference"))
            for k, s in (plan.get("checks") or {}).items()]


# ------------------------------------------------------------------ adherence
@dataclass
class Adherence:
    """How one (version, check kind) kept to its plan up to ``at``."""

    kind: str
    version_id: int
    deployed_since: datetime
    last_check_at: datetime | None
    next_due: datetime | None  # when the next check is due (None: nothing more is due)
    missed: list[dict] = field(default_factory=list)  # [{due, cause_key, detail}]
    state: str = "on time"  # on time | due | overdue

    def to_dict(self) -> dict:
        return asdict(self)


def adherence(kp: KindPlan, *, model_id: str, version_id: int, version_label: str, deployed_since: datetime,
              plan_since: datetime, checks: list[datetime], at: datetime, grace_days: int) -> Adherence:
    """Plan adherence of one check kind on one deployed version (checks: finish times of the
    checks of that kind on the version that ran, i.e. not ``error``, finished at or before ``at``).

    The clock starts at the later of the deployment and the plan. ``after_retrain``: one check on
    the version is due at that start (one run before the deployment counts). ``every N days``: a
    check is due N days after the start or the previous check; a gap longer than N days + grace is
    one miss, due N days after the check (or start) that opened the gap, however long it lasts."""
    grace = timedelta(days=grace_days)
    start = max(deployed_since, plan_since)
    times = sorted(t for t in checks if t <= at)
    out = Adherence(kp.kind, version_id, deployed_since, times[-1] if times else None, None)
    nxt: list[datetime] = []

    def miss(due: datetime, tag: str) -> None:
        key = f"FM-MISSED:model={model_id}:version={version_id}:kind={kp.kind}:due={due.date().isoformat()}{tag}"
        out.missed.append({"due": due, "cause_key": key,
                           "detail": f"{kp.kind} on {model_id} {version_label} was due {due.date().isoformat()} "
                                     f"({kp.cadence_text()}, plan) and had not run {grace_days} day(s) later"})

    if kp.after_retrain:
        if not any(t <= start + grace for t in times):
            if at > start + grace:
                miss(start, ":after_retrain")
            if not times:
                nxt.append(start)
    if kp.every_days:
        period = timedelta(days=kp.every_days)
        prev = start
        for t in [t for t in times if t > start] + [None]:
            end = at if t is None else t
            if end - prev > period + grace:
                miss(prev + period, "")
            if t is None:  # a version never checked is due at once (it is missed only a period later)
                nxt.append(prev + period if times else start)
            else:
                prev = t
    out.next_due = min(nxt) if nxt else None
    last = times[-1] if times else None
    if any(last is None or m["due"] >= last for m in out.missed):
        out.state = "overdue"
    elif out.next_due is not None and at >= out.next_due:
        out.state = "due"
    return out


def period_window(every_days: int | None, at: datetime) -> tuple[str, date, date]:
    """The last complete period before ``at`` for a ``{window}`` path template: (label, start, end)."""
    day = at.date()
    if every_days == 7:
        monday = day - timedelta(days=day.weekday()) - timedelta(days=7)
        y, w, _ = monday.isocalendar()
        return f"{y}-W{w:02d}", monday, monday + timedelta(days=6)
    if every_days in (30, 31):
        first = day.replace(day=1)
        end = first - timedelta(days=1)
        return f"{end.year}-{end.month:02d}", end.replace(day=1), end
    if every_days in (None, 1):
        d = day - timedelta(days=1)
        return d.isoformat(), d, d
    end = day - timedelta(days=1)
    start = end - timedelta(days=every_days - 1)
    return f"{start.isoformat()}_{end.isoformat()}", start, end
