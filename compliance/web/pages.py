"""Page contexts: plain dicts built from service calls (no ORM, no starlette).

Each function takes a read-only session and validated parameters and returns what one page
renders. The JSON twins under ``/api`` return the services' own results (what the CLI prints with
``--json``); the pages add what a person needs beside them (links, charts, neighbours).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from compliance.errors import NotFound
from compliance.timeutil import iso

FM_STATUSES = ("open", "mitigated", "accepted", "closed")
FINDING_STATUSES = ("open", "in_progress", "remediated", "accepted", "closed")
SEVERITIES = ("critical", "high", "medium", "low")
RED = ("fail", "error", "broken", "missing", "not fit", "open")


class _AnalysisCache:
    """Recent analyses, keyed by store, quarter, as-of and the ledger head at that as-of: every write is
    a ledger entry, so the same key means the same evidence and the same figures. A page and the
    next page a person clicks (same quarter and as-of) share one analysis."""

    def __init__(self, size: int = 4):
        import threading
        from collections import OrderedDict

        self.size, self.lock, self.items = size, threading.Lock(), OrderedDict()

    def get(self, session: Session, quarter: str, as_of: datetime, what: str = "analysis") -> dict:
        """``what``: 'analysis' (services.analysis.analyse) or 'status' (services.dashboard.dashboard)."""
        from compliance.services.analysis import analyse
        from compliance.services.dashboard import dashboard
        from compliance.services.ledger_view import head_at

        key = (str(session.get_bind().url), quarter, iso(as_of), head_at(session, as_of), what)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        a = (analyse(session, quarter, as_of) if what == "analysis" else
             dashboard(session, quarter=quarter, as_of=as_of, analysis=self.get(session, quarter, as_of)))
        with self.lock:
            self.items[key] = a
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return a


ANALYSES = _AnalysisCache()


def resolve(session: Session, quarter: str | None, as_of: datetime | None) -> tuple[str, datetime]:
    """The quarter and as-of a page shows. As-of "now" is the start of the current minute, or the time
    of the last ledger entry when that is later: every piece of evidence recorded so far is in view,
    and pages opened one after the other show the same figures (and share one analysis)."""
    from compliance.services.dashboard import resolve_quarter_as_of
    from compliance.services.ledger_view import last_recorded_at
    from compliance.timeutil import utcnow

    if as_of is None:
        as_of = utcnow().replace(second=0, microsecond=0)
        last = last_recorded_at(session)
        as_of = max(as_of, last) if last is not None else as_of
    return resolve_quarter_as_of(quarter, as_of)


def paginate(rows: list, page: int, per_page: int) -> dict:
    pages = max(1, -(-len(rows) // per_page))
    if page > pages:
        raise NotFound(f"page {page} does not exist (there are {pages})")
    return {"rows": rows[(page - 1) * per_page: page * per_page], "page": page, "pages": pages, "total": len(rows),
            "per_page": per_page}


@lru_cache(maxsize=256)
def _timeline_uri(label: str, dates: tuple, values: tuple, title: str) -> str:
    """The pack's coverage chart for one model (deterministic: the same figures give the same SVG, kept)."""
    from compliance.report.charts import coverage_timeline
    from compliance.report.context import TimelineSeries

    return _svg(coverage_timeline([TimelineSeries(label=label, dates=list(dates), values=list(values))], title=title))


def _svg(svg: str) -> str:
    from compliance.report.charts import svg_data_uri

    return svg_data_uri(svg)


def _before(rows: list[dict], key: str, t: datetime) -> list[dict]:
    """Rows whose ``key`` (an ISO time) is at or before the as-of: a page never shows the future of its as-of."""
    stamp = iso(t)
    return [r for r in rows if not r.get(key) or str(r[key]) <= stamp]


