"""Alerts (issue 16, DESIGN §10): the outbox written with its cause, webhook deliveries to a REAL
local HTTP server (HMAC signature verified), receiver down -> recorded and retried later with the
causing write committed, and e-mail to a REAL local SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from helpers import small_manifest

SECRET = "s3cret-shared"


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int):
    _Hook.received = []
    srv = ThreadingHTTPServer(("127.0.0.1", port), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _setup(cli, tmp_path, monkeypatch, port: int, *, smtp_port: int | None = None):
    code, _, err = cli("import", small_manifest(tmp_path))
    assert code == 0, err
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"checks": {"fidelity": {"cadence": ["after_retrain", {"every": "30d"}]}},
                                    "alert": {"webhook": ["mrm-hook"], **({"email": ["mrm@bank.example"]}
                                                                         if smtp_port else {})}}))
    assert cli("plan", "set", "retail-pd", "--file", plan)[0] == 0
    cfg = {"webhooks": {"mrm-hook": {"url": f"http://127.0.0.1:{port}/hook", "secret_env": "MRM_HOOK_SECRET"}},
           "retry": {"attempts": 2, "backoff_seconds": 0.01, "timeout_seconds": 2}}
    if smtp_port:
        cfg["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "starttls": False, "username": "compliance",
                       "password_env": "SMTP_PASSWORD", "from": "compliance@bank.example"}
    f = tmp_path / "alerts.yaml"
    f.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("MRM_HOOK_SECRET", SECRET)
    monkeypatch.setenv("SMTP_PASSWORD", "pw")
    monkeypatch.setenv("COMPLIANCE_ALERTS_CONFIG", str(f))
    return f


def _alerts(cli):
    code, out, err = cli("alerts", "list", "--json")
    assert code == 0, err
    return json.loads(out)


def test_webhook_delivery_is_signed_and_recorded(cli, tmp_path, monkeypatch):
    from compliance.integrations.alerts import SIGNATURE_HEADER, verify_signature

    port = _free_port()
    _setup(cli, tmp_path, monkeypatch, port)
    srv = _serve(port)
    try:
        code, out, err = cli("failure-modes", "detect", "--json")
    finally:
        srv.shutdown()
    assert code == 0, err
    code, out, _ = cli("failure-modes", "list", "--json")
    mine = [o for o in json.loads(out) if o["model_id"] == "retail-pd" and o["status"] == "open"]
    assert mine  # occurrences closed at once (on a retired version) alert nobody
    got = {json.loads(b)["payload"]["occurrence_id"]: (h, b) for h, b in _Hook.received}
    assert {o["id"] for o in mine} <= set(got)
    for headers, body in got.values():
        assert verify_signature(SECRET, body, headers[SIGNATURE_HEADER])
        assert not verify_signature("wrong", body, headers[SIGNATURE_HEADER])
        assert json.loads(body)["event"] == "occurrence_opened"
    rows = [a for a in _alerts(cli) if a["model_id"] == "retail-pd"]
    assert rows and all(a["state"] == "delivered" for a in rows)
    assert all(a["deliveries"][-1]["detail"] == "HTTP 200" for a in rows)
    # a second detection opens nothing new and sends nothing
    _Hook.received = []
    assert cli("failure-modes", "detect")[0] == 0 and _Hook.received == []


def test_receiver_down_keeps_the_write_and_retries_later(cli, tmp_path, monkeypatch):
    port = _free_port()  # nothing listens there yet
    _setup(cli, tmp_path, monkeypatch, port)
    code, out, err = cli("failure-modes", "detect", "--json")
    assert code == 0, err  # the detection committed although the receiver is down
    assert "not delivered" in err and "alerts retry" in err
    opened = json.loads(out)
    code, out, _ = cli("failure-modes", "list", "--json")
    assert {o["id"] for o in opened} <= {o["id"] for o in json.loads(out)}
    rows = [a for a in _alerts(cli) if a["model_id"] == "retail-pd"]
    assert rows and all(a["state"] == "failed" for a in rows)
    assert all(len(a["deliveries"]) == 2 and a["deliveries"][-1]["next_attempt_at"] for a in rows)
    # not yet time: a plain retry waits for next_attempt_at
    code, out, _ = cli("alerts", "retry", "--json")
    assert code == 0 and json.loads(out) == []
    srv = _serve(port)
    try:
        code, out, err = cli("alerts", "retry", "--force", "--json")
    finally:
        srv.shutdown()
    assert code == 0, err
    made = json.loads(out)
    assert made and all(m["outcome"] == "delivered" and m["attempt"] == 3 for m in made)
    assert len(_Hook.received) == len(rows)
    assert all(a["state"] == "delivered" for a in _alerts(cli) if a["model_id"] == "retail-pd")
    code, out, _ = cli("verify", "--json")  # outbox and attempts are ledgered evidence like any other
    assert code == 0 and json.loads(out)["ok"]


def test_email_goes_to_a_real_smtp_server(cli, tmp_path, monkeypatch):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult

    got = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
            got.append((envelope.rcpt_tos, envelope.content.decode("utf-8"), session.authenticated))
            return "250 OK"

    def auth(server, session, envelope, mechanism, data):
        return AuthResult(success=data.login == b"compliance" and data.password == b"pw")

    smtp_port = _free_port()
    ctl = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=smtp_port, authenticator=auth,
                              auth_require_tls=False)
    ctl.start()
    http_port = _free_port()
    srv = _serve(http_port)
    try:
        _setup(cli, tmp_path, monkeypatch, http_port, smtp_port=smtp_port)
        code, out, err = cli("failure-modes", "detect", "--json")
    finally:
        ctl.stop()
        srv.shutdown()
    assert code == 0, err
    code, out, _ = cli("failure-modes", "list", "--json")
    opened = [o for o in json.loads(out) if o["model_id"] == "retail-pd" and o["status"] == "open"]
    assert len(got) == len(opened) > 0
    rcpt, content, authed = got[0]
    assert rcpt == ["mrm@bank.example"] and authed
    assert "Subject: [compliance]" in content and "retail-pd" in content
    email_rows = [d for a in _alerts(cli) for d in a["deliveries"] if d["channel"] == "email"]
    assert email_rows and all(d["outcome"] == "delivered" for d in email_rows)


def test_email_over_starttls_with_auth(cli, tmp_path, monkeypatch):
    """STARTTLS against a real SMTP server with a certificate from a private CA (cafile), login required."""
    import shutil
    import ssl
    import subprocess

    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    got = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            got.append((envelope.rcpt_tos, session.ssl is not None, session.authenticated))
            return "250 OK"

    def auth(server, session, envelope, mechanism, data):
        return AuthResult(success=data.login == b"compliance" and data.password == b"pw")

    port = _free_port()
    ctl = aiosmtpd.Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                              authenticator=auth, auth_require_tls=True)
    ctl.start()
    try:
        code, _, err = cli("import", small_manifest(tmp_path))
        assert code == 0, err
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"checks": {}, "alert": {"email": ["mrm@bank.example"]}}))
        assert cli("plan", "set", "retail-pd", "--file", plan)[0] == 0
        monkeypatch.setenv("COMPLIANCE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("COMPLIANCE_SMTP_PORT", str(port))
        monkeypatch.setenv("COMPLIANCE_SMTP_USER", "compliance")
        monkeypatch.setenv("COMPLIANCE_SMTP_PASSWORD", "pw")
        monkeypatch.setenv("COMPLIANCE_SMTP_CAFILE", str(cert))
        monkeypatch.delenv("COMPLIANCE_ALERTS_CONFIG", raising=False)
        code, out, err = cli("failure-modes", "detect")
        assert code == 0, err
    finally:
        ctl.stop()
    assert got and all(r == ["mrm@bank.example"] and tls and authed for r, tls, authed in got)


def test_verdict_worsening_alerts_once_and_improvement_does_not(db_url, tmp_path):
    from datetime import datetime, timezone

    from compliance.services import registry
    from compliance.services.alerts import list_alerts, verdict_alerts
    from compliance.store.engine import session_scope

    at = datetime(2026, 7, 1, tzinfo=timezone.utc)
    with session_scope(db_url) as s:
        registry.add_model(s, "m1", name="M1", owner="o", tier=1, use="u")
        registry.add_model(s, "m2", name="M2", owner="o", tier=1, use="u")
        before = {"m1": {"verdict": "fit"}, "m2": {"verdict": "not fit"}}
        after = {"m1": {"verdict": "not fit", "reasons": ["slot stale"]}, "m2": {"verdict": "fit with conditions"}}
        made = verdict_alerts(s, before, after, at)
        assert [a["model_id"] for a in made] == ["m1"] and made[0]["payload"]["to"] == "not fit"
        assert verdict_alerts(s, before, after, at) == []  # same cause: written once
    with session_scope(db_url, readonly=True) as s:
        rows = list_alerts(s)
    assert [(a["event"], a["state"]) for a in rows] == [("verdict_worsened", "no channel")]
