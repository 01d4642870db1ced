"""Which data a check may use (DESIGN §3, methodology v2): registered windows, no look-ahead,
the development data of a version as the default drift reference, and a model's key drivers.

A window ending on day d is complete at 00:00 UTC of day d+1: a check at time t may use it only
when that instant is at or before t (the store's clock, so a replayed history is held to the
same rule). A data file whose window is not registered is "window unknown" and is recorded so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import InputError, LookAhead
from compliance.hashing import sha256_file
from compliance.store.models import Artifact, Check, Dataset, ModelVersion


@dataclass
class DataRef:
    """A data file a check used: the registered dataset (if any), its hash and window."""

    path: Path
    sha256: str
    window: tuple[date | None, date | None]
    dataset: Dataset | None = None

    def describe(self) -> dict:
        d = self.dataset
        return {"dataset_id": d.id if d is not None else None, "path": str(self.path), "sha256": self.sha256,
                "window": [w.isoformat() if w else None for w in self.window]}

    @property
    def name(self) -> str:
        return self.path.name

    def schema(self) -> list[tuple[str, str]]:
        from compliance.checks.roles import file_schema

        return file_schema(self.path)


QUERY_PREFIXES = ("sql:", "spark:")


def is_query(source) -> bool:
    """``sql:SELECT …`` / ``spark:SELECT …`` (or ``…:schema.table``): data that stays where it lives."""
    return isinstance(source, str) and source.startswith(QUERY_PREFIXES)


@dataclass
class QueryRef:
    """Data a check reads where it lives (a query on a warehouse): only aggregates leave it, so the
    evidence is the query text, the warehouse (without its password) and the window, and the
    hash of the aggregates the check computed from (recorded with the check)."""

    query: str
    warehouse: str  # a SQLAlchemy URL, or a Spark master URL for engine 'spark'
    window: tuple[date | None, date | None]
    engine: str = "sql"  # 'sql' | 'spark'
    dataset: Dataset | None = None

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.query.encode()).hexdigest()

    @property
    def name(self) -> str:
        q = " ".join(self.query.split())
        return f"{self.engine}:" + (q if len(q) <= 60 else q[:57] + "…")

    def describe(self) -> dict:
        from compliance.checks.drift_sql import redact

        return {"dataset_id": None, "engine": self.engine, "query": self.query,
                "warehouse": redact(self.warehouse) if self.engine == "sql" else self.warehouse,
                "query_sha256": self.sha256, "window": [w.isoformat() if w else None for w in self.window]}

    def schema(self) -> list[tuple[str, str]]:
        from compliance.checks.drift_sql import query_schema, spark_query_schema, spark_session

        if self.engine == "spark":
            return spark_query_schema(spark_session(self.warehouse), self.query)
        return query_schema(self.warehouse, self.query)


def given_query(at: datetime, source: str, warehouse: str | None, what: str,
                window: tuple[date | None, date | None] = (None, None)) -> QueryRef:
    """A ``sql:`` source named by the caller, on ``warehouse``, checked for look-ahead."""
    from compliance.errors import UsageError

    engine, q = source.split(":", 1)
    if not warehouse:
        where = "a SQLAlchemy URL" if engine == "sql" else "a Spark master URL such as local[2] or spark://host:7077"
        raise UsageError(f"the {what} is a {engine}: query: give --warehouse ({where}) or set COMPLIANCE_WAREHOUSE_URL")
    if not q.strip():
        raise InputError(f"the {what} query is empty")
    guard_look_ahead(at, window, what)
    return QueryRef(q.strip(), warehouse, window, engine)


def available_at(window_end: date) -> datetime:
    """The first instant at which data of a window ending on ``window_end`` is complete."""
    return datetime.combine(window_end + timedelta(days=1), time(0), tzinfo=timezone.utc)


def guard_look_ahead(at: datetime, window: tuple[date | None, date | None], what: str) -> None:
    """Refuse (raise, nothing recorded) data whose window ends after the check time ``at``."""
    end = window[1]
    if end is not None and available_at(end) > at:
        raise LookAhead(f"look-ahead refused: the {what} window ends {end.isoformat()}, after the check time "
                        f"{at.isoformat(timespec='minutes')} (a window can be used from the day after it ends)")


def registered(session: Session, model_id: str, digest: str, at: datetime) -> Dataset | None:
    """The latest dataset of the model with this content hash registered at or before ``at``."""
    return session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.sha256 == digest,
                                                 Dataset.recorded_at <= at)
                           .order_by(Dataset.id.desc()).limit(1)).first()


def _checked(d: Dataset) -> DataRef:
    p = Path(d.path)
    if not p.is_file():
        raise InputError(f"registered data file {p} (dataset {d.id}) is missing")
    h = sha256_file(p)
    if h != d.sha256:
        raise InputError(f"hash mismatch: data file {p.name} changed since registration")
    return DataRef(p, h, (d.window_start, d.window_end), d)


def given_file(session: Session, model_id: str, at: datetime, path: str | Path, what: str,
               window: tuple[date | None, date | None] = (None, None)) -> DataRef:
    """A data file named by the caller: its registered window (when registered), checked for look-ahead.
    ``window``: a window the caller states; it wins over the registered one."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} data file not found: {p}")
    h = sha256_file(p)
    d = registered(session, model_id, h, at)
    if window == (None, None) and d is not None:
        window = (d.window_start, d.window_end)
    guard_look_ahead(at, window, what)
    return DataRef(p, h, window, d)


