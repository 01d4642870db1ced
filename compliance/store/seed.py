"""Catalog rows installed by the migrations, written through the ledger like any evidence."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from compliance.policy_defaults import default_policy
from compliance.store.ledger import record_many
from compliance.store.models import FailureMode, Policy
from compliance.timeutil import utcnow

MIGRATION_ACTOR = "system:migration"

# (code, title, severity, description, detection rule, mitigation) — DESIGN §6.
FAILURE_MODES = [
    ("FM-STALE", "Artifact not re-validated after retrain", "high",
     "An interpretability artifact is bound to an older model version and has not been re-validated on the version that is deployed; its explanations describe a model that no longer runs.",
     "A deployed version whose model has an artifact bound to an older version with no passing or warning fidelity check on the deployed version within the validity window.",
     "Re-run the fidelity check on the deployed version (`compliance check run --due`); retrain the artifact if it fails."),
    ("FM-DECAY", "Fidelity below floor or decayed from baseline", "high",
     "The artifact's reconstruction of the deployed version's activations is below the policy floor or has decayed from its baseline on the bound version.",
     "A fidelity check whose explained variance is below the policy floor, or whose decay from the baseline explained variance exceeds the policy limit.",
     "Retrain the artifact on the deployed version's activations; restrict use of its explanations until then."),
    ("FM-DRIFT-BRITTLE", "Explanations brittle under input drift", "high",
     "Production inputs drifted and the artifact's fidelity on the drifted window degraded: explanations are confident and wrong under shift.",
     "A failing data-drift check on a version followed, within the validity window, by a fidelity check on that version that warns, fails or decays from baseline.",
     "Retrain the artifact on post-shift data; review the model's performance on the shifted segment."),
    ("FM-SILENT", "Deployed version without evidence", "critical",
     "A deployed model version has no check of any kind within the validity window: absence of evidence, which must never be read as a pass.",
     "A version deployed at the detection time with no check finished within validity_days before it.",
     "Register the artifacts and schedule `compliance check run --due`."),
    ("FM-OVERHEAD", "Interpretability compute over budget", "medium",
     "Attaching the artifact costs more latency than the policy budget allows, so it cannot run in production monitoring.",
     "An overhead check whose measured latency overhead exceeds the policy budget.",
     "Use a narrower or sparser artifact, sample traffic, or run explanations asynchronously."),
    ("FM-DEAD", "Dead or dense features on production data", "medium",
     "Too many of the artifact's features never fire (dead) or fire on most inputs (dense) on production data, so its vocabulary no longer fits the model.",
     "A fidelity or activation-drift check whose dead or dense fraction exceeds the policy limit.",
     "Retrain or resample the artifact on current data; review feature labels."),
    ("FM-DECISION", "Spliced reconstruction flips decisions", "high",
     "Replacing the activation by the artifact's reconstruction changes the model's decisions beyond policy: the explanation is not faithful where it matters.",
     "A fidelity check whose decision flip rate exceeds the policy limit.",
     "Retrain the artifact; do not use its explanations for adverse-action reasons until fixed."),
    ("FM-LABELS", "Feature labels lost on replacement", "medium",
     "An artifact was replaced and too few of its features survive in the replacement, so the human labels validators relied on no longer carry over.",
     "An alignment check whose feature survival share is below the policy minimum.",
     "Relabel the replacement's features and re-review the explanations built on them."),
    ("FM-ERROR", "Check could not run", "high",
     "A check failed to run (missing file, hash mismatch, shape mismatch, NaN input); no evidence was produced.",
     "Any check recorded with status error.",
     "Fix the input named in the error and re-run the check."),
]
INITIAL_CODES = tuple(fm[0] for fm in FAILURE_MODES)  # seeded by 0001_initial

# Added by methodology v2 (migration 0002_methodology_v2), DESIGN §6.
FAILURE_MODES_V2 = [
    ("FM-PROTECTED", "Protected attribute decodable from the explained representation", "high",
     "A protected attribute (age, sex, ...) is linearly decodable from the representation the explanations rely on: "
     "explanations may launder a protected characteristic into a decision.",
     "A probe check on a probe whose target is a protected attribute with AUC above the policy limit "
     "(probe.protected_auc_warn / protected_auc_fail).",
     "Review the model's use of the attribute with fair-lending / conduct teams; remove or mitigate the encoding; "
     "document the residual risk."),
    ("FM-UNVALIDATED", "Version live before its required evidence passed", "high",
     "A model version was deployed before every required artifact group had valid evidence on it: it went live "
     "unexplained, with no gate decision.",
     "A deploy event of a version of an in-scope model at a time when some required group had no artifact valid "
     "for that version.",
     "Validate the version's artifacts now; gate future promotions on the required evidence."),
    ("FM-MISSED", "Planned check did not run on time", "medium",
     "The model's monitoring plan required a check that did not run by its due date.",
     "A check kind required by the monitoring plan with no check recorded by the date it was due.",
     "Run the missed check; fix the scheduler or the plan."),
]


def _session(conn: Connection, clock) -> Session:
    session = Session(bind=conn)
    session.info["actor"] = MIGRATION_ACTOR
    session.info["clock"] = clock or utcnow
    return session


def seed_catalog(conn: Connection, clock=None) -> None:
    """``clock``: the store's clock when the caller replays history (the demo); default now."""
    session = _session(conn, clock)
    rows = [FailureMode(code=c, title=t, severity=sev, description=d, detection_rule=r, mitigation=m)
            for c, t, sev, d, r, m in FAILURE_MODES]
    rows.append(Policy(version=1, document=default_policy(), comment="default policy (DESIGN §5)"))
    record_many(session, rows)
    session.flush()


