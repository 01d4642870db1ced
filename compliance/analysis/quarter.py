"""``analyse_quarter``: the coverage/debt/staleness/trend/timeline figures of one quarter.

The input is filtered to the evidence recorded at or before ``as_of`` (``AnalysisInput.as_of``)
before anything is computed, so the figures as of T never change when later evidence is added.
The four-quarter trend (the quarter and the three before it) is computed from that same
evidence; previous quarters are complete, the current one ends at the as-of date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from compliance.errors import UsageError

from .calendar import Quarter, day_date, parse_quarter, to_utc_timestamp, utc_date, day_number
from .calendar import NS_PER_DAY
from .coverage import aggregate_coverage, build_grid, daily_timeline, deployed_intervals, model_coverage
from .debt import aggregate_debt, model_debt, model_outstanding, slots_summary
from .verdicts import VERDICT_ORDER, model_verdicts
from .frames import AnalysisInput
from .policy import AnalysisPolicy, normalise_policy
from .staleness import artifact_staleness


def json_safe(value: Any) -> Any:
    """NaN/NaT → None, numpy scalars → Python, dates → ISO strings, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def records(df: pd.DataFrame) -> list[dict]:
    """JSON-safe list of row dicts, vectorised per column."""
    if not len(df):
        return []
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
            obj = s.to_numpy(bool).astype(object)
        elif pd.api.types.is_float_dtype(s.dtype):
            arr = s.to_numpy(np.float64, na_value=np.nan)
            obj = arr.astype(object)
            obj[~np.isfinite(arr)] = None
        elif pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
            obj = np.array(s.to_numpy(np.int64).tolist(), dtype=object)
        else:
            obj = s.to_numpy(dtype=object, na_value=None)
            if pd.api.types.infer_dtype(obj, skipna=True) not in ("string", "empty"):
                obj = np.array([json_safe(x) for x in obj.tolist()], dtype=object)
        out[c] = obj.tolist()
    cols = list(df.columns)
    return [dict(zip(cols, row)) for row in zip(*(out[c] for c in cols))]


_ROW_FIELDS = {"by_model", "staleness", "timeline", "timeline_by_model"}


@dataclass
class QuarterAnalysis:
    """The analysis of one quarter as of a time (every field JSON-safe after ``to_dict``).

    portfolio        headline figures: coverage (mean of in-scope models' coverage), coverage_days,
                     coverage_volume, model counts, slot-days by state, debt, weighted_debt
    by_tier          the same per risk tier (``tier`` key)
    by_model         per model: coverage (headline), coverage_unweighted, coverage_weighted,
                     weighting, deployed/covered version-days, slot-days by state, debt,
                     weighted_debt, no_requirements, deployed (False = not in scope), previous
                     quarter's coverage and debt
    slots_summary    slot-days by (tier, group, state)
    staleness        per (artifact, deployed version) at the reference day (see staleness.py)
    timeline         daily deployed/covered version-days and share for the portfolio and each tier
    timeline_by_model the same per model (rows only for days the model was deployed)
    trend            the four quarters (oldest first) with the headline figures
    """

    quarter: str
    as_of: str
    window_start: str
    window_end: str | None
    reference_day: str | None
    policy: dict
    portfolio: dict
    by_tier: list[dict]
    by_model: list[dict]
    slots_summary: list[dict]
    staleness: list[dict]
    timeline: list[dict]
    timeline_by_model: list[dict]
    trend: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-safe dict (the list fields already hold JSON-safe rows; they are shared, not copied)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, list) and f.name in _ROW_FIELDS else json_safe(v)
        return out


def _quarter_frames(grid, q: Quarter, last_day: int, pol: AnalysisPolicy, models: pd.DataFrame):
    end = min(q.end_day, last_day)
    sl = grid.day_slice(q.start_day, end)
    cov = model_coverage(grid, sl, pol)
    debt = model_debt(grid, sl, pol).drop(columns=["tier"])
    bym = cov.merge(debt, on="model_id", how="left")
    bym = bym.merge(model_outstanding(grid, end - grid.w0, pol), on="model_id", how="left")
    bym = bym.merge(models[["model_id", "owner"]], on="model_id", how="left")
    return sl, bym


def _headline(bym: pd.DataFrame) -> dict:
    out = aggregate_coverage(bym)
    out.update(aggregate_debt(bym))
    return out


