"""`compliance check run --due`: keep interpretability debt from compounding.

A (required artifact, deployed version) pair is *due* at time T when the artifact's kind is in
one of the required groups of its model's tier, the version is deployed at T, and there is no
fidelity check of the artifact on that version with status pass, warn or fail finished within
``validity_days`` before T (an ``error`` does not count: the check is retried). A failing check
inside the window is not re-run: it is evidence of a broken slot, and re-running the same
artifact would not change it; a new artifact must be registered.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError
from compliance.services.alerts import verdict_alerts, verdicts_at
from compliance.services.checks import run_fidelity
from compliance.services.policy import policy_at
from compliance.store.models import Artifact, Check, DeploymentEvent, Model, ModelVersion

FIDELITY_KINDS = {"sae", "transcoder", "clt", "attribution_baseline"}
FIRST_PASS = 0.6  # share of a due-run budget spent on the first pass; the rest escalates inconclusive checks


def deployed_versions(session: Session, at: datetime) -> list[ModelVersion]:
    """Versions whose latest deploy/retire event effective at or before ``at`` is a deploy."""
    from compliance.services.corrections import corrected_ids

    void_events = corrected_ids(session, "deployment", at)
    void_versions = corrected_ids(session, "version", at)
    void_models = corrected_ids(session, "model", at)
    last = (select(DeploymentEvent.version_id, func.max(DeploymentEvent.id).label("last_id"))
            .where(DeploymentEvent.effective_at <= at, DeploymentEvent.recorded_at <= at,
                   DeploymentEvent.id.not_in(void_events))
            .group_by(DeploymentEvent.version_id).subquery())
    q = (select(ModelVersion).join(last, last.c.version_id == ModelVersion.id)
         .join(DeploymentEvent, DeploymentEvent.id == last.c.last_id).where(DeploymentEvent.action == "deploy")
         .order_by(ModelVersion.model_id, ModelVersion.id))
    return [v for v in session.scalars(q) if v.id not in void_versions and v.model_id not in void_models]


COUNTING = ("pass", "warn", "fail")  # the statuses of a check that counts (an error is retried)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DuePlan:
    """Everything :func:`due_pairs` reads but the checks: the deployed versions with required
    fidelity artifacts (id, model, label), per model the day its validity window starts, the
    required artifacts of each model (id, kind), the widest window's first day and the checks
    voided by ``at``."""

    at: datetime
    versions: tuple[tuple[int, str, str], ...]
    since: dict[str, datetime]
    artifacts: dict[str, list[tuple[str, str]]]
    first: datetime
    void_checks: frozenset

    @property
    def version_ids(self) -> list[int]:
        return [v for v, _, _ in self.versions]


def due_pairs(session: Session, at: datetime) -> list[dict]:
    """The (required artifact, deployed version) pairs due at ``at`` (see the module docstring).
    Reads only what can make a pair due: the deployed versions, their models' required artifacts,
    and per pair the latest counting check inside the widest validity window (aggregated in SQL)."""
    plan = due_plan_of(session, at)
    return due_from(plan, latest_counting(session, plan)) if plan is not None else []


def due_plan_of(session: Session, at: datetime) -> DuePlan | None:
    """:class:`DuePlan` at ``at``; None when nothing can be due (no deployed version of a model
    whose tier requires a fidelity artifact)."""
    from compliance.services.corrections import corrected_ids
    from compliance.services.plans import fidelity_every, plans_in_force

    policy = policy_at(session, at)
    groups = policy.get("required_groups") or {}
    # Validity counts whole UTC days (DESIGN §4): a check finished on day d - validity_days still counts on day d.
    # A monitoring plan can only tighten it: fidelity every N days < validity_days (DESIGN §10).
    validity = int(policy.get("validity_days", 90))
    deployed = deployed_versions(session, at)
    if not deployed:
        return None
    tiers = dict(session.execute(select(Model.id, Model.tier)).all())
    required = {m: {k for g in groups.get(str(tiers.get(m)), []) for k in g} & FIDELITY_KINDS
                for m in {v.model_id for v in deployed}}
    deployed = [v for v in deployed if required[v.model_id]]
    if not deployed:
        return None
    plans = plans_in_force(session, {v.model_id for v in deployed}, at, policy=policy, tiers=tiers)

    def day_start(days: int) -> datetime:
        first_day = at.astimezone(timezone.utc).date() - timedelta(days=days)
        return datetime.combine(first_day, time.min, tzinfo=timezone.utc)

    since = {m: day_start(min(validity, fidelity_every(plan) or validity)) for m, plan in plans.items()}
    void_artifacts = corrected_ids(session, "artifact", at)
    arts: dict[str, list[tuple[str, str]]] = {}
    for aid, mid, kind in session.execute(
            select(Artifact.id, Artifact.model_id, Artifact.kind)
            .where(Artifact.recorded_at <= at, Artifact.kind.in_(sorted(FIDELITY_KINDS))).order_by(Artifact.id)):
        if aid not in void_artifacts and kind in required.get(mid, ()):
            arts.setdefault(mid, []).append((aid, kind))
    return DuePlan(at=at, versions=tuple((v.id, v.model_id, v.label) for v in deployed), since=since, artifacts=arts,
                   first=day_start(validity), void_checks=frozenset(corrected_ids(session, "check", at)))


def latest_counting(session: Session, plan: DuePlan) -> dict[tuple[str, int], int]:
    """Per (artifact, deployed version) of ``plan``, when its latest counting fidelity check known
    at ``plan.at`` finished inside the widest validity window (UTC nanoseconds), aggregated in SQL."""
    at, vids = plan.at, plan.version_ids
    latest: dict[tuple[str, int], int] = {}
    for i in range(0, len(vids), 5000):
        q = (select(Check.artifact_id, Check.version_id, func.max(Check.finished_at))
             .where(Check.kind == "fidelity", Check.status.in_(COUNTING), Check.finished_at <= at,
                    Check.recorded_at <= at,  # known at `at`: a check recorded later (a backfill) was not
                    Check.finished_at >= plan.first, Check.version_id.in_(vids[i:i + 5000]))
             .group_by(Check.artifact_id, Check.version_id))
        if plan.void_checks:
            q = q.where(Check.id.not_in(sorted(plan.void_checks)))
        latest.update({(a, v): _ns(fin) for a, v, fin in session.execute(q)})
    return latest


def latest_counting_in(checks, plan: DuePlan) -> dict[tuple[str, int], int] | None:
    """:func:`latest_counting` from the fidelity checks already read as of ``plan.at`` (a frame
    of the analysis load before its screen: check_id, version_id, artifact_id, status,
    finished_at, every check recorded by then), with the same filters, in numpy; None when the
    frame's times or versions are not all parsed (the SQL aggregate decides then)."""
    import numpy as np
    import pandas as pd

    from compliance.analysis.quality import isin_mask

    fin, ver = checks["finished_at"], checks["version_id"]
    if not isinstance(fin.dtype, pd.DatetimeTZDtype) or not pd.api.types.is_integer_dtype(ver.dtype):
        return None
    ns = fin.array.as_unit("ns").asi8
    vid = ver.to_numpy(np.int64)
    vids = np.unique(np.asarray(plan.version_ids, np.int64))
    pos = np.minimum(np.searchsorted(vids, vid), len(vids) - 1)
    keep = (vids[pos] == vid) & (ns >= _ns(plan.first)) & (ns <= _ns(plan.at)) & isin_mask(checks["status"], COUNTING)
    if plan.void_checks:
        keep &= ~np.isin(checks["check_id"].to_numpy(), np.fromiter(plan.void_checks, np.int64))
    art = checks["artifact_id"]
    codes, names = ((art.cat.codes.to_numpy(), art.cat.categories) if isinstance(art.dtype, pd.CategoricalDtype)
                    else pd.factorize(art))
    rows = np.flatnonzero(keep & (codes >= 0))
    last = pd.Series(ns[rows]).groupby([codes[rows], vid[rows]], sort=False).max()
    names = np.asarray(names, dtype=object)
    return {(names[a], int(v)): int(t) for (a, v), t in last.items()}


