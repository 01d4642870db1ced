"""`report --format docx`: an editable Word document with the PDF's sections (Word headings, so the
navigation pane lists them), its tables and charts (PNG), and the headline figures of `status`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers import small_manifest

docx = pytest.importorskip("docx")
pypdf = pytest.importorskip("pypdf")


def test_docx_has_every_pdf_section_and_the_status_figures(cli, tmp_path: Path):
    assert cli("import", small_manifest(tmp_path / "bank"))[0] == 0
    as_of = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    q = "2026Q4"
    code, out, err = cli("status", "--quarter", q, "--as-of", as_of, "--json")
    assert code == 0, err
    p = json.loads(out)["portfolio"]
    a, b, pdf = tmp_path / "a.docx", tmp_path / "b.docx", tmp_path / "p.pdf"
    for target in (a, b):
        code, out, err = cli("report", "--quarter", q, "--as-of", as_of, "--format", "docx", "--out", target, "--json")
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes()  # deterministic
    assert cli("report", "--quarter", q, "--as-of", as_of, "--out", pdf)[0] == 0

    d = docx.Document(str(a))
    headings = [x.text for x in d.paragraphs if x.style.name == "Heading 1"]
    pdf_text = "\n".join(pg.extract_text() for pg in pypdf.PdfReader(str(pdf)).pages)
    chapters = re.findall(r"^(\d+\. [^\n.]+?)\s*\.{3,}", pdf_text, re.M)  # the PDF's contents page
    assert len(chapters) >= 12 and chapters == headings, (chapters, headings)
    sub = [x.text for x in d.paragraphs if x.style.name == "Heading 2"]
    assert "Per-model verdicts" in sub and "C. Regulatory crosswalk" in sub and "E. Evidence index" in sub
    text = "\n".join(x.text for x in d.paragraphs) + "\n".join(
        c.text for t in d.tables for r in t.rows for c in r.cells)
    assert f"{p['coverage'] * 100:.1f} %" in text
    assert f"{p['debt']:,}" in text and f"{int(p['weighted_debt']):,}" in text
    assert f"{int(p['debt_outstanding']):,}" in text
    assert len(d.tables) >= 10 and len(d.inline_shapes) >= 4  # tables and the charts as PNG
    assert d.core_properties.created.year == datetime.fromisoformat(as_of.replace("Z", "+00:00")).year
