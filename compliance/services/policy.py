"""Policy: stored and versioned like evidence (DESIGN §5). The version recorded last at or
before time T is the one in force at T; a new version never rewrites the past."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.safeyaml import load_yaml_file
from compliance.errors import InputError
from compliance.policy_defaults import DEFAULT_POLICY, RANGES, SHARE, TIER_OVERRIDABLE, default_policy
from compliance.store.ledger import record
from compliance.store.models import Policy


def policy_record_at(session: Session, at: datetime | None = None) -> dict[str, Any]:
    q = select(Policy).order_by(Policy.version.desc()).limit(1)
    if at is not None:
        q = select(Policy).where(Policy.recorded_at <= at).order_by(Policy.version.desc()).limit(1)
    p = session.scalars(q).first()
    if p is None:  # a store queried before its first policy (as-of before init): the defaults
        p = session.scalars(select(Policy).order_by(Policy.version).limit(1)).first()
    if p is None:
        return {"version": 0, "document": default_policy(), "recorded_at": None, "actor": None, "comment": "defaults"}
    return {"version": p.version, "document": p.document, "recorded_at": p.recorded_at, "actor": p.actor, "comment": p.comment}


def policy_at(session: Session, at: datetime | None = None) -> dict[str, Any]:
    """The policy document in force at ``at``, every number usable (see :func:`screened_policy_at`)."""
    return screened_policy_at(session, at)[0]


def screened_policy_at(session: Session, at: datetime | None = None) -> tuple[dict[str, Any], list]:
    """The policy in force at ``at`` with any number an older release stored unusable (NaN,
    ``validity_days: 1e308``...) replaced by its default, and the data-quality findings saying so."""
    from compliance.analysis.quality import screen_policy

    rec = policy_record_at(session, at)
    return screen_policy(rec["document"], DEFAULT_POLICY, RANGES, SHARE, version=rec["version"])


def _number(value: Any, where: str, name: str, key: str) -> None:
    from compliance.store.door import check_number

    low, high, whole = RANGES.get(key, SHARE)
    try:
        check_number(value, f"{where}: {name}", low=low, high=high, integer=whole)
    except InputError as exc:
        raise InputError(str(exc)) from None


# Adapters are code the tool imports and runs (docs/ledger-and-verification.md §8): only modules
# the policy in force lists may be registered or run. A store whose policy predates the key allows
# the sample bank's adapter only.
ADAPTER_KEY = "adapter_modules"
DEFAULT_ADAPTER_MODULES = ("sample_data.adapter",)
_MODULE = __import__("re").compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def allowed_adapter_modules(session: Session, at: datetime | None = None) -> list[str]:
    doc = policy_at(session, at)
    value = doc.get(ADAPTER_KEY)
    return list(DEFAULT_ADAPTER_MODULES) if value is None else list(value)


def check_adapter_allowed(session: Session, spec: str, at: datetime | None = None) -> None:
    """Refuse an adapter ``module:callable`` whose module (or a package above it) is not listed."""
    from compliance.errors import UsageError

    module = str(spec).partition(":")[0]
    allowed = allowed_adapter_modules(session, at)
    if not any(module == a or module.startswith(a + ".") for a in allowed):
        raise UsageError(f"adapter module {module!r} is not in the policy's {ADAPTER_KEY} "
                         f"({', '.join(allowed) or 'none'}): adapters are code; an administrator "
                         f"must allow the module first (compliance policy set)")


def _validate(doc: Any, where: str, template: dict = DEFAULT_POLICY, path: str = "") -> None:
    """Every key known, every number finite and in its documented range (never NaN), every flag a
    boolean; ``InputError`` naming the first bad key."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: {path or 'policy'} must be a mapping")
    for key, value in doc.items():
        name = f"{path}.{key}" if path else key
        if key == ADAPTER_KEY and not path:
            if not isinstance(value, list) or not all(isinstance(m, str) and _MODULE.match(m) for m in value):
                raise InputError(f"{where}: {ADAPTER_KEY} must be a list of module names like bank.adapters")
            continue
        if key == "monitoring" and not path:
            if not isinstance(value, dict) or not set(map(str, value)) <= {"1", "2", "3"}:
                raise InputError(f"{where}: monitoring must map tiers 1, 2, 3 to default monitoring plans")
            from compliance.analysis.plans import normalise_plan

            for tier, plan in value.items():
                normalise_plan(plan or {}, f"{where}: monitoring.{tier}")
            continue
        if key not in template:
            raise InputError(f"{where}: unknown policy key {name!r}")
        expected = template[key]
        if not path and key == "tiers":
            if not isinstance(value, dict) or not set(map(str, value)) <= {"1", "2", "3"}:
                raise InputError(f"{where}: tiers must map tiers 1, 2, 3 to overrides")
            for tier, over in value.items():
                allowed = {k: DEFAULT_POLICY[k] for k in TIER_OVERRIDABLE}
                _validate(over or {}, where, allowed, f"tiers.{tier}")
            continue
        if not path and key == "key_drivers":
            if not isinstance(value, dict) or not all(
                    isinstance(cols, list) and all(isinstance(c, str) and c for c in cols) for cols in value.values()):
                raise InputError(f"{where}: key_drivers must map model ids to lists of input column names")
            continue
        if key in ("warn_needs_acceptance",):
            if not isinstance(value, bool):
                raise InputError(f"{where}: {name} must be true or false, got {value!r}")
            continue
        if key == "methodology":
            if value != 2:
                raise InputError(f"{where}: methodology must be 2 (this release computes methodology v2)")
            continue
        if key in ("required_groups", "tier_weights") and not path:
            if not isinstance(value, dict) or not set(map(str, value)) <= {"1", "2", "3"}:
                raise InputError(f"{where}: {name} must map tiers 1, 2, 3")
            if key == "required_groups":
                from compliance.services.registry import ARTIFACT_KINDS

                for tier, groups in value.items():
                    if not isinstance(groups, list) or not all(isinstance(g, list) and g and set(g) <= set(ARTIFACT_KINDS) for g in groups):
                        raise InputError(f"{where}: {name}.{tier} must be a list of non-empty lists of artifact kinds")
            else:
                from compliance.store.door import check_number

                for tier, w in value.items():
                    try:
                        check_number(w, f"{where}: {name}.{tier}", low=0.0, high=1000.0)
                    except InputError as exc:
                        raise InputError(str(exc)) from None
            continue
        if isinstance(expected, dict):
            _validate(value, where, expected, name)
        elif isinstance(expected, bool):
            if not isinstance(value, bool):
                raise InputError(f"{where}: {name} must be true or false, got {value!r}")
        elif value is not None or expected is not None:
            if value is None:
                raise InputError(f"{where}: {name} must be a number, got null")
            _number(value, where, name, key)


def set_policy(session: Session, document: dict[str, Any], *, comment: str | None = None, where: str = "policy") -> dict:
    """Record a new policy version: the defaults overlaid with ``document`` (validated)."""
    _validate(document, where)
    current = policy_record_at(session)
    merged = _merge(current["document"], document)
    p = record(session, Policy(version=current["version"] + 1, document=merged, comment=comment))
    return {"version": p.version, "document": p.document, "comment": p.comment}


def set_policy_file(session: Session, path: str | Path, *, comment: str | None = None) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"policy file not found: {p}")
    doc = load_yaml_file(p)
    return set_policy(session, doc or {}, comment=comment or f"from {p.name}", where=p.name)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if k == "monitoring" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}  # a tier's default plan is replaced whole, never merged key by key
        elif isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("required_groups", "tier_weights",
                                                                               "key_drivers"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
