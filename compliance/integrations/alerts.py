"""Alert delivery (DESIGN §10): webhook (JSON POST signed with HMAC-SHA256) and e-mail (SMTP,
STARTTLS or TLS, optional login), reading the outbox of :mod:`compliance.services.alerts`.

Configuration: a YAML file named by ``--config`` or ``COMPLIANCE_ALERTS_CONFIG``::

    webhooks:
      mrm-hook: {url: https://hooks.bank.example/mrm, secret_env: MRM_HOOK_SECRET}
    smtp: {host: smtp.bank.example, port: 587, starttls: true, username: compliance,
           password_env: SMTP_PASSWORD, from: compliance@bank.example}
    default: {email: [mrm@bank.example], webhook: [mrm-hook]}   # when a plan names nobody
    retry: {attempts: 3, backoff_seconds: 2, retry_after_seconds: 60, max_backoff_seconds: 3600,
            timeout_seconds: 10}

or environment variables alone: ``COMPLIANCE_WEBHOOK_URL`` + ``COMPLIANCE_WEBHOOK_SECRET`` (a
webhook named ``default``), ``COMPLIANCE_SMTP_HOST`` / ``_PORT`` / ``_USER`` / ``_PASSWORD`` /
``_FROM`` / ``_STARTTLS`` (1/0) / ``_SSL`` / ``_CAFILE``, ``COMPLIANCE_ALERT_EMAIL`` (default recipients,
comma-separated). Secrets are read from the environment, never stored in the database.

Each webhook request carries ``X-Compliance-Signature: sha256=<hex>`` = HMAC-SHA256(secret,
body) over the exact body bytes, plus ``X-Compliance-Alert-Id`` and ``X-Compliance-Delivery``.
A delivery is tried ``attempts`` times with exponential backoff (``backoff_seconds`` × 2^i); if
all fail the last attempt records when to try next (``retry_after_seconds``, doubled for every
earlier round of attempts, at most ``max_backoff_seconds``), and ``compliance alerts retry`` (or the next command that writes an
alert) tries again. A failed delivery is recorded, never raised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy.orm import Session

from compliance.errors import InputError
from compliance.services import alerts as outbox
from compliance.timeutil import utcnow

SIGNATURE_HEADER = "X-Compliance-Signature"


@dataclass
class Webhook:
    name: str
    url: str
    secret: str | None


@dataclass
class Smtp:
    host: str
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = "compliance@localhost"
    cafile: str | None = None  # a private CA bundle to verify the server's certificate


@dataclass
class AlertConfig:
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    smtp: Smtp | None = None
    default_email: list[str] = field(default_factory=list)
    default_webhook: list[str] = field(default_factory=list)
    attempts: int = 3
    backoff_seconds: float = 2.0
    retry_after_seconds: float = 60.0
    max_backoff_seconds: float = 3600.0
    timeout_seconds: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.webhooks or self.smtp)

    def targets(self, alert: dict) -> list[tuple[str, str]]:
        rec = alert.get("recipients") or {}
        hooks = rec.get("webhook") or self.default_webhook
        emails = rec.get("email") or self.default_email
        out = [("webhook", h) for h in hooks]
        if emails:
            out.append(("email", ", ".join(emails)))
        return out


def _secret(spec: dict, where: str) -> str | None:
    if spec.get("secret_env"):
        value = os.environ.get(str(spec["secret_env"]))
        if not value:
            raise InputError(f"{where}: environment variable {spec['secret_env']} is not set")
        return value
    return str(spec["secret"]) if spec.get("secret") else None


def load_config(path: str | Path | None = None, env: dict | None = None) -> AlertConfig:
    """The delivery configuration from ``path`` (or ``COMPLIANCE_ALERTS_CONFIG``), else from env."""
    env = os.environ if env is None else env
    path = path or env.get("COMPLIANCE_ALERTS_CONFIG")
    cfg = AlertConfig()
    if path:
        from compliance.safeyaml import load_yaml_file

        p = Path(path)
        if not p.is_file():
            raise InputError(f"alerts configuration not found: {p}")
        doc = load_yaml_file(p) or {}
        if not isinstance(doc, dict) or not set(doc) <= {"webhooks", "smtp", "default", "retry"}:
            raise InputError(f"{p.name}: expected sections webhooks, smtp, default, retry")
        for name, spec in (doc.get("webhooks") or {}).items():
            if not isinstance(spec, dict) or not str(spec.get("url", "")).startswith(("http://", "https://")):
                raise InputError(f"{p.name}: webhooks.{name} needs an http(s) url")
            cfg.webhooks[str(name)] = Webhook(str(name), str(spec["url"]), _secret(spec, f"{p.name}: webhooks.{name}"))
        if doc.get("smtp"):
            s = doc["smtp"]
            if not isinstance(s, dict) or not s.get("host"):
                raise InputError(f"{p.name}: smtp needs a host")
            pw = os.environ.get(str(s["password_env"])) if s.get("password_env") else s.get("password")
            cfg.smtp = Smtp(host=str(s["host"]), port=int(s.get("port", 587)), starttls=bool(s.get("starttls", True)),
                            ssl=bool(s.get("ssl", False)), username=s.get("username"), password=pw,
                            sender=str(s.get("from", "compliance@localhost")),
                            cafile=str(s["cafile"]) if s.get("cafile") else None)
        d = doc.get("default") or {}
        cfg.default_email = [str(x) for x in d.get("email") or []]
        cfg.default_webhook = [str(x) for x in d.get("webhook") or []]
        r = doc.get("retry") or {}
        cfg.attempts = max(1, int(r.get("attempts", cfg.attempts)))
        cfg.backoff_seconds = float(r.get("backoff_seconds", cfg.backoff_seconds))
        cfg.retry_after_seconds = float(r.get("retry_after_seconds", cfg.retry_after_seconds))
        cfg.max_backoff_seconds = float(r.get("max_backoff_seconds", cfg.max_backoff_seconds))
        cfg.timeout_seconds = float(r.get("timeout_seconds", cfg.timeout_seconds))
        return cfg
    if env.get("COMPLIANCE_WEBHOOK_URL"):
        cfg.webhooks["default"] = Webhook("default", env["COMPLIANCE_WEBHOOK_URL"], env.get("COMPLIANCE_WEBHOOK_SECRET"))
        cfg.default_webhook = ["default"]
    if env.get("COMPLIANCE_SMTP_HOST"):
        cfg.smtp = Smtp(host=env["COMPLIANCE_SMTP_HOST"], port=int(env.get("COMPLIANCE_SMTP_PORT", 587)),
                        starttls=env.get("COMPLIANCE_SMTP_STARTTLS", "1") == "1", ssl=env.get("COMPLIANCE_SMTP_SSL") == "1",
                        username=env.get("COMPLIANCE_SMTP_USER"), password=env.get("COMPLIANCE_SMTP_PASSWORD"),
                        sender=env.get("COMPLIANCE_SMTP_FROM", "compliance@localhost"),
                        cafile=env.get("COMPLIANCE_SMTP_CAFILE"))
    if env.get("COMPLIANCE_ALERT_EMAIL"):
        cfg.default_email = [x.strip() for x in env["COMPLIANCE_ALERT_EMAIL"].split(",") if x.strip()]
    return cfg


# ------------------------------------------------------------------ one delivery
def alert_body(alert: dict) -> bytes:
    """The JSON body of a webhook delivery (sorted keys, UTF-8): what the signature covers."""
    doc = {"alert_id": alert["id"], "event": alert["event"], "model_id": alert["model_id"], "subject": alert["subject"],
           "recorded_at": alert["recorded_at"], "payload": alert["payload"]}
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """What a receiver runs: constant-time comparison of the header with the body's HMAC."""
    return hmac.compare_digest(sign(secret, body), header or "")