def production_data(session: Session, model_id: str, at: datetime) -> DataRef:
    """The default data of a check at ``at``: the latest registered production window that has
    ended by ``at`` (never one still open: that would be look-ahead); else an undated one."""
    rows = session.scalars(select(Dataset).where(Dataset.model_id == model_id, Dataset.role == "production",
                                                 Dataset.recorded_at <= at)
                           .order_by(Dataset.window_end.desc(), Dataset.id.desc())).all()
    ended = [d for d in rows if d.window_end is not None and available_at(d.window_end) <= at]
    if ended:
        return _checked(max(ended, key=lambda d: (d.window_end, d.id)))
    undated = [d for d in rows if d.window_end is None]
    if undated:
        return _checked(max(undated, key=lambda d: d.id))
    raise InputError(f"no production data registered for {model_id} whose window ended by {at.date()}: "
                     f"pass --data or `compliance data add`")


def data_for(session: Session, model_id: str, at: datetime, data: str | Path | None,
             what: str = "data") -> DataRef:
    return given_file(session, model_id, at, data, what) if data is not None else production_data(session, model_id, at)


def development_data(session: Session, v: ModelVersion, at: datetime) -> Dataset | None:
    """A version's development data: a dataset registered with ``version_id`` = v, else one whose
    window equals the version's training-data window (latest registered at or before ``at``)."""
    q = select(Dataset).where(Dataset.model_id == v.model_id, Dataset.recorded_at <= at).order_by(Dataset.id.desc())
    rows = session.scalars(q).all()
    tagged = [d for d in rows if d.version_id == v.id]
    if tagged:
        return tagged[0]
    if v.data_window_start is not None and v.data_window_end is not None:
        same = [d for d in rows if (d.window_start, d.window_end) == (v.data_window_start, v.data_window_end)]
        if same:
            return same[0]
    return None


def reference_for(session: Session, v: ModelVersion, at: datetime) -> DataRef:
    d = development_data(session, v, at)
    if d is None:
        win = (f" (training window {v.data_window_start}..{v.data_window_end})"
               if v.data_window_start and v.data_window_end else "")
        raise InputError(f"no development data registered for {v.model_id} {v.label}{win}: register it with "
                         f"`compliance data add {v.model_id} --path FILE --version {v.label}`, or pass --reference")
    ref = _checked(d)
    guard_look_ahead(at, ref.window, "reference")
    return ref


def key_drivers(session: Session, model_id: str, version_id: int, at: datetime, policy: dict,
                inputs: list[str]) -> tuple[list[str], str]:
    """The model's key drivers among ``inputs`` and where they come from: the policy's list for the
    model, else the top ``drift.key_driver_count`` inputs by mean |attribution| of the latest
    attribution-baseline fidelity check (on this version if there is one, else on any version)."""
    listed = (policy.get("key_drivers") or {}).get(model_id)
    if listed:
        return [c for c in listed if c in inputs], "policy key_drivers"
    n = int((policy.get("drift") or {}).get("key_driver_count", 5))
    rows = session.execute(
        select(Check.id, Check.version_id, Check.metrics, Check.artifact_id)
        .join(Artifact, Artifact.id == Check.artifact_id)
        .where(Check.model_id == model_id, Check.kind == "fidelity", Artifact.kind == "attribution_baseline",
               Check.status != "error", Check.finished_at <= at)
        .order_by(Check.finished_at.desc(), Check.id.desc())).all()
    rows = [r for r in rows if (r.metrics or {}).get("input_attribution")]
    if not rows:
        return [], "no policy list and no attribution-baseline check with input attributions"
    best = next((r for r in rows if r.version_id == version_id), rows[0])
    attr = best.metrics["input_attribution"]
    ranked = sorted((c for c in attr if c in inputs), key=lambda c: (-float(attr[c]), c))[:n]
    return ranked, f"top {n} inputs of attribution baseline {best.artifact_id} (check {best.id})"
