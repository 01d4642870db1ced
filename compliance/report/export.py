"""The regulator export: one deterministic zip per report run.

Layout (entries sorted, timestamps = the report's as-of, permissions 0644)::

    context.json          canonical context JSON (what the context hash is computed over)
    ledger.jsonl          the quarter's ledger excerpt, one canonical JSON object per line
    cited.jsonl           the ledger entries the evidence index cites that are OLDER than the
                          excerpt (baselines, earlier checks, artifacts, datasets), by seq
    manifest.json         SHA-256 and size of every other file, tool version, as-of, hashes, and
                          the ledger entry the excerpt starts from (``ledger_start_entry``)
    report.pdf            PDF/A-3u with context.json attached
    tables/<name>.csv     one CSV per table of the context (and per extra table)

The manifest carries ``manifest_hash``: SHA-256 of its own canonical JSON with that field
removed, so a change to the manifest itself is detected and named.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Callable, Optional

from compliance.errors import InputError, UsageError
from compliance.hashing import GENESIS_HASH
from compliance.report.context import (
    ReportContext,
    canonical_json,
    context_hash,
    context_tables,
    context_to_json,
    hashed_context,
)
from compliance.report.tables import CAPPED_TABLES, effective_total
from compliance.report.tables import csv_value as _csv_value
from compliance.report.render import (
    DEFAULT_ROW_LIMIT,
    _as_of_datetime,
    atomic_write,
    render_pdf_bytes,
)

PACK_FORMAT = "compliance-pack/2"
PDF_NAME = "report.pdf"
CONTEXT_NAME = "context.json"
LEDGER_NAME = "ledger.jsonl"
CITED_NAME = "cited.jsonl"
MANIFEST_NAME = "manifest.json"
_TABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_csv(columns: list[str], rows: list[dict]) -> bytes:
    """CSV bytes: header then rows, '\\n' line ends, None as empty, floats as repr."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        extra = set(r) - set(columns)
        if extra:
            raise InputError(f"table row has columns not in the header: {sorted(extra)}")
        w.writerow([_csv_value(r.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def ledger_jsonl(entries: list[dict]) -> bytes:
    """The ledger excerpt as canonical JSON lines (order kept as given)."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError("ledger excerpt must be a list of dicts")
    return b"".join(canonical_json(e) + b"\n" for e in entries)


def _zip_time(as_of: str) -> tuple[int, int, int, int, int, int]:
    t = _as_of_datetime(as_of)
    t = max(t, dt.datetime(1980, 1, 1))
    return (t.year, t.month, t.day, t.hour, t.minute, t.second - t.second % 2)


def _zip_info(name: str, when: tuple[int, ...]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = (0o100644 & 0xFFFF) << 16
    return info


def deterministic_zip(files: dict[str, bytes], when: tuple[int, ...]) -> bytes:
    """Zip bytes with sorted entries, fixed timestamps and permissions, deflate level 6 (level 9
    took 21.8 s instead of 6.5 s on a 2,000-model export's 447 MB of CSV for 4 % smaller files)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _write_members(zf, files, when)
    return buf.getvalue()


def _write_members(zf: zipfile.ZipFile, files: dict[str, bytes], when: tuple[int, ...]) -> None:
    for name in sorted(files):
        zf.writestr(_zip_info(name, when), files[name], compresslevel=6)


class _StreamedTables:
    """The long tables' CSV files zipped by a thread, straight from disk, each hashed on the way
    (zlib and hashlib release the GIL on large blocks, so this runs beside the PDF's rendering on
    another core): ``result()`` gives ``{name: (sha256, bytes)}`` once they are in."""

    def __init__(self, zf: zipfile.ZipFile, paths: dict[str, Path], when: tuple[int, ...]) -> None:
        import threading

        self._zf, self._paths, self._when = zf, paths, when
        self._out: dict[str, tuple[str, int]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-zip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for name in sorted(self._paths):
                path = Path(self._paths[name])
                info = _zip_info(name, self._when)  # zlib's default level: 6, as the other members
                h, n = hashlib.sha256(), 0
                with open(path, "rb") as src, self._zf.open(info, "w", force_zip64=path.stat().st_size > 1 << 31) as dst:
                    while block := src.read(1 << 20):
                        h.update(block)
                        dst.write(block)
                        n += len(block)
                self._out[name] = (h.hexdigest(), n)
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def join(self) -> None:
        self._thread.join()

    def result(self) -> dict[str, tuple[str, int]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out


def build_manifest(ctx: ReportContext, files: dict[str, bytes],
                   ledger_start: Optional[dict] = None, hashed: Optional[dict[str, tuple[str, int]]] = None) -> dict:
    """The manifest for ``files`` (which must not include the manifest itself) and the files
    ``hashed`` already (name -> (SHA-256, size)).

    ``ledger_start`` is the last ledger entry before the excerpt (None when the excerpt starts
    the chain): the excerpt's first ``prev_hash`` must be its hash.
    """
    listed = {name: {"sha256": sha256_hex(data), "bytes": len(data)} for name, data in files.items()}
    listed.update({name: {"sha256": h, "bytes": n} for name, (h, n) in (hashed or {}).items()})
    manifest = {
        "format": PACK_FORMAT,
        "report_id": ctx.cover.report_id,
        "quarter": ctx.cover.quarter,
        "scope": ctx.cover.scope,
        "kind": ctx.kind,
        "as_of": ctx.cover.as_of,
        "tool_version": ctx.cover.tool_version,
        "context_hash": ctx.cover.context_hash,
        "ledger_head_hash": ctx.cover.ledger_head_hash,
        "ledger_start_hash": ledger_start["hash"] if ledger_start else GENESIS_HASH,
        "ledger_start_entry": ledger_start,
        "pdf": PDF_NAME,
        "files": dict(sorted(listed.items())),
    }
    manifest["manifest_hash"] = sha256_hex(canonical_json(manifest))
    return manifest


def member_hashes(manifest: dict) -> dict[str, str]:
    """The SHA-256 of every member of the zip ``build_export`` returned with ``manifest``: the
    hashes the manifest lists (of the very bytes zipped) and the manifest's own (no need to
    decompress hundreds of MB to hash them again)."""
    out = {name: f["sha256"] for name, f in manifest["files"].items()}
    out[MANIFEST_NAME] = sha256_hex(manifest_bytes(manifest))
    return out


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest as written: sorted keys, indented for people, UTF-8."""
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False,
                       allow_nan=False) + "\n").encode("utf-8")


def build_export(ctx: ReportContext, *, ledger_excerpt: list[dict],
                 ledger_start: Optional[dict] = None, cited: Optional[list[dict]] = None,
                 extra_tables: Optional[dict[str, list[dict]]] = None,
                 pdf: Optional[bytes] = None, row_limit: int = DEFAULT_ROW_LIMIT,
                 progress: Optional[Callable[[str, float], None]] = None,
                 ctx_json: Optional[bytes] = None,
                 full_tables: Optional[dict[str, Path]] = None) -> tuple[bytes, dict]:
    """The export zip as bytes and its manifest (see ``write_export``).

    ``ctx_json``: the context's canonical JSON as ``hashed_context`` gave it together with
    ``ctx`` (saves converting a large context again); it must carry the cover's context hash.
    ``full_tables``: ``tables/<name>.csv`` -> the file holding every row of a capped table
    (``tables.CAPPED_TABLES``), as the context was built; a capped table whose context holds
    fewer rows than its total must come that way. Members: those files first (by name), then
    every other member by name."""
    validated = ctx_json is not None
    if ctx_json is not None:
        if not ctx.cover.context_hash or f'"context_hash":"{ctx.cover.context_hash}"'.encode() not in ctx_json:
            raise InputError("ctx_json is not the JSON of this context (its hash differs from the cover's)")
    elif not ctx.cover.context_hash:
        ctx, ctx_json = hashed_context(ctx)
    elif ctx.cover.context_hash != context_hash(ctx):
        raise InputError("cover.context_hash does not match the context; build the context "
                         "again or call with_context_hash")
    else:
        ctx_json = context_to_json(ctx)
    full_tables = full_tables or {}
    tables = context_tables(ctx)
    streamed = {p: Path(full_tables[p]) for p in (f"tables/{name}.csv" for name in tables) if p in full_tables}
    when = _zip_time(ctx.cover.as_of)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # the long tables' files first, zipped by a thread while the PDF renders here; then the
        # other members by name (the manifest among them, once every hash is known)
        zipping = _StreamedTables(zf, streamed, when) if streamed else None
        try:
            files = _other_members(ctx, ctx_json, tables, streamed, ledger_excerpt, cited, extra_tables, ledger_start,
                                   pdf, row_limit, progress, validated)
        finally:
            if zipping is not None:
                zipping.join()
        hashed = zipping.result() if zipping is not None else {}
        manifest = build_manifest(ctx, files, ledger_start, hashed)
        files[MANIFEST_NAME] = manifest_bytes(manifest)
        _write_members(zf, files, when)
    return buf.getvalue(), manifest


def _other_members(ctx: ReportContext, ctx_json: bytes, tables: dict, streamed: dict[str, Path],
                   ledger_excerpt: list[dict], cited: Optional[list[dict]], extra_tables: Optional[dict[str, list[dict]]],
                   ledger_start: Optional[dict], pdf: Optional[bytes], row_limit: int,
                   progress: Optional[Callable[[str, float], None]], validated: bool) -> dict[str, bytes]:
    """Every member but the streamed long tables and the manifest, as bytes (the PDF rendered
    here unless given)."""
    if pdf is None:
        pdf = render_pdf_bytes(ctx, attachments=[(CONTEXT_NAME, ctx_json)], row_limit=row_limit,
                               progress=progress, validated=validated)
    files: dict[str, bytes] = {
        CONTEXT_NAME: ctx_json,
        LEDGER_NAME: ledger_jsonl(ledger_excerpt),
        PDF_NAME: pdf,
    }
    if cited is not None:
        files[CITED_NAME] = ledger_jsonl(sorted(cited, key=lambda e: e["seq"]))
    for name, (cols, rows) in tables.items():
        path = f"tables/{name}.csv"
        if path in streamed:
            continue
        if name in CAPPED_TABLES and effective_total(ctx, name) != len(rows):
            raise InputError(f"table {name} holds {len(rows)} of its {effective_total(ctx, name)} rows in the context; "
                             "the full table is missing")
        files[path] = table_csv(cols, rows)
    for name, rows in sorted((extra_tables or {}).items()):
        if not _TABLE_NAME.match(name):
            raise UsageError(f"extra table name {name!r} must match {_TABLE_NAME.pattern}")
        path = f"tables/{name}.csv"
        if path in files or path in streamed:
            raise UsageError(f"extra table {name!r} clashes with a context table")
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        files[path] = table_csv(cols, rows)
    if ledger_start is not None and not isinstance(ledger_start, dict):
        raise InputError("ledger_start must be a ledger entry (dict) or None")
    return files


def write_export(ctx: ReportContext, out_zip: Path, *, ledger_excerpt: list[dict],
                 ledger_start: Optional[dict] = None, cited: Optional[list[dict]] = None,
                 extra_tables: Optional[dict[str, list[dict]]] = None,
                 pdf: Optional[bytes] = None, row_limit: int = DEFAULT_ROW_LIMIT,
                 progress: Optional[Callable[[str, float], None]] = None) -> dict:
    """Write the regulator export zip atomically; returns the manifest (a dict).

    ``pdf`` may pass an already rendered PDF (it must carry ``context.json`` of this
    context as an attachment, or the pack will not verify); otherwise it is rendered here.
    The same inputs always give a byte-identical zip.
    """
    data, manifest = build_export(ctx, ledger_excerpt=ledger_excerpt, ledger_start=ledger_start, cited=cited,
                                  extra_tables=extra_tables, pdf=pdf, row_limit=row_limit,
                                  progress=progress)
    atomic_write(Path(out_zip), data)
    return manifest
