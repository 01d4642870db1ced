"""Per-artifact staleness at a reference day (DESIGN §4).

The reference day is the UTC date of the earlier of the quarter's last day and the as-of; only
evidence finished on or before that day is used (a check run after the quarter ends does not
rewrite how stale an artifact was at the end of it).

One row per (artifact, version of its model deployed on the reference day); an artifact whose
model has no deployed version that day gets one row with the deployed-version fields None.
Choices where DESIGN is silent:

* ``versions_behind`` = position of the deployed version minus position of the bound version in
  the model's version order (trained_at, falling back to recorded_at when unknown; then
  recorded_at, version_id), counting versions recorded by the reference day. Negative when the
  artifact is bound to a newer version than the one deployed (e.g. a challenger).
* ``days_since_validation``: reference day minus the UTC date of the last pass/warn fidelity check
  of the artifact on the deployed version; None when never validated on it.
* ``fidelity_decay`` = baseline explained variance (the latest baseline check with an EV, on the
  bound version) minus the latest explained variance on the deployed version; None if either is
  missing. Positive means worse.
* ``survival``: survival_share of the latest alignment check in which the artifact is the new one.
* ``artifact_state`` is the artifact's own standing for the deployed version that day: ``valid``,
  ``broken`` (latest fidelity check fail/error) or ``stale`` (no check, or validation expired);
  ``slot_state`` is the state of the required group the kind belongs to (None when the kind is in
  no required group for the model's tier). ``superseded_by`` names the latest artifact recorded by
  then that ``replaces`` it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calendar import NS_PER_DAY, day_date, day_numbers, ns_values
from .coverage import STATE_NAMES, DayGrid
from .frames import AnalysisInput
from .policy import AnalysisPolicy


def version_positions(versions: pd.DataFrame) -> pd.Series:
    """Position (0 = oldest) of each version within its model; index version_id."""
    if not len(versions):
        return pd.Series([], dtype=np.int64)
    tr = ns_values(versions["trained_at"])
    rec = ns_values(versions["recorded_at"])
    key = np.where(tr == np.iinfo(np.int64).min, rec, tr)
    vid = versions["version_id"].to_numpy(np.int64)
    model_codes, _ = pd.factorize(versions["model_id"])
    order = np.lexsort((vid, rec, key, model_codes))
    mc = model_codes[order]
    first = np.r_[True, mc[1:] != mc[:-1]]
    grp_start = np.maximum.accumulate(np.where(first, np.arange(len(mc)), 0))
    pos = np.arange(len(mc)) - grp_start
    return pd.Series(pos, index=vid[order])


def _last(df: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame(columns=keys + cols)
    return df.sort_values(["fin_ns", "check_id"], kind="stable").drop_duplicates(keys, keep="last")[keys + cols]


def artifact_staleness(inp: AnalysisInput, grid: DayGrid, ref_day: int, policy: AnalysisPolicy) -> pd.DataFrame:
    a = inp.artifacts
    a = a[day_numbers(a["recorded_at"]) <= ref_day]
    vers = inp.versions[day_numbers(inp.versions["recorded_at"]) <= ref_day]
    pos = version_positions(vers)
    labels = pd.Series(inp.versions["label"].to_numpy(), index=inp.versions["version_id"].to_numpy(np.int64))
    tier = pd.Series(inp.models["tier"].to_numpy(), index=inp.models["model_id"].to_numpy())
    col = ref_day - grid.w0
    if 0 <= col < grid.nd and len(grid.ver_ids):
        on = grid.deployed[:, col]
        dep = pd.DataFrame({"model_id": grid.model_ids[grid.ver_model[on]], "deployed_version_id": grid.ver_ids[on]})
    else:
        dep = pd.DataFrame({"model_id": np.array([], object), "deployed_version_id": np.array([], np.int64)})
    base = pd.DataFrame({"artifact_id": a["artifact_id"].to_numpy(), "model_id": a["model_id"].to_numpy(),
                         "kind": a["kind"].to_numpy(), "bound_version_id": a["bound_version_id"].to_numpy(np.int64)})
    rows = base.merge(dep, on="model_id", how="left")
    rows["deployed_version_id"] = rows["deployed_version_id"].astype("Int64")

    c = inp.checks
    c = c[(day_numbers(c["finished_at"]) <= ref_day) & c["artifact_id"].notna().to_numpy()]
    cf = pd.DataFrame({"artifact_id": c["artifact_id"].to_numpy(), "version_id": c["version_id"].to_numpy(np.int64),
                       "kind": c["kind"].to_numpy(), "status": c["status"].to_numpy(),
                       "check_id": c["check_id"].to_numpy(np.int64), "fin_ns": ns_values(c["finished_at"]),
                       "ev": c["explained_variance"].to_numpy(np.float64),
                       "survival": c["survival_share"].to_numpy(np.float64),
                       "is_baseline": c["is_baseline"].to_numpy(bool)})
    fid = cf[cf["kind"].to_numpy() == "fidelity"]
    key = ["artifact_id", "version_id"]
    latest = _last(fid, key, ["status", "fin_ns", "check_id"]).rename(
        columns={"version_id": "deployed_version_id", "status": "latest_status", "fin_ns": "latest_ns",
                 "check_id": "latest_check_id"})
    good = fid[fid["status"].isin(["pass", "warn"]).to_numpy()]
    last_ok = _last(good, key, ["fin_ns"]).rename(columns={"version_id": "deployed_version_id",
                                                          "fin_ns": "validated_ns"})
    ev = _last(fid[~np.isnan(fid["ev"].to_numpy())], key, ["ev"]).rename(
        columns={"version_id": "deployed_version_id", "ev": "latest_ev"})
    bound = pd.Series(a["bound_version_id"].to_numpy(np.int64), index=a["artifact_id"].to_numpy())
    bl = fid[fid["is_baseline"].to_numpy() & ~np.isnan(fid["ev"].to_numpy())]
    bl = bl[bl["version_id"].to_numpy() == bound.reindex(bl["artifact_id"].to_numpy()).to_numpy()]
    bl = _last(bl, ["artifact_id"], ["ev"]).rename(columns={"ev": "baseline_ev"})
    al = cf[(cf["kind"].to_numpy() == "alignment") & ~np.isnan(cf["survival"].to_numpy())]
    al = _last(al, ["artifact_id"], ["survival"])
    for part in (latest, last_ok, ev):
        part["deployed_version_id"] = part["deployed_version_id"].astype("Int64")
        rows = rows.merge(part, on=["artifact_id", "deployed_version_id"], how="left")
    rows = rows.merge(bl, on="artifact_id", how="left").merge(al, on="artifact_id", how="left")

    rep = a[a["replaces"].notna().to_numpy()]
    rep = rep.sort_values("recorded_at", kind="stable").drop_duplicates("replaces", keep="last")
    sup = pd.Series(rep["artifact_id"].to_numpy(), index=rep["replaces"].to_numpy())

    dv = rows["deployed_version_id"]
    has_dep = dv.notna().to_numpy()
    dvi = dv.fillna(-1).to_numpy(np.int64)
    pos_dep = pos.reindex(dvi).to_numpy()
    pos_bound = pos.reindex(rows["bound_version_id"].to_numpy()).to_numpy()
    behind = pos_dep - pos_bound
    vday = np.floor_divide(rows["validated_ns"].fillna(-1).to_numpy(np.int64), NS_PER_DAY)
    validated = rows["validated_ns"].notna().to_numpy()
    lstat = rows["latest_status"].to_numpy(object)
    lday = np.floor_divide(rows["latest_ns"].fillna(-1).to_numpy(np.int64), NS_PER_DAY)
    is_good = np.isin(lstat, ["pass", "warn"])
    is_bad = np.isin(lstat, ["fail", "error"])
    valid = is_good & (ref_day - lday <= policy.validity_days)
    astate = np.where(valid, "valid", np.where(is_bad, "broken", "stale")).astype(object)
    astate[~has_dep] = None

    # slot state of the (deployed version, group of this kind) at the reference day
    slot_state = np.full(len(rows), None, object)
    if len(grid.slot_ver) and 0 <= col < grid.nd and has_dep.any():
        kg = {(t, k): g for t in policy.required_groups for g, gs in enumerate(policy.groups(t)) for k in gs}
        sidx = pd.Series(np.arange(len(grid.slot_ver)),
                         index=pd.MultiIndex.from_arrays([grid.ver_ids[grid.slot_ver], grid.slot_group]))
        t_of = tier.reindex(rows["model_id"].to_numpy()).to_numpy()
        grp = np.array([kg.get((int(t), k), -1) for t, k in zip(t_of, rows["kind"].to_numpy())], np.int64)
        srow = sidx.reindex(pd.MultiIndex.from_arrays([dvi, grp])).to_numpy()
        ok = ~np.isnan(srow) & has_dep
        codes = grid.slot_state[srow[ok].astype(np.int64), col]
        slot_state[ok] = [STATE_NAMES.get(int(x)) for x in codes]

    def iso_day(ns: pd.Series) -> list:
        return [None if pd.isna(x) else day_date(int(x) // NS_PER_DAY).isoformat() for x in ns]

    out = pd.DataFrame({
        "artifact_id": rows["artifact_id"], "model_id": rows["model_id"], "kind": rows["kind"],
        "bound_version_id": rows["bound_version_id"].astype(np.int64),
        "bound_label": labels.reindex(rows["bound_version_id"].to_numpy()).to_numpy(),
        "deployed_version_id": [int(x) if h else None for x, h in zip(dvi, has_dep)],
        "deployed_label": np.where(has_dep, labels.reindex(dvi).to_numpy(), None),
        "versions_behind": [int(b) if h and not np.isnan(b) else None for b, h in zip(behind, has_dep)],
        "last_validated_on": iso_day(rows["validated_ns"]),
        "days_since_validation": [int(ref_day - d) if ok else None for d, ok in zip(vday, validated)],
        "baseline_ev": rows["baseline_ev"].to_numpy(np.float64),
        "latest_ev": rows["latest_ev"].to_numpy(np.float64),
        "fidelity_decay": rows["baseline_ev"].to_numpy(np.float64) - rows["latest_ev"].to_numpy(np.float64),
        "survival": rows["survival"].to_numpy(np.float64),
        "latest_check_id": [int(x) if not pd.isna(x) else None for x in rows["latest_check_id"]],
        "latest_status": rows["latest_status"].astype(object).where(rows["latest_status"].notna(), None),
        "artifact_state": astate, "slot_state": slot_state,
        "superseded_by": sup.reindex(rows["artifact_id"].to_numpy()).to_numpy(),
    })
    return out.sort_values(["model_id", "artifact_id", "deployed_version_id"], kind="stable",
                           na_position="last").reset_index(drop=True)
