"""Verification of the store's ledger and of export bundles."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from compliance.store.ledger import verify


def verify_store(session: Session) -> dict:
    r = verify(session)
    return {"ok": r.ok, "entries": r.entries, "head": r.head_hash, "broken_seq": r.seq, "problem": r.problem,
            "summary": r.summary()}


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