# ------------------------------------------------------------------ dashboard
def dashboard_page(session: Session, quarter: str | None, as_of: datetime | None, *, page: int = 1,
                   per_page: int = 100) -> dict:

    q, t = resolve(session, quarter, as_of)
    d = ANALYSES.get(session, q, t, "status")
    worst = sorted(d["by_model"], key=lambda m: (m.get("verdict") != "not fit", -(m.get("weighted_debt_outstanding") or 0),
                                                 m["model_id"]))
    return {"status": d, "models": paginate(worst, page, per_page), "quarter": d["quarter"], "as_of": d["as_of"]}


def status_twin(session: Session, quarter: str | None, as_of: datetime | None) -> dict:
    """What `compliance status --json` prints for the same quarter and as-of."""

    q, t = resolve(session, quarter, as_of)
    return ANALYSES.get(session, q, t, "status")


# ------------------------------------------------------------------ model
def model_page(session: Session, model_id: str, quarter: str | None, as_of: datetime | None) -> dict:
    from compliance.services import registry
    from compliance.services.checks import list_checks
    from compliance.services.governance import list_failure_modes, list_findings

    m = registry.show_model(session, model_id)
    q, t = resolve(session, quarter, as_of)
    a = ANALYSES.get(session, q, t)
    row = next((r for r in a["by_model"] if r["model_id"] == model_id), None)
    days = [r for r in a["timeline_by_model"] if r.get("model_id") == model_id]
    stale = [s for s in a["staleness"] if s.get("model_id") == model_id]
    state = {}
    for s in stale:
        state.setdefault(s["artifact_id"], s)
    m["versions"] = _before(m["versions"], "recorded_at", t)
    m["deployments"] = _before(m["deployments"], "recorded_at", t)
    m["artifacts"] = _before(m["artifacts"], "recorded_at", t)
    checks = list_checks(session, model_id=model_id, as_of=t, limit=50)
    return {"model": m, "row": row, "quarter": q, "as_of": iso(t), "staleness": stale, "artifact_state": state,
            "timeline_chart": _timeline_uri(model_id, tuple(str(r["day"]) for r in days), tuple(r.get("share") for r in days),
                                            f"Daily explanation coverage of {model_id}, {q}"),
            "checks": checks, "policy": a["policy"],
            "required": a["policy"]["required_groups"].get(str(m["tier"]), []),
            "failure_modes": [f for f in list_failure_modes(session, as_of=t) if f["model_id"] == model_id],
            "findings": [f for f in list_findings(session, as_of=t) if f["model_id"] == model_id]}


# ------------------------------------------------------------------ artifact
def _lineage(artifacts: list[dict], artifact_id: str) -> dict:
    by_id = {a["id"]: a for a in artifacts}
    ancestors, seen, cur = [], {artifact_id}, by_id.get(artifact_id)
    while cur is not None and cur.get("replaces_id") and cur["replaces_id"] not in seen:
        seen.add(cur["replaces_id"])
        cur = by_id.get(cur["replaces_id"])
        if cur is not None:
            ancestors.append(cur)
    successors = [a for a in artifacts if a.get("replaces_id") == artifact_id]
    return {"ancestors": ancestors, "successors": successors}