def _grid_start(data: AnalysisInput, first_day: int, last_day: int) -> int:
    """The grid starts early enough that every version deployed in the window has its whole
    current deployment on it (debt outstanding counts from a version's first deployed day)."""
    iv = deployed_intervals(data.deployments)
    if not len(iv):
        return first_day
    start = iv["start_ns"].to_numpy(np.int64) // NS_PER_DAY
    end = iv["end_ns"].to_numpy(np.int64)
    big = end == np.iinfo(np.int64).max
    end_day = np.where(big, last_day, (np.where(big, 0, end) - 1) // NS_PER_DAY)
    touching = (end_day >= first_day) & (start <= last_day)
    return int(min(first_day, start[touching].min())) if touching.any() else first_day


def analyse_quarter(inp: AnalysisInput, quarter: str | Quarter, as_of: datetime | str,
                    policy: dict | AnalysisPolicy | None, occurrences: list[dict] | None = None, *,
                    detail: bool = True) -> QuarterAnalysis:
    """Coverage, debt (incurred and outstanding), verdicts, staleness, daily timeline and
    four-quarter trend of ``quarter`` as of ``as_of`` (``UsageError`` if the as-of is before the
    quarter starts). ``occurrences``: failure-mode occurrences open at the as-of (model_id,
    version_id, code, severity), for the verdicts. ``detail=False``: the headline, tier, model
    and trend figures only (the same figures); slots summary, staleness and timelines are left
    empty — for callers that read only those (``status``, the due list, verdict alerts)."""
    pol = normalise_policy(policy)
    q = parse_quarter(quarter)
    t = to_utc_timestamp(as_of)
    asof_day = day_number(utc_date(t))
    if asof_day < q.start_day:
        raise UsageError(f"as-of {t.isoformat()} is before quarter {q} starts ({q.start.isoformat()})")
    data = inp.as_of(t)
    last_day = min(q.end_day, asof_day)
    quarters = [q.previous(i) for i in (3, 2, 1, 0)]
    grid = build_grid(data, pol, _grid_start(data, quarters[0].start_day, last_day), last_day)

    trend, frames = [], {}
    for qq in quarters:
        sl, bym = _quarter_frames(grid, qq, last_day, pol, data.models)
        frames[qq] = (sl, bym)
        h = _headline(bym)
        trend.append({"quarter": str(qq), "days_analysed": sl.stop - sl.start, **h})
    sl, bym = frames[q]
    _, prev = frames[q.previous(1)]
    bym = bym.merge(prev[["model_id", "coverage", "debt", "weighted_debt"]].rename(
        columns={"coverage": "coverage_prev", "debt": "debt_prev", "weighted_debt": "weighted_debt_prev"}),
        on="model_id", how="left")
    portfolio = _headline(bym)
    portfolio["days_analysed"] = sl.stop - sl.start
    prev_h = trend[-2]
    portfolio["coverage_prev"] = prev_h["coverage"]
    portfolio["debt_prev"] = prev_h["debt"]
    portfolio["weighted_debt_prev"] = prev_h["weighted_debt"]
    portfolio["debt_outstanding_prev"] = prev_h["debt_outstanding"]
    portfolio["weighted_debt_outstanding_prev"] = prev_h["weighted_debt_outstanding"]
    labels = {int(v): f"{m} {lab}" for v, m, lab in zip(data.versions["version_id"], data.versions["model_id"],
                                                         data.versions["label"])}
    verdicts = model_verdicts(grid, last_day - grid.w0, labels, occurrences or [])
    bym["verdict"] = bym["model_id"].map(lambda m: verdicts[m]["verdict"])
    bym["verdict_reasons"] = bym["model_id"].map(lambda m: list(verdicts[m]["reasons"]))
    counts = {v: 0 for v in VERDICT_ORDER}
    for r in verdicts.values():
        counts[r["verdict"]] += 1
    portfolio["verdicts"] = counts
    portfolio["not_required"] = sorted(m for m, r in verdicts.items() if r["verdict"] == "not required")
    by_tier = []
    for tier in sorted(set(int(x) for x in bym["tier"])):
        sub = bym[bym["tier"] == tier]
        by_tier.append({"tier": tier, "tier_weight": pol.tier_weights.get(tier, 1.0),
                        "no_requirements": len(pol.groups(tier)) == 0, **_headline(sub)})
    if detail:
        timeline, per_model = daily_timeline(grid, sl)
        stal = artifact_staleness(data, grid, last_day, pol)
    else:
        timeline = per_model = stal = pd.DataFrame()
    order = ["model_id", "tier", "owner", "deployed", "no_requirements", "in_scope", "verdict", "verdict_reasons",
             "coverage", "coverage_unweighted",
             "coverage_weighted", "weighting", "deployed_version_days", "covered_version_days",
             "volume_total", "volume_covered", "volume_imputed_share", "slot_days", "fresh_slot_days",
             "pending_slot_days", "broken_slot_days", "stale_slot_days", "missing_slot_days", "debt", "tier_weight",
             "weighted_debt", "debt_outstanding", "weighted_debt_outstanding",
             "coverage_prev", "debt_prev", "weighted_debt_prev"]
    bym = bym[order].sort_values(["tier", "model_id"], kind="stable")
    return QuarterAnalysis(
        quarter=str(q), as_of=t.isoformat(), window_start=q.start.isoformat(),
        window_end=day_date(last_day).isoformat(), reference_day=day_date(last_day).isoformat(),
        policy={"methodology": pol.methodology, "validity_days": pol.validity_days,
                "warn_needs_acceptance": pol.warn_needs_acceptance,
                "required_groups": {str(k): [list(g) for g in v] for k, v in pol.required_groups.items()},
                "tier_weights": {str(k): v for k, v in pol.tier_weights.items()}},
        portfolio=json_safe(portfolio), by_tier=json_safe(by_tier), by_model=records(bym),
        slots_summary=slots_summary(grid, sl) if detail else [], staleness=records(stal), timeline=records(timeline),
        timeline_by_model=records(per_model), trend=json_safe(trend))
