"""The bulk path of `compliance import` (issue 16, item 5) against the row-by-row path.

Equivalence is exact: two stores created under the same clock, the same manifest imported under
the same fixed clock and login, one through the bulk path and one row by row, hold the same
ledger entry for entry (seq, recorded_at, actor, action, entity, payload, prev_hash, hash) and
the same rows. (Under the system clock the row-by-row path stamps each row with its own time;
the bulk path stamps one time per batch: the entries then differ in recorded_at and the hashes
that cover it, and in nothing else.)
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from bench.bench_import import build_manifest
from compliance.errors import ComplianceError
from compliance.services.manifest import import_manifest
from compliance.store import migrate
from compliance.store.engine import make_engine, session_scope
from compliance.store.ledger import verify
from compliance.store.models import EVIDENCE_MODELS
from tests.conftest import BACKENDS, PG_BASE, _admin_engine
from tests.test_registry import snapshot

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
T1 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=BACKENDS)
def twins(request, tmp_path: Path):
    """Two stores of one backend, migrated under the same clock (identical seeded ledgers)."""
    urls, names = [], []
    for k in range(2):
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / f'store{k}.db'}"
        else:
            name = f"ct_{uuid.uuid4().hex[:12]}"
            with _admin_engine().connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}"'))
            names.append(name)
            url = PG_BASE.rsplit("/", 1)[0] + "/" + name
        migrate.upgrade(url, clock=lambda: T0)
        urls.append(url)
    yield urls
    for url in urls:
        make_engine(url).dispose()
    make_engine.cache_clear()
    with _admin_engine().connect() as c:
        for name in names:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def estate(root: Path, scale: float = 0.02) -> Path:
    """The bench's estate, smaller, plus a deploy/retire history on one model."""
    m, _ = build_manifest(root, scale)
    doc = yaml.safe_load(m.read_text())
    doc["deployments"] += [
        {"model": "m0000", "version": "v1", "action": "deploy", "at": "2025-11-01T00:00:00Z"},
        {"model": "m0000", "version": "v1", "action": "retire", "at": "2026-01-01T00:00:00Z"},
        {"model": "m0001", "version": "v2", "action": "deploy", "at": "2025-12-01T00:00:00Z"},
        {"model": "m0001", "version": "v2", "action": "retire", "at": "2025-12-01T00:00:00Z"},
    ]
    doc["models"][3]["tags"] = ["b", "a", "b"]
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    return m


def run_import(url: str, manifest: Path, *, bulk: bool) -> dict:
    with session_scope(url) as s:
        s.info["clock"] = lambda: T1  # one fixed time for both paths
        return import_manifest(s, manifest, bulk=bulk)


def ledger(url: str) -> list[tuple]:
    with session_scope(url, readonly=True) as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT seq, recorded_at, actor, action, entity_type, entity_id, payload, prev_hash, hash "
            "FROM ledger_entry ORDER BY seq"))]


def rows(url: str) -> dict[str, list[tuple]]:
    with session_scope(url, readonly=True) as s:
        return {m.__tablename__: [tuple(r) for r in s.execute(text(f"SELECT * FROM {m.__tablename__} ORDER BY 1"))]
                for m in EVIDENCE_MODELS}


def test_bulk_writes_the_ledger_the_row_by_row_path_writes(twins, tmp_path: Path):
    bulk_url, row_url = twins
    m = estate(tmp_path / "estate")
    got = run_import(bulk_url, m, bulk=True)
    assert got == run_import(row_url, m, bulk=False) == {"models": 20, "versions": 200, "deployments": 24,
                                                         "artifacts": 0, "datasets": 0}
    a, b = ledger(bulk_url), ledger(row_url)
    assert len(a) == len(b) > 244
    assert a == b  # same entries, payloads, hashes and chain
    assert rows(bulk_url) == rows(row_url)
    for url in twins:
        with session_scope(url, readonly=True) as s:
            assert verify(s).ok


def test_a_bad_record_deep_in_a_large_manifest_leaves_the_store_unchanged(db_url, cli, tmp_path: Path):
    m = estate(tmp_path / "estate", scale=0.2)  # 200 models, 2,000 versions
    doc = yaml.safe_load(m.read_text())
    doc["versions"][1234]["trained_at"] = "2300-01-01T00:00:00Z"  # past the door's window
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = snapshot(db_url)
    code, out, err = cli("import", m)
    assert code != 0
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "versions[1234] v5" in lines[0] and "trained_at" in lines[0], err
    assert "Traceback" not in err + out
    assert snapshot(db_url) == before


