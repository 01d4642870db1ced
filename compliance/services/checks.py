"""Check use cases: run a check, judge it by the policy in force, record it through the ledger.

A check that cannot run once it has started (the artifact and version are known) is recorded
with status ``error`` and the reason, and the function returns that record: absence of
evidence is evidence too. Torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance import __version__
from compliance.errors import AlreadyRecorded, ComplianceError, InputError, UsageError
from compliance.hashing import json_safe, sha256_file
from compliance.policy_defaults import policy_for_tier
from compliance.services.data_windows import (
    DataRef,
    data_for,
    given_file,
    given_query,
    is_query,
    key_drivers,
    production_data,
    reference_for,
)
from compliance.services.policy import policy_at
from compliance.services.registry import get_artifact, get_model, get_version, plain, version_by_id
from compliance.store.ledger import record, record_many
from compliance.store.models import Artifact, ArtifactSet, Check, CheckFeature, Dataset, ModelVersion

CODER_KINDS = ("sae", "transcoder", "clt")
# What a started check records as an `error` instead of raising: bad inputs, and the errors torch
# and numpy raise on inputs they cannot compute with (shape or dtype mismatches deep in a model).
CHECK_FAILURES = (InputError, RuntimeError, ValueError, KeyError, IndexError)
MAX_ROWS_DEFAULT = 20_000


@dataclass
class Started:
    kind: str
    model_id: str
    version_id: int | None
    artifact_id: str | None
    started_at: datetime
    t0: float
    other_artifact_id: str | None = None
    window: tuple[date | None, date | None] = (None, None)


def _now(session: Session) -> datetime:
    return session.info["clock"]()


def _start(session: Session, kind: str, model_id: str, version_id: int | None, artifact_id: str | None, **kw) -> Started:
    return Started(kind, model_id, version_id, artifact_id, _now(session), time.perf_counter(), **kw)


def _policy(session: Session, st: Started) -> dict:
    """The policy in force at the check's start, with the model's tier overrides applied."""
    return policy_for_tier(policy_at(session, st.started_at), get_model(session, st.model_id).tier)


def _finish(session: Session, st: Started, *, status: str, metrics: dict, reasons: list[str], flags: list[str],
            input_hashes: dict, parameters: dict, explained_variance: float | None = None,
            formula_version: str | None = None, detect: bool = True) -> Check:
    # finished_at comes from the store's clock (the same clock as recorded_at), so a replayed
    # history is reproducible; the measured wall time is kept as a parameter.
    finished = max(_now(session), st.started_at)
    parameters = dict(parameters, wall_seconds=round(time.perf_counter() - st.t0, 3)) if not session.info.get("replay") else parameters
    key = session.info.get("idempotency_key")  # a distributed task's (artifact or model, version, due day)
    if key:
        parameters = dict(parameters, idempotency_key=key)
    c = Check(kind=st.kind, model_id=st.model_id, version_id=st.version_id, artifact_id=st.artifact_id,
              other_artifact_id=st.other_artifact_id, window_start=st.window[0], window_end=st.window[1],
              input_hashes=json_safe(input_hashes), parameters=json_safe(parameters), metrics=json_safe(metrics),
              status=status, reasons=list(reasons), flags=sorted(set(flags)),
              explained_variance=explained_variance, started_at=st.started_at,
              finished_at=finished,
              tool_version=__version__, formula_version=formula_version)
    c = record(session, c)
    if key:
        _refuse_duplicate(session, c, key)
    if detect:
        _after_check(session, c)
    return c


def _refuse_duplicate(session: Session, c: Check, key: str) -> None:
    """After the append (which holds the store's write lock, so every earlier commit is visible):
    if a check with the same idempotency key is already recorded, roll this one back."""
    q = select(Check.id, Check.parameters).where(Check.kind == c.kind, Check.model_id == c.model_id,
                                                 Check.version_id == c.version_id, Check.id != c.id)
    q = q.where(Check.artifact_id == c.artifact_id) if c.artifact_id else q.where(Check.artifact_id.is_(None))
    for cid, params in session.execute(q):
        if (params or {}).get("idempotency_key") == key:
            raise AlreadyRecorded(key, cid)


def _after_check(session: Session, c: Check) -> None:
    """Detection runs after every recorded check, in the same transaction (DESIGN §6), so an
    occurrence opens when its evidence is recorded. A batch (``run_due``) sets
    ``session.info["defer_detection"]`` and detects once at its end."""
    if session.info.get("defer_detection"):
        return
    from compliance.services.governance import detect_failure_modes

    session.flush()
    detect_failure_modes(session, c.recorded_at)


def _error(session: Session, st: Started, exc: Exception, input_hashes: dict, parameters: dict) -> Check:
    return _finish(session, st, status="error", metrics={}, reasons=[f"error: {exc}"], flags=["FM-ERROR"],
                   input_hashes=input_hashes, parameters=parameters)


def check_view(session: Session, c: Check) -> dict:
    d = plain(c)
    if c.version_id is not None:
        d["version"] = version_by_id(session, c.version_id).label
    return d


# ------------------------------------------------------------------ inputs
def version_model(session: Session, v: ModelVersion):
    """Load a version through its model's adapter, after checking the weights hash."""
    from compliance.interp.adapter import resolve_adapter

    m = get_model(session, v.model_id)
    if not m.adapter:
        raise InputError(f"model {m.id} has no adapter registered: use --activations, or register one")
    path = Path(v.weights_path)
    if sha256_file(path) != v.weights_sha256:
        raise InputError(f"hash mismatch: weights of {m.id} {v.label} changed since registration ({path.name})")
    from compliance.services.policy import check_adapter_allowed

    check_adapter_allowed(session, m.adapter)  # the policy in force now, not at registration
    return resolve_adapter(m.adapter)(path)


def _use_data(st: Started, hashes: dict, params: dict, ref: DataRef) -> Path:
    """Record which data a check runs on (hash, window, registered dataset) and return its path."""
    hashes["data"], st.window = ref.sha256, ref.window
    params["data"] = ref.path.name
    params["data_ref"] = ref.describe()
    return ref.path


def _frame(path: Path, max_rows: int | None):
    from compliance.checks.drift import read_frame

    df = read_frame(path)
    if len(df) == 0:
        raise InputError(f"{path.name}: no rows")
    return df.iloc[:max_rows] if max_rows else df


def _load(a: Artifact):
    from compliance.interp.loaders import load_artifact

    return load_artifact(a.path, expected_sha256=a.files, kind=a.kind)


def member_tensor_names(session: Session, a: Artifact, path: Path) -> dict[str, str]:
    """How a set member finds its activations in a file: ``activations``/``targets`` when the file
    has them, else the per-layer names ``inputs_{i}``/``targets_{i}`` (i = the member's position
    in its set, the layer for a circuit-tracer transcoder set), as for CLTs."""
    from compliance.interp.headers import read_safetensors_header

    if a.set_id is None:
        return {}
    names = read_safetensors_header(path).tensors
    if "activations" in names:
        return {}
    from compliance.services.registry import get_artifact_set

    i = list(get_artifact_set(session, a.set_id).members).index(a.set_member)
    return {"activations": f"inputs_{i}", "targets": f"targets_{i}"}


def _hooks_for(a: Artifact) -> dict:
    if a.kind == "sae":
        return {"hook_name": a.hook_in} if a.hook_in else {}
    if a.kind == "transcoder":
        out = {}
        if a.hook_in:
            out["input_hooks"] = [a.hook_in]
        if a.hook_out:
            out["output_hooks"] = [a.hook_out]
        return out
    if a.kind == "clt" and a.n_layers and a.hook_in and "{layer}" in a.hook_in:
        out = {"input_hooks": [a.hook_in.format(layer=l) for l in range(a.n_layers)]}
        if a.hook_out and "{layer}" in a.hook_out:
            out["output_hooks"] = [a.hook_out.format(layer=l) for l in range(a.n_layers)]
        return out
    return {}


def baseline_ev(session: Session, a: Artifact, before: datetime | None = None) -> float | None:
    """The artifact's baseline: explained variance of its FIRST non-error fidelity check on its bound
    version (the calibration at registration). Later checks — on a newer version, or on the bound
    version with newer data — are compared with it, so decay under drift is visible too."""
    q = select(Check.explained_variance).where(
        Check.kind == "fidelity", Check.artifact_id == a.id, Check.version_id == a.bound_version_id,
        Check.status.not_in(("error", "inconclusive")), Check.explained_variance.is_not(None))
    if before is not None:
        q = q.where(Check.finished_at <= before)
    return session.scalars(q.order_by(Check.finished_at, Check.id).limit(1)).first()


def fidelity_flags(metrics: dict, base: float | None, policy: dict) -> list[str]:
    from compliance.interp.status import _p  # torch-free

    flags = []
    ev = metrics.get("explained_variance")
    layer_evs = [r.get("explained_variance") for r in metrics.get("per_layer") or [] if isinstance(r, dict)]
    if ev is not None and (ev < _p(policy, "fidelity", "ev_warn")
                           or (base is not None and base - ev > _p(policy, "fidelity", "decay_warn"))):
        flags.append("FM-DECAY")
    elif any(isinstance(x, (int, float)) and x < _p(policy, "fidelity", "ev_warn") for x in layer_evs):
        flags.append("FM-DECAY")  # a CLT layer below the floor, whatever the pooled figure says
    if (metrics.get("dead_fraction") or 0) > _p(policy, "fidelity", "dead_fraction_warn") or \
            (metrics.get("dense_fraction") or 0) > _p(policy, "fidelity", "dense_fraction_warn"):
        flags.append("FM-DEAD")
    flip = metrics.get("decision_flip_rate")
    if flip is not None and flip > _p(policy, "fidelity", "flip_warn"):
        flags.append("FM-DECISION")
    return flags


# ------------------------------------------------------------------ fidelity
def run_fidelity(session: Session, artifact_id: str, version: str | None = None, *,
                 activations: str | Path | None = None, adapter: bool = False, data: str | Path | None = None,
                 max_rows: int | None = MAX_ROWS_DEFAULT, batch_rows: int = 1024, device: str | None = None,
                 budget=None) -> dict:
    """Fidelity of an artifact on a version: from an activations file, or through the model adapter
    (then with the downstream metrics: KL, decision flip rate, loss recovered). With a ``budget``
    (``compliance.checks.intervals.Budget``) on a random subsample, with intervals (services.budgeted)."""
    if activations is None and not adapter:
        adapter = True
    if activations is not None and adapter and data is not None:
        raise UsageError("give either --activations or --adapter [--data], not both")
    if session.get(Artifact, artifact_id) is None and session.get(ArtifactSet, artifact_id) is not None:
        return run_set_fidelity(session, artifact_id, version, activations=activations, adapter=adapter,
                                data=data, max_rows=max_rows, batch_rows=batch_rows, device=device)
    a = get_artifact(session, artifact_id)
    if budget is not None:
        from compliance.services.budgeted import require_budget_kind

        require_budget_kind(a.kind, "fidelity")
    v = get_version(session, a.model_id, version) if version else version_by_id(session, a.bound_version_id)
    provenance = activations_of_version(activations, v) if activations is not None else None
    st = _start(session, "fidelity", a.model_id, v.id, a.id)
    policy = _policy(session, st)
    hashes: dict[str, Any] = {"artifact": a.sha256}
    params: dict[str, Any] = {"batch_rows": batch_rows, "max_rows": max_rows,
                              "source": "activations" if activations is not None else "adapter"}
    if provenance is not None:
        params["activations_provenance"] = provenance
    try:
        if a.kind == "attribution_baseline":
            return _baseline_fidelity(session, st, a, v, data, max_rows, policy, hashes, params)
        if a.kind == "probe":
            return _probe_fidelity(session, st, a, v, data, max_rows, policy, hashes, params)
        if a.kind not in CODER_KINDS:
            raise InputError(f"fidelity does not apply to a {a.kind} artifact (needs sae, transcoder, clt, probe or attribution_baseline)")
        coder = _load(a)
        if budget is not None:
            from compliance.services.budgeted import budgeted_fidelity

            return budgeted_fidelity(session, st, a, v, coder, policy, hashes, params, budget, activations=activations,
                                     data=data, batch_rows=batch_rows, device=device)
        from compliance.interp.fidelity import compute_fidelity, iter_safetensors_batches

        downstream = None
        if activations is not None:
            p = Path(activations)
            hashes["activations"] = sha256_file(p)
            rename = member_tensor_names(session, a, p)
            if rename:
                params["tensors"] = dict(rename)
            res = compute_fidelity(coder, iter_safetensors_batches(p, batch_rows, coder=coder, rename=rename),
                                   device=device)
        else:
            model = version_model(session, v)
            hashes["weights"] = v.weights_sha256
            path = _use_data(st, hashes, params, data_for(session, a.model_id, st.started_at, data))
            frame = _frame(path, max_rows)
            from compliance.interp.downstream import compute_downstream, model_activation_batches

            hooks, clean = _hooks_for(a), []  # the clean run's logits, kept for the downstream metrics
            res = compute_fidelity(coder, model_activation_batches(coder, model, frame, batch_rows=batch_rows,
                                                                   device=device, clean=clean, **hooks), device=device)
            downstream = compute_downstream(coder, model, frame, batch_rows=batch_rows, device=device, clean=clean,
                                            **hooks)
        metrics = res.metrics()
        metrics["density_histogram"] = density_histogram(res.density)
        if downstream is not None:
            metrics.update({k: v2 for k, v2 in downstream.to_dict().items() if k not in ("n_rows",)})
        from compliance.interp.status import fidelity_status

        base = baseline_ev(session, a, st.started_at)
        metrics["baseline_explained_variance"] = base
        status, reasons = fidelity_status(metrics, base, policy)
        c = _finish(session, st, status=status, metrics=metrics, reasons=reasons,
                    flags=fidelity_flags(metrics, base, policy), input_hashes=hashes, parameters=params,
                    explained_variance=metrics.get("explained_variance"), formula_version=res.formula_version)
    except CHECK_FAILURES as exc:
        c = _error(session, st, exc, hashes, params)
    return check_view(session, c)


STATUS_ORDER = ("pass", "warn", "fail", "error")


def run_set_fidelity(session: Session, set_id: str, version: str | None = None, **kw) -> dict:
    """Fidelity of every member of an artifact set: one check per member (its own status), all
    in this transaction. The set's status shown here is the worst member's (DESIGN §3: a set is
    valid only when every member is)."""
    from compliance.services.registry import set_members, show_artifact_set

    checks = [run_fidelity(session, m.id, version, **kw) for m in set_members(session, set_id)]
    view = show_artifact_set(session, set_id)
    worst = max((c["status"] for c in checks), key=STATUS_ORDER.index)
    return {"set_id": set_id, "kind": "fidelity", "format": view["format"], "status": worst,
            "members": view["members"], "checks": checks}


def activations_of_version(path: str | Path, v: ModelVersion) -> str:
    """Refuse (``InputError``, nothing recorded) an activations file captured on other weights than
    version ``v``'s. Returns ``"verified"`` when the file names ``v``'s weights, ``"none"`` when it
    carries no provenance (a file written by another tool: recorded as such with the check)."""
    from compliance.interp.headers import activation_provenance

    p = Path(path)
    if not p.is_file():
        return "none"  # the check itself reports the missing file as an error
    try:
        prov = activation_provenance(p)
    except (ComplianceError, ValueError, OSError):
        return "none"  # an unreadable header: the check itself records it as an error check
    sha = prov.get("weights_sha256")
    if sha is None:
        return "none"
    if sha != v.weights_sha256:
        src = f"{prov.get('model', '?')} {prov.get('version', '?')}" if prov.get("version") else "other weights"
        raise InputError(f"{p.name}: activations were captured on {src} (weights {sha[:12]}…), not on {v.model_id} "
                         f"{v.label} (weights {v.weights_sha256[:12]}…): capture them on the version you check "
                         f"(`compliance check capture {v.model_id} {v.label} ...`) or use --adapter")
    return "verified"


def capture(session: Session, model_id: str, version: str, *, hooks: list[str], out: str | Path,
            data: str | Path | None = None, max_rows: int | None = MAX_ROWS_DEFAULT, batch_rows: int = 1024) -> dict:
    """Capture activations of a version at ``hooks`` on its data (through the model adapter) into a
    safetensors file whose metadata names the version's weights (SHA-256), model and label, so a
    fidelity check with ``--activations`` can refuse it for another version. Writes nothing to the store."""
    from compliance.interp.downstream import capture_activations, save_activations
    from compliance.interp.headers import PROVENANCE_HOOKS, PROVENANCE_MODEL, PROVENANCE_VERSION, PROVENANCE_WEIGHTS

    if not hooks:
        raise UsageError("name at least one hook point (--hook)")
    v = get_version(session, model_id, version)
    model = version_model(session, v)
    ref = data_for(session, model_id, _now(session), data)
    path, data_sha = ref.path, ref.sha256
    frame = _frame(path, max_rows)
    try:
        acts = capture_activations(model, frame, list(hooks), batch_rows=batch_rows)
    except CHECK_FAILURES as exc:
        raise InputError(f"cannot capture {', '.join(hooks)} on {model_id} {version}: {exc}") from None
    names = {h: ("activations" if len(hooks) == 1 else h) for h in hooks}
    out = Path(out)
    save_activations(out, {names[h]: t for h, t in acts.items()},
                     metadata={PROVENANCE_WEIGHTS: v.weights_sha256, PROVENANCE_MODEL: model_id,
                               PROVENANCE_VERSION: version, PROVENANCE_HOOKS: ",".join(hooks),
                               "compliance.data_sha256": data_sha})
    return {"path": str(out), "model_id": model_id, "version": version, "weights_sha256": v.weights_sha256,
            "hooks": list(hooks), "rows": int(len(frame)), "tensors": {names[h]: list(t.shape) for h, t in acts.items()},
            "sha256": sha256_file(out)}


def _probe_fidelity(session, st, a, v, data, max_rows, policy, hashes, params) -> dict:
    """A probe stays faithful while it still separates its target on current data (AUC)."""
    from compliance.interp.probe import probe_fidelity

    model = version_model(session, v)
    hashes["weights"] = v.weights_sha256
    path = _use_data(st, hashes, params, data_for(session, a.model_id, st.started_at, data))
    cfg = (a.extra or {}).get("cfg") or {}
    res = probe_fidelity(_load(a), model, _frame(path, max_rows), cfg, a.hook_in)
    metrics = res.to_dict()
    protected, why = _probe_protected(session, a, v, cfg, st.started_at)
    metrics["protected_attribute"] = protected
    params["protected_basis"] = why
    from compliance.interp.status import probe_status

    status, reasons = probe_status(res.auc, policy, protected=protected)
    if protected:
        flags = ["FM-PROTECTED"] if status in ("warn", "fail") else []
    else:
        flags = ["FM-DECAY"] if status != "pass" else []
    c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags,
                input_hashes=hashes, parameters=params, formula_version=res.formula_version)
    return check_view(session, c)


