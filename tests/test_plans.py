"""Monitoring plans (issue 16, DESIGN §10): validation, versioning, check run --due following the
plan, FM-MISSED opened once per missed due date, and plan adherence."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml

from compliance.analysis.plans import KindPlan, adherence, normalise_plan, period_window
from compliance.errors import InputError

from helpers import weights_file


def at(y, m, d, h=12):
    return datetime(y, m, d, h, tzinfo=timezone.utc)


# ------------------------------------------------------------------ pure
def test_normalise_plan_cadences_budget_and_data():
    doc = normalise_plan({"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "30d"}]},
                                     "data_drift": {"cadence": "weekly", "data": {"dataset": "prod-*"},
                                                    "budget": "2m"},
                                     "overhead": {"cadence": {"every": "2w"}, "budget": {"rows": 5000}}},
                          "alert": {"email": ["mrm@bank.example"], "webhook": ["mrm-hook"]}, "grace": "2d"})
    assert doc["checks"]["fidelity"] == {"after_retrain": True, "every_days": 30, "required": True, "data": None,
                                         "budget": None, "reference": None}
    assert doc["checks"]["data_drift"]["every_days"] == 7
    assert doc["checks"]["data_drift"]["budget"] == {"seconds": 120.0, "rows": None}
    assert doc["checks"]["overhead"]["every_days"] == 14 and doc["checks"]["overhead"]["budget"]["rows"] == 5000
    assert doc["grace_days"] == 2 and doc["alert"]["email"] == ["mrm@bank.example"]


@pytest.mark.parametrize("bad, words", [
    ({"checks": {"fidelty": {"cadence": "weekly"}}}, "unknown check kind"),
    ({"checks": {"fidelity": {"cadence": "fortnightly"}}}, "unknown cadence"),
    ({"checks": {"fidelity": {"cadence": {"every": "0d"}}}}, "period"),
    ({"checks": {"fidelity": {}}}, "needs a cadence"),
    ({"checks": {"data_drift": {"cadence": "weekly", "data": {"path": "x/{quarter}.csv"}}}}, "{window}"),
    ({"checks": {}, "alert": {"email": ["not-an-address"]}}, "e-mail"),
    ({"checks": {}, "owner": "x"}, "unknown key"),
    ([1, 2], "mapping"),
])
def test_normalise_plan_refuses_bad_documents(bad, words):
    with pytest.raises(InputError, match=None) as e:
        normalise_plan(bad, "plan.yaml")
    assert words in str(e.value) and "plan.yaml" in str(e.value)


def test_weekly_gap_is_one_miss_whatever_its_length():
    kp = KindPlan("data_drift", after_retrain=False, every_days=7)
    common = dict(model_id="m", version_id=1, version_label="v1", deployed_since=at(2026, 6, 1),
                  plan_since=at(2026, 6, 1), grace_days=1)
    ok = adherence(kp, checks=[at(2026, 6, 5)], at=at(2026, 6, 12, 11), **common)
    assert ok.missed == [] and ok.state == "on time" and ok.next_due == at(2026, 6, 12)
    one = adherence(kp, checks=[at(2026, 6, 5)], at=at(2026, 6, 14), **common)
    assert [m["due"] for m in one.missed] == [at(2026, 6, 12)] and one.state == "overdue"
    later = adherence(kp, checks=[at(2026, 6, 5)], at=at(2026, 8, 30), **common)
    assert [m["cause_key"] for m in later.missed] == [m["cause_key"] for m in one.missed]
    # a late check closes the gap; a second gap is a second miss
    two = adherence(kp, checks=[at(2026, 6, 5), at(2026, 6, 20)], at=at(2026, 7, 1), **common)
    assert [m["due"].date() for m in two.missed] == [date(2026, 6, 12), date(2026, 6, 27)]


def test_after_retrain_counts_a_check_before_deployment():
    kp = KindPlan("overhead", after_retrain=True, every_days=None)
    common = dict(model_id="m", version_id=1, version_label="v1", deployed_since=at(2026, 6, 1),
                  plan_since=at(2026, 1, 1), grace_days=1, at=at(2026, 6, 10))
    assert adherence(kp, checks=[at(2026, 5, 30)], **common).missed == []
    missed = adherence(kp, checks=[at(2026, 6, 5)], **common).missed
    assert len(missed) == 1 and missed[0]["cause_key"].endswith(":after_retrain")


def test_period_window_labels():
    assert period_window(7, at(2026, 7, 8))[0] == "2026-W27"
    assert period_window(30, at(2026, 7, 8))[1:] == (date(2026, 6, 1), date(2026, 6, 30))
    assert period_window(1, at(2026, 7, 8))[0] == "2026-07-07"


# ------------------------------------------------------------------ store
def _frame(path: Path, seed: int, shift: float = 0.0) -> Path:
    rng = np.random.default_rng(seed)
    rows = ["income,utilisation,default"]
    for _ in range(400):
        rows.append(f"{rng.normal(50 + shift, 10):.4f},{rng.uniform(0, 1):.4f},{int(rng.uniform() < 0.1)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _store(url: str, root: Path) -> datetime:
    """A tier-1 model deployed yesterday with a weekly drift plan; returns now (the plan's time)."""
    from compliance.services import registry
    from compliance.services.plans import set_plan
    from compliance.store.engine import session_scope
    from compliance.timeutil import utcnow

    now = utcnow()
    today = now.date()
    roles = {"input": ["income", "utilisation"], "target": ["default"]}
    with session_scope(url) as s:
        registry.add_model(s, "retail-pd", name="Retail PD", owner="alice", tier=1, use="PD")
        registry.add_version(s, "retail-pd", "v1", weights=weights_file(root / "w1.safetensors"),
                             data_window=(date(2025, 1, 1), date(2025, 12, 31)))
        registry.add_dataset(s, "retail-pd", path=_frame(root / "dev.csv", 1), role="train",
                             window=(date(2025, 1, 1), date(2025, 12, 31)), columns=roles, version="v1")
        for i, back in enumerate((14, 7)):
            registry.add_dataset(s, "retail-pd", path=_frame(root / f"prod-{i}.csv", 10 + i), role="production",
                                 window=(today - timedelta(days=back), today - timedelta(days=back - 6)),
                                 columns=roles)
        registry.deploy(s, "retail-pd", "v1", at=now - timedelta(days=1))
        set_plan(s, "retail-pd", {"checks": {"data_drift": {"cadence": "weekly", "data": {"dataset": "prod-*"}}},
                                  "alert": {"email": ["mrm@bank.example"]}}, source="plan.yaml")
    return now


def test_due_runs_the_planned_drift_and_a_missed_week_opens_one_fm_missed(db_url, tmp_path):
    from compliance.services.due import run_due
    from compliance.services.governance import detect_failure_modes, list_failure_modes
    from compliance.services.plans import plan_adherence
    from compliance.store.engine import session_scope
    from compliance.timeutil import utcnow

    t0 = _store(db_url, tmp_path)
    with session_scope(db_url) as s:
        out = run_due(s, utcnow())
    drift = [r for r in out["ran"] if r["kind"] == "data_drift"]
    assert len(drift) == 1 and drift[0]["status"] in ("pass", "warn", "fail"), out
    assert not [o for o in out["failure_modes_opened"] if o["code"] == "FM-MISSED"]
    with session_scope(db_url) as s:
        assert run_due(s, t0 + timedelta(days=3), dry_run=True)["planned"] == []  # ran today: not due
        assert len(run_due(s, t0 + timedelta(days=8), dry_run=True)["planned"]) == 1  # a week later: due
    # the week passes with no check: due 7 days after the check, grace 1 day
    later = t0 + timedelta(days=9)
    with session_scope(db_url) as s:
        opened = detect_failure_modes(s, later)
        rows = plan_adherence(s, later)
    missed = [o for o in opened if o["code"] == "FM-MISSED"]
    assert len(missed) == 1, opened
    assert rows[0]["state"] == "overdue" and rows[0]["explicit"]
    assert f"due {rows[0]['missed'][0]['due'].date().isoformat()}" in missed[0]["detail"]
    with session_scope(db_url) as s:
        again = detect_failure_modes(s, later + timedelta(days=1))
        assert not [o for o in again if o["code"] == "FM-MISSED"]
        assert len([o for o in list_failure_modes(s) if o["code"] == "FM-MISSED"]) == 1


def test_plan_set_is_versioned_and_cli_shows_it(cli, tmp_path):
    from helpers import small_manifest

    code, _, err = cli("import", small_manifest(tmp_path))
    assert code == 0, err
    f = tmp_path / "plan.yaml"
    f.write_text(yaml.safe_dump({"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "30d"}]}},
                                 "alert": {"webhook": ["mrm-hook"]}}))
    code, out, err = cli("plan", "set", "retail-pd", "--file", f)
    assert code == 0 and "version 1 recorded" in out, err
    code, out, _ = cli("plan", "set", "retail-pd", "--file", f)
    assert "unchanged" in out
    code, out, _ = cli("plan", "show", "retail-pd", "--json")
    assert code == 0
    import json

    shown = json.loads(out)
    assert shown["explicit"] and shown["version"] == 1 and shown["document"]["checks"]["fidelity"]["every_days"] == 30
    code, out, _ = cli("plan", "show", "card-fraud", "--json")
    assert json.loads(out)["source"] == "policy default for tier 2"
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks: {fidelity: {cadence: hourly}}\n")
    code, out, err = cli("plan", "set", "retail-pd", "--file", bad)
    assert code != 0 and "unknown cadence" in err and "Traceback" not in err
    code, out, _ = cli("plan", "show", "retail-pd", "--json")
    assert json.loads(out)["version"] == 1


def test_manifest_plans_section(cli, tmp_path):
    from helpers import small_manifest

    m = small_manifest(tmp_path)
    doc = yaml.safe_load(m.read_text())
    (tmp_path / "fraud-plan.yaml").write_text("checks: {overhead: {cadence: after_retrain}}\n")
    doc["plans"] = [{"model": "retail-pd", "plan": {"checks": {"data_drift": {"cadence": "weekly"}}}},
                    {"model": "card-fraud", "file": "fraud-plan.yaml"}]
    m.write_text(yaml.safe_dump(doc))
    code, out, err = cli("import", m)
    assert code == 0, err
    import json

    code, out, _ = cli("plan", "show", "card-fraud", "--json")
    assert json.loads(out)["document"]["checks"]["overhead"]["after_retrain"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"plans": [{"model": "retail-pd", "plan": {"checks": {"data_drift": {"cadence": "hourly"}}}}]}))
    code, out, err = cli("import", bad)
    assert code != 0 and "plans[0]" in err and "unknown cadence" in err


def test_plans_in_force_equal_plan_in_force_model_by_model(db_url, tmp_path):
    """The batched plans (due pairs, plan adherence) are the per-model plan in force with the
    policy given: the model's own recorded plan, else its tier default with no plan date."""
    from compliance.services import registry
    from compliance.services.plans import plan_in_force, plans_in_force
    from compliance.services.policy import policy_at
    from compliance.store.engine import session_scope
    from compliance.timeutil import utcnow

    _store(db_url, tmp_path)
    with session_scope(db_url) as s:
        registry.add_model(s, "card-fraud", name="Card fraud", owner="bob", tier=2, use="fraud")
    now = utcnow()
    with session_scope(db_url, readonly=True) as s:
        policy = policy_at(s, now)
        tiers = {"retail-pd": 1, "card-fraud": 2}
        got = plans_in_force(s, tiers, now, policy=policy, tiers=tiers)
        for m, tier in tiers.items():
            assert got[m] == plan_in_force(s, m, now, policy=policy, tier=tier)
    assert got["retail-pd"]["explicit"] and not got["card-fraud"]["explicit"]
    assert got["card-fraud"]["since"] is None
