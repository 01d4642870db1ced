"""The sample bank's labelled outcome files and the outcome checks on the bank's real models."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest

from sample_data.outcomes import outcome_frame, write_outcome_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outcomes(bank, tmp_path_factory):
    out = tmp_path_factory.mktemp("outcomes")
    write_outcome_files(bank, date(2026, 10, 1), out)
    return out


def test_labels_are_blank_until_they_mature(bank, outcomes):
    loans = pd.read_parquet(outcomes / "loans_2025Q4.parquet")
    raw = pd.read_parquet(bank / "data/loans_2025Q4.parquet")
    known = loans["default_12m"].notna()
    assert (pd.to_datetime(loans.loc[known, "applied_on"]) <= pd.Timestamp("2025-10-01")).all()
    assert (pd.to_datetime(loans.loc[~known, "applied_on"]) > pd.Timestamp("2025-10-01")).all()
    assert 0 < known.sum() < len(loans)
    assert (loans.loc[known, "default_12m"] == raw.loc[known, "default_12m"]).all()
    cards = pd.read_parquet(outcomes / "cards_2026Q3.parquet")  # 60 days: July and early August known
    k = cards["is_fraud"].notna()
    assert 0.3 < k.mean() < 0.5
    assert set(loans["age_band"]) <= {"18-24", "25-34", "35-49", "50-64", "65+"}
    f = outcome_frame(raw.head(3).assign(age=[17, 25, 70]), "loans", date(2030, 1, 1))
    assert pd.isna(f["age_band"].iloc[0]) and list(f["age_band"].iloc[1:]) == ["25-34", "65+"] and f["default_12m"].notna().all()


def test_checks_on_the_sample_models(cli, bank, outcomes):
    assert cli("import", bank / "manifest.yaml")[0] == 0
    code, out, err = cli("check", "performance", "retail-pd", "--version", "v1", "--data", outcomes / "loans_2025Q4.parquet",
                         "--target", "default_12m", "--timestamp", "applied_on", "--json")
    assert code == 0, err
    c = json.loads(out)
    m = c["metrics"]
    # scores from the version's adapter, threshold from its weights; only the rows known by 2026-10-01 are judged
    assert c["parameters"]["score_source"] == "adapter (v1)" and c["parameters"]["threshold"] == pytest.approx(0.15)
    assert 0 < m["n_matured"] < 1000 and m["n_unlabelled"] == m["n_rows_file"] - m["n_matured"]
    assert 0.75 < m["auc"] < 0.95
    # the North region's approval rate collapses as its unemployment climbs (the data's macro story)
    code, out, err = cli("check", "fairness", "retail-pd", "--version", "v3", "--data", outcomes / "loans_2026Q3.parquet",
                         "--protected", "age_band,region", "--json")
    assert code == 0, err
    f = json.loads(out)
    groups = {(a["attribute"], g["group"]): g for a in f["metrics"]["attributes"] for g in a["groups"]}
    assert groups[("region", "North")]["status"] == "fail" and groups[("region", "North")]["air"] < 0.5
    assert all(g["status"] == "pass" for (a, _), g in groups.items() if a == "age_band")
    assert f["flags"] == ["FM-PROTECTED"]
    earlier = json.loads(cli("check", "fairness", "retail-pd", "--version", "v3", "--data", outcomes / "loans_2025Q3.parquet",
                             "--protected", "region", "--target", "default_12m", "--timestamp", "applied_on",
                             "--json")[1])
    north = next(g for g in earlier["metrics"]["attributes"][0]["groups"] if g["group"] == "North")
    assert north["air"] > 0.8 > groups[("region", "North")]["air"]
    assert north["eod"] is not None and -1 < north["eod"] < 0  # fewer good North applicants approved
