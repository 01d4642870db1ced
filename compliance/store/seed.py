"""Catalog rows installed by the migrations, written through the ledger like any evidence."""

from __future__ import annotations

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


def seed_catalog(conn: Connection, clock=None) -> None:
    """``clock``: the store's clock when the caller replays history (the demo); default now."""
    session = Session(bind=conn)
    session.info["actor"] = MIGRATION_ACTOR
    session.info["clock"] = clock or utcnow
    rows = [FailureMode(code=c, title=t, severity=sev, description=d, detection_rule=r, mitigation=m)
            for c, t, sev, d, r, m in FAILURE_MODES]
    rows.append(Policy(version=1, document=default_policy(), comment="default policy (DESIGN §5)"))
    record_many(session, rows)
    session.flush()
