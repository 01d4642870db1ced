"""Coverage and debt from the store: a fixed number of queries, and as-of reproducibility."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import event

from compliance.api import Store
from compliance.services.analysis import analyse
from compliance.store.engine import make_engine, session_scope
from compliance.store.ledger import record
from compliance.store.models import Check
from tests.helpers import saelens_folder, weights_file

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def build(url: str, tmp_path, n_models: int, clock: Clock) -> Store:
    from compliance.store import migrate

    # a replay appends after the ledger head: re-create the store at the replay's own clock
    migrate.downgrade(url, "base")
    migrate.upgrade(url, clock=clock)
    store = Store(url, actor="tester", clock=clock, replay=True)
    w = weights_file(tmp_path / "w.safetensors")
    sae = saelens_folder(tmp_path / "sae")
    for i in range(n_models):
        m = f"m{i}"
        store.add_model(m, name=m, owner="alice", tier=2, use="u")
        store.add_version(m, "v1", weights=w)
        store.deploy(m, "v1", at=T0)
        store.add_artifact(m, kind="sae", bound_version="v1", path=sae, artifact_id=f"{m}-sae")
    return store


def fidelity(store: Store, artifact: str, model: str, status: str, when: datetime) -> None:
    from compliance.services.registry import get_version

    store.clock.t = when
    with store.session() as s:
        v = get_version(s, model, "v1")
        record(s, Check(kind="fidelity", model_id=model, version_id=v.id, artifact_id=artifact, input_hashes={},
                        parameters={}, metrics={"explained_variance": 0.9}, status=status, reasons=[], flags=[],
                        explained_variance=0.9, started_at=when, finished_at=when, tool_version="t"))


def count_queries(url, fn):
    engine = make_engine(url)
    n = [0]

    def before(*_a, **_k):
        n[0] += 1

    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return n[0]


def test_query_count_independent_of_models(db_url, tmp_path):
    clock = Clock(T0 - timedelta(days=1))
    store = build(db_url, tmp_path, 2, clock)
    fidelity(store, "m0-sae", "m0", "pass", T0 + timedelta(days=10))
    as_of = T0 + timedelta(days=100)
    with session_scope(db_url, readonly=True) as s:
        small = count_queries(db_url, lambda: analyse(s, "2026Q3", as_of))
    clock.t = T0 + timedelta(days=11)  # the replay goes on (never back in time): ten more models
    for i in range(2, 12):
        m = f"m{i}"
        store.add_model(m, name=m, owner="alice", tier=2, use="u")
        store.add_version(m, "v1", weights=tmp_path / "w.safetensors")
        store.deploy(m, "v1", at=T0)
    with session_scope(db_url, readonly=True) as s:
        big = count_queries(db_url, lambda: analyse(s, "2026Q3", as_of))
    assert small == big <= 10


def test_coverage_from_store_matches_hand_count_and_is_stable_as_of(db_url, tmp_path):
    clock = Clock(T0 - timedelta(days=1))
    store = build(db_url, tmp_path, 1, clock)
    # Validated on day 10 (July 11): days July 11 .. Sep 30 covered = 82 of 92 days.
    fidelity(store, "m0-sae", "m0", "pass", T0 + timedelta(days=10, hours=5))
    as_of = T0 + timedelta(days=95)
    with session_scope(db_url, readonly=True) as s:
        a = analyse(s, "2026Q3", as_of)
    m = a["by_model"][0]
    assert m["deployed_version_days"] == 92 and m["covered_version_days"] == 82
    assert m["stale_slot_days"] == 10 and m["debt"] == 10 and m["weighted_debt"] == 20
    # Evidence recorded later (a failing check in Q4) never changes the Q3 figures as of before it.
    fidelity(store, "m0-sae", "m0", "fail", T0 + timedelta(days=120))
    with session_scope(db_url, readonly=True) as s:
        assert analyse(s, "2026Q3", as_of) == a
        later = analyse(s, "2026Q4", T0 + timedelta(days=150))
    assert later["by_model"][0]["broken_slot_days"] > 0


def test_due_pairs_and_the_gate_as_of_a_time_ignore_checks_recorded_after_it(db_url, tmp_path):
    """`status --as-of T` lists the pairs due at T as they stood at T, and the gate's answer at T
    is the one it gave then: a check recorded later with an earlier finish time (a backfill) does
    not make a pair look validated at T, and counts from the time it was recorded."""
    from compliance.services.due import due_pairs
    from compliance.services.gate import evaluate
    from compliance.services.registry import get_version

    clock = Clock(T0 - timedelta(days=1))
    store = build(db_url, tmp_path, 1, clock)
    t = T0 + timedelta(days=20)
    with session_scope(db_url, readonly=True) as s:
        before = [(p["artifact_id"], p["version"]) for p in due_pairs(s, t)]
        gate_before = evaluate(s, "m0", "v1", t)
    assert before == [("m0-sae", "v1")]
    assert gate_before["decision"] == "refuse"
    clock.t = T0 + timedelta(days=30)  # recorded on day 30, finished on day 10
    when = T0 + timedelta(days=10)
    with store.session() as s:
        v = get_version(s, "m0", "v1")
        record(s, Check(kind="fidelity", model_id="m0", version_id=v.id, artifact_id="m0-sae", input_hashes={},
                        parameters={}, metrics={"explained_variance": 0.9}, status="pass", reasons=[], flags=[],
                        explained_variance=0.9, started_at=when, finished_at=when, tool_version="t"))
    with session_scope(db_url, readonly=True) as s:
        assert [(p["artifact_id"], p["version"]) for p in due_pairs(s, t)] == before
        assert due_pairs(s, T0 + timedelta(days=31)) == []
        assert evaluate(s, "m0", "v1", t) == gate_before
        assert evaluate(s, "m0", "v1", T0 + timedelta(days=31))["decision"] == "pass"
