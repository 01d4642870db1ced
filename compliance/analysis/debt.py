"""Interpretability debt (DESIGN §4, methodology v2): two faces, both tier-weighted.

* **Debt incurred** over a period (a flow): slot-days that are not fresh (broken, stale, missing or
  pending), per model and per state over a quarter's analysed days. A model with two versions
  deployed on the same day, or two required groups, accrues two slot-days for that day.
* **Debt outstanding** at a day r (a stock): Σ over slots deployed and not fresh on r of the days
  since the slot was last fresh — r − L, where L is the slot's last fresh day before r, or the
  day before the version was first deployed when it never was. It grows by one per slot per day
  while nothing is re-validated and falls to zero for a slot the day it is fresh again; a slot
  whose version is not deployed on r carries none (retirement ends the exposure, not the
  history: the incurred flow keeps it).
Weighted figures multiply by the tier weight (policy ``tier_weights``). A tier with no required
groups has no slots and therefore no debt (its models are not in scope).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .coverage import BROKEN, FRESH, MISSING, PENDING, STALE, DayGrid

STATES = ((FRESH, "fresh"), (PENDING, "pending"), (BROKEN, "broken"), (STALE, "stale"), (MISSING, "missing"))
from .policy import AnalysisPolicy


def model_debt(grid: DayGrid, sl: slice, policy: AnalysisPolicy) -> pd.DataFrame:
    """Per model: slot-days by state, debt (not fresh), weighted debt."""
    nm = len(grid.model_ids)
    st = grid.slot_state[:, sl]
    smodel = grid.ver_model[grid.slot_ver] if len(grid.slot_ver) else np.array([], np.int64)
    out = {"model_id": grid.model_ids, "tier": grid.model_tier}
    total = np.zeros(nm)
    for code, name in STATES:
        cnt = np.bincount(smodel, weights=(st == code).sum(1), minlength=nm) if len(smodel) else np.zeros(nm)
        out[f"{name}_slot_days"] = cnt.astype(np.int64)
        total += cnt
    df = pd.DataFrame(out)
    df["slot_days"] = total.astype(np.int64)
    df["debt"] = df["broken_slot_days"] + df["stale_slot_days"] + df["missing_slot_days"] + df["pending_slot_days"]
    w = np.array([policy.tier_weights.get(int(t), 1.0) for t in grid.model_tier], np.float64)
    df["tier_weight"] = w
    df["weighted_debt"] = df["debt"].to_numpy() * w
    return df


def slot_outstanding(grid: DayGrid, ref_col: int) -> np.ndarray:
    """Days outstanding per slot at grid column ``ref_col`` (0 for fresh or not-deployed slots).

    The grid must start on or before the first deployed day of every version deployed at
    ``ref_col`` (``analyse_quarter`` builds it so); a slot never fresh counts from that day."""
    ns_ = len(grid.slot_ver)
    if not ns_ or ref_col < 0 or ref_col >= grid.nd:
        return np.zeros(ns_, np.int64)
    st = grid.slot_state[:, : ref_col + 1]
    fresh = st == FRESH
    n = st.shape[1]
    any_fresh = fresh.any(1)
    last_fresh = np.where(any_fresh, n - 1 - np.argmax(fresh[:, ::-1], axis=1), -1)
    dep = st != 0
    first_dep = np.where(dep.any(1), np.argmax(dep, axis=1), n)
    since = np.where(any_fresh, last_fresh, first_dep - 1)
    now = st[:, ref_col]
    out = np.where((now != 0) & (now != FRESH), ref_col - since, 0)
    return out.astype(np.int64)


def model_outstanding(grid: DayGrid, ref_col: int, policy: AnalysisPolicy) -> pd.DataFrame:
    """Per model: debt outstanding (slot-days) at grid column ``ref_col`` and its tier-weighted value."""
    nm = len(grid.model_ids)
    per_slot = slot_outstanding(grid, ref_col)
    smodel = grid.ver_model[grid.slot_ver] if len(grid.slot_ver) else np.array([], np.int64)
    out = np.bincount(smodel, weights=per_slot, minlength=nm) if len(smodel) else np.zeros(nm)
    w = np.array([policy.tier_weights.get(int(t), 1.0) for t in grid.model_tier], np.float64)
    return pd.DataFrame({"model_id": grid.model_ids, "debt_outstanding": out.astype(np.int64),
                         "weighted_debt_outstanding": out * w})


def aggregate_debt(by_model: pd.DataFrame) -> dict:
    cols = ["slot_days", "fresh_slot_days", "pending_slot_days", "broken_slot_days", "stale_slot_days",
            "missing_slot_days", "debt"]
    out = {c: int(by_model[c].sum()) for c in cols}
    out["weighted_debt"] = float(by_model["weighted_debt"].sum())
    if "debt_outstanding" in by_model:
        out["debt_outstanding"] = int(by_model["debt_outstanding"].sum())
        out["weighted_debt_outstanding"] = float(by_model["weighted_debt_outstanding"].sum())
    return out


def slots_summary(grid: DayGrid, sl: slice) -> list[dict]:
    """Slot-days by (tier, group, state) — what the coverage chapter's slot table shows."""
    if not len(grid.slot_ver):
        return []
    st = grid.slot_state[:, sl]
    tiers = grid.model_tier[grid.ver_model[grid.slot_ver]]
    frame = pd.DataFrame({"tier": tiers, "group": grid.slot_group_name})
    names = [name for _, name in STATES]
    for code, name in STATES:
        frame[name] = (st == code).sum(1)
    g = frame.groupby(["tier", "group"], sort=True)[names].sum().reset_index()
    g["slot_days"] = g[names].sum(axis=1)
    g = g[g["slot_days"] > 0]
    return [{"tier": int(r["tier"]), "group": r["group"], "slot_days": int(r["slot_days"]),
             **{n: int(r[n]) for n in names}} for r in g.to_dict("records")]