def artifact_page(session: Session, artifact_id: str, quarter: str | None, as_of: datetime | None) -> dict:
    from compliance.report.charts import fidelity_by_version
    from compliance.report.context import FidelityRow
    from compliance.services import registry
    from compliance.services.checks import list_checks
    from compliance.services.policy import policy_at

    d = registry.show_artifact(session, artifact_id)
    q, t = resolve(session, quarter, as_of)
    if d.get("recorded_at") and str(d["recorded_at"]) > iso(t):
        raise NotFound(f"artifact {artifact_id} was registered after the as-of {iso(t)}")
    members = [m["id"] for m in d.get("member_artifacts", [])] if d.get("is_set") else [artifact_id]
    checks = []
    for mid in members:
        checks += list_checks(session, artifact_id=mid)
    checks = sorted(_before(checks, "recorded_at", t), key=lambda c: (c["finished_at"], c["id"]))
    fid = [FidelityRow(check_id=str(c["id"]), artifact_id=c["artifact_id"], kind=d["kind"], model_id=d["model_id"],
                       version=c.get("version") or "", date=str(c["finished_at"])[:10],
                       explained_variance=c.get("explained_variance"), mse=None, cossim=None, l0=None,
                       dead_fraction=None, decision_flip_rate=None, status=c["status"])
           for c in checks if c["kind"] == "fidelity"]
    pol = policy_at(session, t).get("fidelity", {})
    chart = fidelity_by_version(fid, ev_warn=float(pol.get("ev_warn", 0.8)), ev_fail=float(pol.get("ev_fail", 0.6)),
                                title=f"Explained variance of {artifact_id} across versions")
    survival = [c for c in checks if c["kind"] == "alignment"]
    survival += [c for c in _before(list_checks(session, model_id=d["model_id"], kind="alignment"), "recorded_at", t)
                 if c.get("other_artifact_id") == artifact_id and c not in survival]
    a = ANALYSES.get(session, q, t)
    return {"artifact": d, "quarter": q, "as_of": iso(t), "checks": checks, "fidelity_chart": _svg(chart),
            "survival": survival, "lineage": _lineage(_before(registry.list_artifacts(session, d["model_id"]), "recorded_at", t),
                                                      artifact_id),
            "staleness": [s for s in a["staleness"] if s.get("artifact_id") in (artifact_id, *members)]}


# ------------------------------------------------------------------ check
def check_page(session: Session, check_id: int, as_of: datetime | None) -> dict:
    from compliance.services.checks import show_check
    from compliance.services.governance import list_failure_modes
    from compliance.services.ledger_view import entry_seq_for, ledger_entry

    c = show_check(session, check_id)
    seq = entry_seq_for(session, "check_run", str(check_id))
    ledger = ledger_entry(session, seq) if seq else None
    return {"check": c, "ledger": ledger, "after_as_of": bool(as_of and str(c.get("recorded_at")) > iso(as_of)),
            "failure_modes": [f for f in list_failure_modes(session, as_of=as_of) if f.get("check_id") == check_id]}


# ------------------------------------------------------------------ register, findings
def failure_modes_page(session: Session, as_of: datetime | None, *, status=None, code=None, model=None,
                       severity=None, page=1, per_page=50) -> dict:
    from compliance.services.governance import catalog, list_failure_modes

    rows = list_failure_modes(session, as_of=as_of)
    rows = [r for r in rows if (not status or r["status"] == status) and (not code or r["code"] == code)
            and (not model or r["model_id"] == model) and (not severity or r["severity"] == severity)]
    return {"list": paginate(rows, page, per_page), "codes": [c["code"] for c in catalog(session)],
            "filters": {"status": status, "code": code, "model": model, "severity": severity}}


def findings_page(session: Session, as_of: datetime | None, *, status=None, model=None, severity=None,
                  page=1, per_page=50) -> dict:
    from compliance.services.governance import list_findings

    rows = [r for r in list_findings(session, as_of=as_of)
            if (not status or r["status"] == status) and (not model or r["model_id"] == model)
            and (not severity or r["severity"] == severity)]
    return {"list": paginate(rows, page, per_page), "filters": {"status": status, "model": model, "severity": severity}}


