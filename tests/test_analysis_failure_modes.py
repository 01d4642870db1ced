"""Each failure-mode rule fires on a minimal fixture, and is idempotent (same cause, same key)."""

from __future__ import annotations

from compliance.analysis.failure_modes import detect_failure_modes
from compliance.analysis.frames import AnalysisInput


def T(s: str) -> str:
    return s + "+00:00" if "T" in s else s + "T00:00:00+00:00"


MODELS = [dict(model_id="M", tier=2, owner="o")]
VERSIONS = [dict(version_id=1, model_id="M", label="v1", trained_at=T("2026-01-01"), recorded_at=T("2026-01-01")),
            dict(version_id=2, model_id="M", label="v2", trained_at=T("2026-03-01"), recorded_at=T("2026-03-01"))]
DEPLOY_V2 = [dict(version_id=1, action="deploy", effective_at=T("2026-01-02")),
             dict(version_id=1, action="retire", effective_at=T("2026-03-02")),
             dict(version_id=2, action="deploy", effective_at=T("2026-03-02"))]
SAE = dict(artifact_id="s", model_id="M", kind="sae", bound_version_id=1, recorded_at=T("2026-01-05"))


def chk(cid, version, status, when, kind="fidelity", artifact="s", **kw):
    return dict(check_id=cid, kind=kind, version_id=version, artifact_id=artifact, status=status,
                finished_at=T(when), **kw)


def inp(checks=(), artifacts=(SAE,), deployments=DEPLOY_V2):
    return AnalysisInput.from_records(models=MODELS, versions=VERSIONS, deployments=deployments,
                                      artifacts=list(artifacts), checks=list(checks))


def codes(dets, code):
    return [d for d in dets if d.code == code]


def test_stale_never_validated_and_expired():
    base = [chk(1, 1, "pass", "2026-01-06", is_baseline=True, explained_variance=0.9)]
    d = codes(detect_failure_modes(inp(base), T("2026-03-10")), "FM-STALE")
    assert [x.cause_key for x in d] == ["FM-STALE:artifact=s:version=2:never"]
    assert d[0].version_id == 2 and d[0].artifact_id == "s" and d[0].model_id == "M"
    # validated on v2, not yet expired: nothing; expired 91 days later: a new cause
    ev = base + [chk(2, 2, "pass", "2026-03-10T12:00:00")]
    assert codes(detect_failure_modes(inp(ev), T("2026-04-01")), "FM-STALE") == []
    d = codes(detect_failure_modes(inp(ev), T("2026-06-09")), "FM-STALE")  # Mar 10 + 91 days
    assert [x.cause_key for x in d] == ["FM-STALE:artifact=s:version=2:expired=2"] and d[0].check_id == 2
    assert codes(detect_failure_modes(inp(ev), T("2026-06-08")), "FM-STALE") == []  # day 90 still valid
    # a replaced artifact is not reported; neither is one bound to the deployed version
    new = dict(artifact_id="s2", model_id="M", kind="sae", bound_version_id=2, recorded_at=T("2026-03-05"),
               replaces="s")
    assert codes(detect_failure_modes(inp(base, artifacts=[SAE, new]), T("2026-03-10")), "FM-STALE") == []


def test_silent():
    dets = detect_failure_modes(inp([]), T("2026-03-10"))
    assert [x.cause_key for x in codes(dets, "FM-SILENT")] == ["FM-SILENT:version=2:last_check=none"]
    ev = [chk(7, 2, "pass", "2026-03-05", kind="overhead", artifact=None)]
    assert codes(detect_failure_modes(inp(ev), T("2026-06-03")), "FM-SILENT") == []  # 90 days
    d = codes(detect_failure_modes(inp(ev), T("2026-06-04")), "FM-SILENT")
    assert [x.cause_key for x in d] == ["FM-SILENT:version=2:last_check=7"]
    # retired versions are not silent
    assert all(x.version_id == 2 for x in codes(detect_failure_modes(inp(ev), T("2026-12-01")), "FM-SILENT"))


