"""Policy, failure modes, findings, sign-off and the status dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import past, when, AsOfOpt, JsonOpt, QuarterOpt, console, emit, fmt_pct, session, settings, status_markup, table, verdict_markup

policy_app = typer.Typer(help="The policy in force (thresholds, required artifacts per tier); versioned.", no_args_is_help=True)
fm_app = typer.Typer(help="Failure-mode register: detect, list, update.", no_args_is_help=True)
finding_app = typer.Typer(help="MRM findings and their status events.", no_args_is_help=True)



@policy_app.command("show")
def policy_show(ctx: typer.Context, at: Annotated[str | None, typer.Option(help="The policy in force at this time.")] = None,
                as_json: JsonOpt = False) -> None:
    """Show the policy in force (now or at --at).  Example: compliance policy show --json"""
    import yaml

    from compliance.services.policy import policy_record_at

    with session(ctx, readonly=True) as s:
        p = policy_record_at(s, when(at))
    emit(p, as_json, lambda p: typer.echo(f"# policy version {p['version']} ({p['comment'] or ''})\n"
                                          + yaml.safe_dump(p["document"], sort_keys=True)))


@policy_app.command("set")
def policy_set(ctx: typer.Context, file: Annotated[Path, typer.Option("--file", help="YAML with the keys to change.")],
               comment: Annotated[str | None, typer.Option(help="Why the policy changes.")] = None,
               as_json: JsonOpt = False) -> None:
    """Record a new policy version (the old one stays and applies to the past).

    Example: compliance policy set --file policy.yaml --comment "tighter EV floor for tier 1"
    """
    from compliance.services.policy import set_policy_file

    with session(ctx) as s:
        p = set_policy_file(s, file, comment=comment)
    emit(p, as_json, lambda p: typer.echo(f"policy version {p['version']} recorded"))


@fm_app.command("detect")
def fm_detect(ctx: typer.Context, at: Annotated[str | None, typer.Option(help="Detect as of this time (default now).")] = None,
              as_json: JsonOpt = False) -> None:
    """Open occurrences for every failure mode the evidence reveals (idempotent).

    Example: compliance failure-modes detect
    """
    from compliance.services.governance import detect_failure_modes

    with session(ctx) as s:
        opened = detect_failure_modes(s, when(at))
    emit(opened, as_json, lambda rs: (table("Opened", ["id", "code", "model", "artifact", "detail"],
                                            [[r["id"], r["code"], r["model_id"], r["artifact_id"], r["detail"]] for r in rs]),
                                      typer.echo(f"{len(rs)} occurrence(s) opened")))


@fm_app.command("list")
def fm_list(ctx: typer.Context, open_only: Annotated[bool, typer.Option("--open", help="Only open occurrences.")] = False,
            as_json: JsonOpt = False) -> None:
    """List failure-mode occurrences with their current status.  Example: compliance failure-modes list --open"""
    from compliance.services.governance import list_failure_modes

    with session(ctx, readonly=True) as s:
        rows = list_failure_modes(s, open_only=open_only)
    emit(rows, as_json, lambda rs: table("Failure modes", ["id", "code", "severity", "model", "artifact", "status", "detail"],
                                          [[r["id"], r["code"], r["severity"], r["model_id"], r["artifact_id"], r["status"], r["detail"]]
                                           for r in rs], status_col="status"))


@fm_app.command("catalog")
def fm_catalog(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The catalog of known failure modes (DESIGN §6).  Example: compliance failure-modes catalog --json"""
    from compliance.services.governance import catalog

    with session(ctx, readonly=True) as s:
        rows = catalog(s)
    emit(rows, as_json, lambda rs: table("Catalog", ["code", "severity", "title", "detection rule"],
                                          [[r["code"], r["severity"], r["title"], r["detection_rule"]] for r in rs]))


@fm_app.command("update")
def fm_update(ctx: typer.Context, occurrence: int,
              status: Annotated[str, typer.Option(help="mitigated | accepted | closed")],
              rationale: Annotated[str, typer.Option(help="Why (required).")],
              as_json: JsonOpt = False) -> None:
    """Record a status change of an occurrence.

    Example: compliance failure-modes update 7 --status accepted --rationale "compensating control: manual review"
    """
    from compliance.services.governance import update_failure_mode

    with session(ctx) as s:
        ev = update_failure_mode(s, occurrence, status=status, rationale=rationale)
    emit(ev, as_json, lambda e: typer.echo(f"occurrence {occurrence} -> {e['status']}"))


