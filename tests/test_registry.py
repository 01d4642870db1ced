"""Registry commands end to end through the CLI, and bad input leaving the store untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from compliance.store.engine import session_scope
from compliance.store.ledger import head
from compliance.store.models import EVIDENCE_MODELS
from tests.helpers import saelens_folder, small_manifest, weights_file


def snapshot(url: str):
    with session_scope(url, readonly=True) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in EVIDENCE_MODELS}
        return head(s), counts


def test_registry_roundtrip(cli, tmp_path: Path):
    w = weights_file(tmp_path / "v1.safetensors")
    assert cli("model", "add", "retail-pd", "--name", "Retail PD", "--owner", "alice", "--tier", "1",
               "--use", "PD", "--tag", "sr11-7", "--tag", "eu-ai-act-high-risk")[0] == 0
    code, out, _ = cli("version", "add", "retail-pd", "v1", "--weights", w, "--trained-at", "2025-09-01",
                       "--data-window", "2025-01-01..2025-06-30", "--json")
    assert code == 0
    v = json.loads(out)
    import hashlib

    assert v["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    assert cli("deploy", "retail-pd", "v1", "--at", "2025-10-01T00:00:00Z")[0] == 0
    sae = saelens_folder(tmp_path / "sae", d_in=8, d_sae=32, architecture="jumprelu")
    code, out, err = cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--path", sae,
                         "--id", "pd-sae", "--json")
    assert code == 0, err
    a = json.loads(out)
    assert (a["format"], a["architecture"], a["d_in"], a["d_sae"]) == ("saelens", "jumprelu", 8, 32)
    assert set(a["files"]) == {"cfg.json", "sae_weights.safetensors"}
    assert a["hook_in"] == "blocks.1.hook_resid_pre"
    code, out, _ = cli("model", "show", "retail-pd", "--json")
    m = json.loads(out)
    assert [d["action"] for d in m["deployments"]] == ["deploy"]
    assert m["tags"] == ["eu-ai-act-high-risk", "sr11-7"]
    code, out, _ = cli("artifact", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == ["pd-sae"]
    assert cli("retire", "retail-pd", "v1", "--at", "2026-01-01")[0] == 0
    code, out, _ = cli("verify", "--json")
    assert code == 0 and json.loads(out)["ok"]


def test_import_manifest(cli, tmp_path: Path):
    m = small_manifest(tmp_path / "bank")
    code, out, err = cli("import", m, "--json")
    assert code == 0, err
    assert json.loads(out) == {"models": 2, "versions": 3, "deployments": 4, "artifacts": 1, "datasets": 1}
    code, out, _ = cli("model", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == ["retail-pd", "card-fraud"]
    assert cli("verify")[0] == 0


def _bad_cases(tmp_path: Path):
    w = weights_file(tmp_path / "w.safetensors")
    broken = tmp_path / "broken-sae"
    saelens_folder(broken)
    (broken / "sae_weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    missing_file = tmp_path / "missing-sae"
    saelens_folder(missing_file)
    (missing_file / "sae_weights.safetensors").unlink()
    mismatch = tmp_path / "mismatch-sae"
    saelens_folder(mismatch, d_in=8)
    cfg = json.loads((mismatch / "cfg.json").read_text())
    cfg["d_in"] = 9
    (mismatch / "cfg.json").write_text(json.dumps(cfg))
    bad_manifest = tmp_path / "bad.yaml"
    bad_manifest.write_text("models:\n  - {id: x, name: X, owner: o, tier: 1}\n")
    bad_yaml = tmp_path / "badyaml.yaml"
    bad_yaml.write_text("models: [\n")
    half = small_manifest(tmp_path / "half")
    text = (half.read_text().replace("path: artifacts/pd-sae", "path: artifacts/nowhere")
            .replace("retail-pd", "other-pd").replace("card-fraud", "other-fraud"))
    half.write_text(text)
    return {
        "unknown model": (["version", "add", "nope", "v1", "--weights", w], 1, "unknown model"),
        "duplicate model": (["model", "add", "retail-pd", "--name", "x", "--owner", "o", "--tier", "1", "--use", "u"], 1, "already exists"),
        "bad tier": (["model", "add", "m2", "--name", "x", "--owner", "o", "--tier", "7", "--use", "u"], 2, "tier"),
        "weights missing": (["version", "add", "retail-pd", "v9", "--weights", tmp_path / "none.bin"], 1, "not found"),
        "unparsable date": (["version", "add", "retail-pd", "v9", "--weights", w, "--trained-at", "yesterday"], 2, "cannot parse"),
        "deploy unregistered": (["deploy", "retail-pd", "v42"], 1, "unknown version"),
        "retire not deployed": (["retire", "retail-pd", "v1"], 1, "not deployed"),
        "artifact folder missing a file": (["artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--path", missing_file], 1, ""),
        "unreadable header": (["artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--path", broken], 1, ""),
        "shape mismatch": (["artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v1", "--path", mismatch], 1, ""),
        "wrong kind": (["artifact", "add", "retail-pd", "--kind", "clt", "--bound-version", "v1", "--path", tmp_path / "half" / "artifacts" / "pd-sae"], 1, "not a clt"),
        "schema-invalid manifest": (["import", bad_manifest], 1, "models[0] (x) is missing field 'use'"),
        "malformed manifest": (["import", bad_yaml], 1, "not valid YAML"),
        "manifest with a bad artifact": (["import", half], 1, "artifacts[0]"),
    }


def test_bad_input_leaves_store_unchanged(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    cases = _bad_cases(tmp_path)
    before = snapshot(cli.url)
    for name, (args, code, needle) in cases.items():
        got, out, err = cli(*args)
        assert got == code, f"{name}: exit {got}, stderr {err!r}"
        assert err.startswith("error: ") and err.count("\n") == 1, f"{name}: {err!r}"
        assert "Traceback" not in err + out
        assert needle.lower() in err.lower(), f"{name}: {err!r}"
        assert snapshot(cli.url) == before, f"{name} changed the store"


def test_out_of_date_schema_refused(empty_db_url):
    from typer.testing import CliRunner

    from compliance.cli.main import app

    r = CliRunner().invoke(app, ["--db", empty_db_url, "model", "list"])
    assert r.exit_code == 1
    assert "compliance init" in r.stderr
    r = CliRunner().invoke(app, ["--db", empty_db_url, "init"])
    assert r.exit_code == 0
    r = CliRunner().invoke(app, ["--db", empty_db_url, "db", "current", "--json"])
    assert json.loads(r.stdout)["up_to_date"] is True


@pytest.mark.parametrize("stamp", ["2025-12-31T23:59:59+01:00", "2026-01-01"])
def test_times_are_utc(cli, tmp_path, stamp):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    code, out, _ = cli("deploy", "card-fraud", "v1", "--at", stamp, "--json")
    # card-fraud v1 is already deployed since 2025-10-01
    assert code == 1


def test_volume_import_all_or_nothing(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    good = tmp_path / "vol.csv"
    good.write_text("model,version,day,volume\nretail-pd,v2,2026-01-02,1200\nretail-pd,v2,2026-01-03,900\n")
    code, out, err = cli("volume", "import", good, "--json")
    assert code == 0 and json.loads(out) == {"recorded": 2, "already_recorded": 0}, err
    bad = tmp_path / "bad.csv"
    bad.write_text("model,version,day,volume\nretail-pd,v2,2026-01-04,10\nretail-pd,v2,2026-01-05,-3\n")
    before = snapshot(cli.url)
    code, _, err = cli("volume", "import", bad)
    assert code == 1 and "volume must lie in [0, 1e+15]" in err
    assert snapshot(cli.url) == before
    code, out, _ = cli("status", "--quarter", "2026Q1", "--json")
    m = next(r for r in json.loads(out)["by_model"] if r["model_id"] == "retail-pd")
    assert m["weighting"] == "volume"


def test_unexpected_errors_are_one_line_not_tracebacks(cli, monkeypatch):
    from compliance.services import registry

    def boom(_session):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(registry, "list_models", boom)
    code, out, err = cli("model", "list")
    assert code == 1
    assert err == "error: unexpected RuntimeError: disk on fire (set COMPLIANCE_DEBUG=1 for the traceback)\n"
