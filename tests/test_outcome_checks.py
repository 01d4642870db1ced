"""Performance and fairness checks through the CLI and the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from compliance.store.engine import session_scope
from compliance.store.ledger import head, record
from compliance.store.models import Check, Dataset
from tests.helpers import weights_file

sk = pytest.importorskip("sklearn.metrics")


def _labelled(n: int, seed: int, now: datetime, *, separation: float = 3.0, matured_share: float = 0.5) -> pd.DataFrame:
    """Scored decisions: the first ``matured_share`` decided 400 days ago (outcome matured under a
    365-day window), the rest 100 days ago (outcome recorded in the file but not yet matured)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    pd_ = 1 / (1 + np.exp(-(z * separation / 3 - 1.5)))
    y = (rng.random(n) < pd_).astype(float)
    k = int(n * matured_share)
    t = [now - timedelta(days=400)] * k + [now - timedelta(days=100)] * (n - k)
    band = np.where(rng.random(n) < 0.5, "18-30", "31-65")
    return pd.DataFrame({"pd": pd_, "defaulted": y, "decided_at": pd.to_datetime(t, utc=True), "age_band": band,
                         "sex": np.where(rng.random(n) < 0.5, "F", "M"), "w": rng.random(n) + 0.5})


@pytest.fixture
def bank(cli, tmp_path: Path):
    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    now = datetime.now(timezone.utc)
    df = _labelled(4000, 1, now)
    df.loc[df.index[-10:], "defaulted"] = np.nan  # outcome not known at all
    p = tmp_path / "outcomes.parquet"
    df.to_parquet(p, index=False)
    return {"df": df, "path": p, "tmp": tmp_path, "now": now}


def _count(url: str) -> tuple[int, str | None]:
    with session_scope(url, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Check)), head(s)


BASE = ["--target", "defaulted", "--score", "pd", "--timestamp", "decided_at", "--threshold", "0.3"]


def test_performance_judges_matured_rows_only(cli, bank):
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *BASE, "--json")
    assert code == 0, err
    c = json.loads(out)
    m = c["metrics"]
    assert c["kind"] == "performance" and c["version"] == "v1" and c["formula_version"] == "performance-1"
    # half the rows have not matured; 10 more have no outcome at all (they are among the unmatured half)
    assert m["n_rows_file"] == 4000 and m["n_matured"] == 2000 and m["n_not_matured"] == 1990 and m["n_unlabelled"] == 10
    df = bank["df"].iloc[:2000]
    assert abs(m["auc"] - sk.roc_auc_score(df["defaulted"], df["pd"])) < 1e-9
    assert abs(m["brier"] - sk.brier_score_loss(df["defaulted"], df["pd"])) < 1e-9
    assert m["auc_lower"] < m["auc"] < m["auc_upper"] and len(m["calibration"]) == 10
    assert c["parameters"]["threshold"] == 0.3 and c["parameters"]["threshold_source"] == "option"
    assert c["parameters"]["maturity_days"] == 365 and c["input_hashes"]["data"]
    assert m["baseline_auc"] is None  # nothing to back-test against yet
    # the human output says how many rows were judged
    code, out, _ = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *BASE)
    assert code == 0 and "2000 of 4000 rows judged (1990 not matured, 10 without an outcome)" in out
    # the second check back-tests against the first one recorded on the version
    code, out, _ = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *BASE, "--maturity-days", "0",
                       "--json")
    m2 = json.loads(out)["metrics"]
    assert m2["n_matured"] == 3990 and m2["baseline_source"].startswith("first check") and m2["baseline_auc"] == m["auc"]
    assert cli("verify")[0] == 0


def test_performance_weights_and_reference(cli, bank):
    tmp, now = bank["tmp"], bank["now"]
    ref = tmp / "dev.parquet"
    _labelled(3000, 2, now, separation=6.0, matured_share=1.0).to_parquet(ref, index=False)
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *BASE,
                         "--weight", "w", "--reference", ref, "--json")
    assert code == 0, err
    c = json.loads(out)
    m = c["metrics"]
    df = bank["df"].iloc[:2000]
    assert abs(m["auc"] - sk.roc_auc_score(df["defaulted"], df["pd"], sample_weight=df["w"])) < 1e-9
    dev = pd.read_parquet(ref)
    assert abs(m["baseline_auc"] - sk.roc_auc_score(dev["defaulted"], dev["pd"], sample_weight=dev["w"])) < 1e-9
    assert m["auc_drop"] > 0.10 and c["status"] == "fail" and any("dropped" in r for r in c["reasons"])
    assert m["score_psi"] is not None and set(c["input_hashes"]) == {"data", "reference"}


