"""Adaptation use case (DESIGN §9): `compliance adapt` and `check run --due --adapt`.

One command, one transaction: validate every input (nothing is written on bad input), load the
parent (hashes verified), gather the new version's activations (an activations file, or the
model adapter on registered data, no look-ahead), split them into training and held-out rows
(seeded), fine-tune (``compliance.interp.adapt``), then on the held-out rows measure the parent's
and the child's fidelity and the feature survival, and carry the labels of surviving features.

A child whose held-out fidelity check does not fail and whose explained variance reaches the
policy's ``fidelity.ev_warn`` is registered (artifact + its held-out fidelity check, validated
like any other, + the adaptation record). Otherwise the adaptation is recorded as ``failed``:
no artifact is registered, the parent's debt stays visible. The adapted files are written in
either case (their SHA-256 are recorded) beside a lineage manifest.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance import __version__
from compliance.errors import Conflict, InputError, UsageError
from compliance.hashing import json_safe, sha256_file
from compliance.policy_defaults import DEFAULT_POLICY, policy_for_tier
from compliance.services.checks import (
    MAX_ROWS_DEFAULT,
    _finish,
    _frame,
    _hooks_for,
    _load,
    _start,
    _use_data,
    activations_of_version,
    check_view,
    density_histogram,
    version_model,
)
from compliance.services.data_windows import data_for
from compliance.services.policy import policy_at
from compliance.services.registry import SLUG, add_artifact, get_artifact, get_model, get_version, plain, version_by_id
from compliance.store.ledger import record
from compliance.store.models import Adaptation, Artifact, ArtifactSet

ADAPTABLE_KINDS = ("sae", "transcoder", "clt")
DEFAULT_BUDGET_SECONDS = 300.0


def adaptation_policy(session: Session, model_id: str, at) -> tuple[dict, dict]:
    """(the tier's policy, its ``adaptation`` section with defaults filled in)."""
    pol = policy_for_tier(policy_at(session, at), get_model(session, model_id).tier)
    section = dict(DEFAULT_POLICY["adaptation"], **(pol.get("adaptation") or {}))
    return pol, section


def _settings(budget, steps, seed, lr, batch_rows, sparsity):
    from compliance.checks.intervals import parse_duration
    from compliance.interp.adapt import AdaptSettings

    seconds = None
    if budget is not None:
        seconds = parse_duration(budget) if isinstance(budget, str) else float(budget)
    elif steps is None:
        seconds = DEFAULT_BUDGET_SECONDS
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise UsageError(f"--steps must be a positive whole number, got {steps}")
    if seed is None:
        import secrets

        seed = secrets.randbits(31)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise UsageError(f"--seed must be a whole number >= 0, got {seed}")
    try:
        return AdaptSettings(seed=int(seed), max_steps=steps, max_seconds=seconds, lr=lr, batch_rows=batch_rows,
                             sparsity=sparsity)
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _index_hash(idx) -> str:
    return hashlib.sha256(json.dumps([int(i) for i in idx.tolist()]).encode()).hexdigest()


def _gather(session: Session, st, a: Artifact, v, coder, activations, data, max_rows, device, hashes, params):
    """(all rows as AdaptData, the frame when the adapter was used, else None)."""
    import torch

    from compliance.interp.adapt import check_data

    if activations is not None:
        p = Path(activations)
        if not p.is_file():
            raise InputError(f"activations file not found: {p}")
        params["activations_provenance"] = activations_of_version(p, v)
        hashes["activations"] = sha256_file(p)
        params["source"] = "activations"
        from compliance.interp.fidelity import batch_widths

        tensors = _load_tensors_lenient(p, list(batch_widths(coder)))
        if max_rows:
            tensors = {k: t[:max_rows] for k, t in tensors.items()}
        return check_data(coder, tensors, p.name), None
    model = version_model(session, v)
    hashes["weights"] = v.weights_sha256
    path = _use_data(st, hashes, params, data_for(session, a.model_id, st.started_at, data))
    params["source"] = "adapter"
    frame = _frame(path, max_rows)
    from compliance.interp.downstream import model_activation_batches

    parts: dict[str, list] = {}
    for b in model_activation_batches(coder, model, frame, batch_rows=1024, device=device, **_hooks_for(a)):
        for k, t in b.items():
            parts.setdefault(k, []).append(t.detach().cpu())
    tensors = {k: torch.cat(v_) for k, v_ in parts.items()}
    return check_data(coder, tensors, path.name), (model, frame)


def _load_tensors_lenient(path: Path, names: list[str]) -> dict:
    """The named tensors of an activations file (the missing ones are reported by ``check_data``);
    NaN rows are kept here so that the refusal names the row."""
    from safetensors import safe_open

    from compliance.interp.headers import read_safetensors_header

    read_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            keys = set(fh.keys())
            return {n: fh.get_tensor(n) for n in names if n in keys}
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"cannot read {path.name}: {exc}") from None


