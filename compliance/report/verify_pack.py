"""Verify a regulator export zip without the database (strict: every rule fails, naming the file).

Checks, in order, and names the first bad file:

1. the zip opens; every entry name appears exactly once; the only entries are ``manifest.json``
   and the files it lists;
2. ``manifest.json`` (at most ``MAX_MANIFEST_BYTES``) parses, has every field with the right
   type, and its ``manifest_hash`` matches its own content;
3. every listed file is read with a size limit taken from the manifest (never more bytes than
   declared, never more than ``MAX_FILE_BYTES``), and has the listed size and SHA-256 (and CRC);
4. ``context.json`` hashes (with its own hash field blank) to the manifest's ``context_hash``,
   and its cover names the same report, quarter, as-of, tool version, context hash and ledger head;
   every table of the context is present as a CSV byte-identical to one derived from it again
   (a page-sized table, ``tables.CAPPED_TABLES``: the CSV's first rows are the context's rows and
   it holds exactly the table's total of rows);
5. the PDF has exactly one attachment, byte-identical to ``context.json`` (a small reader of the
   PDF's objects and object streams: no PDF library needed; decompression bounded);
6. every ledger line has every field with its type, in canonical form; every entry is re-hashed;
   every link is checked, the first one against ``ledger_start_hash`` (whose entry, carried in the
   manifest, is re-hashed and must be recorded before the quarter); ``seq`` is contiguous,
   ``recorded_at`` never decreases, lies in the quarter and not after the as-of; the excerpt ends
   at ``ledger_head_hash``;
7. every evidence row (of ``tables/appendix_evidence.csv``, the whole index) that cites a ledger entry finds it in the excerpt or, when it is
   older than the quarter, in ``cited.jsonl``: each cited entry is re-hashed on its own (every field,
   canonical form), lies before the excerpt (seq and time), is linked wherever its neighbour is in
   the pack (consecutive cited entries, the start entry), is cited by some row, and records that
   row (entity type and id) with the SHA-256 the row shows. The chain *between* an older entry and
   the excerpt is not in the pack: ``--db`` checks each cited entry against the store's.

What this cannot check without the store (``verify --pack --db`` does, see
:mod:`compliance.services.verification`): that the store recorded this report run with this PDF,
these files, this context hash and ledger head, and that the excerpt is the store's own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from compliance.errors import IntegrityFailure
from compliance.text import escape_controls
from compliance.hashing import GENESIS_HASH, ledger_entry_hash
from compliance.report.context import canonical_json, context_from_json, context_tables, json_context_hash
from compliance.report.tables import CAPPED_TABLES, effective_total
from compliance.report.export import (
    CITED_NAME,
    CONTEXT_NAME,
    LEDGER_NAME,
    MANIFEST_NAME,
    PACK_FORMAT,
    PDF_NAME,
    table_csv,
)

MAX_MANIFEST_BYTES = 16 << 20
MAX_FILE_BYTES = 1 << 30
MAX_OBJECT_STREAM_BYTES = 64 << 20
LEDGER_FIELDS = ("seq", "recorded_at", "actor", "action", "entity_type", "entity_id", "payload",
                 "prev_hash", "hash")
MANIFEST_FIELDS = {"format": str, "report_id": str, "quarter": str, "scope": str, "kind": str,
                   "as_of": str, "tool_version": str, "context_hash": str, "ledger_head_hash": str,
                   "ledger_start_hash": str, "ledger_start_entry": (dict, type(None)), "pdf": str,
                   "files": dict, "manifest_hash": str}
COVER_FIELDS = ("report_id", "quarter", "as_of", "tool_version", "context_hash", "ledger_head_hash")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


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
    ledger_start_hash: Optional[str] = None
    ledger_entries: int = 0
    first_bad: Optional[str] = None
    problems: list[str] = field(default_factory=list)
    file_sha256: dict[str, str] = field(default_factory=dict)
    ledger: list[dict] = field(default_factory=list)
    cited: list[dict] = field(default_factory=list)

    def fail(self, name: str, message: str) -> "PackReport":
        name = escape_controls(name)  # names come from the pack: never echo them raw
        if self.first_bad is None:
            self.first_bad = name
        self.problems.append(f"{name}: {message}")
        self.ok = False
        return self

    def raise_for_failure(self) -> None:
        if not self.ok:
            raise IntegrityFailure(f"pack {self.path} does not verify: {self.problems[0]}")


class _Bad(Exception):
    """A rule failed: (file name, message)."""


class TooLarge(ValueError):
    """A stream decompresses to more than it may."""


# ------------------------------------------------------------------------------------- the PDF
_OBJ = re.compile(rb"(\d+)\s+(\d+)\s+obj\b")


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


def _inflate(raw: bytes, head: bytes, limit: int) -> bytes:
    """Decode a stream's data (no filter or FlateDecode only), never more than ``limit`` bytes."""
    filters = re.search(rb"/Filter\s*(\[[^\]]*\]|/\w+)", head)
    names = re.findall(rb"/(\w+)", filters.group(1)) if filters else []
    if re.search(rb"/DecodeParms", head):
        raise ValueError("stream with /DecodeParms is not supported")
    for name in names:
        if name != b"FlateDecode":
            raise ValueError(f"unsupported filter {name.decode(errors='replace')}")
        d = zlib.decompressobj()
        out = d.decompress(raw, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge(f"stream decompresses to more than {limit} bytes")
        raw = out
    if len(raw) > limit:
        raise TooLarge(f"stream is larger than {limit} bytes")
    return raw


def _pdf_objects(pdf: bytes) -> list[tuple[int, bytes, Optional[tuple[int, int]]]]:
    """The PDF's top-level objects in file order: (number, dictionary/body, stream span or None).

    Stream data is skipped by its direct ``/Length``; an object header found anywhere else (e.g.
    hidden inside another stream's data) is refused, as are encrypted and incrementally updated
    files, which this reader cannot see through.
    """
    if pdf.count(b"startxref") != 1 or pdf.count(b"%%EOF") != 1 or not pdf.rstrip().endswith(b"%%EOF"):
        raise ValueError("not a single-revision PDF (incremental updates are not accepted)")
    objs, pos, starts = [], 0, set()
    while True:
        m = _OBJ.search(pdf, pos)
        if m is None:
            break
        starts.add(m.start())
        body_start = m.end()
        end = pdf.find(b"endobj", body_start)
        if end < 0:
            raise ValueError(f"object {int(m.group(1))} has no endobj")
        lead = re.match(rb"\s*<<", pdf[body_start:body_start + 64])
        after = _dict_end(pdf, body_start + lead.end() - 2) if lead else None
        stream = re.match(rb"\s*stream\b", pdf[after:after + 64]) if after is not None else None
        span = None
        if stream:
            s = after + stream.end() - len(b"stream")
            head = pdf[body_start:after]
            length = re.search(rb"/Length\s+(\d+)(\s+\d+\s+R)?", head)
            if not length or length.group(2):
                raise ValueError(f"stream object {int(m.group(1))} without a direct /Length")
            d0 = s + len(b"stream")
            d0 += 2 if pdf[d0:d0 + 2] == b"\r\n" else 1 if pdf[d0:d0 + 1] in (b"\n", b"\r") else 0
            d1 = d0 + int(length.group(1))
            if not re.match(rb"\s*endstream\s+endobj", pdf[d1:d1 + 64]):
                raise ValueError(f"stream object {int(m.group(1))}: /Length does not end at endstream")
            span = (d0, d1)
            end = pdf.find(b"endobj", d1)
            objs.append((int(m.group(1)), head, span))
        else:
            objs.append((int(m.group(1)), pdf[body_start:end], None))
        pos = end + len(b"endobj")
    hidden = [m.start() for m in _OBJ.finditer(pdf) if m.start() not in starts]
    if hidden:
        raise ValueError(f"an object header at byte {hidden[0]} lies inside another object")
    trailer = pdf[pdf.rfind(b"trailer"):] if b"trailer" in pdf else b""
    if re.search(rb"/Encrypt\b", b"".join(o[1] for o in objs) + trailer):
        raise ValueError("encrypted PDFs are not accepted")
    return objs


def pdf_attachment_streams(pdf: bytes) -> list[tuple[bytes, bytes]]:
    """Every embedded file stream of a PDF as (dictionary, raw data), not yet decoded.

    Supports what WeasyPrint writes: classic objects and FlateDecode object streams. Counts
    ``/EmbeddedFile`` streams *and* the streams every ``/EF`` entry of a file specification points
    to (wherever it sits), so an attachment cannot hide by dropping its ``/Type``.
    """
    objs = _pdf_objects(pdf)
    plain: list[bytes] = []  # every dictionary a reader could resolve (top level and in ObjStm)
    streams: dict[int, tuple[bytes, tuple[int, int]]] = {}
    budget = MAX_OBJECT_STREAM_BYTES
    for num, head, span in objs:
        if span is None:
            plain.append(head)
            continue
        streams[num] = (head, span)
        plain.append(head)
        if re.search(rb"/Type\s*/ObjStm\b", head):
            try:
                data = _inflate(pdf[span[0]:span[1]], head, budget)
            except TooLarge:
                raise ValueError(f"object streams decompress to more than {MAX_OBJECT_STREAM_BYTES} bytes") from None
            budget -= len(data)
            if re.search(rb"\bstream\b", data):
                raise ValueError(f"object stream {num} contains a stream")
            plain.append(data)
    text = b"\n".join(plain)
    refs = {int(r) for ef in re.finditer(rb"/EF\b\s*<<", text)
            for r in re.findall(rb"/\w+\s+(\d+)\s+\d+\s+R", text[ef.start():_dict_end(text, ef.end() - 2)])}
    if re.search(rb"/EF\b(?!\s*<<)", text):
        raise ValueError("a file specification's /EF is not a direct dictionary")
    typed = {num for num, (head, _) in streams.items() if re.search(rb"/Type\s*/EmbeddedFile\b", head)}
    out = []
    for num in sorted(refs | typed):
        if num not in streams:
            raise ValueError(f"embedded file {num} is not a stream object")
        head, (d0, d1) = streams[num]
        out.append((head, pdf[d0:d1]))
    return out


def pdf_attachments(pdf: bytes, limit: int) -> list[bytes]:
    """Every embedded file of a PDF, decoded (each at most ``limit`` bytes, else ``TooLarge``) and
    checked against its ``/CheckSum`` (MD5) when present."""
    out = []
    for head, data in pdf_attachment_streams(pdf):
        raw = _inflate(data, head, limit)
        checksum = re.search(rb"/CheckSum\s*<([0-9a-fA-F]{32})>", head)
        if checksum and hashlib.md5(raw, usedforsecurity=False).hexdigest() != \
                checksum.group(1).decode().lower():
            raise ValueError("embedded file does not match its /CheckSum")
        out.append(raw)
    return out


def pdf_embedded_files(pdf: bytes) -> list[bytes]:
    """The decoded contents of every embedded file of a PDF (at most ``MAX_FILE_BYTES`` each)."""
    return pdf_attachments(pdf, MAX_FILE_BYTES)


# ------------------------------------------------------------------------------------ the ledger
def quarter_start(quarter: str) -> datetime:
    m = _QUARTER.match(quarter)
    if not m:
        raise ValueError(f"quarter {quarter!r} is not like 2026Q3")
    return datetime(int(m.group(1)), 3 * int(m.group(2)) - 2, 1, tzinfo=timezone.utc)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_entry(e: Any, where: str, name: str = LEDGER_NAME) -> dict:
    """One ledger entry with every field, each of its type, and a hash that matches its content."""
    try:
        return _check_entry(e, where)
    except _Bad as bad:
        raise _Bad(name, bad.args[1]) from None


def _check_entry(e: Any, where: str) -> dict:
    if not isinstance(e, dict):
        raise _Bad(LEDGER_NAME, f"{where} is not a JSON object")
    missing = [k for k in LEDGER_FIELDS if k not in e]
    if missing:
        raise _Bad(LEDGER_NAME, f"{where} lacks field(s) {', '.join(missing)}")
    extra = sorted(set(e) - set(LEDGER_FIELDS))
    if extra:
        raise _Bad(LEDGER_NAME, f"{where} has unknown field(s) {', '.join(extra)}")
    if type(e["seq"]) is not int or e["seq"] < 1:
        raise _Bad(LEDGER_NAME, f"{where}: seq is not a positive integer")
    for k in ("recorded_at", "actor", "action", "entity_type", "entity_id", "payload"):
        if not isinstance(e[k], str):
            raise _Bad(LEDGER_NAME, f"{where}: {k} is not a string")
    if not _ISO.match(e["recorded_at"]):
        raise _Bad(LEDGER_NAME, f"{where}: recorded_at is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        _instant(e["recorded_at"])
    except ValueError:
        raise _Bad(LEDGER_NAME, f"{where}: recorded_at is not a valid time") from None
    for k in ("prev_hash", "hash"):
        if not isinstance(e[k], str) or not _HEX64.match(e[k]):
            raise _Bad(LEDGER_NAME, f"{where}: {k} is not 64 lowercase hex digits")
    h = ledger_entry_hash(e["prev_hash"], e["seq"], e["recorded_at"], e["actor"], e["action"],
                          e["entity_type"], e["entity_id"], e["payload"])
    if h != e["hash"]:
        raise _Bad(LEDGER_NAME, f"{where} (entry {e['seq']}): hash does not match its content")
    return e


def check_ledger(data: bytes, manifest: dict) -> list[dict]:
    """The excerpt's entries, each checked, chained from the start hash to the head (see module)."""
    start_hash, head = manifest["ledger_start_hash"], manifest["ledger_head_hash"]
    qstart, as_of = quarter_start(manifest["quarter"]), _instant(manifest["as_of"])
    before = manifest["ledger_start_entry"]
    if before is None:
        if start_hash != GENESIS_HASH:
            raise _Bad(MANIFEST_NAME, "ledger_start_entry is missing but ledger_start_hash is not the genesis hash")
        prev, prev_seq, prev_at = GENESIS_HASH, 0, None
    else:
        check_entry(before, "ledger_start_entry")
        if before["hash"] != start_hash:
            raise _Bad(MANIFEST_NAME, "ledger_start_entry's hash is not ledger_start_hash")
        if _instant(before["recorded_at"]) >= qstart:
            raise _Bad(MANIFEST_NAME, f"ledger_start_entry (entry {before['seq']}) is recorded inside the "
                                      f"quarter: the excerpt does not start at the quarter's first entry")
        prev, prev_seq, prev_at = before["hash"], before["seq"], before["recorded_at"]
    if data and not data.endswith(b"\n"):
        raise _Bad(LEDGER_NAME, "does not end with a newline")
    entries = []
    for n, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        where = f"line {n}"
        try:
            e = json.loads(line)
        except ValueError:
            raise _Bad(LEDGER_NAME, f"{where} is not JSON") from None
        check_entry(e, where)
        if canonical_json(e) != line:
            raise _Bad(LEDGER_NAME, f"{where} is not in canonical form")
        if e["seq"] != prev_seq + 1:
            raise _Bad(LEDGER_NAME, f"{where}: seq {e['seq']} does not follow {prev_seq} "
                                    f"(entries removed, duplicated or re-ordered)")
        if e["prev_hash"] != prev:
            raise _Bad(LEDGER_NAME, f"{where} (entry {e['seq']}): prev_hash does not link to the "
                                    + ("excerpt's start hash" if n == 1 else "previous entry"))
        if prev_at is not None and e["recorded_at"] < prev_at:
            raise _Bad(LEDGER_NAME, f"{where} (entry {e['seq']}): recorded_at goes back in time")
        t = _instant(e["recorded_at"])
        if t < qstart or t > as_of:
            raise _Bad(LEDGER_NAME, f"{where} (entry {e['seq']}): recorded_at {e['recorded_at']} is "
                                    f"outside the quarter up to the as-of")
        entries.append(e)
        prev, prev_seq, prev_at = e["hash"], e["seq"], e["recorded_at"]
    if prev != head:
        raise _Bad(LEDGER_NAME, "the excerpt does not end at the manifest's ledger_head_hash "
                                "(entries removed at the end, or a different head)")
    return entries


# ------------------------------------------------------------------------------------ the pack
def _check_manifest(raw: bytes) -> dict:
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _Bad(MANIFEST_NAME, f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(manifest, dict):
        raise _Bad(MANIFEST_NAME, "not a JSON object")
    for k, types in MANIFEST_FIELDS.items():
        if k not in manifest:
            raise _Bad(MANIFEST_NAME, f"field {k!r} is missing")
        if not isinstance(manifest[k], types):
            raise _Bad(MANIFEST_NAME, f"field {k!r} has the wrong type")
    extra = sorted(set(manifest) - set(MANIFEST_FIELDS))
    if extra:
        raise _Bad(MANIFEST_NAME, f"unknown field(s) {', '.join(extra)}")
    body = {k: v for k, v in manifest.items() if k != "manifest_hash"}
    try:
        recomputed = hashlib.sha256(canonical_json(body)).hexdigest()
    except Exception as exc:  # noqa: BLE001 - e.g. a float NaN: not canonical JSON
        raise _Bad(MANIFEST_NAME, f"not canonical JSON ({exc})") from None
    if manifest["manifest_hash"] != recomputed:
        raise _Bad(MANIFEST_NAME, "manifest_hash does not match the manifest")
    if manifest["format"] != PACK_FORMAT:
        raise _Bad(MANIFEST_NAME, f"unknown format {manifest['format']!r} (this version verifies {PACK_FORMAT})")
    for k in ("context_hash", "ledger_head_hash", "ledger_start_hash"):
        if not _HEX64.match(manifest[k]):
            raise _Bad(MANIFEST_NAME, f"{k} is not 64 lowercase hex digits")
    if manifest["pdf"] != PDF_NAME:
        raise _Bad(MANIFEST_NAME, f"pdf must be {PDF_NAME!r}")
    try:
        quarter_start(manifest["quarter"])
        if _instant(manifest["as_of"]).tzinfo is None:
            raise ValueError("as_of has no time zone")
    except ValueError as exc:
        raise _Bad(MANIFEST_NAME, f"quarter or as_of is malformed ({exc})") from None
    for name, meta in manifest["files"].items():
        if name == MANIFEST_NAME or not isinstance(meta, dict) or set(meta) != {"sha256", "bytes"} \
                or type(meta["bytes"]) is not int or meta["bytes"] < 0 \
                or not isinstance(meta["sha256"], str) or not _HEX64.match(meta["sha256"]):
            raise _Bad(MANIFEST_NAME, f"files[{name!r}] is not {{sha256: 64 hex digits, bytes: integer}}")
        if meta["bytes"] > MAX_FILE_BYTES:
            raise _Bad(name, f"declares {meta['bytes']} bytes, over the {MAX_FILE_BYTES}-byte limit")
    for name in (CONTEXT_NAME, LEDGER_NAME, PDF_NAME):
        if name not in manifest["files"]:
            raise _Bad(name, "not listed in the manifest")
    return manifest


def _same_record(x: list[str], y: list[str]) -> bool:
    """Two CSV records with the same cells, numbers compared by value (an integer-valued float
    field is written ``0`` by one context and ``0.0`` by the same context read back from JSON)."""
    if len(x) != len(y):
        return False
    for u, v in zip(x, y):
        if u != v:
            try:
                if float(u) != float(v):
                    return False
            except ValueError:
                return False
    return True


def _same_table(a: bytes, b: bytes) -> bool:
    """Two CSVs with the same cells (see ``_same_record``)."""
    try:
        ra = list(csv.reader(io.StringIO(a.decode("utf-8"))))
        rb = list(csv.reader(io.StringIO(b.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error):
        return False
    return len(ra) == len(rb) and all(_same_record(x, y) for x, y in zip(ra, rb))


def _check_capped(path: str, data: bytes, derived: bytes, total: int) -> None:
    """A page-sized table: the CSV starts with the context's rows (header included) and holds
    exactly ``total`` rows."""
    try:
        head = list(csv.reader(io.StringIO(derived.decode("utf-8"))))
        n = -1
        for n, rec in enumerate(csv.reader(io.StringIO(data.decode("utf-8"), newline=""))):
            if n < len(head) and not _same_record(rec, head[n]):
                raise _Bad(path, f"row {n} differs from the context's (a figure was changed)" if n else
                           "its header is not the context table's")
    except (UnicodeDecodeError, csv.Error):
        raise _Bad(path, "is not a UTF-8 CSV") from None
    if n + 1 < len(head):
        raise _Bad(path, f"holds {max(n, 0)} rows, fewer than the {len(head) - 1} of the context")
    if n != total:
        raise _Bad(path, f"holds {n} rows; the context's total is {total}")


def _csv_evidence(data: bytes) -> list[dict]:
    """The evidence index from its CSV: each row as the context's JSON would give it."""
    out = []
    try:
        for n, row in enumerate(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")), 1):
            seq = row.get("ledger_seq")
            out.append({**row, "ledger_seq": int(seq) if seq not in (None, "") else None})
    except (UnicodeDecodeError, csv.Error, ValueError):
        raise _Bad("tables/appendix_evidence.csv", f"row {len(out) + 1}: ledger_seq is not a number") from None
    return out


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, decompressing at most ``limit + 1`` of them (the CRC is checked at EOF)."""
    if info.file_size > limit:
        raise _Bad(info.filename, f"is {info.file_size} bytes in the zip, more than the {limit} declared")
    out, left = [], limit + 1
    try:
        with zf.open(info) as fh:
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                out.append(chunk)
                left -= len(chunk)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise _Bad(info.filename, f"cannot be read from the zip ({exc})") from None
    data = b"".join(out)
    if len(data) > limit:
        raise _Bad(info.filename, f"decompresses to more than the {limit} bytes declared")
    return data


def _verify(zip_path: Path, report: PackReport) -> None:
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise _Bad(str(zip_path), f"not a readable zip ({exc})") from None
    with zf:
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if info.filename in infos:
                raise _Bad(info.filename, "appears more than once in the zip")
            infos[info.filename] = info
        if MANIFEST_NAME not in infos:
            raise _Bad(MANIFEST_NAME, "missing")
        manifest = _check_manifest(_read(zf, infos[MANIFEST_NAME], MAX_MANIFEST_BYTES))
        files = manifest["files"]
        report.report_id, report.quarter, report.as_of = manifest["report_id"], manifest["quarter"], manifest["as_of"]
        report.context_hash, report.ledger_head_hash = manifest["context_hash"], manifest["ledger_head_hash"]
        report.ledger_start_hash = manifest["ledger_start_hash"]
        names = sorted((set(files) | set(infos)) - {MANIFEST_NAME})
        for name in names:
            if name not in files:
                raise _Bad(name, "present in the zip but not listed in the manifest")
            if name not in infos:
                raise _Bad(name, "listed in the manifest but missing from the zip")
        kept: dict[str, bytes] = {}
        for name in names:
            data = _read(zf, infos[name], files[name]["bytes"])
            digest = hashlib.sha256(data).hexdigest()
            if len(data) != files[name]["bytes"] or digest != files[name]["sha256"]:
                raise _Bad(name, "SHA-256 does not match the manifest")
            report.file_sha256[name] = digest
            report.files_checked += 1
            if name in (CONTEXT_NAME, LEDGER_NAME, PDF_NAME, CITED_NAME) or name.startswith("tables/"):
                kept[name] = data
        report.file_sha256[MANIFEST_NAME] = hashlib.sha256(
            _read(zf, infos[MANIFEST_NAME], MAX_MANIFEST_BYTES)).hexdigest()

    ctx_json = kept[CONTEXT_NAME]
    try:
        recomputed = json_context_hash(ctx_json)
        cover = json.loads(ctx_json)["cover"]
        if not isinstance(cover, dict):
            raise TypeError("cover is not an object")
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise _Bad(CONTEXT_NAME, f"malformed ({str(exc)[:120]})") from None
    if recomputed != manifest["context_hash"]:
        raise _Bad(CONTEXT_NAME, "context hash does not match the manifest")
    for k in COVER_FIELDS:
        if cover.get(k) != manifest[k]:
            raise _Bad(CONTEXT_NAME, f"cover.{k} differs from the manifest's")

    try:
        ctx = context_from_json(ctx_json)
        tables = context_tables(ctx)
    except Exception as exc:  # noqa: BLE001 - a context that does not parse is a bad file
        raise _Bad(CONTEXT_NAME, f"does not match the context schema ({str(exc)[:120]})") from None
    capped = CAPPED_TABLES if ctx.schema_version != "1" else {}
    for name, (cols, rows) in sorted(tables.items()):
        path = f"tables/{name}.csv"
        if path not in files:
            raise _Bad(path, "a table of context.json is missing from the pack")
        derived = table_csv(cols, rows)
        if name in capped:
            _check_capped(path, kept[path], derived, effective_total(ctx, name))
        elif report.file_sha256[path] != hashlib.sha256(derived).hexdigest() \
                and not _same_table(kept[path], derived):
            raise _Bad(path, "does not match the table in context.json (a figure was changed)")
    evidence_csv = "tables/appendix_evidence.csv"
    evidence = _csv_evidence(kept[evidence_csv]) if capped and evidence_csv in kept else None

    try:
        count = len(pdf_attachment_streams(kept[PDF_NAME]))
        if count != 1:
            raise _Bad(PDF_NAME, f"carries {count} attachments; exactly one (context.json) is allowed")
        attached = pdf_attachments(kept[PDF_NAME], len(ctx_json))
    except TooLarge:
        raise _Bad(PDF_NAME, "an attachment is larger than context.json of this pack "
                             "(it is not that file; decompression stopped there)") from None
    except (ValueError, zlib.error) as exc:
        raise _Bad(PDF_NAME, f"embedded files cannot be read ({exc})") from None
    if attached[0] != ctx_json:
        raise _Bad(PDF_NAME, "its attachment is not context.json of this pack")

    report.ledger = check_ledger(kept[LEDGER_NAME], manifest)
    report.ledger_entries = len(report.ledger)
    report.cited = check_cited(kept.get(CITED_NAME), ctx_json, report.ledger, manifest, evidence)


def verify_pack(zip_path: Path) -> PackReport:
    """Verify an export zip; the report names the first bad file (``first_bad``)."""
    report = PackReport(ok=True, path=str(zip_path))
    try:
        _verify(Path(zip_path), report)
    except _Bad as bad:
        report.fail(*bad.args)
    except (MemoryError, RecursionError) as exc:
        report.fail(str(zip_path), f"too large or too deeply nested to verify ({type(exc).__name__})")
    return report


_ENTITY = {"check": "check_run", "dataset": "dataset", "artifact": "artifact", "model_version": "model_version"}


def _evidence_file_hash(kind: str, payload: dict) -> Optional[str]:
    """The SHA-256 an evidence row shows, derived from its ledger payload."""
    if kind == "check":
        return hashlib.sha256(canonical_json(payload.get("input_hashes") or {})).hexdigest()
    if kind == "model_version":
        return payload.get("weights_sha256")
    return payload.get("sha256")


def _row_entity_ok(row: dict, e: dict, payload: dict) -> bool:
    """Whether ledger entry ``e`` records the very row the evidence index names."""
    kind, ref, eid = row.get("kind"), str(row.get("ref")), e["entity_id"]
    if kind == "check":
        return ref.startswith(f"check {eid} ")
    if kind == "dataset":
        return ref == f"dataset {eid}"
    if kind == "artifact":
        return ref == eid
    if kind == "model_version":
        return ref == f"{payload.get('model_id')} {payload.get('label')}"
    return False


def check_cited(data: Optional[bytes], ctx_json: bytes, excerpt: list[dict], manifest: dict,
                evidence: Optional[list[dict]] = None) -> list[dict]:
    """Rule 7 (see the module): the older entries the evidence index cites, each verified on its
    own, and every cited entry (older or in the excerpt) against the row that cites it.
    ``evidence``: the whole index (its CSV) when the context carries only its first rows."""
    start = manifest["ledger_start_entry"]
    qstart = quarter_start(manifest["quarter"])
    first = excerpt[0]["seq"] if excerpt else (start["seq"] + 1 if start else 1)
    cited: list[dict] = []
    if data and not data.endswith(b"\n"):
        raise _Bad(CITED_NAME, "does not end with a newline")
    prev: Optional[dict] = None
    for n, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        where = f"line {n}"
        try:
            e = json.loads(line)
        except ValueError:
            raise _Bad(CITED_NAME, f"{where} is not JSON") from None
        check_entry(e, where, CITED_NAME)
        if canonical_json(e) != line:
            raise _Bad(CITED_NAME, f"{where} is not in canonical form")
        if e["seq"] >= first or _instant(e["recorded_at"]) >= qstart:
            raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}) is not older than the quarter's excerpt "
                                   f"(it starts at entry {first})")
        if prev is not None:
            if e["seq"] <= prev["seq"]:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}): entries are not in increasing seq order")
            if e["seq"] == prev["seq"] + 1 and e["prev_hash"] != prev["hash"]:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}): prev_hash does not link to entry {prev['seq']}")
            if e["recorded_at"] < prev["recorded_at"]:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}): recorded_at goes back in time")
        if start is not None:
            if e["seq"] == start["seq"] and e != start:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}) differs from the manifest's ledger_start_entry")
            if e["seq"] == start["seq"] - 1 and start["prev_hash"] != e["hash"]:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}): ledger_start_entry does not link to it")
            if e["recorded_at"] > start["recorded_at"]:
                raise _Bad(CITED_NAME, f"{where} (entry {e['seq']}): recorded after ledger_start_entry")
        cited.append(e)
        prev = e
    try:
        if evidence is None:
            evidence = json.loads(ctx_json)["appendix"]["evidence"]
        if not isinstance(evidence, list):
            raise TypeError("appendix.evidence is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise _Bad(CONTEXT_NAME, f"malformed appendix ({str(exc)[:120]})") from None
    older = {e["seq"]: e for e in cited}
    inside = {e["seq"]: e for e in excerpt}
    used: set[int] = set()
    for row in evidence:
        seq = row.get("ledger_seq") if isinstance(row, dict) else None
        if seq is None:
            continue
        label = f"evidence row {row.get('kind')} {row.get('ref')!s}"
        home = LEDGER_NAME if seq >= first else CITED_NAME
        e = (inside if seq >= first else older).get(seq)
        if e is None:
            raise _Bad(home, f"{label} cites ledger entry {seq}, which is missing")
        used.add(seq)
        if e["hash"] != row.get("ledger_hash"):
            raise _Bad(home, f"entry {seq}: its hash is not the one {label} cites")
        if e["entity_type"] != _ENTITY.get(row.get("kind")):
            raise _Bad(home, f"entry {seq} records a {e['entity_type']}, not the {row.get('kind')} of {label}")
        try:
            payload = json.loads(e["payload"])
            if not isinstance(payload, dict):
                raise TypeError("payload is not an object")
            shown = _evidence_file_hash(row.get("kind"), payload)
        except (ValueError, TypeError) as exc:
            raise _Bad(home, f"entry {seq}: payload is malformed ({str(exc)[:80]})") from None
        if not _row_entity_ok(row, e, payload):
            raise _Bad(home, f"entry {seq} records {e['entity_type']} {e['entity_id']}, not {label}")
        if shown != row.get("sha256"):
            raise _Bad(home, f"entry {seq}: its payload's SHA-256 differs from the one {label} shows")
    extra = sorted(set(older) - used)
    if extra:
        raise _Bad(CITED_NAME, f"entry {extra[0]} is cited by no row of the evidence index")
    return cited
