"""Ledger: tamper detection on every evidence table, concurrency, append-only triggers."""

from __future__ import annotations

import multiprocessing as mp
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import JSON, Date, Float, Integer, String, Text, delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from compliance.store.engine import make_engine, session_scope
from compliance.store.ledger import record, verify
from compliance.store.models import (
    Adaptation,
    Alert,
    AlertDelivery,
    GateDecision,
    MonitoringPlan,
    RegistryLink,
    Narrative,
    Acceptance,
    Artifact,
    ArtifactSet,
    Correction,
    EVIDENCE_MODELS,
    Attestation,
    Check,
    CheckFeature,
    DecisionVolume,
    FailureModeOccurrence,
    FailureModeStatusEvent,
    Finding,
    Anchor,
    FindingEvent,
    LedgerEntry,
    Person,
    ReportRun,
    RoleGrant,
    SigningKey,
    UTCDateTime,
)
from compliance.store.triggers import drop_append_only_triggers
from compliance.services.manifest import import_manifest
from tests.helpers import small_manifest

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


def populate(url: str, tmp_path: Path) -> None:
    """At least one row in every evidence table, all written through the ledger."""
    with session_scope(url) as s:
        import_manifest(s, small_manifest(tmp_path / "bank"))
        vid = s.scalar(select(text("id")).select_from(text("model_version")).limit(1))
        chk = record(s, Check(kind="fidelity", model_id="retail-pd", version_id=vid, artifact_id="pd-sae-v1",
                              input_hashes={"activations": "ab" * 32}, parameters={"batch": 512},
                              metrics={"explained_variance": 0.93, "l0": 12.5}, status="pass", reasons=[], flags=[],
                              explained_variance=0.93, started_at=T0, finished_at=T0 + timedelta(seconds=3),
                              tool_version="0.1.0", formula_version="saelens-6.54"))
        record(s, CheckFeature(check_id=chk.id, feature="income", feature_kind="numeric", n_ref=10, n_cur=10,
                               missing_ref=0, missing_cur=1, psi=0.3, ks_stat=0.2, ks_pvalue=0.01,
                               wasserstein=0.4, js_distance=0.1, chi2_pvalue=None, status="fail"))
        occ = record(s, FailureModeOccurrence(code="FM-DECAY", cause_key="FM-DECAY:check=1", model_id="retail-pd",
                                              version_id=vid, artifact_id="pd-sae-v1", check_id=chk.id, detail="EV 0.5",
                                              detected_at=T0))
        record(s, FailureModeStatusEvent(occurrence_id=occ.id, status="open", rationale="detected"))
        f = record(s, Finding(model_id="retail-pd", title="Stale SAE", severity="high", owner="alice",
                              due_date=date(2026, 9, 30), description="re-validate"))
        record(s, FindingEvent(finding_id=f.id, status="open", note="raised"))
        rr = record(s, ReportRun(id="RPT-1", kind="portfolio", quarter="2026Q3", model_id=None, scope=["retail-pd"],
                                 as_of=T0, context_sha256="cd" * 32, outputs={"pack.pdf": "ef" * 32},
                                 ledger_head="00" * 32, tool_version="0.1.0"))
        record(s, DecisionVolume(version_id=vid, day=date(2026, 7, 1), volume=1200))
        record(s, ArtifactSet(id="pd-tc", model_id="retail-pd", kind="transcoder", bound_version_id=vid,
                              format="circuit-tracer-set", path="/x", sha256="0" * 64, files={"layer_0.safetensors": "1" * 64},
                              members=["layer_0"], extra={}))
        record(s, Artifact(id="pd-tc/layer_0", model_id="retail-pd", kind="transcoder", bound_version_id=vid,
                           format="circuit-tracer", path="/x/layer_0.safetensors", sha256="2" * 64, files={}, extra={},
                           set_id="pd-tc", set_member="layer_0"))
        record(s, Correction(entity_type="decision_volume", entity_id="1", action="void", reason="duplicate import"))
        record(s, Narrative(quarter="2026Q3", model_id="retail-pd", section="conclusion", text="fit", rating="fit"))
        record(s, Adaptation(model_id="retail-pd", parent_artifact_id="pd-sae-v1", version_id=vid,
                             child_artifact_id=None, check_id=None, status="failed", path="/x/adapted",
                             files={"lineage.json": "3" * 64}, input_hashes={"parent": "4" * 64},
                             parameters={"seed": 1, "budget_steps": 5}, metrics={"steps": 5, "final_loss": 0.2},
                             reasons=["adaptation failed: held-out explained variance 0.7 below the floor 0.8"],
                             started_at=T0, finished_at=T0 + timedelta(seconds=2), tool_version="0.1.0"))
        record(s, MonitoringPlan(model_id="retail-pd", version=1, source="plan.yaml",
                                 document={"checks": {"fidelity": {"cadence": "after_retrain"}}}))
        alert = record(s, Alert(event="occurrence_opened", cause_key="occ:1", model_id="retail-pd", subject="FM-DECAY",
                                payload={"occurrence": 1}, recipients={"email": ["mrm@bank.example"]}))
        record(s, AlertDelivery(alert_id=alert.id, channel="email", target="mrm@bank.example", attempt=1,
                                outcome="failed", detail="connection refused", next_attempt_at=T0 + timedelta(minutes=5)))
        record(s, GateDecision(model_id="retail-pd", version_id=vid, decision="refuse", reasons=["SAE stale"],
                               evidence={"sae": "pd-sae-v1"}, policy_version=1))
        record(s, RegistryLink(registry_uri="mlflow:file:///x", external_key="model:retail-pd", entity_type="model",
                               entity_id="retail-pd", state={"tags": {}}))
        record(s, Person(id="carol", name="Carol"))
        record(s, RoleGrant(person_id="carol", role="validator", model_id=None, action="grant"))
        record(s, SigningKey(fingerprint="ab" * 32, person_id="carol", public_key="A" * 44, action="register"))
        record(s, Anchor(head_seq=1, head_hash="cd" * 32, document={"format": "compliance-anchor/1"}))
        rr_id, chk_id = rr.id, chk.id
    # a judgement by someone other than the importer (segregation of duties, enforced by the
    # database on PostgreSQL): written as a replay naming carol
    with session_scope(url, actor="carol", replay=True) as s:
        record(s, Attestation(report_run_id=rr_id, reviewer="carol", role="validator", decision="approve", comment="ok",
                              context_sha256="cd" * 32, signed_at="2026-07-01T00:00:00Z", key_fingerprint="ab" * 32,
                              signature="c2ln"))
        record(s, Acceptance(check_id=chk_id, rationale="reviewed: within tolerance for this use"))


