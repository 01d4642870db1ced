"""Verify a regulator export zip without the database.

Checks, in order, and names the first bad file:
1. the zip opens and every entry decompresses (CRC);
2. ``manifest.json`` parses and its ``manifest_hash`` matches its own content;
3. every file listed exists with the listed size and SHA-256, and nothing unlisted is present;
4. ``context.json`` hashes (with its own hash field blank) to the manifest's ``context_hash``,
   which is also the hash printed in the context's cover;
5. the PDF carries an embedded file equal to ``context.json`` (checked with a small reader of
   the PDF's ``/EmbeddedFile`` streams and their MD5 checksums — no PDF library needed);
6. when the ledger excerpt has ``hash``/``prev_hash`` fields, its entries chain and the last
   one is the manifest's ``ledger_head_hash``.

The database-side check (that the ledger head is in the store's chain) is done by the caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from compliance.errors import IntegrityFailure
from compliance.hashing import ledger_entry_hash
from compliance.report.context import canonical_json, json_context_hash
from compliance.report.export import CONTEXT_NAME, LEDGER_NAME, MANIFEST_NAME, PACK_FORMAT


@dataclass
class PackReport:
    """Outcome of ``verify_pack``."""

    ok: bool
    path: str
    files_checked: int = 0
    report_id: Optional[str] = None
    quarter: Optional[str] = None
    as_of: Optional[str] = None
    context_hash: Optional[str] = None
    ledger_head_hash: Optional[str] = None
    first_bad: Optional[str] = None
    problems: list[str] = field(default_factory=list)

    def fail(self, name: str, message: str) -> "PackReport":
        if self.first_bad is None:
            self.first_bad = name
        self.problems.append(f"{name}: {message}")
        self.ok = False
        return self

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise IntegrityFailure(f"pack {self.path} does not verify: {self.problems[0]}")


_EMBEDDED = re.compile(rb"<<\s*/Type\s*/EmbeddedFile\b")


def _dict_end(data: bytes, start: int) -> int:
    """Index just after the '>>' closing the dictionary that opens at ``start``."""
    depth, i = 0, start
    while i < len(data) - 1:
        two = data[i:i + 2]
        if two == b"<<":
            depth += 1
            i += 2
        elif two == b">>":
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise ValueError("unterminated dictionary")


def pdf_embedded_files(pdf: bytes) -> list[bytes]:
    """The decoded contents of every ``/EmbeddedFile`` stream of a PDF.

    Supports what WeasyPrint writes: direct ``/Length``, no filter or ``/FlateDecode``, and
    checks each stream against its ``/Params /CheckSum`` (MD5) when present.
    """
    out = []
    for m in _EMBEDDED.finditer(pdf):
        end = _dict_end(pdf, m.start())
        head = pdf[m.start():end]
        length = re.search(rb"/Length\s+(\d+)(\s+\d+\s+R)?", head)
        if not length or length.group(2):
            raise ValueError("embedded file stream without a direct /Length")
        s = pdf.index(b"stream", end) + len(b"stream")
        if pdf[s:s + 2] == b"\r\n":
            s += 2
        elif pdf[s:s + 1] in (b"\n", b"\r"):
            s += 1
        raw = pdf[s:s + int(length.group(1))]
        filters = re.search(rb"/Filter\s*(\[[^\]]*\]|/\w+)", head)
        if filters:
            names = re.findall(rb"/(\w+)", filters.group(1))
            for name in names:
                if name != b"FlateDecode":
                    raise ValueError(f"unsupported filter {name.decode()}")
                raw = zlib.decompress(raw)
        checksum = re.search(rb"/CheckSum\s*<([0-9a-fA-F]{32})>", head)
        if checksum and hashlib.md5(raw, usedforsecurity=False).hexdigest() != \
                checksum.group(1).decode().lower():
            raise ValueError("embedded file does not match its /CheckSum")
        out.append(raw)
    return out


def _check_ledger(report: PackReport, data: bytes, head: Optional[str]) -> None:
    prev = None
    last = None
    prev_seq = None
    for n, line in enumerate(data.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            report.fail(LEDGER_NAME, f"line {n} is not JSON")
            return
        if not isinstance(entry, dict):
            report.fail(LEDGER_NAME, f"line {n} is not an object")
            return
        if "hash" not in entry:
            continue
        # the excerpt may hold older entries cited by the evidence index before the quarter's
        # contiguous run: only consecutive sequence numbers must chain
        consecutive = prev_seq is None or entry.get("seq") == prev_seq + 1
        if prev is not None and consecutive and "prev_hash" in entry and entry["prev_hash"] != prev:
            report.fail(LEDGER_NAME, f"line {n}: prev_hash does not chain to line {n - 1}")
            return
        if {"seq", "recorded_at", "actor", "action", "entity_type", "entity_id", "payload", "prev_hash"} <= set(entry):
            try:
                recomputed = ledger_entry_hash(entry["prev_hash"], entry["seq"], entry["recorded_at"], entry["actor"],
                                               entry["action"], entry["entity_type"], entry["entity_id"], entry["payload"])
            except (TypeError, ValueError):
                recomputed = None
            if recomputed != entry["hash"]:
                report.fail(LEDGER_NAME, f"line {n} (entry {entry.get('seq')}): hash does not match its content")
                return
        prev = last = entry["hash"]
        prev_seq = entry.get("seq")
    if last is not None and head and last != head:
        report.fail(LEDGER_NAME, "last entry's hash is not the manifest's ledger_head_hash")


def verify_pack(zip_path: Path) -> PackReport:
    """Verify an export zip; the report names the first bad file (``first_bad``)."""
    report = PackReport(ok=True, path=str(zip_path))
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        return report.fail(str(zip_path), f"not a readable zip ({exc})")
    with zf:
        contents: dict[str, bytes] = {}
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            try:
                contents[info.filename] = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                return report.fail(info.filename, f"cannot be read from the zip ({exc})")

    raw_manifest = contents.pop(MANIFEST_NAME, None)
    if raw_manifest is None:
        return report.fail(MANIFEST_NAME, "missing")
    try:
        manifest = json.loads(raw_manifest)
        claimed = manifest.pop("manifest_hash")
        files = manifest["files"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return report.fail(MANIFEST_NAME, f"malformed ({exc})")
    if claimed != hashlib.sha256(canonical_json(manifest)).hexdigest():
        return report.fail(MANIFEST_NAME, "manifest_hash does not match the manifest")
    if manifest.get("format") != PACK_FORMAT:
        return report.fail(MANIFEST_NAME, f"unknown format {manifest.get('format')!r}")
    report.report_id = manifest.get("report_id")
    report.quarter = manifest.get("quarter")
    report.as_of = manifest.get("as_of")
    report.context_hash = manifest.get("context_hash")
    report.ledger_head_hash = manifest.get("ledger_head_hash")

    for name in sorted(set(files) | set(contents)):
        if name not in files:
            report.fail(name, "present in the zip but not listed in the manifest")
            continue
        if name not in contents:
            report.fail(name, "listed in the manifest but missing from the zip")
            continue
        data = contents[name]
        entry = files[name]
        if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get(
                "sha256"):
            report.fail(name, "SHA-256 does not match the manifest")
            continue
        report.files_checked += 1
    if not report.ok:
        return report

    ctx_json = contents.get(CONTEXT_NAME)
    if ctx_json is None:
        return report.fail(CONTEXT_NAME, "missing")
    try:
        recomputed = json_context_hash(ctx_json)
        printed = json.loads(ctx_json)["cover"]["context_hash"]
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        return report.fail(CONTEXT_NAME, f"malformed ({exc})")
    if recomputed != report.context_hash:
        return report.fail(CONTEXT_NAME, "context hash does not match the manifest")
    if printed != recomputed:
        return report.fail(CONTEXT_NAME, "context hash on the cover does not match its content")
    try:
        cover_head = json.loads(ctx_json)["cover"]["ledger_head_hash"]
    except Exception:  # noqa: BLE001
        cover_head = None
    if cover_head != report.ledger_head_hash:
        return report.fail(CONTEXT_NAME, "ledger head on the cover differs from the manifest's")

    pdf_name = manifest.get("pdf")
    pdf = contents.get(pdf_name) if isinstance(pdf_name, str) else None
    if pdf is None:
        return report.fail(str(pdf_name), "the PDF named in the manifest is missing")
    try:
        embedded = pdf_embedded_files(pdf)
    except (ValueError, zlib.error) as exc:
        return report.fail(pdf_name, f"embedded files cannot be read ({exc})")
    if ctx_json not in embedded:
        return report.fail(pdf_name, "does not carry context.json as an attachment")

    ledger = contents.get(LEDGER_NAME)
    if ledger is None:
        return report.fail(LEDGER_NAME, "missing")
    _check_ledger(report, ledger, report.ledger_head_hash)
    if report.ok:
        _check_cited_entries(report, ctx_json, ledger)
    return report


_ENTITY = {"check": "check_run", "dataset": "dataset", "artifact": "artifact", "model_version": "model_version"}


def _evidence_file_hash(kind: str, payload: dict) -> Optional[str]:
    """The SHA-256 an evidence row shows, derived from its ledger payload."""
    if kind == "check":
        return hashlib.sha256(canonical_json(payload.get("input_hashes") or {})).hexdigest()
    if kind == "model_version":
        return payload.get("weights_sha256")
    return payload.get("sha256")


def _check_cited_entries(report: PackReport, ctx_json: bytes, ledger: bytes) -> None:
    """Every evidence row of the context cites a ledger entry present in the excerpt, whose hash
    recomputes (checked by ``_check_ledger``) and whose payload gives the row's SHA-256; and the
    quarter's run of entries, from ``appendix.ledger_from_seq`` to the head, has no gap."""
    entries = {}
    for line in ledger.splitlines():
        e = json.loads(line)
        if isinstance(e, dict) and "seq" in e:
            entries[e["seq"]] = e
    try:
        appendix = json.loads(ctx_json)["appendix"]
        evidence = appendix.get("evidence") or []
        from_seq = appendix.get("ledger_from_seq")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        report.fail(CONTEXT_NAME, f"malformed appendix ({exc})")
        return
    if isinstance(from_seq, int) and from_seq > 0 and entries:
        head = max(entries)
        gap = next((q for q in range(from_seq, head + 1) if q not in entries), None)
        if gap is not None:
            report.fail(LEDGER_NAME, f"ledger entry {gap} of the quarter is missing")
            return
    for row in evidence:
        seq = row.get("ledger_seq")
        if seq is None:
            continue
        name = f"{row.get('kind')} {row.get('ref')} (ledger entry {seq})"
        e = entries.get(seq)
        if e is None:
            report.fail(name, "cited by the evidence index but missing from ledger.jsonl")
            return
        if e.get("hash") != row.get("ledger_hash"):
            report.fail(name, "ledger entry hash differs from the evidence index")
            return
        if e.get("entity_type") != _ENTITY.get(row.get("kind")):
            report.fail(name, f"ledger entry records a {e.get('entity_type')}, not a {row.get('kind')}")
            return
        try:
            payload = json.loads(e["payload"]) if isinstance(e.get("payload"), str) else e.get("payload")
            shown = _evidence_file_hash(row.get("kind"), payload or {})
        except (ValueError, TypeError, AttributeError) as exc:
            report.fail(name, f"ledger payload is malformed ({exc})")
            return
        if shown != row.get("sha256"):
            report.fail(name, "SHA-256 in the evidence index differs from the ledger payload")
            return
