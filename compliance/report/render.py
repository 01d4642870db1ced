"""Render a report context to HTML (Jinja2) and PDF/A-3 (WeasyPrint), deterministically.

Templates never query: they see the context (``ctx``), the charts as ``data:`` URIs and a few
formatting filters. Dates in the PDF come only from the context's as-of (``dcterms.created`` /
``modified`` and the attachment dates); WeasyPrint only fetches files inside the templates
folder(s) and ``data:`` URIs. Output files are written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import jinja2
import markupsafe
from markupsafe import Markup, escape

from compliance.text import escape_controls
from compliance.errors import InputError, UsageError
from compliance.report.context import REPORT_KINDS, ReportContext, _validate_shapes, context_to_json, validate_context

#: Rows shown per long table in the PDF/HTML; the export CSVs and the attached JSON hold all rows.
DEFAULT_ROW_LIMIT = 250
PDF_VARIANT = "pdf/a-3u"
Progress = Callable[[str, float], None]


def templates_dir() -> Path:
    """The packaged templates (``compliance/_templates`` in a wheel) or the repo's ``templates/``."""
    packaged = Path(__file__).resolve().parents[1] / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def _search_path(user_templates: Optional[Path]) -> list[Path]:
    dirs = []
    if user_templates is not None:
        user_templates = Path(user_templates)
        if not user_templates.is_dir():
            raise UsageError(f"template folder {user_templates} does not exist")
        dirs.append(user_templates.resolve())
    dirs.append(templates_dir().resolve())
    return dirs


# --------------------------------------------------------------------------- formatting filters
def fmt_pct(value: Optional[float], digits: int = 1) -> str:
    """0.8734 → '87.3 %'; None → '—'."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f} %"


def fmt_num(value: Optional[float], digits: int = 3) -> str:
    """Fixed decimals with thousands separators; None → '—'."""
    if value is None:
        return "—"
    out = f"{value:,.{digits}f}"
    # a value that rounds to zero prints without a sign ('-0.000' reads as a real decrease)
    return out[1:] if out.startswith("-") and not any(ch in "123456789" for ch in out) else out


def render_markdown(text: Optional[str]) -> Markup:
    """A small, safe Markdown subset: HTML is escaped first; blank lines separate paragraphs,
    lines starting '- ' or '* ' make a list, **bold** and *italic* are kept."""
    import re

    def inline(s: str) -> str:
        s = str(escape(s))
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<i>\1</i>", s)

    out = []
    for block in re.split(r"\n\s*\n", (text or "").strip()):
        lines = [ln.rstrip() for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(re.match(r"\s*[-*]\s+", ln) for ln in lines):
            items = "".join("<li>" + inline(re.sub(r"^\s*[-*]\s+", "", ln)) + "</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append("<p>" + " ".join(inline(ln.lstrip("# ").strip() if ln.startswith("#") else ln.strip())
                                        for ln in lines) + "</p>")
    return Markup("\n".join(out))


def fmt_plural(n: Optional[int], noun: str) -> str:
    """(1, 'model') → '1 model'; (3, 'model') → '3 models'."""
    n = int(n or 0)
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def fmt_int(value: Optional[int]) -> str:
    """1234 → '1,234'; None → '—'."""
    if value is None:
        return "—"
    return f"{int(value):,}"


def fmt_delta_pp(cur: Optional[float], prev: Optional[float]) -> str:
    """Change of a ratio in percentage points: '+2.1 pp'; '—' when either side is unknown."""
    if cur is None or prev is None:
        return "—"
    d = (cur - prev) * 100
    return "±0.0 pp" if abs(d) < 0.05 else f"{d:+.1f} pp"


def fmt_delta_int(cur: Optional[int], prev: Optional[int]) -> str:
    """Change of a count: '+1,234' / '−56'; '—' when either side is unknown."""
    if cur is None or prev is None:
        return "—"
    d = int(cur) - int(prev)
    return "±0" if d == 0 else f"{d:+,}"


def _trend_class(cur, prev, higher_is_better: bool) -> str:
    if cur is None or prev is None or cur == prev:
        return ""
    return "good" if (cur > prev) == higher_is_better else "bad"


def _dash(value, text: str = "—"):
    return text if value is None or value == "" else value


def _css_string(value: str) -> Markup:
    """Escape text for a double-quoted CSS string inside a <style> element."""
    out = []
    for ch in str(value):
        if ch in '"\\' or ch in "<>&" or ord(ch) < 0x20:
            out.append(f"\\{ord(ch):x} ")
        else:
            out.append(ch)
    return Markup("".join(out))


def _badge(value: Optional[str]) -> Markup:
    v = "unknown" if value is None else str(value)
    cls = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in v.lower())
    return Markup(f'<span class="badge b-{cls}">{escape(v.replace("_", " "))}</span>')


@dataclass(frozen=True)
class Chapter:
    key: str
    title: str
    number: int


def _make_chapters(items: Sequence[Sequence[str]]) -> list[Chapter]:
    return [Chapter(k, t, i + 1) for i, (k, t) in enumerate(items)]


def _visible(value):
    """Every value a template prints, with control characters escaped (Markup stays Markup)."""
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(escape_controls(str(value)))
    return escape_controls(value) if isinstance(value, str) else value


def make_environment(user_templates: Optional[Path] = None) -> jinja2.Environment:
    """Jinja2 environment: the user's folder first, the packaged templates behind."""
    loaders = [jinja2.FileSystemLoader(str(d)) for d in _search_path(user_templates)]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, finalize=_visible)
    env.filters.update(pct=fmt_pct, num=fmt_num, int_=fmt_int, plural=fmt_plural, md=render_markdown, delta_pp=fmt_delta_pp,
                       delta_int=fmt_delta_int, trend_class=_trend_class, dash=_dash,
                       badge=_badge, css_string=_css_string, chapter_map=lambda chs: {c.key: c for c in chs})
    env.globals.update(make_chapters=_make_chapters)
    return env