def _mutant(col, value):
    t = col.type
    if isinstance(t, UTCDateTime):
        return (value or T0) + timedelta(seconds=1)
    if isinstance(t, Date):
        return (value or date(2026, 1, 1)) + timedelta(days=1)
    if isinstance(t, JSON):
        return {"tampered": True} if not isinstance(value, dict) or value != {"tampered": True} else [1]
    if isinstance(t, Float):
        return (value or 0.0) + 0.5
    if isinstance(t, Integer):
        return (value or 0) + 1
    if isinstance(t, (String, Text)):
        v = value or ""
        return (v[:-1] + ("y" if v[-1:] == "x" else "x")) if v else "x"
    raise AssertionError(f"no mutant for {t!r}")


def _mutations():
    out = []
    for model in EVIDENCE_MODELS:
        table = model.__table__
        for col in table.columns:
            if col.primary_key or col.foreign_keys:
                continue
            out.append(("update", table.name, col.name))
        out.append(("delete", table.name, None))
    for col in ("payload", "actor", "entity_id", "hash"):
        out.append(("ledger", "ledger_entry", col))
    return out


def test_every_mutation_is_caught(db_url, tmp_path):
    populate(db_url, tmp_path)
    engine = make_engine(db_url)
    caught, total = 0, 0
    for action, table_name, col_name in _mutations():
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                drop_append_only_triggers(conn, [table_name])
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
                else:
                    conn.exec_driver_sql("SET session_replication_role = replica")  # no FK / trigger checks
                    # the attacker drops the door's CHECK constraints too (migration 0003)
                    for (ck,) in conn.exec_driver_sql(
                            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
                            (table_name,)).all():
                        conn.exec_driver_sql(f"ALTER TABLE {table_name} DROP CONSTRAINT {ck}")
                model = next((m for m in EVIDENCE_MODELS if m.__tablename__ == table_name), LedgerEntry)
                table = model.__table__
                pk = list(table.primary_key.columns)[0]
                row = conn.execute(select(table).order_by(pk.desc()).limit(1)).mappings().first()
                assert row is not None, f"{table_name} has no row to tamper with"
                if action == "delete":
                    conn.execute(delete(table).where(pk == row[pk.name]))
                else:
                    col = table.columns[col_name]
                    sp = conn.begin_nested()
                    try:
                        conn.execute(update(table).where(pk == row[pk.name]).values({col_name: _mutant(col, row[col_name])}))
                    except IntegrityError:  # a CHECK constraint refuses the forged value: caught by the database
                        sp.rollback()
                        total += 1
                        caught += 1
                        continue
                    sp.commit()
                s = Session(bind=conn)
                result = verify(s)
                total += 1
                if not result.ok:
                    caught += 1
                    assert result.problem
                else:
                    pytest.fail(f"{action} {table_name}.{col_name} was not caught")
            finally:
                trans.rollback()
    assert caught == total and total > 100
    with session_scope(db_url, readonly=True) as s:
        assert verify(s).ok  # all rolled back


