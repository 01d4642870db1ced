"""The bulk path of `compliance import` (issue 16): models, versions and deployments at estate scale.

The row-by-row path calls :func:`registry.add_model`, :func:`registry.add_version` and
:func:`registry.deploy` per entry: an ORM flush, a few look-ups and a ledger append each
(≈ 2 ms a version). Here the same validation runs over the whole section first, against what
the store holds (read once, in chunks) plus what the manifest adds before it, with the same
checks and messages in the same order; the rows are then written with Core ``executemany`` and
one ledger append per batch (:func:`compliance.store.ledger.record_rows`). Integer keys are
reserved under the append lock (:func:`compliance.store.ledger.reserve_ids`), so each row gets
the id, payload, hash and place in the chain the row-by-row path would give it under the same
clock. Everything stays in the caller's one transaction: any error rolls all of it back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from compliance.errors import ComplianceError, Conflict, InputError, NotFound
from compliance.services.registry import Lookup, new_model_row, new_version_row
from compliance.store.door import check_time
from compliance.store.ledger import record_rows, reserve_ids
from compliance.store.models import DeploymentEvent, Model, ModelVersion

CHUNK = 500  # keys per IN (...) look-up
WRITE_BATCH = 2_000  # version rows hashed and written at a time


def _chunks(items: list, n: int = CHUNK) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Preloaded(Lookup):
    """The store's models and versions for the models a manifest names, read once; the manifest's
    own rows are added as they are validated, so later entries see earlier ones."""

    def __init__(self, session: Session, model_ids: Iterable[str]):
        super().__init__(session)
        wanted = sorted({m for m in model_ids if isinstance(m, str)})
        self.models: set[str] = set()
        self.versions: dict[tuple[str, str], int | None] = {}
        for part in _chunks(wanted):
            self.models.update(session.scalars(select(Model.id).where(Model.id.in_(part))))
            for vid, mid, label in session.execute(select(ModelVersion.id, ModelVersion.model_id, ModelVersion.label)
                                                   .where(ModelVersion.model_id.in_(part))):
                self.versions[(mid, label)] = vid
        self.stored_versions = set(self.versions)
        self._adapters: set[str] = set()
        self._dirs: dict[Path, str] = {}

    def model_exists(self, model_id: str) -> bool:
        return model_id in self.models

    def version_id(self, model_id: str, label: str) -> int | None:
        return self.versions.get((model_id, label))

    def check_adapter(self, adapter: str) -> None:
        if adapter not in self._adapters:
            super().check_adapter(adapter)
            self._adapters.add(adapter)

    def real_path(self, p: Path) -> str:
        """``p.resolve()`` with each folder resolved once (thousands of weights files share a few)."""
        if p.is_symlink():
            return str(p.resolve())
        d = self._dirs.get(p.parent)
        if d is None:
            d = self._dirs[p.parent] = str(p.parent.resolve())
        return os.path.join(d, p.name)


@contextmanager
def page_cache(session: Session, kib: int = 65_536) -> Iterator[None]:
    """On SQLite, a page cache of ``kib`` KiB for this connection while a bulk import writes
    (the default 2 MiB spills dirty pages of a large transaction to the WAL before the commit;
    ~15 % of the insert time at 12,000 records); the connection's own setting back after."""
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = {-int(kib)}")
    try:
        yield
    finally:
        try:
            conn.exec_driver_sql(f"PRAGMA cache_size = {int(before)}")
        except DBAPIError:  # a broken connection: its error (or the one on its way) is the one to report
            pass


