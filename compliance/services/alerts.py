"""The alert outbox (DESIGN §10): alerts are written in the transaction of the event that caused
them (an occurrence opening, a verdict worsening, a gate refusal, a missed check), so an alert
is never lost and never written for an event that rolled back. Delivery (webhook, e-mail) runs
after the commit (:mod:`compliance.integrations.alerts`) and records every attempt as an
``alert_delivery`` row: a receiver that is down never blocks or rolls back the write that caused
the alert; it is retried later (``compliance alerts retry``, or the next command that alerts).

Nothing here touches the network.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import NotFound
from compliance.store.ledger import record, record_many
from compliance.store.models import Alert, AlertDelivery
from compliance.timeutil import iso

EVENTS = ("occurrence_opened", "verdict_worsened", "gate_refused", "check_missed")
VERDICT_RANK = {"fit": 0, "fit with conditions": 1, "not fit": 2}


def enqueue(session: Session, event: str, cause_key: str, *, model_id: str | None, subject: str,
            payload: dict) -> dict | None:
    """Write one alert to the outbox (same transaction as its cause); an alert with the same
    cause is written once. Recipients: the alert section of the model's plan in force."""
    return (enqueue_many(session, [(event, cause_key, model_id, subject, payload)]) or [None])[0]


def enqueue_many(session: Session, items: list[tuple[str, str, str | None, str, dict]]) -> list[dict]:
    if not items:
        return []
    from compliance.services.plans import plan_in_force

    keys = [k for _, k, *_ in items]
    known = set(session.scalars(select(Alert.cause_key).where(Alert.cause_key.in_(keys))))
    now = session.info["clock"]()
    recipients: dict[str | None, dict] = {}
    rows = []
    for event, key, model_id, subject, payload in items:
        if key in known:
            continue
        known.add(key)
        if model_id not in recipients:
            recipients[model_id] = (plan_in_force(session, model_id, now)["document"].get("alert")
                                    if model_id else None) or {"email": [], "webhook": []}
        rows.append(Alert(event=event, cause_key=key[:400], model_id=model_id, subject=subject[:500],
                          payload=dict(payload, event=event, model_id=model_id), recipients=recipients[model_id]))
    record_many(session, rows)
    if rows:
        ENQUEUED.append(len(rows))
    return [_view(a) for a in rows]


ENQUEUED: list[int] = []  # alerts written by this process (the CLI delivers after its command commits)


def occurrence_alerts(session: Session, occurrences: list[dict], catalog: dict[str, tuple[str, str]]) -> list[dict]:
    """Alerts for newly opened failure-mode occurrences (``check_missed`` for FM-MISSED)."""
    items = []
    for o in occurrences:
        title, severity = catalog.get(o["code"], (o["code"], ""))
        event = "check_missed" if o["code"] == "FM-MISSED" else "occurrence_opened"
        items.append((event, f"occurrence:{o['id']}", o["model_id"],
                      f"[{severity or 'n/a'}] {o['code']} opened on {o['model_id']}: {title}",
                      {"occurrence_id": o["id"], "code": o["code"], "severity": severity, "title": title,
                       "detail": o["detail"], "version_id": o.get("version_id"), "artifact_id": o.get("artifact_id"),
                       "check_id": o.get("check_id"), "detected_at": iso(o["detected_at"])
                       if isinstance(o.get("detected_at"), datetime) else o.get("detected_at")}))
    return enqueue_many(session, items)


def verdict_alerts(session: Session, before: dict[str, dict], after: dict[str, dict], at: datetime) -> list[dict]:
    """Alerts for models whose verdict worsened between two readings (``{model: {verdict, reasons}}``)."""
    items = []
    for mid, now in sorted(after.items()):
        old = (before.get(mid) or {}).get("verdict")
        if old in VERDICT_RANK and now.get("verdict") in VERDICT_RANK and VERDICT_RANK[now["verdict"]] > VERDICT_RANK[old]:
            items.append(("verdict_worsened", f"verdict:{mid}:{old}->{now['verdict']}:{iso(at)}", mid,
                          f"{mid}: verdict worsened from {old} to {now['verdict']}",
                          {"from": old, "to": now["verdict"], "reasons": list(now.get("reasons") or []), "at": iso(at)}))
    return enqueue_many(session, items)


