"""Safe concurrency (issue 21), on SQLite and PostgreSQL.

- `verify` while writers append reads one snapshot: no false alarm;
- concurrent deploys of one version record exactly one event;
- `check run --due` commits each check on its own and holds the write lock only for its appends:
  a writer never waits for the computation, and a crash keeps the checks that finished;
- a forked child never uses the parent's pooled connections.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from compliance.api import Store
from compliance.errors import Conflict
from compliance.store.engine import make_engine, session_scope
from compliance.store.models import Check, DeploymentEvent, Finding
from tests.helpers import saelens_folder, small_manifest

UTC = timezone.utc


@pytest.fixture
def store(db_url, tmp_path: Path) -> Store:
    s = Store(db_url)
    s.import_manifest(small_manifest(tmp_path / "bank"))
    return s


def _finding(store: Store, i: int) -> None:
    store.add_finding(model_id="retail-pd", severity="low", title=f"f{i}", owner="alice", due="2027-01-01")


def _count(url: str, model) -> int:
    with session_scope(url, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(model))


def test_verify_during_eight_writers_never_false_alarms(store):
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                _finding(store, k * 100_000 + i)
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    start = _count(store.url, Finding)
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while _count(store.url, Finding) < start + 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        results = []
        for _ in range(20):
            results.append(store.verify())
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert [r["summary"] for r in results if not r["ok"]] == []
    assert results[-1]["entries"] > results[0]["entries"]  # the writers did write meanwhile
    assert store.verify()["ok"]


def test_concurrent_deploys_of_one_version_record_one_event(store):
    before = _count(store.url, DeploymentEvent)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def deploy() -> None:
        barrier.wait()
        try:
            store.deploy("card-fraud", "v1", at="2026-02-01T00:00:00Z")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    # card-fraud v1 is deployed already: retire it first, then race 8 re-deploys
    store.retire("card-fraud", "v1", at="2026-01-15T00:00:00Z")
    threads = [threading.Thread(target=deploy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
    assert _count(store.url, DeploymentEvent) == before + 2  # the retire and exactly one deploy
    assert store.verify()["ok"]


# ---------------------------------------------------------------- check run --due
COMPUTE_S = 2.5


def _fake_fidelity(fail_on: str | None = None):
    """The real recording path around a computation that takes COMPUTE_S (a sleep stands in for
    the model forward passes; everything else is the service's own code)."""
    from compliance.services import checks as svc

    def run(session, artifact_id, version=None, **_kw):
        a = svc.get_artifact(session, artifact_id)
        v = svc.get_version(session, a.model_id, version)
        st = svc._start(session, "fidelity", a.model_id, v.id, a.id)
        time.sleep(COMPUTE_S)
        if artifact_id == fail_on:
            raise SystemExit("killed mid-run")
        c = svc._finish(session, st, status="pass", metrics={"explained_variance": 0.9}, reasons=[], flags=[],
                        input_hashes={"artifact": a.sha256}, parameters={}, explained_variance=0.9)
        return svc.check_view(session, c)

    return run


@pytest.fixture
def due_store(store, tmp_path):
    store.add_artifact("retail-pd", kind="sae", bound_version="v2", path=saelens_folder(tmp_path / "sae2", seed=3),
                       artifact_id="pd-sae-v2")
    from compliance.services.due import due_pairs

    with store.session(readonly=True) as s:
        pairs = due_pairs(s, datetime.now(UTC))
    assert [p["artifact_id"] for p in pairs] == ["pd-sae-v1", "pd-sae-v2"]
    return store


def test_a_writer_never_waits_for_a_due_check(due_store, monkeypatch):
    import compliance.services.due as due

    monkeypatch.setattr(due, "run_fidelity", _fake_fidelity())
    done: dict = {}
    runner = threading.Thread(target=lambda: done.setdefault("out", due_store.run_due()))
    t0 = time.perf_counter()
    runner.start()
    waits = []
    i = 0
    while runner.is_alive():
        t = time.perf_counter()
        _finding(due_store, i)
        waits.append(time.perf_counter() - t)
        i += 1
        time.sleep(0.2)
    runner.join()
    total = time.perf_counter() - t0
    assert [r["status"] for r in done["out"]["ran"]] == ["pass", "pass"]
    assert total >= 2 * COMPUTE_S and len(waits) >= 8
    assert max(waits) < 2.0, waits
    assert due_store.verify()["ok"]


def test_a_crash_keeps_the_due_checks_that_finished(due_store, monkeypatch):
    import compliance.services.due as due

    monkeypatch.setattr(due, "run_fidelity", _fake_fidelity(fail_on="pd-sae-v2"))
    with pytest.raises(SystemExit):
        due_store.run_due()
    with session_scope(due_store.url, readonly=True) as s:
        kept = [c.artifact_id for c in s.scalars(select(Check))]
    assert kept == ["pd-sae-v1"]
    assert due_store.verify()["ok"]


# ---------------------------------------------------------------- fork
def _child_writes(url: str, k: int, q) -> None:
    try:
        store = Store(url)
        for i in range(5):
            _finding(store, k * 10 + i)
        q.put(("ok", k))
    except BaseException as exc:  # pragma: no cover - reported by the parent
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def test_forked_children_do_not_share_pooled_connections(store):
    _finding(store, -1)  # the parent's pool now holds a connection (and SQLite handle) in use before
    engine = make_engine(store.url)
    assert engine.pool.checkedin() >= 1
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child_writes, args=(store.url, k, q)) for k in range(6)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
    assert sorted(r[0] for r in results) == ["ok"] * 6, results
    _finding(store, -2)  # the parent's own connections still work
    assert _count(store.url, Finding) == 32
    assert store.verify()["ok"]