def render_html(ctx: ReportContext, kind: Optional[str] = None, *,
                user_templates: Optional[Path] = None, row_limit: int = DEFAULT_ROW_LIMIT,
                progress: Optional[Progress] = None, chart_uris: Optional[dict[str, str]] = None,
                validated: bool = False) -> str:
    """The pack as one self-contained HTML document (CSS inline, charts as data: URIs).

    ``kind`` is 'portfolio' or 'model' (default: ``ctx.kind``); a 'model' review needs
    ``ctx.model_detail``. Long tables show ``row_limit`` rows and say where the rest is.
    ``validated``: the caller has just converted this very context to its JSON
    (``hashed_context``), which type-checks every field: it is not converted again.
    """
    kind = kind or ctx.kind
    if kind not in REPORT_KINDS:
        raise UsageError(f"report kind must be one of {REPORT_KINDS}, got {kind!r}")
    if row_limit < 1:
        raise UsageError("row_limit must be at least 1")
    if validated:
        _validate_shapes(ctx)
    else:
        validate_context(ctx)
    if kind == "model" and ctx.model_detail is None:
        raise InputError("a per-model review needs model_detail in the context")
    from compliance.report import charts as charts_mod  # matplotlib: only when rendering

    _tick(progress, "charts", 0.0)
    charts = chart_uris if chart_uris is not None else {
        k: charts_mod.svg_data_uri(v) for k, v in charts_mod.all_charts(ctx, kind).items()}
    _tick(progress, "html", 0.15)
    env = make_environment(user_templates)
    env.filters["clip"] = lambda rows: rows[:row_limit]
    open_fm_total = sum(r.count for r in ctx.summary.open_failure_modes)
    try:
        template = env.get_template(f"{kind}.html.j2")
        return template.render(ctx=ctx, charts=charts, row_limit=row_limit,
                               open_fm_total=open_fm_total)
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template not found: {exc.name}") from exc
    except jinja2.UndefinedError as exc:
        raise InputError(f"template error: {exc}") from exc


# --------------------------------------------------------------------------- WeasyPrint
def _fetcher_class():
    from weasyprint.urls import FatalURLFetchingError, URLFetcher

    class TemplateOnlyFetcher(URLFetcher):
        """Serves ``data:`` URIs and files inside the allowed folders; refuses anything else."""

        def __init__(self, roots: Iterable[Path]):
            super().__init__(allowed_protocols=("file", "data"), fail_on_errors=True)
            self.roots = [Path(r).resolve() for r in roots]

        def fetch(self, url, headers=None):
            scheme = url.split(":", 1)[0].lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                path = Path(url2pathname(unquote(urlsplit(url).path))).resolve()
                if any(path.is_relative_to(r) for r in self.roots) and path.is_file():
                    return super().fetch(url, headers)
                raise FatalURLFetchingError(f"report may not read {url} (outside the templates "
                                            "folder or missing)")
            raise FatalURLFetchingError(f"report may not fetch {url}")

    return TemplateOnlyFetcher


