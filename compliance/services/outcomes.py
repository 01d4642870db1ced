"""Outcome checks: performance (outcomes analysis) and fairness of a model version on labelled data.

Both read a CSV/Parquet file of scored (or scorable) rows, keep for the outcome figures only the
rows whose outcome has matured by the check time (no look-ahead: timestamp + maturity window <=
check time), judge the figures by the policy in force for the model's tier and record one
``check_run`` row (kind ``performance`` or ``fairness``) through the ledger.

Columns come from explicit options first, then from the dataset's registered column roles
(``compliance data add --role target=... --role protected=...``) when the file is a registered
dataset of the model (matched by its SHA-256). A score column is optional when the model has an
adapter: the version then scores the rows itself. Bad input (unreadable file, a missing column,
a target that is not 0/1, no matured outcome, one outcome class) raises before anything is
recorded: no evidence was produced, and nothing is written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import InputError, UsageError
from compliance.hashing import sha256_file
from compliance.policy_defaults import DEFAULT_POLICY, policy_for_tier
from compliance.services.checks import Started, _finish, _now, check_view, version_model
from compliance.services.policy import policy_at
from compliance.services.registry import get_model, get_version
from compliance.store.models import Check, Dataset, ModelVersion

DEFAULT_THRESHOLD = 0.5
MAX_NUMERIC_GROUPS = 20  # a numeric protected column with more distinct values must be banded first


@dataclass
class Columns:
    target: str | None = None
    score: str | None = None
    weight: str | None = None
    timestamp: str | None = None
    protected: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)  # role -> "option" | "dataset <id>"


def _role(cols: dict | None, role: str) -> list[str]:
    v = (cols or {}).get(role) or []
    return [v] if isinstance(v, str) else [str(x) for x in v]


def registered_dataset(session: Session, model_id: str, digest: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.sha256 == digest)
                           .order_by(Dataset.id.desc()).limit(1)).first()


def resolve_columns(ds: Dataset | None, *, target=None, score=None, weight=None, timestamp=None,
                    protected: list[str] | None = None) -> Columns:
    """Explicit options win; otherwise the registered dataset's column roles."""
    roles = (ds.columns if ds is not None else None) or {}
    c = Columns()
    for name, given in (("target", target), ("score", score), ("weight", weight), ("timestamp", timestamp)):
        reg = _role(roles, name)
        if given:
            setattr(c, name, given)
            c.source[name] = "option"
        elif reg:
            setattr(c, name, reg[0])
            c.source[name] = f"dataset {ds.id}"
    if protected:
        c.protected, c.source["protected"] = list(protected), "option"
    elif _role(roles, "protected"):
        c.protected, c.source["protected"] = _role(roles, "protected"), f"dataset {ds.id}"
    return c


def _section(session: Session, at: datetime, tier: int, name: str) -> dict:
    doc = policy_for_tier(policy_at(session, at), tier)
    return dict(DEFAULT_POLICY[name], **(doc.get(name) or {}))  # a pre-outcomes policy: the defaults


