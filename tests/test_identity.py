"""Identity, roles, segregation of duties, signed sign-offs and anchors (DESIGN §7, issue 14).

Every test runs on SQLite (identity = the OS user, which the tests set through LOGNAME) and on a
real PostgreSQL with several login roles (identity = session_user, enforced by triggers).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from compliance.hashing import canonical_json, ledger_entry_hash
from compliance.store.engine import session_scope
from compliance.store.ledger import record
from compliance.store.models import Attestation, LedgerEntry
from compliance.timeutil import iso, utcnow
from tests.conftest import login_url
from tests.helpers import small_manifest

PASS = "correct horse battery"


@pytest.fixture
def bank(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COMPLIANCE_KEY_PASSPHRASE", PASS)
    assert cli("import", small_manifest(tmp_path / "bank"), actor="ingest")[0] == 0  # ingest develops both models
    cli.grant("carol", "validator")
    cli.grant("dave", "approver")
    return cli


def _ledger(url: str) -> list[tuple]:
    with session_scope(url, readonly=True) as s:
        return [(e.seq, e.actor, e.action, e.entity_type) for e in s.scalars(select(LedgerEntry).order_by(LedgerEntry.seq))]


def _render(cli, tmp_path: Path, name: str, as_of: str | None = None) -> dict:
    as_of = as_of or iso(utcnow())
    code, out, err = cli("report", "--quarter", "2026Q1", "--format", "html", "--out", tmp_path / name, "--as-of", as_of,
                         "--json")
    assert code == 0, err
    return json.loads(out)


def _key(cli, tmp_path: Path, person: str | None) -> Path:
    key = tmp_path / f"{person or 'org'}.key"
    code, out, err = cli("key", "generate", "--out", key, "--json")
    assert code == 0, err
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    args = [person] if person else ["--organisation"]
    code, _, err = cli("key", "register", *args, "--public", f"{key}.pub", actor=cli.admin)
    assert code == 0, err
    return key


# ---------------------------------------------------------------- identity
def test_actor_is_the_authenticated_login_and_naming_another_is_a_replay(bank, tmp_path):
    before = _ledger(bank.url)
    code, _, err = bank("--actor", "dave", "finding", "add", "--model", "retail-pd", "--severity", "low", "--title", "t",
                        "--owner", "o", "--due", "2026-12-31", actor="carol")
    assert code == 2 and "names 'dave', but you are 'carol'" in err and err.count("\n") == 1
    assert _ledger(bank.url) == before  # refused: nothing written
    code, out, err = bank("finding", "add", "--model", "retail-pd", "--severity", "low", "--title", "t", "--owner", "o",
                          "--due", "2026-12-31", "--json", actor="carol")
    assert code == 0, err
    assert json.loads(out)["actor"] == "carol"
    assert _ledger(bank.url)[-1][1:3] == ("carol", "insert")
    # a replay may name a historical actor: the row says so, the entry is marked 'replay'
    code, out, err = bank("finding", "add", "--model", "retail-pd", "--severity", "low", "--title", "old", "--owner", "o",
                          "--due", "2025-12-31", "--json", actor="zoe", replay=True)
    assert code == 0, err
    assert json.loads(out)["actor"] == "zoe"
    seq, who, action, _ = _ledger(bank.url)[-1]
    assert action == "replay"
    # PostgreSQL: the ledger names the authenticated role who replayed; SQLite has no authentication
    assert who == (bank.admin if bank.url.startswith("postgresql") else "zoe")
    assert bank("verify")[0] == 0


def test_postgresql_refuses_another_name_and_an_owners_attestation_in_sql(bank, tmp_path):
    rid = _render(bank, tmp_path, "p.html")["report_id"]
    if not bank.url.startswith("postgresql"):
        # SQLite has no authenticated user: a raw insert goes in, and verify names it
        eng = create_engine(bank.url)
        with eng.begin() as c:
            c.execute(text("INSERT INTO attestation (report_run_id, reviewer, role, decision, comment, recorded_at, actor) "
                           "VALUES (:r, 'alice', 'validator', 'approve', NULL, '2026-11-01 00:00:00', 'alice')"), {"r": rid})
        eng.dispose()
        code, _, err = bank("verify")
        assert code == 1 and "has no ledger entry (inserted behind the ledger)" in err
        return
    bank.grant("alice", "validator")  # alice owns retail-pd: the role does not lift the conflict
    before = _ledger(bank.url)
    carol, _ = login_url(bank.url, "carol")
    eng = create_engine(carol)
    with eng.connect() as c:  # the client computes a chain entry naming dave: refused by the database
        with pytest.raises(Exception, match="must name the authenticated role carol, not dave"):
            c.execute(text("INSERT INTO ledger_entry VALUES (100000, now(), 'dave', 'insert', 'model', 'x', '{}', 'a', 'b')"))
    eng.dispose()
    alice, _ = login_url(bank.url, "alice")
    eng = create_engine(alice)
    with eng.connect() as c:
        with pytest.raises(Exception, match="segregation of duties: alice owns or develops retail-pd"):
            c.execute(text("INSERT INTO attestation (report_run_id, reviewer, role, decision, comment, recorded_at, actor) "
                           "VALUES (:r, 'alice', 'validator', 'approve', NULL, now(), 'alice')"), {"r": rid})
    with eng.connect() as c:
        with pytest.raises(Exception, match="only an admin may write role_grant"):
            c.execute(text("INSERT INTO role_grant (person_id, role, model_id, action, recorded_at, actor) "
                           "VALUES ('alice', 'admin', NULL, 'grant', now(), 'alice')"))
    eng.dispose()
    assert _ledger(bank.url) == before


# ---------------------------------------------------------------- people and roles
def test_roles_are_granted_by_an_admin_only(bank):
    code, _, err = bank("role", "grant", "carol", "approver", actor="carol")
    assert code == 1 and "only an admin may grant roles: carol is not an admin" in err
    code, _, err = bank("person", "add", "eve", actor="carol")
    assert code == 1 and "only an admin" in err
    code, _, err = bank("role", "grant", "carol", "auditor", actor=bank.admin)
    assert code == 2 and "role must be one of" in err
    assert bank("role", "grant", "carol", "owner", "--model", "card-fraud", actor=bank.admin)[0] == 0
    rows = json.loads(bank("role", "list", "--json")[1])
    assert {(r["person"], r["role"], r["model_id"]) for r in rows} >= {
        (bank.admin, "admin", None), ("carol", "validator", None), ("carol", "owner", "card-fraud"), ("dave", "approver", None)}
    assert bank("role", "revoke", "carol", "owner", "--model", "card-fraud", actor=bank.admin)[0] == 0
    assert ("carol", "owner", "card-fraud") not in {(r["person"], r["role"], r["model_id"])
                                                    for r in json.loads(bank("role", "list", "--json")[1])}
    code, _, err = bank("role", "revoke", bank.admin, "admin", actor=bank.admin)
    assert code == 1 and "last admin" in err
    assert bank("verify")[0] == 0


# ---------------------------------------------------------------- segregation of duties
def test_finding_is_closed_only_after_a_validator_verifies_it(bank):
    code, out, err = bank("finding", "add", "--model", "retail-pd", "--severity", "high", "--title", "Stale SAE",
                          "--owner", "alice", "--due", "2026-12-31", "--json", actor="carol")
    fid = json.loads(out)["id"]
    assert bank("finding", "update", fid, "--status", "remediated", "--note", "retrained", actor="ingest")[0] == 0
    code, _, err = bank("finding", "update", fid, "--status", "verified", "--note", "ok", actor="ingest")
    assert code == 1 and "segregation of duties: ingest is a developer of retail-pd" in err
    code, _, err = bank("finding", "update", fid, "--status", "closed", "--note", "done", actor="carol")
    assert code == 1 and "closed only after a validator verifies it" in err
    code, _, err = bank("finding", "update", fid, "--status", "verified", "--note", "ok", actor="mallory")
    assert code == 1 and "needs the validator or approver role" in err
    assert bank("finding", "update", fid, "--status", "verified", "--note", "re-ran fidelity: EV 0.91", actor="carol")[0] == 0
    code, _, err = bank("finding", "update", fid, "--status", "closed", "--note", "done", actor="ingest")
    assert code == 1 and "segregation of duties" in err
    assert bank("finding", "update", fid, "--status", "closed", "--note", "done", actor="carol")[0] == 0
    assert bank("verify")[0] == 0


def test_signoff_needs_a_reviewer_and_four_eyes_for_a_final_approval(bank, tmp_path):
    rid = _render(bank, tmp_path, "p.html")["report_id"]
    code, _, err = bank("signoff", rid, "--decision", "approve", actor="ingest")
    assert code == 1 and "segregation of duties: ingest is a developer" in err
    code, _, err = bank("signoff", rid, "--decision", "approve", "--role", "CRO", actor="carol")
    assert code == 2 and "validator or approver" in err
    code, _, err = bank("signoff", rid, "--decision", "approve", "--role", "approver", actor="carol")
    assert code == 1 and "needs the approver role" in err
    assert bank("signoff", rid, "--decision", "approve_with_conditions", "--comment", "retrain by Q2", actor="carol")[0] == 0
    code, _, err = bank("signoff", rid, "--decision", "approve", actor="carol")
    assert code == 1 and "second, distinct person" in err
    code, out, err = bank("signoff", rid, "--decision", "approve", "--json", actor="dave")
    assert code == 0, err
    assert json.loads(out)["role"] == "approver" and json.loads(out)["reviewer"] == "dave"


# ---------------------------------------------------------------- signatures
def test_signoff_is_bound_to_the_context_hash_and_signed(bank, tmp_path):
    key = _key(bank, tmp_path, "carol")
    as_of = iso(utcnow())
    first = _render(bank, tmp_path, "p1.html", as_of)
    code, out, err = bank("signoff", first["report_id"], "--decision", "approve", "--key", key, "--json", actor="carol")
    assert code == 0, err
    a = json.loads(out)
    assert a["context_sha256"] == first["context_sha256"] and a["key_fingerprint"] and a["signature"]
    again = _render(bank, tmp_path, "p1b.html", as_of)  # the same evidence, re-rendered: signed, same hash
    assert again["context_sha256"] == first["context_sha256"] and again["report_id"] == first["report_id"]
    html = (tmp_path / "p1b.html").read_text(encoding="utf-8")
    assert "approved" in html and a["key_fingerprint"][:16] in html
    # new evidence: a critical finding → a different report with a different hash, unsigned
    assert bank("finding", "add", "--model", "retail-pd", "--severity", "critical", "--title", "Broken SAE",
                "--owner", "alice", "--due", "2026-12-31", actor="carol")[0] == 0
    second = _render(bank, tmp_path, "p2.html")
    assert second["context_sha256"] != first["context_sha256"]
    html = (tmp_path / "p2.html").read_text(encoding="utf-8")
    assert "Not signed: no sign-off has been recorded on this context hash" in html
    assert a["key_fingerprint"][:16] not in html
    code, out, _ = bank("verify", "--json")
    assert code == 0 and json.loads(out)["signatures"] == []  # the first pack's signature still verifies



def test_the_export_carries_signatures_and_anchors_and_verify_pack_checks_them(bank, tmp_path):
    import zipfile

    key, org = _key(bank, tmp_path, "carol"), _key(bank, tmp_path, None)
    assert bank("anchor", "--key", org, "--out", tmp_path / "a.json", actor=bank.admin)[0] == 0
    as_of = iso(utcnow())
    zip_path = tmp_path / "pack.zip"
    code, out, err = bank("export", "--quarter", "2026Q1", "--as-of", as_of, "--out", zip_path, "--json")
    assert code == 0, err
    rid = json.loads(out)["report_id"]
    assert bank("signoff", rid, "--decision", "approve", "--key", key, actor="carol")[0] == 0
    signed = tmp_path / "signed.zip"
    code, out, err = bank("export", "--quarter", "2026Q1", "--as-of", as_of, "--out", signed, "--json")
    assert code == 0, err
    with zipfile.ZipFile(signed) as z:
        sigs = z.read("tables/signatures.csv").decode()
        assert "carol" in sigs and "tables/anchors.csv" in z.namelist()
    code, out, err = bank("verify", "--pack", signed)
    assert code == 0, err


def _forge(url: str, *, signer_key: Path | None, fingerprint: str, at_offset: int = 0) -> None:
    """An attestation written through the ledger (as by a forger with write access, or a tool bug)."""
    from compliance.identity import keys

    with session_scope(url, readonly=True) as s:
        run = s.execute(text("SELECT id, context_sha256 FROM report_run ORDER BY recorded_at LIMIT 1")).first()
    signed_at = iso(utcnow())
    fields = keys.attestation_fields(run[0], run[1], "approve", "forged", signed_at)
    sig = keys.sign(keys.load_private(signer_key, PASS), fields) if signer_key else "AAAA"
    with session_scope(url, actor="carol", replay=True) as s:
        record(s, Attestation(report_run_id=run[0], reviewer="carol", role="validator", decision="approve",
                              comment="forged", context_sha256=run[1], signed_at=signed_at,
                              key_fingerprint=fingerprint, signature=sig))


def _fingerprint(key: Path) -> str:
    from compliance.identity import keys

    return keys.fingerprint(keys.public_b64(keys.load_private(key, PASS).public_key()))


def test_a_signature_by_an_unknown_key_fails_verify(bank, tmp_path):
    _key(bank, tmp_path, "carol")
    _render(bank, tmp_path, "p.html")
    stranger = tmp_path / "stranger.key"
    assert bank("key", "generate", "--out", stranger)[0] == 0  # never registered
    _forge(login_url(bank.url, bank.admin)[0], signer_key=stranger, fingerprint=_fingerprint(stranger))
    code, out, _ = bank("verify", "--json")
    assert code == 1 and "is not registered" in json.loads(out)["problem"]


def test_revoked_key_used_after_revocation_fails_verify(bank, tmp_path):
    key = _key(bank, tmp_path, "carol")
    rid = _render(bank, tmp_path, "p.html")["report_id"]
    assert bank("signoff", rid, "--decision", "approve", "--key", key, actor="carol")[0] == 0
    fp = _fingerprint(key)
    assert bank("key", "revoke", fp, actor=bank.admin)[0] == 0
    code, _, err = bank("signoff", rid, "--decision", "reject", "--comment", "x", "--key", key, actor="carol")
    assert code == 1 and "revoked" in err  # the service refuses it
    assert bank("verify")[0] == 0  # the signature made before the revocation still verifies
    _forge(login_url(bank.url, bank.admin)[0], signer_key=key, fingerprint=fp)
    code, out, _ = bank("verify", "--json")
    assert code == 1 and "revoked" in json.loads(out)["problem"]


def test_tampered_signature_fails_verify(bank, tmp_path):
    key = _key(bank, tmp_path, "carol")
    _render(bank, tmp_path, "p.html")
    _forge(login_url(bank.url, bank.admin)[0], signer_key=None, fingerprint=_fingerprint(key))  # not carol's signature
    code, out, _ = bank("verify", "--json")
    assert code == 1 and "signature does not match" in json.loads(out)["problem"]


# ---------------------------------------------------------------- anchors
def _rewrite_and_rehash(url: str, entity_type: str, entity_id: str, column: str, value) -> int:
    """What a forger with full write access does: edit one old row and its ledger payload, then
    re-hash every later entry (triggers off). Returns the edited entry's seq."""
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as c:
        if c.dialect.name == "postgresql":
            c.exec_driver_sql("SET session_replication_role = replica")  # no trigger fires
        else:
            for (name,) in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").all():
                c.exec_driver_sql(f"DROP TRIGGER {name}")
        c.execute(text(f"UPDATE {entity_type} SET {column} = :v WHERE id = :i"), {"v": value, "i": entity_id})
        rows = c.execute(select(LedgerEntry.__table__).order_by(LedgerEntry.seq)).mappings().all()
        target = next(r["seq"] for r in rows if r["entity_type"] == entity_type and r["entity_id"] == entity_id)
        prev = None
        for r in rows:
            payload = r["payload"]
            if r["seq"] == target:
                p = json.loads(payload)
                p[column] = value
                payload = canonical_json(p)
            if r["seq"] >= target:
                h = ledger_entry_hash(prev, r["seq"], iso(r["recorded_at"]), r["actor"], r["action"], r["entity_type"],
                                      r["entity_id"], payload)
                c.execute(text("UPDATE ledger_entry SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s"),
                          {"p": payload, "ph": prev, "h": h, "s": r["seq"]})
                prev = h
            else:
                prev = r["hash"]
    eng.dispose()
    return target


