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
from compliance.errors import InputError, UsageError
from compliance.hashing import json_safe, sha256_file
from compliance.services.policy import policy_at
from compliance.services.registry import get_artifact, get_model, get_version, plain, version_by_id
from compliance.store.ledger import record, record_many
from compliance.store.models import Artifact, Check, CheckFeature, Dataset, ModelVersion

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


def _finish(session: Session, st: Started, *, status: str, metrics: dict, reasons: list[str], flags: list[str],
            input_hashes: dict, parameters: dict, explained_variance: float | None = None,
            formula_version: str | None = None) -> Check:
    # finished_at comes from the store's clock (the same clock as recorded_at), so a replayed
    # history is reproducible; the measured wall time is kept as a parameter.
    finished = max(_now(session), st.started_at)
    parameters = dict(parameters, wall_seconds=round(time.perf_counter() - st.t0, 3)) if not session.info.get("replay") else parameters
    c = Check(kind=st.kind, model_id=st.model_id, version_id=st.version_id, artifact_id=st.artifact_id,
              other_artifact_id=st.other_artifact_id, window_start=st.window[0], window_end=st.window[1],
              input_hashes=json_safe(input_hashes), parameters=json_safe(parameters), metrics=json_safe(metrics),
              status=status, reasons=list(reasons), flags=sorted(set(flags)),
              explained_variance=explained_variance, started_at=st.started_at,
              finished_at=finished,
              tool_version=__version__, formula_version=formula_version)
    return record(session, c)


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
    return resolve_adapter(m.adapter)(path)


def data_for(session: Session, model_id: str, at: datetime, data: str | Path | None) -> tuple[Path, str, tuple]:
    """The data file a check runs on: the one given, or the registered production window in force at ``at``."""
    if data is not None:
        p = Path(data)
        return p, sha256_file(p), (None, None)
    day = at.date()
    rows = session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.role == "production",
                                                 Dataset.recorded_at <= at)
                           .order_by(Dataset.window_start.desc(), Dataset.id.desc())).all()
    chosen = next((d for d in rows if d.window_start and d.window_start <= day and (d.window_end is None or day <= d.window_end)), None)
    chosen = chosen or next((d for d in rows if d.window_start is None or d.window_start <= day), None)
    if chosen is None:
        raise InputError(f"no production data registered for {model_id} at {day}: pass --data or `compliance data add`")
    p = Path(chosen.path)
    h = sha256_file(p)
    if h != chosen.sha256:
        raise InputError(f"hash mismatch: data file {p.name} changed since registration")
    return p, h, (chosen.window_start, chosen.window_end)


def _frame(path: Path, max_rows: int | None):
    from compliance.checks.drift import read_frame

    df = read_frame(path)
    if len(df) == 0:
        raise InputError(f"{path.name}: no rows")
    return df.iloc[:max_rows] if max_rows else df


def _load(a: Artifact):
    from compliance.interp.loaders import load_artifact

    return load_artifact(a.path, expected_sha256=a.files)


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
    if ev is not None and (ev < _p(policy, "fidelity", "ev_warn")
                           or (base is not None and base - ev > _p(policy, "fidelity", "decay_warn"))):
        flags.append("FM-DECAY")
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
    a = get_artifact(session, artifact_id)
    if budget is not None:
        from compliance.services.budgeted import require_budget_kind

        require_budget_kind(a.kind, "fidelity")
    v = get_version(session, a.model_id, version) if version else version_by_id(session, a.bound_version_id)
    st = _start(session, "fidelity", a.model_id, v.id, a.id)
    policy = policy_at(session, st.started_at)
    hashes: dict[str, Any] = {"artifact": a.sha256}
    params: dict[str, Any] = {"batch_rows": batch_rows, "max_rows": max_rows,
                              "source": "activations" if activations is not None else "adapter"}
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
            res = compute_fidelity(coder, iter_safetensors_batches(p, batch_rows, coder=coder), device=device)
        else:
            model = version_model(session, v)
            hashes["weights"] = v.weights_sha256
            path, hashes["data"], st.window = data_for(session, a.model_id, st.started_at, data)
            params["data"] = path.name
            frame = _frame(path, max_rows)
            from compliance.interp.downstream import compute_downstream, model_activation_batches

            hooks = _hooks_for(a)
            res = compute_fidelity(coder, model_activation_batches(coder, model, frame, batch_rows=batch_rows,
                                                                   device=device, **hooks), device=device)
            downstream = compute_downstream(coder, model, frame, batch_rows=batch_rows, device=device, **hooks)
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