def _as_of_datetime(as_of: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"cover.as_of is not an ISO time: {as_of!r}") from exc
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t


@contextlib.contextmanager
def _source_date_epoch(when: dt.datetime):
    """Pin SOURCE_DATE_EPOCH while WeasyPrint subsets fonts.

    Without HarfBuzz-Subset >= 4.1 WeasyPrint subsets fonts with fontTools, which stamps the
    current time into each font's ``head`` table unless SOURCE_DATE_EPOCH is set; pinning it to
    the as-of keeps the PDF byte-identical. (Embedding whole fonts instead made the PDF 6x
    larger and pypdf text extraction 7x slower.)
    """
    key = "SOURCE_DATE_EPOCH"
    old = os.environ.get(key)
    os.environ[key] = str(int(when.replace(tzinfo=dt.timezone.utc).timestamp()))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _tick(progress: Optional[Progress], stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, fraction)


def render_pdf_bytes(ctx: ReportContext, *, kind: Optional[str] = None,
                     pdf_variant: Optional[str] = PDF_VARIANT,
                     attachments: Optional[Sequence[tuple[str, bytes]]] = None,
                     user_templates: Optional[Path] = None,
                     row_limit: int = DEFAULT_ROW_LIMIT,
                     progress: Optional[Progress] = None, validated: bool = False) -> bytes:
    """The PDF as bytes. ``attachments`` defaults to ``[('context.json', context_to_json(ctx))]``.
    ``validated``: see ``render_html`` (the caller passes the context JSON as the attachment)."""
    import weasyprint

    html = render_html(ctx, kind, user_templates=user_templates, row_limit=row_limit,
                       progress=progress, validated=validated)
    if attachments is None:
        attachments = [("context.json", context_to_json(ctx))]
    names = [n for n, _ in attachments]
    if len(set(names)) != len(names):
        raise UsageError(f"duplicate attachment names: {sorted(names)}")
    when = _as_of_datetime(ctx.cover.as_of)
    roots = _search_path(user_templates)
    fetcher = _fetcher_class()(roots)
    atts = [weasyprint.Attachment(string=data, name=name, created=when, modified=when,
                                  url_fetcher=fetcher, description=f"{name} of report "
                                  f"{ctx.cover.report_id}", relationship="Data")
            for name, data in sorted(attachments)]
    _tick(progress, "layout", 0.2)
    from weasyprint.urls import FatalURLFetchingError

    try:
        doc = weasyprint.HTML(string=html, base_url=str(roots[-1]) + os.sep,
                              url_fetcher=fetcher).render()
    except FatalURLFetchingError as exc:
        raise InputError(f"report rendering refused a resource: {exc.__cause__ or exc}") from exc
    _tick(progress, "write", 0.85)
    with _source_date_epoch(when):
        pdf = doc.write_pdf(pdf_variant=pdf_variant, attachments=atts, uncompressed_pdf=False)
    _tick(progress, "done", 1.0)
    return pdf


def stage_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path`` (synced, mode 0644); returns the temp path.

    The caller moves it into place with ``os.replace`` (or removes it): nothing appears at
    ``path`` until then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
    except BaseException:
        discard(Path(tmp))
        raise
    return Path(tmp)


def discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    tmp = stage_write(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def render_pdf(ctx: ReportContext, out_path: Path, *, kind: Optional[str] = None,
               pdf_variant: Optional[str] = PDF_VARIANT,
               attachments: Optional[Sequence[tuple[str, bytes]]] = None,
               user_templates: Optional[Path] = None, row_limit: int = DEFAULT_ROW_LIMIT,
               progress: Optional[Progress] = None) -> str:
    """Render the PDF (PDF/A-3u, context JSON attached) atomically to ``out_path``.

    Returns the SHA-256 (hex) of the file written.
    """
    pdf = render_pdf_bytes(ctx, kind=kind, pdf_variant=pdf_variant, attachments=attachments,
                           user_templates=user_templates, row_limit=row_limit,
                           progress=progress)
    atomic_write(Path(out_path), pdf)
    return hashlib.sha256(pdf).hexdigest()


def write_html(ctx: ReportContext, out_path: Path, **kwargs) -> str:
    """Write the HTML version atomically; returns its SHA-256."""
    data = render_html(ctx, **kwargs).encode("utf-8")
    atomic_write(Path(out_path), data)
    return hashlib.sha256(data).hexdigest()


logging.getLogger("weasyprint").addHandler(logging.NullHandler())
