"""The report's long tables, computed over lean columns and streamed in display order.

Every fidelity check of four quarters, every reason of a warned/failed/errored check and every
evidence row grow with the number of checks. Here each is read with the columns it shows,
in the order the pack shows it (SQL order plus a local re-sort where the display order is not a
column order), and handed row by row to a :class:`~compliance.report.tables.PageTable`: the
context keeps the first rows a page shows and the totals, the export's CSVs get every row on disk.
Memory is then bounded by the page, a few numpy arrays of ids and one query's fetch batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Integer, cast, select
from sqlalchemy.orm import Session

from compliance.hashing import canonical_json as _canon
from compliance.hashing import sha256_bytes
from compliance.report import context as C
from compliance.report.tables import SeriesKeeper
from compliance.report.tables import FullTables
from compliance.store.models import Check, LedgerEntry

#: rows fetched per round trip while streaming
BATCH = 5000
#: ids per IN (...) list
IN_CHUNK = 900

Usable = Callable[[int, Any, Any, Any], bool]


def _d(t: datetime | None) -> str | None:
    from compliance.services.report import _d as d

    return d(t)


def _f(x: Any) -> float | None:
    from compliance.services.report import _f as f

    return f(x)


def _by_text(session: Session, col):
    """``col`` ordered as Python orders str (code points): PostgreSQL's default collation may not."""
    return col.collate("C") if session.get_bind().dialect.name == "postgresql" else col


def _stream(session: Session, stmt) -> Iterator:
    return iter(session.execute(stmt.execution_options(yield_per=BATCH)))


def fidelity_section(session: Session, *, as_of: datetime, scope: list[str], hist_start: datetime,
                     qstart: datetime, qend: datetime, usable: Usable, label: dict, artifacts: dict,
                     protected: Callable[[Any, dict], bool | None], full: FullTables
                     ) -> tuple[C.FidelitySection, Counter, np.ndarray]:
    """Fidelity rows (by model, artifact, date, check id), the checks with a downstream figure,
    CLT per-layer rows (by check time), the chart's series, the quarter's fidelity outcomes and
    the ids of every usable fidelity check of the four quarters (for the evidence index)."""
    rows_t = full.table("fidelity_checks", C.FidelityRow)
    down_t = full.table("fidelity_downstream", C.FidelityRow)
    outcomes: Counter = Counter()
    ids: list[int] = []
    chart = SeriesKeeper(10)
    stmt = (select(Check.id, Check.artifact_id, Check.other_artifact_id, Check.model_id, Check.version_id,
                   Check.finished_at, Check.status, Check.metrics, Check.reasons)
            .where(Check.recorded_at <= as_of, Check.kind == "fidelity", Check.finished_at >= hist_start,
                   Check.finished_at < qend, Check.model_id.in_(scope))
            .order_by(_by_text(session, Check.model_id), _by_text(session, Check.artifact_id),
                      Check.finished_at, Check.id))
    group: list[C.FidelityRow] = []  # rows of one (model, artifact, date): re-sorted by check id
    art_points: list = []  # (date, version, check id, EV) of the current artifact
    cur_art: Any = None
    clt_keys: list[tuple[datetime, int]] = []

    def flush_group() -> None:
        group.sort(key=lambda r: int(r.check_id))
        for r in group:
            rows_t.add(r)
            if (r.kl is not None or r.loss_recovered is not None or r.decision_flip_rate is not None
                    or r.auc is not None or r.baseline_gap is not None):
                down_t.add(r)
        group.clear()

    for cid, aid, oid, mid, vid, fin, status, metrics, reasons in _stream(session, stmt):
        if not usable(cid, vid, aid, oid):
            continue
        ids.append(cid)
        if fin >= qstart:
            outcomes[status] += 1
        if not aid:
            continue
        m = metrics or {}
        if m.get("per_layer"):
            clt_keys.append((fin, cid))
        r = C.FidelityRow(
            check_id=str(cid), artifact_id=aid, kind=artifacts[aid].kind if aid in artifacts else "",
            model_id=mid, version=label.get(vid, "?"), date=_d(fin),
            explained_variance=_f(m.get("explained_variance")), mse=_f(m.get("mse")), cossim=_f(m.get("cossim")),
            l0=_f(m.get("l0")), dead_fraction=_f(m.get("dead_fraction")),
            decision_flip_rate=_f(m.get("decision_flip_rate")), status=status,
            dense_fraction=_f(m.get("dense_fraction")), kl=_f(m.get("kl")), loss_recovered=_f(m.get("loss_recovered")),
            auc=_f(m.get("auc")), protected=protected(artifacts.get(aid), m),
            baseline_gap=_f(m.get("baseline_gap")), reasons=[str(x) for x in reasons or []])
        if aid != cur_art:
            chart.add(cur_art, art_points)
            art_points, cur_art = [], aid
        if r.explained_variance is not None:
            art_points.append((r.date, r.version, r.check_id, r.explained_variance))
        if group and (group[0].model_id, group[0].artifact_id, group[0].date) != (mid, aid, r.date):
            flush_group()
        group.append(r)
    flush_group()
    chart.add(cur_art, art_points)
    clt_t = _clt_layers(session, clt_keys, full)
    series, n_art = chart.result()
    section = C.FidelitySection(checks=rows_t.rows, clt_layers=clt_t.rows, checks_total=rows_t.total,
                                downstream=down_t.rows, downstream_total=down_t.total,
                                clt_layers_total=clt_t.total, chart=series, chart_artifacts=n_art)
    return section, outcomes, np.asarray(ids, dtype=np.int64)


