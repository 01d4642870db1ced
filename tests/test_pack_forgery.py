"""Forged packs: every forgery an attacker tried (issue 20) and more is rejected, naming what is
wrong — by `verify --pack`, by `verify --pack --db`, and by the standalone script of the docs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pypdf
import pytest

from compliance.report import context as C
from compliance.report import export
from compliance.report.verify_pack import verify_pack
from compliance.services.verification import verify_pack_cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def at(*a):
    return datetime(*a, tzinfo=timezone.utc)


def canon(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A store (monotonic clock) and the pack exported from it, with four ledger entries in 2026Q1."""
    from tests.helpers import small_manifest

    from compliance.services import registry
    from compliance.services.manifest import import_manifest
    from compliance.services.report import export_pack
    from compliance.store import migrate
    from compliance.store.engine import session_scope

    root = tmp_path_factory.mktemp("forgery")
    url = f"sqlite:///{root / 'store.db'}"
    migrate.upgrade(url, clock=lambda: at(2025, 12, 1))
    with session_scope(url, actor="ml-eng", clock=lambda: at(2025, 12, 15), replay=True) as s:
        import_manifest(s, small_manifest(root / "bank"))
    for day, mid in ((1, "mortgage-pd"), (2, "sme-rating"), (3, "auto-lgd"), (4, "lease-pd")):
        with session_scope(url, actor="ml-eng", clock=lambda d=day: at(2026, 2, d), replay=True) as s:
            registry.add_model(s, mid, name=mid, owner="alice", tier=2, use="PD")
    with session_scope(url, actor="mrm", clock=lambda: at(2026, 4, 2), replay=True) as s:
        export_pack(s, "2026Q1", at(2026, 4, 1), root / "pack.zip")
    with zipfile.ZipFile(root / "pack.zip") as z:
        files = {n: z.read(n) for n in z.namelist()}
    return url, root / "pack.zip", files


