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


def deterministic_zip(files: dict[str, bytes], when: tuple[int, ...]) -> bytes:
    """Zip bytes with sorted entries, fixed timestamps and permissions, deflate level 6 (level 9
    took 21.8 s instead of 6.5 s on a 2,000-model export's 447 MB of CSV for 4 % smaller files)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, files[name], compresslevel=6)
    return buf.getvalue()


def build_manifest(ctx: ReportContext, files: dict[str, bytes],
                   ledger_start: Optional[dict] = None) -> dict:
    """The manifest for ``files`` (which must not include the manifest itself).

    ``ledger_start`` is the last ledger entry before the excerpt (None when the excerpt starts
    the chain): the excerpt's first ``prev_hash`` must be its hash.
    """
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
        "files": {name: {"sha256": sha256_hex(data), "bytes": len(data)}
                  for name, data in sorted(files.items())},
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
    fewer rows than its total must come that way."""
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
    full_tables = full_tables or {}
    for name, (cols, rows) in context_tables(ctx).items():
        path = f"tables/{name}.csv"
        if path in full_tables:
            files[path] = Path(full_tables[path]).read_bytes()
        elif name in CAPPED_TABLES and effective_total(ctx, name) != len(rows):
            raise InputError(f"table {name} holds {len(rows)} of its {effective_total(ctx, name)} rows in the context; "
                             "the full table is missing")
        else:
            files[path] = table_csv(cols, rows)
    for name, rows in sorted((extra_tables or {}).items()):
        if not _TABLE_NAME.match(name):
            raise UsageError(f"extra table name {name!r} must match {_TABLE_NAME.pattern}")
        path = f"tables/{name}.csv"
        if path in files:
            raise UsageError(f"extra table {name!r} clashes with a context table")
        cols: list[str] = []
        for r in rows:
            cols += [k for k in r if k not in cols]
        files[path] = table_csv(cols, rows)
    if ledger_start is not None and not isinstance(ledger_start, dict):
        raise InputError("ledger_start must be a ledger entry (dict) or None")
    manifest = build_manifest(ctx, files, ledger_start)
    files[MANIFEST_NAME] = manifest_bytes(manifest)
    return deterministic_zip(files, _zip_time(ctx.cover.as_of)), manifest


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
