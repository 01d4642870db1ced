"""The analysis load's Arrow reads (``compliance.store.columnar``) give exactly what the session's
own reads give, and are used only when their connection sees what the session sees."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from compliance.services.analysis import load_input
from compliance.services.dashboard import dashboard
from compliance.store import columnar
from compliance.store.columnar import ColumnarReader
from compliance.store.engine import session_scope
from compliance.store.ledger import record
from compliance.store.models import Acceptance, Artifact, Check
from tests.helpers import old_release
from tests.test_analysis_store import T0, Clock, build, fidelity

UTC = timezone.utc
FRAMES = ("models", "versions", "deployments", "artifacts", "checks", "volumes")


@pytest.fixture
def store(db_url, tmp_path):
    """Three models; fidelity checks of every status, out of time order within a pair, an accepted
    warn, an alignment check; and two checks an older release dated outside 1970..2200."""
    clock = Clock(T0 - timedelta(days=1))
    st = build(db_url, tmp_path, 3, clock)
    day = timedelta(days=1)
    # (no `inconclusive`: the older release's schema below cannot hold it)
    for i, status in enumerate(["pass", "warn", "fail", "error", "warn", "pass"]):
        fidelity(st, f"m{i % 3}-sae", f"m{i % 3}", status, T0 + (5 + 7 * i) * day)
    with st.session() as s:  # a check finished before the one recorded just before it
        c = s.scalars(select(Check).order_by(Check.id.desc())).first()
        record(s, Check(kind="fidelity", model_id=c.model_id, version_id=c.version_id, artifact_id=c.artifact_id,
                        input_hashes={}, parameters={}, metrics={}, status="warn", reasons=[], flags=[],
                        explained_variance=None, started_at=T0 + 2 * day, finished_at=T0 + 2 * day, tool_version="t"))
        record(s, Check(kind="alignment", model_id=c.model_id, version_id=c.version_id, artifact_id=c.artifact_id,
                        other_artifact_id=None, input_hashes={}, parameters={}, metrics={"survival_share": 0.7},
                        status="pass", reasons=[], flags=[], explained_variance=None, started_at=T0 + 3 * day,
                        finished_at=T0 + 3 * day, tool_version="t"))

    with st.session(actor="val") as s:  # a validator (not the developer) accepts the first warn
        warn = s.scalars(select(Check.id).where(Check.status == "warn").order_by(Check.id)).first()
        record(s, Acceptance(check_id=warn, rationale="within tolerance"))

    def odd(s):
        a = s.scalars(select(Artifact).order_by(Artifact.id)).first()
        for when in (datetime(1, 1, 1, tzinfo=UTC), datetime(2250, 1, 1, tzinfo=UTC)):
            record(s, Check(kind="fidelity", model_id=a.model_id, version_id=a.bound_version_id, artifact_id=a.id,
                            input_hashes={}, parameters={}, metrics={}, status="pass", reasons=[], flags=[],
                            explained_variance=0.9, started_at=when, finished_at=when, tool_version="0.2"))

    clock.t = T0 + 60 * day
    old_release(db_url, odd)
    return db_url


def _both(monkeypatch, fn):
    out = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(columnar.ENV, mode)
        out[mode] = fn()
    return out["0"], out["1"]


def test_arrow_reads_equal_the_session_reads(store, monkeypatch):
    at = datetime.now(UTC)  # the older release's records are recorded now
    monkeypatch.setenv(columnar.ENV, "1")  # a reader whatever the store's size
    with session_scope(store, readonly=True) as s:
        with ColumnarReader.open(s) as reader:
            assert reader.usable()  # the Arrow path is the one under test, not the fallback

    def load():
        with session_scope(store, readonly=True) as s:
            return load_input(s, at)

    driver, arrow = _both(monkeypatch, load)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(driver, name), getattr(arrow, name), check_exact=True)
    assert len(driver.checks) >= 8 and driver.checks["status"].nunique() >= 4

    def status():
        with session_scope(store, readonly=True) as s:
            return dashboard(s, quarter="2026Q3", as_of=at)

    a, b = _both(monkeypatch, status)
    assert a == b
    named = {f["record"] for f in b["data_quality"]["findings"]}
    assert sum(r.startswith("check_run ") for r in named) == 2  # the out-of-window checks, by name


def test_no_arrow_reader_when_turned_off_small_or_writing(store, monkeypatch):
    monkeypatch.setenv(columnar.ENV, "0")
    with session_scope(store, readonly=True) as s:
        assert ColumnarReader.open(s) is None
    monkeypatch.delenv(columnar.ENV)  # by default, a store this small is read through the session
    with session_scope(store, readonly=True) as s:
        assert ColumnarReader.open(s) is None
    monkeypatch.setattr(columnar, "MIN_CHECKS", 1)
    with session_scope(store, readonly=True) as s, ColumnarReader.open(s) as reader:
        assert reader.usable()
    monkeypatch.setenv(columnar.ENV, "1")
    # only a read-only session reads through another connection (a writing one sees its own entries)
    with session_scope(store) as s:
        assert ColumnarReader.open(s) is None


def test_no_arrow_reader_when_the_store_moved_since_the_session_read(store, monkeypatch):
    """SQLite: the session reads one snapshot; an entry committed after it is seen by a new
    connection, so the reader refuses. PostgreSQL: the reader imports the session's snapshot."""
    monkeypatch.setenv(columnar.ENV, "1")
    with session_scope(store, readonly=True) as s:
        before = s.scalar(select(Check.id).order_by(Check.id.desc()))
        with session_scope(store) as w:
            record(w, Acceptance(check_id=before, rationale="later"))
        with ColumnarReader.open(s) as reader:
            if store.startswith("sqlite"):
                assert not reader.usable()
                with pytest.raises(columnar.NotTheSameView):
                    reader.table(select(Acceptance.id))
                # the load falls back to the session's own reads: the same frames as with them alone
                now = datetime.now(UTC)
                got = load_input(s, now)
                monkeypatch.setenv(columnar.ENV, "0")
                want = load_input(s, now)
                for name in FRAMES:
                    pd.testing.assert_frame_equal(getattr(got, name), getattr(want, name))
            else:
                assert reader.usable()
                mine = s.scalar(select(Acceptance.id).order_by(Acceptance.id.desc()))
                theirs = reader.table(select(Acceptance.id).order_by(Acceptance.id.desc()).limit(1)).column(0)[0].as_py()
                assert theirs == mine


