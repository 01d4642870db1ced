"""The page-sized report path (issue 22) gives the same rows as the in-memory path did.

The context carries the first rows of each long table and its total; the export's CSVs carry
every row. Here, on the replayed sample bank, a page of 4 rows forces every table to be capped,
and the rows are compared with the tables built the old way: every check loaded as an object,
each table built in Python and sorted in memory (the code this change replaced).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from compliance.analysis.calendar import parse_quarter
from compliance.hashing import canonical_json as canon
from compliance.hashing import sha256_bytes
from compliance.report import context as C
from compliance.report.export import build_export, table_csv
from compliance.report.tables import CAPPED_TABLES, FullTables, fidelity_series
from compliance.report.verify_pack import verify_pack
from compliance.services import report as R
from compliance.services.analysis import analyse, load_input
from compliance.services.corrections import corrections
from compliance.store.engine import session_scope
from compliance.store.models import Artifact, Check, Dataset, ModelVersion

pytestmark = pytest.mark.slow
QUARTER = "2026Q3"
AS_OF = datetime(2026, 10, 5, tzinfo=timezone.utc)
PAGE = 4


def _in_memory_tables(s) -> dict[str, list]:
    """The long tables as the in-memory path built them (every check as an object)."""
    q = parse_quarter(QUARTER)
    utc = timezone.utc
    qstart = datetime(q.start.year, q.start.month, q.start.day, tzinfo=utc)
    qend = datetime(q.end.year, q.end.month, q.end.day, tzinfo=utc) + timedelta(days=1)
    q0 = q.previous(3)
    hist = datetime(q0.start.year, q0.start.month, q0.start.day, tzinfo=utc)
    inp = load_input(s, AS_OF, with_flags=False)
    a = analyse(s, QUARTER, AS_OF, inp=inp)
    fixes = corrections(s, AS_OF)
    left = {(f["entity_type"], f["entity_id"]) for f in a["data_quality"]["findings"] if f["handling"] == "excluded"}
    left |= {(c["entity_type"], c["entity_id"]) for c in a["data_quality"]["corrections_applied"]}
    versions = {int(v) for v in inp.versions["version_id"]}
    arts = {x.id: x for x in s.scalars(select(Artifact).where(Artifact.recorded_at <= AS_OF))
            if x.id in set(inp.artifacts["artifact_id"])}
    scope = list(inp.models["model_id"])
    label = {v.id: v.label for v in s.scalars(select(ModelVersion).where(ModelVersion.recorded_at <= AS_OF))}

    def usable(c):
        return (("check_run", str(c.id)) not in left and (c.version_id is None or c.version_id in versions)
                and all(x is None or x in arts for x in (c.artifact_id, c.other_artifact_id)))

    every = [c for c in s.scalars(select(Check).where(Check.recorded_at <= AS_OF, Check.finished_at >= hist,
                                                      Check.finished_at < qend, Check.model_id.in_(scope))
                                  .order_by(Check.finished_at, Check.id)) if usable(c)]
    quarter = [c for c in every if c.finished_at >= qstart]
    fids = [c for c in every if c.kind == "fidelity"]
    protected_cols: dict[str, set] = defaultdict(set)
    for d in s.scalars(select(Dataset).where(Dataset.recorded_at <= AS_OF)):
        protected_cols[d.model_id].update((d.columns or {}).get("protected") or [])
    fid_rows, clt = [], []
    for c in fids:
        if not c.artifact_id:
            continue
        m = c.metrics or {}
        f = R._f
        fid_rows.append(C.FidelityRow(
            check_id=str(c.id), artifact_id=c.artifact_id, kind=arts[c.artifact_id].kind, model_id=c.model_id,
            version=label.get(c.version_id, "?"), date=R._d(c.finished_at),
            explained_variance=f(m.get("explained_variance")), mse=f(m.get("mse")), cossim=f(m.get("cossim")),
            l0=f(m.get("l0")), dead_fraction=f(m.get("dead_fraction")),
            decision_flip_rate=f(m.get("decision_flip_rate")), status=c.status,
            dense_fraction=f(m.get("dense_fraction")), kl=f(m.get("kl")), loss_recovered=f(m.get("loss_recovered")),
            auc=f(m.get("auc")), protected=R._protected(arts.get(c.artifact_id), m, protected_cols),
            baseline_gap=f(m.get("baseline_gap")), reasons=[str(x) for x in c.reasons or []]))
        for li, layer in enumerate(m.get("per_layer") or []):
            clt.append(C.CltLayerRow(check_id=str(c.id), layer=int(layer.get("layer", li)),
                                     explained_variance=f(layer.get("explained_variance")),
                                     mse=f(layer.get("mse")), l0=f(layer.get("l0"))))
    fid_rows.sort(key=lambda r: (r.model_id, r.artifact_id, r.date, int(r.check_id)))
    down = [r for r in fid_rows if any(getattr(r, k) is not None
                                       for k in ("kl", "loss_recovered", "decision_flip_rate", "auc", "baseline_gap"))]
    reasons = [C.CheckReasonRow(check_id=str(c.id), kind=c.kind, model_id=c.model_id,
                                version=label.get(c.version_id, "—"), artifact_id=c.artifact_id,
                                date=R._d(c.finished_at), status=c.status, reason=str(r))
               for c in quarter if c.status in ("warn", "fail", "error")
               for r in (c.reasons or ["(no reason recorded)"])]
    return {"fidelity_checks": fid_rows, "fidelity_downstream": down, "fidelity_clt_layers": clt,
            "check_reasons": reasons, "_fixes": fixes, "_label": label}


def _check_rows_of_evidence(rows: list[C.EvidenceRow], s) -> None:
    """Every check row of the evidence index shows the check's input hash and its ledger entry."""
    from compliance.services.report import cited_entries

    checks = [r for r in rows if r.kind == "check"]
    ids = [int(r.ref.split()[1]) for r in checks]
    assert ids == sorted(ids)
    got = {c.id: c for c in s.scalars(select(Check).where(Check.id.in_(ids)))}
    cites = cited_entries(s, AS_OF, [("check_run", str(i)) for i in ids])
    for r, i in zip(checks, ids):
        c = got[i]
        assert r.ref == f"check {i} ({c.kind})"
        assert r.sha256 == sha256_bytes(canon(c.input_hashes or {}).encode())
        assert (r.ledger_seq, r.ledger_hash or None) == (cites.get(("check_run", str(i))) or (None, None))


