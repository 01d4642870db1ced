"""Data-quality screen: no stored record can make an analysis fail (issue 21).

The store's door refuses bad values today, but a store also holds what older releases accepted
(a duplicate volume, a volume of ``inf``, a deployment dated 0001-01-01, a tier of 1.5) and what
a correction has since voided. The loader passes the raw frames it read through :func:`screen`
before they become an :class:`~compliance.analysis.frames.AnalysisInput`:

- records voided or superseded by a correction recorded at or before the as-of are left out
  (an as-of before the correction sees them: the loader only passes corrections known then);
- a record that cannot be used is left out and reported as a :class:`QualityFinding` naming it
  (table and id) and saying why; records that depend on it (the versions of an excluded model,
  the checks of an excluded artifact...) go with it, and the finding counts them;
- everything else is computed as usual.

:func:`screen_policy` does the same for a stored policy document: a number the analysis cannot
use (``validity_days: 1e308``, a NaN threshold) is replaced by the default, with a finding.

Pure pandas; no database access.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from .frames import ACTIONS, ARTIFACT_KINDS, CHECK_KINDS, CHECK_STATUSES

# Times outside this window cannot be analysed (pandas' nanosecond range ends in 2262; arithmetic
# near its ends overflows): the same window the database enforces since migration 0003.
EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
LATEST = pd.Timestamp("2200-01-01", tz="UTC")
MAX_VOLUME = 1e15
_KEY = "data_quality"

# frame -> (store table, id column)
TABLES = {
    "models": ("model", "model_id"),
    "versions": ("model_version", "version_id"),
    "deployments": ("deployment_event", "event_id"),
    "artifacts": ("artifact", "artifact_id"),
    "checks": ("check_run", "check_id"),
    "volumes": ("decision_volume", "volume_id"),
}
# frame -> [(column, nullable)]
TIMES = {
    "models": [("recorded_at", True)],
    "versions": [("trained_at", True), ("recorded_at", False)],
    "deployments": [("effective_at", False), ("recorded_at", False)],
    "artifacts": [("recorded_at", False)],
    "checks": [("finished_at", False)],
    "volumes": [("day", False), ("recorded_at", True)],
}


@dataclass(frozen=True)
class QualityFinding:
    """One stored record the analysis could not use as it is."""

    entity_type: str  # store table, e.g. decision_volume
    entity_id: str
    problem: str  # what is wrong with it
    handling: str  # what the analysis did: excluded | ignored <column> | default used
    dependents: int = 0  # records left out with it (versions of an excluded model, ...)

    @property
    def record(self) -> str:
        return f"{self.entity_type} {self.entity_id}"

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), record=self.record)


def _ids(df: pd.DataFrame, col: str) -> list[str]:
    return [str(x) for x in df[col].tolist()]


class _Screen:
    def __init__(self, frames: dict[str, pd.DataFrame]) -> None:
        self.frames = {k: v.reset_index(drop=True) for k, v in frames.items()}
        self.findings: list[QualityFinding] = []
        self.voided: list[dict[str, str]] = []

    def drop(self, frame: str, mask: np.ndarray, problem: str | None, why: list[str] | None = None) -> None:
        """Leave out ``frame``'s rows where ``mask``; a finding for each unless ``problem`` is None
        (a correction). ``why``: per-row problem text (overrides ``problem``)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        df = self.frames[frame]
        table, idcol = TABLES[frame]
        gone = df[mask]
        if problem is not None or why is not None:
            texts = why if why is not None else [problem] * len(gone)
            for eid, text in zip(_ids(gone, idcol), texts):
                self.findings.append(QualityFinding(table, eid, text, "excluded"))
        self.frames[frame] = df[~mask].reset_index(drop=True)
        self._cascade(frame, gone)

    def _cascade(self, frame: str, gone: pd.DataFrame) -> None:
        """Records depending on removed ones go too; the root finding counts them."""
        f = self.frames
        before = sum(len(v) for v in f.values())
        if frame == "models":
            ids = set(gone["model_id"])
            self._remove("versions", f["versions"]["model_id"].isin(ids))
            self._remove("artifacts", f["artifacts"]["model_id"].isin(ids))
        elif frame == "versions":
            ids = set(gone["version_id"])
            for fr in ("deployments", "checks", "volumes"):
                self._remove(fr, f[fr]["version_id"].isin(ids))
            self._remove("artifacts", f["artifacts"]["bound_version_id"].isin(ids))
        elif frame == "artifacts":
            ids = set(gone["artifact_id"])
            c = f["checks"]
            self._remove("checks", c["artifact_id"].isin(ids) | c["other_artifact_id"].isin(ids))
        after = sum(len(v) for v in f.values())
        if before != after and self.findings and len(gone) == 1:
            last = self.findings[-1]
            table, idcol = TABLES[frame]
            if last.entity_type == table and last.entity_id == str(gone[idcol].iloc[0]):
                self.findings[-1] = QualityFinding(last.entity_type, last.entity_id, last.problem, last.handling,
                                                   last.dependents + before - after)

    def _remove(self, frame: str, mask: pd.Series) -> None:
        mask = mask.to_numpy(dtype=bool, na_value=False)
        if mask.any():
            gone = self.frames[frame][mask]
            self.frames[frame] = self.frames[frame][~mask].reset_index(drop=True)
            self._cascade(frame, gone)