def verdicts_at(session: Session, at: datetime) -> dict[str, dict]:
    """Per-model verdicts at ``at`` (the quarter containing it)."""
    from compliance.analysis.calendar import quarter_of
    from compliance.services.analysis import analyse

    qa = analyse(session, str(quarter_of(at)), at, detail=False)
    return {r["model_id"]: {"verdict": r.get("verdict"), "reasons": r.get("verdict_reasons") or []}
            for r in qa["by_model"]}


# ------------------------------------------------------------------ the outbox, read back
def _view(a: Alert) -> dict:
    return {"id": a.id, "event": a.event, "model_id": a.model_id, "subject": a.subject, "payload": a.payload,
            "recipients": a.recipients, "cause_key": a.cause_key, "recorded_at": iso(a.recorded_at), "actor": a.actor}


def deliveries(session: Session, alert_ids: list[int] | None = None) -> dict[int, list[dict]]:
    q = select(AlertDelivery).order_by(AlertDelivery.alert_id, AlertDelivery.id)
    if alert_ids is not None:
        q = q.where(AlertDelivery.alert_id.in_(alert_ids))
    out: dict[int, list[dict]] = {}
    for d in session.scalars(q):
        out.setdefault(d.alert_id, []).append({
            "id": d.id, "channel": d.channel, "target": d.target, "attempt": d.attempt, "outcome": d.outcome,
            "detail": d.detail, "next_attempt_at": iso(d.next_attempt_at) if d.next_attempt_at else None,
            "at": iso(d.recorded_at)})
    return out


def alert_state(targets: list[tuple[str, str]], attempts: list[dict]) -> str:
    """delivered (every target), failed (some target's last attempt failed), pending (not tried yet)."""
    if not targets:
        return "no channel"
    last = {}
    for d in attempts:
        last[(d["channel"], d["target"])] = d["outcome"]
    if all(last.get(t) == "delivered" for t in targets):
        return "delivered"
    return "failed" if any(last.get(t) == "failed" for t in targets) else "pending"


def list_alerts(session: Session, *, targets_of=None, state: str | None = None, limit: int | None = None) -> list[dict]:
    """Alerts newest first with their delivery attempts and state. ``targets_of(alert) -> [(channel,
    target)]`` resolves recipients against the delivery configuration (None: the plan's names)."""
    alerts = [_view(a) for a in session.scalars(select(Alert).order_by(Alert.id.desc()))]
    tried = deliveries(session, [a["id"] for a in alerts]) if alerts else {}
    out = []
    for a in alerts:
        a["deliveries"] = tried.get(a["id"], [])
        tg = targets_of(a) if targets_of else [("webhook", w) for w in a["recipients"].get("webhook") or []] + (
            [("email", ", ".join(a["recipients"]["email"]))] if a["recipients"].get("email") else [])
        a["targets"] = [list(t) for t in tg]
        a["state"] = alert_state(tg, a["deliveries"])
        if state is None or a["state"] == state:
            out.append(a)
    return out[:limit] if limit else out


def get_alert(session: Session, alert_id: int) -> dict:
    a = session.get(Alert, alert_id)
    if a is None:
        raise NotFound(f"unknown alert {alert_id}")
    return _view(a)


def record_attempt(session: Session, alert_id: int, channel: str, target: str, *, outcome: str, detail: str,
                   next_attempt_at: datetime | None) -> dict:
    n = len([d for d in deliveries(session, [alert_id]).get(alert_id, [])
             if (d["channel"], d["target"]) == (channel, target)])
    d = record(session, AlertDelivery(alert_id=alert_id, channel=channel, target=target[:500], attempt=n + 1,
                                      outcome=outcome, detail=detail[:2000], next_attempt_at=next_attempt_at))
    return {"alert_id": alert_id, "channel": channel, "target": target, "attempt": d.attempt, "outcome": outcome,
            "detail": detail, "next_attempt_at": iso(next_attempt_at) if next_attempt_at else None}
