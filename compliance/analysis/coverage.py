"""Deployed version-days, artifact validity, slot states and explanation coverage (DESIGN §4).

Everything is computed on a dense day grid (rows × days of a window) with numpy difference
arrays, never with a Python loop per day or per model.

Definitions and the choices made where DESIGN is silent:

* **Deployed.** Deployment events of a version are ordered by (effective_at, recorded_at) — on an
  exact tie the event recorded later is the later one. After a ``deploy`` the version is deployed
  until a later ``retire`` of *that* version; a second deploy while deployed changes nothing and a
  retire of a version that is not deployed is ignored. A deploy of v2 does not retire v1. A version
  is deployed on UTC day d when a deployed interval [deploy, retire) overlaps any instant of d
  (a retire at exactly midnight does not count the day that starts then). Future-dated events
  (effective after the as-of) count only for days up to the as-of date.
* **Window.** A quarter is analysed on its days up to and including the as-of's UTC date; days
  after the as-of have not happened yet and are not counted.
* **Valid.** An artifact is valid for version v on day d when its latest fidelity check against v
  whose ``finished_at`` UTC date is <= d has status pass or warn, finished at most
  ``validity_days`` days before d (a check finished on day f is valid on days f..f+validity_days),
  and the artifact was recorded on or before d. "Latest" is by (finished_at, check_id), so of two
  checks on the same day the later one decides the whole day. Baseline checks (on the bound
  version) are fidelity checks like any other: binding alone proves nothing. Only artifacts of
  the version's own model count. An artifact that has been replaced still counts while it is valid
  (coverage asks whether valid evidence exists; replacement is reported in the staleness table).
* **Slots.** One slot per (model, version, required group, deployed day): the grain is the
  version-day, so a model with two versions deployed on the same day has two slot-days per group.
  State, in this precedence: ``fresh`` some artifact of the group is valid; ``broken`` otherwise,
  when for some artifact of the group the latest fidelity check on the version (finished <= d) is
  fail or error (however old: the latest evidence says it is broken); ``stale`` otherwise, when an
  artifact of the group was recorded on or before d (bound to an older version and never
  re-validated, bound to this version without a passing baseline, or validation expired);
  ``missing`` when no artifact of the group was recorded by d.
* **Covered.** A deployed version-day is covered when all its slots are fresh. A tier with no
  required groups has no slots: its models are *not required* (``no_requirements``), their
  coverage is None (never 100 %) and they are left out of tier and portfolio figures.
* **Acceptance (v2).** A ``warn`` makes an artifact valid only from the UTC day a validator
  accepted it (policy ``warn_needs_acceptance``, default true); before that the slot is
  ``pending`` (precedence: fresh > pending > broken > stale > missing). Fresh slots whose only
  valid evidence is a warn are marked conditional (``slot_conditional``).
* **Artifact sets (v2).** Members of a set (``set_id``) count only together: the set is valid on a
  day when every member is; pending when every member is valid or pending; it is broken when any
  member's latest check failed.
* **Volume weighting.** Decision volumes are per (version, day). A model "records volumes" in a
  quarter when at least one of its deployed version-days in that quarter has a volume row; then its
  volume-weighted coverage = Σ volume·covered / Σ volume over deployed version-days. A deployed
  version-day without a volume row is imputed with the mean recorded volume of that model's
  deployed version-days in the quarter (a typical day: missing data neither hides an uncovered
  day nor inflates it); the share of imputed version-days is reported. Volumes on days a version
  was not deployed are ignored. The headline ``coverage`` of a model is the volume-weighted one
  when it records volumes, else the unweighted version-day share (``weighting`` says which).
* **Aggregates.** Volumes of different models are in different units, so tier and portfolio
  ``coverage`` is the mean of the in-scope models' headline coverage (each model counts once);
  the pooled version-day share (``coverage_days``) and the pooled volume share over models that
  record volumes (``coverage_volume``) are shown beside it. Models with no deployed day in the
  quarter are out of scope: coverage None, ``deployed`` False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calendar import NS_PER_DAY, day_numbers, ns_values
from .frames import ARTIFACT_KINDS, AnalysisInput, dense_range
from .policy import AnalysisPolicy

FRESH, BROKEN, STALE, MISSING, PENDING = 1, 2, 3, 4, 5
STATUS_NAMES = np.array(["pass", "warn", "fail", "error"], dtype=object)
STATE_NAMES = {FRESH: "fresh", BROKEN: "broken", STALE: "stale", MISSING: "missing", PENDING: "pending"}
_NS_MIN = np.iinfo(np.int64).min
_FAR = np.int64(10**9)  # a day number far in the future


def deployed_intervals(deployments: pd.DataFrame) -> pd.DataFrame:
    """Deployed intervals [start_ns, end_ns) per version (end = int64 max when still deployed)."""
    d = deployments
    if not len(d):
        return pd.DataFrame({"version_id": np.array([], np.int64), "start_ns": np.array([], np.int64),
                             "end_ns": np.array([], np.int64)})
    vid = d["version_id"].to_numpy(np.int64)
    eff = ns_values(d["effective_at"])
    rec = ns_values(d["recorded_at"])
    is_dep = (d["action"].to_numpy() == "deploy")
    order = np.lexsort((rec, eff, vid))
    vid, eff, is_dep = vid[order], eff[order], is_dep[order]
    first = np.ones(len(vid), bool)
    first[1:] = vid[1:] != vid[:-1]
    prev = np.zeros(len(vid), bool)
    prev[1:] = is_dep[:-1]
    prev[first] = False
    starts = is_dep & ~prev
    ends = ~is_dep & prev
    # Within a version starts and ends alternate (start, end, start, ...): pair them by rank.
    s_idx = np.flatnonzero(starts)
    e_idx = np.flatnonzero(ends)
    s_key = pd.DataFrame({"version_id": vid[s_idx], "start_ns": eff[s_idx]})
    s_key["k"] = s_key.groupby("version_id").cumcount()
    e_key = pd.DataFrame({"version_id": vid[e_idx], "end_ns": pd.array(eff[e_idx], dtype="Int64")})
    e_key["k"] = e_key.groupby("version_id").cumcount()
    out = s_key.merge(e_key, on=["version_id", "k"], how="left")
    out["end_ns"] = out["end_ns"].astype("Int64").fillna(np.iinfo(np.int64).max).to_numpy(np.int64)
    return out[out["end_ns"] > out["start_ns"]][["version_id", "start_ns", "end_ns"]].reset_index(drop=True)


def _interval_days(start_ns: np.ndarray, end_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last UTC day touched by [start, end) (end > start)."""
    first = np.floor_divide(start_ns, NS_PER_DAY)
    big = end_ns == np.iinfo(np.int64).max
    last = np.where(big, _FAR, np.floor_divide(np.where(big, 0, end_ns) - 1, NS_PER_DAY))
    return first, last