def _probe_protected(session: Session, a: Artifact, v: ModelVersion, cfg: dict, at: datetime) -> tuple[bool, str]:
    """Whether a probe's target is a protected attribute: its cfg says so (``protected: true``), or
    its target column has the ``protected`` role in the model's registered data (latest dataset,
    development data of the version first)."""
    from compliance.services.data_windows import development_data

    if isinstance(cfg.get("protected"), bool):
        return cfg["protected"], "probe cfg 'protected'"
    col = cfg.get("target_column")
    if not col:
        return False, "probe cfg names no target column"
    dev = development_data(session, v, at)
    rows = ([dev] if dev is not None else []) + list(session.scalars(
        select(Dataset).where(Dataset.model_id == a.model_id, Dataset.recorded_at <= at,
                              Dataset.columns.is_not(None)).order_by(Dataset.id.desc())))
    for d in rows:
        if d.columns:
            is_p = col in ((d.columns or {}).get("protected") or [])
            return is_p, f"column {col!r} {'has' if is_p else 'does not have'} the protected role in dataset {d.id}"
    return False, "no registered column roles name the probe's target"


def _baseline_fidelity(session, st, a, v, data, max_rows, policy, hashes, params) -> dict:
    """An attribution baseline is faithful when integrated-gradient attributions from it are
    complete on the deployed version (see compliance.interp.baseline)."""
    from compliance.interp.baseline import baseline_fidelity
    from compliance.interp.status import fidelity_status

    baseline = _load(a)
    model = version_model(session, v)
    hashes["weights"] = v.weights_sha256
    path = _use_data(st, hashes, params, data_for(session, a.model_id, st.started_at, data))
    res = baseline_fidelity(baseline, model, _frame(path, min(max_rows or 2000, 2000)))
    metrics = res.to_dict()
    base = baseline_ev(session, a, st.started_at)
    metrics["baseline_explained_variance"] = base
    status, reasons = fidelity_status(metrics, base, policy)
    gap_warn = float((policy.get("fidelity") or {}).get("baseline_gap_warn", 0.15))
    if metrics["baseline_gap"] > gap_warn:
        reasons.append(f"warn: baseline score is {metrics['baseline_gap']:.3f} from the population mean score (> {gap_warn})")
        status = "warn" if status == "pass" else status
    c = _finish(session, st, status=status, metrics=metrics, reasons=reasons,
                flags=fidelity_flags(metrics, base, policy), input_hashes=hashes, parameters=params,
                explained_variance=metrics.get("explained_variance"), formula_version=res.formula_version)
    return check_view(session, c)


