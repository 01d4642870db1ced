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
  ``pending`` (latest check a warn no validator accepted), ``broken`` (latest fidelity check
  fail/error) or ``stale`` (no check, or validation expired);
  ``slot_state`` is the state of the required group the kind belongs to (None when the kind is in
  no required group for the model's tier). ``superseded_by`` names the latest artifact recorded by
  then that ``replaces`` it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calendar import day_numbers, ns_values
from .coverage import STATE_NAMES, STATUS_NAMES, DayGrid, _iso_days, fidelity_arrays
from .frames import ARTIFACT_KINDS, AnalysisInput
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


def _opt_ints(values: np.ndarray, present: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.asarray(values, np.int64), ~np.asarray(present, bool))


def last_per_key(keys: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, index of the last masked entry per key) for entries sorted by key then time."""
    idx = np.flatnonzero(mask)
    k = keys[idx]
    if not len(k):
        return k, idx
    last = np.r_[k[1:] != k[:-1], True]
    return k[last], idx[last]


def lookup_sorted(ukeys: np.ndarray, uidx: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Index of each wanted key's entry (-1 when absent); ukeys sorted."""
    if not len(ukeys):
        return np.full(len(want), -1, np.int64)
    pos = np.clip(np.searchsorted(ukeys, want), 0, len(ukeys) - 1)
    return np.where(ukeys[pos] == want, uidx[pos], -1)


def artifact_staleness(inp: AnalysisInput, grid: DayGrid, ref_day: int, policy: AnalysisPolicy) -> pd.DataFrame:
    a = inp.artifacts
    a_rec = day_numbers(a["recorded_at"])
    vers = inp.versions[day_numbers(inp.versions["recorded_at"]) <= ref_day]
    pos = version_positions(vers)
    labels = pd.Series(inp.versions["label"].to_numpy(), index=inp.versions["version_id"].to_numpy(np.int64))
    models = pd.Index(grid.model_ids)
    a_model = models.get_indexer(a["model_id"])
    a_bound = a["bound_version_id"].to_numpy(np.int64)
    kinds = pd.Index(ARTIFACT_KINDS)
    a_kind = kinds.get_indexer(a["kind"])
    arts = np.flatnonzero(a_rec <= ref_day)

    # (artifact, deployed version) pairs
    col = ref_day - grid.w0
    if 0 <= col < grid.nd and len(grid.ver_ids):
        on = np.flatnonzero(grid.deployed[:, col])
    else:
        on = np.array([], np.int64)
    dep_model, dep_vid = grid.ver_model[on], grid.ver_ids[on]
    order = np.argsort(dep_model, kind="stable")
    dep_model, dep_vid = dep_model[order], dep_vid[order]
    lo = np.searchsorted(dep_model, a_model[arts], "left")
    hi = np.searchsorted(dep_model, a_model[arts], "right")
    cnt = np.maximum(hi - lo, 1)  # an artifact without a deployed version keeps one row
    r_art = np.repeat(arts, cnt)
    offs = np.arange(len(r_art)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    has_dep = np.repeat(hi > lo, cnt)
    r_dv = np.where(has_dep, dep_vid[np.minimum(np.repeat(lo, cnt) + offs, max(len(dep_vid) - 1, 0))]
                    if len(dep_vid) else -1, -1)

    # fidelity evidence up to the reference day, keyed by (artifact row, version row)
    f = fidelity_arrays(inp, policy.warn_needs_acceptance)
    vindex = pd.Index(inp.versions["version_id"].to_numpy(np.int64))
    nvr = len(vindex) + 1
    upto = f["day"] <= ref_day
    fkey = f["acode"] * nvr + vindex.get_indexer(f["version_id"])
    want = r_art * nvr + np.where(has_dep, vindex.get_indexer(r_dv), -1)
    k_all, i_all = last_per_key(fkey, upto)
    k_ok, i_ok = last_per_key(fkey, upto & f["good"])
    k_ev, i_ev = last_per_key(fkey, upto & ~np.isnan(f["ev"]))
    latest = np.where(has_dep, lookup_sorted(k_all, i_all, want), -1)
    last_ok = np.where(has_dep, lookup_sorted(k_ok, i_ok, want), -1)
    last_ev = np.where(has_dep, lookup_sorted(k_ev, i_ev, want), -1)
    bl_mask = upto & f["is_baseline"] & ~np.isnan(f["ev"]) & (f["version_id"] == a_bound[f["acode"]])
    k_bl, i_bl = last_per_key(f["acode"], bl_mask)
    bl = lookup_sorted(k_bl, i_bl, r_art)

    def pick(arr: np.ndarray, idx: np.ndarray, fill):
        out = np.full(len(idx), fill, dtype=arr.dtype if fill is not None else object)
        ok = idx >= 0
        out[ok] = arr[idx[ok]]
        return out

    latest_day = pick(f["day"], latest, -1)
    latest_good = pick(f["good"], latest, False)
    latest_bad = pick(f["bad"], latest, False)
    within = ref_day - latest_day <= policy.validity_days
    valid = latest_good & within
    pend = pick(f["warn"], latest, False) & ~latest_good & within
    astate = np.where(valid, "valid", np.where(pend, "pending", np.where(latest_bad, "broken", "stale"))).astype(object)
    astate[~has_dep] = None
    ok_day = pick(f["day"], last_ok, -1)
    base_ev = pick(f["ev"], bl, np.nan)
    lat_ev = pick(f["ev"], last_ev, np.nan)

    # survival from the latest alignment check where the artifact is the new one
    c = inp.checks
    al = np.flatnonzero(((c["kind"] == "alignment").to_numpy(dtype=bool, na_value=False))
                        & (day_numbers(c["finished_at"]) <= ref_day) & ~np.isnan(c["survival_share"].to_numpy(np.float64)))
    surv = np.full(len(r_art), np.nan)
    if len(al):
        acode = pd.Index(a["artifact_id"]).get_indexer(c["artifact_id"].iloc[al])
        fin = ns_values(c["finished_at"])[al]
        cid = c["check_id"].to_numpy(np.int64)[al]
        o = np.lexsort((cid, fin, acode))
        acode, val = acode[o], c["survival_share"].to_numpy(np.float64)[al][o]
        k_s, i_s = last_per_key(acode, acode >= 0)
        j = lookup_sorted(k_s, i_s, r_art)
        surv[j >= 0] = val[j[j >= 0]]

    # slot state of the (deployed version, group of this kind) at the reference day
    slot_state = np.full(len(r_art), None, object)
    if len(grid.slot_ver) and 0 <= col < grid.nd and has_dep.any():
        groups_of = np.full((4, len(ARTIFACT_KINDS)), -1, np.int64)
        for t in policy.required_groups:
            if 0 <= t < 4:
                for g, gs in reversed(list(enumerate(policy.groups(t)))):
                    for k in gs:
                        groups_of[t, kinds.get_loc(k)] = g
        grp = groups_of[grid.model_tier[a_model[r_art]], a_kind[r_art]]
        vrow = pd.Index(grid.ver_ids).get_indexer(r_dv)
        lookup = np.full((len(grid.ver_ids), int(grid.slot_group.max()) + 1 if len(grid.slot_group) else 1), -1)
        lookup[grid.slot_ver, grid.slot_group] = np.arange(len(grid.slot_ver))
        okm = has_dep & (grp >= 0) & (vrow >= 0) & (grp < lookup.shape[1])
        srow = np.full(len(r_art), -1)
        srow[okm] = lookup[vrow[okm], grp[okm]]
        okm &= srow >= 0
        names = np.array([None] + [STATE_NAMES[i] for i in (1, 2, 3, 4, 5)], dtype=object)
        slot_state[okm] = names[grid.slot_state[srow[okm], col]]

    rep = a[a["replaces"].notna().to_numpy() & (a_rec <= ref_day)]
    rep = rep.sort_values("recorded_at", kind="stable").drop_duplicates("replaces", keep="last")
    sup = pd.Series(rep["artifact_id"].to_numpy(object), index=rep["replaces"].to_numpy(object))
    art_ids = a["artifact_id"].to_numpy(object)[r_art]
    dv_pos = pos.reindex(r_dv).to_numpy()
    bd_pos = pos.reindex(a_bound[r_art]).to_numpy()
    behind = np.where(has_dep & ~np.isnan(dv_pos) & ~np.isnan(bd_pos), dv_pos - bd_pos, np.nan)
    validated = last_ok >= 0
    out = pd.DataFrame({
        "artifact_id": art_ids, "model_id": grid.model_ids[a_model[r_art]],
        "kind": np.asarray(ARTIFACT_KINDS, dtype=object)[a_kind[r_art]],
        "bound_version_id": a_bound[r_art],
        "bound_label": labels.reindex(a_bound[r_art]).to_numpy(object),
        "deployed_version_id": _opt_ints(np.where(has_dep, r_dv, 0), has_dep),
        "deployed_label": np.where(has_dep, labels.reindex(r_dv).to_numpy(object), None),
        "versions_behind": _opt_ints(np.nan_to_num(behind).astype(np.int64), ~np.isnan(behind)),
        "last_validated_on": np.where(validated, _iso_days(np.where(validated, ok_day, 0)), None),
        "days_since_validation": _opt_ints(np.where(validated, ref_day - ok_day, 0), validated),
        "baseline_ev": base_ev, "latest_ev": lat_ev, "fidelity_decay": base_ev - lat_ev, "survival": surv,
        "latest_check_id": _opt_ints(pick(f["check_id"], latest, 0), latest >= 0),
        "latest_status": np.where(latest >= 0, STATUS_NAMES[pick(f["status"], latest, 0)], None).astype(object),
        "artifact_state": astate, "slot_state": slot_state,
        "superseded_by": sup.reindex(art_ids).to_numpy(object) if len(sup) else np.full(len(r_art), None, object),
    })
    return out.sort_values(["model_id", "artifact_id", "deployed_version_id"], kind="stable",
                           na_position="last").reset_index(drop=True)
