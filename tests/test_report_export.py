"""Regulator export zip and pack verification (tamper detection names the file)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import zipfile

import pypdf
import pytest

from compliance.errors import InputError, IntegrityFailure, UsageError
from compliance.hashing import ledger_entry_hash
from compliance.report import context as c
from compliance.report import export, render, verify_pack
from report_fixtures import make_context


def _entry(prev: str, seq: int, day: int) -> dict:
    e = {"seq": seq, "recorded_at": f"2026-{7 + day // 30:02d}-{1 + day % 30:02d}T09:00:00.000000Z",
         "actor": "tester", "action": "insert", "entity_type": "model", "entity_id": f"m{seq}",
         "payload": json.dumps({"id": f"m{seq}", "tier": 1}, sort_keys=True, separators=(",", ":")),
         "prev_hash": prev}
    e["hash"] = ledger_entry_hash(prev, seq, e["recorded_at"], e["actor"], e["action"], e["entity_type"],
                                  e["entity_id"], e["payload"])
    return e


def _ledger(n: int = 6) -> tuple[dict, list[dict]]:
    """A real chain: the entry before the quarter, then ``n`` entries inside 2026Q3."""
    start = _entry("0" * 64, 4, 0)
    start["recorded_at"] = "2026-06-30T23:00:00.000000Z"
    start["hash"] = ledger_entry_hash("0" * 64, 4, start["recorded_at"], "tester", "insert", "model", "m4",
                                      start["payload"])
    out, prev = [], start["hash"]
    for i in range(n):
        out.append(_entry(prev, 5 + i, 3 * i))
        prev = out[-1]["hash"]
    return start, out


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    start, ledger = _ledger()
    ctx = make_context(4, hashed=False)
    ctx = dataclasses.replace(ctx, cover=dataclasses.replace(
        ctx.cover, ledger_head_hash=ledger[-1]["hash"]))
    ctx = c.with_context_hash(ctx)
    pdf = render.render_pdf_bytes(ctx)  # rendered once, reused by every export below
    out = tmp_path_factory.mktemp("export") / "pack.zip"
    extra = {"volumes": [{"model_id": "credit-pd", "day": "2026-07-01", "decisions": 1200}]}
    manifest = export.write_export(ctx, out, ledger_excerpt=ledger, ledger_start=start, extra_tables=extra,
                                   pdf=pdf)
    return ctx, ledger, pdf, out, manifest, extra


def _rewrite(src, dst, change):
    """Copy a zip, applying change(name, data) -> data | None (None drops the entry)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)


def test_export_layout_and_manifest(pack):
    ctx, ledger, pdf, out, manifest, _ = pack
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert names == sorted(names)
        assert {"context.json", "ledger.jsonl", "manifest.json", "report.pdf",
                "tables/debt_staleness.csv", "tables/coverage_per_model.csv",
                "tables/appendix_evidence.csv", "tables/volumes.csv"} <= set(names)
        for info in z.infolist():
            assert info.date_time == (2026, 10, 1, 0, 0, 0)
            assert (info.external_attr >> 16) & 0o777 == 0o644
        files = {n: z.read(n) for n in names}
    assert files["report.pdf"] == pdf
    assert files["context.json"] == c.context_to_json(ctx)
    assert json.loads(files["manifest.json"]) == manifest
    assert manifest["context_hash"] == ctx.cover.context_hash == c.context_hash(ctx)
    assert manifest["ledger_head_hash"] == ledger[-1]["hash"]
    assert manifest["as_of"] == ctx.cover.as_of and manifest["tool_version"] == "0.1.0"
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256(files[name]).hexdigest()
        assert entry["bytes"] == len(files[name])
    assert [json.loads(line) for line in files["ledger.jsonl"].splitlines()] == ledger