def _clt_layers(session: Session, keys: list[tuple[datetime, int]], full: FullTables):
    """Per-layer rows of the fidelity checks that recorded them (``keys``: their (finished, id)),
    by check time and id."""
    t = full.table("fidelity_clt_layers", C.CltLayerRow)
    keys.sort()
    for i in range(0, len(keys), IN_CHUNK):
        ids = [k[1] for k in keys[i:i + IN_CHUNK]]
        metrics = dict(session.execute(select(Check.id, Check.metrics).where(Check.id.in_(ids))).all())
        for cid in ids:
            for li, layer in enumerate((metrics.get(cid) or {}).get("per_layer") or []):
                t.add(C.CltLayerRow(check_id=str(cid), layer=int(layer.get("layer", li)),
                                    explained_variance=_f(layer.get("explained_variance")),
                                    mse=_f(layer.get("mse")), l0=_f(layer.get("l0"))))
    return t


def check_reasons(session: Session, *, as_of: datetime, scope: list[str], qstart: datetime, qend: datetime,
                  usable: Usable, label: dict, full: FullTables):
    """Every recorded reason of every usable check of the quarter that warned, failed or errored,
    by check time and id (one row per reason; '(no reason recorded)' when none)."""
    t = full.table("check_reasons", C.CheckReasonRow)
    stmt = (select(Check.id, Check.kind, Check.model_id, Check.version_id, Check.artifact_id,
                   Check.other_artifact_id, Check.finished_at, Check.status, Check.reasons)
            .where(Check.recorded_at <= as_of, Check.finished_at >= qstart, Check.finished_at < qend,
                   Check.model_id.in_(scope), Check.status.in_(("warn", "fail", "error")))
            .order_by(Check.finished_at, Check.id))
    for cid, kind, mid, vid, aid, oid, fin, status, reasons in _stream(session, stmt):
        if not usable(cid, vid, aid, oid):
            continue
        for r in (reasons or ["(no reason recorded)"]):
            t.add(C.CheckReasonRow(check_id=str(cid), kind=kind, model_id=mid, version=label.get(vid, "—"),
                                   artifact_id=aid, date=_d(fin), status=status, reason=str(r)))
    return t


