"""The report context contract: documented fields, canonical JSON, hashes, tables."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compliance.errors import InputError
from compliance.report import context as c
from report_fixtures import make_context

ROOT = Path(__file__).resolve().parents[1]


def test_every_field_of_every_dataclass_is_documented():
    classes = c.all_dataclasses()
    assert c.ReportContext in classes and c.ModelDetail in classes and c.PsiMatrix in classes
    for tp in classes:
        assert (tp.__doc__ or "").strip(), f"{tp.__name__} has no docstring"
        for f in dataclasses.fields(tp):
            assert f.metadata.get("doc", "").strip(), f"{tp.__name__}.{f.name} has no doc"


def test_docs_file_matches_generated_reference():
    out = subprocess.run([sys.executable, "-m", "compliance.report.context", "--doc"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    doc = (ROOT / "docs" / "report-context.md").read_text(encoding="utf-8")
    assert out == doc, "docs/report-context.md is stale: regenerate with " \
                       "`python -m compliance.report.context --doc > docs/report-context.md`"


def test_built_context_fields_are_exactly_the_documented_ones():
    """Every key in a built context's JSON is a documented field (no undocumented extras)."""
    ctx = make_context(6, kind="model")
    documented = {tp.__name__: {f.name for f in dataclasses.fields(tp)}
                  for tp in c.all_dataclasses()}

    def walk(obj):
        if dataclasses.is_dataclass(obj):
            keys = set(dataclasses.asdict(obj))
            assert keys == documented[type(obj).__name__]
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, list):
            for x in obj:
                walk(x)

    walk(ctx)
    assert set(json.loads(c.context_to_json(ctx))) == documented["ReportContext"]


def test_canonical_json_sorted_compact_utf8():
    ctx = make_context(4)
    data = c.context_to_json(ctx)
    obj = json.loads(data)
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")
    assert b"\n" not in data and not data.startswith(b"{ ")
    assert "—" in c.canonical_json({"a": "—"}).decode("utf-8")  # not \u-escaped


def test_nan_and_inf_are_refused_with_a_path():
    ctx = make_context(4)
    bad = dataclasses.replace(ctx, summary=dataclasses.replace(ctx.summary,
                                                               coverage=float("nan")))
    with pytest.raises(InputError, match=r"summary\.coverage"):
        c.context_to_json(bad)
    ctx.fidelity.checks[0].mse = float("inf")
    with pytest.raises(InputError, match=r"fidelity\.checks\[0\]\.mse"):
        c.context_hash(ctx)


def test_context_hash_excludes_itself_and_detects_changes():
    raw = make_context(5, hashed=False)
    assert raw.cover.context_hash == ""
    hashed = c.with_context_hash(raw)
    # the hash names the evidence: the sign-off (attestations, signoff state) is left out of it
    unsigned = dataclasses.replace(raw, attestations=[], summary=dataclasses.replace(raw.summary, signoff_state=""))
    expected = hashlib.sha256(c.context_to_json(unsigned)).hexdigest()
    assert hashed.cover.context_hash == expected == c.context_hash(hashed)
    assert c.json_context_hash(c.context_to_json(hashed)) == expected
    signed = dataclasses.replace(hashed, attestations=[c.AttestationRow(reviewer="carol", role="validator",
                                                                        decision="approve", comment="", date="2026-10-01")],
                                 summary=dataclasses.replace(hashed.summary, signoff_state="approved"))
    assert c.context_hash(signed) == expected  # signing never changes the hash it signs
    changed = dataclasses.replace(hashed, summary=dataclasses.replace(
        hashed.summary, debt_slot_days=hashed.summary.debt_slot_days + 1))
    assert c.context_hash(changed) != expected


def test_json_round_trip_both_kinds():
    for kind in ("portfolio", "model"):
        ctx = make_context(5, kind=kind)
        data = c.context_to_json(ctx)
        back = c.context_from_json(data)
        assert back == ctx
        assert c.context_to_json(back) == data


def test_from_json_rejects_unknown_and_mistyped_fields():
    obj = json.loads(c.context_to_json(make_context(3)))
    obj["cover"]["surprise"] = 1
    with pytest.raises(InputError, match="unknown fields"):
        c.context_from_json(json.dumps(obj).encode())
    obj = json.loads(c.context_to_json(make_context(3)))
    obj["summary"]["debt_slot_days"] = "many"
    with pytest.raises(InputError, match="debt_slot_days"):
        c.context_from_json(json.dumps(obj).encode())


def test_int_in_float_field_is_normalised_and_wrong_types_are_refused():
    ctx = make_context(3)
    ctx.coverage.per_tier[0].deployed_version_days = 92
    assert json.loads(c.context_to_json(ctx))["coverage"]["per_tier"][0][
        "deployed_version_days"] == 92.0
    assert b'"deployed_version_days":92.0' in c.context_to_json(ctx)
    ctx.coverage.per_tier[0].models = "3"
    with pytest.raises(InputError, match=r"per_tier\[0\]\.models"):
        c.context_to_json(ctx)


def test_validate_context_shape_errors():
    ctx = make_context(3)
    with pytest.raises(InputError, match="kind"):
        c.validate_context(dataclasses.replace(ctx, kind="quarterly"))
    with pytest.raises(InputError, match="model_detail"):
        c.validate_context(dataclasses.replace(ctx, kind="model"))
    ctx.drift.psi_matrix.values[0].append(0.1)
    with pytest.raises(InputError, match="psi_matrix"):
        c.validate_context(ctx)


def test_context_tables_cover_every_row_list():
    ctx = make_context(5, kind="model")
    tables = c.context_tables(ctx)
    assert list(tables) == sorted(tables)
    for name in ["inventory", "changes", "coverage_per_tier", "coverage_per_model",
                 "coverage_timeline", "debt_per_model", "debt_staleness", "debt_trend",
                 "fidelity_checks", "fidelity_clt_layers", "drift_checks", "drift_features",
                 "drift_psi_matrix", "failure_modes", "findings", "attestations",
                 "appendix_evidence", "appendix_policy", "appendix_crosswalk", "cover",
                 "summary", "summary_open_failure_modes", "summary_check_outcomes",
                 "model_detail_versions", "model_detail_lineage", "model_detail_densities"]:
        assert name in tables, name
    cols, rows = tables["debt_staleness"]
    assert len(rows) == len(ctx.debt.staleness) and cols[0] == "artifact_id"
    cols, rows = tables["fidelity_clt_layers"]
    assert rows == [] and cols == ["check_id", "layer", "explained_variance", "mse", "l0"]
    cols, rows = tables["drift_psi_matrix"]
    assert len(rows) == len(ctx.drift.psi_matrix.features) * len(ctx.drift.psi_matrix.quarters)
    cols, rows = tables["coverage_timeline"]
    assert len(rows) == sum(len(s.dates) for s in ctx.coverage.timeline)
    assert tables["cover"][1][0]["context_hash"] == ctx.cover.context_hash
    inv = tables["inventory"][1][0]
    assert inv["tags"] == ";".join(ctx.inventory[0].tags)


def test_report_modules_import_without_torch():
    code = ("import sys\n"
            "import compliance.report.context, compliance.report.charts, "
            "compliance.report.render, compliance.report.export, compliance.report.verify_pack\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
