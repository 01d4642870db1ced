"""The input contract of the analysis package: :class:`AnalysisInput`.

The analysis is a set of pure functions over pandas frames; the store's loader (or a test) builds
an ``AnalysisInput`` and nothing in this package touches a database. Every timestamp is a tz-aware
``datetime64[ns, UTC]`` column; naive timestamps are rejected (``InputError``) rather than guessed.

Frames and columns (``?`` = optional column, filled with the stated default when absent):

``models``       model_id (str), tier (int 1..3), owner (str), recorded_at? (NaT = always known)
``versions``     version_id (int), model_id, label (str), trained_at (nullable), recorded_at
``deployments``  version_id, model_id, action ('deploy'|'retire'), effective_at,
                 recorded_at? (default: effective_at)
``artifacts``    artifact_id (str), model_id, kind ('sae','transcoder','clt','probe',
                 'attribution_baseline','feature_labels'), bound_version_id, recorded_at,
                 replaces? (nullable artifact_id), set_id? (nullable: the artifact set it is a
                 member of; a set is valid for a version only when every member is)
``checks``       check_id (int), kind ('fidelity','alignment','data_drift','activation_drift',
                 'overhead'), model_id, version_id, artifact_id? (nullable), status
                 ('pass','warn','fail','error','inconclusive'), finished_at, recorded_at? (default finished_at),
                 explained_variance? (NaN), survival_share? (NaN), other_artifact_id? (nullable;
                 for alignment checks artifact_id is the NEW artifact and this the old one),
                 is_baseline? (False; a fidelity check against the artifact's bound version),
                 flags? (tuple of failure-mode codes the check-level evaluation raised, default ()),
                 accepted_at? (NaT: when a validator accepted this warn check; acceptances recorded
                 after an as-of are unknown at that as-of)
``volumes``      version_id, day (UTC midnight), volume (float >= 0), recorded_at? (see as_of)

After validation the enumeration columns (deployments.action, artifacts.kind, checks.kind,
checks.status) and checks.artifact_id are pandas categoricals: the values are the same strings,
but comparisons and look-ups on two million checks cost integer operations.

Referential integrity is checked: a deployment, artifact, check or volume that names an unknown
model/version (or a check naming an unknown artifact) is an ``InputError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any, Iterable

import numpy as np
import pandas as pd

from compliance.errors import InputError

from .calendar import NS_PER_DAY, ns_values, to_utc_timestamp

ARTIFACT_KINDS = ("sae", "transcoder", "clt", "probe", "attribution_baseline", "feature_labels")
CHECK_KINDS = ("fidelity", "alignment", "data_drift", "activation_drift", "overhead", "performance", "fairness",
               "adaptation")
CHECK_STATUSES = ("pass", "warn", "fail", "error", "inconclusive")
ACTIONS = ("deploy", "retire")

# column -> (type, required, default)   type in {'str','nstr','int','ts','nts','float','bool','flags','day'}
_SPEC: dict[str, dict[str, tuple[str, bool, Any]]] = {
    "models": {
        "model_id": ("str", True, None),
        "tier": ("int", True, None),
        "owner": ("str", True, None),
        "recorded_at": ("nts", False, None),
    },
    "versions": {
        "version_id": ("int", True, None),
        "model_id": ("str", True, None),
        "label": ("str", True, None),
        "trained_at": ("nts", True, None),
        "recorded_at": ("ts", True, None),
    },
    "deployments": {
        "version_id": ("int", True, None),
        "model_id": ("str", True, None),
        "action": ("str", True, None),
        "effective_at": ("ts", True, None),
        "recorded_at": ("ts", False, "effective_at"),
    },
    "artifacts": {
        "artifact_id": ("str", True, None),
        "model_id": ("str", True, None),
        "kind": ("str", True, None),
        "bound_version_id": ("int", True, None),
        "recorded_at": ("ts", True, None),
        "replaces": ("nstr", False, None),
        "set_id": ("nstr", False, None),
    },
    "checks": {
        "check_id": ("int", True, None),
        "kind": ("str", True, None),
        "model_id": ("str", True, None),
        "version_id": ("int", True, None),
        "artifact_id": ("nstr", False, None),
        "status": ("str", True, None),
        "finished_at": ("ts", True, None),
        "recorded_at": ("ts", False, "finished_at"),
        "explained_variance": ("float", False, np.nan),
        "survival_share": ("float", False, np.nan),
        "other_artifact_id": ("nstr", False, None),
        "is_baseline": ("bool", False, False),
        "flags": ("flags", False, ()),
        "accepted_at": ("nts", False, None),
    },
    "volumes": {
        "version_id": ("int", True, None),
        "day": ("day", True, None),
        "volume": ("float", True, None),
        "recorded_at": ("nts", False, None),
    },
}


def _fail(frame: str, msg: str) -> InputError:
    return InputError(f"analysis input {frame}: {msg}")


def _to_ts(frame: str, col: str, s: pd.Series, nullable: bool) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        raise _fail(frame, f"column {col} has naive timestamps; give tz-aware UTC times")
    else:
        vals = []
        for v in s.tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
                vals.append(pd.NaT)
                continue
            try:
                t = pd.Timestamp(v)
            except (ValueError, TypeError) as exc:
                raise _fail(frame, f"column {col} has an unparsable timestamp {v!r}") from exc
            if t.tzinfo is None:
                raise _fail(frame, f"column {col} has a naive timestamp {v!r}; give it in UTC")
            vals.append(t.tz_convert("UTC"))
        out = pd.Series(pd.to_datetime(vals, utc=True), index=s.index).astype("datetime64[ns, UTC]")
    if not nullable and out.isna().any():
        raise _fail(frame, f"column {col} has missing timestamps")
    return out


def _to_day(frame: str, s: pd.Series) -> pd.Series:
    """Volume days: a python ``date`` or a UTC midnight timestamp → ``datetime64[ns, UTC]`` midnight."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        out = s.astype("datetime64[ns]").dt.tz_localize("UTC")  # plain dates carry no zone
    else:
        vals = []
        for v in s.tolist():
            if isinstance(v, datetime) or isinstance(v, pd.Timestamp):
                t = pd.Timestamp(v)
                t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
            elif isinstance(v, date):
                t = pd.Timestamp(v.isoformat(), tz="UTC")
            else:
                try:
                    t = pd.Timestamp(v)
                except (ValueError, TypeError) as exc:
                    raise _fail(frame, f"unparsable day {v!r}") from exc
                t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
            vals.append(t)
        out = pd.Series(pd.to_datetime(vals, utc=True), index=s.index).astype("datetime64[ns, UTC]")
    if out.isna().any():
        raise _fail(frame, "column day has missing values")
    ns = ns_values(out)
    if (ns % NS_PER_DAY != 0).any():
        raise _fail(frame, "column day must hold UTC midnights (dates), not times of day")
    return out