@fm_app.command("accept")
def fm_accept(ctx: typer.Context, occurrence: int,
              rationale: Annotated[str, typer.Option(help="Why the risk is accepted (required).")],
              as_json: JsonOpt = False) -> None:
    """Accept a failure-mode occurrence (a validator; not the model's owner or developer).

    Example: compliance failure-modes accept 7 --rationale "manual review of every decline until retrain"
    """
    from compliance.services.acceptance import accept_occurrence

    with session(ctx) as s:
        a = accept_occurrence(s, occurrence, rationale=rationale)
    emit(a, as_json, lambda a: typer.echo(f"occurrence {occurrence} accepted by {a['actor']} (acceptance {a['id']})"))


@finding_app.command("add")
def finding_add(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Model the finding is about.")],
    severity: Annotated[str, typer.Option(help="low | medium | high | critical")],
    title: Annotated[str, typer.Option(help="Short title.")],
    owner: Annotated[str, typer.Option(help="Who must remediate.")],
    due: Annotated[str, typer.Option(help="Due date YYYY-MM-DD.")],
    description: Annotated[str | None, typer.Option(help="Details.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Raise an MRM finding.

    Example: compliance finding add --model retail-pd --severity high --title "SAE stale after v3" --owner alice --due 2026-10-31
    """
    from compliance.services.governance import add_finding
    from compliance.timeutil import parse_date

    with session(ctx) as s:
        f = add_finding(s, model_id=model, severity=severity, title=title, owner=owner,
                        due=parse_date(due, what="--due"), description=description)
    emit(f, as_json, lambda f: typer.echo(f"finding {f['id']} raised on {f['model_id']}"))


@finding_app.command("list")
def finding_list(ctx: typer.Context, open_only: Annotated[bool, typer.Option("--open", help="Only open findings.")] = False,
                 overdue: Annotated[bool, typer.Option("--overdue", help="Only open findings past their due date.")] = False,
                 as_json: JsonOpt = False) -> None:
    """List findings.  Example: compliance finding list --overdue"""
    from compliance.services.governance import list_findings
    from compliance.timeutil import utcnow

    with session(ctx, readonly=True) as s:
        rows = list_findings(s, open_only=open_only, overdue_at=utcnow().date() if overdue else None)
    emit(rows, as_json, lambda rs: table("Findings", ["id", "model", "severity", "title", "owner", "due", "status"],
                                          [[r["id"], r["model_id"], r["severity"], r["title"], r["owner"], r["due_date"], r["status"]]
                                           for r in rs]))


@finding_app.command("update")
def finding_update(ctx: typer.Context, finding_id: int,
                   status: Annotated[str, typer.Option(help="open | in_progress | remediated | accepted | closed")],
                   note: Annotated[str, typer.Option(help="What changed (required).")],
                   as_json: JsonOpt = False) -> None:
    """Record a status change of a finding.  Example: compliance finding update 3 --status remediated --note "SAE retrained"."""
    from compliance.services.governance import update_finding

    with session(ctx) as s:
        ev = update_finding(s, finding_id, status=status, note=note)
    emit(ev, as_json, lambda e: typer.echo(f"finding {finding_id} -> {e['status']}"))


def signoff(ctx: typer.Context, report_id: str,
            decision: Annotated[str, typer.Option(help="approve | approve_with_conditions | reject")],
            role: Annotated[str | None, typer.Option(help="validator or approver (default: the role you hold).")] = None,
            comment: Annotated[str | None, typer.Option(help="Comment / conditions.")] = None,
            key: Annotated[Path | None, typer.Option("--key", help="Your private key file: sign (report id, context "
                                                     "hash, decision, comment, time). Passphrase: "
                                                     "COMPLIANCE_KEY_PASSPHRASE or a prompt.")] = None,
            as_json: JsonOpt = False) -> None:
    """Sign off the evidence of a report run: you need the validator or approver role and may not
    own or develop a model in its scope; the sign-off is bound to the run's context hash.

    Example: compliance signoff RPT-2026Q3-1a2b3c4d --decision approve_with_conditions --comment "retrain fraud SAE by Q4" --key carol.key
    """
    from compliance.services.governance import signoff as do

    passphrase = None
    if key is not None:
        from compliance.cli.identity_cmds import read_passphrase

        passphrase = read_passphrase(False)
    with session(ctx) as s:
        a = do(s, report_id, decision=decision, role=role, comment=comment, key=key, passphrase=passphrase)
    emit(a, as_json, lambda a: typer.echo(f"{a['reviewer']} ({a['role']}) recorded {a['decision']} on {report_id}"
                                          + (f", signed with key {a['key_fingerprint'][:16]}…" if a["key_fingerprint"] else "")))


def status(ctx: typer.Context, quarter: QuarterOpt = None, as_of: AsOfOpt = None, as_json: JsonOpt = False) -> None:
    """The dashboard a validator opens first: verdicts, coverage of in-scope models, debt incurred and
    outstanding, pending slots, due checks, open failure modes and findings.

    Example: compliance status --quarter 2026Q3
    """
    from compliance.store.columnar_child import prestarted
    from compliance.timeutil import utcnow

    t = past(as_of, "--as-of") if as_of else utcnow()
    # the checks' reader process starts first, and reads while the analysis is imported
    with prestarted(settings(ctx).db_url):
        from compliance.store.analysis_reads import started_fidelity_read

        with session(ctx, readonly=True) as s, started_fidelity_read(s, t) as started:
            from compliance.services.dashboard import dashboard

            d = dashboard(s, quarter=quarter, as_of=t, started=started)
    emit(d, as_json, _show_dashboard)


def _show_dashboard(d: dict) -> None:
    con = console()
    p = d["portfolio"]
    n_req = p.get("models_not_required") or 0
    con.print(f"[bold]{d['quarter']}[/] as of {d['as_of']}  —  coverage [bold]{fmt_pct(p.get('coverage'))}[/] "
              f"of {p.get('models_in_scope')} in-scope model(s) (prev {fmt_pct(p.get('coverage_prev'))})"
              + (f"; {n_req} not required" if n_req else ""))
    con.print(f"debt incurred [bold]{p.get('debt')}[/] slot-days (weighted {p.get('weighted_debt')}, "
              f"prev {p.get('debt_prev')}); debt outstanding [bold]{p.get('debt_outstanding')}[/] slot-days "
              f"(weighted {p.get('weighted_debt_outstanding')}, prev {p.get('debt_outstanding_prev')}); "
              f"pending {p.get('pending_slot_days')} slot-days")
    verdicts = p.get("verdicts") or {}
    con.print("verdicts: " + ", ".join(f"{k} {v}" for k, v in verdicts.items() if v))
    table("Coverage by tier", ["tier", "models", "coverage", "debt", "weighted debt"],
          [[t["tier"], "not required" if t.get("no_requirements") else t.get("models_in_scope", t.get("n_models")),
            fmt_pct(t.get("coverage")), t.get("debt"), t.get("weighted_debt")]
           for t in d["by_tier"]])
    table("Models", ["model", "tier", "verdict", "coverage", "fresh", "pending", "stale", "broken", "missing",
                     "debt", "outstanding"],
          [[m["model_id"], m["tier"], verdict_markup(m.get("verdict")),
            "not required" if m.get("no_requirements") else fmt_pct(m.get("coverage")) if m.get("deployed")
            else "not deployed",
            m.get("fresh_slot_days"), m.get("pending_slot_days"), m.get("stale_slot_days"), m.get("broken_slot_days"),
            m.get("missing_slot_days"), m.get("debt"), m.get("debt_outstanding")] for m in d["by_model"]])
    reasons = [[m["model_id"], r] for m in d["by_model"] if m.get("verdict") in ("not fit", "fit with conditions")
               for r in (m.get("verdict_reasons") or [])]
    table(f"Verdict reasons ({len(reasons)})", ["model", "reason"], reasons)
    table(f"Due checks ({len(d['due'])})", ["artifact", "model", "version"],
          [[x["artifact_id"], x["model_id"], x["version"]] for x in d["due"]])
    table(f"Open failure modes ({len(d['failure_modes'])})", ["id", "code", "model", "artifact", "detail"],
          [[f["id"], f["code"], f["model_id"], f["artifact_id"], f["detail"]] for f in d["failure_modes"]])
    table(f"Open findings ({len(d['findings'])})", ["id", "model", "severity", "title", "due", "status"],
          [[f["id"], f["model_id"], f["severity"], f["title"], f["due_date"], status_markup(f["status"])] for f in d["findings"]])
    dq = d.get("data_quality") or {}
    if dq.get("findings"):
        table(f"Data quality: records the figures leave out ({len(dq['findings'])})", ["record", "problem", "handling"],
              [[f["record"], f["problem"], f["handling"] + (f" (+{f['dependents']} dependent)" if f["dependents"] else "")]
               for f in dq["findings"]])
    if dq.get("corrections_applied"):
        con.print(f"{len(dq['corrections_applied'])} voided or superseded record(s) left out (see `compliance corrections`)")
