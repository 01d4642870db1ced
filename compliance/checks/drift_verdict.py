"""The dataset verdict of a data-drift check by column role (DESIGN §3, methodology v2). Pure.

Only ``input`` columns are judged. The dataset **fails** when any key driver fails, or when the
share of failed inputs reaches ``share_fail``; it **warns** when any input fails or warns; it
passes otherwise. ``target`` columns are reported apart as label shift (their own worst status,
never counted as input drift). A feature whose statistics could not be computed is an error
feature; when no input could be evaluated the check is an ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_RANK = {"pass": 0, "warn": 1, "fail": 2, "error": 3}


@dataclass
class RoleVerdict:
    status: str
    reasons: list[str]
    metrics: dict = field(default_factory=dict)


def _psi(f: Mapping) -> str:
    return f"PSI {f['psi']:.3f}" if isinstance(f.get("psi"), (int, float)) else "PSI —"


def role_verdict(per_feature: Sequence[Mapping], inputs: Sequence[str], targets: Sequence[str],
                 key_drivers: Sequence[str] | None, *, share_fail: float,
                 key_driver_source: str) -> RoleVerdict:
    """``per_feature``: rows with ``feature``, ``status`` and ``psi`` (as ``DriftResult.to_dict()``)."""
    by_name = {f["feature"]: f for f in per_feature}
    ins = [by_name[c] for c in inputs if c in by_name]
    tgs = [by_name[c] for c in targets if c in by_name]
    evaluated = [f for f in ins if f["status"] != "error"]
    failed = [f for f in evaluated if f["status"] == "fail"]
    warned = [f for f in evaluated if f["status"] == "warn"]
    keys = [k for k in (key_drivers or []) if k in by_name]
    key_failed = [f for f in failed if f["feature"] in set(keys)]
    share = len(failed) / len(evaluated) if evaluated else None
    reasons: list[str] = []
    if not evaluated:
        status = "error"
        reasons.append("error: no input column could be evaluated")
    elif key_failed or share >= share_fail:
        status = "fail"
        if key_failed:
            reasons.append("fail: key driver(s) drifted: " + ", ".join(f"{f['feature']} ({_psi(f)})" for f in key_failed))
        if share >= share_fail:
            reasons.append(f"fail: {len(failed)}/{len(evaluated)} inputs failed (share {share:.2f} >= {share_fail})")
    elif failed or warned:
        status = "warn"
    else:
        status = "pass"
    if status != "error" and not (status == "fail" and share >= share_fail):
        reasons.append(f"{'info' if status == 'pass' else status}: {len(failed)}/{len(evaluated)} inputs failed "
                       f"(share {share:.2f} < {share_fail})")
    for f in failed + warned:
        if f not in key_failed:
            reasons.append(f"{f['status']}: input {f['feature']} {_psi(f)}")
    if not keys:
        reasons.append(f"note: no key drivers known ({key_driver_source}): only the share rule applies")
    else:
        reasons.append(f"note: key drivers ({key_driver_source}): {', '.join(keys)}")
    label_status = None
    if tgs:
        ranks = [f["status"] for f in tgs]
        label_status = max(ranks, key=lambda s: _RANK.get(s, 0))
        for f in tgs:
            if f["status"] in ("warn", "fail", "error"):
                reasons.append(f"label shift ({f['status']}, not input drift): target {f['feature']} {_psi(f)}")
    metrics = {
        "n_inputs": len(ins), "n_inputs_evaluated": len(evaluated), "n_inputs_failed": len(failed),
        "n_inputs_warn": len(warned), "input_failed_share": share, "share_fail": share_fail,
        "key_drivers": keys, "key_driver_source": key_driver_source,
        "key_drivers_failed": [f["feature"] for f in key_failed],
        "targets": [f["feature"] for f in tgs], "label_shift_status": label_status,
        "label_shift": {f["feature"]: {"psi": f.get("psi"), "status": f["status"]} for f in tgs},
    }
    return RoleVerdict(status, reasons, metrics)