def test_a_rewritten_and_rehashed_chain_passes_alone_and_fails_against_an_anchor(bank, tmp_path):
    org = _key(bank, tmp_path, None)
    anchor = tmp_path / "anchors" / "a1.json"
    anchor.parent.mkdir()
    code, out, err = bank("anchor", "--key", org, "--out", anchor, "--organisation", "Test Bank", "--json", actor=bank.admin)
    assert code == 0, err
    doc = json.loads(anchor.read_text())
    assert doc["head_seq"] == json.loads(out)["head_seq"] and doc["signature"]
    assert bank("verify", "--anchor", anchor)[0] == 0
    assert bank("model", "add", "late", "--name", "L", "--owner", "o", "--tier", "3", "--use", "u")[0] == 0
    seq = _rewrite_and_rehash(bank.url, "model", "retail-pd", "tier", 3)  # an old record, before the anchor
    assert seq < doc["head_seq"]
    assert bank("verify")[0] == 0  # the chain alone cannot tell (documented)
    code, out, err = bank("verify", "--anchor", anchor)
    assert code == 1 and f"entry {doc['head_seq']} no longer has the anchored hash" in err
    # an edited anchor is refused as well
    doc["head_hash"] = "0" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err = bank("verify", "--anchor", bad)
    assert code == 1 and "signature does not verify" in err


