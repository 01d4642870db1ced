"""`compliance report`, `compliance export`, `compliance report-list`, `compliance demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compliance.cli.common import AsOfOpt, JsonOpt, QuarterOpt, console, emit, fmt_pct, session, table

OrgOpt = Annotated[str | None, typer.Option("--organisation", envvar="COMPLIANCE_ORGANISATION",
                                            help="Organisation named on the cover.")]


def _progress():
    from rich.progress import Progress

    return Progress(console=console(), transient=True)


def report(
    ctx: typer.Context,
    quarter: QuarterOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Per-model MRM review instead of the portfolio pack.")] = None,
    as_of: AsOfOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="pdf, html or docx (Word; needs the docx extra).")] = "pdf",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: audit-pack-QUARTER.pdf / review-MODEL-QUARTER.pdf).")] = None,
    organisation: OrgOpt = None,
    sign_pdf: Annotated[Path | None, typer.Option(
        "--sign-pdf", help="PKCS#12 file (.p12/.pfx) of the signer: adds a PAdES signature to the PDF. Passphrase: "
                           "COMPLIANCE_PDF_PASSPHRASE, a prompt, or the first line of standard input (never on the "
                           "command line). Needs the sign extra.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Render the quarterly audit pack (or a per-model review) and record the report run.

    The same store, quarter, as-of and tool version always give byte-identical output (unsigned:
    a PAdES signature carries its signing time).

    \b
    Examples:
      compliance report --quarter 2026Q3
      compliance report --quarter 2026Q3 --model retail-pd --format html --out review.html
      compliance report --quarter 2026Q2 --as-of 2026-07-05T00:00:00Z
      COMPLIANCE_PDF_PASSPHRASE=... compliance report --quarter 2026Q3 --sign-pdf mrm-signing.p12
    """
    from compliance.services.dashboard import resolve_quarter_as_of
    from compliance.services.report import render_report
    from compliance.timeutil import parse_datetime

    q, t = resolve_quarter_as_of(quarter, parse_datetime(as_of, what="--as-of") if as_of else None)
    target = out or Path(f"{'review-' + model + '-' if model else 'audit-pack-'}{q}.{fmt}")
    signing = {"sign_pdf": sign_pdf, "passphrase": _pdf_passphrase()} if sign_pdf is not None else {}
    with session(ctx) as s:
        if as_json:
            r = render_report(s, q, t, target, model_id=model, fmt=fmt, organisation=organisation, **signing)
        else:
            with _progress() as bar:
                task = bar.add_task("rendering", total=1.0)
                r = render_report(s, q, t, target, model_id=model, fmt=fmt, organisation=organisation, **signing,
                                  progress=lambda stage, f: bar.update(task, completed=f, description=stage))
    emit(r, as_json, lambda r: typer.echo(
        f"wrote {r['path']} (report {r['report_id']}, sha256 {r['sha256'][:16]}…): coverage {fmt_pct(r['coverage'])}, "
        f"debt {r['debt']} slot-days (weighted {r['weighted_debt']})"
        + (f"; PAdES-signed by {r['pades']['subject']} (certificate sha256 {r['pades']['certificate_sha256'][:16]}…)"
           if r.get("pades") else "")))


def _pdf_passphrase() -> str:
    """The PKCS#12 passphrase: COMPLIANCE_PDF_PASSPHRASE; else a hidden prompt on a terminal, or
    the first line of standard input when it is not one (empty for an unencrypted file)."""
    import sys

    from compliance.errors import UsageError
    from compliance.identity.keys import passphrase_from_env
    from compliance.report.pades import PASSPHRASE_ENV

    env = passphrase_from_env(PASSPHRASE_ENV)
    if env:
        return env
    if sys.stdin is not None and sys.stdin.isatty():
        return typer.prompt("PKCS#12 passphrase", hide_input=True, default="", show_default=False, err=True)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise UsageError(f"--sign-pdf needs the PKCS#12 passphrase: set {PASSPHRASE_ENV}, run on a terminal, "
                         "or give it on standard input")
    return line.rstrip("\r\n")


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Zip file to write.")],
    quarter: QuarterOpt = None,
    as_of: AsOfOpt = None,
    organisation: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the regulator bundle: PDF/A-3 (context JSON attached), CSV per table, context JSON,
    the quarter's ledger excerpt, the older ledger entries the evidence index cites (cited.jsonl)
    and a manifest with every file's SHA-256.

    Example: compliance export --quarter 2026Q3 --out pack.zip   (then: compliance verify --pack pack.zip)
    """
    from compliance.services.dashboard import resolve_quarter_as_of
    from compliance.services.report import export_pack
    from compliance.timeutil import parse_datetime

    q, t = resolve_quarter_as_of(quarter, parse_datetime(as_of, what="--as-of") if as_of else None)
    with session(ctx) as s:
        r = export_pack(s, q, t, out, organisation=organisation)
    emit(r, as_json, lambda r: typer.echo(f"wrote {r['path']} (report {r['report_id']}, {len(r['manifest'].get('files', {}))} files, "
                                          f"sha256 {r['sha256'][:16]}…)"))


def report_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List recorded report runs (ids to sign off).  Example: compliance reports"""
    from compliance.services.report import list_reports

    with session(ctx, readonly=True) as s:
        rows = list_reports(s)
    emit(rows, as_json, lambda rs: table("Report runs", ["id", "kind", "quarter", "model", "as of", "context sha256"],
                                          [[r["id"], r["kind"], r["quarter"], r["model_id"] or "portfolio", r["as_of"][:19],
                                            r["context_sha256"][:16]] for r in rs]))


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to put the bank, the store and the packs.")] = Path("compliance-demo"),
    fresh: Annotated[bool, typer.Option("--fresh", help="Replay the year again even if the store exists.")] = False,
) -> None:
    """Build the sample bank, replay its year through the real checks, and render the 2026Q3
    audit pack, a per-model review and the regulator export.

    Example: compliance demo --dir /tmp/demo
    """
    from compliance.services.demo import headline_text, run_demo

    r = run_demo(directory, fresh=fresh, say=typer.echo)
    typer.echo("")
    typer.echo(f"audit pack:       {r.pack}")
    typer.echo(f"model review:     {r.review}")
    typer.echo(f"regulator export: {r.export}")
    typer.echo(f"store:            {r.db_url}")
    typer.echo(headline_text(r))