def _normalise(name: str, df: pd.DataFrame | None) -> pd.DataFrame:
    spec = _SPEC[name]
    if df is None:
        df = pd.DataFrame({c: [] for c in spec})
    if not isinstance(df, pd.DataFrame):
        raise _fail(name, f"expected a pandas DataFrame, got {type(df).__name__}")
    out: dict[str, pd.Series] = {}
    n = len(df)
    for col, (typ, required, default) in spec.items():
        if col in df.columns:
            s = df[col].reset_index(drop=True)
        elif required:
            raise _fail(name, f"missing column {col}")
        elif isinstance(default, str) and default in out:
            s = out[default].copy()
        elif typ == "flags":
            vals = np.empty(n, dtype=object)
            vals.fill(())  # (one shared empty tuple, without a list of two million references first)
            s = pd.Series(vals, dtype=object, copy=False)
        else:
            s = pd.Series([default] * n, dtype=object if default is None else None)
        if typ in ("str", "nstr"):
            miss = s.isna()
            if typ == "str" and miss.any():
                raise _fail(name, f"column {col} has missing values")
            if not isinstance(s.dtype, (pd.StringDtype, pd.CategoricalDtype)):
                s = s.astype(object)
                if miss.any():
                    s = s.where(~miss, None)
                if n and not miss.all() and pd.api.types.infer_dtype(s, skipna=True) != "string":
                    s = s.where(miss, s.astype(str))
        elif typ == "int":
            if s.isna().any():
                raise _fail(name, f"column {col} has missing values")
            try:
                s = s.astype(np.int64)
            except (ValueError, TypeError) as exc:
                raise _fail(name, f"column {col} must hold integers") from exc
        elif typ == "float" and s.dtype == np.float64:
            pass
        elif typ == "float":
            try:
                s = pd.to_numeric(s, errors="raise").astype(np.float64)
            except (ValueError, TypeError) as exc:
                raise _fail(name, f"column {col} must hold numbers") from exc
        elif typ == "bool":
            s = s.fillna(False).astype(bool)
        elif typ == "flags" and col not in df.columns:
            pass  # the default built above: every value is ()
        elif typ == "flags":
            vals = s.to_numpy(dtype=object)
            ok = np.fromiter((type(v) is tuple for v in vals), bool, len(vals))
            if not ok.all():
                vals = vals.copy()
                for i in np.flatnonzero(~ok):
                    v = vals[i]
                    vals[i] = () if v is None or (isinstance(v, float) and np.isnan(v)) else tuple(v)
            s = pd.Series(vals, dtype=object)
        elif typ in ("ts", "nts"):
            s = _to_ts(name, col, s, nullable=(typ == "nts"))
        elif typ == "day":
            s = _to_day(name, s)
        out[col] = s
    # copy=False: each column stays its own array (a copy into 2-D blocks per dtype costs ≈ 0.2 s
    # and a second copy of the checks)
    return pd.DataFrame(out, copy=False)