def _parse_times(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):  # read as times already (a reader's, or a batch's that all parsed)
        return s.dt.tz_convert("UTC")
    return pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")


def isin_mask(s: pd.Series, values) -> np.ndarray:
    """``s.isin(values)`` as a bool array; a categorical is compared once per category."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.r_[s.cat.categories.isin(values), False][s.cat.codes.to_numpy()]
    return s.isin(values).to_numpy(dtype=bool)


def screen(frames: dict[str, pd.DataFrame], corrections: pd.DataFrame | None = None) -> tuple[dict[str, pd.DataFrame], list[QualityFinding], list[dict[str, str]]]:
    """Screen the raw frames (see :mod:`compliance.analysis.frames` for their columns; plus
    ``deployments.event_id`` and ``volumes.volume_id`` naming the stored rows). Timestamp columns
    come back parsed (tz-aware UTC). ``corrections``: columns entity_type, entity_id (only those
    recorded at or before the as-of). Returns (frames, findings, corrections applied)."""
    sc = _Screen(frames)
    f = sc.frames
    applied: list[dict[str, str]] = []
    # 1. corrections: voided and superseded records are out, with everything that depends on them
    if corrections is not None and len(corrections):
        by_table: dict[str, set[str]] = {}
        for t, i in zip(corrections["entity_type"].tolist(), corrections["entity_id"].tolist()):
            by_table.setdefault(str(t), set()).add(str(i))
        for frame, (table, idcol) in TABLES.items():
            ids = by_table.get(table)
            if ids and len(f[frame]):
                mask = f[frame][idcol].astype(str).isin(ids).to_numpy()
                applied += [{"entity_type": table, "entity_id": i} for i in _ids(f[frame][mask], idcol)]
                sc.drop(frame, mask, None)
    # 2. times: unreadable or outside the analysable window
    for frame, cols in TIMES.items():
        for col, nullable in cols:
            df = f[frame]
            if col not in df.columns:
                continue
            raw = df[col]
            parsed = _parse_times(raw)
            missing = raw.isna().to_numpy()
            bad = (parsed.isna().to_numpy() & ~missing) | (parsed.notna() & ((parsed < EARLIEST) | (parsed >= LATEST))).to_numpy()
            if bad.any():
                table, idcol = TABLES[frame]
                shown = [str(v) for v in raw[bad].tolist()]
                if nullable and col != "recorded_at":
                    for eid, v in zip(_ids(df[bad], idcol), shown):
                        sc.findings.append(QualityFinding(table, eid, f"{col} {v} is outside 1970..2200", f"ignored {col}"))
                    parsed = parsed.where(~bad, pd.NaT)
                else:
                    df = df.assign(**{col: parsed})
                    f[frame] = df
                    sc.drop(frame, bad, None, [f"{col} {v} is outside 1970..2200" for v in shown])
                    continue
            f[frame] = df.assign(**{col: parsed})
    # 3. values the analysis cannot use
    m = f["models"]
    tier = pd.to_numeric(m["tier"], errors="coerce")
    sc.drop("models", ~tier.isin([1, 2, 3]).to_numpy(), None,
            [f"risk tier {t!r} is not 1, 2 or 3" for t in m["tier"][~tier.isin([1, 2, 3])].tolist()])
    d = f["deployments"]
    bad = ~d["action"].isin(ACTIONS).to_numpy()
    sc.drop("deployments", bad, None, [f"unknown action {a!r}" for a in d["action"][bad].tolist()])
    a = f["artifacts"]
    bad = ~a["kind"].isin(ARTIFACT_KINDS).to_numpy()
    sc.drop("artifacts", bad, None, [f"unknown artifact kind {k!r}" for k in a["kind"][bad].tolist()])
    c = f["checks"]
    ev = pd.to_numeric(c["explained_variance"], errors="coerce").astype(float)
    bad_ev = np.isinf(ev.to_numpy())
    bad = ~isin_mask(c["kind"], CHECK_KINDS) | ~isin_mask(c["status"], CHECK_STATUSES) | bad_ev
    why = [f"explained variance {e}" if inf else f"unknown kind or status ({k!r}, {s!r})"
           for k, s, e, inf in zip(c["kind"][bad], c["status"][bad], ev[bad], bad_ev[bad])]
    sc.drop("checks", bad, None, why)
    vol = f["volumes"]
    x = pd.to_numeric(vol["volume"], errors="coerce").astype(float).to_numpy()
    bad = ~(np.isfinite(x) & (x >= 0) & (x <= MAX_VOLUME))
    sc.drop("volumes", bad, None, [f"volume {v!r} is not a finite number in [0, 1e15]" for v in vol["volume"][bad].tolist()])
    # 4. a second volume for the same version and day: the first recorded one counts
    vol = f["volumes"]
    if len(vol):
        order = np.lexsort((vol["volume_id"].astype(np.int64).to_numpy(),))
        vol = vol.iloc[order].reset_index(drop=True)
        f["volumes"] = vol
        dup = vol.duplicated(["version_id", "day"]).to_numpy()
        if dup.any():
            first = vol.drop_duplicates(["version_id", "day"]).set_index(["version_id", "day"])["volume_id"]
            why = [f"second volume for version {v} on {pd.Timestamp(dday).date().isoformat()} "
                   f"(decision_volume {first.loc[(v, dday)]} counts)"
                   for v, dday in zip(vol["version_id"][dup], vol["day"][dup])]
            sc.drop("volumes", dup, None, why)
    return sc.frames, sc.findings, applied


def screen_policy(doc: dict[str, Any] | None, defaults: dict[str, Any], ranges: dict[str, tuple[float, float, bool]],
                  share: tuple[float, float, bool], *, version: Any = None) -> tuple[dict[str, Any], list[QualityFinding]]:
    """A stored policy document with every unusable number replaced by its default."""
    findings: list[QualityFinding] = []
    pid = str(version) if version is not None else "?"

    def usable(value: Any, key: str) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        x = float(value)
        low, high, whole = ranges.get(key, share)
        return math.isfinite(x) and low <= x <= high and (not whole or x.is_integer())

    def walk(d: dict, dflt: dict, path: str) -> dict:
        out = dict(d)
        for k, v in d.items():
            name = f"{path}.{k}" if path else str(k)
            ref = dflt.get(k) if isinstance(dflt, dict) else None
            if k == "monitoring" and not path:
                continue  # default monitoring plans: validated as plans (analysis.plans), not as thresholds
            if isinstance(v, dict) and k not in ("required_groups", "key_drivers"):
                out[k] = walk(v, defaults if path == "tiers" else (ref if isinstance(ref, dict) else {}), name)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k != "methodology":
                key = "tier_weight" if path.endswith("tier_weights") else str(k)
                rng = (0.0, 1000.0, False) if key == "tier_weight" else None
                ok = usable(v, key) if rng is None else (math.isfinite(float(v)) and 0 < float(v) <= 1000)
                if not ok:
                    fallback = ref if isinstance(ref, (int, float)) and not isinstance(ref, bool) else None
                    out[k] = fallback
                    findings.append(QualityFinding("policy", pid, f"{name} = {v!r} is not usable",
                                                   f"default used ({fallback!r})"))
        return out

    if not isinstance(doc, dict):
        return doc or {}, findings
    return walk(doc, defaults, ""), findings


def attach(inp: Any, findings: list[QualityFinding], applied: list[dict[str, str]]) -> Any:
    """Keep the screen's report with the loaded input (read back with :func:`findings_of`)."""
    inp.cache[_KEY] = (list(findings), list(applied))
    return inp


def findings_of(inp: Any) -> tuple[list[QualityFinding], list[dict[str, str]]]:
    return inp.cache.get(_KEY, ([], [])) if inp is not None else ([], [])