def test_a_reader_through_the_web_views_read_only_url(store, monkeypatch):
    """The web view opens the store read-only (SQLite `mode=ro` URI; PostgreSQL with
    `options=-c default_transaction_read_only=on`): its reader connects with the same options."""
    from compliance.web.config import readonly_url

    monkeypatch.setenv(columnar.ENV, "1")
    with session_scope(readonly_url(store), readonly=True) as s, ColumnarReader.open(s) as reader:
        assert reader.usable()
        assert reader.table(select(Check.id)).num_rows == s.scalar(select(func.count()).select_from(Check))


def test_postgres_statements_carry_their_values_as_literals():
    """Bound parameters make the PostgreSQL driver read row by row instead of with COPY: plain
    values are written into the statement, anything else stays a parameter."""
    from compliance.store.columnar import _inline_pg

    sql = "SELECT a FROM t WHERE k = $1::VARCHAR AND r <= $2::TIMESTAMP AND n IN ($3, $10) AND m = $11"
    params = ["o'brien", datetime(2026, 10, 1, 0, 0, 0, 123456), 7, *range(6), 42, -3]
    out, rest = _inline_pg(sql, params)
    assert rest == []
    assert out == ("SELECT a FROM t WHERE k = 'o''brien'::VARCHAR AND r <= '2026-10-01 00:00:00.123456'::TIMESTAMP "
                   "AND n IN (7, 42) AND m = -3")
    for odd in ("back\\slash", "new\nline", datetime(2026, 1, 1, tzinfo=UTC), 1.5, None, True, b"x"):
        assert _inline_pg("SELECT $1", [odd]) == ("SELECT $1", [odd])
    # a statement with quoted text of its own is left alone
    assert _inline_pg("SELECT '$1' || $1", ["x"]) == ("SELECT '$1' || $1", ["x"])


def test_status_takes_the_prestarted_reader_and_ends_an_unused_one(store, monkeypatch):
    """`compliance status` starts the reader process before it imports the analysis: the reader
    takes that process (the same status as through the session alone); a prestarted process no
    reader took (a writing session, a small store) ends with the block, and so does the taken one."""
    from compliance.store import columnar_child

    taken = []
    real_take = columnar_child.take

    def spy():
        proc = real_take()
        taken.append(proc)
        return proc

    monkeypatch.setattr(columnar, "take", spy)
    at = datetime.now(UTC)
    monkeypatch.setenv(columnar.ENV, "1")
    url = str(store)
    expected = columnar_child.readers_for(url.split(":", 1)[0].split("+", 1)[0])
    with columnar_child.prestarted(url):
        assert len(columnar_child._prestarted) == expected
        with session_scope(store, readonly=True) as s:
            with_reader = dashboard(s, as_of=at)
    assert len(taken) == expected and all(p is not None and p.poll() == 0 for p in taken)
    monkeypatch.setenv(columnar.ENV, "0")
    with session_scope(store, readonly=True) as s:
        alone = dashboard(s, as_of=at)
    assert with_reader == alone

    monkeypatch.setenv(columnar.ENV, "1")
    with columnar_child.prestarted(url):
        procs = list(columnar_child._prestarted)
        with session_scope(store) as s:  # writing: no reader, the processes are not taken
            assert ColumnarReader.open(s) is None
        assert all(p.poll() is None for p in procs)
    assert all(p.wait(timeout=30) == 0 for p in procs)  # ended on leaving, cleanly
    assert columnar_child._prestarted == []

    monkeypatch.setenv(columnar.ENV, "0")  # turned off: nothing is started
    with columnar_child.prestarted(url):
        assert columnar_child._prestarted == []


