"""The default policy (DESIGN §5), methodology v2: installed by the first migration on a new store;
a store created before v2 gets the v2 keys added by migration 0002 (its own values kept).

Every threshold a check or the coverage engine applies is read from the policy version in
force at the time, never from code; these are only the defaults a new store starts with.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_POLICY: dict[str, Any] = {
    "methodology": 2,  # the methodology version (docs/methodology.md) this policy is read with
    "validity_days": 90,
    "warn_needs_acceptance": True,  # a warn makes an artifact valid only once a validator accepts it
    "fidelity": {
        "ev_warn": 0.8,  # explained variance below -> warn
        "ev_fail": 0.6,  # explained variance below -> fail
        "decay_warn": 0.1,  # baseline EV - current EV above -> warn
        "decay_fail": 0.2,  # ... above -> fail
        "dead_fraction_warn": 0.2,
        "dense_fraction_warn": 0.1,  # share of features firing on > 10 % of rows (DESIGN §5)
        "flip_warn": 0.01,  # decision flip rate above -> warn
        "flip_fail": 0.05,  # ... above -> fail
        "baseline_gap_warn": 0.15,  # attribution baseline's score vs population mean score
    },
    "drift": {"psi_warn": 0.1, "psi_fail": 0.25, "drift_share": 0.5,
              "share_fail": 0.3,  # the dataset fails when this share of its inputs fail
              "key_driver_count": 5,  # default key drivers: top-N inputs of the attribution baseline
              "missing_warn": 0.05, "missing_fail": 0.1},  # increase of a feature's missing share (current - reference)
    "key_drivers": {},  # model id -> [input column, ...]; overrides the attribution baseline's top N
    "activation_drift": {"psi_warn": 0.1, "psi_fail": 0.25, "newly_dead_warn": 0.05,
                         "dead_fraction_warn": 0.2, "dense_fraction_warn": 0.9},
    "overhead": {"overhead_budget": 0.10, "overhead_warn_share": 0.8},
    "probe": {"auc_warn": 0.7, "auc_fail": 0.6,  # probe fidelity: AUC below -> warn / fail
              "protected_auc_warn": 0.7, "protected_auc_fail": 0.8},  # protected attribute: AUC above
    # Outcomes analysis (compliance check performance): judged on rows whose outcome has matured.
    "performance": {"maturity_days": 365,  # an outcome is known this long after the decision (fraud: ~60)
                    "min_matured_rows": 100,  # fewer matured rows -> warn, figures not judged
                    "auc_warn": 0.65, "auc_fail": 0.55,  # AUC below -> warn / fail
                    "auc_drop_warn": 0.05, "auc_drop_fail": 0.10,  # development AUC - current AUC above
                    "psi_warn": 0.1, "psi_fail": 0.25,  # score PSI against the development scores
                    "calibration_error_warn": 0.02, "calibration_error_fail": 0.05},  # mean |observed - predicted|
    # Group fairness of the decision (compliance check fairness); a fail flags FM-PROTECTED.
    "fairness": {"air_warn": 0.8, "air_fail": 0.7,  # adverse impact ratio below (four-fifths rule)
                 "eod_warn": 0.1, "eod_fail": 0.2,  # |equal-opportunity difference| above
                 "aod_warn": 0.1, "aod_fail": 0.2,  # |average-odds difference| above
                 "calibration_gap_warn": 0.05,  # |a group's (observed - predicted) - the reference's| above
                 "min_group_size": 50},  # smaller groups are reported, not judged
    "alignment": {"survival_cosine": 0.7, "min_survival": 0.5, "survival_fail": None, "min_cka": 0.5},
    # Adaptation (DESIGN §9): whether a stale or broken SAE/transcoder/CLT of the tier may be adapted
    # (warm-started and fine-tuned on the deployed version) instead of retrained, and the share of the
    # adaptation data held out for its fidelity check. Per tier: tiers.<t>.adaptation.allowed.
    "adaptation": {"allowed": True, "holdout_share": 0.2},
    "required_groups": {
        "1": [["sae", "transcoder", "clt"], ["attribution_baseline"]],
        "2": [["sae", "transcoder", "clt"]],
        "3": [],
    },
    "tier_weights": {"1": 3, "2": 2, "3": 1},
    # Default monitoring plan per tier (DESIGN §10): what `check run --due` follows for a model with no
    # plan of its own (`compliance plan set`). Misses against a default plan are shown, not opened as
    # FM-MISSED: the commitment an examiner holds a bank to is the plan it recorded.
    "monitoring": {
        "1": {"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "90d"}]}}},
        "2": {"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "90d"}]}}},
        "3": {},
    },
    # Per-tier overrides of the threshold sections (fidelity, drift, activation_drift, overhead, probe,
    # performance, fairness)
    # and of validity_days, e.g. {"1": {"fidelity": {"flip_fail": 0.02}}}.
    "tiers": {"1": {}, "2": {}, "3": {}},
}
# Documented ranges of the policy's numbers (low, high, whole number?); every other number is a
# share in [0, 1]. The policy service refuses a value outside them; the analysis replaces a stored
# one (written by an older release) by the default and reports it.
RANGES: dict[str, tuple[float, float, bool]] = {
    "validity_days": (1, 3650, True),
    "methodology": (1, 100, True),
    "key_driver_count": (0, 1000, True),
    "maturity_days": (0, 3650, True),  # outcome label lag (performance checks)
    "min_matured_rows": (0, 10**9, True),
    "min_group_size": (1, 10**9, True),  # fairness: smaller groups are reported, not judged
    "ev_warn": (-1.0, 1.0, False),  # explained variance can be negative (worse than the mean)
    "ev_fail": (-1.0, 1.0, False),
    "psi_warn": (0.0, 10.0, False),
    "psi_fail": (0.0, 10.0, False),
    "overhead_budget": (0.0, 100.0, False),
}
SHARE: tuple[float, float, bool] = (0.0, 1.0, False)
TIER_OVERRIDABLE = ("validity_days", "fidelity", "drift", "activation_drift", "overhead", "probe", "performance",
                    "fairness", "adaptation")


def default_policy() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_POLICY)


def _overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("required_groups", "tier_weights"):
            out[k] = _overlay(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def upgrade_policy_document(old: dict[str, Any]) -> dict[str, Any]:
    """A pre-v2 policy with the v2 keys added: every value the old document set is kept."""
    doc = _overlay(default_policy(), old)
    doc["methodology"] = 2
    return doc


def policy_for_tier(doc: dict[str, Any], tier: int | str | None) -> dict[str, Any]:
    """The policy document with the tier's overrides applied (``tiers.<tier>``)."""
    if tier is None:
        return doc
    over = (doc.get("tiers") or {}).get(str(int(tier))) or {}
    return _overlay(doc, over) if over else doc
