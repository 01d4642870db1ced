"""Interpretability debt (DESIGN §4): slot-days that are not fresh.

Per model and per state (broken, stale, missing) over a quarter's analysed days; weighted debt
multiplies a model's debt by its tier weight (policy ``tier_weights``). A tier with no required
groups has no slots and therefore no debt. Debt is counted in slot-days: a model with two
versions deployed on the same day, or two required groups, accrues two slot-days for that day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .coverage import BROKEN, FRESH, MISSING, STALE, DayGrid
from .policy import AnalysisPolicy


def model_debt(grid: DayGrid, sl: slice, policy: AnalysisPolicy) -> pd.DataFrame:
    """Per model: slot-days by state, debt (not fresh), weighted debt."""
    nm = len(grid.model_ids)
    st = grid.slot_state[:, sl]
    smodel = grid.ver_model[grid.slot_ver] if len(grid.slot_ver) else np.array([], np.int64)
    out = {"model_id": grid.model_ids, "tier": grid.model_tier}
    total = np.zeros(nm)
    for code, name in ((FRESH, "fresh"), (BROKEN, "broken"), (STALE, "stale"), (MISSING, "missing")):
        cnt = np.bincount(smodel, weights=(st == code).sum(1), minlength=nm) if len(smodel) else np.zeros(nm)
        out[f"{name}_slot_days"] = cnt.astype(np.int64)
        total += cnt
    df = pd.DataFrame(out)
    df["slot_days"] = total.astype(np.int64)
    df["debt"] = df["broken_slot_days"] + df["stale_slot_days"] + df["missing_slot_days"]
    w = np.array([policy.tier_weights.get(int(t), 1.0) for t in grid.model_tier], np.float64)
    df["tier_weight"] = w
    df["weighted_debt"] = df["debt"].to_numpy() * w
    return df


def aggregate_debt(by_model: pd.DataFrame) -> dict:
    cols = ["slot_days", "fresh_slot_days", "broken_slot_days", "stale_slot_days", "missing_slot_days", "debt"]
    out = {c: int(by_model[c].sum()) for c in cols}
    out["weighted_debt"] = float(by_model["weighted_debt"].sum())
    return out


def slots_summary(grid: DayGrid, sl: slice) -> list[dict]:
    """Slot-days by (tier, group, state) — what the coverage chapter's slot table shows."""
    if not len(grid.slot_ver):
        return []
    st = grid.slot_state[:, sl]
    tiers = grid.model_tier[grid.ver_model[grid.slot_ver]]
    frame = pd.DataFrame({"tier": tiers, "group": grid.slot_group_name})
    for code, name in ((FRESH, "fresh"), (BROKEN, "broken"), (STALE, "stale"), (MISSING, "missing")):
        frame[name] = (st == code).sum(1)
    g = frame.groupby(["tier", "group"], sort=True)[["fresh", "broken", "stale", "missing"]].sum().reset_index()
    g["slot_days"] = g[["fresh", "broken", "stale", "missing"]].sum(axis=1)
    g = g[g["slot_days"] > 0]
    return [{"tier": int(r.tier), "group": r.group, "slot_days": int(r.slot_days), "fresh": int(r.fresh),
             "broken": int(r.broken), "stale": int(r.stale), "missing": int(r.missing)}
            for r in g.itertuples(index=False)]
