"""MLflow registry sync and the pre-promotion gate (issue 16) against a REAL local MLflow tracking
store (SQLite backend, file artifact store) created with MLflow's own client."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from helpers import saelens_folder, weights_file

mlflow = pytest.importorskip("mlflow")


def _mlflow(tmp: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.create_experiment("credit", artifact_location=(tmp / "mlartifacts").as_uri())
    return uri, c, exp


def _version(c, exp, tmp: Path, name: str, n: int, *, files: dict[str, bytes] | None = None, window: str | None = None):
    run = c.create_run(exp)
    src = tmp / f"src-{name}-{n}"
    src.mkdir()
    if files is None:
        weights_file(src / "model.safetensors", seed=n)
    else:
        for k, v in files.items():
            (src / k).write_bytes(v)
    for f in src.iterdir():
        c.log_artifact(run.info.run_id, str(f), "model")
    if window:
        c.log_param(run.info.run_id, "data_window", window)
    c.log_param(run.info.run_id, "trained_at", f"2026-0{n}-01T00:00:00Z")
    c.set_terminated(run.info.run_id)
    mv = c.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return mv, src


def _ms(ts):
    return datetime.fromtimestamp(ts / 1000, tz=timezone.utc)


def test_sync_models_versions_aliases_and_stages_then_gate(cli, tmp_path):
    import warnings

    from compliance.hashing import sha256_file

    warnings.simplefilter("ignore", FutureWarning)  # MLflow deprecates stages; banks still use them
    uri, c, exp = _mlflow(tmp_path)
    c.create_registered_model("Retail PD", tags={"tier": "2", "owner": "alice", "use": "PD for retail loans"})
    c.create_registered_model("shadow-model")  # no tier/owner: reported and skipped
    mv1, src1 = _version(c, exp, tmp_path, "Retail PD", 1, window="2025-01-01..2025-12-31")
    c.transition_model_version_stage("Retail PD", "1", "Production")
    adir = tmp_path / "art"

    def sync():
        code, out, err = cli("sync", "mlflow", "--tracking-uri", uri, "--artifacts-dir", adir, "--json")
        assert code == 0, err
        return json.loads(out)

    first = sync()
    assert first["models_added"] == ["retail-pd"] and first["versions_added"] == ["retail-pd v1"]
    assert any("shadow-model" in s for s in first["skipped"])
    t1 = _ms(c.get_model_version("Retail PD", "1").last_updated_timestamp)
    assert first["events"] == [f"deploy retail-pd v1 at {t1.isoformat()}"]
    code, out, _ = cli("version", "list", "--model", "retail-pd", "--json")
    (v1,) = json.loads(out)
    assert v1["weights_sha256"] == sha256_file(src1 / "model.safetensors")
    assert (v1["data_window_start"], v1["data_window_end"]) == ("2025-01-01", "2025-12-31")
    assert v1["trained_at"].startswith("2026-01-01")
    assert sync()["written"] == 0  # idempotent

    # v2 (lineage: the previous version), champion alias; v1 archived; v3's artifact cannot be hashed
    time.sleep(0.05)
    mv2, src2 = _version(c, exp, tmp_path, "Retail PD", 2)
    _version(c, exp, tmp_path, "Retail PD", 3, files={"a.bin": b"1", "b.bin": b"2"})
    c.set_registered_model_alias("Retail PD", "champion", "2")
    c.transition_model_version_stage("Retail PD", "1", "Archived")
    second = sync()
    assert second["versions_added"] == ["retail-pd v2"]
    assert any("version 3" in s and "weights" in s for s in second["skipped"])
    t_alias = _ms(c.get_registered_model("Retail PD").last_updated_timestamp)
    t_arch = _ms(c.get_model_version("Retail PD", "1").last_updated_timestamp)
    assert sorted(second["events"]) == sorted([f"deploy retail-pd v2 at {t_alias.isoformat()}",
                                               f"retire retail-pd v1 at {t_arch.isoformat()}"])
    code, out, _ = cli("version", "list", "--model", "retail-pd", "--json")
    vs = {v["label"]: v for v in json.loads(out)}
    assert vs["v2"]["parent_id"] == vs["v1"]["id"] and "v3" not in vs
    again = sync()
    assert again["written"] == 0 and any("version 3" in s for s in again["skipped"])

    # ---- the gate: a stale SAE (bound to v1) refuses v2; re-validated on v2 it passes
    sae = saelens_folder(tmp_path / "sae", d_in=8, d_sae=16)
    eye = np.eye(8, dtype=np.float32)
    save_file({"W_enc": np.hstack([eye, -eye]), "b_enc": np.zeros(16, np.float32),
               "W_dec": np.vstack([eye, -eye]), "b_dec": np.zeros(8, np.float32)}, str(sae / "sae_weights.safetensors"))
    rng = np.random.default_rng(0)
    acts = np.zeros((2000, 8), np.float32)
    acts[np.arange(2000), rng.integers(0, 8, 2000)] = rng.normal(0, 1, 2000).astype(np.float32)
    save_file({"activations": acts}, str(tmp_path / "acts.safetensors"))
    assert cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--path", sae,
               "--id", "pd-sae")[0] == 0
    code, out, err = cli("check", "fidelity", "pd-sae", "--version", "v1", "--activations",
                         tmp_path / "acts.safetensors", "--json")
    assert code == 0 and json.loads(out)["status"] == "pass", (out, err)
    code, out, err = cli("gate", "retail-pd", "v2", "--mlflow", "--json")
    assert code == 1, err
    refused = json.loads(out)
    assert refused["decision"] == "refuse" and "stale" in " ".join(refused["reasons"])
    tags = c.get_model_version("Retail PD", "2").tags
    assert tags["compliance.gate"] == "refuse" and tags["compliance.gate_decision_id"] == str(refused["id"])
    code, out, err = cli("check", "fidelity", "pd-sae", "--version", "v2", "--activations",
                         tmp_path / "acts.safetensors", "--json")
    assert code == 0 and json.loads(out)["status"] == "pass", (out, err)
    code, out, err = cli("gate", "retail-pd", "--version", "v2", "--mlflow", "--json")
    assert code == 0, (out, err)
    passed = json.loads(out)
    assert passed["decision"] == "pass" and passed["evidence"]
    assert c.get_model_version("Retail PD", "2").tags["compliance.gate"] == "pass"
    code, out, _ = cli("alerts", "list", "--json")
    assert [a["event"] for a in json.loads(out) if a["event"] == "gate_refused"] == ["gate_refused"]
    # v2 went live in the registry before any gate passed: FM-UNVALIDATED (once, whatever rule saw it)
    code, out, _ = cli("failure-modes", "detect", "--json")
    code, out, _ = cli("failure-modes", "list", "--json")
    unval = [o for o in json.loads(out) if o["code"] == "FM-UNVALIDATED" and o["version_id"] == vs["v2"]["id"]]
    assert len(unval) == 1
    # MLflow was written only through the gate's tags
    assert set(c.get_model_version("Retail PD", "1").tags) == set()


def test_unreachable_tracking_store_is_one_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code, out, err = cli("sync", "mlflow", "--tracking-uri", "http://127.0.0.1:9/nothing", "--model", "x")
    assert code != 0 and err.startswith("error:") and "Traceback" not in err
