"""The regulator export ships the ledger entries the evidence index cites that are OLDER than the
quarter (`cited.jsonl`), and `verify --pack` checks each of them on its own — re-hashed, older
than the excerpt, linked where its neighbour is in the pack, recording the row that cites it with
the SHA-256 shown — while the quarter's excerpt stays strictly contiguous. Removing, altering or
adding a cited entry fails, naming the file and the row."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from compliance.hashing import ledger_entry_hash
from compliance.report.verify_pack import verify_pack
from tests.helpers import small_manifest


def _at(*a):
    return datetime(*a, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> tuple[Path, str]:
    from compliance.services import registry
    from compliance.services.manifest import import_manifest
    from compliance.services.report import export_pack
    from compliance.store import migrate
    from compliance.store.engine import session_scope

    root = tmp_path_factory.mktemp("cited-pack")
    url = f"sqlite:///{root / 'store.db'}"
    migrate.upgrade(url, clock=lambda: _at(2025, 12, 1))
    with session_scope(url, actor="ml-eng", clock=lambda: _at(2025, 12, 15), replay=True) as s:
        import_manifest(s, small_manifest(root / "bank"))
    with session_scope(url, actor="ml-eng", clock=lambda: _at(2026, 2, 1), replay=True) as s:
        registry.add_model(s, "mortgage-pd", name="Mortgage PD", owner="alice", tier=2, use="PD for mortgages")
    with session_scope(url, actor="mrm", clock=lambda: _at(2026, 4, 2), replay=True) as s:
        export_pack(s, "2026Q1", _at(2026, 4, 1), root / "pack.zip")
    return root / "pack.zip", url


def _files(z: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(z) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines()]


def _canon(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _rewrite(files: dict[str, bytes], dst: Path) -> Path:
    """The pack with the manifest re-made around the edited files (as a forger would)."""
    man = json.loads(files["manifest.json"])
    man.pop("manifest_hash")
    for name in list(man["files"]):
        if name not in files:
            man["files"].pop(name)
    for name in files:
        if name != "manifest.json":
            man["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "bytes": len(files[name])}
    man["manifest_hash"] = hashlib.sha256(_canon(man)).hexdigest()
    files = dict(files, **{"manifest.json": json.dumps(man, sort_keys=True, indent=2).encode()})
    with zipfile.ZipFile(dst, "w") as z:
        for n in sorted(files):
            z.writestr(n, files[n])
    return dst


def _rehashed(e: dict) -> dict:
    return dict(e, hash=ledger_entry_hash(e["prev_hash"], e["seq"], e["recorded_at"], e["actor"], e["action"],
                                          e["entity_type"], e["entity_id"], e["payload"]))


def test_export_ships_older_cited_entries_and_verifies(pack):
    z, _ = pack
    files = _files(z)
    ctx = json.loads(files["context.json"])
    excerpt, cited = _lines(files["ledger.jsonl"]), _lines(files["cited.jsonl"])
    first = excerpt[0]["seq"]
    cited_rows = [r for r in ctx["appendix"]["evidence"] if r["ledger_seq"] is not None]
    older = sorted({r["ledger_seq"] for r in cited_rows if r["ledger_seq"] < first})
    # artifacts, model versions... registered before the quarter are cited, and shipped
    assert older and [e["seq"] for e in cited] == older
    assert {r["kind"] for r in cited_rows if r["ledger_seq"] < first} >= {"artifact", "model_version"}
    assert all(e["recorded_at"] < "2026-01-01" for e in cited)
    rep = verify_pack(z)
    assert rep.ok, rep.problems
    assert len(rep.cited) == len(older)


def test_removing_a_cited_entry_fails_naming_the_row(pack, tmp_path):
    z, _ = pack
    files = _files(z)
    cited = _lines(files["cited.jsonl"])
    gone = cited[0]
    files["cited.jsonl"] = b"".join(_canon(e) + b"\n" for e in cited[1:])
    rep = verify_pack(_rewrite(files, tmp_path / "removed.zip"))
    assert not rep.ok and rep.first_bad == "cited.jsonl", rep.problems
    assert f"cites ledger entry {gone['seq']}, which is missing" in rep.problems[0]


def test_dropping_the_whole_cited_file_fails(pack, tmp_path):
    z, _ = pack
    files = _files(z)
    del files["cited.jsonl"]
    rep = verify_pack(_rewrite(files, tmp_path / "dropped.zip"))
    assert not rep.ok and rep.first_bad == "cited.jsonl", rep.problems


@pytest.mark.parametrize("rehash", [False, True])
def test_a_forged_cited_entry_is_caught(pack, tmp_path, rehash):
    """An artifact's payload edited (its SHA-256 zeroed): caught by its own hash, or — re-hashed by
    the forger — because the evidence index cites the original hash."""
    z, _ = pack
    files = _files(z)
    cited = _lines(files["cited.jsonl"])
    i = next(i for i, e in enumerate(cited) if e["entity_type"] == "artifact")
    payload = json.loads(cited[i]["payload"])
    payload["sha256"] = "0" * 64
    cited[i] = dict(cited[i], payload=json.dumps(payload, sort_keys=True, separators=(",", ":")))
    if rehash:
        cited[i] = _rehashed(cited[i])
    files["cited.jsonl"] = b"".join(_canon(e) + b"\n" for e in cited)
    rep = verify_pack(_rewrite(files, tmp_path / "forged.zip"))
    assert not rep.ok and rep.first_bad == "cited.jsonl", rep.problems
    # re-hashed, it breaks the link to its neighbour when that is in the pack, else the hash the row cites
    want = ("does not link", "is not the one evidence row artifact") if rehash else ("hash does not match its content",)
    assert any(w in rep.problems[0] for w in want), rep.problems


def test_an_entry_cited_by_no_row_or_from_inside_the_quarter_is_refused(pack, tmp_path):
    z, _ = pack
    files = _files(z)
    cited, excerpt = _lines(files["cited.jsonl"]), _lines(files["ledger.jsonl"])
    # an extra, correctly hashed entry that no evidence row cites
    extra = _rehashed(dict(cited[-1], seq=cited[-1]["seq"] + 1, entity_id="smuggled", prev_hash=cited[-1]["hash"]))
    if extra["seq"] not in {e["seq"] for e in cited} and extra["seq"] < excerpt[0]["seq"]:
        files2 = dict(files, **{"cited.jsonl": b"".join(_canon(e) + b"\n" for e in cited + [extra])})
        rep = verify_pack(_rewrite(files2, tmp_path / "extra.zip"))
        assert not rep.ok and rep.first_bad == "cited.jsonl", rep.problems
    # an entry of the quarter copied into cited.jsonl: not older than the excerpt
    files3 = dict(files, **{"cited.jsonl": files["cited.jsonl"] + _canon(excerpt[0]) + b"\n"})
    rep = verify_pack(_rewrite(files3, tmp_path / "inside.zip"))
    assert not rep.ok and rep.first_bad == "cited.jsonl" and "not older" in rep.problems[0], rep.problems


def test_the_excerpt_stays_strict(pack, tmp_path):
    """Moving the quarter's first entry out of ledger.jsonl is still refused by the contiguous rules."""
    z, _ = pack
    files = _files(z)
    excerpt = _lines(files["ledger.jsonl"])
    files["ledger.jsonl"] = b"".join(_canon(e) + b"\n" for e in excerpt[1:])
    rep = verify_pack(_rewrite(files, tmp_path / "cut.zip"))
    assert not rep.ok and rep.first_bad == "ledger.jsonl", rep.problems


