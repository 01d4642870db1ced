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

Keys only ever depend on evidence at or before ``at`` and never on later rows, so re-running the
detection with more evidence yields the same keys for the same causes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from .calendar import NS_PER_DAY, ns_values, to_utc_timestamp
from .coverage import deployed_intervals
from .frames import AnalysisInput
from .policy import AnalysisPolicy, normalise_policy
from .staleness import version_positions

CATALOG = ("FM-STALE", "FM-DECAY", "FM-DRIFT-BRITTLE", "FM-SILENT", "FM-OVERHEAD", "FM-DEAD",
           "FM-DECISION", "FM-LABELS", "FM-ERROR")


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


def _opt_int(x) -> int | None:
    return None if x is None or pd.isna(x) else int(x)


def _opt_str(x) -> str | None:
    return None if x is None or (not isinstance(x, str) and pd.isna(x)) else str(x)


def _deployed_at(data: AnalysisInput, at_ns: int) -> pd.DataFrame:
    iv = deployed_intervals(data.deployments)
    on = (iv["start_ns"].to_numpy() <= at_ns) & (at_ns < iv["end_ns"].to_numpy())
    vids = np.unique(iv["version_id"].to_numpy()[on])
    vm = data.versions.set_index("version_id")["model_id"]
    return pd.DataFrame({"version_id": vids, "model_id": vm.reindex(vids).to_numpy()})


def _fidelity(data: AnalysisInput) -> pd.DataFrame:
    c = data.checks
    c = c[(c["kind"].to_numpy() == "fidelity") & c["artifact_id"].notna().to_numpy()]
    return pd.DataFrame({"artifact_id": c["artifact_id"].to_numpy(), "version_id": c["version_id"].to_numpy(np.int64),
                         "check_id": c["check_id"].to_numpy(np.int64), "fin_ns": ns_values(c["finished_at"]),
                         "status": c["status"].to_numpy(), "ev": c["explained_variance"].to_numpy(np.float64),
                         "is_baseline": c["is_baseline"].to_numpy(bool)})


def _stale(data: AnalysisInput, dep: pd.DataFrame, fid: pd.DataFrame, at_day: int, pol: AnalysisPolicy) -> list[Detection]:
    a = data.artifacts
    replaced = set(a["replaces"].dropna().tolist())
    arts = pd.DataFrame({"artifact_id": a["artifact_id"].to_numpy(), "model_id": a["model_id"].to_numpy(),
                         "kind": a["kind"].to_numpy(), "bound": a["bound_version_id"].to_numpy(np.int64)})
    arts = arts[~arts["artifact_id"].isin(replaced)]
    pairs = arts.merge(dep, on="model_id")
    pos = version_positions(data.versions)
    pairs = pairs[pos.reindex(pairs["bound"].to_numpy()).to_numpy() < pos.reindex(pairs["version_id"].to_numpy()).to_numpy()]
    if not len(pairs):
        return []
    f = fid.sort_values(["fin_ns", "check_id"], kind="stable")
    latest = f.drop_duplicates(["artifact_id", "version_id"], keep="last")[["artifact_id", "version_id", "status", "fin_ns", "check_id"]]
    ever_ok = f[f["status"].isin(["pass", "warn"])][["artifact_id", "version_id"]].drop_duplicates()
    ever_ok["ever_ok"] = True
    pairs = pairs.merge(latest, on=["artifact_id", "version_id"], how="left").merge(
        ever_ok, on=["artifact_id", "version_id"], how="left")
    never = pairs["ever_ok"].isna().to_numpy()
    good = pairs["status"].isin(["pass", "warn"]).to_numpy()
    lday = np.floor_divide(pairs["fin_ns"].fillna(0).to_numpy(np.int64), NS_PER_DAY)
    expired = good & (at_day - lday > pol.validity_days)
    out = []
    for r, nv, ex in zip(pairs.itertuples(index=False), never, expired):
        if nv:
            out.append(Detection("FM-STALE", r.model_id, int(r.version_id), r.artifact_id, None,
                                 f"FM-STALE:artifact={r.artifact_id}:version={r.version_id}:never",
                                 f"{r.kind} {r.artifact_id} is bound to older version {r.bound} and was never "
                                 f"validated (pass/warn) on deployed version {r.version_id}"))
        elif ex:
            cid = int(r.check_id)
            out.append(Detection("FM-STALE", r.model_id, int(r.version_id), r.artifact_id, cid,
                                 f"FM-STALE:artifact={r.artifact_id}:version={r.version_id}:expired={cid}",
                                 f"{r.kind} {r.artifact_id} (bound to version {r.bound}): its validation on deployed "
                                 f"version {r.version_id} by check {cid} expired after {pol.validity_days} days"))
    return out