@pytest.mark.parametrize("case", ["reimport", "dup-model", "dup-version", "bad-parent", "no-model", "no-weights",
                                  "double-deploy", "retire-idle", "late-event", "bad-tier", "controls"])
def test_bad_input_is_refused_with_the_row_by_row_message(db_url, tmp_path: Path, case: str):
    m = estate(tmp_path / "estate", scale=0.01)
    doc = yaml.safe_load(m.read_text())
    if case == "reimport":
        run_import(db_url, m, bulk=True)
    elif case == "dup-model":
        doc["models"].append(dict(doc["models"][2]))
    elif case == "dup-version":
        doc["versions"].insert(50, dict(doc["versions"][3]))
    elif case == "bad-parent":
        doc["versions"][45]["parent"] = "v9"
    elif case == "no-model":
        doc["versions"][60]["model"] = "nobody"
    elif case == "no-weights":
        doc["versions"][70]["weights"] = "weights/missing.bin"
    elif case == "double-deploy":
        doc["deployments"].append({"model": "m0004", "version": "v10", "action": "deploy", "at": "2026-02-01T00:00:00Z"})
    elif case == "retire-idle":
        doc["deployments"].append({"model": "m0004", "version": "v3", "action": "retire", "at": "2026-02-01T00:00:00Z"})
    elif case == "late-event":  # an event before one the store holds
        run_import(db_url, m, bulk=True)
        m = m.with_name("later.yaml")
        doc = {"deployments": [{"model": "m0004", "version": "v10", "action": "deploy", "at": "2025-12-01T00:00:00Z"}]}
    elif case == "bad-tier":
        doc["models"][5]["tier"] = 4
    elif case == "controls":
        doc["models"][6]["name"] = "bad\x07name"
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = snapshot(db_url)
    errors = []
    for bulk in (True, False):
        with pytest.raises(ComplianceError) as exc:
            run_import(db_url, m, bulk=bulk)
        errors.append((type(exc.value), str(exc.value)))
        assert snapshot(db_url) == before
    assert errors[0] == errors[1], errors
    assert errors[0][1].startswith(f"{m.name}: "), errors[0]


def test_a_json_manifest_reads_as_its_yaml_twin(tmp_path: Path):
    from compliance.services.manifest import load_manifest

    m = estate(tmp_path / "estate", scale=0.01)
    j = m.with_suffix(".json")
    j.write_text(json.dumps(yaml.safe_load(m.read_text())))
    assert load_manifest(j)[0] == load_manifest(m)[0]
    for bad, msg in (('{"models": [', "not valid JSON at line 1"), ('{"models": NaN}', "not valid JSON"),
                     ("[" * 70 + "]" * 70, "nested more than 64 levels deep")):
        j.write_text(bad)
        with pytest.raises(ComplianceError, match=msg):
            load_manifest(j)


def test_a_replayed_bulk_import_keeps_the_identity_rules(db_url, cli, tmp_path: Path):
    """Under --replay the rows name the replayed actor and every entry is marked replay (the
    PostgreSQL identity trigger checks each appended entry, COPY included); a live import names
    the login in rows and entries."""
    m = estate(tmp_path / "estate", scale=0.01)
    code, _out, err = cli("import", m, actor="historian", replay=True)
    assert code == 0, err
    with session_scope(db_url, readonly=True) as s:
        acts = s.execute(text("SELECT DISTINCT action, actor FROM ledger_entry WHERE entity_type = 'model_version'")).all()
        rows_by = s.execute(text("SELECT DISTINCT actor FROM model_version")).scalars().all()
        assert verify(s).ok
    assert [a for a, _ in acts] == ["replay"] and rows_by == ["historian"]
    m2 = build_manifest(tmp_path / "more", 0.001)[0]
    doc = yaml.safe_load(m2.read_text())
    for e in doc["models"]:
        e["id"] = "z" + e["id"]
    for e in doc["versions"] + doc["deployments"]:
        e["model"] = "z" + e["model"]
    m2.write_text(yaml.safe_dump(doc))
    code, _out, err = cli("import", m2, actor="tester")
    assert code == 0, err
    with session_scope(db_url, readonly=True) as s:
        live = s.execute(text("SELECT DISTINCT l.action, l.actor, v.actor FROM ledger_entry l JOIN model_version v "
                              "ON l.entity_type = 'model_version' AND l.entity_id = CAST(v.id AS TEXT) "
                              "WHERE v.model_id LIKE 'z%'")).all()
    assert len(live) == 1 and live[0][0] == "insert" and live[0][1] == live[0][2]