def density_histogram(density: list[float], lo: float = -5.0, bins: int = 10) -> dict:
    """Features per bin of log10(firing density) on [lo, 0], plus the dead count (kept with
    the check so the per-model review can draw the histogram without the raw vector)."""
    import numpy as np

    d = np.asarray(density, dtype=np.float64)
    live = d[d > 0]
    edges = np.linspace(lo, 0.0, bins + 1)
    counts, _ = np.histogram(np.clip(np.log10(live), lo, 0.0), bins=edges) if len(live) else (np.zeros(bins, int), None)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "dead": int((d <= 0).sum())}


# ------------------------------------------------------------------ alignment
def run_alignment(session: Session, *, old: str | None = None, new: str | None = None, model_id: str | None = None,
                  from_version: str | None = None, to_version: str | None = None, hook: str | None = None,
                  data: str | Path | None = None, max_rows: int | None = 5000) -> dict:
    """Feature survival between an old artifact and its replacement (``old``/``new``), or the
    representation shift between two versions on the same inputs (``model_id``, versions, hook)."""
    from compliance.interp.status import alignment_status

    if old and new:
        ao, an = get_artifact(session, old), get_artifact(session, new)
        if ao.model_id != an.model_id:
            raise UsageError(f"{old} and {new} belong to different models")
        st = _start(session, "alignment", an.model_id, an.bound_version_id, an.id, other_artifact_id=ao.id)
        policy = _policy(session, st)
        hashes = {"old": ao.sha256, "new": an.sha256}
        params = {"mode": "feature_survival"}
        try:
            from compliance.interp.alignment import feature_survival
            from compliance.interp.headers import read_feature_labels

            labels = read_feature_labels(ao.labels_path) if ao.labels_path else None
            res = feature_survival(_load(ao), _load(an), old_labels=labels,
                                   threshold=float((policy.get("alignment") or {}).get("survival_cosine", 0.7)))
            metrics = res.metrics()
            metrics["carried_labels"] = res.carried_labels
            status, reasons = alignment_status(metrics, policy)
            min_surv = float((policy.get("alignment") or {}).get("min_survival", 0.5))
            flags = ["FM-LABELS"] if metrics["survival_share"] < min_surv else []
            c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags,
                        input_hashes=hashes, parameters=params)
        except CHECK_FAILURES as exc:
            c = _error(session, st, exc, hashes, params)
        return check_view(session, c)
    if not (model_id and from_version and to_version and hook):
        raise UsageError("give --old and --new artifacts, or --model, --from, --to and --hook")
    v1, v2 = get_version(session, model_id, from_version), get_version(session, model_id, to_version)
    st = _start(session, "alignment", model_id, v2.id, None)
    policy = _policy(session, st)
    hashes = {"from": v1.weights_sha256, "to": v2.weights_sha256}
    params = {"mode": "representation_shift", "hook": hook, "from": from_version, "to": to_version}
    try:
        from compliance.interp.alignment import representation_shift
        from compliance.interp.downstream import capture_activations

        path = _use_data(st, hashes, params, data_for(session, model_id, st.started_at, data))
        frame = _frame(path, max_rows)
        x = capture_activations(version_model(session, v1), frame, [hook])[hook]
        y = capture_activations(version_model(session, v2), frame, [hook])[hook]
        metrics = representation_shift([(x, y)]).to_dict()
        status, reasons = alignment_status(metrics, policy)
        c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=[], input_hashes=hashes,
                    parameters=params)
    except CHECK_FAILURES as exc:
        c = _error(session, st, exc, hashes, params)
    return check_view(session, c)


