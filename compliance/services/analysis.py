"""The SQL side of the analysis: a handful of queries → :class:`AnalysisInput` → pure analysis.

The number of queries does not depend on the number of models, versions or days (a test
counts them). Every query is filtered by ``recorded_at <= as_of`` in SQL, so a report as of T
reads only the evidence that existed at T.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from compliance.analysis.calendar import ns_values
from compliance.analysis.frames import AnalysisInput, positions
from compliance.analysis.quality import attach, findings_of, screen
from compliance.runtime import without_gc_passes
from compliance.services.policy import policy_at, screened_policy_at
from compliance.store.models import (
    Acceptance,
    Artifact,
    Check,
    Correction,
    DecisionVolume,
    DeploymentEvent,
    FailureMode,
    FailureModeOccurrence,
    FailureModeStatusEvent,
    Model,
    ModelVersion,
)
from compliance.store.analysis_reads import (
    WINDOW_US,
    StartedRead,
    fidelity_query,
    other_checks_query,
    start_fidelity_read,
)
from compliance.store.raw import CHECK_COVER, CHECK_SCAN, Scan, raw_batches


def _frame(session: Session, stmt, columns: list[str], compact: dict[str, str] | None = None,
           batch: int = 250_000, scan: Scan | None = None) -> pd.DataFrame:
    """Run a Core select on the raw DBAPI cursor: no per-value ORM/type processing, so millions of
    rows load at driver speed, a batch at a time (the driver's tuples of one batch at most are
    alive at once). Columns are object arrays (the analysis input normalises dtypes once) unless
    ``compact`` names a form for them, applied per batch so that the Python objects of a batch
    are dropped as soon as it is converted: ``int`` (int64, when no NULL), ``float`` (float64,
    NULL = NaN), ``cat`` (a categorical of the strings) or ``ts`` (UTC timestamps, when every
    value of the batch parses inside the analysable window; otherwise the batch keeps its raw
    values, for the data-quality screen to name)."""
    compact = compact or {}
    parts: dict[str, list] = {c: [] for c in columns}
    for rows in raw_batches(session, stmt, batch, scan=scan):
        table = np.empty((len(rows), len(columns)), dtype=object)
        table[:] = rows  # one C-level copy (zip(*rows) in Python is ~5x slower)
        del rows
        for i, c in enumerate(columns):
            parts[c].append(_compact(table[:, i], compact.get(c)))
        del table
    if not parts[columns[0]]:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.DataFrame({c: _concat(parts[c]) for c in columns}, copy=False)  # (columns not copied into blocks)


def _arrow_frame(table, columns: list[str], compact: dict[str, str] | None = None) -> pd.DataFrame:
    """:func:`_frame`'s result from an Arrow table of the same select (a :class:`ColumnarReader`
    read): the same columns in the same forms, converted in Arrow's C++ kernels."""
    compact = compact or {}
    if table.num_rows == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.DataFrame({c: _arrow_column(table.column(i), compact.get(c)) for i, c in enumerate(columns)}, copy=False)


