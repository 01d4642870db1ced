"""Verification of the store's ledger and of export bundles (against the store when one is given)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from compliance.store.ledger import verify

NOT_CHECKED_WITHOUT_DB = [
    "that the store recorded this report run with this PDF and every file's SHA-256",
    "that the store recorded this context hash and ledger head for the run",
    "that the ledger excerpt and its start hash are the store's own entries",
    "that the older ledger entries the evidence index cites (cited.jsonl) are the store's own, and the chain between them and the excerpt",
]


def verify_store(session: Session, anchors: list[Path] | None = None) -> dict:
    """Verify the ledger and every evidence row, read in ONE snapshot: on PostgreSQL the
    transaction is REPEATABLE READ (set before its first statement), so rows and ledger entries
    committed by concurrent writers while it reads are all invisible to it, never half visible
    (which would read as tampering). SQLite's read transaction is a snapshot already (WAL)."""
    from compliance.services.signing import verify_anchors, verify_signatures

    snapshot(session)
    r = verify(session)
    out = {"ok": r.ok, "entries": r.entries, "head": r.head_hash, "broken_seq": r.seq, "problem": r.problem,
           "summary": r.summary(), "signatures": [], "anchors": []}
    if not r.ok:
        return out
    sigs = verify_signatures(session)
    checked = verify_anchors(session, list(anchors or []))
    out.update(signatures=sigs, anchors=checked)
    lines = [r.summary()]
    if sigs:
        out.update(ok=False, problem=f"attestation {sigs[0]['attestation']}: {sigs[0]['problem']}")
        lines.append(f"signature BROKEN: attestation {sigs[0]['attestation']}: {sigs[0]['problem']}")
    bad = [a for a in checked if not a["ok"]]
    if bad:
        out.update(ok=False, broken_seq=bad[0]["head_seq"], problem=bad[0]["problem"])
        lines.append(f"anchor BROKEN ({bad[0]['anchor']}): {bad[0]['problem']}")
    elif checked:
        lines.append(f"{len(checked)} anchor(s) verified: the chain still contains every anchored entry")
    out["summary"] = "\n".join(lines)
    return out


def check_pack_against_store(session: Session, rep) -> tuple[str | None, str | None, str]:
    """Compare a verified pack with what the store recorded: (bad file or None, problem or None, detail).

    The store's own chain is verified first; then the pack must match an export run recorded for
    its report id (context hash, ledger head, quarter, as-of, and the SHA-256 of the PDF and of
    every file), and its ledger excerpt must be the store's entries for the quarter up to the as-of,
    starting from the store's entry before them.
    """
    from compliance.report.export import LEDGER_NAME, MANIFEST_NAME
    from compliance.report.verify_pack import quarter_start
    from compliance.services.report import PACK_OUTPUT_PREFIX
    from compliance.store.ledger import entries_between, entry_at, head_as_of
    from compliance.store.models import ReportRun
    from compliance.timeutil import iso, parse_datetime

    store = verify(session)
    if not store.ok:
        return None, f"the store's own ledger does not verify ({store.summary()}); the pack cannot be checked against it", ""
    rid = rep.report_id
    runs = session.scalars(select(ReportRun).where(
        ReportRun.kind == "export",
        or_(ReportRun.id == rid, ReportRun.id.startswith(f"{rid}-", autoescape=True))).order_by(ReportRun.id)).all()
    if not runs:
        return MANIFEST_NAME, f"report {rid} has no export run recorded in this store", ""
    first_problem: tuple[str, str] | None = None
    matched = None
    for run in runs:
        problem = _run_mismatch(run, rep, PACK_OUTPUT_PREFIX, iso)
        if problem is None:
            matched = run
            break
        first_problem = first_problem or problem
    if matched is None:
        return first_problem[0], first_problem[1], ""
    as_of = parse_datetime(rep.as_of)
    stored = entries_between(session, quarter_start(rep.quarter), as_of)
    if [e["hash"] for e in stored] != [e["hash"] for e in rep.ledger]:
        for i, (a, b) in enumerate(zip(stored, rep.ledger)):
            if a["hash"] != b["hash"]:
                return LEDGER_NAME, f"line {i + 1} (entry {b['seq']}) is not the store's entry {a['seq']}", ""
        return LEDGER_NAME, (f"the excerpt has {len(rep.ledger)} entries; the store has {len(stored)} "
                             f"for {rep.quarter} up to the as-of"), ""
    start_seq = (stored[0]["seq"] - 1) if stored else head_as_of(session, as_of)[0]
    start = entry_at(session, start_seq)
    if (start["hash"] if start else "0" * 64) != rep.ledger_start_hash:
        return MANIFEST_NAME, "ledger_start_hash is not the store's entry before the excerpt", ""
    if head_as_of(session, as_of)[1] != rep.ledger_head_hash:
        return MANIFEST_NAME, "ledger_head_hash is not the store's head as of the pack's as-of", ""
    if rep.cited:
        from compliance.report.export import CITED_NAME
        from compliance.store.ledger import entries_at

        mine = {e["seq"]: e["hash"] for e in entries_at(session, [e["seq"] for e in rep.cited])}
        for e in rep.cited:
            if mine.get(e["seq"]) != e["hash"]:
                return CITED_NAME, f"entry {e['seq']} is not the store's entry {e['seq']}", ""
    detail = (f"matches report run {matched.id} recorded in the store (PDF and every file's SHA-256, context hash, "
              f"ledger head); the excerpt and the cited older entries are the store's entries; store ledger verified ({store.entries} entries)")
    return None, None, detail


