"""Property tests over random event histories.

1. As-of: the figures as of T computed from the full history equal those computed from only the
   rows recorded at or before T (built independently, by filtering the event lists), for
   analyse_quarter and detect_failure_modes — evidence recorded after T never changes them.
2. The vectorised day grid equals a brute-force, day-by-day reading of DESIGN §4.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.analysis.calendar import day_number, quarter_of
from compliance.analysis.coverage import BROKEN, FRESH, MISSING, PENDING, STALE, build_grid
from compliance.analysis.failure_modes import detect_failure_modes
from compliance.analysis.frames import AnalysisInput
from compliance.analysis.policy import normalise_policy
from compliance.analysis.quarter import analyse_quarter

START = datetime(2025, 10, 1, tzinfo=timezone.utc)
HORIZON_H = 24 * 220
KINDS = ["sae", "transcoder", "attribution_baseline", "probe"]
STATUSES = ["pass", "pass", "warn", "fail", "error"]
CHECK_KINDS = ["fidelity", "fidelity", "fidelity", "data_drift", "overhead"]
POLICY = {"validity_days": 30}


def at(h: int) -> datetime:
    return START + timedelta(hours=h)


@st.composite
def histories(draw, dense=False):
    n_models = draw(st.integers(1, 3))
    models = [dict(model_id=f"m{i}", tier=draw(st.integers(1, 3)), owner="o") for i in range(n_models)]
    versions = []
    for i in range(n_models):
        for j in range(draw(st.integers(1, 3))):
            h = draw(st.integers(0, HORIZON_H // 2))
            versions.append(dict(version_id=len(versions) + 1, model_id=f"m{i}", label=f"v{j}",
                                 trained_at=at(h) if draw(st.booleans()) else None, recorded_at=at(h)))
    deployments = []
    for v in versions:
        hv = int((v["recorded_at"] - START).total_seconds() // 3600)
        for _ in range(draw(st.integers(0, 4))):
            h = draw(st.integers(hv, HORIZON_H))
            deployments.append(dict(version_id=v["version_id"], action=draw(st.sampled_from(["deploy", "retire"])),
                                    effective_at=at(h), recorded_at=at(h + draw(st.integers(0, 48)))))
    artifacts = []
    for k in range(draw(st.integers(2 if dense else 0, 6))):
        v = draw(st.sampled_from(versions))
        hv = int((v["recorded_at"] - START).total_seconds() // 3600)
        h = draw(st.integers(hv, HORIZON_H))
        artifacts.append(dict(artifact_id=f"a{k}", model_id=v["model_id"], kind=draw(st.sampled_from(KINDS)),
                              bound_version_id=v["version_id"], recorded_at=at(h), set_id=None))
    # some artifacts form sets: members of one model and kind, judged together (methodology v2)
    if artifacts and draw(st.booleans()):
        a0 = artifacts[0]
        mates = [a for a in artifacts if a["model_id"] == a0["model_id"] and a["kind"] == a0["kind"]]
        if len(mates) >= 2:
            for a in mates:
                a["set_id"] = "set0"
    checks = []
    for k in range(draw(st.integers(15 if dense else 0, 50)) if artifacts else 0):
        a = draw(st.sampled_from(artifacts))
        vs = [v for v in versions if v["model_id"] == a["model_id"]]
        v = draw(st.sampled_from(vs))
        ha = int((max(a["recorded_at"], v["recorded_at"]) - START).total_seconds() // 3600)
        h = draw(st.integers(ha, HORIZON_H))
        kind = "fidelity" if dense else draw(st.sampled_from(CHECK_KINDS))
        flags = draw(st.sampled_from([(), (), ("FM-DECAY",), ("FM-DEAD", "FM-DECAY")]))
        acc = draw(st.sampled_from([None, None, 0, 24, 24 * 20]))
        checks.append(dict(accepted_at=None if acc is None else at(h + acc),check_id=k + 1, kind=kind, version_id=v["version_id"], model_id=v["model_id"],
                           artifact_id=a["artifact_id"] if kind != "data_drift" else None,
                           status=draw(st.sampled_from(STATUSES)), finished_at=at(h),
                           recorded_at=at(h + draw(st.integers(0, 30))),
                           explained_variance=draw(st.floats(0.3, 1.0)),
                           is_baseline=v["version_id"] == a["bound_version_id"], flags=flags))
    volumes = []
    for v in versions[:2]:
        for d in range(draw(st.integers(0, 40))):
            day = (START + timedelta(days=draw(st.integers(0, HORIZON_H // 24)))).date()
            volumes.append(dict(version_id=v["version_id"], day=day, volume=float(draw(st.integers(0, 100))),
                                recorded_at=datetime(day.year, day.month, day.day, 23, tzinfo=timezone.utc)))
    seen = set()
    volumes = [r for r in volumes if not ((r["version_id"], r["day"]) in seen or seen.add((r["version_id"], r["day"])))]
    t = at(draw(st.integers(24 * 60, HORIZON_H)))
    return dict(models=models, versions=versions, deployments=deployments, artifacts=artifacts,
                checks=checks, volumes=volumes), t


def truncate(h: dict, t: datetime) -> dict:
    out = dict(h)
    out["versions"] = [r for r in h["versions"] if r["recorded_at"] <= t]
    out["deployments"] = [r for r in h["deployments"] if r["recorded_at"] <= t]
    out["artifacts"] = [r for r in h["artifacts"] if r["recorded_at"] <= t]
    out["checks"] = [dict(r, accepted_at=r["accepted_at"] if r.get("accepted_at") and r["accepted_at"] <= t else None)
                     for r in h["checks"] if r["recorded_at"] <= t and r["finished_at"] <= t]
    kept = {r["version_id"] for r in out["versions"]}
    out["volumes"] = [r for r in h["volumes"] if r["recorded_at"] <= t and r["version_id"] in kept]
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_as_of_ignores_later_evidence(hist):
    h, t = hist
    q = quarter_of(t)
    full = analyse_quarter(AnalysisInput.from_records(**h), q, t, POLICY).to_dict()
    cut = analyse_quarter(AnalysisInput.from_records(**truncate(h, t)), q, t, POLICY).to_dict()
    assert full == cut
    helper = analyse_quarter(AnalysisInput.from_records(**h).as_of(t), q, t, POLICY).to_dict()
    assert helper == full
    fm_full = detect_failure_modes(AnalysisInput.from_records(**h), t, POLICY)
    fm_cut = detect_failure_modes(AnalysisInput.from_records(**truncate(h, t)), t, POLICY)
    assert fm_full == fm_cut


def _intervals(deps):
    out, state, start = [], False, None
    for r in sorted(deps, key=lambda r: (r["effective_at"], r["recorded_at"])):
        if r["action"] == "deploy" and not state:
            state, start = True, r["effective_at"]
        elif r["action"] == "retire" and state:
            state = False
            out.append((start, r["effective_at"]))
    if state:
        out.append((start, datetime(9999, 1, 1, tzinfo=timezone.utc)))
    return out


def brute_force(h: dict, first: date, last: date, validity: int):
    """{(version_id, group, day): state} and {(version_id, day): covered} read straight off DESIGN §4."""
    pol = normalise_policy(POLICY)
    tier = {m["model_id"]: m["tier"] for m in h["models"]}
    states, covered = {}, {}
    d = first
    while d <= last:
        d0 = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        d1 = d0 + timedelta(days=1)
        for v in h["versions"]:
            ivs = _intervals([r for r in h["deployments"] if r["version_id"] == v["version_id"]])
            if not any(s < d1 and e > d0 and e > s for s, e in ivs):
                continue
            ok = True
            for gi, group in enumerate(pol.groups(tier[v["model_id"]])):
                arts = [a for a in h["artifacts"] if a["model_id"] == v["model_id"] and a["kind"] in group
                        and a["recorded_at"].date() <= d]
                units: dict = {}
                for a in arts:  # a set is one unit with all its members; an artifact alone is its own
                    units.setdefault(a.get("set_id") or a["artifact_id"], []).append(a)
                set_size = {}
                for a in h["artifacts"]:
                    if a.get("set_id"):
                        set_size[a["set_id"]] = set_size.get(a["set_id"], 0) + 1
                fresh = pending = broken = False
                for key, members in units.items():
                    own = []
                    for a in members:
                        cs = [c for c in h["checks"] if c["kind"] == "fidelity" and c["artifact_id"] == a["artifact_id"]
                              and c["version_id"] == v["version_id"] and c["finished_at"].date() <= d]
                        if not cs:
                            own.append(None)
                            continue
                        c = max(cs, key=lambda c: (c["finished_at"], c["check_id"]))
                        within = (d - c["finished_at"].date()).days <= validity
                        acc = c.get("accepted_at")
                        if c["status"] == "pass" and within:
                            own.append("valid")
                        elif c["status"] == "warn" and within:
                            own.append("valid" if acc is not None and acc.date() <= d else "pending")
                        elif c["status"] in ("fail", "error"):
                            own.append("broken")
                        else:
                            own.append(None)
                    size = set_size.get(key, 1)
                    n_valid, n_pend = own.count("valid"), own.count("pending")
                    if n_valid >= size:
                        fresh = True
                    elif n_valid + n_pend >= size:
                        pending = True
                    if "broken" in own:
                        broken = True
                s = FRESH if fresh else PENDING if pending else BROKEN if broken else STALE if arts else MISSING
                states[(v["version_id"], gi, d)] = s
                ok &= s == FRESH
            covered[(v["version_id"], d)] = ok
        d += timedelta(days=1)
    return states, covered


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(dense=True))
def test_grid_matches_brute_force(hist):
    h, t = hist
    h = truncate(h, t)
    inp = AnalysisInput.from_records(**h)
    first, last = t.date() - timedelta(days=50), t.date()
    grid = build_grid(inp, normalise_policy(POLICY), day_number(first), day_number(last))
    states, covered = brute_force(h, first, last, POLICY["validity_days"])
    got_cov = {}
    for i, vid in enumerate(grid.ver_ids):
        for j in range(grid.nd):
            if grid.deployed[i, j]:
                got_cov[(int(vid), first + timedelta(days=j))] = bool(grid.covered[i, j])
    assert got_cov == covered
    got_st = {}
    for s, (vr, g) in enumerate(zip(grid.slot_ver, grid.slot_group)):
        for j in range(grid.nd):
            if grid.slot_state[s, j]:
                got_st[(int(grid.ver_ids[vr]), int(g), first + timedelta(days=j))] = int(grid.slot_state[s, j])
    assert got_st == states