def _probe_fidelity(session, st, a, v, data, max_rows, policy, hashes, params) -> dict:
    """A probe stays faithful while it still separates its target on current data (AUC)."""
    from compliance.interp.probe import probe_fidelity

    model = version_model(session, v)
    hashes["weights"] = v.weights_sha256
    path, hashes["data"], st.window = data_for(session, a.model_id, st.started_at, data)
    params["data"] = path.name
    res = probe_fidelity(_load(a), model, _frame(path, max_rows), (a.extra or {}).get("cfg") or {}, a.hook_in)
    metrics = res.to_dict()
    pp = policy.get("probe") or {}
    warn_at, fail_at = float(pp.get("auc_warn", 0.7)), float(pp.get("auc_fail", 0.6))
    status, reasons = "pass", []
    if res.auc < fail_at:
        status, reasons = "fail", [f"fail: probe AUC {res.auc:.3f} < {fail_at}"]
    elif res.auc < warn_at:
        status, reasons = "warn", [f"warn: probe AUC {res.auc:.3f} < {warn_at}"]
    c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=["FM-DECAY"] if status != "pass" else [],
                input_hashes=hashes, parameters=params, formula_version=res.formula_version)
    return check_view(session, c)


def _baseline_fidelity(session, st, a, v, data, max_rows, policy, hashes, params) -> dict:
    """An attribution baseline is faithful when integrated-gradient attributions from it are
    complete on the deployed version (see compliance.interp.baseline)."""
    from compliance.interp.baseline import baseline_fidelity
    from compliance.interp.status import fidelity_status

    baseline = _load(a)
    model = version_model(session, v)
    hashes["weights"] = v.weights_sha256
    path, hashes["data"], st.window = data_for(session, a.model_id, st.started_at, data)
    params["data"] = path.name
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
        policy = policy_at(session, st.started_at)
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
    policy = policy_at(session, st.started_at)
    hashes = {"from": v1.weights_sha256, "to": v2.weights_sha256}
    params = {"mode": "representation_shift", "hook": hook, "from": from_version, "to": to_version}
    try:
        from compliance.interp.alignment import representation_shift
        from compliance.interp.downstream import capture_activations

        path, hashes["data"], st.window = data_for(session, model_id, st.started_at, data)
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
    policy = policy_at(session, st.started_at)
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
        ref_path = Path(reference)
        hashes["reference"] = sha256_file(ref_path)
        cur_path, hashes["current"], st.window = data_for(session, a.model_id, st.started_at, current)
        params.update(reference=ref_path.name, current=cur_path.name)
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
    policy = policy_at(session, st.started_at)
    hashes: dict[str, Any] = {"artifact": a.sha256}
    params: dict[str, Any] = {"rows": rows, "repeats": repeats, "warmup": warmup}
    try:
        if a.kind not in CODER_KINDS:
            raise InputError(f"overhead does not apply to a {a.kind} artifact")
        from compliance.interp.overhead import measure_overhead
        from compliance.interp.status import overhead_status

        coder, model = _load(a), version_model(session, v)
        hashes["weights"] = v.weights_sha256
        path, hashes["data"], st.window = data_for(session, a.model_id, st.started_at, data)
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
def run_drift(session: Session, model_id: str, version: str, *, reference: str | Path, current: str | Path,
              window: tuple[date | None, date | None] = (None, None), features: list[str] | None = None,
              categorical: list[str] | None = None, streaming: bool | None = None, budget=None) -> dict:
    """Input drift between a reference and a current file, per feature and dataset-level.

    Bad input (unreadable file, a feature missing from one side, mismatched dtypes, an empty
    window) raises before anything is recorded: no evidence was produced, and nothing is written.
    """
    from compliance.checks.drift import DriftPolicy, compute_drift_files

    v = get_version(session, model_id, version)
    started = _now(session)
    t0 = time.perf_counter()
    pol = policy_at(session, started).get("drift") or {}
    dp = DriftPolicy(**{k: float(pol[k]) for k in ("psi_warn", "psi_fail", "drift_share") if k in pol})
    ref, cur = Path(reference), Path(current)
    skipped: list[str] = []
    if features is None:
        features, skipped = _auto_features(ref, cur)
    if window == (None, None) and cur.is_file():
        window = _registered_window(session, model_id, sha256_file(cur))
    bparams, cis = {}, None
    if budget is not None:
        from compliance.services.budgeted import budgeted_drift_result

        res, cis, bparams = budgeted_drift_result(ref, cur, features=features, categorical=categorical, policy=dp,
                                                  budget=budget)
    else:
        res = compute_drift_files(ref, cur, features=features, categorical=categorical, policy=dp, streaming=streaming)
    hashes = {"reference": sha256_file(ref), "current": sha256_file(cur)}
    d = res.to_dict()
    per_feature = d.pop("features")
    metrics = dict(d, n_features=len(per_feature), n_drifted=sum(f["status"] == "fail" for f in per_feature),
                   n_warn=sum(f["status"] == "warn" for f in per_feature))
    reasons = [f"{f['status']}: {f['feature']} PSI {f['psi']:.3f}" for f in per_feature
               if f["status"] in ("warn", "fail") and f["psi"] is not None]
    if cis is not None:
        from compliance.services.budgeted import drift_interval_reasons

        metrics.update(ci=cis, rows_to_decide=bparams.get("rows_to_decide"))
        reasons = drift_interval_reasons(per_feature, cis, bparams)
    st = Started("data_drift", model_id, v.id, None, started, t0, window=window)
    c = _finish(session, st, status=res.status, metrics=metrics, reasons=reasons, flags=[], input_hashes=hashes,
                parameters={"features": features, "skipped": skipped, "categorical": categorical, "reference": ref.name,
                            "current": cur.name, "method": res.method, **bparams})
    record_many(session, [CheckFeature(check_id=c.id, feature=f["feature"], feature_kind=f["kind"], n_ref=f["n_ref"],
                                       n_cur=f["n_cur"], missing_ref=f["missing_ref"], missing_cur=f["missing_cur"],
                                       psi=f["psi"], ks_stat=f["ks_stat"], ks_pvalue=f["ks_pvalue"],
                                       wasserstein=f["wasserstein"], js_distance=f["js_distance"],
                                       chi2_pvalue=f["chi2_pvalue"], status=f["status"]) for f in per_feature])
    out = check_view(session, c)
    out["features"] = per_feature
    return out


