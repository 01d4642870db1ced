"""Reports from a real store: figures match `status --json`, reproducible bytes, as-of stability,
PDF/A-3 with the context attached, and a verifiable export."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from compliance.interp.synthetic import write_activations, write_saelens
from tests.helpers import small_manifest

pypdf = pytest.importorskip("pypdf")


@pytest.fixture
def store(cli, tmp_path: Path):
    m = small_manifest(tmp_path / "bank")
    assert cli("import", m)[0] == 0
    rng = np.random.default_rng(3)
    write_saelens(tmp_path / "sae2", rng, 8, 32, hook_name="blocks.1.hook_resid_pre")
    acts = tmp_path / "acts.safetensors"
    write_activations(acts, {"activations": rng.standard_normal((300, 8)).astype(np.float32)})
    assert cli("artifact", "add", "retail-pd", "--kind", "sae", "--bound-version", "v2", "--path", tmp_path / "sae2",
               "--id", "pd-sae-v2", "--replaces", "pd-sae-v1")[0] == 0
    code, _, err = cli("check", "fidelity", "pd-sae-v2", "--version", "v2", "--activations", acts)
    assert code in (0,), err
    assert cli("finding", "add", "--model", "retail-pd", "--severity", "high", "--title", "No attribution baseline",
               "--owner", "alice", "--due", "2026-03-31")[0] == 0
    assert cli("failure-modes", "detect")[0] == 0
    as_of = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # after every write above, not in the future
    return {"as_of": as_of, "acts": acts, "tmp": tmp_path}


def _text(pdf: Path) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(pdf)).pages)


def test_pack_figures_match_status_and_bytes_are_reproducible(cli, store):
    q = "2026Q4"
    tmp, as_of = store["tmp"], store["as_of"]
    code, out, _ = cli("status", "--quarter", q, "--as-of", as_of, "--json")
    st = json.loads(out)
    a, b = tmp / "a.pdf", tmp / "b.pdf"
    for target in (a, b):
        code, out, err = cli("report", "--quarter", q, "--as-of", as_of, "--out", target, "--json")
        assert code == 0, err
    assert a.read_bytes() == b.read_bytes()
    text = re.sub(r"\s+", " ", _text(a))
    p = st["portfolio"]
    assert f"{p['coverage'] * 100:.1f} %" in text
    assert f"{p['debt']:,}" in text and f"{int(p['weighted_debt']):,}" in text
    for section in ("Executive summary", "Explanation coverage", "Interpretability debt", "Failure-mode register",
                    "Attestation"):
        assert section.lower() in text.lower(), section
    reader = pypdf.PdfReader(str(a))
    xmp = reader.xmp_metadata
    assert xmp is not None and "pdfaid" in (reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode("utf-8", "ignore"))
    attached = reader.attachments
    assert "context.json" in attached
    ctx = json.loads(attached["context.json"][0])
    assert ctx["cover"]["as_of"].startswith(as_of[:19])

    # Evidence recorded after the as-of never changes the report as of then.
    assert cli("check", "fidelity", "pd-sae-v2", "--version", "v2", "--activations", store["acts"])[0] == 0
    assert cli("finding", "add", "--model", "card-fraud", "--severity", "low", "--title", "later", "--owner", "bob",
               "--due", "2027-01-01")[0] == 0
    c = tmp / "c.pdf"
    assert cli("report", "--quarter", q, "--as-of", as_of, "--out", c)[0] == 0
    assert c.read_bytes() == a.read_bytes()


def test_model_review_and_export_verify(cli, store):
    tmp, as_of = store["tmp"], store["as_of"]
    code, out, err = cli("report", "--quarter", "2026Q4", "--model", "retail-pd", "--as-of", as_of, "--out",
                         tmp / "review.html", "--format", "html", "--json")
    assert code == 0, err
    html = (tmp / "review.html").read_text()
    assert "pd-sae-v2" in html and "pd-sae-v1" in html  # lineage
    z = tmp / "pack.zip"
    code, out, err = cli("export", "--quarter", "2026Q4", "--as-of", as_of, "--out", z, "--json")
    assert code == 0, err
    code, out, err = cli("verify", "--pack", z)
    assert code == 0, err
    assert "matches report run" in out
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
        pdf = zf.read(next(n for n in names if n.endswith(".pdf")))
        ctx = zf.read("context.json")
    assert any(n.startswith("tables/") and n.endswith(".csv") for n in names) and "ledger.jsonl" in names
    embedded = pypdf.PdfReader(io.BytesIO(pdf)).attachments["context.json"][0]
    assert hashlib.sha256(embedded).hexdigest() == hashlib.sha256(ctx).hexdigest()
    assert json.dumps(manifest).count(hashlib.sha256(ctx).hexdigest()) >= 1
    # Change one byte of one file: verification names it.
    bad = tmp / "bad.zip"
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "ledger.jsonl":
                data = data[:-2] + bytes([data[-2] ^ 1]) + data[-1:]
            dst.writestr(info, data)
    code, out, err = cli("verify", "--pack", bad)
    assert code == 1 and "ledger.jsonl" in (out + err)


def test_an_export_takes_a_just_rendered_pack_only_of_its_own_context(cli, store):
    """`export_pack(rendered=(hash, pdf))` (the demo's: the pack it has just written) gives the zip
    a render of its own would; a PDF of another context is ignored, never shipped."""
    from compliance.services.report import export_pack, render_report
    from compliance.store.engine import session_scope
    from compliance.timeutil import parse_datetime

    tmp, as_of = store["tmp"], parse_datetime(store["as_of"])
    with session_scope(cli.url, actor=cli.admin) as s:
        r = render_report(s, "2026Q4", as_of, tmp / "pack.pdf")
    pdf = (tmp / "pack.pdf").read_bytes()
    zips = {}
    for name, rendered in (("own", None), ("reused", (r["context_sha256"], pdf)),
                           ("other", ("0" * 64, b"%PDF-1.7 not this context"))):
        with session_scope(cli.url, actor=cli.admin) as s:
            out = export_pack(s, "2026Q4", as_of, tmp / f"{name}.zip", rendered=rendered)
        zips[name] = (tmp / f"{name}.zip").read_bytes()
        assert out["sha256"] == hashlib.sha256(zips[name]).hexdigest()
    assert zips["reused"] == zips["own"] == zips["other"]
    with zipfile.ZipFile(io.BytesIO(zips["reused"])) as zf:
        assert zf.read("report.pdf") == pdf