# ---------------------------------------------------------------- concurrency (PostgreSQL)
def _role_writer(url: str, worker: int, seconds: float, out) -> None:
    import time

    from compliance.services import registry
    from compliance.store.engine import make_engine

    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        with session_scope(url) as s:
            registry.add_model(s, f"w{worker}-{n}", name="x", owner="o", tier=3, use="u")
        n += 1
    make_engine(url).dispose()
    out.put((worker, n))


def test_concurrent_writers_under_four_roles_keep_one_chain_and_every_actor(db_url):
    import multiprocessing as mp

    if not db_url.startswith("postgresql"):
        roles = [initialiser_name()]  # SQLite: one OS user; the chain must still hold
    else:
        roles = ["w_anna", "w_ben", "w_cleo", "w_dan"]
    urls = [login_url(db_url, r)[0] for r in roles]
    seconds = float(os.environ.get("COMPLIANCE_CONCURRENCY_SECONDS", "8"))
    with session_scope(db_url, readonly=True) as s:
        start = s.scalar(select(LedgerEntry.seq).order_by(LedgerEntry.seq.desc()).limit(1))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_role_writer, args=(urls[w % len(urls)], w, seconds, q)) for w in range(16)]
    for p in procs:
        p.start()
    counts = dict(q.get(timeout=seconds + 300) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    from compliance.store.ledger import verify

    with session_scope(db_url, readonly=True) as s:
        rows = s.execute(select(LedgerEntry.seq, LedgerEntry.actor, LedgerEntry.entity_id)
                         .where(LedgerEntry.seq > start).order_by(LedgerEntry.seq)).all()
        assert [r.seq for r in rows] == list(range(start + 1, start + 1 + sum(counts.values())))  # none lost, no fork
        for r in rows:  # every entry names the role its worker connected as
            worker = int(r.entity_id[1:].split("-")[0])
            assert r.actor == roles[worker % len(roles)]
        assert verify(s).ok


def initialiser_name() -> str:
    import getpass

    return getpass.getuser()