def test_the_bulk_chain_and_payloads_are_the_canonical_ones():
    """ledger_chain and the column-wise payload text give byte for byte what ledger_entry_hash and
    canonical_json of the row's payload give, for awkward text, numbers, times and JSON values."""
    from datetime import date, timedelta

    from compliance.hashing import canonical_json, ledger_chain, ledger_entry_hash
    from compliance.store.ledger import _payload_texts, _payload_values, _plan
    from compliance.store.models import Model, ModelVersion

    odd = ['quote " back \\ slash', "é ünï 😀 \u2028 \u2029", "tab\tnew\nline", "", "%s %d %%", "{}", "null"]
    items = [("model", e, p) for e, p in zip(odd, reversed(odd))] + [("model_version", "7", '{"a":[1,2.5,null]}')]
    prev = "ab" * 32
    for (seq, before, h), (et, eid, pl), k in zip(ledger_chain(prev, 41, "2026-01-01T00:00:00.000001Z", 'al"ice', "insert", items),
                                                   items, range(42, 100)):
        assert (seq, before) == (k, prev)
        assert h == ledger_entry_hash(prev, k, "2026-01-01T00:00:00.000001Z", 'al"ice', "insert", et, eid, pl)
        prev = h
    t = datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=timezone.utc)
    plus_one = t.astimezone(timezone(timedelta(hours=1)))  # the same instant written elsewhere
    version_rows = [dict(id=1, model_id=odd[0], label=odd[1], weights_path=odd[4], weights_sha256="0" * 64, trained_at=t,
                         data_window_start=date(2024, 1, 1), data_window_end=None, parent_id=None, recorded_at=plus_one, actor="x"),
                    dict(id=2, model_id="m", label="v2", weights_path="p", weights_sha256="1" * 64, trained_at=plus_one,
                         data_window_start=None, data_window_end=date(2024, 2, 29), parent_id=1, recorded_at=t, actor=odd[2])]
    model_rows = [dict(id=odd[3], name=odd[5], business_use=odd[6], owner="o", tier=True, tags=["b", "a", odd[1]],
                       adapter=None, recorded_at=t, actor="x"),
                  dict(id="n", name="N", business_use="u", owner="o", tier=2, tags=[], adapter="a", recorded_at=t, actor="x")]
    for model, rows in ((ModelVersion, version_rows), (Model, model_rows)):
        plan = _plan(model.__table__)
        values = [[r.get(col.key) for r in rows] for col, _name, _kind in plan]
        assert _payload_texts(plan, values) == [canonical_json(_payload_values(plan, [r.get(col.key) for col, _n, _k in plan]))
                                                for r in rows]


