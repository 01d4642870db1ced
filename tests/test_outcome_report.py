"""The pack's "Outcomes and performance" and "Fairness" chapters: not assessed without checks,
filled from recorded checks (SQLite and PostgreSQL), charts as SVG, a PDF that says so."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from compliance.report import context as C
from compliance.report.render import render_html
from compliance.store.engine import session_scope
from tests.report_fixtures import make_context
from tests.test_outcome_checks import _fair_frame, _labelled
from tests.helpers import weights_file


def test_chapters_say_not_assessed_without_checks():
    ctx = make_context(3)
    html = render_html(ctx)
    assert "Outcomes and performance" in html and "Fairness" in html
    assert "Not assessed: no performance check finished in the quarter" in html
    assert "Not assessed: no fairness check finished in the quarter" in html
    # the crosswalk (one source, compliance.report.crosswalk) claims outcomes analysis, accuracy and
    # bias only when checks of those kinds exist, and then maps them to their chapters
    from compliance.report.crosswalk import crosswalk

    none = {(fw, ref): (where, ok) for fw, ref, _req, where, ok in crosswalk(())}
    both = {(fw, ref): (where, ok) for fw, ref, _req, where, ok in crosswalk({"performance", "fairness"})}
    outcomes = ("OCC 2026-13 / SR 26-2", "Validation — outcomes analysis")
    for key in (outcomes, ("EU AI Act", "Art. 15 — accuracy"), ("EU AI Act", "Art. 10(2)(f) — bias")):
        assert none[key][1] is False and both[key][1] is True, key
    assert "Outcomes" in both[outcomes][0] and "Fairness" in both[("EU AI Act", "Art. 10(2)(f) — bias")][0]


@pytest.fixture
def checked(cli, tmp_path: Path):
    assert cli("model", "add", "m", "--name", "M", "--owner", "alice", "--tier", "1", "--use", "credit")[0] == 0
    assert cli("version", "add", "m", "v1", "--weights", weights_file(tmp_path / "w.safetensors"))[0] == 0
    now = datetime.now(timezone.utc)
    p = tmp_path / "outcomes.parquet"
    _labelled(3000, 4, now).to_parquet(p, index=False)
    code, out, err = cli("check", "performance", "m", "--version", "v1", "--data", p, "--target", "defaulted", "--score", "pd",
                         "--timestamp", "decided_at", "--threshold", "0.3", "--json")
    assert code == 0, err
    f = tmp_path / "fair.csv"
    _fair_frame(200, 200, 0.8, 0.4).to_csv(f, index=False)
    code, out2, err = cli("check", "fairness", "m", "--version", "v1", "--data", f, "--protected", "age_band", "--score", "pd",
                          "--target", "defaulted", "--json")
    assert code == 0, err
    return {"perf": json.loads(out), "fair": json.loads(out2), "now": now}


def _quarter(d: datetime) -> str:
    return f"{d.year}Q{(d.month - 1) // 3 + 1}"


def test_context_and_pack_show_the_checks(cli, checked):
    from compliance.services.report import build_context

    as_of = datetime.now(timezone.utc) + timedelta(seconds=1)
    with session_scope(cli.url, readonly=True) as s:
        ctx = build_context(s, _quarter(as_of), as_of)
    (row,) = ctx.outcomes.checks
    perf = checked["perf"]["metrics"]
    assert row.check_id == str(checked["perf"]["id"]) and row.auc == perf["auc"] and row.n_matured == 1500
    assert row.n_not_matured == 1500 and len(row.calibration_predicted) == 10 and row.roc_fpr[0] == 0.0
    (fc,) = ctx.fairness.checks
    assert fc.status == "fail" and fc.flags == ["FM-PROTECTED"] and fc.attributes == ["age_band"]
    groups = {g.group: g for g in ctx.fairness.groups}
    assert groups["A"].reference and abs(groups["B"].air - 0.5) < 1e-12 and groups["C"].status == "too_small"
    kinds = {r.kind for r in ctx.summary.check_outcomes}
    assert {"performance", "fairness"} <= kinds
    C.validate_context(ctx)
    assert C.context_from_json(C.context_to_json(ctx)) == ctx
    tables = C.context_tables(ctx)
    assert len(tables["outcomes_checks"][1]) == 1 and len(tables["fairness_groups"][1]) == 3
    html = render_html(ctx)
    assert "Not assessed" not in html.split('id="sec-outcomes"')[1].split("</section>")[0]
    assert "too small: not judged" in html and "FM-PROTECTED" in html


@pytest.mark.slow
def test_pdf_has_both_chapters(cli, checked, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from compliance.report.render import render_pdf_bytes
    from compliance.services.report import build_context

    as_of = datetime.now(timezone.utc) + timedelta(seconds=1)
    with session_scope(cli.url, readonly=True) as s:
        ctx = build_context(s, _quarter(as_of), as_of, model_id="m")
    pdf = render_pdf_bytes(ctx)
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert "Outcomes and performance" in text and "Discrimination and calibration" in text
    assert "adverse impact ratio" in text and "too small: not judged" in text


def test_charts_are_deterministic_svg():
    from compliance.report.outcome_charts import fairness_bars, roc_and_calibration

    r = C.PerformanceRow(check_id="1", model_id="m", version="v1", date="2026-10-01", status="pass", n_matured=10,
                         n_not_matured=0, n_unlabelled=0, auc=0.8, auc_lower=0.7, auc_upper=0.9, gini=0.6, ks=0.5,
                         brier=0.1, log_loss=0.3, calibration_error=0.01, hosmer_lemeshow_pvalue=0.5, threshold=0.5,
                         approval_rate=0.7, precision=0.5, recall=0.6, baseline_auc=None, auc_drop=None, score_psi=None,
                         calibration_predicted=[0.1, 0.5], calibration_observed=[0.12, 0.45],
                         roc_fpr=[0, 0.2, 1], roc_tpr=[0, 0.7, 1])
    a, b = roc_and_calibration([r]), roc_and_calibration([r])
    assert a == b and a.startswith("<?xml") and "AUC 0.800" in a
    g = C.FairnessGroupRow(check_id="1", model_id="m", version="v1", attribute="sex", group="F", n=100, approval_rate=0.6,
                           air=0.75, air_lower=0.6, air_upper=0.9, eod=None, aod=None, calibration_gap=None)
    svg = fairness_bars([g])
    assert "AIR 0.75" in svg and "No data" in fairness_bars([])
