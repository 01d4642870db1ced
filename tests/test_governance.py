"""Policy versions, findings, failure-mode register and four-eyes sign-off through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import small_manifest


def test_policy_versions(cli, tmp_path: Path):
    code, out, _ = cli("policy", "show", "--json")
    p1 = json.loads(out)
    assert p1["version"] == 1 and p1["document"]["validity_days"] == 90
    f = tmp_path / "p.yaml"
    f.write_text("validity_days: 30\nfidelity:\n  ev_warn: 0.85\n")
    assert cli("policy", "set", "--file", f, "--comment", "tighter")[0] == 0
    p2 = json.loads(cli("policy", "show", "--json")[1])
    assert p2["version"] == 2 and p2["document"]["validity_days"] == 30
    assert p2["document"]["fidelity"]["ev_warn"] == 0.85 and p2["document"]["fidelity"]["ev_fail"] == 0.6
    old = json.loads(cli("policy", "show", "--at", p1["recorded_at"], "--json")[1])
    assert old["version"] == 1  # the old version still applies to the past
    bad = tmp_path / "bad.yaml"
    bad.write_text("validity_dayz: 3\n")
    code, _, err = cli("policy", "set", "--file", bad)
    assert code == 1 and "unknown policy key 'validity_dayz'" in err
    assert json.loads(cli("policy", "show", "--json")[1])["version"] == 2


def test_findings_lifecycle(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    code, out, err = cli("finding", "add", "--model", "retail-pd", "--severity", "high", "--title", "Stale SAE",
                         "--owner", "alice", "--due", "2020-01-31", "--json")
    assert code == 0, err
    fid = json.loads(out)["id"]
    assert [f["id"] for f in json.loads(cli("finding", "list", "--overdue", "--json")[1])] == [fid]
    assert cli("finding", "update", str(fid), "--status", "remediated", "--note", "retrained")[0] == 0
    assert json.loads(cli("finding", "list", "--open", "--json")[1]) == []
    code, _, err = cli("finding", "update", str(fid), "--status", "closed", "--note", " ")
    assert code == 2 and "note is required" in err
    code, _, err = cli("finding", "add", "--model", "retail-pd", "--severity", "urgent", "--title", "x", "--owner", "a", "--due", "2026-01-01")
    assert code == 2 and "severity" in err


def test_failure_modes_detect_idempotent_and_update(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    code, out, _ = cli("failure-modes", "detect", "--json")
    opened = json.loads(out)
    codes = {o["code"] for o in opened}
    # retail-pd v2 is deployed, its SAE is bound to v1 and never validated: stale; nothing ever checked: silent.
    assert {"FM-STALE", "FM-SILENT"} <= codes
    assert json.loads(cli("failure-modes", "detect", "--json")[1]) == []  # idempotent
    occ = opened[0]["id"]
    code, _, err = cli("failure-modes", "update", str(occ), "--status", "accepted", "--rationale", "")
    assert code == 2 and "rationale" in err
    # the importer recorded the versions (a developer): an acceptance needs someone else (methodology v2)
    assert cli("failure-modes", "update", str(occ), "--status", "accepted", "--rationale", "compensating control")[0] == 1
    assert cli("failure-modes", "update", str(occ), "--status", "accepted", "--rationale", "compensating control",
               actor="carol")[0] == 0
    rows = json.loads(cli("failure-modes", "list", "--json")[1])
    assert next(r for r in rows if r["id"] == occ)["status"] == "accepted"
    assert occ not in [r["id"] for r in json.loads(cli("failure-modes", "list", "--open", "--json")[1])]
    assert cli("verify")[0] == 0


def test_signoff_four_eyes(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    out = tmp_path / "pack.html"
    code, o, err = cli("report", "--quarter", "2026Q1", "--format", "html", "--out", out, "--json")
    assert code == 0, err
    rid = json.loads(o)["report_id"]
    cli.grant("alice", "validator")
    code, _, err = cli("signoff", rid, "--decision", "approve", actor="alice")  # alice owns retail-pd
    assert code == 1 and "segregation of duties: alice owns retail-pd" in err
    code, _, err = cli("signoff", rid, "--decision", "approve", actor="carol")  # no reviewer role yet
    assert code == 1 and "needs the validator or approver role" in err
    cli.grant("carol", "validator")
    code, _, err = cli("signoff", rid, "--decision", "approve_with_conditions", actor="carol")
    assert code == 2 and "comment" in err
    code, o, err = cli("signoff", rid, "--decision", "approve_with_conditions", "--comment", "retrain by Q2", "--json", actor="carol")
    assert code == 0, err
    assert json.loads(o)["reviewer"] == "carol"
    assert cli("signoff", "NOPE", "--decision", "approve", actor="carol")[0] == 1