def _named(where: Callable[[int], str], i: int, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ComplianceError as exc:
        raise type(exc)(f"{where(i)}: {exc}") from None


def add_models(session: Session, lookup: Preloaded, entries: list[dict[str, Any]], where: Callable[[int], str]) -> int:
    """``entries``: keyword arguments of :func:`registry.add_model`, in manifest order."""
    rows = []
    for i, e in enumerate(entries):
        row = _named(where, i, lambda e=e: new_model_row(session, lookup=lookup, **e))
        lookup.models.add(row["id"])
        rows.append(row)
    record_rows(session, Model, rows, where=where)
    return len(rows)


def add_versions(session: Session, lookup: Preloaded, entries: list[dict[str, Any]], where: Callable[[int], str]) -> int:
    """``entries``: keyword arguments of :func:`registry.add_version` (``model_id``, ``label``, ...)."""
    rows = []
    new: list[tuple[str, str]] = []
    for i, e in enumerate(entries):
        row = _named(where, i, lambda e=e: new_version_row(lookup, **e))
        key = (row["model_id"], row["label"])
        lookup.versions[key] = -len(new) - 1  # a placeholder id until ids are reserved below
        new.append(key)
        rows.append(row)
    return write_versions(session, lookup, rows, new, where)


def write_versions(session: Session, lookup: Preloaded, rows: list[dict[str, Any]], new: list[tuple[str, str]],
                   where: Callable[[int], str]) -> int:
    """Ids for validated version rows (``new``: their keys, already in ``lookup`` with placeholder
    ids -1, -2, ...; a parent in the manifest is named by its placeholder), then the rows."""
    ids = reserve_ids(session, ModelVersion, len(rows))
    placeholder = {-k - 1: vid for k, vid in enumerate(ids)}
    for row, key, vid in zip(rows, new, ids):
        row["id"] = vid
        lookup.versions[key] = vid
        if row["parent_id"] is not None and row["parent_id"] < 0:
            row["parent_id"] = placeholder[row["parent_id"]]
    # A batch at a time: on PostgreSQL (ledger.background_writes) the server takes in one batch
    # while the next one's weights files are hashed.
    for start in range(0, len(rows), WRITE_BATCH):
        batch = rows[start:start + WRITE_BATCH]
        for k, row in enumerate(batch):
            if row["weights_sha256"] is None:
                row["weights_sha256"] = _sha256_plain(row["weights_path"])
                if row["weights_sha256"] is None:
                    raise InputError(f"{where(start + k)}: weights file {row['weights_path']} changed or went away "
                                     "during the import; nothing was imported")
        record_rows(session, ModelVersion, batch, where=lambda k, start=start: where(start + k))
    return len(rows)


def version_rows(lookup: Preloaded, entries: list[dict[str, Any]], rel: Callable[[Any], Path]
                 ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]] | None:
    """The rows :func:`add_versions` builds from the manifest's ``versions`` section, computed
    without per-entry service calls: parsed times and windows memoised by their text, each
    weights folder resolved once, each weights file checked to be a regular file (no symlink
    followed; :func:`write_versions` hashes it when its batch is written).
    Nothing is written and ``lookup`` is unchanged unless every entry passes; None as soon as
    one entry is anything but plain (not text, a symlink, a missing file, any check failing):
    the caller then runs :func:`add_versions`, which gives the exact error (or result) in the
    exact order. Returns the rows and their keys, and ``lookup`` then holds the keys with
    placeholder ids as :func:`add_versions` leaves them."""
    from compliance.hashing import sha256_file
    from compliance.timeutil import parse_datetime, parse_window

    models, known = lookup.models, lookup.versions
    added: dict[tuple[str, str], int] = {}
    times: dict[str, Any] = {}
    windows: dict[Any, Any] = {None: (None, None)}
    dirs: dict[str, str | None] = {}
    rows: list[dict[str, Any]] = []
    keys: list[tuple[str, str]] = []
    for e in entries:
        model_id, label, weights = e["model"], e["version"], e["weights"]
        parent, trained, window = e.get("parent"), e.get("trained_at"), e.get("data_window")
        if type(model_id) is not str or type(label) is not str or type(weights) is not str:
            return None
        if model_id not in models or not label.strip():
            return None
        key = (model_id, label)
        if key in added or known.get(key) is not None:
            return None
        parent_id = None
        if parent:
            if type(parent) is not str:
                return None
            pk = (model_id, parent)
            parent_id = known.get(pk) if pk not in added else -added[pk] - 1
            if parent_id is None:
                return None
        try:
            trained_at = (times.get(trained) or times.setdefault(trained, parse_datetime(trained, what="trained_at"))
                          if type(trained) is str else parse_datetime(trained, what="trained_at")) if trained else None
            span = (windows.get(window) or windows.setdefault(window, parse_window(window, what="data_window"))
                    if type(window) is str or window is None else parse_window(window, what="data_window"))
        except ComplianceError:
            return None
        name = weights.rpartition("/")[2]
        folder = weights[:len(weights) - len(name)]
        real = dirs.get(folder, "") if name not in ("", ".", "..") else None
        if real == "":  # the folder resolved, with the separator os.path.join would put after it
            p = rel(weights)
            real = str(p.parent.resolve()) if p.name == name else None
            real = dirs[folder] = real if real is None or real.endswith("/") else real + "/"
        digest = None  # a plain file is hashed when its batch is written (write_versions)
        if not (real and _is_plain(real + name)):  # not a plain regular file (a symlink, say): as registry.new_version_row does it
            p = rel(weights)
            try:
                if not p.is_file():
                    return None
                path, digest = lookup.real_path(p), sha256_file(p)
            except (ComplianceError, OSError):
                return None
        else:
            path = real + name  # os.path.join(folder, name): name holds no separator
        added[key] = len(keys)
        keys.append(key)
        rows.append(dict(model_id=model_id, label=label, weights_path=path, weights_sha256=digest,
                         trained_at=trained_at, data_window_start=span[0], data_window_end=span[1], parent_id=parent_id))
    for k, key in enumerate(keys):
        known[key] = -k - 1
    return rows, keys


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _is_plain(path: str) -> bool:
    """A regular file, reached without following a symlink at its last step."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _sha256_plain(path: str) -> str | None:
    """SHA-256 of a regular file reached without following a symlink at its last step, read with
    plain system calls (no file object); None for anything else or any error."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def add_deployments(session: Session, lookup: Preloaded, entries: list[tuple[int, str, str, str, datetime]],
                    where: Callable[[int], str], ids: list[int]) -> int:
    """``entries``: (manifest index, model, version, action, at) in the order the row-by-row path
    records them (by time); the same checks as :func:`registry._deployment_event`, against the
    version's stored events (voided or superseded ones left out) and the manifest's earlier ones.
    ``ids``: their keys, reserved (:func:`reserve_ids`) before the versions were written, so
    that nothing here has to wait for those writes when no stored version is named."""
    from compliance.services.registry import _corrected_events

    now = session.info["clock"]()
    wanted = {(m, v) for _i, m, v, _a, _t in entries if (m, v) in lookup.stored_versions}
    stored_ids = sorted(lookup.versions[k] for k in wanted)
    events: dict[int, list[tuple[datetime, int, str]]] = {}
    for part in _chunks(stored_ids):  # each stored version's row locked first, as registry.deploy does
        session.execute(select(ModelVersion.id).where(ModelVersion.id.in_(part)).with_for_update())
        for vid, at, eid, action in session.execute(
                select(DeploymentEvent.version_id, DeploymentEvent.effective_at, DeploymentEvent.id, DeploymentEvent.action)
                .where(DeploymentEvent.version_id.in_(part), DeploymentEvent.id.not_in(_corrected_events()))):
            events.setdefault(vid, []).append((at, eid, action))
    rows = []
    for (i, model_id, label, action, at), eid in zip(entries, ids):
        def check(model_id=model_id, label=label, action=action, at=at) -> int:
            check_time(at, now, f"{action} time")
            if not lookup.model_exists(model_id):
                raise NotFound(f"unknown model {model_id!r} (see `compliance model list`)")
            vid = lookup.version_id(model_id, label)
            if vid is None:
                raise NotFound(f"unknown version {label!r} of model {model_id!r}")
            past = [e for e in events.get(vid, ()) if e[0] <= at]
            deployed = bool(past) and max(past)[2] == "deploy"
            if action == "deploy" and deployed:
                raise Conflict(f"{model_id} {label} is already deployed at {at.isoformat()}")
            if action == "retire" and not deployed:
                raise Conflict(f"{model_id} {label} is not deployed at {at.isoformat()}: nothing to retire")
            if any(e[0] > at for e in events.get(vid, ())):
                raise Conflict(f"{model_id} {label} already has a deployment event after {at.isoformat()} "
                               "(events must be recorded in time order)")
            return vid

        vid = _named(where, i, check)
        events.setdefault(vid, []).append((at, eid, action))
        rows.append(dict(id=eid, version_id=vid, action=action, effective_at=at))
    record_rows(session, DeploymentEvent, rows, where=lambda k: where(entries[k][0]))
    return len(rows)