def _arrow_column(col, form: str | None):
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if form == "int" and pa.types.is_integer(t) and col.null_count == 0:
        return col.to_numpy().astype(np.int64, copy=False)
    if form == "float" and (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    if form == "cat" and (pa.types.is_string(t) or pa.types.is_large_string(t)
                          or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))):
        d = (col if pa.types.is_dictionary(t) else pc.dictionary_encode(col)).combine_chunks()
        idx = d.indices if d.indices.null_count == 0 else d.indices.fill_null(-1)
        codes = idx.to_numpy().astype(np.int32, copy=False)
        return pd.Categorical.from_codes(codes, categories=pd.Index(d.dictionary.to_pylist(), dtype=object))
    if form == "ts":
        ts = None
        if pa.types.is_timestamp(t) and t.tz is None:
            ts = col.cast(pa.timestamp("us"))
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            try:  # Arrow parses ISO 8601 strictly; anything it refuses keeps its raw text for the screen
                ts = pc.cast(col, pa.timestamp("us"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                ts = None
        if ts is not None and ts.null_count == 0:
            lo, hi = (pa.scalar(x, pa.int64()) for x in WINDOW_US)
            us = ts.cast(pa.int64())
            if pc.all(pc.and_(pc.greater_equal(us, lo), pc.less(us, hi))).as_py():
                # nanoseconds since the epoch, as UTC: the analysis' own unit (no localising, no second copy)
                ns = (us.to_numpy() * 1000).view("datetime64[ns]")
                return pd.arrays.DatetimeArray._simple_new(ns, dtype=pd.DatetimeTZDtype("ns", "UTC"))
    return pd.Series(col.to_pylist(), dtype=object)


def nullable_floats(col: np.ndarray) -> np.ndarray:
    """An object column of numbers and NULLs as float64 (NULL = NaN)."""
    none = np.equal(col, None)
    return np.where(none, np.nan, col).astype(np.float64) if none.any() else col.astype(np.float64)


def _compact(col: np.ndarray, form: str | None):
    if form == "int" and not np.equal(col, None).any():
        return col.astype(np.int64)
    if form == "float":
        return nullable_floats(col)
    if form == "cat":  # categories as objects: no inference, no Arrow string conversion
        codes, uniques = pd.factorize(col)
        return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object))
    if form == "ts":
        from compliance.analysis.quality import EARLIEST, LATEST

        t = pd.to_datetime(pd.Series(col, dtype=object), utc=True, format="ISO8601", errors="coerce")
        if t.notna().all() and ((t >= EARLIEST) & (t < LATEST)).all():
            return t.array
    return pd.Series(col, dtype=object)


def _concat(parts: list) -> pd.Series:
    """One column from its per-batch parts (categoricals united; mixed forms as objects)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if all(isinstance(p, pd.Categorical) for p in parts):
        from pandas.api.types import union_categoricals

        if len(parts) == 1:
            return pd.Series(parts[0])
        cats = parts[0].categories.append([p.categories for p in parts[1:]])
        if cats.is_unique:  # categories of disjoint parts (a read in parts by artifact): codes offset, not recoded
            offsets = np.cumsum([0] + [len(p.categories) for p in parts[:-1]])
            codes = np.concatenate([np.where(p.codes >= 0, p.codes.astype(np.int32) + o, -1)
                                    for p, o in zip(parts, offsets)])
            return pd.Series(pd.Categorical.from_codes(codes, categories=cats.astype(object)))
        parts = [p if p.categories.dtype == object else p.set_categories(p.categories.astype(object)) for p in parts]
        u = union_categoricals(parts)  # (its categories come back as strings: objects, as each part's)
        return pd.Series(pd.Categorical.from_codes(u.codes, categories=pd.Index(u.categories, dtype=object)))
    arrays = [p.to_numpy() if isinstance(p, pd.arrays.NumpyExtensionArray) else p for p in parts]
    if all(isinstance(p, np.ndarray) and p.dtype.kind in "if" for p in arrays) and len({p.dtype for p in arrays}) == 1:
        return pd.Series(np.concatenate(arrays))
    if all(isinstance(p, pd.arrays.DatetimeArray) for p in parts):
        return pd.Series(pd.arrays.DatetimeArray._concat_same_type(parts))
    return pd.Series(np.concatenate([np.asarray(p, dtype=object) for p in parts]), dtype=object)


def load_input(session: Session, as_of: datetime, *, with_flags: bool = True) -> AnalysisInput:
    """Everything recorded at or before ``as_of`` that the analysis needs (7 queries)."""
    with input_loader(session, as_of, with_flags=with_flags) as load:
        return load()


@contextmanager
def input_loader(session: Session, as_of: datetime, *, with_flags: bool = True, started: StartedRead | None = None,
                 tap: Callable[[pd.DataFrame], None] | None = None) -> Iterator[Callable[[], AnalysisInput]]:
    """:func:`load_input` in two steps: entering starts reading the checks, the bulk, as Arrow
    columns on a thread of their own (when a :class:`~compliance.store.columnar.ColumnarReader`
    sees what the session sees), so the caller can run its other queries meanwhile; calling
    what it yields reads the rest and returns the input. ``started``: that read, already started
    for this session and as-of (:func:`~compliance.store.analysis_reads.started_fidelity_read`);
    its reader is closed here. ``tap``: called with the fidelity checks as read, before the
    data-quality screen (for a figure of the same checks, such as the due list)."""
    fid_q, other_q = fidelity_query(as_of), other_checks_query(as_of, with_flags)
    convert = partial(_arrow_frame, columns=fid_q[1], compact=fid_q[2])
    if started is not None and not started.serves(session, as_of):
        started.close()
        started = None
    if started is not None:
        parts = [_then(f, convert) for f in started.futures or []]
    else:
        started = start_fidelity_read(session, as_of, then=convert)
        parts = started.futures if started is not None else []
    # the fidelity checks (the bulk) on the readers; the few others on the session meanwhile
    fid_read = _gather(parts, _concat_frames) if parts else None
    if started is not None:
        started.futures = None  # each part goes once converted and joined (nothing else holds it)
    del parts
    read = _Handoff(fid_read)  # taken by the load: the loader does not hold the frame once the input is built
    del fid_read
    try:
        yield lambda: _load_input(session, as_of, with_flags, read.take(), fid_q, other_q, tap)
    finally:
        if started is not None:
            started.close()


class _Handoff:
    """Holds one value until it is taken, then nothing (a second take gets None)."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def take(self) -> Any:
        value, self._value = self._value, None
        return value


