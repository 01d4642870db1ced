"""The evidence index cites every row the pack relies on with its ledger entry; the export carries
those entries, and `verify --pack` recomputes each of them without the database: removing or
altering one fails, naming it."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compliance.interp.synthetic import write_activations, write_saelens
from compliance.report.verify_pack import verify_pack
from tests.helpers import small_manifest


@pytest.fixture
def export(cli, tmp_path: Path):
    m = small_manifest(tmp_path / "bank")
    assert cli("import", m)[0] == 0
    rng = np.random.default_rng(3)
    write_saelens(tmp_path / "sae2", rng, 8, 32, hook_name="blocks.1.hook_resid_pre")
    acts = tmp_path / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((300, 8)).astype(np.float32)})
    assert cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v2", "--path", tmp_path / "sae2",
               "--id", "pd-sae-v2", "--replaces", "pd-sae-v1")[0] == 0
    assert cli("check", "fidelity", "pd-sae-v2", "--version", "v2", "--activations", acts)[0] == 0
    # The next quarter's pack: every row it cites was recorded before the quarter started, so the
    # excerpt holds only cited older entries and the head.
    z = tmp_path / "pack.zip"
    code, out, err = cli("export", "--quarter", "2027Q1", "--as-of", "2027-01-05T00:00:00Z", "--out", z, "--json")
    assert code == 0, err
    return z


def _rewrite(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    edit(files)
    man = json.loads(files["manifest.json"])
    man.pop("manifest_hash")
    for name in man["files"]:
        man["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    man["manifest_hash"] = hashlib.sha256(json.dumps(man, sort_keys=True, separators=(",", ":"),
                                                     ensure_ascii=False).encode()).hexdigest()
    files["manifest.json"] = json.dumps(man, sort_keys=True, indent=2).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n in sorted(files):
            z.writestr(n, files[n])


def _read(z: Path):
    with zipfile.ZipFile(z) as zf:
        ctx = json.loads(zf.read("context.json"))
        lines = zf.read("ledger.jsonl").decode().splitlines()
    return ctx, [json.loads(x) for x in lines]


def test_evidence_index_cites_every_kind_with_its_ledger_entry(export):
    ctx, entries = _read(export)
    ev = ctx["appendix"]["evidence"]
    kinds = {r["kind"] for r in ev}
    assert {"check", "dataset", "artifact", "model_version"} <= kinds, kinds
    assert all(r["ledger_seq"] is not None and len(r["ledger_hash"]) == 64 for r in ev)
    seqs = {e["seq"] for e in entries}
    assert {r["ledger_seq"] for r in ev} <= seqs
    # earlier checks are cited although none finished in this quarter
    assert any(r["kind"] == "check" for r in ev) and not ctx["summary"]["check_outcomes"]
    # the excerpt is not contiguous (older cited entries, then the head) and still verifies
    assert max(seqs) - min(seqs) + 1 > len(seqs)
    rep = verify_pack(export)
    assert rep.ok, rep.problems


def test_removing_a_cited_entry_fails_naming_it(export, tmp_path):
    ctx, entries = _read(export)
    head = max(e["seq"] for e in entries)
    row = min((r for r in ctx["appendix"]["evidence"] if r["ledger_seq"] != head), key=lambda r: r["ledger_seq"])
    bad = tmp_path / "removed.zip"
    _rewrite(export, bad, lambda f: f.__setitem__("ledger.jsonl", b"".join(
        (json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        for e in entries if e["seq"] != row["ledger_seq"])))
    rep = verify_pack(bad)
    assert not rep.ok
    assert rep.first_bad == f"{row['kind']} {row['ref']} (ledger entry {row['ledger_seq']})", rep.problems


def test_altering_a_cited_entry_fails_naming_it(export, tmp_path):
    ctx, entries = _read(export)
    row = next(r for r in ctx["appendix"]["evidence"] if r["kind"] == "artifact")

    def alter(files):
        out = []
        for e in entries:
            if e["seq"] == row["ledger_seq"]:
                payload = json.loads(e["payload"])
                payload["sha256"] = "0" * 64
                e = dict(e, payload=json.dumps(payload, sort_keys=True, separators=(",", ":")))
            out.append((json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
        files["ledger.jsonl"] = b"".join(out)

    bad = tmp_path / "altered.zip"
    _rewrite(export, bad, alter)
    rep = verify_pack(bad)
    assert not rep.ok and f"entry {row['ledger_seq']}" in rep.problems[0], rep.problems
