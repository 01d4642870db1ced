"""`compliance serve`: every page and its JSON twin on SQLite and PostgreSQL, bad inputs, safety.

A small store (two models, a failing fidelity check, failure modes, a finding, a rendered review)
is served through Starlette's TestClient; the twins are compared with the CLI's ``--json``, and
the ledger head must be the same after every request as before.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from compliance.interp.synthetic import write_activations
from compliance.store.engine import session_scope
from compliance.store.ledger import head
from tests.helpers import small_manifest

ROOT = Path(__file__).resolve().parents[1]
SECURITY = {"content-security-policy", "x-content-type-options", "x-frame-options"}


def _client(app, **kw):
    with warnings.catch_warnings():  # newer Starlette prefers httpx2 for its TestClient; httpx still works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        return TestClient(app, raise_server_exceptions=True, **kw)


def _ok(cli, *args, actor="tester"):
    code, out, err = cli(*args, actor=actor)
    assert code == 0, err
    return out


@pytest.fixture
def web(cli, tmp_path: Path):
    """A store with a failing check, open failure modes, a finding and a rendered per-model review."""
    from compliance.web.app import create_app
    from compliance.web.config import WebConfig

    _ok(cli, "import", small_manifest(tmp_path / "bank"), actor="dev")
    acts = tmp_path / "acts.safetensors"
    write_activations(acts, {"activations": np.random.default_rng(3).standard_normal((300, 8)).astype(np.float32)})
    check = json.loads(_ok(cli, "check", "fidelity", "pd-sae-v1", "--version", "v2", "--activations", acts, "--json",
                           actor="val"))
    assert check["status"] == "fail"
    _ok(cli, "failure-modes", "detect")
    _ok(cli, "finding", "add", "--model", "retail-pd", "--severity", "high", "--title", "SAE broken on v2",
        "--owner", "alice", "--due", "2026-12-31")
    reports = tmp_path / "reports"
    reports.mkdir()
    review = json.loads(_ok(cli, "report", "--quarter", "2026Q1", "--model", "retail-pd", "--format", "html",
                            "--out", reports / "review.html", "--json"))
    with session_scope(cli.url, readonly=True) as s:
        before = head(s)
    app = create_app(WebConfig(db_url=cli.url, reports_dir=reports, per_page=2))
    yield {"client": _client(app), "cli": cli, "check_id": check["id"], "review": review, "reports": reports,
           "url": cli.url, "app": app}
    with session_scope(cli.url, readonly=True) as s:
        assert head(s) == before, "serving changed the ledger"


PAGES = ["/", "/?quarter=2026Q1", "/?quarter=2026Q1&page=1", "/models/retail-pd", "/models/card-fraud?quarter=2026Q1", "/artifacts/pd-sae-v1",
         "/failure-modes", "/failure-modes?status=open&code=FM-DECAY", "/failure-modes?page=2", "/findings",
         "/findings?severity=high&model=retail-pd", "/ledger", "/ledger?entity_type=check_run", "/ledger?page=2", "/ledger/1", "/ledger/verify",
         "/reports", "/static/web.css"]


def test_every_page_renders_with_security_headers(web):
    c = web["client"]
    for path in PAGES + [f"/checks/{web['check_id']}"]:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert SECURITY <= set(r.headers), path
        assert "script-src" not in r.headers["content-security-policy"] and "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in r.text.lower() and "Traceback" not in r.text, path


def test_pages_show_the_evidence_behind_the_figures(web):
    c, cid = web["client"], web["check_id"]
    dash = c.get("/?quarter=2026Q1").text
    assert 'class="fig red" href="/models/retail-pd?quarter=2026Q1"' in dash  # the red verdict links to its model
    model = c.get("/models/retail-pd?quarter=2026Q1").text
    assert f'href="/checks/{cid}?quarter=2026Q1"' in model and 'src="data:image/svg+xml;base64,' in model
    art = c.get("/artifacts/pd-sae-v1").text
    assert "Fidelity history" in art and f'/checks/{cid}' in art and 'src="data:image/svg+xml;base64,' in art
    page = c.get(f"/checks/{cid}").text
    twin = c.get(f"/api/checks/{cid}").json()
    for reason in twin["reasons"]:
        assert reason.replace("'", "&#39;").replace('"', "&#34;").split("<")[0][:40] in page.replace("&gt;", ">").replace("&lt;", "<")
    for name, digest in twin["input_hashes"].items():
        assert name in page and digest in page
    # its ledger entry: the hash shown is the chain's own, and the entries around it are listed
    with session_scope(web["url"], readonly=True) as s:
        from compliance.services.ledger_view import entry_seq_for, ledger_entry

        e = ledger_entry(s, entry_seq_for(s, "check_run", str(cid)))["entry"]
    assert e["entity_type"] == "check_run" and f'id="entry-hash">{e["hash"]}<' in page
    assert f'href="/ledger/{e["seq"] - 1}"' in page and f'href="/ledger/{e["seq"] + 1}"' in page
    assert "has not been verified by this server yet" in c.get("/ledger").text
    assert "ledger OK" in c.get("/ledger/verify").text
    ledger = c.get("/ledger").text
    assert "ledger OK" in ledger and "verified at" in ledger and "grown since" not in ledger


def _cli_json(cli, *args):
    return json.loads(_ok(cli, *args, "--json"))


def test_json_twins_equal_the_cli(web):
    c, cli, cid = web["client"], web["cli"], web["check_id"]
    from compliance.timeutil import iso, utcnow

    t = iso(utcnow())
    assert c.get(f"/api/status?quarter=2026Q1&as_of={t}").json() == _cli_json(cli, "status", "--quarter", "2026Q1", "--as-of", t)
    assert c.get("/api/models").json() == _cli_json(cli, "model", "list")
    assert c.get("/api/models/retail-pd").json() == _cli_json(cli, "model", "show", "retail-pd")
    assert c.get("/api/artifacts/pd-sae-v1").json() == _cli_json(cli, "artifact", "show", "pd-sae-v1")
    assert c.get(f"/api/checks/{cid}").json() == _cli_json(cli, "check", "show", str(cid))
    assert c.get("/api/failure-modes").json() == _cli_json(cli, "failure-modes", "list")
    assert c.get("/api/failure-modes?open=1").json() == _cli_json(cli, "failure-modes", "list", "--open")
    assert c.get("/api/findings").json() == _cli_json(cli, "finding", "list")
    assert c.get("/api/reports").json() == _cli_json(cli, "reports")
    v = c.get("/api/verify").json()
    assert v == _cli_json(cli, "verify") and v["ok"]
    led = c.get("/api/ledger").json()
    assert led["head_hash"] == v["head"] and led["entries"][0]["hash"] == v["head"]
    assert c.get(f"/api/ledger/{led['head_seq']}").json()["entry"]["hash"] == v["head"]


BAD = [("/?quarter=2026Q5", 400), ("/?quarter=20x6Q1", 400), ("/?quarter=" + "9" * 500, 400), ("/?as_of=yesterday", 400),
       ("/?as_of=2999-01-01", 400), ("/?as_of=2026-13-01", 400), ("/?quarter=2026Q1&quarter=2026Q2", 400),
       ("/?colour=red", 400), ("/?page=9", 404), ("/models/nope", 404), ("/models/..%2F..%2Fetc%2Fpasswd", 404), ("/models/%00", 404),
       ("/artifacts/nope", 404), ("/checks/0", 404), ("/checks/abc", 404), ("/checks/99999999999999999999999", 404),
       ("/checks/999999", 404), ("/ledger/0", 404), ("/ledger/10000000", 404), ("/ledger?page=-1", 400),
       ("/ledger?page=999", 404), ("/ledger?entity_type=%27%3B%20drop", 400), ("/failure-modes?status=bogus", 400),
       ("/failure-modes?severity=urgent", 400), ("/findings?status=x", 400), ("/findings?page=1e3", 400),
       ("/reports/nope/files/x.pdf", 404), ("/nowhere", 404), ("/api/checks/abc", 404), ("/api/models/nope", 404),
       ("/api/status?quarter=bad", 400), ("/api/failure-modes?open=maybe", 400)]


def test_bad_inputs_are_clean_4xx_pages(web):
    c = web["client"]
    for path, code in BAD:
        r = c.get(path)
        assert r.status_code == code, (path, r.status_code, r.text[:300])
        assert "Traceback" not in r.text and "File \"" not in r.text, path
        assert SECURITY <= set(r.headers), path
        if path.startswith("/api/"):
            assert r.json()["status"] == code
        else:
            assert r.headers["content-type"].startswith("text/html") and 'class="error"' in r.text
    for method in ("post", "put", "delete", "patch"):
        r = getattr(c, method)("/")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_downloads_only_recorded_bytes(web):
    c, review, reports = web["client"], web["review"], web["reports"]
    run = review["run_id"]
    page = c.get("/reports").text
    assert f'/reports/{run}/files/review.html' in page and review["sha256"] in page
    r = c.get(f"/reports/{run}/files/review.html")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == review["sha256"]
    assert r.headers["x-content-sha256"] == review["sha256"] and "attachment" in r.headers["content-disposition"]
    for trick in ["..%2Fstore.db", "%2E%2E%2Freview.html", ".review.html", "review.html%00.pdf", "pack:context.json",
                  "other.html"]:
        assert c.get(f"/reports/{run}/files/{trick}").status_code == 404, trick
    (reports / "review.html").write_bytes(b"<p>edited</p>")
    r = c.get(f"/reports/{run}/files/review.html")
    assert r.status_code == 404 and "differs from the SHA-256" in r.text
    assert "differs from the recorded SHA-256" in c.get("/reports").text


def test_user_header_is_trusted_only_from_the_proxy(web):
    from compliance.web.app import create_app
    from compliance.web.config import WebConfig

    cfg = WebConfig(db_url=web["url"], trusted_proxies=("10.0.0.0/24",), require_user=True)
    app = create_app(cfg)
    via_proxy = _client(app, client=("10.0.0.7", 40000))
    r = via_proxy.get("/findings", headers={"X-Remote-User": "carol@bank.example"})
    assert r.status_code == 200 and "carol@bank.example" in r.text
    assert via_proxy.get("/findings").status_code == 401  # the proxy named nobody
    direct = _client(app, client=("192.168.1.9", 40000))
    r = direct.get("/findings", headers={"X-Remote-User": "carol@bank.example"})
    assert r.status_code == 401  # a client that is not the proxy cannot name itself
    open_app = _client(create_app(WebConfig(db_url=web["url"])))
    r = open_app.get("/findings", headers={"X-Remote-User": "mallory"})
    assert r.status_code == 200 and "mallory" not in r.text and "not signed in" in r.text


def test_the_database_is_opened_read_only(db_url):
    from compliance.errors import ComplianceError
    from compliance.services.registry import add_model
    from compliance.web.config import readonly_url

    ro = readonly_url(db_url)
    with session_scope(db_url, readonly=True) as s:
        before = head(s)
    with pytest.raises(ComplianceError):
        with session_scope(ro, actor="x") as s:  # even a writing session cannot write through this URL
            add_model(s, "m", name="M", owner="o", tier=1, use="u")
    with session_scope(db_url, readonly=True) as s:
        assert head(s) == before


def test_bad_configuration_is_refused(tmp_path):
    from compliance.errors import UsageError
    from compliance.web.config import WebConfig, readonly_url

    for kw in [dict(trusted_proxies=("not-an-ip",)), dict(require_user=True), dict(reports_dir=tmp_path / "none"),
               dict(user_header="X Bad")]:
        with pytest.raises(UsageError):
            WebConfig(db_url="sqlite:///x.db", **kw)
    for url in ["sqlite://", "sqlite:///:memory:", f"sqlite:///{tmp_path / 'missing.db'}", "mysql://h/db"]:
        with pytest.raises(UsageError):
            readonly_url(url)


def test_help_and_serve_help_do_not_import_the_web_stack():
    probe = ("from typer.testing import CliRunner\nfrom compliance.cli.main import app\nr = CliRunner()\n"
             "assert r.invoke(app, ['--help']).exit_code == 0\nassert r.invoke(app, ['serve', '--help']).exit_code == 0\n"
             "import sys\nbad = [m for m in ('starlette', 'uvicorn', 'torch', 'compliance.web.app') if m in sys.modules]\n"
             "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_serve_refuses_bad_settings_in_one_line(cli, tmp_path):
    for args, text in [(["--trusted-proxy", "proxy.bank"], "not an IP address"), (["--require-user"], "needs at least one"),
                       (["--reports-dir", str(tmp_path / "nowhere")], "is not a folder"), (["--port", "0"], "")]:
        code, out, err = cli("serve", *args)
        assert code == 2 and text in err and "Traceback" not in err, (args, err)