def _registered_window(session: Session, model_id: str, digest: str) -> tuple[date | None, date | None]:
    d = session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.sha256 == digest)
                        .order_by(Dataset.id.desc()).limit(1)).first()
    return (d.window_start, d.window_end) if d else (None, None)


def _auto_features(ref: Path, cur: Path) -> tuple[list[str] | None, list[str]]:
    """Columns to compare when none are named: every column except timestamps/dates (event times
    are not features; comparing them across windows is drift by construction). Parquet schemas
    say which columns are temporal; for CSV every column is kept."""
    if ref.suffix.lower() != ".parquet" or not ref.is_file():
        return None, []
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(ref)
    except (OSError, pa.ArrowException):
        return None, []  # compute_drift_files reports the unreadable file
    skip = [f.name for f in schema if pa.types.is_temporal(f.type) or _is_identifier(f.name)]
    if not skip:
        return None, []
    return [f.name for f in schema if f.name not in skip], skip


def _is_identifier(name: str) -> bool:
    """Row identifiers (``id``, ``*_id``) are unique per row: comparing them is drift by construction."""
    n = name.lower()
    return n == "id" or n.endswith("_id") or n.endswith("_uuid")


# ------------------------------------------------------------------ queries
def list_checks(session: Session, *, model_id: str | None = None, artifact_id: str | None = None,
                kind: str | None = None, limit: int | None = None) -> list[dict]:
    q = select(Check, ModelVersion.label).outerjoin(ModelVersion, ModelVersion.id == Check.version_id)
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
    return dict(check_view(session, c), features=check_features(session, check_id))


def check_features(session: Session, check_id: int) -> list[dict]:
    return [plain(f) for f in session.scalars(select(CheckFeature).where(CheckFeature.check_id == check_id).order_by(CheckFeature.id))]