def _ns(t: datetime) -> int:
    """An aware time as UTC nanoseconds since the epoch (exact to the microsecond)."""
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def due_from(plan: DuePlan, latest: dict[tuple[str, int], int]) -> list[dict]:
    """The pairs of ``plan`` due given ``latest`` (:func:`latest_counting`)."""
    out = []
    for vid, mid, label in plan.versions:
        since = _ns(plan.since[mid])
        for aid, kind in plan.artifacts.get(mid, []):
            fin = latest.get((aid, vid))
            if fin is None or fin < since:
                out.append({"artifact_id": aid, "kind": kind, "model_id": mid, "version": label, "version_id": vid})
    return out


def run_due_each(open_session: Callable[..., AbstractContextManager[Session]], at: datetime, *, dry_run: bool = False,
                 progress: Callable[[int, int, dict], None] | None = None, max_rows: int | None = 20_000) -> dict:
    """:func:`run_due` in short transactions: each check is computed without holding the write
    lock and committed on its own (a crash keeps every check that finished), then failure modes
    are detected in a transaction of their own. ``open_session(short_writes=..., readonly=...)``
    returns a session context (:func:`compliance.store.engine.session_scope` with the command's
    URL, actor and clock)."""
    pairs, tasks, not_run, before = due_plan(open_session, at, dry_run=dry_run)
    if dry_run:
        return {"at": at, "due": pairs, "planned": tasks, "not_run": not_run, "ran": [], "failure_modes_opened": []}
    ran = []
    for i, p in enumerate(pairs):
        if progress:
            progress(i, len(pairs), p)
        with open_session(short_writes=True) as s:
            c = run_fidelity(s, p["artifact_id"], p["version"], adapter=True, max_rows=max_rows)
        ran.append({**p, "check_id": c["id"], "status": c["status"], "explained_variance": c["explained_variance"]})
    for t in tasks:
        try:
            with open_session(short_writes=True) as s:
                ran.append(run_plan_task(s, t, at))
        except ComplianceError as exc:
            not_run.append({**t, "why": str(exc)})
    if progress:
        progress(len(pairs), len(pairs), {})
    return due_finish(open_session, at, pairs, tasks, ran, not_run, before)