def _run_mismatch(run, rep, prefix: str, iso) -> tuple[str, str] | None:
    from compliance.report.export import CONTEXT_NAME, MANIFEST_NAME

    where = f"report run {run.id}"
    if run.context_sha256 != rep.context_hash:
        return CONTEXT_NAME, f"context hash differs from the one recorded in {where}"
    if run.ledger_head != rep.ledger_head_hash:
        return MANIFEST_NAME, f"ledger head differs from the one recorded in {where}"
    if run.quarter != rep.quarter or iso(run.as_of) != rep.as_of:
        return MANIFEST_NAME, f"quarter or as-of differs from the one recorded in {where}"
    outputs = run.outputs if isinstance(run.outputs, dict) else {}
    members = {k[len(prefix):]: v for k, v in outputs.items() if isinstance(k, str) and k.startswith(prefix)}
    if members:
        for name in sorted(set(members) | set(rep.file_sha256), key=lambda n: (n == MANIFEST_NAME, n)):
            if members.get(name) != rep.file_sha256.get(name):
                return name, f"SHA-256 differs from the one recorded in {where}"
        return None
    # a run recorded before the pack's files were recorded one by one: the zip's own SHA-256
    from compliance.hashing import sha256_file

    if sha256_file(rep.path) not in outputs.values():
        return rep.path, f"the zip's SHA-256 is not the one recorded in {where}"
    return None


def snapshot(session: Session) -> None:
    """Make the session's transaction one consistent snapshot (call before its first statement)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def verify_pack_cli(pack: Path, db_url: str | None) -> dict:
    from compliance.report.verify_pack import verify_pack

    rep = verify_pack(pack)
    out = {k: getattr(rep, k) for k in ("ok", "path", "files_checked", "report_id", "quarter", "as_of", "context_hash",
                                         "ledger_head_hash", "ledger_start_hash", "ledger_entries", "first_bad",
                                         "problems")}
    if not rep.ok:
        out["summary"] = f"pack BROKEN: {rep.problems[0] if rep.problems else 'unknown problem'}"
        return out
    from compliance.services.signing import verify_pack_signatures

    signed = verify_pack_signatures(pack, rep.context_hash)
    if signed:
        out.update(ok=False, problems=signed, summary=f"pack BROKEN: {signed[0]}")
        return out
    base = (f"pack OK: {rep.files_checked} files verified, {rep.ledger_entries} ledger entries re-hashed and chained "
            f"from {rep.ledger_start_hash[:16]}… to head {rep.ledger_head_hash}, report {rep.report_id}, "
            f"context {rep.context_hash}")
    if not db_url:
        out["not_checked"] = list(NOT_CHECKED_WITHOUT_DB)
        out["summary"] = (base + ". Not checked without --db: " + "; ".join(NOT_CHECKED_WITHOUT_DB)
                          + " (compare the head and context hash with values obtained independently)")
        return out
    from compliance.store.engine import session_scope

    with session_scope(db_url, readonly=True) as s:
        bad, problem, detail = check_pack_against_store(s, rep)
    if problem is not None:
        rep.fail(bad or str(pack), problem)
        out.update(ok=False, first_bad=rep.first_bad, problems=rep.problems,
                   summary=f"pack BROKEN against the store: {rep.problems[0]}")
        return out
    out["not_checked"] = []
    out["summary"] = f"{base}; {detail}"
    return out