def _dest(a: Artifact, new_id: str, out) -> Path:
    if out is not None:
        dest = Path(out)
    else:
        dest = Path(a.path).parent / new_id
    if dest.exists():
        raise Conflict(f"{dest} already exists: choose another --id or --out")
    return dest


def adapt(session: Session, artifact_id: str, to_version: str, *, activations: str | Path | None = None,
          adapter: bool = False, data: str | Path | None = None, budget: str | float | None = None,
          steps: int | None = None, seed: int | None = None, new_id: str | None = None,
          out: str | Path | None = None, device: str | None = None, lr: float = 1e-3, batch_rows: int = 512,
          sparsity: float | None = None, max_rows: int | None = MAX_ROWS_DEFAULT, curve_every: int = 0,
          enforce_policy: bool = True) -> dict:
    """Adapt ``artifact_id`` to version ``to_version`` (see the module docstring). Returns the
    adaptation record (with ``child`` and ``check`` when it succeeded)."""
    if activations is not None and (adapter or data is not None):
        raise UsageError("give either --activations or --adapter [--data], not both")
    if session.get(Artifact, artifact_id) is None and session.get(ArtifactSet, artifact_id) is not None:
        raise UsageError(f"{artifact_id} is an artifact set: adapt its members one by one")
    a = get_artifact(session, artifact_id)
    if a.kind not in ADAPTABLE_KINDS:
        raise InputError(f"a {a.kind} artifact cannot be adapted (adaptation applies to {', '.join(ADAPTABLE_KINDS)})")
    v = get_version(session, a.model_id, to_version)
    settings = _settings(budget, steps, seed, lr, batch_rows, sparsity)
    new_id = new_id or f"{a.id}-adapted-{v.label}"
    if not SLUG.match(new_id):
        raise UsageError(f"artifact id {new_id!r} must be a slug")
    if session.get(Artifact, new_id) is not None or session.get(ArtifactSet, new_id) is not None:
        raise Conflict(f"artifact {new_id!r} already exists")
    dest = _dest(a, new_id, out)
    st = _start(session, "fidelity", a.model_id, v.id, None)
    policy, section = adaptation_policy(session, a.model_id, st.started_at)
    if enforce_policy and not section.get("allowed", True):
        raise UsageError(f"the policy in force does not allow adaptation for tier {get_model(session, a.model_id).tier} "
                         "(adaptation.allowed is false)")
    from compliance.interp.adapt import (
        adaptable,
        adapted_coder,
        explained_variance,
        fine_tune,
        split_rows,
        write_like_parent,
        write_manifest,
    )

    _check_device(device)
    coder = _load(a)
    adaptable(coder)
    hashes: dict[str, Any] = {"parent": a.sha256}
    params: dict[str, Any] = {"seed": settings.seed, "budget_seconds": settings.max_seconds,
                              "budget_steps": settings.max_steps, "lr": settings.lr,
                              "batch_rows": settings.batch_rows, "max_rows": max_rows,
                              "holdout_share": float(section["holdout_share"]), "device": device}
    all_rows, run = _gather(session, st, a, v, coder, activations, data, max_rows, device, hashes, params)
    train_idx, hold_idx = split_rows(all_rows.n, float(section["holdout_share"]), settings.seed)
    hashes["train_rows"], hashes["held_out_rows"] = _index_hash(train_idx), _index_hash(hold_idx)
    from compliance.interp.adapt import AdaptData

    train = AdaptData(all_rows.rows(train_idx))
    held = AdaptData(all_rows.rows(hold_idx))
    settings.curve_every = curve_every
    ev_before = explained_variance(coder, held, device)
    result = fine_tune(coder, train, settings, device=device, held_out=held if curve_every else None)
    child = adapted_coder(coder, result)
    metrics, formula = _held_out_metrics(child, held, run, hold_idx, a, device)
    from compliance.interp.status import fidelity_status

    status, reasons = fidelity_status(metrics, None, policy)
    from compliance.interp.alignment import feature_survival
    from compliance.interp.headers import read_feature_labels

    old_labels = read_feature_labels(Path(a.labels_path)) if a.labels_path and Path(a.labels_path).is_file() else {}
    cos = float((policy.get("alignment") or {}).get("survival_cosine") or 0.7)
    surv = feature_survival(coder, child, old_labels, threshold=cos)
    ev_after = metrics["explained_variance"]
    ev_floor = float(policy["fidelity"]["ev_warn"])
    ok = status in ("pass", "warn") and ev_after is not None and ev_after >= ev_floor
    outcome_reasons = list(reasons)
    if not ok:
        why = (f"held-out explained variance {ev_after:.4f} below the policy's fidelity floor {ev_floor}"
               if ev_after is not None and ev_after < ev_floor else f"held-out fidelity check {status}")
        outcome_reasons.insert(0, f"adaptation failed: {why} after {result.steps} steps ({result.stop_reason})")
    summary = result.summary()
    if session.info.get("replay"):  # a replayed history records no wall times (as checks do not)
        result.seconds = None
        for point in summary["curve"]:
            point.pop("seconds", None)
    ad_metrics = {
        "steps": result.steps, "seconds": result.seconds, "stop_reason": result.stop_reason,
        "final_loss": result.final_loss, "final_recon_loss": result.final_recon_loss,
        "final_sparsity_loss": result.final_sparsity_loss, "sparsity_term": result.sparsity_term,
        "sparsity_coefficient": result.sparsity_coefficient, "flops": result.flops, "rows_seen": result.rows_seen,
        "compute_device": result.device, "n_train_rows": train.n, "n_held_out_rows": held.n,
        "explained_variance_before": ev_before, "explained_variance_after": ev_after,
        "held_out_status": status, "survival": surv.metrics(), "curve": summary["curve"],
        "held_out": {k: metrics.get(k) for k in HELD_OUT_KEYS if metrics.get(k) is not None},
    }
    # ---- files: always written (a failed adaptation's weights stay inspectable), hashes recorded
    path = write_like_parent(coder, result, dest)
    labels_path = None
    if surv.carried_labels:
        labels_path = dest / "labels.json"
        labels_path.write_text(json.dumps(surv.carried_labels, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lineage = {"parent_artifact": a.id, "parent_sha256": a.sha256, "model": a.model_id,
               "parent_bound_version": version_by_id(session, a.bound_version_id).label, "to_version": v.label,
               "artifact_id": new_id if ok else None, "status": "succeeded" if ok else "failed",
               "input_hashes": hashes, "parameters": params, "metrics": {k: x for k, x in ad_metrics.items() if k != "curve"},
               "tool_version": __version__}
    write_manifest(dest, json_safe(lineage))
    files = {str(f.relative_to(dest)): sha256_file(f) for f in sorted(dest.rglob("*")) if f.is_file()}
    child_id = check_id = None
    if ok:
        add_artifact(session, a.model_id, kind=a.kind, bound_version=v.label, path=path, hook=a.hook_in,
                     hook_out=a.hook_out, labels=labels_path, artifact_id=new_id)
        child_row = get_artifact(session, new_id)
        st.artifact_id = new_id
        chk_hashes = {"artifact": child_row.sha256, **{k: x for k, x in hashes.items() if k != "parent"}}
        chk_params = dict(params, source=f"adaptation held-out rows ({params['source']})", rows="held-out",
                          adapted_from=a.id)
        metrics["baseline_explained_variance"] = None
        c = _finish(session, st, status=status, metrics=metrics, reasons=reasons,
                    flags=_flags(metrics, policy), input_hashes=chk_hashes, parameters=chk_params,
                    explained_variance=ev_after, formula_version=formula)
        child_id, check_id = new_id, c.id
    row = Adaptation(model_id=a.model_id, parent_artifact_id=a.id, version_id=v.id, child_artifact_id=child_id,
                     check_id=check_id, status="succeeded" if ok else "failed", path=str(path.resolve()),
                     files=files, input_hashes=json_safe(hashes), parameters=json_safe(params),
                     metrics=json_safe(ad_metrics), reasons=outcome_reasons, started_at=st.started_at,
                     finished_at=max(session.info["clock"](), st.started_at), tool_version=__version__)
    row = record(session, row)
    out_view = adaptation_view(session, row)
    if check_id is not None:
        from compliance.store.models import Check

        out_view["check"] = check_view(session, session.get(Check, check_id))
    return out_view


def _check_device(device: str | None) -> None:
    import torch

    if device is None or device == "cpu":
        return
    if not device.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda, got {device!r}")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available")


def _flags(metrics: dict, policy: dict) -> list[str]:
    from compliance.services.checks import fidelity_flags

    return fidelity_flags(metrics, None, policy)


HELD_OUT_KEYS = ("explained_variance", "mse", "cossim", "l0", "dead_fraction", "dense_fraction", "kl",
                 "decision_flip_rate", "loss_recovered", "n_rows")


def _held_out_metrics(child, held, run, hold_idx, a: Artifact, device) -> tuple[dict, str]:
    """The child's fidelity metrics on the held-out rows (with the downstream metrics when the
    model adapter was used: the held-out frame rows spliced through the model)."""
    from compliance.interp.fidelity import compute_fidelity

    def batches():
        for s in range(0, held.n, 1024):
            yield {k: t[s:s + 1024] for k, t in held.tensors.items()}

    res = compute_fidelity(child, batches(), device=device)
    metrics = res.metrics()
    metrics["density_histogram"] = density_histogram(res.density)
    if run is not None:
        model, frame = run
        from compliance.interp.downstream import compute_downstream

        sub = frame.iloc[hold_idx.numpy()]
        ds = compute_downstream(child, model, sub, batch_rows=1024, device=device, **_hooks_for(a))
        metrics.update({k: x for k, x in ds.to_dict().items() if k != "n_rows"})
    return metrics, res.formula_version


# ------------------------------------------------------------------ views
def adaptation_view(session: Session, row: Adaptation) -> dict:
    d = plain(row)
    d["version"] = version_by_id(session, row.version_id).label
    parent = session.get(Artifact, row.parent_artifact_id)
    d["parent_bound_version"] = version_by_id(session, parent.bound_version_id).label if parent else None
    return d


def list_adaptations(session: Session, *, model_id: str | None = None, artifact_id: str | None = None,
                     at=None) -> list[dict]:
    q = select(Adaptation)
    if model_id:
        get_model(session, model_id)
        q = q.where(Adaptation.model_id == model_id)
    if artifact_id:
        q = q.where((Adaptation.parent_artifact_id == artifact_id) | (Adaptation.child_artifact_id == artifact_id))
    if at is not None:
        q = q.where(Adaptation.recorded_at <= at)
    return [adaptation_view(session, r) for r in session.scalars(q.order_by(Adaptation.finished_at, Adaptation.id))]


# ------------------------------------------------------------------ check run --due --adapt
def adaptation_candidates(session: Session, at) -> list[dict]:
    """Stale or broken SAEs/transcoders/CLTs of deployed versions whose tier's policy allows adaptation.

    An artifact is a candidate for version v (deployed at ``at``) when its kind is required for its
    model's tier, it is not an artifact-set member and has not been replaced by another artifact,
    it is stale or broken for v at ``at`` (DESIGN §4: its latest fidelity check on v within the
    validity window is neither a pass nor a warn — accepted, or pending a validator), and no adaptation of it to v has been recorded
    yet (a failed one is not retried on its own: the debt stays visible until someone acts)."""
    from datetime import time, timedelta, timezone

    from compliance.services.corrections import corrected_ids
    from compliance.services.due import FIDELITY_KINDS, deployed_versions
    from compliance.store.models import Acceptance, Check, Model

    policy = policy_at(session, at)
    groups = policy.get("required_groups") or {}
    void_checks = corrected_ids(session, "check", at)
    void_artifacts = corrected_ids(session, "artifact", at)
    replaced = {r for r in session.scalars(select(Artifact.replaces_id).where(
        Artifact.replaces_id.is_not(None), Artifact.recorded_at <= at))}
    accepted = set(session.scalars(select(Acceptance.check_id).where(
        Acceptance.check_id.is_not(None), Acceptance.recorded_at <= at)))
    done = {(p, v) for p, v in session.execute(select(Adaptation.parent_artifact_id, Adaptation.version_id)
                                               .where(Adaptation.recorded_at <= at))}
    tiers = {m.id: m.tier for m in session.scalars(select(Model))}
    out = []
    for v in deployed_versions(session, at):
        tier = tiers.get(v.model_id)
        tier_policy = policy_for_tier(policy, tier)
        section = dict(DEFAULT_POLICY["adaptation"], **(tier_policy.get("adaptation") or {}))
        required = {k for g in groups.get(str(tier), []) for k in g} & FIDELITY_KINDS & set(ADAPTABLE_KINDS)
        first_day = at.astimezone(timezone.utc).date() - timedelta(days=int(tier_policy.get("validity_days", 90)))
        since = datetime.combine(first_day, time.min, tzinfo=timezone.utc)
        arts = session.scalars(select(Artifact).where(
            Artifact.model_id == v.model_id, Artifact.kind.in_(sorted(required)), Artifact.set_id.is_(None),
            Artifact.recorded_at <= at).order_by(Artifact.id))
        for a in arts:
            if a.id in void_artifacts or a.id in replaced or (a.id, v.id) in done:
                continue
            checks = [c for c in session.scalars(select(Check).where(
                Check.kind == "fidelity", Check.artifact_id == a.id, Check.version_id == v.id,
                Check.finished_at <= at, Check.status != "inconclusive").order_by(Check.finished_at.desc(),
                                                                                  Check.id.desc()))
                      if c.id not in void_checks]
            last = checks[0] if checks else None
            valid = last is not None and last.finished_at >= since and (
                last.status == "pass" or (last.status == "warn" and (
                    last.id in accepted or not tier_policy.get("warn_needs_acceptance", True))))
            pending = last is not None and last.finished_at >= since and last.status == "warn"
            if valid or pending:  # fresh, or waiting for a validator's acceptance: nothing to adapt
                continue
            state = "broken" if last is not None and last.status in ("fail", "error") else "stale"
            item = {"artifact_id": a.id, "kind": a.kind, "model_id": v.model_id, "version": v.label,
                    "state": state, "allowed": bool(section.get("allowed", True))}
            out.append(item)
    return out


def run_due_adapt(session: Session, at, *, seconds: float | None = None, seed: int | None = None,
                  dry_run: bool = False, device: str | None = None, steps: int | None = None) -> dict:
    """``check run --due --adapt``: adapt every candidate the policy allows (each on an equal share
    of ``seconds``, or its own default budget), through the model adapter on the latest registered
    production window, in the caller's transaction; then the due validations run (``run_due``).
    A candidate that cannot be adapted (no adapter, no data...) is listed with the reason; a
    failed adaptation is recorded as such and its parent stays stale or broken."""
    from compliance.errors import ComplianceError
    from compliance.services.due import run_due

    cands = adaptation_candidates(session, at)
    allowed = [c for c in cands if c["allowed"]]
    skipped = [{**c, "why": "the policy does not allow adaptation for this tier"} for c in cands if not c["allowed"]]
    if dry_run:
        due = run_due(session, at, dry_run=True)
        return {**due, "adapt": allowed, "adapted": [], "not_adapted": skipped}
    adapted = []
    for i, c in enumerate(allowed):
        share = None if seconds is None else seconds / (len(allowed) - i)
        t0 = _clock_now()
        try:
            with session.begin_nested():
                r = adapt(session, c["artifact_id"], c["version"], adapter=True, budget=share, steps=steps,
                          seed=None if seed is None else seed + i, device=device)
            adapted.append({**c, "adaptation_id": r["id"], "status": r["status"],
                            "child_artifact_id": r["child_artifact_id"],
                            "explained_variance_before": r["metrics"]["explained_variance_before"],
                            "explained_variance_after": r["metrics"]["explained_variance_after"]})
        except ComplianceError as exc:
            skipped.append({**c, "why": str(exc)})
        if seconds is not None:
            seconds = max(0.0, seconds - (_clock_now() - t0))
            if seconds < 1.0:
                skipped.extend({**x, "why": "budget spent"} for x in allowed[i + 1:])
                break
    due = run_due(session, at)
    return {**due, "adapted": adapted, "not_adapted": skipped}


def _clock_now() -> float:
    import time as _t

    return _t.perf_counter()