def test_label_lag_with_a_replayed_clock(db_url, bank):
    """The check time is the store's clock: the same file judged a year later has every row matured."""
    from compliance.services.outcomes import run_performance

    later = bank["now"] + timedelta(days=300)
    with session_scope(db_url, clock=lambda: later, replay=True) as s:
        c = run_performance(s, "m", "v1", data=bank["path"], target="defaulted", score="pd", timestamp="decided_at")
    assert c["metrics"]["n_matured"] == 3990 and c["metrics"]["n_not_matured"] == 0
    assert c["finished_at"] == later.isoformat() or str(c["finished_at"]).startswith(later.date().isoformat())


def test_registered_column_roles_are_used(cli, bank):
    with session_scope(cli.url) as s:
        from compliance.hashing import sha256_file

        record(s, Dataset(model_id="m", role="production", path=str(bank["path"]), sha256=sha256_file(bank["path"]),
                          columns={"target": ["defaulted"], "score": ["pd"], "timestamp": ["decided_at"],
                                   "protected": ["age_band", "sex"], "weight": ["w"]}))
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], "--json")
    assert code == 0, err
    c = json.loads(out)
    assert c["metrics"]["n_matured"] == 2000 and c["parameters"]["column_source"]["target"].startswith("dataset")
    assert c["parameters"]["threshold"] == 0.5 and c["parameters"]["threshold_source"] == "default"
    code, out, err = cli("check", "fairness", "m", "--version", "v1", "--data", bank["path"], "--json")
    assert code == 0, err
    f = json.loads(out)
    assert [a["attribute"] for a in f["metrics"]["attributes"]] == ["age_band", "sex"]


@pytest.mark.parametrize("args,needle", [
    (["--target", "nope", "--score", "pd"], "no column 'nope'"),
    (["--target", "age_band", "--score", "pd"], "not numeric"),
    (["--target", "pd", "--score", "pd"], "must be 0/1"),
    (["--score", "pd"], "no target column"),
    (["--target", "defaulted"], "no adapter"),
    (["--target", "defaulted", "--score", "pd", "--timestamp", "age_band"], "not a date"),
    (["--target", "defaulted", "--score", "pd", "--timestamp", "decided_at", "--maturity-days", "100000"], "no row has a matured"),
    (["--target", "defaulted", "--score", "pd", "--calibration", "equal"], "quantile or uniform"),
])
def test_bad_input_records_nothing(cli, bank, args, needle):
    before = _count(cli.url)
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *args)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _count(cli.url) == before


def test_one_outcome_class_is_a_clear_error(cli, bank):
    df = bank["df"].copy()
    df["defaulted"] = 0.0
    p = bank["tmp"] / "allgood.csv"
    df.to_csv(p, index=False)
    before = _count(cli.url)
    code, _, err = cli("check", "performance", "m", "--version", "v1", "--data", p, "--target", "defaulted", "--score", "pd")
    assert code == 1 and "one outcome class" in err and _count(cli.url) == before
    code, _, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["tmp"] / "none.csv", "--target", "y")
    assert code == 1 and "no such file" in err


def _fair_frame(n_a: int, n_b: int, appr_a: float, appr_b: float, n_c: int = 10) -> pd.DataFrame:
    rows = []
    for g, n, appr in (("A", n_a, appr_a), ("B", n_b, appr_b), ("C", n_c, 0.0)):
        k = int(round(n * appr))
        rows += [(g, 0.1, i % 5 == 0) for i in range(k)] + [(g, 0.9, i % 2 == 0) for i in range(n - k)]
    return pd.DataFrame(rows, columns=["age_band", "pd", "defaulted"]).astype({"defaulted": float})


def test_fairness_four_fifths_and_fm_protected(cli, bank):
    tmp = bank["tmp"]
    warn = tmp / "warn.csv"
    _fair_frame(200, 200, 0.8, 0.62).to_csv(warn, index=False)
    code, out, err = cli("check", "fairness", "m", "--version", "v1", "--data", warn, "--protected", "age_band",
                         "--score", "pd", "--target", "defaulted", "--json")
    assert code == 0, err
    c = json.loads(out)
    groups = {g["group"]: g for g in c["metrics"]["attributes"][0]["groups"]}
    assert c["kind"] == "fairness" and c["status"] == "warn" and c["flags"] == []
    assert abs(groups["B"]["air"] - 0.62 / 0.8) < 1e-12 and groups["A"]["reference"]
    assert groups["C"]["status"] == "too_small" and groups["C"]["air"] is None
    assert any("not judged" in r and "age_band=C" in r for r in c["reasons"])
    fail = tmp / "fail.csv"
    _fair_frame(200, 200, 0.8, 0.4).to_csv(fail, index=False)
    code, out, err = cli("check", "fairness", "m", "--version", "v1", "--data", fail, "--protected", "age_band",
                         "--score", "pd", "--json")
    assert code == 0, err
    c = json.loads(out)
    assert c["status"] == "fail" and c["flags"] == ["FM-PROTECTED"]
    assert any("age_band=B adverse impact ratio 0.500" in r for r in c["reasons"])
    code, out, _ = cli("check", "fairness", "m", "--version", "v1", "--data", fail, "--protected", "age_band", "--score", "pd")
    assert code == 0 and "age_band (reference: A)" in out
    before = _count(cli.url)
    code, _, err = cli("check", "fairness", "m", "--version", "v1", "--data", fail, "--score", "pd")
    assert code == 1 and "no protected attribute" in err and _count(cli.url) == before
    code, _, err = cli("check", "fairness", "m", "--version", "v1", "--data", fail, "--score", "pd", "--protected", "sex")
    assert code == 1 and "no column 'sex'" in err and _count(cli.url) == before
    code, _, err = cli("check", "fairness", "m", "--version", "v1", "--data", bank["path"], "--score", "pd",
                       "--protected", "w")
    assert code == 1 and "give a banded column" in err and _count(cli.url) == before
    assert cli("verify")[0] == 0