def _categorical(frame: str, s: pd.Series, categories, what: str) -> pd.Categorical:
    """``s`` as a categorical over ``categories``; ``InputError`` naming the first unknown value."""
    cats = pd.Index(list(categories) if not isinstance(categories, pd.Index) else categories)
    cats = cats.astype(object)
    if isinstance(s.dtype, pd.CategoricalDtype):  # recoded through its categories: one look-up per row
        used = np.zeros(len(s.cat.categories) + 1, bool)
        codes = s.cat.codes.to_numpy()
        used[codes] = True  # (code -1, missing, marks the last entry)
        m = cats.get_indexer(s.cat.categories.astype(object))
        if ((m < 0) & used[:-1]).any():  # named as a factorisation would: the first row's
            first = codes[np.flatnonzero(np.r_[m < 0, False][codes])[0]]
            raise _fail(frame, f"unknown {what} {s.cat.categories[first]!r}")
        return pd.Categorical.from_codes(np.r_[m, -1][codes], categories=cats)
    codes, uniq = pd.factorize(s)  # fast on arrow strings; -1 for missing
    m = cats.get_indexer(pd.Index(uniq).astype(object)) if len(uniq) else np.array([], np.int64)
    bad = np.flatnonzero(m < 0)
    if len(bad):
        raise _fail(frame, f"unknown {what} {uniq[bad[0]]!r}")
    new = np.where(codes >= 0, m[np.maximum(codes, 0)] if len(m) else -1, -1)
    return pd.Categorical.from_codes(new, categories=cats)


def dense_range(values: np.ndarray, n: int | None = None) -> tuple[int, int] | None:
    """``(lo, hi)`` of integer ``values`` when their range is small beside ``n`` (default: their
    count) — a store's ids — so that a table over the range (one slot per id, no hashing or
    sorting) is cheap; None otherwise (or when empty)."""
    if not len(values):
        return None
    lo, hi = int(values.min()), int(values.max())
    return (lo, hi) if hi - lo < 8 * (len(values) if n is None else n) + 1024 else None


def _check_unique(frame: str, s: pd.Series, col: str) -> None:
    if pd.api.types.is_integer_dtype(s.dtype) and len(s):
        v = s.to_numpy()
        if (r := dense_range(v)) is not None:  # one mark per id, no hashing
            lo, hi = r
            seen = np.zeros(hi - lo + 1, bool)
            seen[v - lo] = True
            if np.count_nonzero(seen) == len(v):
                return
    dup = s.duplicated()
    if dup.any():
        raise _fail(frame, f"duplicate {col} {s[dup].iloc[0]!r}")