def _silent(data: AnalysisInput, dep: pd.DataFrame, at_day: int, pol: AnalysisPolicy) -> list[Detection]:
    c = data.checks
    last = pd.DataFrame({"version_id": c["version_id"].to_numpy(np.int64), "fin_ns": ns_values(c["finished_at"]),
                         "check_id": c["check_id"].to_numpy(np.int64)})
    last = last.sort_values(["fin_ns", "check_id"], kind="stable").drop_duplicates("version_id", keep="last")
    d = dep.merge(last, on="version_id", how="left")
    out = []
    for r in d.itertuples(index=False):
        if pd.isna(r.check_id):
            out.append(Detection("FM-SILENT", r.model_id, int(r.version_id), None, None,
                                 f"FM-SILENT:version={r.version_id}:last_check=none",
                                 f"deployed version {r.version_id} has no check of any kind"))
            continue
        age = at_day - int(r.fin_ns) // NS_PER_DAY
        if age > pol.validity_days:
            out.append(Detection("FM-SILENT", r.model_id, int(r.version_id), None, None,
                                 f"FM-SILENT:version={r.version_id}:last_check={int(r.check_id)}",
                                 f"deployed version {r.version_id}: last check {int(r.check_id)} finished {age} days "
                                 f"ago (validity {pol.validity_days} days)"))
    return out


def _drift_brittle(data: AnalysisInput, fid: pd.DataFrame, pol: AnalysisPolicy) -> list[Detection]:
    c = data.checks
    dr = c[(c["kind"].to_numpy() == "data_drift") & (c["status"].to_numpy() == "fail")]
    if not len(dr) or not len(fid):
        return []
    drift = pd.DataFrame({"version_id": dr["version_id"].to_numpy(np.int64), "fin_ns": ns_values(dr["finished_at"]),
                          "drift_check": dr["check_id"].to_numpy(np.int64), "drift_ns": ns_values(dr["finished_at"])})
    bound = data.artifacts.set_index("artifact_id")["bound_version_id"]
    bl = fid[fid["is_baseline"].to_numpy() & ~np.isnan(fid["ev"].to_numpy())]
    bl = bl[bl["version_id"].to_numpy() == bound.reindex(bl["artifact_id"].to_numpy()).to_numpy()]
    bl = bl.sort_values(["fin_ns", "check_id"], kind="stable").drop_duplicates("artifact_id", keep="last")
    base = pd.Series(bl["ev"].to_numpy(), index=bl["artifact_id"].to_numpy())
    f = fid[fid["version_id"].isin(drift["version_id"]).to_numpy()].copy()
    f["baseline_ev"] = base.reindex(f["artifact_id"].to_numpy()).to_numpy()
    decayed = (f["baseline_ev"] - f["ev"]).to_numpy() > pol.decay_warn
    f = f[f["status"].isin(["warn", "fail"]).to_numpy() | decayed]
    if not len(f):
        return []
    f = f.sort_values(["fin_ns", "check_id"], kind="stable")
    drift = drift.sort_values(["fin_ns", "drift_check"], kind="stable")
    m = pd.merge_asof(f, drift, on="fin_ns", by="version_id", direction="backward",
                      tolerance=pol.validity_days * NS_PER_DAY, allow_exact_matches=True)
    m = m[m["drift_check"].notna()]
    m = m.sort_values(["fin_ns", "check_id"], kind="stable").drop_duplicates(["drift_check", "artifact_id"], keep="first")
    vm = data.versions.set_index("version_id")["model_id"]
    out = []
    for r in m.itertuples(index=False):
        why = (f"status {r.status}" if r.status in ("warn", "fail") else
               f"explained variance {r.ev:.3f} vs baseline {r.baseline_ev:.3f}")
        out.append(Detection("FM-DRIFT-BRITTLE", vm[r.version_id], int(r.version_id), r.artifact_id, int(r.check_id),
                             f"FM-DRIFT-BRITTLE:drift_check={int(r.drift_check)}:artifact={r.artifact_id}",
                             f"input drift failed (check {int(r.drift_check)}) on version {r.version_id} and fidelity "
                             f"of {r.artifact_id} then degraded (check {int(r.check_id)}: {why})"))
    return out


