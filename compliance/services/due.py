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
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compliance.services.checks import run_fidelity
from compliance.services.policy import policy_at
from compliance.store.models import Artifact, Check, DeploymentEvent, Model, ModelVersion

FIDELITY_KINDS = {"sae", "transcoder", "clt", "attribution_baseline"}


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


def due_pairs(session: Session, at: datetime) -> list[dict]:
    policy = policy_at(session, at)
    groups = policy.get("required_groups") or {}
    # Validity counts whole UTC days (DESIGN §4): a check finished on day d - validity_days still counts on day d.
    first_day = at.astimezone(timezone.utc).date() - timedelta(days=int(policy.get("validity_days", 90)))
    since = datetime.combine(first_day, time.min, tzinfo=timezone.utc)
    tiers = {m.id: m.tier for m in session.scalars(select(Model))}
    from compliance.services.corrections import corrected_ids

    void_checks = corrected_ids(session, "check", at)
    void_artifacts = corrected_ids(session, "artifact", at)
    recent = {(a, v) for cid, a, v in session.execute(
        select(Check.id, Check.artifact_id, Check.version_id).where(
            Check.kind == "fidelity", Check.status.in_(("pass", "warn", "fail")),
            Check.finished_at <= at, Check.finished_at >= since)) if cid not in void_checks}
    arts: dict[str, list[Artifact]] = {}
    for a in session.scalars(select(Artifact).where(Artifact.recorded_at <= at).order_by(Artifact.id)):
        if a.id in void_artifacts:
            continue
        arts.setdefault(a.model_id, []).append(a)
    out = []
    for v in deployed_versions(session, at):
        required = {k for g in groups.get(str(tiers.get(v.model_id)), []) for k in g} & FIDELITY_KINDS
        for a in arts.get(v.model_id, []):
            if a.kind in required and (a.id, v.id) not in recent:
                out.append({"artifact_id": a.id, "kind": a.kind, "model_id": v.model_id, "version": v.label,
                            "version_id": v.id})
    return out


def run_due_each(open_session: Callable[..., AbstractContextManager[Session]], at: datetime, *, dry_run: bool = False,
                 progress: Callable[[int, int, dict], None] | None = None, max_rows: int | None = 20_000) -> dict:
    """:func:`run_due` in short transactions: each check is computed without holding the write
    lock and committed on its own (a crash keeps every check that finished), then failure modes
    are detected in a transaction of their own. ``open_session(short_writes=..., readonly=...)``
    returns a session context (:func:`compliance.store.engine.session_scope` with the command's
    URL, actor and clock)."""
    from compliance.services.governance import detect_failure_modes

    with open_session(readonly=True) as s:
        pairs = due_pairs(s, at)
    if dry_run:
        return {"at": at, "due": pairs, "ran": [], "failure_modes_opened": []}
    ran = []
    for i, p in enumerate(pairs):
        if progress:
            progress(i, len(pairs), p)
        with open_session(short_writes=True) as s:
            c = run_fidelity(s, p["artifact_id"], p["version"], adapter=True, max_rows=max_rows)
        ran.append({**p, "check_id": c["id"], "status": c["status"], "explained_variance": c["explained_variance"]})
    if progress:
        progress(len(pairs), len(pairs), {})
    with open_session(short_writes=True) as s:
        opened = detect_failure_modes(s, at)
    return {"at": at, "due": pairs, "ran": ran, "failure_modes_opened": opened}


def run_due(session: Session, at: datetime, *, dry_run: bool = False,
            progress: Callable[[int, int, dict], None] | None = None, max_rows: int | None = 20_000) -> dict:
    """Run every due fidelity check through the model adapter, then detect failure modes, all in
    the caller's one transaction (the CLI and the API use :func:`run_due_each` instead)."""
    from compliance.services.governance import detect_failure_modes

    pairs = due_pairs(session, at)
    if dry_run:
        return {"at": at, "due": pairs, "ran": [], "failure_modes_opened": []}
    ran = []
    deferred = session.info.get("defer_detection")
    session.info["defer_detection"] = True  # one detection for the batch, below, in the same transaction
    try:
        for i, p in enumerate(pairs):
            if progress:
                progress(i, len(pairs), p)
            c = run_fidelity(session, p["artifact_id"], p["version"], adapter=True, max_rows=max_rows)
            ran.append({**p, "check_id": c["id"], "status": c["status"], "explained_variance": c["explained_variance"]})
    finally:
        session.info["defer_detection"] = deferred
    if progress:
        progress(len(pairs), len(pairs), {})
    opened = detect_failure_modes(session, at)
    return {"at": at, "due": pairs, "ran": ran, "failure_modes_opened": opened}