def _then(future: Future, fn: Callable[[Any], Any]) -> Future:
    """A future of ``fn(future's result)``, computed by whichever thread completes ``future``
    (here, at once, when it already has)."""
    out: Future = Future()

    def done(f: Future) -> None:
        try:
            out.set_result(fn(f.result()))
        except BaseException as exc:
            out.set_exception(exc)

    future.add_done_callback(done)
    return out


def _gather(futures: list[Future], combine: Callable[[list], Any]) -> Future:
    """A future of ``combine([each future's result])``, computed by whichever thread completes the
    last of ``futures`` (the first exception, if any)."""
    if len(futures) == 1:
        return futures[0]
    out: Future = Future()
    pending = list(futures)
    left = [len(pending)]
    lock = threading.Lock()

    def done(_f: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0]:
                return
        try:
            out.set_result(combine([f.result() for f in pending]))
        except BaseException as exc:
            out.set_exception(exc)
        pending.clear()  # the parts go once joined

    for f in pending:
        f.add_done_callback(done)
    return out


def _concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts of one read, in order, as one frame (the forms of :func:`_concat`)."""
    frames = [f for f in frames if len(f)] or frames[:1]
    if len(frames) == 1:
        return frames[0]
    return pd.DataFrame({c: _concat([f[c].array for f in frames]) for c in frames[0].columns}, copy=False)


def _checks_frame(session: Session, future, query: tuple) -> pd.DataFrame:
    """The checks of ``query`` (select, columns, compact forms, SQLite access path): from the reader's
    ``future`` when it has them, else through the session."""
    stmt, cols, compact, scan = query
    if future is not None:
        try:
            return future.result()
        except Exception:  # a value the Arrow driver cannot type (SQLite stores any type in any column)
            pass
    return _frame(session, stmt, cols, compact=compact, scan=scan)


# the small frames' times parsed as they are read, while the checks are still being read (the screen
# then only checks them; a batch with a time it cannot parse keeps its text, for the screen to name)
_TIMES = {"recorded_at": "ts", "trained_at": "ts", "effective_at": "ts"}


def _load_input(session: Session, as_of: datetime, with_flags: bool, fid_read, fid_q: tuple, other_q: tuple,
                tap: Callable[[pd.DataFrame], None] | None = None) -> AnalysisInput:
    models = _frame(session, select(Model.id, Model.tier, Model.owner, Model.recorded_at).where(Model.recorded_at <= as_of),
                    ["model_id", "tier", "owner", "recorded_at"], compact=_TIMES)
    versions = _frame(session, select(ModelVersion.id, ModelVersion.model_id, ModelVersion.label, ModelVersion.trained_at,
                                      ModelVersion.recorded_at).where(ModelVersion.recorded_at <= as_of),
                      ["version_id", "model_id", "label", "trained_at", "recorded_at"], compact=_TIMES)
    deployments = _frame(session, select(DeploymentEvent.version_id, ModelVersion.model_id, DeploymentEvent.action,
                                         DeploymentEvent.effective_at, DeploymentEvent.recorded_at, DeploymentEvent.id)
                         .join(ModelVersion, ModelVersion.id == DeploymentEvent.version_id)
                         .where(DeploymentEvent.recorded_at <= as_of),
                         ["version_id", "model_id", "action", "effective_at", "recorded_at", "event_id"], compact=_TIMES)
    # in id order, the order the covering index gives the checks in: on SQLite they then come in the
    # analysis' own order (by artifact row, version, time) and are not sorted again
    artifacts = _frame(session, select(Artifact.id, Artifact.model_id, Artifact.kind, Artifact.bound_version_id,
                                       Artifact.recorded_at, Artifact.replaces_id, Artifact.set_id)
                       .where(Artifact.recorded_at <= as_of).order_by(Artifact.id),
                       ["artifact_id", "model_id", "kind", "bound_version_id", "recorded_at", "replaces", "set_id"],
                       compact={"bound_version_id": "int", **_TIMES})
    # the first acceptance of each check recorded by the as-of (DESIGN §4: a warn needs one)
    accepted = dict(session.execute(select(Acceptance.check_id, func.min(Acceptance.recorded_at))
                                    .where(Acceptance.recorded_at <= as_of, Acceptance.check_id.is_not(None))
                                    .group_by(Acceptance.check_id)).all())
    # recorded_at is filtered in SQL; the frame's recorded_at defaults to finished_at (<= recorded_at),
    # so the analysis' own as-of filter keeps exactly these rows. Fidelity checks are the bulk and
    # are read with the fewest columns; coverage needs only them and alignment checks, failure-mode
    # detection every kind.
    other = _checks_frame(session, None, other_q)
    # Only the few checks that raised a flag or carry a survival share need their JSON.
    # (the few alignment checks found on the covering index, not by walking the recorded_at one)
    survival = {cid: (_json(m) or {}).get("survival_share") for rows in raw_batches(
        session, select(Check.id, Check.metrics).where(Check.recorded_at <= as_of, Check.kind == "alignment"),
        scan=CHECK_COVER) for cid, m in rows}
    flags = {}
    if with_flags:
        flags = {cid: tuple(_json(f)) for rows in raw_batches(
            session, select(Check.id, Check.flags).where(Check.recorded_at <= as_of, cast(Check.flags, String) != "[]"),
            scan=CHECK_SCAN) for cid, f in rows}
    volumes = _frame(session, select(DecisionVolume.version_id, DecisionVolume.day, DecisionVolume.volume,
                                     DecisionVolume.recorded_at, DecisionVolume.id).where(DecisionVolume.recorded_at <= as_of),
                     ["version_id", "day", "volume", "recorded_at", "volume_id"])
    # The data-quality screen (issue 21): corrections known at as_of applied, unusable records left
    # out and reported, timestamps parsed; what follows only sees records the analysis can use.
    fixes = _frame(session, select(Correction.entity_type, Correction.entity_id).where(Correction.recorded_at <= as_of),
                   ["entity_type", "entity_id"])
    # the fidelity checks last: on a reader, they were read while the queries above ran
    fid = _checks_frame(session, fid_read, fid_q)
    if tap is not None:
        tap(fid)
    fid["kind"] = pd.Categorical.from_codes(np.zeros(len(fid), np.int8), categories=pd.Index(["fidelity"], dtype=object))
    # (a categorical of no values, not two million None objects: cheap to test for missing values)
    fid["other_artifact_id"] = pd.Categorical.from_codes(np.full(len(fid), -1, np.int8), categories=pd.Index([], dtype=object))
    checks = (pd.DataFrame({c: _concat([fid[c].array, other[c].array]) for c in fid.columns}, copy=False)
              if len(other) else fid)
    del fid, fid_read  # (the read's frame is not kept alive beside the checks through the analysis)
    screened, findings, applied = screen(dict(models=models, versions=versions, deployments=deployments,
                                              artifacts=artifacts, checks=checks, volumes=volumes), fixes)
    models, versions, deployments, artifacts, checks, volumes = (
        screened[k] for k in ("models", "versions", "deployments", "artifacts", "checks", "volumes"))
    checks["explained_variance"] = pd.to_numeric(checks["explained_variance"], errors="coerce").astype(float)
    checks["version_id"] = checks["version_id"].astype(np.int64)
    checks["check_id"] = checks["check_id"].astype(np.int64)
    # the model of each check's version, as a categorical (two million strings as objects cost 0.5 s)
    vcode, vmodels = pd.factorize(versions["model_id"].astype(object))
    vrow = positions(versions["version_id"].astype(np.int64).to_numpy(), checks["version_id"].to_numpy())
    checks["model_id"] = pd.Categorical.from_codes(np.where(vrow >= 0, np.r_[vcode, -1][vrow], -1),
                                                   categories=pd.Index(vmodels, dtype=object))
    cids = checks["check_id"].to_numpy()
    checks["survival_share"] = _by_id(cids, {int(k): v for k, v in survival.items()}, np.float64, np.nan)
    nat = np.iinfo(np.int64).min
    acc_ns = pd.to_datetime(list(accepted.values()), utc=True).as_unit("ns").asi8 if accepted else []
    checks["accepted_at"] = pd.arrays.DatetimeArray._simple_new(
        _by_id(cids, dict(zip((int(k) for k in accepted), acc_ns)), np.int64, nat).view("datetime64[ns]"),
        dtype=pd.DatetimeTZDtype("ns", "UTC"))
    # The baseline of an artifact is its first non-error fidelity check on its bound version
    # (as services.checks.baseline_ev); later checks on the bound version are not baselines.
    on_bound = (_on_bound_version(checks, artifacts)
                & (checks["kind"] == "fidelity").to_numpy() & (checks["status"] != "error").to_numpy()
                & checks["explained_variance"].notna().to_numpy())
    first = np.zeros(len(checks), dtype=bool)
    if on_bound.any():
        rows = np.flatnonzero(on_bound)
        art = checks["artifact_id"]
        key = (art.cat.codes.to_numpy() if isinstance(art.dtype, pd.CategoricalDtype)
               else pd.factorize(art.to_numpy(object))[0])[rows]
        o = np.lexsort((cids[rows], ns_values(checks["finished_at"])[rows], key))
        lead = np.r_[True, key[o][1:] != key[o][:-1]]  # the earliest (finished, check id) of each artifact
        first[rows[o][lead]] = True
    checks["is_baseline"] = first
    if with_flags:
        fl = pd.Series(flags, dtype=object) if flags else pd.Series(dtype=object)
        mapped = checks["check_id"].map(fl)
        checks["flags"] = [f if isinstance(f, tuple) else () for f in mapped]
    versions["version_id"] = versions["version_id"].astype(int)
    return attach(AnalysisInput(models=models, versions=versions, deployments=deployments, artifacts=artifacts,
                                checks=checks, volumes=volumes), findings, applied)


def _by_id(ids: np.ndarray, values: dict, dtype, fill) -> np.ndarray:
    """``values[id]`` for each of ``ids`` (``fill`` where it has none), as an array of ``dtype``."""
    out = np.full(len(ids), fill, dtype=dtype)
    if values and len(ids):
        j = positions(np.fromiter(values.keys(), np.int64, len(values)), ids)
        hit = j >= 0
        out[hit] = np.array(list(values.values()), dtype=dtype)[j[hit]]
    return out


def _on_bound_version(checks: pd.DataFrame, artifacts: pd.DataFrame) -> np.ndarray:
    """Whether each check is of its artifact's bound version (False without an artifact)."""
    art, bound_ids = checks["artifact_id"], artifacts["bound_version_id"]
    if isinstance(art.dtype, pd.CategoricalDtype) and pd.api.types.is_integer_dtype(bound_ids.dtype):
        bound = pd.Series(bound_ids.to_numpy(np.float64), index=artifacts["artifact_id"].to_numpy())
        per_cat = np.r_[bound.reindex(art.cat.categories.astype(object)).to_numpy(np.float64), np.nan]
        return per_cat[art.cat.codes.to_numpy()] == checks["version_id"].to_numpy()
    bound = pd.Series(bound_ids.to_numpy(), index=artifacts["artifact_id"].to_numpy())
    return _map_values(art, bound) == checks["version_id"].to_numpy()