# ------------------------------------------------------------------ activation drift
def run_activation_drift(session: Session, artifact_id: str, version: str | None = None, *, reference: str | Path,
                         current: str | Path | None = None, max_rows: int | None = MAX_ROWS_DEFAULT,
                         budget=None) -> dict:
    a = get_artifact(session, artifact_id)
    if budget is not None:
        from compliance.services.budgeted import require_budget_kind

        require_budget_kind(a.kind, "activation-drift")
    v = get_version(session, a.model_id, version) if version else version_by_id(session, a.bound_version_id)
    st = _start(session, "activation_drift", a.model_id, v.id, a.id)
    policy = _policy(session, st)
    hashes: dict[str, Any] = {"artifact": a.sha256}
    params: dict[str, Any] = {"max_rows": max_rows}
    try:
        if a.kind not in CODER_KINDS:
            raise InputError(f"activation drift does not apply to a {a.kind} artifact")
        from compliance.interp.activation_drift import activation_drift
        from compliance.interp.downstream import model_activation_batches
        from compliance.interp.status import activation_drift_status

        coder, model = _load(a), version_model(session, v)
        hashes["weights"] = v.weights_sha256
        ref = given_file(session, a.model_id, st.started_at, reference, "reference")
        ref_path, hashes["reference"] = ref.path, ref.sha256
        cur = data_for(session, a.model_id, st.started_at, current, "current")
        cur_path, hashes["current"], st.window = cur.path, cur.sha256, cur.window
        params.update(reference=ref_path.name, current=cur_path.name, reference_data=ref.describe(),
                      current_data=cur.describe())
        if budget is not None:
            from compliance.services.budgeted import budgeted_activation_drift

            return budgeted_activation_drift(session, st, a, v, coder, model, ref_path, cur_path, policy, hashes,
                                             params, budget)
        hooks = _hooks_for(a)
        res = activation_drift(coder,
                               model_activation_batches(coder, model, _frame(ref_path, max_rows), **hooks),
                               model_activation_batches(coder, model, _frame(cur_path, max_rows), **hooks))
        metrics = res.metrics()
        status, reasons = activation_drift_status(metrics, policy)
        flags = ["FM-DEAD"] if any("dead" in r or "dense" in r for r in reasons) else []
        c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags, input_hashes=hashes,
                    parameters=params)
    except CHECK_FAILURES as exc:
        c = _error(session, st, exc, hashes, params)
    return check_view(session, c)


