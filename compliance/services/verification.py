"""Verification of the store's ledger and of export bundles."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from compliance.store.ledger import verify


def verify_store(session: Session) -> dict:
    """Verify the ledger and every evidence row, read in ONE snapshot: on PostgreSQL the
    transaction is REPEATABLE READ (set before its first statement), so rows and ledger entries
    committed by concurrent writers while it reads are all invisible to it, never half visible
    (which would read as tampering). SQLite's read transaction is a snapshot already (WAL)."""
    snapshot(session)
    r = verify(session)
    return {"ok": r.ok, "entries": r.entries, "head": r.head_hash, "broken_seq": r.seq, "problem": r.problem,
            "summary": r.summary()}


def snapshot(session: Session) -> None:
    """Make the session's transaction one consistent snapshot (call before its first statement)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def verify_pack_cli(pack: Path, db_url: str | None) -> dict:
    from compliance.report.verify_pack import verify_pack

    import dataclasses

    rep = verify_pack(pack)
    out = dataclasses.asdict(rep)
    ok = bool(rep.ok)
    summary = (f"pack OK: {rep.files_checked} files verified, report {rep.report_id}, context {rep.context_hash}"
               if ok else f"pack BROKEN: {rep.first_bad}: {rep.problems[0] if rep.problems else 'unknown problem'}")
    if ok and db_url:
        from compliance.store.engine import session_scope
        from compliance.store.ledger import contains_hash

        head = rep.ledger_head_hash
        with session_scope(db_url, readonly=True) as s:
            if not head or not contains_hash(s, head):
                ok = False
                summary = f"pack BROKEN: its ledger head {head} is not an entry of this store's chain"
            else:
                summary += "; ledger head found in the store's chain"
    out.update(ok=ok, summary=summary)
    return out