def _map_values(col: pd.Series, mapping: pd.Series) -> np.ndarray:
    """``col.map(mapping)`` as an object array; a categorical column is mapped once per category."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        per_cat = mapping.reindex(col.cat.categories.astype(object)).to_numpy(object)
        return np.r_[per_cat, np.array([np.nan], object)][col.cat.codes.to_numpy()]
    return col.astype(object).map(mapping).to_numpy(object)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def open_occurrences_at(session: Session, as_of: datetime) -> list[dict]:
    """Occurrences open at ``as_of`` with their catalog severity (for the per-model verdicts)."""
    sev = dict(session.execute(select(FailureMode.code, FailureMode.severity)).all())
    return [{"model_id": o["model_id"], "version_id": o["version_id"], "code": o["code"],
             "severity": sev.get(o["code"], "")} for o in fm_occurrences(session, as_of) if o["status"] == "open"]


@without_gc_passes
def analyse(session: Session, quarter: str, as_of: datetime, *, inp: AnalysisInput | None = None,
            detail: bool = True) -> dict:
    """Coverage, debt (incurred and outstanding), verdicts, staleness, timeline and trend of a
    quarter as of a time (JSON-safe dict). ``inp``: the input already loaded as of the same time
    (several quarters from one load). ``detail=False``: without slots summary, staleness and
    timelines (see :func:`~compliance.analysis.quarter.analyse_quarter`)."""
    from compliance.analysis.quarter import analyse_quarter

    if inp is None:
        inp = load_input(session, as_of, with_flags=False)
    policy, policy_findings = screened_policy_at(session, as_of)
    out = analyse_quarter(inp, quarter, as_of, policy, open_occurrences_at(session, as_of), detail=detail).to_dict()
    out["data_quality"] = data_quality(inp, policy_findings)
    return out


def data_quality(inp: AnalysisInput, policy_findings: list = ()) -> dict:
    """The screen's report: records left out (each named) and corrections applied."""
    findings, applied = findings_of(inp)
    return {"findings": [f.to_dict() for f in (*policy_findings, *findings)], "corrections_applied": applied}


