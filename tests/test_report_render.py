"""HTML/PDF rendering: every section, numbers in the text, determinism, PDF/A-3, no warnings."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
from pathlib import Path

import pypdf
import pytest

from compliance.errors import InputError, UsageError
from compliance.report import charts, render
from compliance.report import context as c
from report_fixtures import make_context

CHAPTERS = ["Executive summary", "Inventory in scope", "Change log", "Explanation coverage",
            "Interpretability debt", "Fidelity results", "Drift results", "Outcomes and performance", "Fairness",
            "Compute budget", "Monitoring plans and gate", "Reasons of warn, fail and error checks", "Failure-mode register", "Findings and exceptions",
            "Validator's conclusion, limitations and conditions", "Attestation", "Appendix"]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def weasy_warnings():
    """Every WeasyPrint warning emitted while this module renders (must stay empty)."""
    handler = _Collect()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


# The only tolerated message: WeasyPrint's notice that the system lacks HarfBuzz-Subset >= 4.1
# and fonts are subset with fontTools (an environment fact, not a document problem; the
# renderer pins SOURCE_DATE_EPOCH so that path stays byte-deterministic too).
_ENVIRONMENT_NOTICE = "Using fontTools instead of HarfBuzz-Subset"


def _assert_no_warnings(records):
    msgs = [r.getMessage() for r in records if _ENVIRONMENT_NOTICE not in r.getMessage()]
    assert not msgs, f"WeasyPrint warnings: {msgs}"


def _text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(p.extract_text() for p in reader.pages)


@pytest.fixture(scope="module")
def portfolio(weasy_warnings, tmp_path_factory):
    ctx = make_context(8)
    out = tmp_path_factory.mktemp("pdf") / "pack.pdf"
    stages = []
    digest = render.render_pdf(ctx, out, progress=lambda s, f: stages.append((s, f)))
    pdf = out.read_bytes()
    _assert_no_warnings(weasy_warnings)
    return ctx, pdf, digest, stages


@pytest.fixture(scope="module")
def portfolio_pages(portfolio):
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(portfolio[1])).pages]


def test_pdf_has_every_section_and_cover_hashes(portfolio, portfolio_pages):
    ctx, pdf, digest, _ = portfolio
    assert hashlib.sha256(pdf).hexdigest() == digest
    text = "\n".join(portfolio_pages)
    for title in CHAPTERS:
        assert title in text, title
    assert "Contents" in text
    assert ctx.cover.report_id in text
    assert ctx.cover.context_hash in text.replace("\n", "")
    assert ctx.cover.ledger_head_hash in text.replace("\n", "")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) > 10
    assert f"Page 3 of {len(reader.pages)}" in portfolio_pages[2]
    outline_titles = [o.title for o in reader.outline if not isinstance(o, list)]
    assert any("Executive summary" in t for t in outline_titles)


def test_pdf_text_contains_coverage_and_debt_numbers(portfolio, portfolio_pages):
    ctx, pdf, _, _ = portfolio
    text = "\n".join(portfolio_pages)
    s = ctx.summary
    assert render.fmt_pct(s.coverage) in text
    assert render.fmt_int(s.debt_slot_days) in text
    assert render.fmt_int(s.weighted_debt) in text
    assert render.fmt_delta_pp(s.coverage, s.coverage_prev) in text
    for row in ctx.coverage.per_tier:
        if row.coverage is not None:
            assert render.fmt_pct(row.coverage) in text
    for row in ctx.debt.per_model[:5]:
        assert row.model_id in text
    for row in ctx.debt.trend:
        assert render.fmt_int(row.weighted_debt) in text


def test_contents_page_numbers_point_at_chapters(portfolio_pages):
    contents = portfolio_pages[1]
    for n, title in enumerate(CHAPTERS[:-1], 1):
        m = re.search(rf"{n}\. {re.escape(title)}[ .…]*?(\d+)\s*$", contents, re.M)
        assert m, (title, contents)
        page = int(m.group(1))
        assert f"{n}. {title}" in portfolio_pages[page - 1]


def test_pdf_is_pdfa3_with_context_attachment_and_as_of_dates(portfolio):
    ctx, pdf, _, _ = portfolio
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    xmp = reader.xmp_metadata.rdf_root.toxml()
    assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="U"' in xmp
    assert reader.attachments["context.json"] == [c.context_to_json(ctx)]
    info = reader.metadata
    assert info["/CreationDate"].startswith("D:20261001000000")
    assert info["/ModDate"].startswith("D:20261001000000")
    af = reader.trailer["/Root"]["/AF"]
    assert {a.get_object()["/AFRelationship"] for a in af} == {"/Data"}
    assert len({a.idnum for a in af}) == 1  # WeasyPrint lists the one file spec twice
    assert pdf.startswith(b"%PDF-1.7")


def test_render_twice_is_byte_identical(portfolio, tmp_path, weasy_warnings):
    ctx, pdf, digest, _ = portfolio
    again = render.render_pdf(ctx, tmp_path / "again.pdf")
    assert again == digest
    assert (tmp_path / "again.pdf").read_bytes() == pdf
    _assert_no_warnings(weasy_warnings)


def test_progress_callback_and_atomic_write(portfolio, tmp_path):
    _, _, _, stages = portfolio
    names = [s for s, _ in stages]
    assert names[0] == "charts" and names[-1] == "done"
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    target = tmp_path / "out.bin"
    render.atomic_write(target, b"abc")
    render.atomic_write(target, b"xyz")
    assert target.read_bytes() == b"xyz"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_model_review_variant(weasy_warnings):
    ctx = make_context(2, kind="model", attestations=0)
    pdf = render.render_pdf_bytes(ctx)
    _assert_no_warnings(weasy_warnings)
    text = _text(pdf)
    md = ctx.model_detail
    assert "Model profile, versions and artifact lineage" in text
    assert "Input drift per feature" in text and "Feature-density distributions" in text
    for v in md.versions:
        assert v.sha256 in text.replace("\n", "")
    for f in ctx.drift.features[:3]:
        assert f.feature in text
    assert "Not signed: no sign-off has been recorded on this context hash" in text and "Signature and date" in text


def test_long_tables_span_pages_without_overflow(weasy_warnings):
    ctx = make_context(1)
    ev = [c.EvidenceRow("check", f"chk-{i:05d}-" + "x" * 40, f"fidelity check number {i}",
                        hashlib.sha256(str(i).encode()).hexdigest()) for i in range(300)]
    ctx = dataclasses.replace(ctx, appendix=dataclasses.replace(ctx.appendix, evidence=ev))
    pdf = render.render_pdf_bytes(ctx, row_limit=400)
    _assert_no_warnings(weasy_warnings)
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    pages = [p.extract_text() for p in reader.pages]
    hit = [i for i, t in enumerate(pages) if "chk-00" in t]
    assert len(hit) > 3, "300 evidence rows should span several pages"
    for i in hit:  # the header row repeats on every page of the table
        assert "SHA-256" in pages[i]
    joined = "".join(pages).replace("\n", "")
    for i in (0, 150, 299):  # whole hashes are present (wrapped, not clipped)
        assert hashlib.sha256(str(i).encode()).hexdigest() in joined
    width = float(reader.pages[0].mediabox.width)
    for page in reader.pages[:3]:
        assert float(page.mediabox.width) == width  # nothing widened the page


def test_row_limit_clips_with_a_pointer_to_the_csv():
    ctx = make_context(20)
    html = render.render_html(ctx, row_limit=5)
    assert f"Showing the first 5 of {len(ctx.debt.per_model)} rows" in html
    assert "tables/debt_per_model.csv" in html
    assert html.count('<td class="id">') < render.render_html(ctx).count('<td class="id">')


def test_html_is_self_contained_and_escaped():
    ctx = make_context(3)
    ctx.inventory[0].name = "<script>alert(1)</script> & co"
    html = render.render_html(ctx)
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    assert '<meta name="dcterms.created" content="2026-10-01T00:00:00Z">' in html
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/svg+xml;base64,") == 5
    assert "<link" not in html


def test_empty_sections_say_so_and_charts_show_no_data():
    ctx = make_context(3, attestations=0)
    empty = dataclasses.replace(
        ctx, changes=[], failure_modes=[], findings=[],
        coverage=c.CoverageSection(), debt=c.DebtSection(), fidelity=c.FidelitySection(),
        drift=c.DriftSection(), summary=dataclasses.replace(ctx.summary, check_outcomes=[],
                                                           open_failure_modes=[]))
    html = render.render_html(empty)
    assert "No fidelity check finished in the last four quarters" in html
    assert "No drift check finished in the quarter" in html
    assert "No version or artifact changed" in html
    assert "Absence of evidence is reported" in html
    assert "Signature and date" in html
    svgs = charts.all_charts(empty)
    for name, svg in svgs.items():
        assert "No data" in svg, name


def test_charts_are_deterministic_vector_svg_with_labels():
    ctx = make_context(6, kind="model")
    a = charts.all_charts(ctx)
    b = charts.all_charts(ctx)
    assert a == b
    assert set(a) == {"coverage_timeline", "debt_by_model", "debt_trend", "fidelity",
                      "drift_heatmap", "densities"}
    for name, svg in a.items():
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg, name
        assert "<image" not in svg, f"{name} embeds a raster image"
        assert "dc:date" not in svg
    assert ctx.debt.per_model[0].model_id in a["debt_by_model"]
    assert "Tier 1" in a["coverage_timeline"]
    assert ctx.drift.psi_matrix.features[0] in a["drift_heatmap"]
    assert ctx.debt.trend[-1].quarter in a["debt_trend"]


def test_user_templates_override_defaults(tmp_path):
    (tmp_path / "sections").mkdir()
    (tmp_path / "sections" / "findings.html.j2").write_text(
        '<section class="chapter">{{ m.chapter_heading("findings") }}'
        "<p>BANK-SPECIFIC FINDINGS PAGE</p></section>", encoding="utf-8")
    html = render.render_html(make_context(3), user_templates=tmp_path)
    assert "BANK-SPECIFIC FINDINGS PAGE" in html
    assert "Interpretability debt" in html  # the rest still comes from the defaults
    with pytest.raises(UsageError):
        render.render_html(make_context(3), user_templates=tmp_path / "nope")


def test_fetcher_refuses_files_outside_templates(tmp_path):
    secret = tmp_path / "secret.css"
    secret.write_text("body { color: red }", encoding="utf-8")
    (tmp_path / "sections").mkdir()
    (tmp_path / "sections" / "cover.html.j2").write_text(
        f'<link rel="stylesheet" href="{secret.as_uri()}"><p>cover</p>', encoding="utf-8")
    other = tmp_path / "other"
    other.mkdir()
    (other / "sections").mkdir()
    (other / "sections" / "cover.html.j2").write_text(
        '<img src="https://example.com/x.png"><p>cover</p>', encoding="utf-8")
    with pytest.raises(InputError, match="refused"):
        render.render_pdf_bytes(make_context(2), user_templates=other)
    # a user folder may serve its own files, but nothing outside the allowed folders
    fetch = render._fetcher_class()([render.templates_dir()])
    from weasyprint.urls import FatalURLFetchingError
    with pytest.raises(FatalURLFetchingError):
        fetch(secret.as_uri())
    with pytest.raises(FatalURLFetchingError):
        fetch("https://example.com/")
    assert fetch((render.templates_dir() / "pack.css").as_uri()).read().startswith(b"/*")
    assert fetch("data:text/plain;base64,aGk=").read() == b"hi"


def test_bad_inputs_raise_project_errors():
    ctx = make_context(2)
    with pytest.raises(UsageError):
        render.render_html(ctx, kind="quarterly")
    with pytest.raises(InputError):
        render.render_html(ctx, kind="model")  # no model_detail
    bad = dataclasses.replace(ctx, cover=dataclasses.replace(ctx.cover, as_of="yesterday"))
    with pytest.raises(InputError, match="as_of"):
        render.render_pdf_bytes(bad)


def test_templates_dir_points_at_repo_templates():
    d = render.templates_dir()
    assert (d / "portfolio.html.j2").is_file() and (d / "pack.css").is_file()
    assert d == Path(__file__).resolve().parents[1] / "templates"
