"""Hand-worked coverage / slot / debt fixtures: every expected number is derived in the comments."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from compliance.analysis import calendar as cal
from compliance.analysis.frames import AnalysisInput
from compliance.analysis.quarter import analyse_quarter
from compliance.errors import InputError, UsageError

POLICY = {"validity_days": 90}  # default groups: t1 {sae|transcoder|clt}+{attribution_baseline}, t2 {sae|..}, t3 none


def T(s: str) -> str:
    return s + "+00:00" if "T" in s else s + "T00:00:00+00:00"


def days(first: str, last: str) -> list[date]:
    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    return [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]


def bank(extra_checks: tuple = ()) -> AnalysisInput:
    models = [dict(model_id="A", tier=2, owner="alice"), dict(model_id="B", tier=1, owner="bob"),
              dict(model_id="C", tier=3, owner="carol"), dict(model_id="D", tier=2, owner="dan"),
              dict(model_id="E", tier=1, owner="eve")]
    versions = [
        dict(version_id=1, model_id="A", label="a1", trained_at=T("2026-01-01"), recorded_at=T("2026-01-01")),
        dict(version_id=2, model_id="A", label="a2", trained_at=T("2026-07-20"), recorded_at=T("2026-07-20")),
        dict(version_id=3, model_id="B", label="b1", trained_at=None, recorded_at=T("2026-09-01")),
        dict(version_id=4, model_id="C", label="c1", trained_at=None, recorded_at=T("2026-05-01")),
        dict(version_id=5, model_id="D", label="d1", trained_at=None, recorded_at=T("2025-12-01")),
        dict(version_id=6, model_id="E", label="e1", trained_at=T("2026-02-01"), recorded_at=T("2026-02-01")),
        dict(version_id=7, model_id="E", label="e2", trained_at=T("2026-06-01"), recorded_at=T("2026-06-01")),
    ]
    deployments = [
        dict(version_id=1, action="deploy", effective_at=T("2026-01-10T09:00:00")),
        dict(version_id=1, action="retire", effective_at=T("2026-08-15T12:00:00")),   # Aug 15 still counts
        dict(version_id=2, action="deploy", effective_at=T("2026-08-15T12:00:00")),
        dict(version_id=3, action="deploy", effective_at=T("2026-09-10")),
        dict(version_id=3, action="retire", effective_at=T("2026-09-20")),            # midnight: Sep 20 not deployed
        dict(version_id=4, action="deploy", effective_at=T("2026-06-01")),
        dict(version_id=5, action="deploy", effective_at=T("2026-01-01")),
        dict(version_id=5, action="retire", effective_at=T("2026-03-01")),
        dict(version_id=6, action="deploy", effective_at=T("2026-03-01")),
        dict(version_id=6, action="retire", effective_at=T("2026-07-01T08:00:00")),
        dict(version_id=7, action="deploy", effective_at=T("2026-07-01T08:00:00")),
    ]
    artifacts = [
        dict(artifact_id="s1", model_id="A", kind="sae", bound_version_id=1, recorded_at=T("2026-01-05")),
        dict(artifact_id="e1", model_id="E", kind="sae", bound_version_id=6, recorded_at=T("2026-03-01")),
        dict(artifact_id="e2", model_id="E", kind="attribution_baseline", bound_version_id=7,
             recorded_at=T("2026-07-10T06:00:00")),
    ]
    checks = [
        # s1 baseline on v1, valid May 1 .. Jul 30 (May 1 + 90 days)
        dict(check_id=1, kind="fidelity", version_id=1, artifact_id="s1", status="pass",
             finished_at=T("2026-05-01T10:00:00"), explained_variance=0.95, is_baseline=True),
        # s1 on v2: fail Aug 20, then pass Sep 1 (EV 0.85)
        dict(check_id=2, kind="fidelity", version_id=2, artifact_id="s1", status="fail",
             finished_at=T("2026-08-20T10:00:00"), explained_variance=0.50),
        dict(check_id=3, kind="fidelity", version_id=2, artifact_id="s1", status="pass",
             finished_at=T("2026-09-01T10:00:00"), explained_variance=0.85),
        # e1 baseline on v6 (Jun 15, valid to Sep 13); never checked on v7
        dict(check_id=4, kind="fidelity", version_id=6, artifact_id="e1", status="pass",
             finished_at=T("2026-06-15T10:00:00"), explained_variance=0.9, is_baseline=True),
        # e2 baseline on v7, Jul 10 (valid Jul 10 .. Oct 8)
        dict(check_id=5, kind="fidelity", version_id=7, artifact_id="e2", status="pass",
             finished_at=T("2026-07-10T10:00:00"), is_baseline=True),
    ]
    volumes = ([dict(version_id=2, day=d, volume=8.0) for d in days("2026-09-01", "2026-09-30")]
               + [dict(version_id=2, day=d, volume=1.0) for d in days("2026-08-20", "2026-08-31")]
               # a volume on a day v2 was not deployed is ignored
               + [dict(version_id=2, day=date(2026, 8, 1), volume=1000.0)])
    return AnalysisInput.from_records(models=models, versions=versions, deployments=deployments,
                                      artifacts=artifacts, checks=checks + list(extra_checks), volumes=volumes)


@pytest.fixture(scope="module")
def q3():
    return analyse_quarter(bank(), "2026Q3", T("2026-10-15T00:00:00"), POLICY)


def by_model(res):
    return {r["model_id"]: r for r in res.by_model}


def test_model_a_expiry_failing_then_passing_and_volume(q3):
    a = by_model(q3)["A"]
    # v1 deployed Jul 1..Aug 15 = 31+15 = 46 days: fresh Jul 1..Jul 30 (30), stale Jul 31..Aug 15 (16)
    # v2 deployed Aug 15..Sep 30 = 17+30 = 47 days: stale Aug 15..19 (5, no check on v2 yet),
    #    broken Aug 20..31 (12, latest check failed), fresh Sep 1..30 (30)
    assert a["deployed_version_days"] == 46 + 47
    assert a["covered_version_days"] == 30 + 30
    assert a["fresh_slot_days"] == 60 and a["stale_slot_days"] == 16 + 5
    assert a["broken_slot_days"] == 12 and a["missing_slot_days"] == 0
    assert a["debt"] == 33 and a["weighted_debt"] == 66.0  # tier 2 weight 2
    assert a["coverage_unweighted"] == pytest.approx(60 / 93)
    # volumes: 30 rows x 8 + 12 rows x 1 = 252 over 42 rows -> mean 6 imputed on the 51 other days
    # total = 252 + 51*6 = 558; covered = v1 Jul 1..30 imputed 30*6 = 180 + v2 Sep 30*8 = 240 -> 420
    assert a["weighting"] == "volume"
    assert a["volume_total"] == pytest.approx(558.0)
    assert a["volume_covered"] == pytest.approx(420.0)
    assert a["coverage"] == pytest.approx(420 / 558)
    assert a["coverage_weighted"] == pytest.approx(420 / 558)
    assert a["volume_imputed_share"] == pytest.approx(51 / 93)
    # Q2: v1 deployed Apr 1..Jun 30 = 91 days, stale Apr 1..30, fresh May 1..Jun 30 (61); no volumes
    assert a["coverage_prev"] == pytest.approx(61 / 91)
    assert a["debt_prev"] == 30


def test_model_b_without_artifacts_midnight_retire(q3):
    b = by_model(q3)["B"]
    # deployed Sep 10 00:00 .. Sep 20 00:00 -> Sep 10..19 = 10 days; two groups, nothing registered
    assert b["deployed_version_days"] == 10 and b["covered_version_days"] == 0
    assert b["missing_slot_days"] == 20 and b["debt"] == 20 and b["weighted_debt"] == 60.0
    assert b["coverage"] == 0.0 and b["weighting"] == "days"


def test_no_requirements_and_not_deployed(q3):
    c = by_model(q3)["C"]
    assert c["no_requirements"] is True and c["deployed_version_days"] == 92
    # methodology v2: a tier with no requirements is not in scope: "not required", never 100 %
    assert c["coverage"] is None and c["in_scope"] is False and c["slot_days"] == 0 and c["debt"] == 0
    assert c["verdict"] == "not required"
    d = by_model(q3)["D"]
    assert d["deployed"] is False and d["coverage"] is None and d["weighting"] is None


def test_model_e_artifact_bound_to_older_version(q3):
    e = by_model(q3)["E"]
    # v6 deployed Jul 1 (retired 08:00) -> 1 day: sae fresh (e1 valid on v6 to Sep 13),
    #    attribution missing (e2 recorded Jul 10)
    # v7 deployed Jul 1..Sep 30 = 92 days: sae stale 92 (e1 never validated on v7),
    #    attribution missing Jul 1..9 (9), fresh Jul 10..Sep 30 (22+31+30 = 83)
    assert e["deployed_version_days"] == 93 and e["covered_version_days"] == 0
    assert e["fresh_slot_days"] == 1 + 83 and e["stale_slot_days"] == 92 and e["missing_slot_days"] == 1 + 9
    assert e["debt"] == 102 and e["weighted_debt"] == 306.0


def test_portfolio_and_tiers(q3):
    p = q3.portfolio
    # C (tier 3, nothing required) is left out of every headline figure (methodology v2)
    assert p["models"] == 5 and p["models_in_scope"] == 3 and p["models_not_required"] == 1
    assert p["not_required"] == ["C"]
    assert p["deployed_version_days"] == 93 + 10 + 93
    assert p["covered_version_days"] == 60
    assert p["coverage_days"] == pytest.approx(60 / 196)
    assert p["coverage"] == pytest.approx((420 / 558 + 0 + 0) / 3)
    assert p["coverage_volume"] == pytest.approx(420 / 558)  # only A records volumes
    assert p["debt"] == 33 + 20 + 102 and p["weighted_debt"] == 66 + 60 + 306
    tiers = {t["tier"]: t for t in q3.by_tier}
    assert tiers[1]["debt"] == 122 and tiers[1]["models_in_scope"] == 2
    assert tiers[2]["models"] == 2 and tiers[2]["models_in_scope"] == 1
    assert tiers[3]["no_requirements"] is True and tiers[3]["coverage"] is None
    assert [t["quarter"] for t in q3.trend] == ["2025Q4", "2026Q1", "2026Q2", "2026Q3"]
    assert q3.trend[-1]["debt"] == p["debt"]
    summary = {(s["tier"], s["group"]): s for s in q3.slots_summary}
    assert summary[(1, "attribution_baseline")]["missing"] == 10 + 10
    assert summary[(2, "sae|transcoder|clt")]["broken"] == 12


def test_staleness_table(q3):
    rows = {(r["artifact_id"], r["deployed_version_id"]): r for r in q3.staleness}
    s1 = rows[("s1", 2)]
    assert s1["versions_behind"] == 1 and s1["days_since_validation"] == 29  # Sep 30 - Sep 1
    assert s1["fidelity_decay"] == pytest.approx(0.95 - 0.85)
    assert s1["artifact_state"] == "valid" and s1["slot_state"] == "fresh"
    e1 = rows[("e1", 7)]
    assert e1["versions_behind"] == 1 and e1["days_since_validation"] is None
    assert e1["artifact_state"] == "stale" and e1["slot_state"] == "stale" and e1["fidelity_decay"] is None
    e2 = rows[("e2", 7)]
    assert e2["versions_behind"] == 0 and e2["artifact_state"] == "valid" and e2["slot_state"] == "fresh"


def test_timeline(q3):
    tl = {(r["scope"], r["tier"], r["day"]): r for r in q3.timeline}
    # Aug 15: A has v1 and v2 deployed (2 version-days), neither covered (v1 stale, v2 stale)
    r = tl[("tier", 2, "2026-08-15")]
    assert r["deployed"] == 2 and r["covered"] == 0
    # Jul 1 portfolio: A v1 (fresh), E v6 + v7 (not) -> 3 deployed, 1 covered (C is not in scope)
    r = tl[("portfolio", None, "2026-07-01")]
    assert (r["deployed"], r["covered"]) == (3, 1) and r["share"] == pytest.approx(1 / 3)
    per_model = [r for r in q3.timeline_by_model if r["model_id"] == "A"]
    assert len(per_model) == 92 and sum(r["covered"] for r in per_model) == 60


def test_json_safe(q3):
    json.dumps(q3.to_dict(), allow_nan=False)


def test_as_of_mid_quarter_ignores_later_evidence():
    # as of Aug 25 12:00: window Jul 1..Aug 25; the Sep 1 pass is not known
    res = analyse_quarter(bank(), "2026Q3", T("2026-08-25T12:00:00"), POLICY)
    a = by_model(res)["A"]
    # v1 Jul 1..Aug 15 (46): 30 fresh + 16 stale; v2 Aug 15..25 (11): 5 stale + 6 broken (Aug 20..25)
    assert a["deployed_version_days"] == 57 and a["covered_version_days"] == 30
    assert a["broken_slot_days"] == 6 and a["stale_slot_days"] == 21
    assert res.window_end == "2026-08-25"


def test_same_day_checks_latest_wins_and_validity_boundary():
    base = dict(models=[dict(model_id="M", tier=2, owner="o")],
                versions=[dict(version_id=1, model_id="M", label="v", trained_at=None, recorded_at=T("2026-01-01"))],
                deployments=[dict(version_id=1, action="deploy", effective_at=T("2026-01-01"))],
                artifacts=[dict(artifact_id="x", model_id="M", kind="clt", bound_version_id=1,
                                recorded_at=T("2026-01-01"))])
    checks = [dict(check_id=1, kind="fidelity", version_id=1, artifact_id="x", status="pass",
                   finished_at=T("2026-04-01T08:00:00")),
              dict(check_id=2, kind="fidelity", version_id=1, artifact_id="x", status="error",
                   finished_at=T("2026-04-01T09:00:00")),
              dict(check_id=3, kind="fidelity", version_id=1, artifact_id="x", status="warn",
                   finished_at=T("2026-04-02T09:00:00"))]
    inp = AnalysisInput.from_records(**base, checks=checks)
    res = analyse_quarter(inp, "2026Q2", T("2026-12-01"), {"validity_days": 10, "warn_needs_acceptance": False})
    m = by_model(res)["M"]
    # Q2 = 91 days; Apr 1 broken (the 09:00 error is the day's latest); warn Apr 2 valid Apr 2..Apr 12
    # (11 days, the policy does not ask for acceptance); Apr 13..Jun 30 expired -> stale (18 + 31 + 30 = 79)
    assert (m["broken_slot_days"], m["fresh_slot_days"], m["stale_slot_days"]) == (1, 11, 79)
    # methodology v2 default: the unaccepted warn is pending for its 11 days, never fresh
    m = by_model(analyse_quarter(inp, "2026Q2", T("2026-12-01"), {"validity_days": 10}))["M"]
    assert (m["broken_slot_days"], m["pending_slot_days"], m["fresh_slot_days"], m["stale_slot_days"]) == (1, 11, 0, 79)
    # accepted on Apr 5 (by a validator): pending Apr 2..4 (3), fresh Apr 5..12 (8)
    checks[2]["accepted_at"] = T("2026-04-05T15:00:00")
    m = by_model(analyse_quarter(AnalysisInput.from_records(**base, checks=checks), "2026Q2", T("2026-12-01"),
                                 {"validity_days": 10}))["M"]
    assert (m["pending_slot_days"], m["fresh_slot_days"], m["stale_slot_days"]) == (3, 8, 79)
    # the acceptance is unknown as of Apr 4: the whole warn is still pending then
    m = by_model(analyse_quarter(AnalysisInput.from_records(**base, checks=checks), "2026Q2", T("2026-04-04T12:00:00"),
                                 {"validity_days": 10}))["M"]
    assert (m["pending_slot_days"], m["fresh_slot_days"]) == (3, 0)


def test_quarter_parsing_and_errors():
    q = cal.parse_quarter("2026q3")
    assert (q.start, q.end, str(q.previous(3))) == (date(2026, 7, 1), date(2026, 9, 30), "2025Q4")
    for bad in ("2026Q5", "26Q1", "2026-Q1", "", None):
        with pytest.raises(UsageError):
            cal.parse_quarter(bad)
    with pytest.raises(UsageError):
        analyse_quarter(bank(), "2026Q4", T("2026-09-01"), POLICY)
    with pytest.raises(InputError):
        AnalysisInput.from_records(models=[dict(model_id="M", tier=4, owner="o")])
    with pytest.raises(InputError):
        AnalysisInput.from_records(models=[dict(model_id="M", tier=1, owner="o")],
                                   versions=[dict(version_id=1, model_id="M", label="v", trained_at=None,
                                                  recorded_at="2026-01-01T00:00:00")])  # naive
    with pytest.raises(InputError):
        AnalysisInput.from_records(models=[dict(model_id="M", tier=1, owner="o")],
                                   versions=[dict(version_id=1, model_id="X", label="v", trained_at=None,
                                                  recorded_at=T("2026-01-01"))])


def test_policy_from_json_keys_and_custom_groups():
    pol = {"validity_days": 90, "required_groups": {"1": [["sae"]], "2": [["sae", "clt"]], "3": []},
           "tier_weights": {"1": 5}}
    res = analyse_quarter(bank(), "2026Q3", T("2026-10-15"), pol)
    m = by_model(res)
    # B (tier 1) now has one group: 10 missing slot-days, weight 5
    assert (m["B"]["missing_slot_days"], m["B"]["weighted_debt"]) == (10, 50.0)
    # E: only the sae group counts: v6 on Jul 1 covered (e1 valid on v6), v7 stale all 92 days
    assert (m["E"]["covered_version_days"], m["E"]["stale_slot_days"], m["E"]["fresh_slot_days"]) == (1, 92, 1)
    with pytest.raises(UsageError):
        analyse_quarter(bank(), "2026Q3", T("2026-10-15"), {"required_groups": {"1": [["saes"]]}})


def test_package_imports_without_torch():
    import subprocess
    import sys
    code = "import sys, compliance.analysis; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_empty_and_undeployed_inputs():
    res = analyse_quarter(AnalysisInput(), "2026Q3", T("2026-10-01"), {})
    assert res.portfolio["models"] == 0 and res.portfolio["coverage"] is None and res.by_model == []
    json.dumps(res.to_dict(), allow_nan=False)
    inp = AnalysisInput.from_records(models=[dict(model_id="m", tier=1, owner="o")],
                                     versions=[dict(version_id=1, model_id="m", label="v", trained_at=None,
                                                    recorded_at=T("2026-01-01"))])
    res = analyse_quarter(inp, "2026Q3", T("2026-10-01"), {})
    assert res.by_model[0]["deployed"] is False and res.portfolio["models_in_scope"] == 0


def test_as_of_helper_filters_every_frame():
    inp = bank()
    cut = inp.as_of(T("2026-08-20T10:00:00"))
    assert set(cut.versions["version_id"]) == {1, 2, 4, 5, 6, 7}  # v3 recorded Sep 1
    assert set(cut.checks["check_id"]) == {1, 2, 4, 5}  # check 2 finished exactly at T: kept
    assert not (cut.deployments["version_id"] == 3).any()
    assert set(cut.artifacts["artifact_id"]) == {"s1", "e1", "e2"}
    assert (cut.volumes["day"] <= T("2026-08-20T10:00:00")).all() and len(cut.volumes) == 2  # Aug 1, Aug 20
    # an early-recorded check that finishes after T is not known at T either
    assert len(inp.as_of(T("2026-05-01T09:59:59")).checks) == 0


@pytest.mark.parametrize("ids", [
    [3, 1, 2, 3],                    # dense ids: counted
    [5, -2, 10**12, -2],             # far apart: hashed
    ["a", "b", "a"],
    [2**62, 7, 2**62],
])
def test_duplicate_ids_are_refused(ids):
    import pandas as pd

    from compliance.analysis.frames import _check_unique

    s = pd.Series(ids)
    with pytest.raises(InputError, match="duplicate check_id"):
        _check_unique("checks", s, "check_id")
    _check_unique("checks", s.drop_duplicates(), "check_id")  # the same ids once each pass