def test_scores_threshold_and_development_auc_from_the_adapter(cli, tmp_path):
    """No score column: the version scores the rows through its adapter; the threshold and the
    development AUC come from the version's own weights metadata."""
    torch = pytest.importorskip("torch")
    from sample_data import adapter
    from sample_data.models import Encoding, ResidualMLP, save_model

    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame({"income": rng.lognormal(10, 0.5, n), "util": rng.random(n), "region": rng.choice(["n", "s"], n)})
    enc = Encoding.fit(df, [("income", True), ("util", False)], ["region"])
    torch.manual_seed(0)
    model = ResidualMLP(enc.n_inputs, 8, 16, 1)
    w = tmp_path / "v1.safetensors"
    save_model(model, w, arch=dict(n_inputs=enc.n_inputs, d_model=8, d_mlp=16, n_blocks=1), encoding=enc,
               label_column="defaulted", decision_threshold=0.42, extra={"development_auc": "0.91"})
    lm = adapter.load(w)
    with torch.no_grad():
        p = torch.sigmoid(lm.module(lm.encode_inputs(df)).double()).numpy()
    df["defaulted"] = (rng.random(n) < p).astype(float)
    data = tmp_path / "labelled.csv"
    df.to_csv(data, index=False)
    assert cli("model", "add", "a", "--name", "A", "--owner", "o", "--tier", "2", "--use", "credit",
               "--adapter", "sample_data.adapter:load")[0] == 0
    assert cli("version", "add", "a", "v1", "--weights", w)[0] == 0
    code, out, err = cli("check", "performance", "a", "--version", "v1", "--data", data, "--target", "defaulted", "--json")
    assert code == 0, err
    c = json.loads(out)
    m = c["metrics"]
    assert c["parameters"]["score_source"] == "adapter (v1)" and c["parameters"]["threshold"] == 0.42
    assert c["parameters"]["threshold_source"] == "adapter (v1)" and c["input_hashes"]["weights"]
    assert abs(m["auc"] - sk.roc_auc_score(df["defaulted"], p)) < 1e-6  # float32 forward
    assert m["baseline_auc"] == 0.91 and m["baseline_source"] == "version v1 metadata"
    assert abs(m["alert_rate"] - (p >= 0.42).mean()) < 0.01


def test_fairness_fail_opens_fm_protected_once_and_tier_overrides_apply(cli, bank):
    tmp = bank["tmp"]
    fail = tmp / "fail.csv"
    _fair_frame(200, 200, 0.8, 0.4).to_csv(fail, index=False)
    args = ["check", "fairness", "m", "--version", "v1", "--data", fail, "--protected", "age_band", "--score", "pd", "--json"]
    first = json.loads(cli(*args)[1])
    assert first["flags"] == ["FM-PROTECTED"]
    assert json.loads(cli(*args)[1])["flags"] == ["FM-PROTECTED"]  # the same episode
    assert cli("failure-modes", "detect")[0] == 0
    code, out, _ = cli("failure-modes", "list", "--json")
    occ = [o for o in json.loads(out) if o["code"] == "FM-PROTECTED"]
    assert len(occ) == 1 and occ[0]["check_id"] == first["id"] and occ[0]["status"] == "open"
    # a tier-1 override: AIR 0.5 is tolerated (warn only) when the tier's fail floor is 0.4
    pol = tmp / "policy.yaml"
    pol.write_text("tiers:\n  '1':\n    fairness:\n      air_fail: 0.4\n", encoding="utf-8")
    assert cli("policy", "set", "--file", pol)[0] == 0
    c = json.loads(cli(*args)[1])
    assert c["status"] == "warn" and c["flags"] == []
    # performance thresholds per tier too
    pol.write_text("tiers:\n  '1':\n    performance:\n      auc_warn: 0.99\n", encoding="utf-8")
    assert cli("policy", "set", "--file", pol)[0] == 0
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", bank["path"], *BASE, "--json")
    assert code == 0, err
    assert any("AUC" in r and "< 0.99" in r for r in json.loads(out)["reasons"])