def _episodes(c: pd.DataFrame, flagged: np.ndarray, code: str, skip_error: bool) -> list[Detection]:
    """First check of each run of consecutive flagged checks per (kind, version, artifact, other)."""
    if not flagged.any():
        return []
    t = pd.DataFrame({"kind": c["kind"].to_numpy(), "version_id": c["version_id"].to_numpy(np.int64),
                      "artifact_id": c["artifact_id"].fillna("").to_numpy(),
                      "other": c["other_artifact_id"].fillna("").to_numpy(),
                      "fin_ns": ns_values(c["finished_at"]), "check_id": c["check_id"].to_numpy(np.int64),
                      "model_id": c["model_id"].to_numpy(), "status": c["status"].to_numpy(), "flag": flagged})
    tk = ["kind", "version_id", "artifact_id", "other"]
    targets = t.loc[t["flag"], tk].drop_duplicates()
    t = t.merge(targets, on=tk, how="inner")
    if skip_error:
        t = t[(t["status"].to_numpy() != "error") | t["flag"].to_numpy()]
    t = t.sort_values(tk + ["fin_ns", "check_id"], kind="stable").reset_index(drop=True)
    same = np.ones(len(t), bool)
    same[0] = False
    for k in tk:
        v = t[k].to_numpy()
        same[1:] &= v[1:] == v[:-1]
    fl = t["flag"].to_numpy()
    prev = np.zeros(len(t), bool)
    prev[1:] = fl[:-1]
    start = fl & ~(prev & same)
    out = []
    for r in t[start].itertuples(index=False):
        art = r.artifact_id or None
        tgt = f"{r.kind} check {r.check_id} on version {r.version_id}" + (f", artifact {art}" if art else "")
        detail = (f"{tgt} could not run (status error)" if code == "FM-ERROR" else f"{tgt} flagged {code}")
        out.append(Detection(code, r.model_id, int(r.version_id), art, int(r.check_id),
                             f"{code}:check={int(r.check_id)}", detail))
    return out


def _check_driven(data: AnalysisInput) -> list[Detection]:
    c = data.checks
    if not len(c):
        return []
    n_flags = c["flags"].map(len).to_numpy()
    out: list[Detection] = []
    if (n_flags > 0).any():
        ex = c.loc[n_flags > 0, ["check_id", "flags"]].explode("flags")
        ex = ex[ex["flags"].isin(CATALOG)]
        for code, ids in ex.groupby("flags")["check_id"]:
            flagged = c["check_id"].isin(ids).to_numpy()
            out += _episodes(c, flagged, code, skip_error=True)
    out += _episodes(c, c["status"].to_numpy() == "error", "FM-ERROR", skip_error=False)
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
    fid = _fidelity(data)
    found = (_stale(data, dep, fid, at_day, pol) + _silent(data, dep, at_day, pol)
             + _drift_brittle(data, fid, pol) + _check_driven(data))
    uniq = {d.cause_key: d for d in found}
    return sorted(uniq.values(), key=lambda d: (d.code, d.cause_key))
