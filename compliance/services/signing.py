"""Signing keys, signed attestations and ledger anchors (DESIGN §7): the use cases.

Public keys are registered (and revoked) through the ledger by an admin; private keys stay in
their owners' files. ``verify_signatures`` checks every signed attestation against the key
registered for its reviewer at the time it was recorded; ``verify_anchors`` checks the chain
against anchor files kept outside the database.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from compliance.errors import Conflict, NotFound
from compliance.identity import anchors as anchor_doc
from compliance.identity import keys
from compliance.services.people import get_person, me, require_admin
from compliance.services.registry import plain
from compliance.store.ledger import entry_at, locked_head, record
from compliance.store.models import Anchor, Attestation, SigningKey
from compliance.timeutil import iso


# ---------------------------------------------------------------- keys
def register_key(session: Session, person_id: str | None, public_file: Path) -> dict:
    require_admin(session, "register keys")
    if person_id is not None:
        get_person(session, person_id)
    pub = keys.read_public(public_file)
    fp = keys.fingerprint(pub)
    if session.scalars(select(SigningKey).where(SigningKey.fingerprint == fp).limit(1)).first() is not None:
        raise Conflict(f"key {fp} is already registered (a key is registered once)")
    return plain(record(session, SigningKey(fingerprint=fp, person_id=person_id, public_key=pub, action="register")))


def revoke_key(session: Session, fingerprint: str) -> dict:
    require_admin(session, "revoke keys")
    events = _key_events(session, fingerprint)
    if not events:
        raise NotFound(f"unknown key {fingerprint}")
    if any(e.action == "revoke" for e in events):
        raise Conflict(f"key {fingerprint} is already revoked")
    reg = events[0]
    return plain(record(session, SigningKey(fingerprint=fingerprint, person_id=reg.person_id, public_key=reg.public_key,
                                            action="revoke")))


def _key_events(session: Session, fingerprint: str) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).where(SigningKey.fingerprint == fingerprint).order_by(SigningKey.id)))


def list_keys(session: Session) -> list[dict]:
    out: dict[str, dict] = {}
    for k in session.scalars(select(SigningKey).order_by(SigningKey.id)):
        row = out.setdefault(k.fingerprint, dict(fingerprint=k.fingerprint, person_id=k.person_id, state="registered",
                                                 registered_at=iso(k.recorded_at), revoked_at=None))
        if k.action == "revoke":
            row.update(state="revoked", revoked_at=iso(k.recorded_at))
    return list(out.values())


def key_problem(session: Session, fingerprint: str, person_id: str | None, at: datetime) -> str | None:
    """Why a signature by ``fingerprint`` for ``person_id`` at ``at`` is not acceptable, or None."""
    events = _key_events(session, fingerprint)
    if not events:
        return f"key {fingerprint[:16]}… is not registered"
    reg = events[0]
    if reg.person_id != person_id:
        return f"key {fingerprint[:16]}… is registered for {reg.person_id or 'the organisation'}, not {person_id}"
    if reg.recorded_at > at:
        return f"key {fingerprint[:16]}… was registered after the signature"
    revoked = [e for e in events if e.action == "revoke"]
    if revoked and revoked[0].recorded_at <= at:
        return f"key {fingerprint[:16]}… was revoked at {iso(revoked[0].recorded_at)}, before the signature"
    return None


def signed_attestation(session: Session, key_file: Path, passphrase: str, fields: dict) -> dict:
    """Sign ``fields`` (keys.attestation_fields) with the private key; the key must be registered
    for the acting person and not revoked. Returns the signature columns of the attestation."""
    key = keys.load_private(key_file, passphrase)
    fp = keys.fingerprint(keys.public_b64(key.public_key()))
    problem = key_problem(session, fp, me(session), session.info["clock"]())
    if problem:
        raise Conflict(f"cannot sign: {problem}")
    return dict(key_fingerprint=fp, signature=keys.sign(key, fields))


def verify_signatures(session: Session) -> list[dict]:
    """Every signed attestation: its signature over its fields, with the key registered for its
    reviewer and in force when it was recorded. Returns the problems (attestation id, problem)."""
    problems = []
    public = {k.fingerprint: k.public_key for k in session.scalars(select(SigningKey))}
    for a in session.scalars(select(Attestation).where(Attestation.signature.is_not(None)).order_by(Attestation.id)):
        why = key_problem(session, a.key_fingerprint or "", a.reviewer, a.recorded_at)
        if why is None:
            fields = keys.attestation_fields(a.report_run_id, a.context_sha256 or "", a.decision, a.comment, a.signed_at or "")
            if not keys.verify(public[a.key_fingerprint], fields, a.signature):
                why = "the signature does not match the attestation (tampered, or another key)"
        if why:
            problems.append({"attestation": a.id, "problem": why})
    return problems


# ---------------------------------------------------------------- anchors
def make_anchor(session: Session, key_file: Path, passphrase: str, out: Path, *, organisation: str = "") -> dict:
    """Sign the ledger head (under the append lock) with the organisation's registered key; the
    anchor is written to ``out`` when the transaction commits and recorded in the ledger."""
    from compliance.services.report import publish_on_commit

    key = keys.load_private(key_file, passphrase)
    fp = keys.fingerprint(keys.public_b64(key.public_key()))
    problem = key_problem(session, fp, None, session.info["clock"]())
    if problem:
        raise Conflict(f"an anchor is signed with the organisation's registered key: {problem}")
    seq, h = locked_head(session)
    head = entry_at(session, seq)
    doc = anchor_doc.make(key, organisation=organisation, head_seq=seq, head_hash=h,
                          head_recorded_at=head["recorded_at"] if head else "", anchored_at=iso(session.info["clock"]()))
    record(session, Anchor(head_seq=seq, head_hash=h, document=doc))
    publish_on_commit(session, Path(out), anchor_doc.dumps(doc).encode())
    return doc


def verify_anchors(session: Session, files: list[Path]) -> list[dict]:
    """Each anchor: signed by the key it names, that key registered as the organisation's (when
    the store has one), and the chain's entry ``head_seq`` still has ``head_hash``."""
    org = {k["fingerprint"] for k in list_keys(session) if k["person_id"] is None}
    out = []
    for f in files:
        doc = anchor_doc.load(f)
        problem = None
        if not anchor_doc.signature_ok(doc):
            problem = "the anchor's signature does not verify (edited anchor)"
        elif org and doc["key_fingerprint"] not in org:
            problem = f"the anchor is signed by key {doc['key_fingerprint'][:16]}…, not an organisation key of this store"
        else:
            e = entry_at(session, doc["head_seq"])
            if e is None:
                problem = f"the chain has no entry {doc['head_seq']} (truncated after the anchor)"
            elif e["hash"] != doc["head_hash"]:
                problem = (f"entry {doc['head_seq']} no longer has the anchored hash: the chain was rewritten at or "
                           f"before entry {doc['head_seq']} and re-hashed")
        out.append({"anchor": str(f), "head_seq": doc["head_seq"], "ok": problem is None, "problem": problem,
                    "key_fingerprint": doc["key_fingerprint"]})
    return out


