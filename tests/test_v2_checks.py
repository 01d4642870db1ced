"""Methodology v2, checks and records: column roles, drift by role (key drivers, label shift),
development data as the default reference, no look-ahead, protected probes, CLT per layer,
acceptances and detection after every check. Hand-worked fixtures, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import func, select

from compliance.interp.synthetic import write_activations, write_saelens
from compliance.store.engine import session_scope
from compliance.store.ledger import head
from compliance.store.models import Acceptance, Check, CheckFeature, Dataset, FailureModeOccurrence, FailureModeStatusEvent
from tests.helpers import weights_file

OWNER, DEV, VALIDATOR = "alice", "tester", "carol"


def _head(url):
    with session_scope(url, readonly=True) as s:
        return head(s), s.scalar(select(func.count()).select_from(Check)), s.scalar(select(func.count()).select_from(Acceptance))


def _frame(rng, n=3000, shift=None, target_rate=0.1):
    """Inputs a..f (a, b numeric; c categorical...), a label and an id. ``shift``: columns to move."""
    shift = set(shift or ())
    cols = {}
    for name in "abcdef":
        cols[name] = rng.normal(1.5 if name in shift else 0.0, 1.0, n)
    cols["default_12m"] = (rng.uniform(size=n) < target_rate).astype(int)
    cols["loan_id"] = np.arange(n)
    return pd.DataFrame(cols)


@pytest.fixture
def m(cli, tmp_path: Path):
    """Model m (owner alice) with version v1 recorded by `tester` (a developer)."""
    assert cli("model", "add", "m", "--name", "M", "--owner", OWNER, "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"),
               "--data-window", "2025-01-01..2025-06-30")[0] == 0
    return tmp_path


# ---------------------------------------------------------------- column roles
def test_roles_given_inferred_and_stored(cli, m):
    rng = np.random.default_rng(0)
    p = m / "d.parquet"
    _frame(rng).to_parquet(p)
    code, out, err = cli("data", "add", "m", "--path", p, "--role", "input=a,b,c", "--role", "protected=a", "--json")
    assert code == 0, err
    d = json.loads(out)
    # the label is never an input; unlisted columns are not inputs when inputs are listed
    assert d["columns"] == {"input": ["a", "b", "c"], "protected": ["a"], "target": ["default_12m"], "id": ["loan_id"]}
    assert "warning: column roles inferred" in err and "target: default_12m" in err
    code, out, err = cli("data", "add", "m", "--path", p, "--json")  # nothing given: all inferred, with a warning
    assert code == 0
    cols = json.loads(out)["columns"]
    assert cols["target"] == ["default_12m"] and cols["id"] == ["loan_id"] and "default_12m" not in cols["input"]
    assert "warning" in err
    with session_scope(cli.url, readonly=True) as s:
        assert [d.columns["input"] for d in s.scalars(select(Dataset).order_by(Dataset.id))] == [["a", "b", "c"], list("abcdef")]


def test_roles_bad_input_records_nothing(cli, m):
    rng = np.random.default_rng(0)
    p = m / "d.csv"
    _frame(rng, n=50).to_csv(p, index=False)
    before = _head(cli.url)
    for args, needle in ((["--role", "input=a,zz"], "not in the file: zz"),
                         (["--role", "input=a,default_12m", "--role", "target=default_12m"], "both an input and a target"),
                         (["--role", "colour=a"], "unknown column role"),
                         (["--role", "input=a", "--version", "v9"], "unknown version")):
        code, _, err = cli("data", "add", "m", "--path", p, *args)
        assert code != 0 and needle in err and err.count("\n") == 1, err
    assert _head(cli.url) == before


def test_roles_in_manifest(cli, tmp_path: Path):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    _frame(rng, n=100).to_parquet(tmp_path / "data" / "dev.parquet")
    weights_file(tmp_path / "w.safetensors")
    doc = {"format": "compliance-manifest/1",
           "models": [{"id": "m", "name": "M", "owner": OWNER, "tier": 1, "use": "x"}],
           "versions": [{"model": "m", "version": "v1", "weights": "w.safetensors"}],
           "datasets": [{"model": "m", "path": "data/dev.parquet", "role": "train", "version": "v1",
                         "columns": {"input": ["a", "b"], "target": ["default_12m"], "id": ["loan_id"]}}]}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(doc))
    code, _, err = cli("import", tmp_path / "manifest.yaml")
    assert code == 0, err
    with session_scope(cli.url, readonly=True) as s:
        d = s.scalars(select(Dataset)).one()
        assert d.columns == {"input": ["a", "b"], "target": ["default_12m"], "id": ["loan_id"]} and d.version_id is not None


# ---------------------------------------------------------------- drift by role
def _drift_bank(cli, m, *, cur_shift, key_drivers=None):
    rng = np.random.default_rng(1)
    dev, cur = m / "dev.parquet", m / "cur.parquet"
    _frame(rng).to_parquet(dev)
    frame = _frame(rng, shift=[c for c in cur_shift if c != "default_12m"],
                   target_rate=0.5 if "default_12m" in cur_shift else 0.1)
    frame.to_parquet(cur)
    roles = ["--role", "input=a,b,c,d,e,f", "--role", "target=default_12m", "--role", "id=loan_id"]
    assert cli("data", "add", "m", "--path", dev, "--role", "train", "--version", "v1", *roles)[0] == 0
    assert cli("data", "add", "m", "--path", cur, "--window", "2025-07-01..2025-09-30", *roles)[0] == 0
    if key_drivers:
        pol = m / "pol.yaml"
        pol.write_text(yaml.safe_dump({"key_drivers": {"m": key_drivers}}))
        assert cli("policy", "set", "--file", pol)[0] == 0
    return dev, cur


def test_key_driver_failing_alone_fails_the_dataset(cli, m):
    _, cur = _drift_bank(cli, m, cur_shift=["a"], key_drivers=["a", "b"])
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--current", cur, "--json")
    assert code == 0, err
    c = json.loads(out)
    mt = c["metrics"]
    # 1 of 6 inputs failed (share 0.17 < 0.3): v1 would have warned; the key driver fails the dataset
    assert mt["n_inputs_failed"] == 1 and mt["input_failed_share"] < 0.3
    assert c["status"] == "fail" and mt["key_drivers_failed"] == ["a"]
    assert any("key driver" in r and "a (PSI" in r for r in c["reasons"])
    assert mt["key_driver_source"] == "policy key_drivers"


def test_a_non_key_input_failing_alone_warns(cli, m):
    _, cur = _drift_bank(cli, m, cur_shift=["c"], key_drivers=["a", "b"])
    c = json.loads(cli("check", "drift", "m", "--version", "v1", "--current", cur, "--json")[1])
    assert c["status"] == "warn" and c["metrics"]["key_drivers_failed"] == []


def test_share_rule_and_no_key_drivers_known(cli, m):
    _, cur = _drift_bank(cli, m, cur_shift=["c", "d"])
    c = json.loads(cli("check", "drift", "m", "--version", "v1", "--current", cur, "--json")[1])
    assert c["metrics"]["input_failed_share"] == pytest.approx(2 / 6) and c["status"] == "fail"
    assert any("no key drivers known" in r for r in c["reasons"])


def test_drifting_target_is_label_shift_not_input_drift(cli, m):
    _, cur = _drift_bank(cli, m, cur_shift=["default_12m"])
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--current", cur, "--json")
    assert code == 0, err
    c = json.loads(out)
    mt = c["metrics"]
    assert c["status"] == "pass" and mt["n_drifted"] == 0 and mt["n_features"] == 6
    assert mt["label_shift_status"] == "fail" and mt["label_shift"]["default_12m"]["status"] == "fail"
    assert any(r.startswith("label shift (fail") for r in c["reasons"])
    assert "loan_id" in c["parameters"]["skipped"]
    with session_scope(cli.url, readonly=True) as s:
        kinds = dict(s.execute(select(CheckFeature.feature, CheckFeature.feature_kind)
                               .where(CheckFeature.check_id == c["id"])).all())
    assert kinds["default_12m"] == "target" and kinds["a"] == "numeric" and "loan_id" not in kinds


def test_default_reference_is_the_development_data_and_is_recorded(cli, m):
    dev, cur = _drift_bank(cli, m, cur_shift=[])
    c = json.loads(cli("check", "drift", "m", "--version", "v1", "--current", cur, "--json")[1])
    ref = c["parameters"]["reference_data"]
    assert ref["default"] is True and ref["path"] == str(dev.resolve()) and ref["basis"] == "development data of v1"
    assert ref["dataset_id"] == 1 and len(ref["sha256"]) == 64
    c2 = json.loads(cli("check", "drift", "m", "--version", "v1", "--reference", dev, "--current", cur, "--json")[1])
    assert c2["parameters"]["reference_data"]["default"] is False


def test_no_development_data_is_a_clear_error(cli, m):
    rng = np.random.default_rng(1)
    cur = m / "cur.csv"
    _frame(rng, n=100).to_csv(cur, index=False)
    before = _head(cli.url)
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--current", cur)
    assert code == 1 and "no development data registered for m v1" in err and err.count("\n") == 1
    assert _head(cli.url) == before


# ---------------------------------------------------------------- no look-ahead
def test_look_ahead_is_refused_and_the_store_unchanged(cli, m):
    rng = np.random.default_rng(1)
    dev, cur = m / "dev.parquet", m / "cur.parquet"
    _frame(rng).to_parquet(dev)
    _frame(rng).to_parquet(cur)
    assert cli("data", "add", "m", "--path", dev, "--role", "train", "--version", "v1")[0] == 0
    from datetime import date, timedelta

    start, end = date.today() + timedelta(days=30), date.today() + timedelta(days=120)  # not over yet
    assert cli("data", "add", "m", "--path", cur, "--window", f"{start}..{end}")[0] == 0
    before = _head(cli.url)
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--current", cur)
    assert code == 1 and err.startswith(f"error: look-ahead refused: the current window ends {end}") \
        and err.count("\n") == 1, err
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--reference", cur, "--current", dev)
    assert code == 1 and "look-ahead refused: the reference window" in err
    code, _, err = cli("check", "drift", "m", "--version", "v1", "--current", dev, "--window", f"2025-01-01..{end}")
    assert code == 1 and "look-ahead refused" in err
    assert _head(cli.url) == before


def test_look_ahead_in_a_replay_uses_the_store_clock(tmp_path):
    """A replayed history is held to its own clock: data of a quarter cannot be used inside it."""
    from compliance.api import Store
    from compliance.errors import LookAhead

    rng = np.random.default_rng(1)
    t = [datetime(2026, 7, 6, tzinfo=timezone.utc)]
    # a replay writes after the ledger head: a store of its own, initialised at the replay's clock
    db_url = f"sqlite:///{tmp_path / 'replay.db'}"
    store = Store(db_url, actor="ml-platform", clock=lambda: t[0], replay=True)
    store.init()
    store.add_model("m", name="M", owner=OWNER, tier=1, use="x")
    store.add_version("m", "v1", weights=weights_file(tmp_path / "w.safetensors"))
    dev, cur = tmp_path / "dev.parquet", tmp_path / "q3.parquet"
    _frame(rng).to_parquet(dev)
    _frame(rng, shift=["a"]).to_parquet(cur)
    store.add_dataset("m", path=dev, role="train", version="v1")
    store.add_dataset("m", path=cur, window="2026-07-01..2026-09-30")
    before = _head(db_url)
    with pytest.raises(LookAhead, match="window ends 2026-09-30"):
        store.check_drift("m", "v1", current=cur)
    with pytest.raises(LookAhead):  # 23:00 on the last day: the window is not complete yet
        t[0] = datetime(2026, 9, 30, 23, tzinfo=timezone.utc)
        store.check_drift("m", "v1", current=cur)
    assert _head(db_url) == before
    t[0] = datetime(2026, 10, 1, tzinfo=timezone.utc)
    c = store.check_drift("m", "v1")  # current defaults to the latest ended production window
    assert c["parameters"]["current_data"]["window"] == ["2026-07-01", "2026-09-30"] and c["status"] in ("warn", "fail")


# ---------------------------------------------------------------- CLT: worst layer
def test_clt_one_failing_layer_with_passing_pooled_ev_fails(cli, m):
    import torch

    from compliance.interp.loaders import load_artifact
    from compliance.interp.synthetic import write_clt

    rng = np.random.default_rng(5)
    L, d, k, n = 2, 6, 12, 400
    folder = m / "clt"
    write_clt(folder, rng, L, d, k)
    from safetensors.numpy import load_file, save_file

    dec0 = load_file(str(folder / "W_dec_0.safetensors"))
    dec0["W_dec_0"][:, 0, :] *= 20.0  # layer 0's output dominates the pooled variance
    save_file(dec0, str(folder / "W_dec_0.safetensors"))
    coder = load_artifact(folder, dtype=torch.float32)
    xs = [rng.standard_normal((n, d)).astype(np.float32) for i in range(L)]
    with torch.no_grad():
        yh = [y.numpy() for y in coder.decode(coder.encode([torch.from_numpy(x) for x in xs]))]
    ys = [yh[0], yh[1] + rng.standard_normal(yh[1].shape).astype(np.float32) * yh[1].std(0)]
    acts = m / "acts.safetensors"
    write_activations(acts, {f"inputs_{i}": xs[i] for i in range(L)} | {f"targets_{i}": ys[i] for i in range(L)})
    assert cli("artifact", "add", "m", "--kind", "clt", "--bound-version", "v1", "--path", folder, "--id", "clt1")[0] == 0
    code, out, err = cli("check", "fidelity", "clt1", "--activations", acts, "--json")
    assert code == 0, err
    c = json.loads(out)
    layers = c["metrics"]["per_layer"]
    assert c["metrics"]["explained_variance"] >= 0.8  # the pooled figure passes...
    assert layers[0]["explained_variance"] > 0.99 and layers[1]["explained_variance"] < 0.6  # ...one layer fails
    assert c["status"] == "fail" and any(r.startswith("fail: layer 1: explained variance") for r in c["reasons"])
    assert "FM-DECAY" in c["flags"]


def test_clt_status_is_the_worst_layer_pure():
    from compliance.interp.status import fidelity_status
    from compliance.policy_defaults import default_policy, policy_for_tier

    metrics = {"explained_variance": 0.9, "dead_fraction": 0.0, "dense_fraction": 0.0,
               "per_layer": [{"layer": 0, "explained_variance": 0.95}, {"layer": 1, "explained_variance": 0.562},
                             {"layer": 2, "explained_variance": 0.7}]}
    pol = default_policy()
    assert fidelity_status(metrics, None, pol)[0] == "fail"
    metrics["per_layer"][1]["explained_variance"] = 0.7
    assert fidelity_status(metrics, None, pol)[0] == "warn"
    pol["tiers"]["2"] = {"fidelity": {"ev_warn": 0.65, "ev_fail": 0.5}}
    assert fidelity_status(metrics, None, policy_for_tier(pol, 2))[0] == "pass"
    assert fidelity_status(metrics, None, policy_for_tier(pol, 1))[0] == "warn"


# ---------------------------------------------------------------- acceptances
@pytest.fixture
def warned(cli, m):
    """A warn fidelity check of an SAE (EV between the floors), recorded by the developer."""
    rng = np.random.default_rng(7)
    sae = m / "sae"
    write_saelens(sae, rng, 16, 64, hook_name="blocks.0.hook_resid_pre")
    assert cli("artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", sae, "--id", "sae1")[0] == 0
    acts = m / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((500, 16)).astype(np.float32)})
    c = json.loads(cli("check", "fidelity", "sae1", "--activations", acts, "--json")[1])
    pol = m / "pol.yaml"  # set the floors around the measured EV, so this check is a warn by policy
    ev = c["explained_variance"]
    pol.write_text(yaml.safe_dump({"fidelity": {"ev_warn": ev + 0.05, "ev_fail": ev - 0.05, "dead_fraction_warn": 1.0,
                                                "dense_fraction_warn": 1.0}}))
    assert cli("policy", "set", "--file", pol)[0] == 0
    c = json.loads(cli("check", "fidelity", "sae1", "--activations", acts, "--json")[1])
    assert c["status"] == "warn", c["reasons"]
    return c


def test_accept_by_owner_or_developer_is_refused(cli, warned):
    before = _head(cli.url)
    code, _, err = cli("check", "accept", warned["id"], "--rationale", "fine", actor=OWNER)
    assert code == 1 and "segregation of duties: alice owns m" in err and err.count("\n") == 1
    code, _, err = cli("check", "accept", warned["id"], "--rationale", "fine", actor=DEV)
    assert code == 1 and "tester is a developer of m" in err
    assert _head(cli.url) == before


def test_accept_by_validator_is_recorded(cli, warned):
    code, out, err = cli("check", "accept", warned["id"], "--rationale", "EV adequate for reason codes", "--json",
                         actor=VALIDATOR)
    assert code == 0, err
    a = json.loads(out)
    assert a["check_id"] == warned["id"] and a["actor"] == VALIDATOR and a["occurrence_id"] is None
    code, _, err = cli("check", "accept", warned["id"], "--rationale", "again", actor=VALIDATOR)
    assert code == 1 and "already accepted" in err
    shown = json.loads(cli("check", "show", warned["id"], "--json")[1])
    assert [(x["actor"], x["rationale"]) for x in shown["acceptances"]] == [(VALIDATOR, "EV adequate for reason codes")]
    assert cli("verify")[0] == 0


def test_only_a_warn_fidelity_check_can_be_accepted(cli, warned):
    before = _head(cli.url)
    code, _, err = cli("check", "accept", 1, "--rationale", "x", actor=VALIDATOR)  # the first check passed or failed
    assert code == 1 and "only a warn check can be accepted" in err
    code, _, err = cli("check", "accept", warned["id"], "--rationale", " ", actor=VALIDATOR)
    assert code == 2 and "rationale" in err
    assert _head(cli.url) == before


def test_failure_mode_accept(cli, warned):
    with session_scope(cli.url, readonly=True) as s:
        occ = s.scalars(select(FailureModeOccurrence).order_by(FailureModeOccurrence.id)).first()
        assert occ is not None
        occ_id = occ.id
    assert occ_id  # detection ran after the checks (the SAE was never deployed: at least FM-DECAY/FM-DEAD)
    before = _head(cli.url)
    code, _, err = cli("failure-modes", "accept", occ_id, "--rationale", "ok", actor=OWNER)
    assert code == 1 and "owns m" in err and _head(cli.url) == before
    code, _, err = cli("failure-modes", "update", occ_id, "--status", "accepted", "--rationale", "ok", actor=DEV)
    assert code == 1 and "developer of m" in err and _head(cli.url) == before
    code, out, err = cli("failure-modes", "accept", occ_id, "--rationale", "manual review", "--json", actor=VALIDATOR)
    assert code == 0, err
    with session_scope(cli.url, readonly=True) as s:
        a = s.scalars(select(Acceptance)).one()
        ev = s.scalars(select(FailureModeStatusEvent).where(FailureModeStatusEvent.occurrence_id == occ_id)
                       .order_by(FailureModeStatusEvent.id.desc())).first()
        assert a.occurrence_id == occ_id and a.actor == VALIDATOR and ev.status == "accepted" and ev.actor == VALIDATOR
    assert cli("verify")[0] == 0


# ---------------------------------------------------------------- detection after every check
def test_a_failing_fidelity_check_opens_fm_decay_at_once(cli, m):
    rng = np.random.default_rng(3)
    sae = m / "sae"
    write_saelens(sae, rng, 16, 64, hook_name="blocks.0.hook_resid_pre")
    assert cli("artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", sae, "--id", "sae1")[0] == 0
    assert cli("deploy", "m", "v1", "--at", "2025-10-01T00:00:00Z")[0] == 0
    acts = m / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((300, 16)).astype(np.float32)})
    code, out, err = cli("check", "fidelity", "sae1", "--activations", acts, "--json")
    c = json.loads(out)
    assert c["status"] == "fail" and "FM-DECAY" in c["flags"], c["reasons"]  # a random SAE reconstructs nothing
    with session_scope(cli.url, readonly=True) as s:
        occ = s.scalars(select(FailureModeOccurrence).where(FailureModeOccurrence.code == "FM-DECAY")).all()
        assert [o.check_id for o in occ] == [c["id"]]
        assert occ[0].detected_at == s.get(Check, c["id"]).recorded_at  # detected by the same command


# ---------------------------------------------------------------- protected-attribute probes
def test_protected_probe_judged_by_auc():
    from compliance.interp.status import probe_status
    from compliance.policy_defaults import default_policy, policy_for_tier

    pol = default_policy()
    assert probe_status(0.95, pol, protected=False)[0] == "pass"
    assert probe_status(0.95, pol, protected=True)[0] == "fail"
    assert probe_status(0.75, pol, protected=True)[0] == "warn"
    assert probe_status(0.65, pol, protected=True)[0] == "pass"
    pol["tiers"]["1"] = {"probe": {"protected_auc_warn": 0.6}}
    assert probe_status(0.65, policy_for_tier(pol, 1), protected=True)[0] == "warn"
