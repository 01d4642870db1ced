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

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from compliance.store.columnar import ColumnarReader
from compliance.store.models import Check
from compliance.store.raw import CHECK_COVER

# The analysable window (compliance.analysis.quality.EARLIEST .. LATEST: 1970-01-01 .. 2200-01-01
# UTC) in microseconds since the epoch: a reader process sends times parsed only inside it.
WINDOW_US = (0, 7_258_118_400_000_000)
# compact form of a frame column -> how a reader process sends it
ENCODE = {"cat": "dict", "ts": "ts"}


def fidelity_query(as_of: datetime) -> tuple:
    """The fidelity checks recorded by ``as_of`` (the bulk of the load): select, frame columns,
    their compact forms, SQLite's access path (the covering index: store.raw)."""
    return (select(Check.id, Check.version_id, Check.artifact_id, Check.status, Check.finished_at,
                   Check.explained_variance)
            .where(Check.kind == "fidelity", Check.recorded_at <= as_of, Check.version_id.is_not(None)),
            ["check_id", "version_id", "artifact_id", "status", "finished_at", "explained_variance"],
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


def submit_fidelity(reader: ColumnarReader, as_of: datetime, then: Callable[[Any], Any] | None = None) -> Future:
    """Queue the read of :func:`fidelity_query` on ``reader``; the future's result is the Arrow
    table, or ``then(table)``."""
    stmt, cols, compact, scan = fidelity_query(as_of)
    return reader.submit(stmt, then=then, encode=[ENCODE.get(compact.get(c)) for c in cols], window=WINDOW_US,
                         scan=scan)


@dataclass
class StartedRead:
    """The fidelity checks of ``session`` as of ``as_of``, being read by ``reader`` (``future``:
    the Arrow table)."""

    session: Session
    as_of: datetime
    reader: ColumnarReader
    future: Future

    def serves(self, session: Session, as_of: datetime) -> bool:
        return session is self.session and as_of == self.as_of


@contextmanager
def started_fidelity_read(session: Session, as_of: datetime) -> Iterator[StartedRead | None]:
    """Start reading the fidelity checks as of ``as_of`` on a reader of ``session`` (None when
    the session gets no reader: see :meth:`ColumnarReader.open`); the reader is closed on leaving
    whoever used it."""
    reader = ColumnarReader.open(session)
    if reader is None:
        yield None
        return
    try:
        yield StartedRead(session, as_of, reader, submit_fidelity(reader, as_of))
    finally:
        reader.close()
