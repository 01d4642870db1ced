"""Budgeted checks through the store and the CLI (DESIGN §9): subsample, seed and intervals
recorded; a whole-data budget reproduces the full check; bad budgets record nothing; an
inconclusive fidelity check neither validates nor breaks a slot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from compliance.analysis.quarter import analyse_quarter
from compliance.interp.synthetic import write_activations, write_saelens
from compliance.store.engine import session_scope
from compliance.store.ledger import head
from compliance.store.models import Check, CheckFeature
from tests.helpers import weights_file
from tests.test_analysis_coverage import POLICY, T, bank as coverage_bank, by_model


@pytest.fixture
def store(cli, tmp_path: Path):
    rng = np.random.default_rng(7)
    sae = tmp_path / "sae"
    write_saelens(sae, rng, 16, 64, hook_name="blocks.0.hook_resid_pre")
    acts = tmp_path / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((4000, 16)).astype(np.float32)})
    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    assert cli("artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", sae, "--id", "sae1")[0] == 0
    ref, cur = tmp_path / "ref.csv", tmp_path / "cur.csv"
    pd.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(size=3000),
                  "c": rng.choice(["x", "y", "z"], 3000)}).to_csv(ref, index=False)
    pd.DataFrame({"a": rng.normal(0.8, 1.0, size=3000), "b": rng.normal(size=3000),
                  "c": rng.choice(["x", "y", "z"], 3000, p=[0.5, 0.3, 0.2])}).to_csv(cur, index=False)
    return {"acts": acts, "ref": ref, "cur": cur}


def _fid(cli, store, *extra):
    code, out, err = cli("check", "fidelity", "sae1", "--activations", store["acts"], "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_budgeted_fidelity_records_seed_rows_and_intervals(cli, store):
    full = _fid(cli, store)
    c = _fid(cli, store, "--budget-rows", "1000", "--seed", "3")
    p, m = c["parameters"], c["metrics"]
    assert p["budget"] == {"seconds": None, "rows": 1000, "seed": 3} and p["seed"] == 3
    assert p["rows_used"] == 1000 and p["rows_available"] == 4000 and m["n_rows"] == 1000
    assert c["status"] in ("pass", "warn", "fail", "inconclusive")
    for key in ("explained_variance", "mse", "cossim", "l0", "l1", "dead_fraction", "dense_fraction"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi, key
    lo, hi = m["ci"]["explained_variance"]
    # one seed: the full value lies within two half-widths (calibration itself is tested over
    # hundreds of subsamples in test_budget_intervals.py)
    assert abs(full["metrics"]["explained_variance"] - m["explained_variance"]) <= (hi - lo)
    assert full["metrics"]["explained_variance"] != m["explained_variance"]  # a subsample, not the file
    again = _fid(cli, store, "--budget-rows", "1000", "--seed", "3")
    assert again["metrics"]["ci"] == m["ci"] and again["metrics"]["explained_variance"] == m["explained_variance"]
    assert cli("verify")[0] == 0


def test_budget_covering_every_row_reproduces_the_full_check(cli, store):
    full = _fid(cli, store)
    c = _fid(cli, store, "--budget-rows", "100000", "--seed", "1")
    m, fm = c["metrics"], full["metrics"]
    assert c["parameters"]["rows_used"] == 4000
    for key in ("explained_variance", "mse", "cossim", "l0", "dead_fraction", "dense_fraction"):
        assert m[key] == pytest.approx(fm[key], rel=1e-5, abs=1e-9), key
        lo, hi = m["ci"][key]
        assert hi - lo == pytest.approx(0, abs=1e-6), key
    assert c["status"] == full["status"]


def test_time_budget_runs(cli, store):
    c = _fid(cli, store, "--budget", "5s")
    assert c["parameters"]["budget"]["seconds"] == 5.0 and isinstance(c["parameters"]["seed"], int)
    assert 0 < c["parameters"]["rows_used"] <= 4000


@pytest.mark.parametrize("args,needle", [
    (("--budget", "0s"), "positive"), (("--budget", "abc"), "malformed duration"),
    (("--budget-rows", "-5"), "positive whole number"), (("--budget-rows", "0"), "positive whole number"),
    (("--seed", "4"), "--budget"),
])
def test_bad_budgets_record_nothing(cli, store, args, needle):
    with session_scope(cli.url, readonly=True) as s:
        before = head(s)
    code, out, err = cli("check", "fidelity", "sae1", "--activations", store["acts"], *args)
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with session_scope(cli.url, readonly=True) as s:
        assert s.scalars(select(Check)).all() == [] and head(s) == before
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--reference", store["ref"], "--current", store["cur"],
                       *args)
    assert code == 2 and needle in err


def test_budgeted_drift_intervals_and_statuses(cli, store):
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--reference", store["ref"], "--current",
                         store["cur"], "--budget-rows", "800", "--seed", "5", "--json")
    assert code == 0, err
    c = json.loads(out)
    p, m = c["parameters"], c["metrics"]
    assert p["rows_used_reference"] == 800 and p["rows_available_current"] == 3000 and p["seed"] == 5
    feats = {f["feature"]: f for f in c["features"]}
    assert set(m["ci"]) == {"a", "b", "c"} and set(m["ci"]["a"]) == {"psi", "ks_stat"}
    for name, f in feats.items():
        lo, hi = m["ci"][name]["psi"]
        assert 0 <= lo <= hi and lo <= f["psi"]  # the upper end may be below a small, upward-biased PSI
    assert feats["a"]["status"] == "fail"  # mean shift of 0.8 sd: PSI far above 0.25
    assert m["ci"]["a"]["psi"][0] > 0.25
    assert feats["b"]["status"] == "pass" and m["ci"]["b"]["psi"][1] < 0.1  # no shift
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--reference", store["ref"], "--current",
                         store["cur"], "--json")
    full = json.loads(out)
    assert c["status"] in (full["status"], "inconclusive")
    assert {f["feature"]: f["status"] for f in full["features"]}["a"] == "fail"
    with session_scope(cli.url, readonly=True) as s:
        assert {r.feature: r.status for r in s.scalars(select(CheckFeature))}["a"] == "fail"


def test_inconclusive_fidelity_is_ignored_by_coverage():
    base = analyse_quarter(coverage_bank(), "2026Q3", T("2026-10-15T00:00:00"), POLICY)
    extra = (
        # an inconclusive check on v2 between the fail (Aug 20) and the pass (Sep 1): still broken
        dict(check_id=90, kind="fidelity", version_id=2, artifact_id="s1", status="inconclusive",
             finished_at=T("2026-08-25T10:00:00"), explained_variance=0.79),
        # e1 never validated on v7: an inconclusive check there leaves it stale, not fresh nor broken
        dict(check_id=91, kind="fidelity", version_id=7, artifact_id="e1", status="inconclusive",
             finished_at=T("2026-08-01T10:00:00"), explained_variance=0.81),
    )
    res = analyse_quarter(coverage_bank(extra), "2026Q3", T("2026-10-15T00:00:00"), POLICY)
    for model in ("A", "E"):
        a, b = by_model(base)[model], by_model(res)[model]
        for key in ("fresh_slot_days", "broken_slot_days", "stale_slot_days", "pending_slot_days", "debt",
                    "coverage", "verdict"):
            assert a[key] == b[key], (model, key)
    assert by_model(res)["A"]["broken_slot_days"] == 12 and by_model(res)["E"]["stale_slot_days"] == 92


# ------------------------------------------------------------------ through the model adapter (sample bank)
@pytest.fixture
def story_copy(bank, tmp_path: Path) -> str:
    """The sample bank imported into a fresh store (no checks yet: every required artifact is due)."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    assert _run(url, "init")[0] == 0
    code, _, err = _run(url, "import", str(bank / "manifest.yaml"))
    assert code == 0, err
    return url


