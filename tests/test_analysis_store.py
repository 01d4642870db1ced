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


def test_due_list_from_the_analysis_read_is_the_sql_aggregate(db_url, tmp_path):
    """`status` lists what is due from the fidelity checks the analysis reads (one read, not a second
    aggregate over every check): the same pairs as the SQL aggregate of `check run --due`, through
    every filter it applies — counting statuses only, the validity window, finished by the as-of,
    recorded by it (a backfill), and voided checks left out."""
    from compliance.services.corrections import void
    from compliance.services.dashboard import dashboard
    from compliance.services.due import due_pairs, due_plan_of, latest_counting, latest_counting_in
    from compliance.services.analysis import input_loader

    clock = Clock(T0 - timedelta(days=1))
    store = build(db_url, tmp_path, 6, clock)
    fidelity(store, "m0-sae", "m0", "pass", T0 + timedelta(days=2))  # outside a 90-day window by day 95
    fidelity(store, "m1-sae", "m1", "error", T0 + timedelta(days=40))  # an error is retried: still due
    fidelity(store, "m2-sae", "m2", "fail", T0 + timedelta(days=41))  # a failing check is not re-run
    fidelity(store, "m3-sae", "m3", "warn", T0 + timedelta(days=42, hours=3))
    fidelity(store, "m4-sae", "m4", "pass", T0 + timedelta(days=43))  # voided below, on day 60
    fidelity(store, "m3-sae", "m3", "inconclusive", T0 + timedelta(days=60))
    with store.session() as s:
        voided = s.query(Check.id).filter(Check.artifact_id == "m4-sae").scalar()
        void(s, "check", str(voided), reason="wrong data")
    store.clock.t = T0 + timedelta(days=97)  # recorded after the first as-of, finished before it
    with store.session() as s:
        from compliance.services.registry import get_version

        when = T0 + timedelta(days=50)
        record(s, Check(kind="fidelity", model_id="m5", version_id=get_version(s, "m5", "v1").id, artifact_id="m5-sae",
                        input_hashes={}, parameters={}, metrics={}, status="pass", reasons=[], flags=[],
                        explained_variance=0.9, started_at=when, finished_at=when, tool_version="t"))
    for at in (T0 + timedelta(days=45), T0 + timedelta(days=95), T0 + timedelta(days=98), T0 + timedelta(days=134)):
        with session_scope(db_url, readonly=True) as s:
            plan = due_plan_of(s, at)
            seen = {}
            with input_loader(s, at, with_flags=False, tap=lambda fid: seen.update(frame=fid)) as load:
                load()
            in_sql = latest_counting(s, plan)
            assert latest_counting_in(seen["frame"], plan) == in_sql
            status_due = dashboard(s, as_of=at)["due"]
            assert status_due == [{k: p[k] for k in ("artifact_id", "kind", "model_id", "version")}
                                  for p in due_pairs(s, at)]
        assert in_sql  # (the filters are exercised: some pairs have a counting check, others not)
    with session_scope(db_url, readonly=True) as s:
        assert {p["artifact_id"] for p in due_pairs(s, T0 + timedelta(days=95))} == {"m0-sae", "m1-sae", "m4-sae", "m5-sae"}
        # a past quarter's status lists what was due at the quarter's end (the SQL aggregate at that time)
        past = dashboard(s, quarter="2026Q3", as_of=T0 + timedelta(days=134))["due"]
        assert past == [{k: p[k] for k in ("artifact_id", "kind", "model_id", "version")}
                        for p in due_pairs(s, datetime(2026, 9, 30, 23, 59, 59, 999999, tzinfo=timezone.utc))]