def seed_methodology_v2(conn: Connection, clock=None) -> None:
    """Migration 0002: the three new catalog entries and, when the policy in force predates
    methodology v2, a new policy version that adds the v2 keys (existing values kept: an upgrade
    never rewrites a threshold a bank chose, and the past keeps the policy it had)."""
    from sqlalchemy import select

    from compliance.policy_defaults import upgrade_policy_document

    session = _session(conn, clock)
    have = set(session.scalars(select(FailureMode.code)))
    rows: list = [FailureMode(code=c, title=t, severity=sev, description=d, detection_rule=r, mitigation=m)
                  for c, t, sev, d, r, m in FAILURE_MODES_V2 if c not in have]
    latest = session.scalars(select(Policy).order_by(Policy.version.desc()).limit(1)).first()
    if latest is not None and latest.document.get("methodology") != 2:
        rows.append(Policy(version=latest.version + 1, document=upgrade_policy_document(latest.document),
                           comment="methodology v2 keys added by migration 0002 (earlier values kept)"))
    record_many(session, rows)
    session.flush()


IDENTITY_NOTE = ("identity enforced from this entry on: earlier entries were written before identity was "
                 "authenticated (their actor is the name the client gave)")


def seed_identity(conn: Connection, clock=None, admin: str | None = None) -> None:
    """Migration 0007: the identity epoch (where authenticated identity starts in the chain) and
    the first admin -- whoever initialises or upgrades the store (``admin``: a replay's named
    admin; default the authenticated login)."""
    from sqlalchemy import select

    from compliance.store.engine import default_actor
    from compliance.store.models import IdentityEpoch, Person, RoleGrant

    session = _session(conn, clock)
    if admin is None:
        admin = (str(session.execute(text("SELECT session_user")).scalar()) if conn.dialect.name == "postgresql"
                 else default_actor())
    rows: list = [IdentityEpoch(mode="authenticated", note=IDENTITY_NOTE)]
    if session.get(Person, admin) is None:
        rows.append(Person(id=admin, name=admin))
    record_many(session, rows)
    if not session.scalars(select(RoleGrant).where(RoleGrant.role == "admin").limit(1)).first():
        record_many(session, [RoleGrant(person_id=admin, role="admin", model_id=None, action="grant")])
    session.flush()
