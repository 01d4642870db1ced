"""The default policy (DESIGN §5): version 1, installed by the first migration.

Every threshold a check or the coverage engine applies is read from the policy version in
force at the time, never from code; these are only the defaults a new store starts with.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_POLICY: dict[str, Any] = {
    "validity_days": 90,
    "fidelity": {
        "ev_warn": 0.8,  # explained variance below -> warn
        "ev_fail": 0.6,  # explained variance below -> fail
        "decay_warn": 0.1,  # baseline EV - current EV above -> warn
        "decay_fail": 0.2,  # ... above -> fail
        "dead_fraction_warn": 0.2,
        "dense_fraction_warn": 0.9,  # nearly all features firing on >10 % of rows: not sparse
        "flip_warn": 0.01,  # decision flip rate above -> warn
        "flip_fail": 0.05,  # ... above -> fail
        "baseline_gap_warn": 0.15,  # attribution baseline's score vs population mean score
    },
    "drift": {"psi_warn": 0.1, "psi_fail": 0.25, "drift_share": 0.5},
    "activation_drift": {"psi_warn": 0.1, "psi_fail": 0.25, "newly_dead_warn": 0.05,
                         "dead_fraction_warn": 0.2, "dense_fraction_warn": 0.9},
    "overhead": {"overhead_budget": 0.10, "overhead_warn_share": 0.8},
    "probe": {"auc_warn": 0.7, "auc_fail": 0.6},
    "alignment": {"survival_cosine": 0.7, "min_survival": 0.5, "survival_fail": None, "min_cka": 0.5},
    "required_groups": {
        "1": [["sae", "transcoder", "clt"], ["attribution_baseline"]],
        "2": [["sae", "transcoder", "clt"]],
        "3": [],
    },
    "tier_weights": {"1": 3, "2": 2, "3": 1},
}


def default_policy() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_POLICY)