@pytest.mark.parametrize("doc", [
    "a: 1\nb: [x, 2.5, true, null, 2026-01-01, '2026-01-01', ~]\nc: {d: {e: [[1], []]}}\n",
    "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n",  # a merge key
    "a: &s [1, 2]\nb: *s\n",  # a shared collection
    "a: &v hello\nb: *v\nc: [*v, *v]\n",  # a shared scalar
    "? [1, 2]\n: x\n",  # a collection as a key
    "a: !!str 12\nb: !!set {x, y}\nc: !!binary aGk=\n1: one\n2.5: x\ntrue: t\n~: n\n2026-01-02: d\n",
    "- !!omap [a: 1, b: 2]\n- !!pairs [a: 1]\n",
    "just a scalar\n", "", "[]\n", "{}\n",
])
def test_the_yaml_fast_build_gives_what_the_safe_loader_gives(doc):
    from compliance.safeyaml import load_yaml

    try:
        want = yaml.load(doc, Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # e.g. a collection as a key: refused by both
        with pytest.raises(ComplianceError, match="not valid YAML"):
            load_yaml(doc, what="t.yaml")
        return
    assert load_yaml(doc, what="t.yaml") == want


def test_weights_that_are_not_plain_files_take_the_service_path(twins, tmp_path: Path):
    """A symlinked weights file, a path with ./ and // in it, a weights file given by absolute
    path: the bulk path stores what the row-by-row path stores (the resolved path, the target's
    hash), entry for entry."""
    bulk_url, row_url = twins
    m = estate(tmp_path / "estate", scale=0.01)
    doc = yaml.safe_load(m.read_text())
    target = tmp_path / "elsewhere" / "real.bin"
    target.parent.mkdir()
    target.write_bytes(b"real weights")
    (m.parent / "weights" / "link.bin").symlink_to(target)
    doc["versions"][3]["weights"] = "weights/link.bin"
    doc["versions"][4]["weights"] = "./weights//" + doc["versions"][4]["weights"].split("/")[-1]
    doc["versions"][5]["weights"] = str(m.parent / doc["versions"][5]["weights"])
    m.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_import(bulk_url, m, bulk=True) == run_import(row_url, m, bulk=False)
    assert ledger(bulk_url) == ledger(row_url)
    assert rows(bulk_url) == rows(row_url)
    with session_scope(bulk_url, readonly=True) as s:
        got = s.execute(text("SELECT weights_path, weights_sha256 FROM model_version ORDER BY id")).all()
    import hashlib

    assert got[3] == (str(target.resolve()), hashlib.sha256(b"real weights").hexdigest())


def test_versions_written_in_several_batches_are_the_row_by_row_ones(twins, tmp_path: Path, monkeypatch):
    """Versions are hashed and written a batch at a time (on PostgreSQL the server takes in one
    batch while the next is hashed, ledger.background_writes): many small batches, with parents
    across batch boundaries, still give the row-by-row path's ledger and rows."""
    from compliance.services import bulk_import

    monkeypatch.setattr(bulk_import, "WRITE_BATCH", 7)
    bulk_url, row_url = twins
    m = estate(tmp_path / "estate")
    assert run_import(bulk_url, m, bulk=True) == run_import(row_url, m, bulk=False)
    assert ledger(bulk_url) == ledger(row_url)
    assert rows(bulk_url) == rows(row_url)
    with session_scope(bulk_url, readonly=True) as s:
        assert verify(s).ok


def test_a_weights_file_that_goes_away_mid_import_leaves_the_store_unchanged(db_url, tmp_path: Path, monkeypatch):
    """A weights file checked as a plain file and then removed before its batch is hashed: the
    import stops with a one-line error naming the entry, and nothing of it is kept (including
    the batches already handed to the server)."""
    from compliance.services import bulk_import
    from tests.test_registry import snapshot

    monkeypatch.setattr(bulk_import, "WRITE_BATCH", 50)
    m = estate(tmp_path / "estate")
    doc = yaml.safe_load(m.read_text())
    victim = m.parent / doc["versions"][120]["weights"]
    checked = bulk_import.version_rows

    def then_remove(*args, **kwargs):
        out = checked(*args, **kwargs)
        victim.unlink()  # after the check, before its batch (the third) is hashed
        return out

    monkeypatch.setattr(bulk_import, "version_rows", then_remove)
    before = snapshot(db_url)
    with pytest.raises(ComplianceError, match=r"versions\[120\].*changed or went away during the import"):
        run_import(db_url, m, bulk=True)
    assert snapshot(db_url) == before


@pytest.mark.skipif(PG_BASE == "off", reason="PostgreSQL switched off by COMPLIANCE_TEST_PG=off")
@pytest.mark.parametrize("then", ["next statement", "end of block"])
def test_a_copy_that_fails_on_the_writer_thread_raises_in_the_caller_and_rolls_back(tmp_path: Path, then: str):
    """ledger.background_writes: the server refuses a batch (a duplicate key) while the caller
    goes on; the error reaches the caller at its next statement (or at the end of the block), once,
    and the transaction rolls
    back as if the COPY had run in the caller's thread: the one-line refusal a user sees."""
    from compliance.store.ledger import background_writes, insert_rows
    from compliance.store.models import Model
    from tests.test_registry import snapshot

    name = f"ct_{uuid.uuid4().hex[:12]}"
    with _admin_engine().connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_BASE.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url, clock=lambda: T0)
        before = snapshot(url)
        row = ["m1", "M", "use", "o", 1, [], None, T1, "t"]
        with pytest.raises(ComplianceError, match='the store refused the write: duplicate key .*"pk_model"'):
            with session_scope(url) as s, background_writes(s):
                insert_rows(s, Model.__table__, [row])
                insert_rows(s, Model.__table__, [row])  # refused by the server, on the writer thread
                insert_rows(s, Model.__table__, [["m2", *row[1:]]])  # not run: the transaction is aborted
                if then == "next statement":
                    s.execute(text("SELECT 1"))  # waits for the writer, and raises its error here
        assert snapshot(url) == before
    finally:
        make_engine(url).dispose()
        make_engine.cache_clear()
        with _admin_engine().connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
