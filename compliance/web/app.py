"""The ASGI app: routes, the read-only session per request, security headers and identity.

Every handler validates its parameters (``params``), opens one read-only session, builds a plain
context (``pages``) and renders it with the pack's Jinja2 environment, or returns the JSON twin.
Errors become a 4xx page (or a JSON error under /api), never a traceback.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from compliance import __version__
from compliance.errors import ComplianceError, NotFound, SchemaOutOfDate, UsageError, InputError
from compliance.timeutil import iso, parse_datetime, utcnow
from compliance.web import pages, params as P
from compliance.web.config import WebConfig, readonly_url

log = logging.getLogger("compliance.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"), (b"cross-origin-opener-policy", b"same-origin")]
QA = {"quarter", "as_of"}


class Guard:
    """Pure ASGI middleware: only GET/HEAD; security headers on every response; the viewer's identity
    taken from the proxy's header only when the request comes from a trusted proxy address."""

    def __init__(self, app, cfg: WebConfig):
        self.app, self.cfg = app, cfg

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = (scope.get("client") or (None, None))[0]
        user = None
        if self.cfg.trusted(client):
            hname = self.cfg.user_header.lower().encode()
            vals = [v for k, v in scope.get("headers", []) if k == hname]
            if len(vals) == 1:
                user = vals[0].decode("utf-8", "replace").strip() or None
        scope.setdefault("state", {})["user"] = user

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in names]
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            return await _plain(405, "this view is read-only: only GET and HEAD are answered")(scope, receive, send_with_headers)
        if self.cfg.require_user and user is None:
            return await _plain(401, "sign in through the organisation's single sign-on proxy")(scope, receive,
                                                                                                send_with_headers)
        log.info("%s %s user=%s client=%s", scope["method"], scope.get("path"), user or "-", client or "-")
        await self.app(scope, receive, send_with_headers)


def _plain(code: int, text: str) -> Response:
    return Response(f"{code}: {text}\n", status_code=code, media_type="text/plain; charset=utf-8",
                    headers={"allow": "GET, HEAD"} if code == 405 else None)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n",
                    status_code=status, media_type="application/json")


STATUS_OF = ((NotFound, 404), (UsageError, 400), (InputError, 400), (SchemaOutOfDate, 503))