def detect(session: Session, at: datetime) -> list:
    from compliance.analysis.failure_modes import detect_failure_modes

    return detect_failure_modes(load_input(session, at), at, policy_at(session, at))


def open_occurrence_keys(session: Session) -> set[str]:
    return set(session.scalars(select(FailureModeOccurrence.cause_key)))


def fm_occurrences(session: Session, as_of: datetime | None = None) -> list[dict]:
    """Occurrences with their latest status (as of ``as_of``)."""
    q = select(FailureModeOccurrence)
    e = select(FailureModeStatusEvent).order_by(FailureModeStatusEvent.id)
    if as_of is not None:
        q = q.where(FailureModeOccurrence.recorded_at <= as_of)
        e = e.where(FailureModeStatusEvent.recorded_at <= as_of)
    events: dict[int, list] = {}
    for ev in session.scalars(e):
        events.setdefault(ev.occurrence_id, []).append(ev)
    out = []
    for o in session.scalars(q.order_by(FailureModeOccurrence.id)):
        evs = events.get(o.id, [])
        last = evs[-1] if evs else None
        out.append({"id": o.id, "code": o.code, "cause_key": o.cause_key, "model_id": o.model_id,
                    "version_id": o.version_id, "artifact_id": o.artifact_id, "check_id": o.check_id,
                    "detail": o.detail, "detected_at": o.detected_at, "status": last.status if last else "open",
                    "status_at": last.recorded_at if last else o.recorded_at,
                    "rationale": last.rationale if last else "", "history": [
                        {"status": x.status, "rationale": x.rationale, "actor": x.actor, "at": x.recorded_at} for x in evs]})
    return out