# ------------------------------------------------------------------ overhead
def run_overhead(session: Session, artifact_id: str, version: str | None = None, *, data: str | Path | None = None,
                 rows: int = 2048, repeats: int = 30, warmup: int = 5) -> dict:
    a = get_artifact(session, artifact_id)
    v = get_version(session, a.model_id, version) if version else version_by_id(session, a.bound_version_id)
    st = _start(session, "overhead", a.model_id, v.id, a.id)
    policy = _policy(session, st)
    hashes: dict[str, Any] = {"artifact": a.sha256}
    params: dict[str, Any] = {"rows": rows, "repeats": repeats, "warmup": warmup}
    try:
        if a.kind not in CODER_KINDS:
            raise InputError(f"overhead does not apply to a {a.kind} artifact")
        from compliance.interp.overhead import measure_overhead
        from compliance.interp.status import overhead_status

        coder, model = _load(a), version_model(session, v)
        hashes["weights"] = v.weights_sha256
        path = _use_data(st, hashes, params, data_for(session, a.model_id, st.started_at, data))
        res = measure_overhead(coder, model, _frame(path, rows), repeats=repeats, warmup=warmup, **_hooks_for(a))
        metrics = res.to_dict()
        metrics.pop("base_runs_s", None)
        metrics.pop("attached_runs_s", None)
        status, reasons = overhead_status(metrics, policy)
        budget = float((policy.get("overhead") or {}).get("overhead_budget", 0.1))
        flags = ["FM-OVERHEAD"] if metrics["overhead_ratio"] > budget else []
        c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=flags, input_hashes=hashes,
                    parameters=params)
    except CHECK_FAILURES as exc:
        c = _error(session, st, exc, hashes, params)
    return check_view(session, c)


