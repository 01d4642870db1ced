"""Hand-worked fixtures for methodology v2 (DESIGN §4): artifact sets, pending slots, debt
outstanding, per-model verdicts. Every expected number is derived in the comments."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.analysis.frames import AnalysisInput
from compliance.analysis.quarter import analyse_quarter


def T(s: str) -> str:
    return s + "+00:00" if "T" in s else s + "T00:00:00+00:00"


def base(tier: int = 2) -> dict:
    return dict(
        models=[dict(model_id="M", tier=tier, owner="olivia")],
        versions=[dict(version_id=1, model_id="M", label="v1", trained_at=None, recorded_at=T("2026-06-01"))],
        deployments=[dict(version_id=1, action="deploy", effective_at=T("2026-07-01"))],
    )


def by_model(res) -> dict:
    return {r["model_id"]: r for r in res.by_model}


def set_of_three(statuses: list[str], accepted: list[str | None] | None = None) -> AnalysisInput:
    """A 3-layer transcoder set bound to v1; each layer checked once on Jul 1 with the given status."""
    arts = [dict(artifact_id=f"tc/layer_{i}", model_id="M", kind="transcoder", bound_version_id=1,
                 recorded_at=T("2026-06-15"), set_id="tc") for i in range(3)]
    checks = [dict(check_id=i + 1, kind="fidelity", version_id=1, artifact_id=f"tc/layer_{i}", status=s,
                   finished_at=T("2026-07-01T12:00:00"), is_baseline=True,
                   accepted_at=(accepted or [None] * 3)[i]) for i, s in enumerate(statuses)]
    return AnalysisInput.from_records(**base(), artifacts=arts, checks=checks)


def test_set_with_one_failing_layer_is_broken_not_covered():
    res = analyse_quarter(set_of_three(["pass", "fail", "pass"]), "2026Q3", T("2026-07-31"), {})
    m = by_model(res)["M"]
    # Jul 1..31 = 31 deployed days; layer 1 failed: the set is not valid although layers 0 and 2 pass
    assert m["deployed_version_days"] == 31 and m["covered_version_days"] == 0
    assert m["broken_slot_days"] == 31 and m["fresh_slot_days"] == 0
    assert m["verdict"] == "not fit" and any("broken" in r for r in m["verdict_reasons"])


def test_set_all_layers_passing_is_fresh_and_fit():
    m = by_model(analyse_quarter(set_of_three(["pass", "pass", "pass"]), "2026Q3", T("2026-07-31"), {}))["M"]
    assert m["covered_version_days"] == 31 and m["coverage"] == 1.0
    assert m["verdict"] == "fit"


def test_set_with_an_unaccepted_warn_is_pending_then_fresh_with_conditions_once_accepted():
    m = by_model(analyse_quarter(set_of_three(["pass", "warn", "pass"]), "2026Q3", T("2026-07-31"), {}))["M"]
    assert m["pending_slot_days"] == 31 and m["covered_version_days"] == 0
    assert m["verdict"] == "not fit" and any("pending" in r for r in m["verdict_reasons"])
    # accepted Jul 11: pending Jul 1..10 (10), fresh Jul 11..31 (21)
    inp = set_of_three(["pass", "warn", "pass"], [None, T("2026-07-11T09:00:00"), None])
    m = by_model(analyse_quarter(inp, "2026Q3", T("2026-07-31"), {}))["M"]
    assert (m["pending_slot_days"], m["fresh_slot_days"]) == (10, 21)
    assert m["verdict"] == "fit with conditions"
    assert any("accepted warn" in r for r in m["verdict_reasons"])


def test_a_member_never_checked_keeps_the_set_stale():
    arts = [dict(artifact_id=f"tc/layer_{i}", model_id="M", kind="transcoder", bound_version_id=1,
                 recorded_at=T("2026-06-15"), set_id="tc") for i in range(3)]
    checks = [dict(check_id=i + 1, kind="fidelity", version_id=1, artifact_id=f"tc/layer_{i}", status="pass",
                   finished_at=T("2026-07-01T12:00:00")) for i in range(2)]
    m = by_model(analyse_quarter(AnalysisInput.from_records(**base(), artifacts=arts, checks=checks),
                                 "2026Q3", T("2026-07-31"), {}))["M"]
    assert m["stale_slot_days"] == 31 and m["covered_version_days"] == 0


def _sae_history(check_days: list[str]) -> AnalysisInput:
    arts = [dict(artifact_id="sae", model_id="M", kind="sae", bound_version_id=1, recorded_at=T("2026-06-15"))]
    checks = [dict(check_id=i + 1, kind="fidelity", version_id=1, artifact_id="sae", status="pass",
                   finished_at=T(d + "T12:00:00")) for i, d in enumerate(check_days)]
    return AnalysisInput.from_records(**base(), artifacts=arts, checks=checks)


def test_debt_outstanding_grows_one_day_per_day_and_falls_to_zero_on_revalidation():
    pol = {"validity_days": 10}
    inp = _sae_history(["2026-07-01"])
    # valid Jul 1..11; Jul 12 is the first stale day -> outstanding 1 on Jul 12, 2 on Jul 13, ...
    got = [by_model(analyse_quarter(inp, "2026Q3", T(f"2026-07-{d:02d}T18:00:00"), pol))["M"]["debt_outstanding"]
           for d in range(10, 16)]
    assert got == [0, 0, 1, 2, 3, 4]
    # incurred (flow) over the quarter so far counts the same stale days
    res = analyse_quarter(inp, "2026Q3", T("2026-07-15T18:00:00"), pol)
    assert by_model(res)["M"]["debt"] == 4 and res.portfolio["debt_outstanding"] == 4
    assert res.portfolio["weighted_debt_outstanding"] == 8.0  # tier 2 weight 2
    # re-validated Jul 16: zero that day
    inp2 = _sae_history(["2026-07-01", "2026-07-16"])
    assert by_model(analyse_quarter(inp2, "2026Q3", T("2026-07-16T18:00:00"), pol))["M"]["debt_outstanding"] == 0


def test_debt_outstanding_counts_from_first_deploy_when_never_fresh_even_years_back():
    # deployed 2024-01-01, never validated: on 2026-07-31 outstanding = days since 2023-12-31
    inp = AnalysisInput.from_records(
        models=[dict(model_id="M", tier=1, owner="o")],
        versions=[dict(version_id=1, model_id="M", label="v1", trained_at=None, recorded_at=T("2023-12-01"))],
        deployments=[dict(version_id=1, action="deploy", effective_at=T("2024-01-01"))])
    m = by_model(analyse_quarter(inp, "2026Q3", T("2026-07-31T12:00:00"), {}))["M"]
    days = (datetime(2026, 7, 31) - datetime(2023, 12, 31)).days
    # tier 1: two required groups, both missing since the first deployed day
    assert m["debt_outstanding"] == 2 * days and m["weighted_debt_outstanding"] == 3 * 2 * days


def test_not_required_model_never_counts_as_covered():
    m = by_model(analyse_quarter(AnalysisInput.from_records(**base(tier=3)), "2026Q3", T("2026-07-31"), {}))["M"]
    assert m["coverage"] is None and m["verdict"] == "not required" and m["in_scope"] is False


def test_verdict_reads_open_occurrences_on_deployed_versions_only():
    inp = set_of_three(["pass", "pass", "pass"])
    occ = [dict(model_id="M", version_id=1, code="FM-DEAD", severity="medium")]
    m = by_model(analyse_quarter(inp, "2026Q3", T("2026-07-31"), {}, occ))["M"]
    assert m["verdict"] == "fit with conditions" and m["verdict_reasons"] == ["FM-DEAD (medium) open on M v1"]
    occ.append(dict(model_id="M", version_id=1, code="FM-DECISION", severity="high"))
    assert by_model(analyse_quarter(inp, "2026Q3", T("2026-07-31"), {}, occ))["M"]["verdict"] == "not fit"
    # an occurrence on a version that is not deployed does not judge the deployed one
    occ = [dict(model_id="M", version_id=99, code="FM-DECAY", severity="high")]
    assert by_model(analyse_quarter(inp, "2026Q3", T("2026-07-31"), {}, occ))["M"]["verdict"] == "fit"


START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 150), st.sampled_from(["pass", "warn", "fail"])), max_size=8),
       st.integers(160, 250), st.integers(1, 40), st.integers(1, 2))
def test_debt_outstanding_never_falls_without_a_check(checks, t1_day, gap, tier):
    """No check, deploy or retire between t1 < t2: debt outstanding at t2 >= at t1."""
    arts = [dict(artifact_id="a", model_id="M", kind="sae", bound_version_id=1, recorded_at=START)]
    rows = [dict(check_id=i + 1, kind="fidelity", version_id=1, artifact_id="a", status=s,
                 finished_at=START + timedelta(days=d, hours=12)) for i, (d, s) in enumerate(checks)]
    inp = AnalysisInput.from_records(
        models=[dict(model_id="M", tier=tier, owner="o")],
        versions=[dict(version_id=1, model_id="M", label="v1", trained_at=None, recorded_at=START)],
        deployments=[dict(version_id=1, action="deploy", effective_at=START)], artifacts=arts, checks=rows)
    t1 = START + timedelta(days=t1_day, hours=18)
    t2 = t1 + timedelta(days=gap)

    def outstanding(t):
        from compliance.analysis.calendar import quarter_of

        return analyse_quarter(inp, quarter_of(t), t, {"validity_days": 30}).portfolio["debt_outstanding"]

    assert outstanding(t2) >= outstanding(t1)


# ------------------------------------------------------------------ failure modes (DESIGN §6, v2)
def _codes(inp, at, policy=None):
    from compliance.analysis.failure_modes import detect_failure_modes

    return {(d.code, d.version_id) for d in detect_failure_modes(inp, T(at), policy or {})}


def test_unvalidated_when_live_before_evidence_and_not_when_validated_first():
    arts = [dict(artifact_id="sae", model_id="M", kind="sae", bound_version_id=1, recorded_at=T("2026-06-15"))]
    late = [dict(check_id=1, kind="fidelity", version_id=1, artifact_id="sae", status="pass",
                 finished_at=T("2026-07-05T12:00:00"))]
    inp = AnalysisInput.from_records(**base(), artifacts=arts, checks=late)
    assert ("FM-UNVALIDATED", 1) in _codes(inp, "2026-07-10")
    early = [dict(late[0], finished_at=T("2026-06-20T12:00:00"))]
    assert ("FM-UNVALIDATED", 1) not in _codes(AnalysisInput.from_records(**base(), artifacts=arts, checks=early),
                                                "2026-07-10")
    # an unaccepted warn before go-live is not required evidence passing
    warn = [dict(early[0], status="warn")]
    assert ("FM-UNVALIDATED", 1) in _codes(AnalysisInput.from_records(**base(), artifacts=arts, checks=warn),
                                            "2026-07-10")
    accepted = [dict(warn[0], accepted_at=T("2026-06-25T00:00:00"))]
    assert ("FM-UNVALIDATED", 1) not in _codes(
        AnalysisInput.from_records(**base(), artifacts=arts, checks=accepted), "2026-07-10")


def test_silent_only_for_in_scope_models_and_activation_drift_failure_raises():
    assert ("FM-SILENT", 1) in _codes(AnalysisInput.from_records(**base(tier=2)), "2026-07-10")
    assert _codes(AnalysisInput.from_records(**base(tier=3)), "2026-07-10") == set()
    arts = [dict(artifact_id="sae", model_id="M", kind="sae", bound_version_id=1, recorded_at=T("2026-06-15"))]
    checks = [dict(check_id=1, kind="activation_drift", version_id=1, artifact_id="sae", status="fail",
                   finished_at=T("2026-07-05T12:00:00"))]
    inp = AnalysisInput.from_records(**base(), artifacts=arts, checks=checks)
    assert ("FM-DRIFT-BRITTLE", 1) in _codes(inp, "2026-07-10")


def test_policy_v2_keys_validated_and_versioned(cli, tmp_path):
    import json

    good = tmp_path / "p.yaml"
    good.write_text("tiers: {'1': {fidelity: {flip_fail: 0.02}}}\nkey_drivers: {retail-pd: [dti]}\n"
                    "warn_needs_acceptance: true\n")
    assert cli("policy", "set", "--file", good)[0] == 0
    doc = json.loads(cli("policy", "show", "--json")[1])
    doc = doc.get("document", doc)
    assert doc["tiers"]["1"]["fidelity"]["flip_fail"] == 0.02 and doc["key_drivers"] == {"retail-pd": ["dti"]}
    assert doc["methodology"] == 2
    before = cli("verify", "--json")[1]
    for text, needle in (("tiers: {'4': {}}", "tiers"), ("tiers: {'1': {fidelity: {nope: 1}}}", "tiers.1.fidelity.nope"),
                         ("key_drivers: {m: dti}", "key_drivers"), ("warn_needs_acceptance: 1", "warn_needs_acceptance"),
                         ("methodology: 1", "methodology")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text + "\n")
        code, _, err = cli("policy", "set", "--file", bad)
        assert code != 0 and needle in err and len(err.strip().splitlines()) == 1
    assert cli("verify", "--json")[1] == before  # nothing written