def test_verify_names_the_entry(db_url, tmp_path):
    populate(db_url, tmp_path)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        trans = conn.begin()
        drop_append_only_triggers(conn, ["finding"])
        conn.execute(update(Finding.__table__).values(severity="low"))
        r = verify(Session(bind=conn))
        target = conn.execute(select(LedgerEntry.seq).where(LedgerEntry.entity_type == "finding")).scalar()
        trans.rollback()
    assert not r.ok and r.seq == target and "severity" in r.problem


def test_triggers_reject_update_and_delete(db_url, tmp_path):
    populate(db_url, tmp_path)
    engine = make_engine(db_url)
    for stmt in ("UPDATE model SET name = 'x'", "DELETE FROM finding", "UPDATE ledger_entry SET actor = 'x'",
                 "DELETE FROM ledger_entry"):
        with engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                with conn.begin():
                    conn.exec_driver_sql(stmt)


def _writer(url: str, worker: int, n: int) -> None:
    from compliance.services import registry

    for i in range(n):
        with session_scope(url) as s:
            registry.add_model(s, f"m-{worker}-{i}", name="x", owner="o", tier=3, use="u")
    make_engine(url).dispose()


def test_concurrent_writers_never_fork_the_chain(db_url):
    with session_scope(db_url, readonly=True) as s:
        start = s.scalar(select(LedgerEntry.seq).order_by(LedgerEntry.seq.desc()).limit(1))
    make_engine(db_url).dispose()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db_url, w, 100)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    with session_scope(db_url, readonly=True) as s:
        seqs = s.scalars(select(LedgerEntry.seq).order_by(LedgerEntry.seq)).all()
        assert len(seqs) - start == 800
        assert seqs == list(range(1, len(seqs) + 1))
        assert verify(s).ok