# ------------------------------------------------------------------ data drift
def run_drift(session: Session, model_id: str, version: str, *, reference: str | Path | None = None,
              current: str | Path | None = None, window: tuple[date | None, date | None] = (None, None),
              features: list[str] | None = None, categorical: list[str] | None = None,
              streaming: bool | None = None, budget=None, warehouse: str | None = None) -> dict:
    """Input drift by column role between a reference and a current file (DESIGN §3, v2).

    ``reference`` and ``current`` may both be ``sql:QUERY`` on ``warehouse`` (a SQLAlchemy URL):
    the statistics are then computed from aggregates where the data lives
    (:mod:`compliance.checks.drift_sql`); the check records the queries, the engine and its
    version, and the hash of the aggregates.

    The reference defaults to the version's development data; the current file to the latest
    production window ended by now. Only ``input`` columns are judged (key-driver and share rule,
    :mod:`compliance.checks.drift_verdict`); ``target`` columns are reported apart as label shift;
    id/timestamp/score/weight columns are skipped. Bad input (unreadable file, a feature missing
    from one side, mismatched dtypes, an empty window) and look-ahead raise before anything is
    recorded: no evidence was produced, and nothing is written.
    """
    from compliance.checks.drift import DriftPolicy, compute_drift_files
    from compliance.checks.drift_verdict import role_verdict

    v = get_version(session, model_id, version)
    started = _now(session)
    t0 = time.perf_counter()
    policy = policy_for_tier(policy_at(session, started), get_model(session, model_id).tier)
    pol = policy.get("drift") or {}
    dp = DriftPolicy(**{k: float(pol[k]) for k in ("psi_warn", "psi_fail", "drift_share", "missing_warn", "missing_fail")
                        if pol.get(k) is not None})
    pushdown = is_query(reference) or is_query(current)
    if pushdown:
        if not (is_query(reference) and is_query(current)) or reference.split(":")[0] != current.split(":")[0]:
            raise UsageError("a pushed-down drift check reads both sides where the data lives: give --reference "
                             "and --current both as sql:QUERY or both as spark:QUERY")
        if budget is not None:
            raise UsageError("--budget subsamples files; a sql: check reads only aggregates (leave --budget out)")
        ref = given_query(started, reference, warehouse, "reference")
        cur = given_query(started, current, warehouse, "current", window)
    else:
        ref = (given_file(session, model_id, started, reference, "reference") if reference is not None
               else reference_for(session, v, started))
        if current is not None:
            cur = given_file(session, model_id, started, current, "current", window)
        elif window != (None, None):
            raise UsageError("--window describes the --current file: give both, or neither (latest ended window)")
        else:
            cur = production_data(session, model_id, started)
    roles, role_source, notes = _drift_roles(cur, ref)
    inputs = list(features) if features else list(roles.get("input") or [])
    targets = [c for c in roles.get("target") or [] if c not in inputs]
    if not inputs:
        raise InputError(f"{cur.name}: no input column to judge (column roles: {role_source})")
    skipped = sorted({c for r, cols in roles.items() if r != "input" for c in cols} - set(inputs) - set(targets))
    bparams, cis, pushed = {}, None, None
    if pushdown:
        from compliance.checks.drift_sql import compute_drift_spark, compute_drift_sql, spark_session

        if ref.engine == "spark":
            pushed = compute_drift_spark(spark_session(warehouse), ref.query, cur.query, features=inputs + targets,
                                         categorical=categorical, policy=dp)
        else:
            pushed = compute_drift_sql(warehouse, ref.query, cur.query, features=inputs + targets,
                                       categorical=categorical, policy=dp)
        res = pushed.result
    elif budget is not None:  # a seeded subsample with bootstrap intervals, statuses decided by interval
        from compliance.services.budgeted import budgeted_drift_result

        res, cis, bparams = budgeted_drift_result(ref.path, cur.path, features=inputs + targets, categorical=categorical,
                                                  policy=dp, budget=budget)
    else:
        res = compute_drift_files(ref.path, cur.path, features=inputs + targets, categorical=categorical, policy=dp,
                                  streaming=streaming)
    d = res.to_dict()
    per_feature = d.pop("features")
    for f in per_feature:
        f["role"] = "target" if f["feature"] in targets else "input"
    keys, key_source = key_drivers(session, model_id, v.id, started, policy, inputs)
    verdict = role_verdict(per_feature, inputs, targets, keys, share_fail=float(pol.get("share_fail", 0.3)),
                           key_driver_source=key_source)
    ins = [f for f in per_feature if f["role"] == "input"]
    d.pop("status", None)
    metrics = dict(d, **verdict.metrics, n_features=len(ins), n_drifted=sum(f["status"] == "fail" for f in ins),
                   n_warn=sum(f["status"] == "warn" for f in ins), drifted_share=verdict.metrics["input_failed_share"])
    metrics["n_inf"] = sum(f.get("inf_ref", 0) + f.get("inf_cur", 0) for f in per_feature)
    missing_notes = []  # the missing-share change is judged per feature (policy drift.missing_warn/_fail)
    for f in ins:
        ch = f.get("missing_rate_change")
        if ch is not None and ch >= dp.missing_warn:
            missing_notes.append(f"{'fail' if ch >= dp.missing_fail else 'warn'}: {f['feature']} missing share +{ch:.1%}")
    status, interval_notes = verdict.status, []
    if cis is not None:
        from compliance.services.budgeted import drift_interval_reasons

        metrics.update(ci=cis, rows_to_decide=bparams.get("rows_to_decide"))
        interval_notes = drift_interval_reasons(ins, cis, bparams)
        if status != "fail" and any(f["status"] == "inconclusive" for f in ins):
            status = "inconclusive"  # a key driver or the share could still fall either side
    st = Started("data_drift", model_id, v.id, None, started, t0, window=cur.window)
    params = {"features": inputs, "targets": targets, "skipped": skipped, "categorical": categorical,
              "reference": ref.name, "current": cur.name, "method": res.method,
              "reference_data": dict(ref.describe(), default=reference is None,
                                     basis="development data of " + v.label if reference is None else "given"),
              "current_data": cur.describe(), "column_roles": roles, "column_roles_source": role_source, **bparams}
    hashes = {"reference": ref.sha256, "current": cur.sha256}
    if pushed is not None:
        params["pushdown"] = {k: v for k, v in pushed.evidence().items() if k != "queries"}
        hashes["aggregates"] = pushed.aggregates_sha256
    c = _finish(session, st, status=status, metrics=metrics, reasons=notes + verdict.reasons + missing_notes + interval_notes,
                flags=[],
                input_hashes=hashes, parameters=params, detect=False)
    record_many(session, [CheckFeature(check_id=c.id, feature=f["feature"],
                                       feature_kind="target" if f["role"] == "target" else f["kind"],
                                       n_ref=f["n_ref"], n_cur=f["n_cur"], missing_ref=f["missing_ref"],
                                       missing_cur=f["missing_cur"], psi=f["psi"], ks_stat=f["ks_stat"],
                                       ks_pvalue=f["ks_pvalue"], wasserstein=f["wasserstein"],
                                       js_distance=f["js_distance"], chi2_pvalue=f["chi2_pvalue"], status=f["status"])
                          for f in per_feature])
    _after_check(session, c)
    out = check_view(session, c)
    out["features"] = per_feature
    return out