def post_webhook(hook: Webhook, alert: dict, attempt: int, timeout: float) -> str:
    body = alert_body(alert)
    headers = {"Content-Type": "application/json", "User-Agent": "compliance-alerts",
               "X-Compliance-Alert-Id": str(alert["id"]), "X-Compliance-Delivery": f"{alert['id']}.{attempt}"}
    if hook.secret:
        headers[SIGNATURE_HEADER] = sign(hook.secret, body)
    req = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured http(s) URL
        return f"HTTP {resp.status}"


def send_email(smtp: Smtp, alert: dict, to: list[str], timeout: float) -> str:
    msg = EmailMessage()
    msg["Subject"] = f"[compliance] {alert['subject']}"
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["X-Compliance-Alert-Id"] = str(alert["id"])
    p = alert["payload"]
    lines = [alert["subject"], "", f"event: {alert['event']}", f"model: {alert['model_id'] or '—'}",
             f"recorded: {alert['recorded_at']}", ""] + [f"{k}: {v}" for k, v in sorted(p.items())
                                                         if k not in ("event", "model_id")]
    msg.set_content("\n".join(lines) + "\n")
    tls = ssl.create_default_context(cafile=smtp.cafile)
    c = (smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=tls) if smtp.ssl
         else smtplib.SMTP(smtp.host, smtp.port, timeout=timeout))
    with c:
        if smtp.starttls and not smtp.ssl:
            c.starttls(context=tls)
        if smtp.username:
            c.login(smtp.username, smtp.password or "")
        refused = c.send_message(msg)
    if refused:
        raise smtplib.SMTPRecipientsRefused(refused)
    return f"accepted by {smtp.host}:{smtp.port} for {len(to)} recipient(s)"