def positions(keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The position in ``keys`` (unique integers) of each of ``ids``, -1 for one not there: through a
    table over the keys' range when it is small beside them (a store's ids), else a hash look-up."""
    if not len(keys) or not len(ids):
        return np.full(len(ids), -1, np.int64)
    if (r := dense_range(keys, max(len(keys), len(ids)))) is not None:
        lo, hi = r
        table = np.full(hi - lo + 2, -1, np.int64)  # (the last entry answers ids outside the range)
        table[keys - lo] = np.arange(len(keys))
        inside = (ids >= lo) & (ids <= hi)
        return table[np.where(inside, ids - lo, hi - lo + 1)]
    return pd.Index(keys).get_indexer(ids)


def _check_refs(frame: str, s: pd.Series, known: pd.Series, what: str) -> None:
    bad = ~s.isin(known)
    if bad.any():
        raise _fail(frame, f"unknown {what} {s[bad].iloc[0]!r}")


@dataclass
class AnalysisInput:
    """Everything the analysis needs, as validated frames (see the module docstring).

    Construct with frames (missing optional columns get their defaults) or with
    :meth:`from_records`; the constructor normalises dtypes and raises ``InputError``
    on missing columns, naive timestamps, unknown enumeration values, duplicate ids,
    dangling references, tiers outside 1..3 and negative or non-finite volumes.
    """

    models: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    versions: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    deployments: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    artifacts: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    checks: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    volumes: pd.DataFrame = field(default=None)  # type: ignore[assignment]
    validate: bool = field(default=True, repr=False)
    # derived arrays memoised per instance by the analysis (never part of equality or copies)
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.validate:
            return
        for f in fields(self):
            if f.name in _SPEC:
                setattr(self, f.name, _normalise(f.name, getattr(self, f.name)))
        m, v, d, a, c, vol = (self.models, self.versions, self.deployments, self.artifacts,
                              self.checks, self.volumes)
        _check_unique("models", m["model_id"], "model_id")
        if (~m["tier"].isin([1, 2, 3])).any():
            raise _fail("models", f"tier must be 1, 2 or 3, got {m['tier'][~m['tier'].isin([1, 2, 3])].iloc[0]}")
        _check_unique("versions", v["version_id"], "version_id")
        _check_refs("versions", v["model_id"], m["model_id"], "model_id")
        d["action"] = _categorical("deployments", d["action"], ACTIONS, "action")
        _check_refs("deployments", d["version_id"], v["version_id"], "version_id")
        _check_unique("artifacts", a["artifact_id"], "artifact_id")
        a["kind"] = _categorical("artifacts", a["kind"], ARTIFACT_KINDS, "artifact kind")
        _check_refs("artifacts", a["model_id"], m["model_id"], "model_id")
        _check_refs("artifacts", a["bound_version_id"], v["version_id"], "bound_version_id")
        _check_unique("checks", c["check_id"], "check_id")
        c["kind"] = _categorical("checks", c["kind"], CHECK_KINDS, "check kind")
        c["status"] = _categorical("checks", c["status"], CHECK_STATUSES, "status")
        _check_refs("checks", c["version_id"], v["version_id"], "version_id")
        c["artifact_id"] = _categorical("checks", c["artifact_id"], pd.Index(a["artifact_id"]), "artifact_id")
        _check_refs("volumes", vol["version_id"], v["version_id"], "version_id")
        if len(vol) and (~np.isfinite(vol["volume"].to_numpy()) | (vol["volume"].to_numpy() < 0)).any():
            raise _fail("volumes", "volume must be a finite number >= 0")
        if vol[["version_id", "day"]].duplicated().any():
            raise _fail("volumes", "more than one volume row for the same version and day")
        # Model ids of deployments/checks must agree with the version's model (compared as codes).
        models = pd.Index(m["model_id"]).astype(object)
        v_model = np.r_[models.get_indexer(pd.Index(v["model_id"]).astype(object)), -2]
        v_ids = v["version_id"].to_numpy(np.int64)
        for frame, df in (("deployments", d), ("checks", c)):
            if not len(df):
                continue
            col = df["model_id"]
            if isinstance(col.dtype, pd.CategoricalDtype):
                codes, uniq = col.cat.codes.to_numpy(), col.cat.categories
            else:
                codes, uniq = pd.factorize(col)
            mc = np.r_[models.get_indexer(pd.Index(uniq).astype(object)), -1][codes]
            if (v_model[positions(v_ids, df["version_id"].to_numpy(np.int64))] != mc).any():
                raise _fail(frame, "model_id disagrees with the version's model")

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_records(cls, *, models: list[dict] = (), versions: list[dict] = (),
                     deployments: list[dict] = (), artifacts: list[dict] = (),
                     checks: list[dict] = (), volumes: list[dict] = ()) -> "AnalysisInput":
        """Build from lists of dicts (tests, small fixtures). Missing model_id on deployments and
        checks is filled from the version."""
        vmap = {r["version_id"]: r["model_id"] for r in versions}

        def frame(name: str, rows: Iterable[dict]) -> pd.DataFrame | None:
            rows = [dict(r) for r in rows]
            if name in ("deployments", "checks"):
                for r in rows:
                    if "model_id" not in r and r.get("version_id") in vmap:
                        r["model_id"] = vmap[r["version_id"]]
            if not rows:
                return None
            cols: dict[str, list] = {}
            for r in rows:
                for k in r:
                    cols.setdefault(k, [])
            for r in rows:
                for k in cols:
                    cols[k].append(r.get(k))
            return pd.DataFrame({k: pd.Series(vals, dtype=object) for k, vals in cols.items()})

        return cls(models=frame("models", models), versions=frame("versions", versions),
                   deployments=frame("deployments", deployments), artifacts=frame("artifacts", artifacts),
                   checks=frame("checks", checks), volumes=frame("volumes", volumes))

    # ------------------------------------------------------------------ as-of
    def as_of(self, t: datetime | str | pd.Timestamp) -> "AnalysisInput":
        """The evidence known at ``t``: every row recorded at or before ``t``.

        models (when recorded_at is given), versions, deployments, artifacts: ``recorded_at <= t``;
        checks: ``recorded_at <= t`` and ``finished_at <= t``; volumes: ``recorded_at <= t`` where
        that column is filled, otherwise ``day <= t``. Rows that reference something filtered out
        (a check of an artifact recorded later) are dropped too, so the result is consistent.
        """
        ts = to_utc_timestamp(t)
        tns = ts.value

        def keep(df: pd.DataFrame, col: str, nullable: bool = False) -> np.ndarray:
            ns = ns_values(df[col])
            ok = ns <= tns
            if nullable:
                ok |= ns == np.iinfo(np.int64).min
            return ok

        def within(s: pd.Series, parent_kept: pd.DataFrame, parent_all: pd.DataFrame, col: str) -> np.ndarray:
            if len(parent_kept) == len(parent_all):  # nothing filtered: no dangling reference possible
                return np.ones(len(s), bool)
            return s.isin(parent_kept[col]).to_numpy(dtype=bool, na_value=False)

        m = self.models[keep(self.models, "recorded_at", nullable=True)]
        v = self.versions
        v = v[keep(v, "recorded_at") & within(v["model_id"], m, self.models, "model_id")]
        d = self.deployments
        d = d[keep(d, "recorded_at") & within(d["version_id"], v, self.versions, "version_id")]
        a = self.artifacts
        a = a[keep(a, "recorded_at") & within(a["bound_version_id"], v, self.versions, "version_id")
              & within(a["model_id"], m, self.models, "model_id")]
        c = self.checks
        cok = keep(c, "recorded_at") & keep(c, "finished_at") & within(c["version_id"], v, self.versions, "version_id")
        if len(a) != len(self.artifacts):
            cok &= (c["artifact_id"].isna() | c["artifact_id"].isin(a["artifact_id"])).to_numpy(dtype=bool)
        c = c[cok] if not cok.all() else c
        acc = ns_values(c["accepted_at"])
        late = (acc > tns) & (acc != np.iinfo(np.int64).min)
        if late.any():  # an acceptance recorded after t is not known at t
            c = c.copy()
            c["accepted_at"] = c["accepted_at"].where(~late, pd.NaT)
        vol = self.volumes
        rec = ns_values(vol["recorded_at"])
        has_rec = rec != np.iinfo(np.int64).min
        vok = np.where(has_rec, rec <= tns, ns_values(vol["day"]) <= tns)
        vol = vol[vok & within(vol["version_id"], v, self.versions, "version_id")]
        frames = {k: df.reset_index(drop=True) for k, df in
                  dict(models=m, versions=v, deployments=d, artifacts=a, checks=c, volumes=vol).items()}
        return replace(self, validate=False, **frames)