def _drift_roles(cur: DataRef, ref: DataRef) -> tuple[dict, str, list[str]]:
    """Column roles for a drift check: those registered with the current data, else with the
    reference, else inferred from the reference file (and said so in the reasons); a column the
    other file lacks is then an error of the drift computation."""
    from compliance.checks.roles import resolve_roles

    for ds, name in ((cur.dataset, "current"), (ref.dataset, "reference")):
        if ds is not None and ds.columns:
            return dict(ds.columns), f"registered with the {name} data (dataset {ds.id})", []
    roles, inferred = resolve_roles(ref.schema(), None, where=ref.name)
    return roles, "inferred from names and types", [f"note: column roles inferred ({'; '.join(inferred)})"]


# ------------------------------------------------------------------ queries
def list_checks(session: Session, *, model_id: str | None = None, artifact_id: str | None = None,
                kind: str | None = None, limit: int | None = None, as_of: datetime | None = None) -> list[dict]:
    """Recorded checks, newest first (``as_of``: only those recorded at or before it)."""
    q = select(Check, ModelVersion.label).outerjoin(ModelVersion, ModelVersion.id == Check.version_id)
    if as_of is not None:
        q = q.where(Check.recorded_at <= as_of)
    if model_id:
        q = q.where(Check.model_id == model_id)
    if artifact_id:
        q = q.where(Check.artifact_id == artifact_id)
    if kind:
        q = q.where(Check.kind == kind)
    q = q.order_by(Check.finished_at.desc(), Check.id.desc())
    if limit:
        q = q.limit(limit)
    return [dict(plain(c), version=label) for c, label in session.execute(q)]


def show_check(session: Session, check_id: int) -> dict:
    from compliance.errors import NotFound

    c = session.get(Check, check_id)
    if c is None:
        raise NotFound(f"unknown check {check_id}")
    from compliance.store.models import Acceptance

    accepted = [plain(a) for a in session.scalars(select(Acceptance).where(Acceptance.check_id == check_id)
                                                  .order_by(Acceptance.id))]
    return dict(check_view(session, c), features=check_features(session, check_id), acceptances=accepted)


def check_features(session: Session, check_id: int) -> list[dict]:
    return [plain(f) for f in session.scalars(select(CheckFeature).where(CheckFeature.check_id == check_id).order_by(CheckFeature.id))]


