"""`compliance status`: the numbers a validator looks at first, for a quarter as of a time."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from compliance.analysis.calendar import parse_quarter, quarter_of
from compliance.runtime import without_gc_passes
from compliance.services.analysis import analyse, input_loader
from compliance.services.due import due_from, due_plan_of, latest_counting, latest_counting_in
from compliance.services.governance import list_failure_modes, list_findings
from compliance.store.analysis_reads import StartedRead
from compliance.timeutil import iso, utcnow


def resolve_quarter_as_of(quarter: str | None, as_of: datetime | None) -> tuple[str, datetime]:
    """Default quarter: the one containing as-of (default now); default as-of: now."""
    as_of = as_of or utcnow()
    q = str(parse_quarter(quarter)) if quarter else str(quarter_of(as_of))
    return q, as_of


@without_gc_passes
def dashboard(session: Session, *, quarter: str | None = None, as_of: datetime | None = None,
              analysis: dict | None = None, started: StartedRead | None = None) -> dict:
    """``analysis``: ``analyse(session, quarter, as_of)`` already computed for the same quarter and as-of
    (the web view keeps recent ones; the figures are the same). ``started``: the read of the
    checks, started by the caller for this session and as-of (see
    :func:`~compliance.store.analysis_reads.started_fidelity_read`)."""
    q, t = resolve_quarter_as_of(quarter, as_of)
    due_at = min(t, datetime.combine(parse_quarter(q).end, datetime.max.time(), tzinfo=timezone.utc))
    due_checks: dict = {}

    def tap(fid) -> None:  # the due list's checks are the analysis' when its as-of is the due time
        if due_checks.get("plan") is not None:
            due_checks["latest"] = latest_counting_in(fid, due_checks["plan"])

    with ExitStack() as stack:
        # the checks are read on a second connection while this one lists what is due, findings and failure modes
        load = (stack.enter_context(input_loader(session, t, with_flags=False, started=started,
                                                 tap=tap if due_at == t else None))
                if analysis is None else None)
        plan = due_checks["plan"] = due_plan_of(session, due_at)
        failure_modes = [_plain(f) for f in list_failure_modes(session, open_only=True, as_of=t)]
        findings = [_plain(f) for f in list_findings(session, open_only=True, as_of=t)]
        inp = load() if load is not None else None
    latest = due_checks.get("latest")
    if plan is not None and latest is None:
        latest = latest_counting(session, plan)
    due = ([{k: p[k] for k in ("artifact_id", "kind", "model_id", "version")} for p in due_from(plan, latest)]
           if plan is not None else [])
    # the reader is closed (its connection and buffers gone) before the analysis' day grid
    a = analysis if analysis is not None else analyse(session, q, t, inp=inp, detail=False)
    return {
        "quarter": q, "as_of": iso(t), "portfolio": a["portfolio"], "by_tier": a["by_tier"], "by_model": a["by_model"],
        "trend": a["trend"], "data_quality": a["data_quality"],
        "due": due, "failure_modes": failure_modes, "findings": findings,
    }


def _plain(d: dict) -> dict:
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in d.items() if k != "history"}