def test_with_the_store_each_cited_entry_must_be_the_stores(pack, tmp_path):
    """A consistent rewrite (entry re-hashed, the evidence row's hash and the context hash
    re-made) passes the pack's own rules; the store names the entry."""
    from compliance.report.context import json_context_hash
    from compliance.services.verification import check_pack_against_store
    from compliance.store.engine import session_scope

    z, url = pack
    files = _files(z)
    cited = _lines(files["cited.jsonl"])
    e = cited[-1]
    forged = _rehashed(dict(e, actor="mallory"))
    cited[-1] = forged
    files["cited.jsonl"] = b"".join(_canon(x) + b"\n" for x in cited)
    ctx = json.loads(files["context.json"])
    for r in ctx["appendix"]["evidence"]:
        if r["ledger_seq"] == e["seq"]:
            r["ledger_hash"] = forged["hash"]
    files["context.json"] = _canon(ctx)
    rep = verify_pack(_rewrite(files, tmp_path / "consistent.zip"))
    # the context hash no longer matches the manifest/PDF: the pack's own rules already refuse it
    assert not rep.ok
    assert json_context_hash(files["context.json"]) != ctx["cover"]["context_hash"]
    # against the store, the genuine pack's cited entries are the store's own
    ok = verify_pack(z)
    with session_scope(url, readonly=True) as s:
        bad, problem, _ = check_pack_against_store(s, ok)
    assert bad is None and problem is None
    ok.cited[-1] = forged
    with session_scope(url, readonly=True) as s:
        bad, problem, _ = check_pack_against_store(s, ok)
    assert bad == "cited.jsonl" and f"entry {e['seq']}" in problem


def test_the_standalone_verifier_checks_cited_entries(pack, tmp_path):
    import subprocess
    import sys

    from tests.test_docs import _snippet

    z, _ = pack
    script = tmp_path / "verify_pack_standalone.py"
    script.write_text(_snippet(), encoding="utf-8")

    def run(p: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-I", "-S", str(script), str(p)], capture_output=True, text=True,
                              timeout=60)

    ok = run(z)
    assert ok.returncode == 0 and ok.stdout.startswith("OK:"), ok.stdout + ok.stderr
    files = _files(z)
    cited = _lines(files["cited.jsonl"])
    files["cited.jsonl"] = b"".join(_canon(e) + b"\n" for e in cited[1:])
    bad = run(_rewrite(files, tmp_path / "removed.zip"))
    assert bad.returncode == 1 and f"ledger entry {cited[0]['seq']} is missing or altered" in bad.stderr, bad.stderr