def _csv_rows(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def test_page_sized_tables_match_the_in_memory_path(story_store, tmp_path):
    with session_scope(story_store, readonly=True) as s:
        ref = _in_memory_tables(s)
        page_ctx, page_json = R.build_context_json(s, QUARTER, AS_OF, full=FullTables(limit=PAGE))
        folder = tmp_path / "tables"
        folder.mkdir()
        full = FullTables(folder, limit=PAGE)
        ctx, ctx_json = R.build_context_json(s, QUARTER, AS_OF, full=full)
        whole, _ = R.build_context_json(s, QUARTER, AS_OF)  # the default page: every row fits here
        _check_rows_of_evidence(whole.appendix.evidence, s)
    # writing the CSVs or not gives the same context (and hash)
    assert page_json == ctx_json and page_ctx.cover.context_hash == ctx.cover.context_hash
    assert ctx.schema_version == C.SCHEMA_VERSION == "2"
    for name in ("fidelity_checks", "fidelity_downstream", "fidelity_clt_layers", "check_reasons"):
        rows_path, _ = CAPPED_TABLES[name]
        got = ctx
        for part in rows_path.split("."):
            got = getattr(got, part)
        want = ref[name]
        assert [dataclasses.asdict(r) for r in got] == [dataclasses.asdict(r) for r in want[:PAGE]], name
        assert getattr(_owner(ctx, name), CAPPED_TABLES[name][1].split(".")[-1]) == len(want), name
        cols = [f.name for f in dataclasses.fields(type(want[0]))] if want else None
        if cols:  # the CSV holds every row, in the same order, as the in-memory table gave them
            assert (folder / f"{name}.csv").read_bytes() == table_csv(cols, C._rows_of(want)), name
    assert ref["fidelity_checks"] and ref["check_reasons"] and len(ref["check_reasons"]) > PAGE
    assert len(ref["fidelity_checks"]) > PAGE
    # the whole-table context (default page of 250) holds exactly the in-memory rows
    assert [dataclasses.asdict(r) for r in whole.fidelity.checks] == [dataclasses.asdict(r) for r in ref["fidelity_checks"]]
    assert [dataclasses.asdict(r) for r in whole.check_reasons] == [dataclasses.asdict(r) for r in ref["check_reasons"]]
    # the chart: the same series as drawn from every row in memory
    series, n = fidelity_series(ref["fidelity_checks"])
    assert ctx.fidelity.chart == series and ctx.fidelity.chart_artifacts == n and n > 0
    # evidence: the page is the first rows of the whole index, the CSV the whole index
    ev = [dataclasses.asdict(r) for r in whole.appendix.evidence]
    assert [dataclasses.asdict(r) for r in ctx.appendix.evidence] == ev[:PAGE]
    assert ctx.appendix.evidence_total == len(ev) == whole.appendix.evidence_total
    assert _csv_rows(folder / "appendix_evidence.csv")[1:] == _csv_rows_of(whole.appendix.evidence)
    # the rest of the context is the same whatever the page size
    a, b = json.loads(ctx_json), json.loads(R.C.context_to_json(whole))
    for d in (a, b):
        for name, (rows, total) in CAPPED_TABLES.items():
            _pop(d, rows), _pop(d, total)
        d["cover"].pop("context_hash")
    assert a == b


def _csv_rows_of(rows) -> list[list[str]]:
    cols = [f.name for f in dataclasses.fields(type(rows[0]))]
    return _csv_rows_bytes(table_csv(cols, C._rows_of(rows)))[1:]


def _csv_rows_bytes(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _owner(ctx, name):
    obj = ctx
    for part in CAPPED_TABLES[name][1].split(".")[:-1]:
        obj = getattr(obj, part)
    return obj


def _pop(d: dict, path: str) -> None:
    *head, last = path.split(".")
    for p in head:
        d = d[p]
    d.pop(last)


def test_capped_pack_verifies_and_a_wrong_csv_is_named(story_store, tmp_path):
    with session_scope(story_store, readonly=True) as s:
        folder = tmp_path / "t"
        folder.mkdir()
        full = FullTables(folder, limit=PAGE)
        ctx, ctx_json = R.build_context_json(s, QUARTER, AS_OF, full=full)
    files = full.files()
    assert set(files) == {f"tables/{n}.csv" for n in CAPPED_TABLES}
    pdf = b"%PDF-stub"  # the PDF is not what this test is about: verify names it, after the tables
    data, _ = build_export(ctx, ledger_excerpt=[], ctx_json=ctx_json, pdf=pdf, full_tables=files)
    out = tmp_path / "pack.zip"
    out.write_bytes(data)
    rep = verify_pack(out)
    assert rep.first_bad == "report.pdf", rep  # every table passed: the CSVs hold the whole tables
    # one row more than the context's total
    path = folder / "check_reasons.csv"
    rows = path.read_bytes()
    last = rows.rstrip(b"\n").split(b"\n")[-1]
    path.write_bytes(rows + last + b"\n")
    data, _ = build_export(ctx, ledger_excerpt=[], ctx_json=ctx_json, pdf=pdf, full_tables=files)
    out.write_bytes(data)
    rep = verify_pack(out)
    assert rep.first_bad == "tables/check_reasons.csv" and "total" in " ".join(rep.problems), rep
    # a shown row changed
    path.write_bytes(rows.replace(b"warn", b"pass", 1) if b"warn" in rows else rows.replace(b"fail", b"pass", 1))
    data, _ = build_export(ctx, ledger_excerpt=[], ctx_json=ctx_json, pdf=pdf, full_tables=files)
    out.write_bytes(data)
    rep = verify_pack(out)
    assert rep.first_bad == "tables/check_reasons.csv" and "differs" in " ".join(rep.problems), rep
    # a capped table without its full CSV cannot be exported
    with pytest.raises(Exception, match="full table is missing"):
        build_export(ctx, ledger_excerpt=[], ctx_json=ctx_json, pdf=pdf)