def test_one_csv_per_context_table_with_all_rows(pack):
    ctx, _, _, out, _, extra = pack
    tables = c.context_tables(ctx)
    with zipfile.ZipFile(out) as z:
        for name, (cols, rows) in tables.items():
            data = z.read(f"tables/{name}.csv").decode("utf-8")
            parsed = list(csv.reader(io.StringIO(data)))
            assert parsed[0] == cols, name
            assert len(parsed) == len(rows) + 1, name
        staleness = list(csv.DictReader(io.StringIO(
            z.read("tables/debt_staleness.csv").decode())))
        vol = list(csv.DictReader(io.StringIO(z.read("tables/volumes.csv").decode())))
    first = ctx.debt.staleness[0]
    assert staleness[0]["artifact_id"] == first.artifact_id
    assert staleness[0]["days_since_valid"] == ("" if first.days_since_valid is None
                                                else str(first.days_since_valid))
    assert vol == [{"model_id": "credit-pd", "day": "2026-07-01", "decisions": "1200"}]


def test_export_is_byte_identical_for_the_same_input(pack, tmp_path):
    ctx, ledger, pdf, out, _, extra = pack
    again = tmp_path / "again.zip"
    export.write_export(ctx, again, ledger_excerpt=ledger, ledger_start=_ledger()[0], extra_tables=extra,
                        pdf=pdf)
    assert again.read_bytes() == out.read_bytes()


def test_pdf_in_pack_carries_context_json(pack):
    _, _, _, out, manifest, _ = pack
    with zipfile.ZipFile(out) as z:
        pdf, ctx_json = z.read("report.pdf"), z.read("context.json")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert reader.attachments["context.json"] == [ctx_json]
    # our dependency-free reader finds the same bytes as pypdf
    assert verify_pack.pdf_embedded_files(pdf) == [ctx_json]
    assert hashlib.sha256(ctx_json).hexdigest() == manifest["files"]["context.json"]["sha256"]


def test_verify_accepts_the_pack(pack):
    ctx, ledger, _, out, manifest, _ = pack
    rep = verify_pack.verify_pack(out)
    assert rep.ok, rep.problems
    assert rep.files_checked == len(manifest["files"])
    assert rep.context_hash == ctx.cover.context_hash
    assert rep.ledger_head_hash == ledger[-1]["hash"]
    assert rep.report_id == ctx.cover.report_id
    rep.raise_for_failure()


def test_changing_one_byte_of_any_file_is_detected_and_named(pack, tmp_path):
    _, _, _, out, _, _ = pack
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    assert len(names) > 20
    for name in names:
        bad = tmp_path / "bad.zip"

        def flip(n, data, target=name):
            if n != target:
                return data
            i = len(data) // 2
            return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]

        _rewrite(out, bad, flip)
        rep = verify_pack.verify_pack(bad)
        assert not rep.ok, name
        assert rep.first_bad == name, (name, rep.problems)
        with pytest.raises(IntegrityFailure, match=name.replace(".", r"\.")):
            rep.raise_for_failure()


def test_missing_and_unlisted_files_are_named(pack, tmp_path):
    _, _, _, out, _, _ = pack
    bad = tmp_path / "missing.zip"
    _rewrite(out, bad, lambda n, d: None if n == "tables/findings.csv" else d)
    rep = verify_pack.verify_pack(bad)
    assert rep.first_bad == "tables/findings.csv" and "missing" in rep.problems[0]
    extra = tmp_path / "extra.zip"
    _rewrite(out, extra, lambda n, d: d)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("zz_smuggled.txt", b"hello")
    rep = verify_pack.verify_pack(extra)
    assert rep.first_bad == "zz_smuggled.txt" and "not listed" in rep.problems[0]
    nomani = tmp_path / "nomani.zip"
    _rewrite(out, nomani, lambda n, d: None if n == "manifest.json" else d)
    assert verify_pack.verify_pack(nomani).first_bad == "manifest.json"
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert not verify_pack.verify_pack(junk).ok