def _run(url, *args):
    from typer.testing import CliRunner

    from compliance.cli.main import app

    r = CliRunner().invoke(app, ["--db", url, *args])
    return r.exit_code, r.stdout, r.stderr


def test_budgeted_fidelity_through_the_adapter_has_downstream_intervals(story_copy, bank):
    code, out, err = _run(story_copy, "check", "fidelity", "retail-pd-sae-l1-v1", "--version", "v4", "--adapter",
                          "--budget-rows", "1500", "--seed", "2", "--json")
    assert code == 0, err
    c = json.loads(out)
    m, p = c["metrics"], c["parameters"]
    assert p["rows_used"] == 1500 and p["rows_available"] > 1500 and p["source"] == "adapter"
    for key in ("explained_variance", "kl", "decision_flip_rate"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi and hi > lo, key
    assert c["status"] in ("pass", "warn", "fail", "inconclusive")
    if c["status"] == "inconclusive":
        assert m["rows_to_decide"] > 1500 and any("rows would likely decide" in r for r in c["reasons"])


def test_budgeted_activation_drift(story_copy, bank):
    data = sorted((bank / "data").glob("loans_*.parquet"))
    assert len(data) >= 2
    code, out, err = _run(story_copy, "check", "activation-drift", "retail-pd-sae-l1-v1", "--version", "v1",
                          "--reference", str(data[0]), "--current", str(data[-1]), "--budget-rows", "1000", "--seed",
                          "4", "--json")
    assert code == 0, err
    c = json.loads(out)
    m, p = c["metrics"], c["parameters"]
    assert p["rows_used_reference"] == 1000 and p["seed"] == 4
    assert set(m["ci"]) >= {"psi", "ks_statistic", "n_newly_dead", "dead_fraction_current", "dense_fraction_current"}
    assert c["status"] in ("pass", "warn", "fail", "inconclusive")


def test_due_checks_share_a_row_budget_by_debt(story_copy, bank):
    code, out, err = _run(story_copy, "check", "run", "--due", "--at", "2027-01-15", "--budget-rows", "4000",
                          "--seed", "9", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["budget"] == {"seconds": None, "rows": 4000, "seed": 9}
    first = [r for r in o["ran"] if not r["escalated"]]
    assert first and sum(r["rows_used"] for r in o["ran"]) <= 4000
    debts = [r["weighted_debt_outstanding"] for r in first]
    assert debts == sorted(debts, reverse=True)  # highest tier-weighted outstanding debt first
    assert all(r["kind"] in ("sae", "transcoder") for r in o["ran"])
    assert {n["why"] for n in o["not_run"]} <= {"budget spent", "clt artifacts are not checked under a budget",
                                               "attribution_baseline artifacts are not checked under a budget"}
    assert sum(r["rows_used"] for r in first) <= 0.6 * 4000  # the rest is kept for escalation
    for r in o["ran"]:
        if r["escalated"]:
            assert any(x["artifact_id"] == r["artifact_id"] and x["status"] == "inconclusive" for x in first)
    code, out, err = _run(story_copy, "check", "run", "--due", "--budget", "never")
    assert code == 2 and "malformed duration" in err