def _deliver_once(cfg: AlertConfig, alert: dict, channel: str, target: str, attempt: int) -> str:
    if channel == "webhook":
        hook = cfg.webhooks.get(target)
        if hook is None:
            raise LookupError(f"no webhook named {target!r} is configured")
        return post_webhook(hook, alert, attempt, cfg.timeout_seconds)
    if cfg.smtp is None:
        raise LookupError("no SMTP server is configured")
    return send_email(cfg.smtp, alert, [x.strip() for x in target.split(",")], cfg.timeout_seconds)


# ------------------------------------------------------------------ the outbox
def deliver_pending(open_session: Callable[..., AbstractContextManager[Session]], cfg: AlertConfig, *,
                    now: datetime | None = None, force: bool = False, alert_ids: list[int] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    """Deliver every alert target not yet delivered whose retry time has come (``force``: now),
    recording each attempt in its own short transaction. Returns the attempts made."""
    now = now or utcnow()
    with open_session(readonly=True) as s:
        todo = []
        for a in outbox.list_alerts(s, targets_of=cfg.targets):
            if alert_ids is not None and a["id"] not in alert_ids:
                continue
            for channel, target in a["targets"]:
                tries = [d for d in a["deliveries"] if (d["channel"], d["target"]) == (channel, target)]
                if tries and tries[-1]["outcome"] == "delivered":
                    continue
                nxt = tries[-1]["next_attempt_at"] if tries else None
                if not force and nxt is not None and datetime.fromisoformat(nxt) > now:
                    continue
                todo.append((a, channel, target, len(tries)))
    made = []
    for a, channel, target, before in todo:
        for i in range(cfg.attempts):
            attempt = before + i + 1
            try:
                detail, outcome = _deliver_once(cfg, a, channel, target, attempt), "delivered"
            except (OSError, LookupError, smtplib.SMTPException, urllib.error.URLError, ValueError) as exc:
                detail, outcome = f"{type(exc).__name__}: {exc}", "failed"
            last = i == cfg.attempts - 1
            nxt = None
            if outcome == "failed" and last:
                wait = min(cfg.max_backoff_seconds, cfg.retry_after_seconds * 2 ** max(0, attempt - cfg.attempts))
                nxt = utcnow() + timedelta(seconds=wait)
            with open_session(short_writes=True) as s:
                made.append(outbox.record_attempt(s, a["id"], channel, target, outcome=outcome, detail=detail,
                                                  next_attempt_at=nxt))
            if outcome == "delivered" or last:
                break
            sleep(cfg.backoff_seconds * 2 ** i)
    return made