def test_drift_brittle_status_and_decay():
    base = [chk(1, 1, "pass", "2026-01-06", is_baseline=True, explained_variance=0.9),
            chk(2, 2, "pass", "2026-03-03", explained_variance=0.88),
            chk(3, 2, "fail", "2026-04-01", kind="data_drift", artifact=None)]
    # a passing fidelity check after the drift, EV decayed by 0.15 > 0.1 -> fires
    ev = base + [chk(4, 2, "pass", "2026-04-02", explained_variance=0.75),
                 chk(5, 2, "warn", "2026-04-03", explained_variance=0.70)]
    d = codes(detect_failure_modes(inp(ev), T("2026-04-10")), "FM-DRIFT-BRITTLE")
    assert [(x.cause_key, x.check_id) for x in d] == [("FM-DRIFT-BRITTLE:drift_check=3:artifact=s", 4)]
    # fidelity before the drift, or outside the validity window, or healthy: nothing
    ok = base + [chk(4, 2, "pass", "2026-04-02", explained_variance=0.85),
                 chk(5, 2, "fail", "2026-07-15", explained_variance=0.3)]
    assert codes(detect_failure_modes(inp(ok), T("2026-08-01")), "FM-DRIFT-BRITTLE") == []
    # the drift passing: nothing
    passed = [dict(c, status="pass") if c["check_id"] == 3 else c for c in ev]
    assert codes(detect_failure_modes(inp(passed), T("2026-04-10")), "FM-DRIFT-BRITTLE") == []


def test_check_flags_are_episodes():
    ev = [chk(1, 2, "warn", "2026-03-03", flags=("FM-DECAY",)),
          chk(2, 2, "warn", "2026-03-04", flags=("FM-DECAY", "FM-DEAD")),
          chk(3, 2, "error", "2026-03-05"),                       # proves nothing: episode goes on
          chk(4, 2, "warn", "2026-03-06", flags=("FM-DECAY",)),
          chk(5, 2, "pass", "2026-03-07"),                        # ends the episode
          chk(6, 2, "fail", "2026-03-08", flags=("FM-DECAY", "not-a-code")),
          chk(7, 2, "warn", "2026-03-08", kind="overhead", artifact="s", flags=("FM-OVERHEAD",)),
          chk(8, 2, "warn", "2026-03-09", kind="alignment", artifact="s", other_artifact_id="old",
              survival_share=0.3, flags=("FM-LABELS",)),
          chk(9, 2, "fail", "2026-03-09", flags=("FM-DECISION",))]
    old = dict(artifact_id="old", model_id="M", kind="sae", bound_version_id=1, recorded_at=T("2026-01-02"))
    dets = detect_failure_modes(inp(ev, artifacts=[SAE, old]), T("2026-03-10"))
    keys = {x.cause_key for x in dets}
    assert {"FM-DECAY:check=1", "FM-DECAY:check=6", "FM-DEAD:check=2", "FM-OVERHEAD:check=7",
            "FM-LABELS:check=8", "FM-DECISION:check=9", "FM-ERROR:check=3"} <= keys
    assert len(codes(dets, "FM-DECAY")) == 2
    assert {x.cause_key for x in dets if x.code in ("FM-DECAY",)} == {"FM-DECAY:check=1", "FM-DECAY:check=6"}
    assert all(x.code != "not-a-code" for x in dets)


def test_error_episodes():
    ev = [chk(1, 2, "error", "2026-03-03"), chk(2, 2, "error", "2026-03-04"),
          chk(3, 2, "pass", "2026-03-05"), chk(4, 2, "error", "2026-03-06"),
          chk(5, 2, "error", "2026-03-06", kind="data_drift", artifact=None)]
    keys = [x.cause_key for x in codes(detect_failure_modes(inp(ev), T("2026-03-10")), "FM-ERROR")]
    assert keys == ["FM-ERROR:check=1", "FM-ERROR:check=4", "FM-ERROR:check=5"]


def test_idempotent_and_stable_under_later_evidence():
    ev = [chk(1, 1, "pass", "2026-01-06", is_baseline=True, explained_variance=0.9),
          chk(2, 2, "fail", "2026-04-01", kind="data_drift", artifact=None),
          chk(3, 2, "warn", "2026-04-02", explained_variance=0.7, flags=("FM-DECAY",)),
          chk(4, 2, "error", "2026-04-03")]
    a = detect_failure_modes(inp(ev), T("2026-04-05"))
    b = detect_failure_modes(inp(ev), T("2026-04-05"))
    assert a == b and len({x.cause_key for x in a}) == len(a)
    # more of the same evidence later (flagged again, erroring again) opens no new cause
    more = ev + [chk(5, 2, "warn", "2026-04-06", explained_variance=0.69, flags=("FM-DECAY",)),
                 chk(6, 2, "error", "2026-04-04T12:00:00")]  # continues the error episode of check 4
    later = {x.cause_key for x in detect_failure_modes(inp(more), T("2026-04-08"))}
    assert {x.cause_key for x in a} <= later
    assert later - {x.cause_key for x in a} == set()
    # evidence recorded after `at` is ignored
    assert detect_failure_modes(inp(more), T("2026-04-05")) == a