def write(path: Path, files: dict, extra: list[tuple[str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n in sorted(files):
            z.writestr(n, files[n])
        for n, data in extra:
            z.writestr(n, data)
    return path


def rehash_manifest(files: dict, **changes) -> None:
    man = json.loads(files["manifest.json"])
    man.pop("manifest_hash")
    man.update(changes)
    man["files"] = {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                    for n, d in sorted(files.items()) if n != "manifest.json"}
    man["manifest_hash"] = hashlib.sha256(canon(man)).hexdigest()
    files["manifest.json"] = json.dumps(man, sort_keys=True, indent=2).encode()


def ledger_lines(files: dict) -> list[dict]:
    return [json.loads(x) for x in files["ledger.jsonl"].splitlines()]


def set_ledger(files: dict, entries: list[dict]) -> None:
    files["ledger.jsonl"] = b"".join(canon(e) + b"\n" for e in entries)


def edit_payload(e: dict) -> dict:
    e = dict(e)
    e["payload"] = e["payload"].replace("alice", "mallory")
    return e


def standalone(tmp_path: Path, pack: Path) -> subprocess.CompletedProcess:
    from tests.test_docs import _snippet

    script = tmp_path / "verify_pack_standalone.py"
    script.write_text(_snippet(), encoding="utf-8")
    return subprocess.run([sys.executable, "-I", "-S", str(script), str(pack)], capture_output=True, text=True,
                          timeout=60)


def rebuilt(files: dict, ctx: C.ReportContext, pdf: bytes) -> dict:
    """A fully consistent pack around ``ctx`` and ``pdf`` (CSVs, manifest re-made)."""
    man = json.loads(files["manifest.json"])
    cited = [json.loads(x) for x in files["cited.jsonl"].splitlines()] if "cited.jsonl" in files else None
    data, _ = export.build_export(ctx, ledger_excerpt=ledger_lines(files), ledger_start=man["ledger_start_entry"],
                                  cited=cited, pdf=pdf)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def with_attachment(pdf: bytes, name: str, data: bytes) -> bytes:
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    w.add_attachment(name, data)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


# ---------------------------------------------------------------- the forgeries (name -> edit of the files)
def f_payload_no_prev_hash(files, ctx):
    lines = ledger_lines(files)
    lines[1] = edit_payload(lines[1])
    del lines[1]["prev_hash"]
    set_ledger(files, lines)
    rehash_manifest(files)


def f_payload_edited(files, ctx):
    lines = ledger_lines(files)
    lines[1] = edit_payload(lines[1])
    set_ledger(files, lines)
    rehash_manifest(files)


def f_line_without_hash(files, ctx):
    lines = ledger_lines(files)
    del lines[2]["hash"]
    set_ledger(files, lines)
    rehash_manifest(files)


def f_first_lines_removed(files, ctx):
    set_ledger(files, ledger_lines(files)[2:])
    rehash_manifest(files)


def f_first_lines_removed_start_moved(files, ctx):
    lines = ledger_lines(files)
    set_ledger(files, lines[2:])
    rehash_manifest(files, ledger_start_entry=lines[1], ledger_start_hash=lines[1]["hash"])


def f_ledger_emptied(files, ctx):
    files["ledger.jsonl"] = b""
    rehash_manifest(files)


def f_ledger_emptied_start_is_head(files, ctx):
    lines = ledger_lines(files)
    files["ledger.jsonl"] = b""
    rehash_manifest(files, ledger_start_entry=lines[-1], ledger_start_hash=lines[-1]["hash"])


def f_lines_reordered(files, ctx):
    lines = ledger_lines(files)
    lines[1], lines[2] = lines[2], lines[1]
    set_ledger(files, lines)
    rehash_manifest(files)


def f_line_duplicated(files, ctx):
    lines = ledger_lines(files)
    set_ledger(files, lines[:2] + lines[1:])
    rehash_manifest(files)


def f_not_canonical(files, ctx):
    files["ledger.jsonl"] = files["ledger.jsonl"].replace(b'{"action"', b'{ "action"', 1)
    rehash_manifest(files)


def f_csv_figure(files, ctx):
    files["tables/inventory.csv"] = files["tables/inventory.csv"].replace(b",2,", b",1,", 1)
    rehash_manifest(files)


def f_manifest_files_list(files, ctx):
    man = json.loads(files["manifest.json"])
    man.pop("manifest_hash")
    man["files"] = sorted(man["files"])
    man["manifest_hash"] = hashlib.sha256(canon(man)).hexdigest()
    files["manifest.json"] = json.dumps(man).encode()


def f_manifest_resigned(files, ctx):
    rehash_manifest(files, as_of="2026-03-01T00:00:00.000000Z")


def f_second_attachment(files, ctx):
    """A changed context.json, the PDF (old figures) carrying it as an extra attachment."""
    new = C.with_context_hash(dataclasses.replace(ctx, summary=dataclasses.replace(ctx.summary, debt_slot_days=0)))
    files.update(rebuilt(files, new, with_attachment(files["report.pdf"], "context.json", C.context_to_json(new))))


def f_only_attachment_swapped(files, ctx):
    """A changed context.json as the PDF's only attachment; the pages still show the old figures."""
    new = C.with_context_hash(dataclasses.replace(ctx, summary=dataclasses.replace(ctx.summary, debt_slot_days=0)))
    r = pypdf.PdfReader(io.BytesIO(files["report.pdf"]))
    w = pypdf.PdfWriter()
    for p in r.pages:
        w.add_page(p)
    w.add_attachment("context.json", C.context_to_json(new))
    out = io.BytesIO()
    w.write(out)
    files.update(rebuilt(files, new, out.getvalue()))


def f_pdf_cut(files, ctx):
    r = pypdf.PdfReader(io.BytesIO(files["report.pdf"]))
    w = pypdf.PdfWriter()
    w.add_page(r.pages[0])
    w.add_attachment("context.json", files["context.json"])
    out = io.BytesIO()
    w.write(out)
    files.update(rebuilt(files, ctx, out.getvalue()))


def f_head_cut_back(files, ctx):
    """The excerpt cut back to an older head (still in the store), everything re-made consistently."""
    lines = ledger_lines(files)[:-1]
    older = C.with_context_hash(dataclasses.replace(ctx, cover=dataclasses.replace(
        ctx.cover, ledger_head_hash=lines[-1]["hash"], context_hash="")))
    from compliance.report.render import render_pdf_bytes

    set_ledger(files, lines)
    files.update(rebuilt(files, older, render_pdf_bytes(older)))


FORGERIES = {
    # name: (edit, first bad file, words in the problem, caught without --db, caught by the standalone)
    "payload edited, prev_hash deleted": (f_payload_no_prev_hash, "ledger.jsonl", "lacks field(s) prev_hash", True, True),
    "payload edited": (f_payload_edited, "ledger.jsonl", "hash does not match", True, True),
    "line without hash": (f_line_without_hash, "ledger.jsonl", "lacks field(s) hash", True, True),
    "first lines removed": (f_first_lines_removed, "ledger.jsonl", "does not follow", True, True),
    "first lines removed, start moved": (f_first_lines_removed_start_moved, "manifest.json", "inside the quarter", True, True),
    "ledger emptied": (f_ledger_emptied, "ledger.jsonl", "does not end at", True, True),
    "ledger emptied, start is the head": (f_ledger_emptied_start_is_head, "manifest.json", "inside the quarter", True, True),
    "lines reordered": (f_lines_reordered, "ledger.jsonl", "does not follow", True, True),
    "line duplicated": (f_line_duplicated, "ledger.jsonl", "does not follow", True, True),
    "line not canonical": (f_not_canonical, "ledger.jsonl", "canonical", True, True),
    "CSV figure changed": (f_csv_figure, "tables/inventory.csv", "a figure was changed", True, False),
    "manifest files as a list": (f_manifest_files_list, "manifest.json", "wrong type", True, True),
    "manifest re-signed with another as-of": (f_manifest_resigned, "context.json", "cover.as_of", True, True),
    "second attachment": (f_second_attachment, "report.pdf", "attachments", True, True),
    "only attachment swapped": (f_only_attachment_swapped, "context.json", "context hash differs", False, False),
    "PDF cut to one page": (f_pdf_cut, "report.pdf", "SHA-256", False, False),
    "head cut back": (f_head_cut_back, "context.json", "context hash differs", False, False),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forgery_is_rejected(real, tmp_path, name):
    url, pack, files = real
    edit, bad, words, offline, by_script = FORGERIES[name]
    forged = dict(files)
    edit(forged, C.context_from_json(files["context.json"]))
    path = write(tmp_path / "forged.zip", forged)
    rep = verify_pack(path)
    if offline:
        assert not rep.ok and rep.first_bad == bad and words in rep.problems[0], rep.problems
    else:  # internally consistent: only the store can tell; without it, say what was not checked
        assert rep.ok, rep.problems
        res = verify_pack_cli(path, None)
        assert res["ok"] and "Not checked without --db" in res["summary"] and res["not_checked"]
    res = verify_pack_cli(path, url)
    assert not res["ok"], res["summary"]
    if not offline:
        assert res["first_bad"] == bad and words in res["problems"][0], res["problems"]
    script = standalone(tmp_path, path)
    assert "Traceback" not in script.stderr
    if by_script:
        assert script.returncode == 1 and script.stderr.startswith("FAIL:"), script.stdout + script.stderr
    else:  # documented: the script checks the pack's own consistency, not the store's record
        assert script.returncode in (0, 1)


def test_the_real_pack_verifies_everywhere(real, tmp_path):
    url, pack, _ = real
    assert verify_pack(pack).ok
    res = verify_pack_cli(pack, url)
    assert res["ok"] and "matches report run" in res["summary"], res["summary"]
    script = standalone(tmp_path, pack)
    assert script.returncode == 0 and script.stdout.startswith("OK:"), script.stderr


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_entry_name_is_rejected(real, tmp_path):
    _, _, files = real
    evil = dict(files)
    evil["tables/inventory.csv"] = files["tables/inventory.csv"].replace(b",2,", b",1,", 1)
    path = write(tmp_path / "dup.zip", files, extra=[("tables/inventory.csv", evil["tables/inventory.csv"])])
    rep = verify_pack(path)
    assert rep.first_bad == "tables/inventory.csv" and "more than once" in rep.problems[0]
    assert "twice" in standalone(tmp_path, path).stderr


def test_pack_is_refused_when_the_store_is_broken(real, tmp_path):
    url, pack, _ = real
    copy = tmp_path / "store.db"
    src = sqlite3.connect(url.removeprefix("sqlite:///"))
    con = sqlite3.connect(copy)
    src.backup(con)
    src.close()
    con.execute("DROP TRIGGER model_no_update")
    con.execute("UPDATE model SET owner = 'mallory' WHERE id = 'mortgage-pd'")
    con.commit()
    con.close()
    res = verify_pack_cli(pack, f"sqlite:///{copy}")
    assert not res["ok"] and "store's own ledger does not verify" in res["summary"]


def test_zip_bomb_not_in_the_manifest_is_refused_quickly_in_bounded_memory(real, tmp_path):
    _, _, files = real
    bomb = tmp_path / "bomb.zip"
    write(bomb, files)
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as z, z.open("zz_bomb.bin", "w", force_zip64=True) as fh:
        chunk = bytes(64 << 20)
        for _ in range(64):  # 4 GiB of zeros, a few MB on disk
            fh.write(chunk)
    _bounded(tmp_path, bomb, "zz_bomb.bin: present in the zip but not listed")


def test_attachment_bomb_is_refused_quickly_in_bounded_memory(real, tmp_path):
    import zlib

    _, _, files = real
    pdf = files["report.pdf"]
    comp = zlib.compressobj(9)
    chunk = bytes(64 << 20)
    data = b"".join(comp.compress(chunk) for _ in range(48)) + comp.flush()  # 3 GiB inflated
    i = pdf.index(b"/Type /EmbeddedFile")
    head_end = pdf.index(b"stream", i)
    head = pdf[i:head_end]
    old_len = int(head.split(b"/Length ")[1].split(b">>")[0])
    new_head = head.replace(b"/Length %d" % old_len, b"/Length %d" % len(data))
    s0 = head_end + len(b"stream\n")
    forged_pdf = pdf[:i] + new_head + b"stream\n" + data + pdf[s0 + old_len:]
    forged = dict(files, **{"report.pdf": forged_pdf})
    rehash_manifest(forged)
    path = write(tmp_path / "att-bomb.zip", forged)
    _bounded(tmp_path, path, "report.pdf:")


def _bounded(tmp_path: Path, pack: Path, expected: str) -> None:
    """verify --pack in a child process limited to 1 GiB of address space beyond start and 10 s."""
    code = (
        "import resource, sys\n"
        "from compliance.report.verify_pack import verify_pack\n"
        "soft = 1600 << 20\n"
        "resource.setrlimit(resource.RLIMIT_AS, (soft, soft))\n"
        "rep = verify_pack(sys.argv[1])\n"
        "print(rep.problems[0] if rep.problems else 'OK')\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(pack)], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr[-2000:]
    assert expected in res.stdout and len(res.stdout.strip().splitlines()) == 1, res.stdout


def test_a_failed_export_or_report_writes_nothing(real, tmp_path):
    """"Recorded with a different context" (same report id, another organisation): exit 1, no file."""
    from compliance.errors import Conflict
    from compliance.services.report import export_pack, render_report
    from compliance.store.engine import session_scope

    url, _, _ = real
    copy = tmp_path / "store.db"
    src, dst = sqlite3.connect(url.removeprefix("sqlite:///")), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    curl = f"sqlite:///{copy}"
    out = tmp_path / "out"
    for fn, name in ((export_pack, "other.zip"), (render_report, "other.pdf")):
        with pytest.raises(Conflict, match="different context"):
            with session_scope(curl) as s:
                fn(s, "2026Q1", at(2026, 4, 1), out / name, organisation="Someone Else")
        assert not (out / name).exists()
        assert not out.exists() or list(out.iterdir()) == []  # no temp file left behind either