def test_sqlite_reads_the_checks_in_two_parts_on_two_cores(store, monkeypatch):
    """On SQLite (a read runs on one thread of its reader process) two readers each read half of
    the fidelity checks, split at the middle artifact; the parts joined in order are the one read's
    frame, value for value and in the same order (the covering index's). PostgreSQL reads in one part."""
    from compliance.services.analysis import _arrow_frame
    from compliance.store import analysis_reads, columnar_child
    from compliance.store.analysis_reads import fidelity_query, split_bound, start_fidelity_read

    monkeypatch.setenv(columnar.ENV, "1")
    at = datetime.now(UTC)
    _, cols, compact, _ = fidelity_query(at)
    convert = lambda t: _arrow_frame(t, cols, compact)  # noqa: E731
    with session_scope(store, readonly=True) as s:
        dialect = s.get_bind().dialect.name
        bound = split_bound(s)
        assert bound is not None and s.scalar(select(func.count()).select_from(Artifact).where(Artifact.id < bound)) > 0
        monkeypatch.setattr(analysis_reads, "readers_for", lambda d: 1)
        one = start_fidelity_read(s, at, then=convert)
        whole = one.futures[0].result()
        one.close()
        monkeypatch.setattr(analysis_reads, "readers_for", columnar_child.readers_for)
        started = start_fidelity_read(s, at, then=convert)
        try:
            parts = [f.result() for f in started.futures]
        finally:
            started.close()
    from compliance.services.analysis import _concat_frames

    if dialect == "sqlite":
        assert len(started.readers) == 2 and len(parts) == 3
        assert all(a < bound for a in parts[1]["artifact_id"].astype(object))
        assert all(a >= bound for a in parts[2]["artifact_id"].astype(object)) and len(parts[2])
    else:
        assert len(started.readers) == 1 and len(parts) == 1
    joined = _concat_frames(parts)
    assert len(whole) > 0
    # (a part whose times all parse sends them parsed, one with an unreadable time sends text: the
    # screen finds the same times usable, with the same values, and leaves out the same others)
    from compliance.analysis.quality import EARLIEST, LATEST, _parse_times

    for f in (joined, whole):
        t = _parse_times(f["finished_at"])
        usable = (t.notna() & (t >= EARLIEST) & (t < LATEST)).to_numpy()
        f["finished_at"] = np.where(usable, t.where(usable, EARLIEST).astype("datetime64[ns, UTC]").astype(str), "unusable")
    pd.testing.assert_frame_equal(joined, whole)


def test_a_reader_is_prestarted_only_for_a_store_worth_it(tmp_path, monkeypatch):
    from compliance.store import columnar_child

    small, big = tmp_path / "small.db", tmp_path / "big.db"
    small.write_bytes(b"x" * 1024)
    with open(big, "wb") as fh:  # a sparse file the size of a store of ~50,000 checks
        fh.truncate(columnar_child.SMALL_SQLITE_BYTES)
    monkeypatch.delenv(columnar.ENV, raising=False)
    assert columnar_child._worth_it(f"sqlite:///{big}")
    assert not columnar_child._worth_it(f"sqlite:///{small}")
    assert not columnar_child._worth_it(f"sqlite:///{tmp_path / 'none.db'}")
    assert columnar_child._worth_it("postgresql+psycopg://u@h/db")  # no size to look at
    assert not columnar_child._worth_it("sqlite://") and not columnar_child._worth_it("sqlite:///:memory:")
    assert columnar_child._worth_it(f"sqlite:///file:{small}?mode=ro&uri=true")  # a URI filename: not looked up
    monkeypatch.chdir(tmp_path)  # the default store: compliance.db here, absent
    assert not columnar_child._worth_it(None)
    monkeypatch.setenv(columnar.ENV, "1")
    assert columnar_child._worth_it(f"sqlite:///{small}")
    monkeypatch.setenv(columnar.ENV, "0")
    assert not columnar_child._worth_it("postgresql+psycopg://u@h/db")


def test_a_read_started_before_the_analysis_is_taken_over(store, monkeypatch):
    """`compliance status` starts reading the checks as soon as its session is open; the load takes
    that read over (the same status as through the session alone). A read started for another
    as-of is not used: the load reads for itself, and the started one's reader is closed."""
    from compliance.analysis.quality import EARLIEST, LATEST
    from compliance.store.analysis_reads import WINDOW_US, started_fidelity_read

    assert WINDOW_US == (EARLIEST.value // 1000, LATEST.value // 1000)
    at = datetime.now(UTC)
    monkeypatch.setenv(columnar.ENV, "0")
    with session_scope(store, readonly=True) as s:
        alone = dashboard(s, as_of=at)
        with started_fidelity_read(s, at) as started:
            assert started is None  # reads turned off: nothing started, the load reads as before
            assert dashboard(s, as_of=at, started=started) == alone
    monkeypatch.setenv(columnar.ENV, "1")
    for started_at in (at, at - timedelta(seconds=1)):
        with session_scope(store, readonly=True) as s, started_fidelity_read(s, started_at) as started:
            assert started is not None and all(r.usable() for r in started.readers)
            assert dashboard(s, as_of=at, started=started) == alone
            assert not any(r._thread.is_alive() for r in started.readers)  # closed by the load, whoever used it