_FILL_CELLS = 1 << 22  # grid cells counted at a time by _fill (its temporaries: ~16 bytes a cell)


def _fill(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, nrows: int, nd: int, *,
          covered: bool = False) -> np.ndarray:
    """Count, per grid cell, the intervals [lo, hi] (day offsets, inclusive) covering it: int32
    [nrows, nd]; with ``covered``, only whether any does (bool, a quarter of the memory).

    Difference arrays (+1 at lo, -1 after hi, a running sum along the days), a block of rows at a
    time so that the temporaries stay small whatever the grid's size: two million intervals over
    a 44,000-slot, 400-day grid needed ~280 MB at once in one block."""
    ok = (hi >= lo) & (hi >= 0) & (lo < nd)
    rows, lo, hi = rows[ok], np.clip(lo[ok], 0, nd), np.clip(hi[ok], -1, nd - 1)
    width = nd + 1
    out = np.zeros((nrows, nd), bool if covered else np.int32)
    if not nrows or not nd:
        return out
    step = max(1, _FILL_CELLS // width)
    for r0 in range(0, nrows, step):
        r1 = min(nrows, r0 + step)
        m = (rows >= r0) & (rows < r1) if (r0, r1) != (0, nrows) else slice(None)
        base = (rows[m] - r0) * width
        size = (r1 - r0) * width
        acc = np.bincount(base + lo[m], minlength=size)
        acc -= np.bincount(base + hi[m] + 1, minlength=size)
        acc = acc.reshape(r1 - r0, width)
        np.cumsum(acc, axis=1, out=acc)
        if covered:
            np.greater(acc[:, :nd], 0, out=out[r0:r1])
        else:
            out[r0:r1] = acc[:, :nd]
    return out


def _eq(s: pd.Series, value: str) -> np.ndarray:
    """Vectorised ``s == value`` as a numpy bool array (fast on arrow-backed strings too)."""
    return (s == value).to_numpy(dtype=bool, na_value=False)


def artifact_rows(inp: AnalysisInput) -> np.ndarray:
    """Row in ``inp.artifacts`` of each check's artifact (-1 when none), memoised."""
    if "check_acode" not in inp.cache:
        col = inp.checks["artifact_id"]
        arts = pd.Index(inp.artifacts["artifact_id"])
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy(np.int64)
            to_row = np.r_[arts.get_indexer(col.cat.categories), -1]
            inp.cache["check_acode"] = to_row[codes]  # code -1 picks the trailing -1
        else:
            inp.cache["check_acode"] = arts.get_indexer(col)
    return inp.cache["check_acode"]


def fidelity_arrays(inp: AnalysisInput, needs_acceptance: bool = True) -> dict[str, np.ndarray]:
    """All fidelity checks of artifacts of the version's own model, as numpy arrays sorted by
    (artifact row, version_id, finished_at, check_id): ``acode`` (row of ``inp.artifacts``),
    ``version_id``, ``check_id``, ``fin_ns``, ``day``, ``status`` (index into STATUS_NAMES),
    ``passed``, ``warn``, ``acc_day`` (UTC day a validator accepted the warn; far future when not
    accepted), ``good`` (makes the artifact valid: pass, or warn when accepted or when the policy
    does not require acceptance), ``bad`` (fail/error), ``ev``, ``is_baseline``. Memoised on the
    input instance per ``needs_acceptance``."""
    key = ("fidelity", bool(needs_acceptance))
    if key in inp.cache:
        return inp.cache[key]
    c = inp.checks
    a = inp.artifacts
    fid = _eq(c["kind"], "fidelity")
    acode_all = artifact_rows(inp)
    # An `inconclusive` check (a budgeted check whose confidence interval straddles a threshold,
    # DESIGN §9) proves nothing either way: it is left out, so a slot stays exactly as it would be
    # without that check — it neither makes the artifact valid nor broken, nor ends a validity.
    sel = np.flatnonzero(fid & (acode_all >= 0) & ~_eq(c["status"], "inconclusive"))
    acode = acode_all[sel]
    vid = c["version_id"].to_numpy(np.int64)[sel]
    # same model: the version's model vs the artifact's
    models = pd.Index(inp.models["model_id"])
    a_model = models.get_indexer(a["model_id"])
    v_model = pd.Series(models.get_indexer(inp.versions["model_id"]), index=inp.versions["version_id"].to_numpy())
    keep = a_model[acode] == v_model.reindex(vid).to_numpy()
    sel, acode, vid = sel[keep], acode[keep], vid[keep]
    fin = ns_values(c["finished_at"])[sel]
    cid = c["check_id"].to_numpy(np.int64)[sel]
    order = _pair_time_order(_pair_key(acode, vid), fin, cid)
    if order is not None:  # (None: the rows already are in that order)
        sel, acode, vid, fin, cid = sel[order], acode[order], vid[order], fin[order], cid[order]
    status = c["status"]
    passed = _eq(status, "pass")[sel]
    warn = _eq(status, "warn")[sel]
    acc_ns = ns_values(c["accepted_at"])[sel]
    accepted = acc_ns != _NS_MIN
    acc_day = np.where(accepted, np.floor_divide(np.where(accepted, acc_ns, 0), NS_PER_DAY), _FAR)
    code = np.select([_eq(status, n) for n in STATUS_NAMES], np.arange(len(STATUS_NAMES)), -1)
    good = passed | (warn & (accepted | (not needs_acceptance)))
    out = {"acode": acode, "version_id": vid, "check_id": cid, "fin_ns": fin, "status": code[sel],
           "day": np.floor_divide(fin, NS_PER_DAY), "good": good, "passed": passed, "warn": warn,
           "acc_day": acc_day if needs_acceptance else np.full(len(sel), _FAR, np.int64),
           "acc_ns": np.where(accepted, acc_ns, np.iinfo(np.int64).max),
           "needs_acceptance": np.full(len(sel), bool(needs_acceptance)),
           "bad": (_eq(status, "fail") | _eq(status, "error"))[sel],
           "ev": c["explained_variance"].to_numpy(np.float64)[sel],
           "is_baseline": c["is_baseline"].to_numpy(bool)[sel]}
    inp.cache[key] = out
    return out


def _pair_key(acode: np.ndarray, vid: np.ndarray) -> np.ndarray:
    """One sortable integer per (artifact row, version): ``acode * (versions + 1) + rank of the
    version`` (a version's rank orders as its id does). Dense ids (a store's) are ranked through a
    table of the ids present, without sorting them."""
    if not len(vid):
        return np.zeros(0, np.int64)
    if (r := dense_range(vid)) is not None:
        lo, hi = r
        present = np.zeros(hi - lo + 1, bool)
        present[vid - lo] = True
        rank = np.cumsum(present) - 1
        return acode.astype(np.int64) * (int(rank[-1]) + 2) + rank[vid - lo]
    vs = np.unique(vid)
    return acode.astype(np.int64) * (len(vs) + 1) + np.searchsorted(vs, vid)


def _pair_time_order(pair: np.ndarray, fin: np.ndarray, cid: np.ndarray) -> np.ndarray | None:
    """``np.lexsort((cid, fin, pair))`` (``pair`` >= 0), or None when the rows already are in that
    order (a SQLite read through the covering index: rows by artifact, version and time). Rows that
    come grouped by pair and mostly in time order within it take a stable sort by pair (none when
    the pairs already come in order), then only the pairs whose rows are out of (fin, cid) order
    are sorted again (2 s → 0.2 s for two million checks); rows in any other order (PostgreSQL's,
    in the order they were written) take :func:`_lex_order`."""
    n = len(pair)
    if n < 2:
        return None
    if np.count_nonzero(pair[1:] == pair[:-1]) * 2 < n - 1:  # not grouped by pair
        return _lex_order(pair, fin, cid)
    o = None if (pair[1:] >= pair[:-1]).all() else np.argsort(pair, kind="stable")
    ps, fs, cs = (pair, fin, cid) if o is None else (pair[o], fin[o], cid[o])
    same = ps[1:] == ps[:-1]
    bad = same & ((fs[1:] < fs[:-1]) | ((fs[1:] == fs[:-1]) & (cs[1:] < cs[:-1])))
    if not bad.any():
        return o
    if bad.sum() * 8 > n:  # mostly out of order: one full sort is cheaper
        return _lex_order(pair, fin, cid)
    if o is None:
        o = np.arange(n)
    group = np.cumsum(np.r_[True, ~same])
    rows = np.flatnonzero(np.isin(group, np.unique(group[1:][bad])))
    o[rows] = o[rows][np.lexsort((cs[rows], fs[rows], ps[rows]))]
    return o


def _lex_order(pair: np.ndarray, fin: np.ndarray, cid: np.ndarray) -> np.ndarray:
    """``np.lexsort((cid, fin, pair))`` as two sorts: the rank of each row by (fin, cid), then one
    sort of the single key ``pair * n + rank`` (0.34 s against 0.52 s for two million checks in
    no order); a plain lexsort when that key would not fit in 64 bits."""
    n = len(pair)
    if not n or pair.min() < 0 or int(pair.max()) >= np.iinfo(np.int64).max // n:
        return np.lexsort((cid, fin, pair))
    by_time = np.lexsort((cid, fin))
    rank = np.empty(n, np.int64)
    rank[by_time] = np.arange(n)
    return np.argsort(pair * n + rank)  # the keys are distinct: any sort gives the one order


def latest_fidelity_steps(inp: AnalysisInput, needs_acceptance: bool = True,
                          keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The step function 'latest fidelity check on or before day d' per (artifact, version): one
    entry per (artifact, version, day) — the last check of that day — with ``next_day`` (the day
    the next check takes over, or far future) and ``a_rec_day`` (the artifact's recorded day).
    ``keys``: only these of :func:`fidelity_arrays`' arrays (each is a copy as long as the checks)."""
    f = fidelity_arrays(inp, needs_acceptance)
    acode, vid, day = f["acode"], f["version_id"], f["day"]
    n = len(acode)
    same_pair = np.zeros(n, bool)
    same_day_next = np.zeros(n, bool)
    if n > 1:
        same_pair[:-1] = (acode[1:] == acode[:-1]) & (vid[1:] == vid[:-1])
        same_day_next[:-1] = same_pair[:-1] & (day[1:] == day[:-1])
    last = ~same_day_next  # the last check of its (artifact, version, day)
    out = {k: v[last] for k, v in f.items() if keys is None or k in keys or k in ("acode", "day")}
    sp = same_pair[last]
    nxt = np.full(len(sp), _FAR, np.int64)
    if len(sp) > 1:
        nxt[:-1] = np.where(sp[:-1], out["day"][1:], _FAR)
    out["next_day"] = nxt
    a_rec = day_numbers(inp.artifacts["recorded_at"])
    out["a_rec_day"] = a_rec[out["acode"]] if len(out["acode"]) else np.array([], np.int64)
    return out


def _step_intervals(inp: AnalysisInput, policy: AnalysisPolicy, ver_row: pd.Series, tier_of_ver: np.ndarray,
                    a_kind: np.ndarray, triples: list, slot_lookup: np.ndarray, ns_: int) -> tuple[dict, dict, np.ndarray]:
    """The day intervals each latest-check step proves, by what it proves ("pass", "warn",
    "pending", "broken"): ``single`` for artifacts outside a set (rows: slot) and ``member`` for
    members of an artifact set (rows: set * ns_ + slot), each a name -> (rows, lo, hi) lists;
    with each set's size. The per-step arrays, the analysis' largest, are dropped on return."""
    a = inp.artifacts
    steps = latest_fidelity_steps(inp, policy.warn_needs_acceptance,
                                  keys=("acode", "version_id", "day", "passed", "warn", "acc_day", "bad"))
    s_row = ver_row.reindex(steps["version_id"]).to_numpy()
    on = ~np.isnan(s_row)
    s_row = np.where(on, s_row, 0).astype(np.int64)
    s_tier = tier_of_ver[s_row]
    s_kind = a_kind[steps["acode"]]
    start = np.maximum(steps["day"], steps["a_rec_day"])
    stop = steps["next_day"] - 1
    v_hi = np.minimum(stop, steps["day"] + policy.validity_days)
    passed, warn, acc_day = steps["passed"], steps["warn"], steps["acc_day"]
    needs = policy.warn_needs_acceptance
    # Intervals per step, by what they prove (inclusive day numbers; empty when hi < lo):
    #   P pass: valid [start, v_hi]; W warn: valid once accepted (or at once when the policy
    #   does not ask for acceptance) and pending before; B fail/error: broken until the next check.
    w_lo = np.maximum(start, acc_day) if needs else start
    kinds_of = {
        "pass": (passed, start, v_hi),
        "warn": (warn, w_lo, v_hi),
        "pending": (warn & needs, start, np.minimum(v_hi, acc_day - 1)),
        "broken": (steps["bad"], start, stop),
    }
    a_set = a["set_id"].to_numpy(object) if "set_id" in a else np.full(len(a), None, object)
    set_code, set_names = pd.factorize(pd.Series(a_set, dtype=object))
    set_size = np.bincount(set_code[set_code >= 0], minlength=len(set_names))
    s_set = set_code[steps["acode"]] if len(steps["acode"]) else np.array([], np.int64)
    single = {k: ([], [], []) for k in kinds_of}
    member = {k: ([], [], []) for k in kinds_of}  # rows are pair keys set * ns_ + slot
    # the steps of each (tier, kind), found once: one stable sort by that key, then a slice per triple
    nk = max([int(s_kind.max()) if len(s_kind) else 0] + [k for _, k, _ in triples]) + 2
    key = np.where(on, s_tier * nk + s_kind + 1, -1)
    by_key = np.argsort(key, kind="stable")
    sorted_key = key[by_key]
    any_set = bool((s_set >= 0).any())
    if not any_set:  # no artifact sets: every step is a single artifact's (the member lists stay empty)
        empty = np.zeros(0, np.int64)
        member = {k: ([empty], [empty], [empty]) for k in kinds_of}
    for t, k, g in triples:
        lo_i, hi_i = np.searchsorted(sorted_key, [t * nk + k + 1, t * nk + k + 2])
        idx = by_key[lo_i:hi_i]
        srow = slot_lookup[s_row[idx], g]
        taken: dict[int, np.ndarray] = {}  # each of the steps' arrays gathered once per triple (kinds share them)

        def at(a: np.ndarray) -> np.ndarray:
            if id(a) not in taken:
                taken[id(a)] = a[idx]
            return taken[id(a)]

        if any_set:
            in_set = s_set[idx] >= 0
            pair = s_set[idx] * ns_ + srow
        for name, (mask, lo, hi) in kinds_of.items():
            mm, lo_m, hi_m = at(mask), at(lo), at(hi)
            if not any_set:
                single[name][0].append(srow[mm]); single[name][1].append(lo_m[mm]); single[name][2].append(hi_m[mm])
                continue
            for target, rows, sel in ((single, srow, mm & ~in_set), (member, pair, mm & in_set)):
                target[name][0].append(rows[sel]); target[name][1].append(lo_m[sel]); target[name][2].append(hi_m[sel])
    return single, member, set_size


@dataclass
class DayGrid:
    """Deployed version-days, coverage and slot states over a window of days ``w0 .. w0+nd-1``.

    Version rows are sorted by (model, version_id); slot rows by (version row, group index).
    """

    w0: int
    nd: int
    model_ids: np.ndarray        # all models of the input, sorted
    model_tier: np.ndarray
    ver_ids: np.ndarray          # versions deployed on some day of the window
    ver_model: np.ndarray        # index into model_ids
    deployed: np.ndarray         # bool [nv, nd]
    covered: np.ndarray          # bool [nv, nd] (deployed and all slots fresh)
    volume: np.ndarray           # float [nv, nd], NaN where no volume row
    slot_ver: np.ndarray         # index into ver rows
    slot_group: np.ndarray       # group index within the model's tier
    slot_group_name: np.ndarray  # 'sae|transcoder|clt'
    slot_state: np.ndarray       # int8 [ns, nd]: 0 = not deployed, else FRESH..PENDING
    slot_conditional: np.ndarray  # bool [ns, nd]: fresh only through warns (accepted, or not needing it)
    model_required: np.ndarray   # bool per model: its tier requires at least one artifact group

    def day_slice(self, first_day: int, last_day: int) -> slice:
        lo = max(first_day - self.w0, 0)
        hi = min(last_day - self.w0 + 1, self.nd)
        return slice(lo, max(hi, lo))


def build_grid(inp: AnalysisInput, policy: AnalysisPolicy, first_day: int, last_day: int) -> DayGrid:
    """The day grid over days first_day..last_day (day numbers, inclusive) from already
    as-of-filtered input."""
    nd = max(int(last_day - first_day + 1), 0)
    w0 = int(first_day)
    m = inp.models.sort_values("model_id", kind="stable")
    model_ids = m["model_id"].to_numpy()
    model_tier = m["tier"].to_numpy(np.int64)
    model_index = pd.Series(np.arange(len(model_ids)), index=model_ids)
    vers = inp.versions
    vmodel = pd.Series(model_index.reindex(vers["model_id"].to_numpy()).to_numpy(),
                       index=vers["version_id"].to_numpy(np.int64))

    # ---- deployed version-days
    iv = deployed_intervals(inp.deployments)
    f_day, l_day = _interval_days(iv["start_ns"].to_numpy(), iv["end_ns"].to_numpy())
    lo, hi = f_day - w0, l_day - w0
    touching = (hi >= 0) & (lo < nd) & (hi >= lo)
    cand = np.unique(iv["version_id"].to_numpy()[touching])
    cmodel = vmodel.reindex(cand).to_numpy()
    order = np.lexsort((cand, cmodel))
    ver_ids, ver_model = cand[order], cmodel[order].astype(np.int64)
    ver_row = pd.Series(np.arange(len(ver_ids)), index=ver_ids)
    nv = len(ver_ids)
    ivt = iv[touching]
    rows = ver_row.reindex(ivt["version_id"].to_numpy()).to_numpy(np.int64)
    deployed = _fill(rows, lo[touching], hi[touching], nv, nd, covered=True)

    # ---- volumes
    volume = np.full((nv, nd), np.nan)
    vol = inp.volumes
    if len(vol) and nv:
        vr = ver_row.reindex(vol["version_id"].to_numpy(np.int64)).to_numpy()
        vd = day_numbers(vol["day"]) - w0
        ok = ~np.isnan(vr) & (vd >= 0) & (vd < nd)
        volume[vr[ok].astype(np.int64), vd[ok]] = vol["volume"].to_numpy(np.float64)[ok]

    # ---- slots: (version row, group) for versions whose tier has required groups
    tier_of_ver = model_tier[ver_model] if nv else np.array([], np.int64)
    n_groups = np.array([len(policy.groups(t)) for t in tier_of_ver], np.int64) if nv else np.array([], np.int64)
    slot_ver = np.repeat(np.arange(nv), n_groups)
    starts = np.cumsum(n_groups) - n_groups
    slot_group = np.arange(len(slot_ver)) - np.repeat(starts, n_groups)
    slot_tier = tier_of_ver[slot_ver] if len(slot_ver) else np.array([], np.int64)
    names = {(t, g): policy.group_name(gs) for t in policy.required_groups
             for g, gs in enumerate(policy.groups(t))}
    key = slot_tier * 1000 + slot_group
    slot_group_name = np.array([names[(int(k) // 1000, int(k) % 1000)] for k in np.unique(key)], dtype=object)
    slot_group_name = slot_group_name[np.searchsorted(np.unique(key), key)] if len(key) else np.array([], object)
    ns_ = len(slot_ver)
    max_g = max([len(policy.groups(t)) for t in policy.required_groups] + [1])
    slot_lookup = np.full((nv, max_g), -1, np.int64)
    if ns_:
        slot_lookup[slot_ver, slot_group] = np.arange(ns_)
    # (tier, kind, group) triples of the policy
    kinds = pd.Index(ARTIFACT_KINDS)
    triples = [(t, int(kinds.get_loc(k)), g) for t in policy.required_groups
               for g, gs in enumerate(policy.groups(t)) for k in gs]

    state = np.zeros((ns_, nd), np.int8)
    slot_conditional = np.zeros((ns_, nd), bool)
    if ns_ and nd:
        a = inp.artifacts
        a_kind = kinds.get_indexer(a["kind"])
        a_model = model_index.reindex(a["model_id"].to_numpy()).to_numpy(np.int64)
        single, member, set_size = _step_intervals(inp, policy, ver_row, tier_of_ver, a_kind, triples,
                                                   slot_lookup, ns_)
        cat = np.concatenate

        def grid_of(acc: dict, name: str, nrows: int, index=None, covered: bool = False) -> np.ndarray:
            rows, lo, hi = (cat(x) for x in acc[name])
            acc[name] = None  # the intervals are dropped as soon as they are counted
            if index is not None:
                rows = np.searchsorted(index, rows)
            return _fill(rows.astype(np.int64), lo - w0, hi - w0, nrows, nd, covered=covered)

        pairs = np.unique(cat([cat(member[n][0]) for n in member]))
        fresh_pass = grid_of(single, "pass", ns_, covered=True)
        fresh_warn = grid_of(single, "warn", ns_, covered=True)
        pending = grid_of(single, "pending", ns_, covered=True)
        broken = grid_of(single, "broken", ns_, covered=True)
        if len(pairs):  # artifact sets: valid only when every member is (DESIGN §3)
            n_p = len(pairs)
            c_pass = grid_of(member, "pass", n_p, pairs)
            c_warn = grid_of(member, "warn", n_p, pairs)
            c_pend = grid_of(member, "pending", n_p, pairs)
            c_bad = grid_of(member, "broken", n_p, pairs)
            size = set_size[pairs // ns_][:, None]
            p_slot = pairs % ns_
            all_valid = (c_pass + c_warn) >= size
            np.logical_or.at(fresh_pass, p_slot, c_pass >= size)
            np.logical_or.at(fresh_warn, p_slot, all_valid & (c_pass < size))
            np.logical_or.at(pending, p_slot, ~all_valid & (c_pass + c_warn + c_pend >= size))
            np.logical_or.at(broken, p_slot, c_bad > 0)
        fresh = fresh_pass | fresh_warn
        conditional = fresh & ~fresh_pass
        del fresh_pass, fresh_warn  # (grid-sized: each mask goes as soon as it is used)
        # first registration day of an artifact of the group, per (model, group)
        a_day = day_numbers(a["recorded_at"])
        reg = np.full((len(model_ids), max_g), _FAR, np.int64)
        a_tier = model_tier[a_model] if len(a_model) else np.array([], np.int64)
        for t, k, g in triples:
            m = (a_tier == t) & (a_kind == k)
            col = reg[:, g].copy()
            np.minimum.at(col, a_model[m], a_day[m])
            reg[:, g] = col
        reg_day = reg[ver_model[slot_ver], slot_group]
        days = w0 + np.arange(nd)
        state = np.full((ns_, nd), MISSING, np.int8)
        state[days[None, :] >= reg_day[:, None]] = STALE  # an artifact of the group registered
        state[broken] = BROKEN
        del broken
        state[pending] = PENDING
        del pending
        state[fresh] = FRESH
        del fresh
        state[~deployed[slot_ver]] = 0
        slot_conditional = conditional & (state == FRESH)

    # ---- covered version-days
    covered = deployed.copy()
    if ns_ and nd:
        has_slots = n_groups > 0
        # covered where every slot of the version is fresh (a version's slots are consecutive rows)
        covered[has_slots] &= np.logical_and.reduceat(state == FRESH, starts[has_slots], axis=0)
    return DayGrid(w0=w0, nd=nd, model_ids=model_ids, model_tier=model_tier, ver_ids=ver_ids,
                   ver_model=ver_model, deployed=deployed, covered=covered, volume=volume,
                   slot_ver=slot_ver, slot_group=slot_group, slot_group_name=slot_group_name,
                   slot_state=state, slot_conditional=slot_conditional,
                   model_required=np.array([len(policy.groups(int(t))) > 0 for t in model_tier], bool))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(len(den), np.nan)
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


def model_coverage(grid: DayGrid, sl: slice, policy: AnalysisPolicy) -> pd.DataFrame:
    """Per model over the day slice: deployed/covered version-days, volume-weighted coverage."""
    nm = len(grid.model_ids)
    dep = grid.deployed[:, sl]
    cov = grid.covered[:, sl]
    vol = grid.volume[:, sl]
    vm = grid.ver_model
    dep_days = np.bincount(vm, weights=dep.sum(1), minlength=nm)
    cov_days = np.bincount(vm, weights=cov.sum(1), minlength=nm)
    has_vol = dep & ~np.isnan(vol)
    n_vol = np.bincount(vm, weights=has_vol.sum(1), minlength=nm)
    sum_vol = np.bincount(vm, weights=np.where(has_vol, vol, 0.0).sum(1), minlength=nm)
    records_vol = n_vol > 0
    if records_vol.any():
        mean_vol = _ratio(sum_vol, n_vol)  # per model, NaN when none recorded
        fill = mean_vol[vm][:, None] if len(vm) else np.zeros((0, 1))
        w = np.where(dep, np.where(np.isnan(vol), fill, vol), 0.0)
        w = np.nan_to_num(w, nan=0.0)
        w_tot = np.bincount(vm, weights=w.sum(1), minlength=nm)
        w_cov = np.bincount(vm, weights=np.where(cov, w, 0.0).sum(1), minlength=nm)
    else:  # no volume recorded in the slice: every model's coverage is by days (the weights are unused)
        w_tot = w_cov = np.zeros(nm)
    cov_unw = _ratio(cov_days, dep_days)
    cov_w = np.where(records_vol, _ratio(w_cov, w_tot), np.nan)
    # a model whose recorded volumes are all zero has no weight to spread: fall back to days
    use_w = records_vol & (w_tot > 0)
    headline = np.where(use_w, cov_w, cov_unw)
    no_req = np.array([len(policy.groups(t)) == 0 for t in grid.model_tier], bool)
    # Methodology v2: a model whose tier requires nothing is not in scope of coverage: it shows
    # "not required", never 100 %, and is left out of tier and portfolio figures.
    headline = np.where(no_req, np.nan, headline)
    cov_unw = np.where(no_req, np.nan, cov_unw)
    cov_w = np.where(no_req, np.nan, cov_w)
    use_w = use_w & ~no_req
    return pd.DataFrame({
        "model_id": grid.model_ids, "tier": grid.model_tier,
        "deployed": dep_days > 0, "no_requirements": no_req, "in_scope": (dep_days > 0) & ~no_req,
        "deployed_version_days": dep_days.astype(np.int64), "covered_version_days": cov_days.astype(np.int64),
        "coverage": headline, "coverage_unweighted": cov_unw, "coverage_weighted": np.where(use_w, cov_w, np.nan),
        "weighting": np.where(dep_days == 0, None, np.where(use_w, "volume", "days")).astype(object),
        "volume_total": np.where(use_w, w_tot, np.nan), "volume_covered": np.where(use_w, w_cov, np.nan),
        "volume_imputed_share": np.where(records_vol, _ratio(dep_days - n_vol, dep_days), np.nan),
    })


def aggregate_coverage(by_model: pd.DataFrame) -> dict:
    """Tier/portfolio figures from per-model rows (see the module docstring)."""
    inscope = by_model[by_model["deployed"] & ~by_model["no_requirements"]]
    dep = float(inscope["deployed_version_days"].sum())
    cov = float(inscope["covered_version_days"].sum())
    wv = inscope[inscope["weighting"] == "volume"]
    wt = float(wv["volume_total"].sum())
    return {
        "models": int(len(by_model)), "models_in_scope": int(len(inscope)),
        "models_not_required": int((by_model["deployed"] & by_model["no_requirements"]).sum()),
        "models_fully_covered": int((inscope["coverage_unweighted"] >= 1.0).sum()),
        "deployed_version_days": int(dep), "covered_version_days": int(cov),
        "coverage": float(inscope["coverage"].mean()) if len(inscope) else None,
        "coverage_days": cov / dep if dep > 0 else None,
        "coverage_volume": float(wv["volume_covered"].sum()) / wt if wt > 0 else None,
        "models_volume_weighted": int(len(wv)),
    }


def _iso_days(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.asarray(days, np.int64).astype("datetime64[D]"), unit="D").astype(object)


def daily_timeline(grid: DayGrid, sl: slice) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per portfolio/tier rows, per model rows) of daily deployed and covered version-days."""
    nm = len(grid.model_ids)
    dep = grid.deployed[:, sl].astype(np.int64)
    cov = grid.covered[:, sl].astype(np.int64)
    ndays = dep.shape[1]
    days = grid.w0 + np.arange(grid.nd)[sl]
    if len(grid.ver_ids):
        starts = np.flatnonzero(np.r_[True, grid.ver_model[1:] != grid.ver_model[:-1]])
        mids = grid.ver_model[starts]
        mdep = np.add.reduceat(dep, starts, axis=0)
        mcov = np.add.reduceat(cov, starts, axis=0)
    else:
        mids = np.array([], np.int64)
        mdep = mcov = np.zeros((0, ndays), np.int64)
    mi, di = np.nonzero(mdep)
    per_model = pd.DataFrame({
        "day": _iso_days(days[di]),
        "model_id": grid.model_ids[mids[mi]] if len(mi) else np.array([], object),
        "tier": grid.model_tier[mids[mi]] if len(mi) else np.array([], np.int64),
        "deployed": mdep[mi, di], "covered": mcov[mi, di],
    })
    per_model["share"] = per_model["covered"] / per_model["deployed"]
    rows = []
    tiers = grid.model_tier[mids] if len(mids) else np.array([], np.int64)
    req = grid.model_required[mids] if len(mids) else np.array([], bool)  # not-required models stay out
    scopes = [("portfolio", None, req)] + \
             [("tier", t, (tiers == t) & req) for t in sorted(set(grid.model_tier[grid.model_required].tolist()))]
    for scope, tier, sel in scopes:
        d = mdep[sel].sum(0) if sel.any() else np.zeros(ndays, np.int64)
        c = mcov[sel].sum(0) if sel.any() else np.zeros(ndays, np.int64)
        rows.append(pd.DataFrame({"scope": scope, "tier": tier, "day": _iso_days(days),
                                  "deployed": d, "covered": c,
                                  "share": np.where(d > 0, c / np.maximum(d, 1), np.nan)}))
    _ = nm
    return pd.concat(rows, ignore_index=True), per_model
