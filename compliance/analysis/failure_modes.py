"""Failure-mode detection (DESIGN §6) as a pure function of the evidence known at a time.

``detect_failure_modes(inp, at)`` returns :class:`Detection` rows; the service opens an occurrence
per new ``cause_key`` and ignores keys it has already recorded, so the key must name the *cause*,
not the run that saw it. What counts as the same cause (a duplicate), rule by rule:

* ``FM-STALE`` — a version deployed at ``at`` (a deploy in force at that instant) and an artifact of
  its model, bound to an OLDER version (version order: trained_at, else recorded_at; recorded_at;
  version_id), not replaced by a later artifact (``replaces``), that was never validated (no
  pass/warn fidelity check on the deployed version finished <= at) or whose latest fidelity check
  on it is pass/warn but older than ``validity_days`` (expired). A latest fail/error after an
  earlier pass is *broken*, not stale (and is reported through FM-DECAY / FM-ERROR).
  Key ``FM-STALE:artifact=<a>:version=<v>:never`` or ``...:expired=<check id>``: re-validating and
  letting the new validation expire again is a new cause; seeing the same gap again is not.
* ``FM-SILENT`` — a version deployed at ``at`` with no check of any kind whose finished_at UTC date is
  within ``validity_days`` days of at's date. Key ``FM-SILENT:version=<v>:last_check=<id|none>``:
  the silence since a given last check is one cause.
* ``FM-DRIFT-BRITTLE`` — a data_drift check with status fail on a version, followed (finished at or
  after it, at most ``validity_days`` later) by a fidelity check of an artifact on that version whose
  status is warn/fail or whose explained variance is more than ``decay_warn`` (0.1) below the
  artifact's baseline EV (latest baseline check with an EV on its bound version). A fidelity check is
  attributed to the latest failing drift check before it. Key
  ``FM-DRIFT-BRITTLE:drift_check=<d>:artifact=<a>``; ``check_id`` is the earliest such fidelity check.
* check-driven codes — a check whose ``flags`` holds a catalog code opens that code. Consecutive
  flagged checks of the same kind on the same target (version, artifact, other artifact) are ONE
  episode: re-running a failing check daily does not open a new occurrence every day. The episode
  ends when a later check of that kind on that target comes back without the flag (a check with
  status ``error`` neither continues nor ends it: it proves nothing). Key ``<CODE>:check=<id>`` with
  the first check of the episode.
* ``FM-ERROR`` — a check with status ``error``; consecutive errors of the same kind on the same
  target are one episode, ended by a check on that target that ran. Key ``FM-ERROR:check=<id>``.
* ``FM-DRIFT-BRITTLE`` (v2, second rule) — an ``activation_drift`` check with status ``fail``: the
  artifact's feature densities drifted. Episodes as for check-driven codes; key
  ``FM-DRIFT-BRITTLE:check=<id>``.
* ``FM-UNVALIDATED`` (v2) — a deploy of a version of an in-scope model (its tier requires some
  group) at an instant when some required group had no artifact valid for that version (the
  definition of *valid* of DESIGN §4 read at that instant: latest fidelity check on the version
  finished by then, pass or accepted warn, within ``validity_days``; a set only when every member
  is). Key ``FM-UNVALIDATED:version=<v>:deployed=<ISO instant>``.
* ``FM-SILENT`` (v2) only concerns in-scope models: a tier that requires nothing is not silent.

Keys only ever depend on evidence at or before ``at`` and never on later rows, so re-running the
detection with more evidence yields the same keys for the same causes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from .calendar import NS_PER_DAY, ns_values, to_utc_timestamp
from .coverage import STATUS_NAMES, deployed_intervals, fidelity_arrays
from .frames import AnalysisInput
from .policy import AnalysisPolicy, normalise_policy
from .staleness import last_per_key, lookup_sorted, version_positions

CATALOG = ("FM-STALE", "FM-DECAY", "FM-DRIFT-BRITTLE", "FM-SILENT", "FM-OVERHEAD", "FM-DEAD",
           "FM-DECISION", "FM-LABELS", "FM-ERROR", "FM-PROTECTED", "FM-UNVALIDATED", "FM-MISSED")


@dataclass(frozen=True)
class Detection:
    code: str
    model_id: str
    version_id: int | None
    artifact_id: str | None
    check_id: int | None
    cause_key: str
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def _deployed_at(data: AnalysisInput, at_ns: int) -> pd.DataFrame:
    iv = deployed_intervals(data.deployments)
    on = (iv["start_ns"].to_numpy() <= at_ns) & (at_ns < iv["end_ns"].to_numpy())
    vids = np.unique(iv["version_id"].to_numpy()[on])
    vm = data.versions.set_index("version_id")["model_id"]
    return pd.DataFrame({"version_id": vids, "model_id": vm.reindex(vids).to_numpy()})


def _codes(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int codes with -1 for missing, categories) of a string/categorical column."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(np.int64), np.asarray(s.cat.categories, dtype=object)
    codes, cats = pd.factorize(s)
    return codes.astype(np.int64), np.asarray(cats, dtype=object)


def _stale(data: AnalysisInput, dep: pd.DataFrame, at_day: int, pol: AnalysisPolicy) -> list[Detection]:
    a = data.artifacts
    if not len(a) or not len(dep):
        return []
    replaced = a["artifact_id"].isin(a["replaces"].dropna()).to_numpy(dtype=bool)
    models = pd.Index(data.models["model_id"])
    a_model = models.get_indexer(a["model_id"])
    d_model = models.get_indexer(dep["model_id"])
    d_vid = dep["version_id"].to_numpy(np.int64)
    order = np.argsort(d_model, kind="stable")
    d_model, d_vid = d_model[order], d_vid[order]
    arts = np.flatnonzero(~replaced)
    lo = np.searchsorted(d_model, a_model[arts], "left")
    hi = np.searchsorted(d_model, a_model[arts], "right")
    cnt = hi - lo
    r_art = np.repeat(arts, cnt)
    r_vid = d_vid[np.repeat(lo, cnt) + (np.arange(len(r_art)) - np.repeat(np.cumsum(cnt) - cnt, cnt))]
    a_bound = a["bound_version_id"].to_numpy(np.int64)
    pos = version_positions(data.versions)
    older = pos.reindex(a_bound[r_art]).to_numpy() < pos.reindex(r_vid).to_numpy()
    r_art, r_vid = r_art[older], r_vid[older]
    if not len(r_art):
        return []
    f = fidelity_arrays(data, pol.warn_needs_acceptance)
    vindex = pd.Index(data.versions["version_id"].to_numpy(np.int64))
    nvr = len(vindex) + 1
    fkey = f["acode"] * nvr + vindex.get_indexer(f["version_id"])
    want = r_art * nvr + vindex.get_indexer(r_vid)
    every = np.ones(len(fkey), bool)
    k_all, i_all = last_per_key(fkey, every)
    k_ok, i_ok = last_per_key(fkey, f["good"])
    latest = lookup_sorted(k_all, i_all, want)
    ever_ok = lookup_sorted(k_ok, i_ok, want) >= 0
    has = latest >= 0
    l_good = np.where(has, f["good"][np.maximum(latest, 0)], False) if len(f["good"]) else np.zeros(len(latest), bool)
    l_day = np.where(has, f["day"][np.maximum(latest, 0)], 0) if len(f["day"]) else np.zeros(len(latest), np.int64)
    l_cid = np.where(has, f["check_id"][np.maximum(latest, 0)], 0) if len(f["check_id"]) else np.zeros(len(latest), np.int64)
    expired = l_good & (at_day - l_day > pol.validity_days)
    ids = a["artifact_id"].to_numpy(object)
    kinds = a["kind"].to_numpy(object)
    mids = a["model_id"].to_numpy(object)
    out = []
    for i in np.flatnonzero(~ever_ok | expired):
        j, v = r_art[i], int(r_vid[i])
        aid, b = ids[j], int(a_bound[j])
        if not ever_ok[i]:
            out.append(Detection("FM-STALE", mids[j], v, aid, None, f"FM-STALE:artifact={aid}:version={v}:never",
                                 f"{kinds[j]} {aid} is bound to older version {b} and was never "
                                 f"validated (pass/warn) on deployed version {v}"))
        else:
            cid = int(l_cid[i])
            out.append(Detection("FM-STALE", mids[j], v, aid, cid, f"FM-STALE:artifact={aid}:version={v}:expired={cid}",
                                 f"{kinds[j]} {aid} (bound to version {b}): its validation on deployed "
                                 f"version {v} by check {cid} expired after {pol.validity_days} days"))
    return out


def _silent(data: AnalysisInput, dep: pd.DataFrame, at_day: int, pol: AnalysisPolicy) -> list[Detection]:
    if not len(dep):
        return []
    c = data.checks
    vid = c["version_id"].to_numpy(np.int64)
    fin = ns_values(c["finished_at"])
    cid = c["check_id"].to_numpy(np.int64)
    o = np.lexsort((cid, fin, vid))
    k, i = last_per_key(vid[o], np.ones(len(o), bool))
    j = lookup_sorted(k, o[i] if len(i) else i, dep["version_id"].to_numpy(np.int64))
    out = []
    for (v, m), jj in zip(zip(dep["version_id"].to_numpy(np.int64), dep["model_id"].to_numpy(object)), j):
        v = int(v)
        if jj < 0:
            out.append(Detection("FM-SILENT", m, v, None, None, f"FM-SILENT:version={v}:last_check=none",
                                 f"deployed version {v} has no check of any kind"))
            continue
        age = at_day - int(fin[jj]) // NS_PER_DAY
        if age > pol.validity_days:
            out.append(Detection("FM-SILENT", m, v, None, None, f"FM-SILENT:version={v}:last_check={int(cid[jj])}",
                                 f"deployed version {v}: last check {int(cid[jj])} finished {age} days "
                                 f"ago (validity {pol.validity_days} days)"))
    return out


def _drift_brittle(data: AnalysisInput, pol: AnalysisPolicy) -> list[Detection]:
    c = data.checks
    dmask = ((c["kind"] == "data_drift") & (c["status"] == "fail")).to_numpy(dtype=bool, na_value=False)
    f = fidelity_arrays(data, pol.warn_needs_acceptance)
    if not dmask.any() or not len(f["acode"]):
        return []
    drift = pd.DataFrame({"version_id": c["version_id"].to_numpy(np.int64)[dmask],
                          "fin_ns": ns_values(c["finished_at"])[dmask],
                          "drift_check": c["check_id"].to_numpy(np.int64)[dmask]})
    a_bound = data.artifacts["bound_version_id"].to_numpy(np.int64)
    bl_mask = f["is_baseline"] & ~np.isnan(f["ev"]) & (f["version_id"] == a_bound[f["acode"]])
    k_bl, i_bl = last_per_key(f["acode"], bl_mask)
    j = lookup_sorted(k_bl, i_bl, f["acode"])
    base = np.where(j >= 0, f["ev"][np.maximum(j, 0)], np.nan)
    warn_fail = (f["status"] == 1) | (f["status"] == 2)
    with np.errstate(invalid="ignore"):
        decayed = (base - f["ev"]) > pol.decay_warn
    m = (warn_fail | decayed) & np.isin(f["version_id"], drift["version_id"].to_numpy())
    if not m.any():
        return []
    fd = pd.DataFrame({"version_id": f["version_id"][m], "fin_ns": f["fin_ns"][m], "check_id": f["check_id"][m],
                       "acode": f["acode"][m], "status": f["status"][m], "ev": f["ev"][m], "base": base[m]})
    fd = fd.sort_values(["fin_ns", "check_id"], kind="stable")
    drift = drift.sort_values(["fin_ns", "drift_check"], kind="stable")
    mm = pd.merge_asof(fd, drift, on="fin_ns", by="version_id", direction="backward",
                       tolerance=pol.validity_days * int(NS_PER_DAY), allow_exact_matches=True)
    mm = mm[mm["drift_check"].notna()]
    mm = mm.drop_duplicates(["drift_check", "acode"], keep="first")
    ids = data.artifacts["artifact_id"].to_numpy(object)
    vm = pd.Series(data.versions["model_id"].to_numpy(object), index=data.versions["version_id"].to_numpy(np.int64))
    models = vm.reindex(mm["version_id"].to_numpy()).to_numpy(object)
    out = []
    for r, model in zip(mm.itertuples(index=False), models):
        aid, st = ids[r.acode], STATUS_NAMES[r.status]
        why = f"status {st}" if st in ("warn", "fail") else f"explained variance {r.ev:.3f} vs baseline {r.base:.3f}"
        out.append(Detection("FM-DRIFT-BRITTLE", model, int(r.version_id), aid, int(r.check_id),
                             f"FM-DRIFT-BRITTLE:drift_check={int(r.drift_check)}:artifact={aid}",
                             f"input drift failed (check {int(r.drift_check)}) on version {r.version_id} and fidelity "
                             f"of {aid} then degraded (check {int(r.check_id)}: {why})"))
    return out


def _episodes(c: pd.DataFrame, target: np.ndarray, flagged: np.ndarray, code: str, skip_error: bool,
              art_names: np.ndarray) -> list[Detection]:
    """First check of each run of consecutive flagged checks per target (kind, version, artifact, other)."""
    if not flagged.any():
        return []
    rows = np.flatnonzero(np.isin(target, np.unique(target[flagged])))
    if skip_error:
        err = (c["status"] == "error").to_numpy(dtype=bool, na_value=False)
        rows = rows[~err[rows] | flagged[rows]]
    fin = ns_values(c["finished_at"])[rows]
    cid = c["check_id"].to_numpy(np.int64)[rows]
    o = np.lexsort((cid, fin, target[rows]))
    rows = rows[o]
    t, fl = target[rows], flagged[rows]
    start = fl.copy()
    start[1:] &= ~(fl[:-1] & (t[1:] == t[:-1]))
    picks = rows[start]
    kinds = c["kind"].to_numpy(object)[picks]
    vids = c["version_id"].to_numpy(np.int64)[picks]
    mids = c["model_id"].to_numpy(object)[picks]
    cids = c["check_id"].to_numpy(np.int64)[picks]
    arts = art_names[picks]
    out = []
    for kind, v, m, cid_, art in zip(kinds, vids, mids, cids, arts):
        tgt = f"{kind} check {cid_} on version {v}" + (f", artifact {art}" if art is not None else "")
        detail = f"{tgt} could not run (status error)" if code == "FM-ERROR" else f"{tgt} flagged {code}"
        out.append(Detection(code, m, int(v), art, int(cid_), f"{code}:check={int(cid_)}", detail))
    return out


def _check_driven(data: AnalysisInput) -> list[Detection]:
    c = data.checks
    if not len(c):
        return []
    kc, _ = _codes(c["kind"])
    ac, acats = _codes(c["artifact_id"])
    oc, _ = _codes(c["other_artifact_id"])
    vc = pd.Index(data.versions["version_id"].to_numpy(np.int64)).get_indexer(c["version_id"].to_numpy(np.int64))
    na, no = len(acats) + 1, int(oc.max()) + 2 if len(oc) else 1
    target = ((vc * 8 + kc) * na + (ac + 1)) * no + (oc + 1)
    art_names = np.where(ac >= 0, np.r_[acats, None][ac], None) if len(ac) else np.array([], object)
    flags = c["flags"].to_numpy(object)
    has = np.fromiter((len(x) > 0 for x in flags), bool, len(flags))
    out: list[Detection] = []
    if has.any():
        ex = pd.DataFrame({"row": np.flatnonzero(has), "flag": flags[has]}).explode("flag")
        ex = ex[ex["flag"].isin(CATALOG)]
        for code, rws in ex.groupby("flag")["row"]:
            flagged = np.zeros(len(c), bool)
            flagged[rws.to_numpy(np.int64)] = True
            out += _episodes(c, target, flagged, code, True, art_names)
    err = (c["status"] == "error").to_numpy(dtype=bool, na_value=False)
    out += _episodes(c, target, err, "FM-ERROR", False, art_names)
    act = ((c["kind"] == "activation_drift") & (c["status"] == "fail")).to_numpy(dtype=bool, na_value=False)
    already = np.fromiter(("FM-DRIFT-BRITTLE" in x for x in flags), bool, len(flags))
    out += _episodes(c, target, act & ~already, "FM-DRIFT-BRITTLE", True, art_names)
    return out


def _unvalidated(data: AnalysisInput, at_ns: int, pol: AnalysisPolicy) -> list[Detection]:
    """Deploys of in-scope versions at an instant some required group had no valid artifact."""
    iv = deployed_intervals(data.deployments)
    iv = iv[iv["start_ns"].to_numpy() <= at_ns]
    if not len(iv):
        return []
    vm = data.versions.set_index("version_id")["model_id"]
    tiers = data.models.set_index("model_id")["tier"]
    dep = pd.DataFrame({"version_id": iv["version_id"].to_numpy(np.int64), "t_ns": iv["start_ns"].to_numpy(np.int64)})
    dep["model_id"] = vm.reindex(dep["version_id"].to_numpy()).to_numpy(object)
    dep["tier"] = tiers.reindex(dep["model_id"].to_numpy()).to_numpy(np.int64)
    dep = dep[[len(pol.groups(int(t))) > 0 for t in dep["tier"]]].reset_index(drop=True)
    if not len(dep):
        return []
    dep["dep_idx"] = np.arange(len(dep))
    a = data.artifacts
    arts = pd.DataFrame({"acode": np.arange(len(a)), "model_id": a["model_id"].to_numpy(object),
                         "kind": a["kind"].astype(str).to_numpy(object),
                         "unit": np.where(a["set_id"].isna().to_numpy(), a["artifact_id"].to_numpy(object),
                                          a["set_id"].to_numpy(object)) if len(a) else np.array([], object),
                         "a_rec": ns_values(a["recorded_at"])})
    size = arts.groupby("unit")["acode"].transform("size") if len(arts) else pd.Series([], dtype=np.int64)
    arts["size"] = size
    f = fidelity_arrays(data, pol.warn_needs_acceptance)
    fr = pd.DataFrame({"acode": f["acode"], "version_id": f["version_id"], "fin_ns": f["fin_ns"],
                       "passed": f["passed"], "warn": f["warn"], "acc_ns": f["acc_ns"]}).sort_values("fin_ns")
    rows = []
    for g_tier in sorted(set(dep["tier"].tolist())):
        for gi, group in enumerate(pol.groups(int(g_tier))):
            d = dep[dep["tier"] == g_tier]
            cand = d.merge(arts[arts["kind"].isin(group)], on="model_id", how="left")
            cand["group"] = pol.group_name(group)
            rows.append(cand)
    cand = pd.concat(rows, ignore_index=True)
    has = cand["acode"].notna()
    cand["valid"] = False
    if has.any():
        c2 = cand[has].copy()
        c2["acode"] = c2["acode"].astype(np.int64)
        c2 = c2.sort_values("t_ns")
        m = pd.merge_asof(c2, fr, left_on="t_ns", right_on="fin_ns", by=["acode", "version_id"], direction="backward")
        with np.errstate(invalid="ignore"):
            day_gap = m["t_ns"] // NS_PER_DAY - m["fin_ns"] // NS_PER_DAY
            ok = m["fin_ns"].notna() & (day_gap <= pol.validity_days) & (m["a_rec"] <= m["t_ns"])
            good = (m["passed"] == True) | ((m["warn"] == True) & ((not pol.warn_needs_acceptance)  # noqa: E712
                                                                 | (m["acc_ns"] <= m["t_ns"])))
        m["valid"] = (ok & good).to_numpy(bool)
        unit_ok = m.groupby(["dep_idx", "group", "unit"]).agg(n=("valid", "sum"), size=("size", "first"))
        unit_ok = (unit_ok["n"] >= unit_ok["size"]).groupby(level=[0, 1]).any()
    else:
        unit_ok = pd.Series([], dtype=bool)
    out = []
    for r in dep.itertuples(index=False):
        missing = [pol.group_name(g) for g in pol.groups(int(r.tier))
                   if not bool(unit_ok.get((r.dep_idx, pol.group_name(g)), False))]
        if not missing:
            continue
        when = pd.Timestamp(int(r.t_ns), tz="UTC").isoformat()
        out.append(Detection("FM-UNVALIDATED", r.model_id, int(r.version_id), None, None,
                             f"FM-UNVALIDATED:version={int(r.version_id)}:deployed={when}",
                             f"version {int(r.version_id)} went live at {when} with no valid evidence for "
                             f"{', '.join(missing)}"))
    return out


def detect_failure_modes(inp: AnalysisInput, at: datetime | str, policy: dict | AnalysisPolicy | None = None
                         ) -> list[Detection]:
    """Every failure mode the evidence recorded at or before ``at`` reveals (see the module
    docstring), sorted by (code, cause_key); cause keys are unique."""
    pol = normalise_policy(policy)
    t = to_utc_timestamp(at)
    data = inp.as_of(t)
    at_ns = int(t.value)
    at_day = at_ns // NS_PER_DAY
    dep = _deployed_at(data, at_ns)
    tiers = data.models.set_index("model_id")["tier"]
    required = dep["model_id"].map(lambda m: len(pol.groups(int(tiers[m]))) > 0).to_numpy(bool) if len(dep) \
        else np.array([], bool)
    found = (_stale(data, dep, at_day, pol) + _silent(data, dep[required].reset_index(drop=True), at_day, pol)
             + _drift_brittle(data, pol) + _check_driven(data) + _unvalidated(data, at_ns, pol))
    uniq = {d.cause_key: d for d in found}
    return sorted(uniq.values(), key=lambda d: (d.code, d.cause_key))