def create_app(cfg: WebConfig) -> Starlette:
    from compliance.report.render import make_environment, templates_dir
    from compliance.store.engine import session_scope

    import compliance.report.charts  # noqa: F401 - matplotlib loads once, at start-up, not in the first request

    url = readonly_url(cfg.db_url)
    env = make_environment()
    css = (templates_dir() / "web" / "web.css").read_bytes()
    icon = (templates_dir() / "web" / "favicon.svg").read_bytes()

    def session():
        return session_scope(url, readonly=True)

    def base_ctx(request: Request, title: str, quarter=None, as_of=None) -> dict:
        keep = {k: v for k, v in (("quarter", request.query_params.get("quarter")),
                                  ("as_of", request.query_params.get("as_of"))) if v}

        def link(path: str, **extra) -> str:
            q = {**keep, **{k: v for k, v in extra.items() if v not in (None, "")}}
            return path + ("?" + urlencode(q) if q else "")

        return {"title": title, "path": request.url.path, "user": request.scope.get("state", {}).get("user"),
                "version": __version__, "link": link, "sel_quarter": quarter or keep.get("quarter", ""),
                "sel_as_of": keep.get("as_of", ""), "as_of_shown": iso(as_of) if as_of else "now", "shown_quarter": quarter or "", "red": pages.RED,
                "entity_pages": pages.ENTITY_PAGES}

    def render(template: str, ctx: dict, status: int = 200) -> HTMLResponse:
        return HTMLResponse(env.get_template(f"web/{template}").render(**ctx), status_code=status)

    def error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return _json({"error": message, "status": status}, status)
        try:
            return render("error.html.j2", {**base_ctx(request, f"{status}"), "status": status, "message": message}, status)
        except Exception:  # the error page itself failed: plain text, still no traceback
            return _plain(status, message)

    def view(allowed: set[str], build: Callable[..., Any], template: str | None = None, title: str = ""):
        """A handler: refuse unknown parameters, parse quarter/as-of, open a read-only session, build, render."""

        def handler(request: Request) -> Response:
            try:
                qp = request.query_params
                if len(qp.multi_items()) != len(set(qp.keys())):
                    raise UsageError("a query parameter is given more than once")
                P.only(dict(qp), allowed)
                now = utcnow()
                quarter = P.quarter(qp.get("quarter")) if "quarter" in allowed else None
                as_of = P.as_of(qp.get("as_of"), now) if "as_of" in allowed else None
                with session() as s:
                    data = build(s, request, quarter, as_of)
                if template is None:
                    return data if isinstance(data, Response) else _json(data)
                name = title(data) if callable(title) else title
                shown_as_of = as_of if as_of is not None else (parse_datetime(data["as_of"]) if data.get("as_of") else None)
                return render(template, {**base_ctx(request, name, data.get("quarter") or quarter, shown_as_of), **data})
            except ComplianceError as exc:
                status = next((c for t, c in STATUS_OF if isinstance(exc, t)), 500)
                return error(request, status, str(exc))
            except Exception:  # a bug: logged with its traceback on the server, a plain page for the browser
                log.exception("error serving %s", request.url.path)
                return error(request, 500, "internal error (logged on the server)")

        return handler

    pp = cfg.per_page
    fm_keys = QA | {"status", "code", "model", "severity", "page"}
    fd_keys = QA | {"status", "model", "severity", "page"}
    lg_keys = {"as_of", "entity_type", "entity_id", "actor", "page"}

    def fm_args(r: Request) -> dict:
        q = r.query_params
        return dict(status=P.choice(q.get("status"), pages.FM_STATUSES, "status"), code=P.word(q.get("code"), "code"),
                    model=P.word(q.get("model"), "model"), severity=P.choice(q.get("severity"), pages.SEVERITIES, "severity"),
                    page=P.page(q.get("page")), per_page=pp)

    def fd_args(r: Request) -> dict:
        q = r.query_params
        return dict(status=P.choice(q.get("status"), pages.FINDING_STATUSES, "status"), model=P.word(q.get("model"), "model"),
                    severity=P.choice(q.get("severity"), pages.SEVERITIES, "severity"), page=P.page(q.get("page")), per_page=pp)

    def lg_args(r: Request) -> dict:
        q = r.query_params
        return dict(entity_type=P.word(q.get("entity_type"), "entity_type"), entity_id=P.word(q.get("entity_id"), "entity_id"),
                    actor=P.word(q.get("actor"), "actor"), page=P.page(q.get("page")), per_page=pp)

    def mid(r):
        return P.entity_id(r.path_params["model_id"], "model")

    def aid(r):
        return P.entity_id(r.path_params["artifact_id"], "artifact")

    def cid(r):
        return P.int_id(r.path_params["check_id"], "check")

    def seq(r):
        return P.int_id(r.path_params["seq"], "ledger entry")

    def ledger_html(s, r, q, t):
        d = pages.ledger_page(s, t or utcnow(), **lg_args(r))
        d["verify"] = pages.VERIFIED.last(s)
        return d

    def verify_html(s, r, q, t):
        return {"verify": pages.VERIFIED.run(s)}

    def download(s, r, q, t):
        run_id = P.entity_id(r.path_params["run_id"], "report run")
        name = P.file_name(r.path_params["name"])
        data, digest = pages.report_file(s, run_id, name, cfg.reports_dir)
        mt = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(data, media_type=mt, headers={"content-disposition": f'attachment; filename="{name}"',
                                                      "x-content-sha256": digest})

    def css_response(_request: Request) -> Response:
        return Response(css, media_type="text/css")

    from compliance.services import registry
    from compliance.services.checks import show_check
    from compliance.services.governance import list_failure_modes, list_findings
    from compliance.services.ledger_view import ledger_entry, ledger_page
    from compliance.services.report import list_reports

    def fm_twin(s, r, q, t):
        P.choice(r.query_params.get("open"), ("1", "true", "0", "false"), "open")
        return list_failure_modes(s, open_only=r.query_params.get("open") in ("1", "true"), as_of=t)

    def fd_twin(s, r, q, t):
        P.choice(r.query_params.get("open"), ("1", "true", "0", "false"), "open")
        return list_findings(s, open_only=r.query_params.get("open") in ("1", "true"), as_of=t)

    routes = [
        Route("/", view(QA | {"page"}, lambda s, r, q, t: pages.dashboard_page(s, q, t, page=P.page(r.query_params.get("page")),
                                                                               per_page=2 * pp),
                        "dashboard.html.j2", "Portfolio")),
        Route("/models/{model_id}", view(QA, lambda s, r, q, t: pages.model_page(s, mid(r), q, t), "model.html.j2",
                                         lambda d: f"Model {d['model']['id']}")),
        Route("/artifacts/{artifact_id}", view(QA, lambda s, r, q, t: pages.artifact_page(s, aid(r), q, t), "artifact.html.j2",
                                               lambda d: f"Artifact {d['artifact']['id']}")),
        Route("/checks/{check_id}", view(QA, lambda s, r, q, t: pages.check_page(s, cid(r), t), "check.html.j2",
                                         lambda d: f"Check {d['check']['id']}")),
        Route("/failure-modes", view(fm_keys, lambda s, r, q, t: pages.failure_modes_page(s, t, **fm_args(r)),
                                     "failure_modes.html.j2", "Failure-mode register")),
        Route("/findings", view(fd_keys, lambda s, r, q, t: pages.findings_page(s, t, **fd_args(r)), "findings.html.j2",
                                "Findings")),
        Route("/ledger", view(lg_keys, ledger_html, "ledger.html.j2", "Ledger")),
        Route("/ledger/verify", view(set(), verify_html, "verify.html.j2", "Verify the ledger")),
        Route("/ledger/{seq}", view(QA, lambda s, r, q, t: ledger_entry(s, seq(r)), "entry.html.j2",
                                    lambda d: f"Ledger entry {d['entry']['seq']}")),
        Route("/reports", view(QA, lambda s, r, q, t: pages.reports_page(s, t, cfg.reports_dir), "reports.html.j2", "Reports")),
        Route("/reports/{run_id}/files/{name}", view(set(), download)),
        Route("/static/web.css", css_response),
        Route("/static/favicon.svg", lambda _r: Response(icon, media_type="image/svg+xml")),
        Route("/favicon.ico", lambda _r: Response(icon, media_type="image/svg+xml")),
        # JSON twins: the services' own results, as the CLI prints them with --json
        Route("/api/status", view(QA, lambda s, r, q, t: pages.status_twin(s, q, t))),
        Route("/api/models", view(set(), lambda s, r, q, t: registry.list_models(s))),
        Route("/api/models/{model_id}", view(set(), lambda s, r, q, t: registry.show_model(s, mid(r)))),
        Route("/api/artifacts/{artifact_id}", view(set(), lambda s, r, q, t: registry.show_artifact(s, aid(r)))),
        Route("/api/checks/{check_id}", view(set(), lambda s, r, q, t: show_check(s, cid(r)))),
        Route("/api/failure-modes", view({"as_of", "open"}, fm_twin)),
        Route("/api/findings", view({"as_of", "open"}, fd_twin)),
        Route("/api/ledger", view(lg_keys, lambda s, r, q, t: ledger_page(s, as_of=t or utcnow(), **lg_args(r)))),
        Route("/api/ledger/{seq}", view(set(), lambda s, r, q, t: ledger_entry(s, seq(r)))),
        Route("/api/verify", view(set(), lambda s, r, q, t: pages.VERIFIED.run(s))),
        Route("/api/reports", view(set(), lambda s, r, q, t: list_reports(s))),
    ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        msg = "no such page" if exc.status_code == 404 else (exc.detail or "error")
        return error(request, exc.status_code, msg)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.config = cfg
    return Guard(app, cfg)


def _prewarm(cfg: WebConfig) -> None:  # pragma: no cover - exercised by the browser test
    """Compute the current quarter's dashboard once at start-up, so the first visitor does not wait for the analysis."""
    from compliance.store.engine import session_scope

    try:
        t = time.perf_counter()
        with session_scope(readonly_url(cfg.db_url), readonly=True) as s:
            pages.dashboard_page(s, None, None)
        log.info("dashboard of the current quarter computed in %.1fs", time.perf_counter() - t)
    except Exception:
        log.exception("pre-computing the dashboard failed (pages compute it on request)")


def serve(cfg: WebConfig, host: str, port: int) -> None:  # pragma: no cover - exercised by the browser test
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(cfg)
    threading.Thread(target=_prewarm, args=(cfg,), daemon=True, name="prewarm").start()
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                access_log=True)


__all__ = ["create_app", "serve", "WebConfig", "Path"]