def _type_confusions(dialect: str):
    """(table, column, raw SQL value) for every evidence column a wrong-typed value can reach on
    this backend: on SQLite any value fits any column; PostgreSQL enforces types, except inside JSON."""
    out = []
    for model in EVIDENCE_MODELS:
        table = model.__table__
        for col in table.columns:
            if col.primary_key or col.foreign_keys:
                continue
            t = col.type.impl if isinstance(col.type, UTCDateTime) else col.type
            if isinstance(t, JSON):
                out.append((table.name, col.name, "'\"not-the-json-it-was\"'" + ("::json" if dialect != "sqlite" else "")))
            elif dialect == "sqlite" and not isinstance(t, (String, Text)):
                out.append((table.name, col.name, "'not-a-number-or-date'"))
            elif dialect == "sqlite":
                out.append((table.name, col.name, "x'00ff'"))  # a blob where text belongs
    return out


def test_type_confused_values_are_named_as_that_rows_mismatch(db_url, tmp_path):
    populate(db_url, tmp_path)
    engine = make_engine(db_url)
    cases = _type_confusions(engine.dialect.name)
    assert len(cases) > (60 if engine.dialect.name == "sqlite" else 10)
    for table_name, col_name, value in cases:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                drop_append_only_triggers(conn, [table_name])
                model = next(m for m in EVIDENCE_MODELS if m.__tablename__ == table_name)
                pk = list(model.__table__.primary_key.columns)[0]
                key = conn.execute(select(pk).order_by(pk.desc()).limit(1)).scalar()
                conn.execute(text(f"UPDATE {table_name} SET {col_name} = {value} WHERE {pk.name} = :k"), {"k": key})
                r = verify(Session(bind=conn))
                seq = conn.execute(select(LedgerEntry.seq).where(LedgerEntry.entity_type == table_name,
                                                                 LedgerEntry.entity_id == str(key))).scalar()
                assert not r.ok and r.seq == seq, (table_name, col_name, r)
                assert f"{table_name} {key}" in r.problem and col_name in r.problem, r.problem
            finally:
                trans.rollback()


def test_type_confused_ledger_entry_is_named(db_url, tmp_path):
    populate(db_url, tmp_path)
    engine = make_engine(db_url)
    if engine.dialect.name != "sqlite":  # PostgreSQL's typed column refuses the forged value outright
        with pytest.raises(DBAPIError), engine.connect() as conn, conn.begin():
            drop_append_only_triggers(conn, ["ledger_entry"])
            conn.exec_driver_sql("UPDATE ledger_entry SET recorded_at = 'not a time' WHERE seq = 3")
        return
    with engine.connect() as conn:
        trans = conn.begin()
        drop_append_only_triggers(conn, ["ledger_entry"])
        conn.exec_driver_sql("UPDATE ledger_entry SET recorded_at = 'yesterday' WHERE seq = 3")
        r = verify(Session(bind=conn))
        trans.rollback()
    assert not r.ok and r.seq == 3 and "wrong type" in r.problem


def test_back_dated_entry_is_caught(db_url, tmp_path, monkeypatch):
    """A row and its ledger entry, correctly hashed and chained, but recorded "in the past"."""
    from compliance.services import registry

    populate(db_url, tmp_path)
    with session_scope(db_url, readonly=True) as s:
        head_at = s.scalar(select(LedgerEntry.recorded_at).order_by(LedgerEntry.seq.desc()).limit(1))
    from compliance.store import ledger

    # the API refuses a replay behind the head; a forger's own code would not: simulate that
    monkeypatch.setattr(ledger, "_refuse_backdating", lambda now, last_at: None)
    with session_scope(db_url, actor="mallory", clock=lambda: head_at - timedelta(days=30), replay=True) as s:
        registry.add_model(s, "backdated", name="x", owner="o", tier=3, use="u")
    with session_scope(db_url, readonly=True) as s:
        r = verify(s)
        last = s.scalar(select(LedgerEntry.seq).order_by(LedgerEntry.seq.desc()).limit(1))
    assert not r.ok and r.seq == last and "back-dated" in r.problem, r
