"""The pack as an editable Word document (``report --format docx``; needs the ``docx`` extra).

The document is built from the same HTML the PDF is laid out from, so it has the same chapters,
headings, paragraphs and tables; headings use Word's Heading styles (the navigation pane lists
them) and the charts are PNGs drawn by the same code from the same data as the SVGs.
Deterministic: the core properties carry the as-of, never the current time.
"""

from __future__ import annotations

import hashlib
import io
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

from compliance.errors import UsageError
from compliance.report import charts as charts_mod
from compliance.report.context import ReportContext
from compliance.report.render import DEFAULT_ROW_LIMIT, _as_of_datetime, atomic_write, render_html

_BLOCK = {"p", "h1", "h2", "h3", "li", "figcaption", "div"}


class _Builder(HTMLParser):
    """Walks the pack's HTML and writes Word blocks: headings, paragraphs, lists, tables, images."""

    def __init__(self, doc, pngs: dict[str, bytes]):
        super().__init__(convert_charrefs=True)
        self.doc, self.pngs = doc, pngs
        self.stack: list[tuple[str, dict]] = []
        self.text: list[tuple[str, bool, bool]] = []  # (text, bold, italic)
        self.table: Optional[list[list[tuple[str, bool]]]] = None
        self.cell: Optional[list[str]] = None
        self.in_style = False
        self.in_cover = False
        self.bold = 0
        self.italic = 0

    # -- helpers
    def _flush(self, tag: str, attrs: dict) -> None:
        runs = [(t, b, i) for t, b, i in self.text]
        self.text = []
        joined = "".join(t for t, _, _ in runs).strip()
        if not joined:
            return
        cls = attrs.get("class", "")
        if tag == "h1":
            if self.in_cover:
                self.doc.add_heading(joined, level=0)
            else:
                self.doc.add_heading(joined, level=1)
            return
        if tag in ("h2", "h3"):
            self.doc.add_heading(joined, level=int(tag[1]))
            return
        style = "List Bullet" if tag == "li" else ("Caption" if tag == "figcaption" else None)
        par = self.doc.add_paragraph(style=style)
        for t, b, i in runs:
            run = par.add_run(" ".join(t.split()) if t.strip() else " ")
            run.bold, run.italic = bool(b) or None, bool(i) or None
        if "note" in cls or "empty" in cls:
            for r in par.runs:
                r.italic = True

    def _attrs(self, attrs) -> dict:
        return {k: (v or "") for k, v in attrs}

    # -- parser callbacks
    def handle_starttag(self, tag, attrs):
        a = self._attrs(attrs)
        if tag == "style":
            self.in_style = True
            return
        if tag == "section" and "cover" in a.get("class", ""):
            self.in_cover = True
        if tag == "section" and "contents" in a.get("class", ""):
            self.stack.append(("skip", a))
            return
        if tag in ("b", "strong", "th"):
            self.bold += 1
        if tag in ("i", "em"):
            self.italic += 1
        if tag == "br":
            self._data("\n")
        if tag == "table":
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = []
        elif tag == "img" and a.get("src", "").startswith("chart:"):
            png = self.pngs.get(a["src"][6:])
            if png:
                from docx.shared import Mm

                self.doc.add_picture(io.BytesIO(png), width=Mm(170))
        elif tag in _BLOCK and self.cell is None:
            if self.text and tag in ("div", "p", "li"):
                self._flush("p", {})
        self.stack.append((tag, a))

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False
            return
        while self.stack:
            t, a = self.stack.pop()
            if t == "skip" and tag == "section":
                return
            if t == tag:
                break
        if any(t == "skip" for t, _ in self.stack):
            return
        if tag in ("b", "strong", "th"):
            self.bold -= 1
        if tag in ("i", "em"):
            self.italic -= 1
        if tag in ("td", "th") and self.table is not None and self.cell is not None:
            self.table[-1].append(("".join(self.cell).strip(), tag == "th"))
            self.cell = None
        elif tag == "table" and self.table is not None:
            self._emit_table(self.table)
            self.table = None
        elif tag == "section" and self.in_cover:
            self._flush("p", {})
            self.in_cover = False
            self.doc.add_page_break()
        elif tag in _BLOCK and self.cell is None and self.table is None:
            self._flush(tag, a)

    def _data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        else:
            self.text.append((data, self.bold > 0, self.italic > 0))

    def handle_data(self, data):
        if self.in_style or any(t == "skip" for t, _ in self.stack):
            return
        self._data(data)

    def _emit_table(self, rows: list[list[tuple[str, bool]]]) -> None:
        rows = [r for r in rows if r]
        if not rows:
            return
        ncol = max(len(r) for r in rows)
        t = self.doc.add_table(rows=len(rows), cols=ncol)
        t.style = "Table Grid"
        for i, r in enumerate(rows):
            for j, (text, head) in enumerate(r):
                cell = t.cell(i, j)
                cell.text = " ".join(text.split())
                if head:
                    for p in cell.paragraphs:
                        for run in p.runs:
                            run.bold = True
        self.doc.add_paragraph()


def render_docx_bytes(ctx: ReportContext, *, kind: Optional[str] = None,
                      row_limit: int = DEFAULT_ROW_LIMIT) -> bytes:
    """The pack as .docx bytes (same sections, tables and charts as the PDF)."""
    try:
        import docx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("--format docx needs python-docx: pip install 'compliance[docx]'") from exc
    pngs = charts_mod.all_charts_png(ctx, kind)
    html = render_html(ctx, kind, row_limit=row_limit, chart_uris={k: f"chart:{k}" for k in pngs})
    doc = docx.Document()
    when = _as_of_datetime(ctx.cover.as_of)
    props = doc.core_properties
    props.title = f"{ctx.cover.title} — {ctx.cover.scope} — {ctx.cover.quarter}"
    props.author = props.last_modified_by = ctx.cover.organisation
    props.subject = f"report {ctx.cover.report_id}; context {ctx.cover.context_hash}"
    props.created = props.modified = when
    props.revision = 1
    b = _Builder(doc, pngs)
    b.feed(html)
    b.close()
    buf = io.BytesIO()
    doc.save(buf)
    return _normalise_zip(buf.getvalue(), when)


def _normalise_zip(data: bytes, when) -> bytes:
    """Rewrite the .docx zip with fixed entry times so the same context gives the same bytes."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second - when.second % 2)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=stamp)
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


def write_docx(ctx: ReportContext, out_path: Path, **kwargs) -> str:
    """Write the .docx atomically; returns its SHA-256."""
    data = render_docx_bytes(ctx, **kwargs)
    atomic_write(Path(out_path), data)
    return hashlib.sha256(data).hexdigest()