def due_plan(open_session, at: datetime, *, dry_run: bool = False) -> tuple[list[dict], list[dict], list[dict], dict]:
    """What is due at ``at`` (fidelity pairs, planned tasks, what the plans cannot run) and the
    verdicts before running it (for the verdict-change alerts)."""
    from compliance.services.plans import plan_tasks

    with open_session(readonly=True) as s:
        pairs = due_pairs(s, at)
        tasks, not_run = plan_tasks(s, at)
        before = {} if dry_run else verdicts_at(s, at)
    return pairs, tasks, not_run, before


def due_finish(open_session, at: datetime, pairs: list[dict], tasks: list[dict], ran: list[dict], not_run: list[dict],
               before: dict) -> dict:
    """After the due checks: detect failure modes and alert on verdict changes, in one transaction."""
    from compliance.services.governance import detect_failure_modes

    with open_session(short_writes=True) as s:
        opened = detect_failure_modes(s, at)
        verdict_alerts(s, before, verdicts_at(s, at), at)
    return {"at": at, "due": pairs, "planned": tasks, "not_run": not_run, "ran": ran, "failure_modes_opened": opened}


def due_key(item: dict, at: datetime) -> str:
    """Idempotency key of a due check: what it checks, on which version, on which due day."""
    return f"due:{item.get('kind', 'fidelity')}:{item.get('artifact_id') or item['model_id']}:{item['version']}:{at.date()}"