def test_consistent_but_wrong_pack_is_still_caught(pack, tmp_path):
    """Re-hashing the manifest after editing context.json does not fool verification."""
    ctx, ledger, pdf, _, _, _ = pack
    edited = dataclasses.replace(ctx, summary=dataclasses.replace(
        ctx.summary, debt_slot_days=0))
    edited = c.with_context_hash(edited)
    out = tmp_path / "forged.zip"
    # a pack whose PDF still carries the old context.json
    export.write_export(edited, out, ledger_excerpt=ledger, ledger_start=_ledger()[0], pdf=pdf)
    rep = verify_pack.verify_pack(out)
    assert rep.first_bad == "report.pdf" and "context.json" in rep.problems[0], rep.problems
    # a PDF with no attachment at all
    bare = b"%PDF-1.7\n1 0 obj\n<</Type /Catalog>>\nendobj\n%%EOF\n"
    out2 = tmp_path / "bare.zip"
    export.write_export(ctx, out2, ledger_excerpt=ledger, ledger_start=_ledger()[0], pdf=bare)
    assert verify_pack.verify_pack(out2).first_bad == "report.pdf"


def test_ledger_excerpt_must_chain_to_the_head(pack, tmp_path):
    ctx, ledger, pdf, _, _, _ = pack
    broken = [dict(e) for e in ledger]
    broken[3]["prev_hash"] = "f" * 64
    out = tmp_path / "ledger.zip"
    export.write_export(ctx, out, ledger_excerpt=broken, ledger_start=_ledger()[0], pdf=pdf)
    rep = verify_pack.verify_pack(out)
    assert rep.first_bad == "ledger.jsonl" and "line 4" in rep.problems[0]
    out2 = tmp_path / "short.zip"
    export.write_export(ctx, out2, ledger_excerpt=ledger[:-1], ledger_start=_ledger()[0], pdf=pdf)
    assert verify_pack.verify_pack(out2).first_bad == "ledger.jsonl"


def test_export_input_errors(pack, tmp_path):
    ctx, ledger, pdf, _, _, _ = pack
    stale = dataclasses.replace(ctx, summary=dataclasses.replace(ctx.summary, weighted_debt=1))
    with pytest.raises(InputError, match="context_hash"):
        export.write_export(stale, tmp_path / "x.zip", ledger_excerpt=ledger, pdf=pdf)
    with pytest.raises(UsageError):
        export.write_export(ctx, tmp_path / "x.zip", ledger_excerpt=ledger, pdf=pdf,
                            extra_tables={"Bad Name": []})
    with pytest.raises(UsageError):
        export.write_export(ctx, tmp_path / "x.zip", ledger_excerpt=ledger, pdf=pdf,
                            extra_tables={"inventory": []})
    with pytest.raises(InputError):
        export.write_export(ctx, tmp_path / "x.zip", ledger_excerpt=["nope"], pdf=pdf)
    assert not (tmp_path / "x.zip").exists()


def test_long_tables_stream_from_files_and_verify(pack, tmp_path):
    """The store path hands the long tables over as files: they are zipped first (by a thread,
    while the PDF renders), hashed on the way, and the pack is the same pack: it verifies, every
    member reads back CRC-checked, the other members follow by name, and the same inputs give
    the same bytes."""
    ctx, ledger, pdf, _, _, extra = pack
    tables = c.context_tables(ctx)
    folder = tmp_path / "tables"
    folder.mkdir()
    full = {}
    for name in ("appendix_evidence", "fidelity_checks", "check_reasons"):
        cols, rows = tables[name]
        path = folder / f"{name}.csv"
        path.write_bytes(export.table_csv(cols, rows))
        full[f"tables/{name}.csv"] = path

    def build():
        return export.build_export(ctx, ledger_excerpt=ledger, ledger_start=_ledger()[0], extra_tables=extra,
                                   pdf=pdf, full_tables=full)

    data, manifest = build()
    assert build()[0] == data
    out = tmp_path / "streamed.zip"
    out.write_bytes(data)
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names[:3] == sorted(full) and names[3:] == sorted(names[3:]) and export.MANIFEST_NAME in names[3:]
        for name, path in full.items():
            assert z.read(name) == path.read_bytes()
            assert manifest["files"][name] == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                               "bytes": path.stat().st_size}
        assert {n: hashlib.sha256(z.read(n)).hexdigest() for n in names} == export.member_hashes(manifest)
    verify_pack.verify_pack(out).raise_for_failure()
    # a file that cannot be read fails the build in the caller's thread, with the file named
    full["tables/check_reasons.csv"] = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        build()