def _chunks(ids: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _rows_by_id(session: Session, cols: list, key, ids: np.ndarray) -> Iterator:
    """Rows of ``cols`` whose ``key`` (an integer column) is in ``ids`` (sorted, unique), by key:
    a range scan where the ids are dense, IN lists where they are not."""
    for chunk in _chunks(ids, BATCH):
        lo, hi = int(chunk[0]), int(chunk[-1])
        if hi - lo < 4 * len(chunk):
            want = set(chunk.tolist())
            got = session.execute(select(*cols).where(key >= lo, key <= hi).order_by(key))
            yield from (r for r in got if r[0] in want)
        else:
            part = []
            for sub in _chunks(chunk, IN_CHUNK):
                part += session.execute(select(*cols).where(key.in_(sub.tolist()))).all()
            part.sort(key=lambda r: r[0])
            yield from part


def first_inserts(session: Session, as_of: datetime, entity_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(entity ids, seqs) of the first ledger entry that inserted each row of an integer-keyed
    table (an insert written by a replay inserted it all the same), sorted by id."""
    stmt = (select(cast(LedgerEntry.entity_id, Integer), LedgerEntry.seq)
            .where(LedgerEntry.entity_type == entity_type, LedgerEntry.action.in_(("insert", "replay")),
                   LedgerEntry.recorded_at <= as_of).order_by(LedgerEntry.seq))
    parts = [np.asarray(p, dtype=np.int64).reshape(-1, 2)
             for p in session.execute(stmt.execution_options(yield_per=100_000)).partitions()]
    both = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    ids, first = np.unique(both[:, 0], return_index=True)  # first occurrence = lowest seq
    return ids, both[first, 1]


def ledger_hashes(session: Session, seqs: Iterable[int]) -> dict[int, str]:
    """seq -> hash of the ledger entries ``seqs``."""
    arr = np.unique(np.fromiter((int(s) for s in seqs), dtype=np.int64))
    return {int(s): h for s, h in _rows_by_id(session, [LedgerEntry.seq, LedgerEntry.hash], LedgerEntry.seq, arr)}


def check_evidence(session: Session, *, as_of: datetime, relied: np.ndarray, label: dict,
                   mark: Callable[[str, Any], str]) -> Iterator[C.EvidenceRow]:
    """The evidence rows of the checks ``relied`` (sorted unique ids), by id, with the ledger
    entry that recorded each."""
    led_ids, led_seqs = first_inserts(session, as_of, "check_run")
    cols = [Check.id, Check.kind, Check.artifact_id, Check.model_id, Check.version_id, Check.status,
            Check.finished_at, Check.input_hashes]
    batch: list = []

    def emit(batch):
        ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
        pos = np.searchsorted(led_ids, ids)
        pos_ok = pos < len(led_ids)
        found = np.zeros(len(ids), dtype=bool)
        found[pos_ok] = led_ids[pos[pos_ok]] == ids[pos_ok]
        seqs = np.where(found, led_seqs[np.minimum(pos, max(len(led_ids) - 1, 0))] if len(led_ids) else 0, -1)
        hashes = ledger_hashes(session, (s for s in seqs.tolist() if s >= 0))
        for (cid, kind, aid, mid, vid, status, fin, hs), seq in zip(batch, seqs.tolist()):
            row = C.EvidenceRow(kind="check", ref=f"check {cid} ({kind})",
                                description=f"{aid or mid} on {label.get(vid, '-')}: {status}, {_d(fin)}"
                                            + mark("check_run", cid),
                                sha256=sha256_bytes(_canon(hs or {}).encode()))
            if seq >= 0:
                row.ledger_seq, row.ledger_hash = int(seq), hashes[int(seq)]
            yield row

    for r in _rows_by_id(session, cols, Check.id, relied):
        batch.append(tuple(r))
        if len(batch) >= BATCH:
            yield from emit(batch)
            batch = []
    if batch:
        yield from emit(batch)