def run_plan_task(session: Session, t: dict, at: datetime) -> dict:
    """Run one check a monitoring plan made due (data drift, overhead, activation drift)."""
    from compliance.checks.intervals import Budget
    from compliance.services.checks import run_activation_drift, run_drift, run_overhead
    from compliance.services.plans import resolve_data

    b = t.get("budget") or None
    budget = Budget(seconds=b.get("seconds"), rows=b.get("rows")) if b else None
    every = None
    if t.get("data") and "path" in t["data"]:
        from compliance.services.plans import plan_in_force

        spec = plan_in_force(session, t["model_id"], at)["document"]["checks"].get(t["kind"]) or {}
        every = spec.get("every_days")
    path, window = resolve_data(session, t["model_id"], t.get("data"), every, at)
    if t["kind"] == "data_drift":
        c = run_drift(session, t["model_id"], t["version"], current=path, window=window if path else (None, None),
                      budget=budget)
    elif t["kind"] == "overhead":
        c = run_overhead(session, t["artifact_id"], t["version"], data=path)
    else:
        c = run_activation_drift(session, t["artifact_id"], t["version"], reference=t["reference"], current=path,
                                 budget=budget)
    return {**t, "check_id": c["id"], "status": c["status"], "explained_variance": c.get("explained_variance")}


def run_due(session: Session, at: datetime, *, dry_run: bool = False,
            progress: Callable[[int, int, dict], None] | None = None, max_rows: int | None = 20_000,
            budget=None) -> dict:
    """Run every due fidelity check through the model adapter, then detect failure modes, all in
    the caller's one transaction (without a budget the CLI and the API use :func:`run_due_each`).

    With a ``budget`` (``compliance.checks.intervals.Budget``: a total shared by all due checks)
    the due checks run highest tier-weighted outstanding debt first (the model's
    ``weighted_debt_outstanding`` at ``at``), each on an equal share of what is left of the first
    pass's 60 %; what the budget cannot reach is listed under ``not_run``. The rest escalates the
    ``inconclusive`` checks: each is re-run on the rows that would likely decide it (a new check;
    the inconclusive one stays in the record)."""
    from compliance.services.governance import detect_failure_modes

    from compliance.services.plans import plan_tasks

    pairs = due_pairs(session, at)
    tasks, plan_not_run = plan_tasks(session, at)
    if budget is not None:
        pairs = debt_order(session, at, pairs)
    if dry_run:
        return {"at": at, "due": pairs, "planned": tasks, "not_run": plan_not_run, "ran": [],
                "failure_modes_opened": []}
    before = verdicts_at(session, at)
    if budget is not None:
        ran, not_run = _run_budgeted(session, pairs, budget, progress)
        not_run += plan_not_run + [{**t, "why": "a shared --budget runs fidelity only; planned checks run without it"}
                                   for t in tasks]
        if progress:
            progress(len(pairs), len(pairs), {})
        opened = detect_failure_modes(session, at)
        verdict_alerts(session, before, verdicts_at(session, at), at)
        return {"at": at, "due": pairs, "planned": tasks, "ran": ran, "not_run": not_run, "budget": budget.to_dict(),
                "failure_modes_opened": opened}
    ran = []
    deferred = session.info.get("defer_detection")
    session.info["defer_detection"] = True  # one detection for the batch, below, in the same transaction
    try:
        for i, p in enumerate(pairs):
            if progress:
                progress(i, len(pairs), p)
            c = run_fidelity(session, p["artifact_id"], p["version"], adapter=True, max_rows=max_rows)
            ran.append({**p, "check_id": c["id"], "status": c["status"], "explained_variance": c["explained_variance"]})
        for t in tasks:
            try:  # a plan task refuses bad input (missing data, look-ahead) before it writes anything
                ran.append(run_plan_task(session, t, at))
            except ComplianceError as exc:
                plan_not_run.append({**t, "why": str(exc)})
    finally:
        session.info["defer_detection"] = deferred
    if progress:
        progress(len(pairs), len(pairs), {})
    opened = detect_failure_modes(session, at)
    verdict_alerts(session, before, verdicts_at(session, at), at)
    return {"at": at, "due": pairs, "planned": tasks, "ran": ran, "not_run": plan_not_run,
            "failure_modes_opened": opened}


