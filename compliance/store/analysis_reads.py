"""The check reads of the analysis load, defined without pandas.

`compliance status` starts the bulk read (:func:`started_fidelity_read`) as soon as its session is
open, before it imports the analysis: the reader process reads the fidelity checks while this one
imports pandas and lists the due pairs. :func:`compliance.services.analysis.input_loader` takes
the started read over (and reads for itself when none was started, or one for another as-of).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from compliance.store.columnar import ColumnarReader
from compliance.store.columnar_child import readers_for
from compliance.store.models import Artifact, Check
from compliance.store.raw import CHECK_COVER

# The analysable window (compliance.analysis.quality.EARLIEST .. LATEST: 1970-01-01 .. 2200-01-01
# UTC) in microseconds since the epoch: a reader process sends times parsed only inside it.
WINDOW_US = (0, 7_258_118_400_000_000)
# compact form of a frame column -> how a reader process sends it
ENCODE = {"cat": "dict", "ts": "ts"}


def fidelity_query(as_of: datetime, part: Any = None) -> tuple:
    """The fidelity checks recorded by ``as_of`` (the bulk of the load): select, frame columns,
    their compact forms, SQLite's access path (the covering index: store.raw). ``part``: a
    condition on the checks, for a read in parts (:func:`start_fidelity_read`)."""
    stmt = (select(Check.id, Check.version_id, Check.artifact_id, Check.status, Check.finished_at,
                   Check.explained_variance)
            .where(Check.kind == "fidelity", Check.recorded_at <= as_of, Check.version_id.is_not(None)))
    if part is not None:
        stmt = stmt.where(part)
    return (stmt, ["check_id", "version_id", "artifact_id", "status", "finished_at", "explained_variance"],
            {"check_id": "int", "version_id": "int", "artifact_id": "cat", "status": "cat", "finished_at": "ts",
             "explained_variance": "float"}, CHECK_COVER)


def other_checks_query(as_of: datetime, with_flags: bool) -> tuple:
    """Every other kind of check recorded by ``as_of`` (only alignment checks without flags), as
    :func:`fidelity_query`. Kinds an older release wrote are included, for the screen to name.
    "Any kind but fidelity" is written as two ranges, which the covering index answers with two
    seeks (SQLite cannot seek ``!=``: a scan of two million index entries, 0.2 s, to find none)."""
    oq = select(Check.id, Check.kind, Check.version_id, Check.artifact_id, Check.other_artifact_id, Check.status,
                Check.finished_at, Check.explained_variance).where(
        or_(Check.kind < "fidelity", Check.kind > "fidelity"), Check.recorded_at <= as_of,
        Check.version_id.is_not(None))
    if not with_flags:
        oq = oq.where(Check.kind == "alignment")
    return (oq, ["check_id", "kind", "version_id", "artifact_id", "other_artifact_id", "status", "finished_at",
                 "explained_variance"],
            {"check_id": "int", "kind": "cat", "version_id": "int", "artifact_id": "cat", "status": "cat",
             "finished_at": "ts", "explained_variance": "float"}, CHECK_COVER)


def submit_fidelity(reader: ColumnarReader, as_of: datetime, then: Callable[[Any], Any] | None = None,
                    part: Any = None) -> Future:
    """Queue the read of :func:`fidelity_query` (of ``part`` of the checks) on ``reader``; the
    future's result is the Arrow table, or ``then(table)``."""
    stmt, cols, compact, scan = fidelity_query(as_of, part)
    return reader.submit(stmt, then=then, encode=[ENCODE.get(compact.get(c)) for c in cols], window=WINDOW_US,
                         scan=scan)


def split_bound(session: Session) -> str | None:
    """The middle artifact id: the checks of the artifacts before it and those from it on are two
    halves of about the same size (checks of one artifact are never split), each a range of the
    covering index. None when there are fewer than two artifacts."""
    n = session.scalar(select(func.count()).select_from(Artifact)) or 0
    return session.scalar(select(Artifact.id).order_by(Artifact.id).offset(n // 2).limit(1)) if n > 1 else None


@dataclass
class StartedRead:
    """The fidelity checks of ``session`` as of ``as_of``, being read by ``readers`` (``futures``:
    the parts, in the order of the covering index: their Arrow tables or what ``then`` made of them)."""

    session: Session
    as_of: datetime
    readers: list[ColumnarReader]
    futures: list[Future] | None

    def serves(self, session: Session, as_of: datetime) -> bool:
        return session is self.session and as_of == self.as_of

    def close(self) -> None:
        for r in self.readers:
            r.close()


def start_fidelity_read(session: Session, as_of: datetime, then: Callable[[Any], Any] | None = None) -> StartedRead | None:
    """Start reading the fidelity checks as of ``as_of`` (None when the session gets no reader: see
    :meth:`ColumnarReader.open`); ``then``, if given, converts each part on its reader's thread.
    On SQLite, where a reader process reads on one thread, two readers each read half of the checks
    (:func:`split_bound`; the checks without an artifact, normally none, go first): twice as fast on
    two cores (3.0-4.8 s against 1.5-1.7 s for two million checks). A PostgreSQL read already runs in
    two processes, the server's and the reader's: one part (two were no faster)."""
    first = ColumnarReader.open(session)
    if first is None:
        return None
    readers = [first]
    try:
        if readers_for(first.dialect_name) > 1 and (bound := split_bound(session)) is not None:
            second = ColumnarReader.open(session)
            if second is not None:
                readers.append(second)
                futures = [submit_fidelity(first, as_of, then, Check.artifact_id.is_(None)),
                           submit_fidelity(first, as_of, then, Check.artifact_id < bound),
                           submit_fidelity(second, as_of, then, Check.artifact_id >= bound)]
                return StartedRead(session, as_of, readers, futures)
        return StartedRead(session, as_of, readers, [submit_fidelity(first, as_of, then)])
    except BaseException:
        for r in readers:
            r.close()
        raise


@contextmanager
def started_fidelity_read(session: Session, as_of: datetime) -> Iterator[StartedRead | None]:
    """:func:`start_fidelity_read` as a block: the readers are closed on leaving, whoever used them."""
    started = start_fidelity_read(session, as_of)
    try:
        yield started
    finally:
        if started is not None:
            started.close()
