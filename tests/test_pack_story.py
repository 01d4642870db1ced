"""The replayed demo pack shows what the store knows (issue 13's acceptance): the recorded reason
of every warn/fail/error check of the quarter, the overhead of every artifact with an overhead
check, every feature's PSI (or a caption naming the CSV with the rest) and each drift check's
references."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from compliance.report.render import render_pdf_bytes
from compliance.services.report import build_context
from compliance.store.engine import session_scope

pytestmark = pytest.mark.slow
pypdf = pytest.importorskip("pypdf")
AS_OF = datetime(2026, 10, 5, tzinfo=timezone.utc)


def _norm(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.fixture(scope="module")
def pack(story_store):
    import io

    with session_scope(story_store, readonly=True) as s:
        ctx = build_context(s, "2026Q3", AS_OF)
    pdf = render_pdf_bytes(ctx)
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    return ctx, _norm(text)


def test_every_reason_overhead_feature_and_reference_is_printed(story_store, pack):
    from sqlalchemy import select

    from compliance.store.models import Check

    ctx, text = pack
    with session_scope(story_store, readonly=True) as s:
        bad = [(c.id, list(c.reasons or [])) for c in s.scalars(
            select(Check).where(Check.status.in_(["warn", "fail", "error"]),
                                Check.finished_at >= datetime(2026, 7, 1, tzinfo=timezone.utc),
                                Check.finished_at < datetime(2026, 10, 1, tzinfo=timezone.utc),
                                Check.recorded_at <= AS_OF))]
        overhead = [(c.id, c.metrics["overhead_ratio"]) for c in s.scalars(
            select(Check).where(Check.kind == "overhead", Check.status != "error", Check.recorded_at <= AS_OF))]
    assert bad and overhead
    for cid, reasons in bad:
        assert reasons, cid
        for r in reasons:
            assert _norm(r) in text, (cid, r)
    for cid, ratio in overhead:
        assert _norm(f"{ratio * 100:.1f} %") in text, cid
    d = ctx.drift
    assert d.features and len(d.features) <= 250  # the PDF shows them all
    for f in d.features:
        assert _norm(f"{f.psi:.4f}") in text, f
    if d.psi_matrix_total > len(d.psi_matrix.features):
        assert "tables/drift_features.csv" in text
    for r in d.checks:
        assert r.reference and _norm(r.reference) in text, r
        assert "notregistered" not in _norm(r.window_start)
    act = [r for r in d.checks if r.kind == "activation_drift"]
    assert act and all(r.reference_window and r.window_start != r.window_end for r in act)
    assert _norm("OCC Bulletin 2026-13") in text and _norm("| SR 11-7 |") not in text
    # the story holds outcome and fairness checks: the crosswalk cites their chapters, never "not covered"
    assert "Notcovered:" not in text and _norm("Outcomes chapter") in text and _norm("Fairness chapter") in text