def debt_order(session: Session, at: datetime, pairs: list[dict]) -> list[dict]:
    """Due pairs, highest tier-weighted outstanding debt of their model first (ties: model, artifact)."""
    if not pairs:
        return pairs
    from compliance.analysis.calendar import quarter_of
    from compliance.services.analysis import analyse

    qa = analyse(session, str(quarter_of(at)), at, detail=False)
    debt = {r["model_id"]: float(r.get("weighted_debt_outstanding") or 0.0) for r in qa["by_model"]}
    for p in pairs:
        p["weighted_debt_outstanding"] = debt.get(p["model_id"], 0.0)
    return sorted(pairs, key=lambda p: (-p["weighted_debt_outstanding"], p["model_id"], p["artifact_id"]))


def _run_budgeted(session: Session, pairs: list[dict], budget, progress) -> tuple[list[dict], list[dict]]:
    import time as _time

    from compliance.checks.intervals import INCONCLUSIVE, Budget
    from compliance.services.budgeted import BUDGETABLE

    used_rows = 0

    def left() -> tuple[float | None, int | None]:
        s = None if budget.seconds is None else budget.seconds - (_time.perf_counter() - budget.t0)
        r = None if budget.rows is None else budget.rows - used_rows
        return s, r

    def spent(s, r) -> bool:
        return (s is not None and s < 1.0) or (r is not None and r < 1)

    def one(p, seconds, rows, seed, escalated=False):
        nonlocal used_rows
        c = run_fidelity(session, p["artifact_id"], p["version"], adapter=True,
                         budget=Budget(seconds=seconds, rows=rows, seed=seed))
        used_rows += int((c.get("parameters") or {}).get("rows_used") or 0)
        return {**p, "check_id": c["id"], "status": c["status"], "explained_variance": c["explained_variance"],
                "rows_used": (c.get("parameters") or {}).get("rows_used"), "escalated": escalated,
                "rows_to_decide": (c.get("metrics") or {}).get("rows_to_decide")}

    todo = [p for p in pairs if p["kind"] in BUDGETABLE]
    not_run = [{**p, "why": f"{p['kind']} artifacts are not checked under a budget"} for p in pairs
               if p["kind"] not in BUDGETABLE]
    ran = []
    # the first pass spends at most FIRST_PASS of the budget; the rest is kept for escalation
    hold_s = None if budget.seconds is None else (1 - FIRST_PASS) * budget.seconds
    hold_r = None if budget.rows is None else int((1 - FIRST_PASS) * budget.rows)
    for i, p in enumerate(todo):
        s, r = left()
        s = None if s is None else s - hold_s
        r = None if r is None else r - hold_r
        if spent(s, r):
            not_run.extend({**q, "why": "budget spent"} for q in todo[i:])
            break
        if progress:
            progress(i, len(todo), p)
        k = len(todo) - i
        ran.append(one(p, None if s is None else s / k, None if r is None else max(1, r // k), budget.seed + i))
    # escalation: what is left goes to the inconclusive checks, each up to the rows that would decide it
    pending = [x for x in ran if x["status"] == INCONCLUSIVE]
    for j, x in enumerate(pending):
        s, r = left()
        if spent(s, r):
            break
        k = len(pending) - j
        rows = x.get("rows_to_decide") or None
        if r is not None:
            rows = min(rows or r, r)
        p = {key: x[key] for key in ("artifact_id", "kind", "model_id", "version", "version_id",
                                     "weighted_debt_outstanding") if key in x}
        ran.append(one(p, None if s is None else s / k, rows, budget.seed + 100_003 + j, escalated=True))
    return ran, not_run