# ------------------------------------------------------------------ ledger
def ledger_page(session: Session, as_of: datetime, *, entity_type=None, entity_id=None, actor=None, page=1,
                per_page=50) -> dict:
    from compliance.services.ledger_view import ledger_page as lp

    d = lp(session, as_of=as_of, page=page, per_page=per_page, entity_type=entity_type, entity_id=entity_id, actor=actor)
    pages = max(1, -(-d["total"] // per_page))
    if page > pages:
        raise NotFound(f"page {page} does not exist (there are {pages})")
    d["pages"] = pages
    d["filters"] = {"entity_type": entity_type, "entity_id": entity_id, "actor": actor}
    return d


class _Verified:
    """`compliance verify` run on request (it reads every evidence row: seconds to minutes on a big
    store), and its last result per store, shown on the ledger page with the time it was run and
    whether the ledger has grown since."""

    def __init__(self):
        import threading

        self.lock, self.results = threading.Lock(), {}

    def run(self, session: Session) -> dict:
        from compliance.services.verification import verify_store
        from compliance.timeutil import utcnow

        r = verify_store(session)
        with self.lock:
            self.results[str(session.get_bind().url)] = dict(r, verified_at=iso(utcnow()))
        return r

    def last(self, session: Session) -> dict | None:
        from compliance.services.ledger_view import head_at
        from compliance.timeutil import utcnow

        with self.lock:
            r = self.results.get(str(session.get_bind().url))
        if r is None:
            return None
        return dict(r, current=r["head"] == head_at(session, utcnow())[1])


VERIFIED = _Verified()


ENTITY_PAGES = {"check_run": "/checks/{}", "model": "/models/{}", "artifact": "/artifacts/{}", "artifact_set": "/artifacts/{}",
                "report_run": "/reports#{}"}


# ------------------------------------------------------------------ reports
def _file_state(reports_dir: Path | None, name: str, digest: str) -> str:
    """'available' only when the file in the reports folder has exactly the recorded SHA-256."""
    if reports_dir is None:
        return "no reports folder configured"
    p = reports_dir / name
    if not p.is_file():
        return "not in the reports folder"
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "available" if h.hexdigest() == digest else "differs from the recorded SHA-256"


def reports_page(session: Session, as_of: datetime | None, reports_dir: Path | None) -> dict:
    from compliance.services.governance import attestations
    from compliance.services.report import PACK_OUTPUT_PREFIX, PADES_OUTPUT_PREFIX, list_reports

    runs = _before(list_reports(session), "recorded_at", as_of) if as_of else list_reports(session)
    signs = attestations(session, [r["id"] for r in runs], as_of=as_of) if runs else []
    out = []
    for r in reversed(runs):
        outputs = r.get("outputs") or {}
        files = [{"name": n, "sha256": h, "state": _file_state(reports_dir, n, h),
                  "pades": outputs.get(PADES_OUTPUT_PREFIX + n)}
                 for n, h in sorted(outputs.items()) if not n.startswith((PACK_OUTPUT_PREFIX, PADES_OUTPUT_PREFIX))]
        out.append({"run": r, "files": files, "attestations": [a for a in signs if a["report_run_id"] == r["id"]],
                    "pack_members": sum(1 for n in (r.get("outputs") or {}) if n.startswith(PACK_OUTPUT_PREFIX))})
    return {"runs": out, "reports_dir": str(reports_dir) if reports_dir else None}


def report_file(session: Session, run_id: str, name: str, reports_dir: Path | None) -> tuple[bytes, str]:
    """The bytes of a recorded output of a report run, only when they have the recorded SHA-256
    (read once, hashed, then served: what is checked is what is sent)."""
    from compliance.services.report import PACK_OUTPUT_PREFIX, PADES_OUTPUT_PREFIX, list_reports

    run = next((r for r in list_reports(session) if r["id"] == run_id), None)
    if run is None:
        raise NotFound(f"no report run {run_id}")
    digest = (run.get("outputs") or {}).get(name)
    if not isinstance(digest, str) or name.startswith((PACK_OUTPUT_PREFIX, PADES_OUTPUT_PREFIX)):
        raise NotFound(f"report run {run_id} has no output {name}")
    if reports_dir is None:
        raise NotFound("no reports folder configured (start the server with --reports-dir)")
    path = reports_dir / name
    if not path.is_file() or path.resolve().parent != reports_dir.resolve():
        raise NotFound(f"{name} of report run {run_id} is not in the reports folder")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise NotFound(f"{name} differs from the SHA-256 recorded by report run {run_id}: not served")
    return data, digest
