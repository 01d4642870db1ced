"""The part of the policy (DESIGN §5) the analysis reads, normalised from the stored dict.

Keys read (defaults in brackets): ``validity_days`` [90], ``required_groups``
[{1: [[sae, transcoder, clt], [attribution_baseline]], 2: [[sae, transcoder, clt]], 3: []}],
``tier_weights`` [{1: 3, 2: 2, 3: 1}], ``min_survival`` [0.5], ``ev_warn`` [0.8], ``ev_fail`` [0.6],
``decay_warn`` [0.1], ``decay_fail`` [0.2], ``warn_needs_acceptance`` [true], ``methodology`` [2]. Tier keys may be ints or strings ("1") as they come
from JSON/YAML. A tier absent from ``required_groups`` has no requirements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from compliance.errors import UsageError

from .frames import ARTIFACT_KINDS

DEFAULT_REQUIRED_GROUPS = {1: [["sae", "transcoder", "clt"], ["attribution_baseline"]],
                           2: [["sae", "transcoder", "clt"]], 3: []}
DEFAULT_TIER_WEIGHTS = {1: 3.0, 2: 2.0, 3: 1.0}


@dataclass(frozen=True)
class AnalysisPolicy:
    validity_days: int = 90
    required_groups: dict[int, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    tier_weights: dict[int, float] = field(default_factory=dict)
    min_survival: float = 0.5
    ev_warn: float = 0.8
    ev_fail: float = 0.6
    decay_warn: float = 0.1
    decay_fail: float = 0.2
    warn_needs_acceptance: bool = True
    methodology: int = 2

    def groups(self, tier: int) -> tuple[tuple[str, ...], ...]:
        return self.required_groups.get(int(tier), ())

    @staticmethod
    def group_name(group: tuple[str, ...]) -> str:
        return "|".join(group)


def _num(policy: Mapping[str, Any], key: str, default: float) -> float:
    v = policy.get(key, default)
    if isinstance(v, Mapping):  # nested threshold dicts such as {"fidelity": {"ev_warn": ..}}
        raise UsageError(f"policy {key} must be a number")
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"policy {key} must be a number, got {v!r}") from exc


def normalise_policy(policy: Mapping[str, Any] | AnalysisPolicy | None) -> AnalysisPolicy:
    """Read the analysis' view of a policy dict (``UsageError`` for malformed values)."""
    if isinstance(policy, AnalysisPolicy):
        return policy
    policy = dict(policy or {})
    fid = policy.get("fidelity") if isinstance(policy.get("fidelity"), Mapping) else {}
    vd = policy.get("validity_days", 90)
    if not isinstance(vd, (int, float)) or int(vd) != vd or vd < 0:
        raise UsageError(f"policy validity_days must be a non-negative whole number, got {vd!r}")
    raw_groups = policy.get("required_groups", DEFAULT_REQUIRED_GROUPS)
    groups: dict[int, tuple[tuple[str, ...], ...]] = {}
    for tier, gs in dict(raw_groups).items():
        try:
            t = int(tier)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"policy required_groups has a bad tier {tier!r}") from exc
        norm = []
        for g in gs or []:
            if isinstance(g, str):
                g = [g]
            kinds = tuple(dict.fromkeys(str(k) for k in g))
            unknown = [k for k in kinds if k not in ARTIFACT_KINDS]
            if unknown or not kinds:
                raise UsageError(f"policy required_groups tier {t}: unknown or empty artifact kind group {list(g)!r}")
            norm.append(kinds)
        groups[t] = tuple(norm)
    raw_w = policy.get("tier_weights", DEFAULT_TIER_WEIGHTS)
    weights = {int(k): float(v) for k, v in dict(raw_w).items()}
    for t in (1, 2, 3):
        weights.setdefault(t, DEFAULT_TIER_WEIGHTS[t])

    def pick(key: str, default: float) -> float:
        if key in fid:
            return _num(fid, key, default)
        return _num(policy, key, default)

    return AnalysisPolicy(
        validity_days=int(vd), required_groups=groups, tier_weights=weights,
        min_survival=_num(policy["alignment"], "min_survival", 0.5)
        if isinstance(policy.get("alignment"), Mapping) and "min_survival" in policy["alignment"]
        else _num(policy, "min_survival", 0.5),
        ev_warn=pick("ev_warn", 0.8), ev_fail=pick("ev_fail", 0.6),
        decay_warn=pick("decay_warn", 0.1), decay_fail=pick("decay_fail", 0.2),
        warn_needs_acceptance=_flag(policy, "warn_needs_acceptance", True),
        methodology=int(_num(policy, "methodology", 2)),
    )


def _flag(policy: Mapping[str, Any], key: str, default: bool) -> bool:
    v = policy.get(key, default)
    if not isinstance(v, bool):
        raise UsageError(f"policy {key} must be true or false, got {v!r}")
    return v