def _read(path: Path, what: str = "data"):
    """A CSV or Parquet file as a frame (as ``checks.drift.read_frame``, without importing scipy.stats)."""
    import pandas as pd

    name = path.name.lower()
    parquet = name.endswith((".parquet", ".pq"))
    if not parquet and not name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        raise InputError(f"{path.name}: unsupported file type for the {what} (expected .csv or .parquet)")
    try:
        df = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a bad file
        raise InputError(f"{path.name}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if len(df) == 0:
        raise InputError(f"{path.name}: no rows")
    return df


def _need(df, col: str | None, what: str, path: Path) -> None:
    if col is None:
        raise InputError(f"no {what} column: pass --{what} or register the dataset with a {what} role")
    if col not in df.columns:
        raise InputError(f"{path.name}: no column {col!r} ({what})")


def _numeric(df, col: str, path: Path, what: str) -> np.ndarray:
    import pandas as pd

    s = df[col]
    if s.dtype == bool:
        return s.to_numpy(np.float64)
    v = pd.to_numeric(s, errors="coerce")
    bad = v.isna() & s.notna()
    if bad.any():
        raise InputError(f"{path.name}: {what} column {col!r} is not numeric (e.g. {s[bad].iloc[0]!r})")
    return v.to_numpy(np.float64)


@dataclass
class Prepared:
    """A labelled file resolved to arrays: what both outcome checks share."""
    path: Path
    digest: str
    cols: Columns
    frame: Any
    score: np.ndarray
    y: np.ndarray  # NaN where no outcome is known
    weight: np.ndarray | None
    matured: np.ndarray  # bool: outcome known and matured by the check time
    threshold: float
    params: dict
    counts: dict
    window: tuple[date | None, date | None]


def _prepare(session: Session, st: Started, v: ModelVersion, *, data, target, score, weight, timestamp, threshold,
             maturity_days, protected, need_target: bool, section: dict) -> Prepared:
    from compliance.checks.performance import matured_mask

    path = Path(data)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    digest = sha256_file(path)
    ds = registered_dataset(session, v.model_id, digest)
    cols = resolve_columns(ds, target=target, score=score, weight=weight, timestamp=timestamp, protected=protected)
    df = _read(path)
    n = len(df)
    params: dict[str, Any] = {"data": path.name, "columns": {k: getattr(cols, k) for k in ("target", "score", "weight",
                                                                                        "timestamp", "protected")},
                              "column_source": cols.source}
    if need_target or cols.target is not None:
        _need(df, cols.target, "target", path)
    for c in cols.protected:
        _need(df, c, "protected", path)
    model = None
    if cols.score is not None:
        _need(df, cols.score, "score", path)
        s = _numeric(df, cols.score, path, "score")
        if not np.all(np.isfinite(s)):
            raise InputError(f"{path.name}: score column {cols.score!r} has missing or infinite values")
        params["score_source"] = f"column {cols.score}"
    else:
        if not get_model(session, v.model_id).adapter:
            raise InputError(f"no score column and model {v.model_id} has no adapter: pass --score")
        from compliance.interp.scoring import score_frame

        model = version_model(session, v)
        s = score_frame(model, df)
        params["score_source"] = f"adapter ({v.label})"
    if threshold is None and model is None and get_model(session, v.model_id).adapter:
        model = version_model(session, v)  # the decision threshold lives with the version's weights
    if threshold is not None:
        thr, params["threshold_source"] = float(threshold), "option"
    elif model is not None:
        thr, params["threshold_source"] = float(model.decision_threshold), f"adapter ({v.label})"
    else:
        thr, params["threshold_source"] = DEFAULT_THRESHOLD, "default"
    params["threshold"] = thr
    w = None
    if cols.weight is not None:
        _need(df, cols.weight, "weight", path)
        w = _numeric(df, cols.weight, path, "weight")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise InputError(f"{path.name}: weight column {cols.weight!r} must be finite and >= 0")
    y = np.full(n, np.nan)
    if cols.target is not None:
        y = _numeric(df, cols.target, path, "target")
        known = ~np.isnan(y)
        if np.any(known & (y != 0) & (y != 1)):
            bad = y[known & (y != 0) & (y != 1)][0]
            raise InputError(f"{path.name}: target column {cols.target!r} must be 0/1 (found {bad:g})")
    known = ~np.isnan(y)
    mdays = float(maturity_days) if maturity_days is not None else float(section["maturity_days"])
    as_of = np.datetime64(st.started_at.astimezone(timezone.utc).replace(tzinfo=None), "ns")
    window = ds_window = (ds.window_start, ds.window_end) if ds is not None else (None, None)
    if cols.timestamp is not None:
        _need(df, cols.timestamp, "timestamp", path)
        ts = _timestamps(df[cols.timestamp], path, cols.timestamp)
        mature = matured_mask(ts, as_of, mdays)
        params.update(maturity_days=mdays, label_lag="applied")
        if ds_window == (None, None) and (~np.isnat(ts)).any():
            window = (_day(ts[~np.isnat(ts)].min()), _day(ts[~np.isnat(ts)].max()))
    else:
        mature = np.ones(n, bool)
        params.update(maturity_days=None, label_lag="not applied: no timestamp column (every labelled row judged)")
    matured = known & mature
    counts = {"n_rows_file": n, "n_unlabelled": int((~known).sum()),
              "n_not_matured": int((known & ~mature).sum()), "n_matured": int(matured.sum())}
    params["as_of"] = st.started_at.isoformat()
    return Prepared(path, digest, cols, df, s, y, w, matured, thr, params, counts, window)


def _timestamps(s, path: Path, col: str) -> np.ndarray:
    import warnings

    import pandas as pd

    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise InputError(f"{path.name}: timestamp column {col!r} is not a date/time (it holds numbers)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas' "could not infer format"
            t = pd.to_datetime(s, utc=True, errors="raise")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{path.name}: timestamp column {col!r} is not a date/time ({str(exc).splitlines()[0]})") from None
    return t.dt.tz_localize(None).to_numpy("datetime64[ns]")


def _day(t: np.datetime64) -> date:
    return np.datetime64(t, "D").astype(object)


def _no_matured(p: Prepared) -> InputError:
    c = p.counts
    lag = f"maturity {p.params['maturity_days']:g} days" if p.params.get("maturity_days") is not None else "no timestamps"
    return InputError(f"{p.path.name}: no row has a matured outcome by {p.params['as_of'][:10]} "
                      f"({c['n_rows_file']} rows: {c['n_unlabelled']} unlabelled, {c['n_not_matured']} not matured; "
                      f"{lag}): nothing to judge")


# ------------------------------------------------------------------ baselines
def _development_baseline(session: Session, v: ModelVersion, p: Prepared, reference, before: datetime
                          ) -> tuple[dict, np.ndarray | None]:
    """Development figures the current ones are compared with: a ``reference`` file (its scores for
    the score PSI and, when labelled, its AUC), else the AUC recorded in the version's metadata
    (``development_auc``), else the first performance check recorded on the version."""
    from compliance.checks.performance import auc

    out: dict[str, Any] = {"baseline_auc": None, "baseline_source": None}
    ref_scores = None
    if reference is not None:
        rp = Path(reference)
        if not rp.is_file():
            raise InputError(f"{rp}: no such file")
        rdf = _read(rp, "reference")
        if p.cols.score is not None:
            _need(rdf, p.cols.score, "score", rp)
            ref_scores = _numeric(rdf, p.cols.score, rp, "score")
        else:
            from compliance.interp.scoring import score_frame

            ref_scores = score_frame(version_model(session, v), rdf)
        if not np.all(np.isfinite(ref_scores)):
            raise InputError(f"{rp.name}: reference scores have missing or infinite values")
        out["reference"] = rp.name
        out["reference_sha256"] = sha256_file(rp)
        if p.cols.target is not None and p.cols.target in rdf.columns:
            ry = _numeric(rdf, p.cols.target, rp, "target")
            k = ~np.isnan(ry)
            rw = _numeric(rdf, p.cols.weight, rp, "weight")[k] if p.cols.weight and p.cols.weight in rdf.columns else None
            out["baseline_auc"], out["baseline_source"] = auc(ry[k], ref_scores[k], rw), f"reference {rp.name}"
        return out, ref_scores
    meta_auc = _metadata_auc(session, v)
    if meta_auc is not None:
        out["baseline_auc"], out["baseline_source"] = meta_auc, f"version {v.label} metadata"
        return out, None
    first = session.scalars(select(Check).where(Check.kind == "performance", Check.version_id == v.id,
                                                Check.status != "error", Check.finished_at <= before)
                            .order_by(Check.finished_at, Check.id).limit(1)).first()
    if first is not None and (first.metrics or {}).get("auc") is not None:
        out["baseline_auc"], out["baseline_source"] = float(first.metrics["auc"]), f"first check {first.id}"
    return out, None


def _metadata_auc(session: Session, v: ModelVersion) -> float | None:
    """``development_auc`` from the version's weights metadata (safetensors ``__metadata__``), if any."""
    path = Path(v.weights_path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    import json
    import struct

    try:
        with path.open("rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = (json.loads(f.read(n)).get("__metadata__") or {})
        val = meta.get("development_auc")
        return float(val) if val is not None else None
    except (OSError, ValueError, struct.error):
        return None


# ------------------------------------------------------------------ performance
def run_performance(session: Session, model_id: str, version: str, *, data: str | Path,
                    target: str | None = None, score: str | None = None, weight: str | None = None,
                    timestamp: str | None = None, threshold: float | None = None, maturity_days: float | None = None,
                    reference: str | Path | None = None, calibration: str = "quantile") -> dict:
    """Outcomes analysis of a version on labelled data (see the module docstring)."""
    from compliance.checks.performance import PerformancePolicy, evaluate, judge, score_psi

    if calibration not in ("quantile", "uniform"):
        raise UsageError(f"--calibration must be quantile or uniform, not {calibration!r}")
    if maturity_days is not None and maturity_days < 0:
        raise UsageError("--maturity-days must be >= 0")
    v = get_version(session, model_id, version)
    m = get_model(session, model_id)
    st = Started("performance", model_id, v.id, None, _now(session), time.perf_counter())
    section = _section(session, st.started_at, m.tier, "performance")
    pol = PerformancePolicy.from_policy(section)
    p = _prepare(session, st, v, data=data, target=target, score=score, weight=weight, timestamp=timestamp,
                 threshold=threshold, maturity_days=maturity_days, protected=None, need_target=True, section=section)
    if p.counts["n_matured"] == 0:
        raise _no_matured(p)
    k = p.matured
    perf = evaluate(p.y[k], p.score[k], p.weight[k] if p.weight is not None else None, threshold=p.threshold,
                    calibration_strategy=calibration)
    dev, ref_scores = _development_baseline(session, v, p, reference, st.started_at)
    psi = score_psi(ref_scores, p.score) if ref_scores is not None else None
    status, reasons = judge(perf, pol, baseline_auc=dev["baseline_auc"], score_psi_value=psi)
    metrics = dict(perf.to_dict(), **p.counts, score_psi=psi, baseline_auc=dev["baseline_auc"],
                   baseline_source=dev["baseline_source"],
                   auc_drop=(dev["baseline_auc"] - perf.auc) if dev["baseline_auc"] is not None else None)
    metrics.pop("formula_version", None)
    hashes = {"data": p.digest}
    if "reference_sha256" in dev:
        hashes["reference"] = dev["reference_sha256"]
        p.params["reference"] = dev["reference"]
    if p.params["score_source"].startswith("adapter"):
        hashes["weights"] = v.weights_sha256
    p.params["calibration_strategy"] = calibration
    st.window = p.window
    c = _finish(session, st, status=status, metrics=metrics, reasons=reasons, flags=[], input_hashes=hashes,
                parameters=p.params, formula_version=perf.formula_version)
    return check_view(session, c)


# ------------------------------------------------------------------ fairness
def run_fairness(session: Session, model_id: str, version: str, *, data: str | Path, protected: list[str] | None = None,
                 target: str | None = None, score: str | None = None, weight: str | None = None,
                 timestamp: str | None = None, threshold: float | None = None,
                 maturity_days: float | None = None) -> dict:
    """Group fairness of a version's decisions; a fail flags ``FM-PROTECTED`` on the check."""
    from compliance.checks.fairness import FairnessPolicy, evaluate

    if maturity_days is not None and maturity_days < 0:
        raise UsageError("--maturity-days must be >= 0")
    v = get_version(session, model_id, version)
    m = get_model(session, model_id)
    st = Started("fairness", model_id, v.id, None, _now(session), time.perf_counter())
    perf_section = _section(session, st.started_at, m.tier, "performance")
    section = _section(session, st.started_at, m.tier, "fairness")
    pol = FairnessPolicy.from_policy(section)
    p = _prepare(session, st, v, data=data, target=target, score=score, weight=weight, timestamp=timestamp,
                 threshold=threshold, maturity_days=maturity_days, protected=protected, need_target=False,
                 section=perf_section)
    if not p.cols.protected:
        raise InputError("no protected attribute: pass --protected or register the dataset with a protected role")
    for a in p.cols.protected:
        col = p.frame[a]
        if col.dtype.kind in "fiu" and col.nunique() > MAX_NUMERIC_GROUPS:
            raise InputError(f"{p.path.name}: protected attribute {a!r} is numeric with {col.nunique()} distinct values: "
                             f"give a banded column (e.g. {a}_band) instead")
    y = np.where(p.matured, p.y, np.nan) if p.cols.target is not None else None
    res = evaluate({a: p.frame[a].to_numpy() for a in p.cols.protected}, p.score, p.threshold, y, p.weight, pol)
    reasons = res.reasons()
    too_small = [f"{g.attribute}={g.group}" for a in res.attributes for g in a.groups if g.status == "too_small"]
    if too_small:
        reasons.append(f"not judged (fewer than {pol.min_group_size} rows): {', '.join(too_small)}")
    d = res.to_dict()
    metrics = dict(d, **p.counts, min_group_size=pol.min_group_size)
    metrics.pop("formula_version", None)
    metrics.pop("status", None)
    flags = ["FM-PROTECTED"] if res.status == "fail" else []
    hashes = {"data": p.digest}
    if p.params["score_source"].startswith("adapter"):
        hashes["weights"] = v.weights_sha256
    st.window = p.window
    c = _finish(session, st, status=res.status, metrics=metrics, reasons=reasons, flags=flags, input_hashes=hashes,
                parameters=p.params, formula_version=res.formula_version)
    return check_view(session, c)