def anchors_up_to(session: Session, seq: int) -> list[dict]:
    """The anchor documents recorded at or before ledger entry ``seq`` (for an export)."""
    return [a.document for a in session.scalars(select(Anchor).where(Anchor.head_seq <= seq).order_by(Anchor.id))]


# ---------------------------------------------------------------- in the regulator export
SIGNATURES_TABLE, ANCHORS_TABLE = "signatures", "anchors"
_SIG_COLS = ("report_id", "context_sha256", "decision", "comment", "signed_at", "reviewer", "key_fingerprint",
             "public_key", "signature")


def export_tables(session: Session, context_hash: str, head_seq: int) -> dict[str, list[dict]]:
    """The export carries the signed attestations on its context hash (with the public keys, so
    they verify without the store) and the anchors up to its head (DESIGN §8); absent when none."""
    public = {k.fingerprint: k.public_key for k in session.scalars(select(SigningKey))}
    sigs = [dict(report_id=a.report_run_id, context_sha256=a.context_sha256, decision=a.decision, comment=a.comment or "",
                 signed_at=a.signed_at, reviewer=a.reviewer, key_fingerprint=a.key_fingerprint,
                 public_key=public.get(a.key_fingerprint, ""), signature=a.signature)
            for a in session.scalars(select(Attestation).where(Attestation.context_sha256 == context_hash,
                                                               Attestation.signature.is_not(None)).order_by(Attestation.id))]
    anchors = [{k: d[k] for k in anchor_doc.FIELDS + ("signature",)} for d in anchors_up_to(session, head_seq)]
    return {name: rows for name, rows in ((SIGNATURES_TABLE, sigs), (ANCHORS_TABLE, anchors)) if rows}


def verify_pack_signatures(pack: Path, context_hash: str) -> list[str]:
    """Check the signatures and anchors an export carries (after the pack itself verified): each
    signature over its fields with the public key it names, on this pack's context hash; each
    anchor's signature, and its anchored entry's hash when the ledger excerpt contains it."""
    import csv
    import io
    import zipfile

    problems: list[str] = []
    with zipfile.ZipFile(pack) as z:
        names = set(z.namelist())

        def rows(name: str) -> list[dict]:
            path = f"tables/{name}.csv"
            return list(csv.DictReader(io.StringIO(z.read(path).decode("utf-8")))) if path in names else []

        sigs, anchors = rows(SIGNATURES_TABLE), rows(ANCHORS_TABLE)
        ledger = {json.loads(line)["seq"]: json.loads(line)["hash"]
                  for line in z.read("ledger.jsonl").decode("utf-8").splitlines() if line.strip()} if anchors else {}
    for i, r in enumerate(sigs, 1):
        fields = keys.attestation_fields(r["report_id"], r["context_sha256"], r["decision"], r["comment"], r["signed_at"])
        if r["context_sha256"] != context_hash:
            problems.append(f"signatures.csv line {i}: signed another context hash")
        elif not r["public_key"] or keys.fingerprint(r["public_key"]) != r["key_fingerprint"]:
            problems.append(f"signatures.csv line {i}: the public key is not the one fingerprinted")
        elif not keys.verify(r["public_key"], fields, r["signature"]):
            problems.append(f"signatures.csv line {i}: the signature of {r['reviewer']} does not verify")
    for i, r in enumerate(anchors, 1):
        doc = dict(r, head_seq=int(r["head_seq"]))
        if not anchor_doc.signature_ok(doc):
            problems.append(f"anchors.csv line {i}: the anchor's signature does not verify")
        elif doc["head_seq"] in ledger and ledger[doc["head_seq"]] != doc["head_hash"]:
            problems.append(f"anchors.csv line {i}: ledger entry {doc['head_seq']} is not the anchored one")
    return problems
