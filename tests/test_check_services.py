"""Checks recorded through the store: fidelity from an activations file, data drift, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from compliance.interp.synthetic import write_activations, write_saelens
from compliance.store.engine import session_scope
from compliance.store.ledger import head
from compliance.store.models import Check, CheckFeature
from tests.helpers import weights_file


@pytest.fixture
def bank(cli, tmp_path: Path):
    rng = np.random.default_rng(7)
    sae = tmp_path / "sae"
    write_saelens(sae, rng, 16, 64, hook_name="blocks.0.hook_resid_pre")
    acts = tmp_path / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((500, 16)).astype(np.float32)})
    bad = tmp_path / "bad.safetensors"
    write_activations(bad, {"activations": rng.standard_normal((10, 15)).astype(np.float32)})
    nan = tmp_path / "nan.safetensors"
    x = rng.standard_normal((10, 16)).astype(np.float32)
    x[3, 2] = np.nan
    write_activations(nan, {"activations": x})
    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    assert cli("artifact", "add", "m", "--kind", "sae", "--bound-version", "v1", "--path", sae, "--id", "sae1")[0] == 0
    return {"sae": sae, "acts": acts, "bad": bad, "nan": nan}


def _checks(url):
    with session_scope(url, readonly=True) as s:
        return [(c.status, c.flags, c.metrics) for c in s.scalars(select(Check).order_by(Check.id))]


def test_fidelity_from_activations_is_recorded(cli, bank):
    code, out, err = cli("check", "fidelity", "sae1", "--activations", bank["acts"], "--json")
    assert code == 0, err
    c = json.loads(out)
    m = c["metrics"]
    assert c["kind"] == "fidelity" and c["version"] == "v1" and c["status"] in ("pass", "warn", "fail")
    assert c["formula_version"] == "saelens-6.54"
    assert set(c["input_hashes"]) == {"artifact", "activations"}
    assert m["n_rows"] == 500 and 0 <= m["dead_fraction"] <= 1 and "explained_variance" in m
    assert c["explained_variance"] == m["explained_variance"]
    assert cli("verify")[0] == 0


@pytest.mark.parametrize("case,needle", [("bad", "width"), ("nan", "nan")])
def test_fidelity_bad_input_records_error(cli, bank, case, needle):
    code, out, err = cli("check", "fidelity", "sae1", "--activations", bank[case])
    assert code == 1
    assert needle in err.lower() and "Traceback" not in err
    assert _checks(cli.url) == [("error", ["FM-ERROR"], {})]


def test_changed_artifact_file_is_an_error_check(cli, bank):
    w = bank["sae"] / "sae_weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    code, out, err = cli("check", "fidelity", "sae1", "--activations", bank["acts"])
    assert code == 1 and "hash mismatch" in err
    assert [c[0] for c in _checks(cli.url)] == ["error"]


def test_unknown_artifact_records_nothing(cli, bank):
    code, _, err = cli("check", "fidelity", "nope", "--activations", bank["acts"])
    assert code == 1 and "unknown artifact" in err
    assert _checks(cli.url) == []


def _frames(rng, n=2000, shift=0.0):
    return pd.DataFrame({
        "income": rng.lognormal(10 + shift, 0.5, n),
        "dti": rng.uniform(0, 1, n) + shift / 4,
        "region": rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2] if not shift else [0.2, 0.3, 0.5]),
    })


def test_drift_check_records_per_feature_rows(cli, bank, tmp_path):
    rng = np.random.default_rng(1)
    ref, cur = tmp_path / "ref.csv", tmp_path / "cur.parquet"
    _frames(rng).to_csv(ref, index=False)
    _frames(rng, shift=1.0).to_parquet(cur)
    code, out, err = cli("check", "drift", "m", "--version", "v1", "--reference", ref, "--current", cur,
                         "--window", "2026-07-01..2026-09-30", "--json")
    assert code == 0, err
    c = json.loads(out)
    assert c["status"] == "fail" and c["metrics"]["n_features"] == 3
    assert {f["feature"]: f["kind"] for f in c["features"]} == {"income": "numeric", "dti": "numeric", "region": "categorical"}
    with session_scope(cli.url, readonly=True) as s:
        rows = s.execute(select(CheckFeature.feature, CheckFeature.status).where(CheckFeature.check_id == c["id"])).all()
        assert dict(rows)["income"] == "fail"
    assert cli("verify")[0] == 0


def test_drift_bad_input_records_nothing(cli, bank, tmp_path):
    rng = np.random.default_rng(2)
    ref, cur, empty = tmp_path / "ref.csv", tmp_path / "cur.csv", tmp_path / "empty.csv"
    _frames(rng).to_csv(ref, index=False)
    _frames(rng).drop(columns=["dti"]).to_csv(cur, index=False)
    _frames(rng).iloc[:0].to_csv(empty, index=False)
    with session_scope(cli.url, readonly=True) as s:
        before = head(s)
    for args in ([ref, cur], [ref, empty], [ref, tmp_path / "missing.csv"]):
        code, _, err = cli("check", "drift", "m", "--version", "v1", "--reference", args[0], "--current", args[1])
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    with session_scope(cli.url, readonly=True) as s:
        assert head(s) == before
        assert s.scalar(select(func.count()).select_from(Check)) == 0


def test_more_bad_inputs_record_error_checks(cli, bank, tmp_path):
    import struct

    empty = tmp_path / "empty.safetensors"
    write_activations(empty, {"activations": np.zeros((0, 16), np.float32)})
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(struct.pack("<Q", 10_000) + b"{not json")
    inf = tmp_path / "inf.safetensors"
    x = np.ones((5, 16), np.float32)
    x[1, 1] = np.inf
    write_activations(inf, {"activations": x})
    labels = tmp_path / "labels.json"
    labels.write_text('{"0": "high utilisation"}')
    assert cli("artifact", "add", "m", "--kind", "feature_labels", "--bound-version", "v1", "--path", labels,
               "--id", "labels1")[0] == 0
    cases = [(("sae1", empty), "empty activations file"), (("sae1", corrupt), "header"), (("sae1", inf), "inf"),
             (("labels1", bank["acts"]), "does not apply")]
    for (artifact, path), needle in cases:
        code, out, err = cli("check", "fidelity", artifact, "--activations", path)
        assert code == 1 and needle in err.lower() and "Traceback" not in err, (needle, err)
    assert [c[0] for c in _checks(cli.url)] == ["error"] * len(cases)
    assert cli("verify")[0] == 0
