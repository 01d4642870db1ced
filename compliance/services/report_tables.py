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
import json
from collections.abc import Callable, Iterable, Iterator
import math
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import Integer, Text, case, cast, func, literal_column, or_, select
from sqlalchemy.orm import Session

from compliance.hashing import canonical_json as _canon
from compliance.hashing import sha256_bytes
from compliance.report import context as C
from compliance.report.tables import FullTables
from compliance.store.models import Check, LedgerEntry
from compliance.store.raw import CHECK_COVER, CHECK_SCAN, Scan, raw_batches

#: rows fetched per round trip while streaming
BATCH = 5000
#: ids per IN (...) list
IN_CHUNK = 900

Usable = Callable[[int, Any, Any, Any], bool]


def _d(t: datetime | date | None) -> str | None:
    """ISO date (UTC) of a time, or the date itself."""
    if t is None:
        return None
    return (t.astimezone(timezone.utc).date() if isinstance(t, datetime) else t).isoformat()


def _f(x: Any) -> float | None:
    """A finite number as float, else None (booleans are not numbers here)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


_DOWNSTREAM = ("kl", "loss_recovered", "decision_flip_rate", "auc", "baseline_gap")


def _json_number(session: Session, key: str):
    """SQL: the JSON number ``metrics[key]`` (NULL when absent or not a number), per dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return literal_column(f"CASE WHEN json_typeof(check_run.metrics -> '{key}') = 'number' "
                              f"THEN CAST(check_run.metrics ->> '{key}' AS DOUBLE PRECISION) END")
    return literal_column(f"CASE WHEN json_type(check_run.metrics, '$.{key}') IN ('real', 'integer') "
                          f"THEN json_extract(check_run.metrics, '$.{key}') END")


def _has_downstream(session: Session):
    """SQL: 1 when any downstream figure of the metrics is a number (a LIKE first: cheap)."""
    text = cast(Check.metrics, Text)
    like = or_(*[text.like(f'%"{k}"%') for k in _DOWNSTREAM])
    return case((like, case((or_(*[_json_number(session, k).is_not(None) for k in _DOWNSTREAM]), 1), else_=0)),
                else_=0)


def _times(values) -> np.ndarray:
    """Stored times (DBAPI values: SQLite text, PostgreSQL datetimes) as int64 UTC nanoseconds."""
    import pandas as pd

    t = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
    return t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def _codes(values: np.ndarray, index: list, grow: bool = False) -> np.ndarray:
    """Strings as positions in ``index`` (-1: null; -2: not in it, unless ``grow`` appends it to
    ``index``), vectorised (a hash look-up in C, not a Python loop per value)."""
    import pandas as pd

    target = pd.Index(values, dtype=object)  # as objects: no string-dtype inference on millions of values
    codes = pd.Index(index, dtype=object).get_indexer(target) if len(index) else np.full(len(values), -1, np.int64)
    missing = codes == -1
    if missing.any():
        null = pd.isna(values) & missing
        unknown = missing & ~null
        if unknown.any() and grow:
            new = sorted(set(values[unknown].tolist()))
            index.extend(new)
            codes[unknown] = pd.Index(index, dtype=object).get_indexer(pd.Index(values[unknown], dtype=object))
        elif unknown.any():
            codes[unknown] = -2
    return codes.astype(np.int64, copy=False)


def _ints(values: np.ndarray, null: int = -1) -> np.ndarray:
    """Nullable integers (an object column) as int64, ``null`` for NULL."""
    none = np.equal(values, None)
    return np.where(none, null, values).astype(np.int64) if none.any() else values.astype(np.int64)


class LeanChecks:
    """Lean rows of fidelity checks, compact (ids, codes, int64 times, floats): ~60 bytes a row
    however many there are, read a batch at a time on the raw cursor. ``aids`` is the code list of
    artifact ids (codes are positions in it; ids met that are not in it are appended)."""

    COLS = ("id", "aid", "oid", "mid", "vid", "status", "fin", "ev", "down", "layers")

    def __init__(self, session: Session, stmt, aids: list[str], mids: list[str], batch: int = 200_000,
                 scan: Scan | None = None):
        from compliance.services.analysis import nullable_floats

        self.aids, self.mids = list(aids), list(mids)
        self.statuses: list[str] = []
        parts: dict[str, list] = {c: [] for c in self.COLS}
        for rows in raw_batches(session, stmt, batch, scan=scan):
            t = np.empty((len(rows), len(self.COLS)), dtype=object)
            t[:] = rows
            parts["id"].append(t[:, 0].astype(np.int64))
            parts["aid"].append(_codes(t[:, 1], self.aids, grow=True))
            parts["oid"].append(_codes(t[:, 2], self.aids, grow=True))
            parts["mid"].append(_codes(t[:, 3], self.mids))
            parts["vid"].append(_ints(t[:, 4]))
            parts["status"].append(_codes(t[:, 5], self.statuses, grow=True))
            parts["fin"].append(_times(t[:, 6]))
            parts["ev"].append(nullable_floats(t[:, 7]))
            parts["down"].append(t[:, 8].astype(np.int8))
            parts["layers"].append(t[:, 9].astype(np.int8))
            del t, rows
        for c in self.COLS:
            setattr(self, c, np.concatenate(parts[c]) if parts[c] else np.empty(0, dtype=np.int64))
        if not parts["ev"]:
            self.ev = np.empty(0, dtype=np.float64)

    def take(self, mask: np.ndarray) -> None:
        for c in self.COLS:
            setattr(self, c, getattr(self, c)[mask])

    def subset(self, mask: np.ndarray) -> "LeanChecks":
        """A new instance holding the rows of ``mask`` (the code lists are shared)."""
        out = LeanChecks.__new__(LeanChecks)
        out.aids, out.mids, out.statuses = self.aids, self.mids, self.statuses
        for c in self.COLS:
            setattr(out, c, getattr(self, c)[mask])
        return out

    def status_code(self, name: str) -> int:
        return self.statuses.index(name) if name in self.statuses else -9


def _ns(t: datetime) -> int:
    return int(np.datetime64(t.astimezone(timezone.utc).replace(tzinfo=None), "ns").astype(np.int64))


def lean_fidelity(session: Session, *, as_of: datetime, scope: list[str], aids: list[str]) -> LeanChecks:
    """Every fidelity check of the models in ``scope`` recorded by ``as_of``, lean, read once for
    the fidelity section, the status changes and the relied-on checks (``aids``: every artifact
    id known at the as-of, sorted, so that a code's order is the id's order). The explained
    variance is the check's column, which every writer fills from its metrics (reading it out of
    the JSON costs a parse per row: 7 s at two million checks on SQLite). The two flags read
    from the metrics (a downstream figure; per-layer rows) come from a second query that scans
    the table once and returns only the flagged checks: the columns of the first are all in the
    covering index, and the metrics are not."""
    where = (Check.recorded_at <= as_of, Check.kind == "fidelity", Check.model_id.in_(scope))
    lean = LeanChecks(session, select(
        Check.id, Check.artifact_id, Check.other_artifact_id, Check.model_id, Check.version_id, Check.status,
        Check.finished_at, Check.explained_variance, literal_column("0"), literal_column("0")).where(*where),
        aids, sorted(scope), scan=CHECK_COVER)  # (SQLite: the planner would walk model_id or recorded_at)
    text = cast(Check.metrics, Text)
    layers = text.like('%"per_layer"%')
    flagged = select(Check.id, _has_downstream(session), case((layers, 1), else_=0)).where(
        *where, or_(layers, *[text.like(f'%"{k}"%') for k in _DOWNSTREAM]))
    rows = [r for batch in raw_batches(session, flagged, 100_000, scan=CHECK_SCAN) for r in batch]
    if rows and len(lean.id):
        got = np.array(rows, dtype=np.int64).reshape(-1, 3)
        order = np.argsort(lean.id, kind="stable")
        pos = order[np.searchsorted(lean.id, got[:, 0], sorter=order)]
        lean.down[pos] = got[:, 1]
        lean.layers[pos] = got[:, 2]
    return lean


def status_changes(lean: LeanChecks, start: datetime, end: datetime) -> list[tuple[int, str, int, str, int, str]]:
    """Fidelity checks in [start, end) whose status differs from the artifact's previous check
    (by finish time, then id): (check id, artifact id, version id, status, finish ns, previous
    status), in (finish time, id) order."""
    has = lean.aid >= 0
    ids, aid, st, fin, vid = lean.id[has], lean.aid[has], lean.status[has], lean.fin[has], lean.vid[has]
    by_time = np.lexsort((ids, fin))
    by_art = by_time[np.argsort(aid[by_time], kind="stable")]  # per artifact, in time order
    cur, prev = by_art[1:], by_art[:-1]
    hit = (aid[cur] == aid[prev]) & (st[cur] != st[prev]) & (fin[cur] >= _ns(start)) & (fin[cur] < _ns(end))
    rows, before = cur[hit], st[prev[hit]]
    o = np.lexsort((ids[rows], fin[rows]))
    rows, before = rows[o], before[o]
    names = lean.statuses
    return [(int(ids[r]), lean.aids[aid[r]], int(vid[r]), names[st[r]], int(fin[r]), names[b])
            for r, b in zip(rows.tolist(), before.tolist())]


def fidelity_section(session: Session, lean: LeanChecks, *, as_of: datetime, hist_start: datetime,
                     qstart: datetime, qend: datetime, keep: "Keep", label: dict, artifacts: dict,
                     protected: Callable[[Any, dict], bool | None], full: FullTables
                     ) -> tuple[C.FidelitySection, Counter, np.ndarray]:
    """Fidelity rows (by model, artifact, date, check id), the checks with a downstream figure,
    CLT per-layer rows (by check time), the chart's series, the quarter's fidelity outcomes and
    the ids of every usable fidelity check of the four quarters (for the evidence index).

    Over the lean rows (ids, keys, status, time, the explained variance and two flags read from
    the metrics in SQL; :func:`lean_fidelity`) ordered and counted in numpy. A printed row's
    cells come from the lean rows (:class:`_LeanCells`); only its metrics and reasons are read
    again: for the rows a page shows, or, with a CSV to write, for every row, in display order,
    a batch at a time."""
    rows_t = full.table("fidelity_checks", C.FidelityRow)
    down_t = full.table("fidelity_downstream", C.FidelityRow)
    in_hist = (lean.fin >= _ns(hist_start)) & (lean.fin < _ns(qend))
    lean = lean.subset(in_hist & keep.mask_codes(lean))
    ids_all = np.sort(lean.id)
    in_q = lean.fin >= _ns(qstart)
    counts = np.bincount(lean.status[in_q], minlength=len(lean.statuses)) if in_q.any() else np.zeros(0, np.int64)
    outcomes = Counter({lean.statuses[k]: int(n) for k, n in enumerate(counts.tolist()) if n})
    lean.take(lean.aid >= 0)
    day = lean.fin // 86_400_000_000_000
    order = np.lexsort((lean.id, day, lean.aid, lean.mid))
    disp_ids = lean.id[order]
    down = lean.down[order] == 1
    cells = _LeanCells(lean, order, label, artifacts, protected)
    if full.folder is not None:  # every row, in display order, to the CSVs
        where = (Check.kind == "fidelity", Check.recorded_at <= as_of, Check.finished_at >= hist_start,
                 Check.finished_at < qend)
        for flags, batch in _fidelity_rows_all(session, cells, where):
            # copies: a table turns its own lists' cells into CSV text
            down_t.add_many([list(v) for v, d in zip(batch, flags) if d])
            rows_t.add_many(batch)
    else:  # only the rows a page shows
        head = np.arange(min(len(disp_ids), rows_t.limit))
        head_down = np.flatnonzero(down)[:down_t.limit]
        want = np.union1d(head, head_down)  # positions in display order
        values = dict(zip(want.tolist(), _fidelity_rows_at(session, cells, want)))
        rows_t.add_many([values[k] for k in head.tolist()])
        down_t.add_many([values[k] for k in head_down.tolist()])
    rows_t.total, down_t.total = len(disp_ids), int(down.sum())
    layers = lean.layers == 1
    clt_keys = sorted(zip(lean.fin[layers].tolist(), lean.id[layers].tolist()))
    clt_t = _clt_layers(session, clt_keys, full)
    series, n_art = _chart(lean, day, label)
    section = C.FidelitySection(checks=rows_t.rows, clt_layers=clt_t.rows, checks_total=rows_t.total,
                                downstream=down_t.rows, downstream_total=down_t.total,
                                clt_layers_total=clt_t.total, chart=series, chart_artifacts=n_art)
    return section, outcomes, ids_all


def _chart(lean: LeanChecks, day: np.ndarray, label: dict, top_n: int = 10) -> tuple[list[C.FidelitySeries], int]:
    """The fidelity chart's series (``tables.fidelity_series`` over the lean columns): per
    artifact its checks with an explained variance by (date, version, check id as text); the
    ``top_n`` artifacts with the lowest latest value, ties by artifact id. The latest value of an
    artifact is among its checks of its latest day, so only those are ordered by text."""
    import pandas as pd

    ok = np.isfinite(lean.ev)
    if not ok.any():
        return [], 0
    aid, d, ev, vid, cid = lean.aid[ok], day[ok], lean.ev[ok], lean.vid[ok], lean.id[ok]

    def frame(sel: np.ndarray) -> pd.DataFrame:
        uv = _sorted_unique(vid[sel])
        ver = np.array([label.get(int(v), "?") for v in uv], dtype=object)[np.searchsorted(uv, vid[sel])]
        f = pd.DataFrame({"aid": aid[sel], "day": d[sel], "ev": ev[sel], "ver": ver, "cid": cid[sel].astype(str)})
        return f.sort_values(["aid", "day", "ver", "cid"], kind="stable")

    o = np.lexsort((d, aid))
    a_s, d_s = aid[o], d[o]
    is_last = np.r_[a_s[1:] != a_s[:-1], True]
    arts, last_day = a_s[is_last], d_s[is_last]
    on_last_day = o[d_s == last_day[np.searchsorted(arts, a_s)]]
    last = frame(on_last_day).drop_duplicates("aid", keep="last").sort_values(["ev", "aid"], kind="stable")
    out = []
    for code in last["aid"].tolist()[:top_n]:
        rs = frame(np.flatnonzero(aid == code))
        out.append(C.FidelitySeries(artifact_id=lean.aids[code], versions=rs["ver"].tolist(),
                                    values=[float(x) for x in rs["ev"].tolist()]))
    return out, int(len(last))


def _with_metrics(head: list, status: str, metrics: Any, reasons: Any, art: Any, kind: str,
                  protected: Callable[[Any, dict], bool | None]) -> list:
    """A fidelity row's values: ``head`` (id, artifact, kind, model, version, date, explained
    variance) and the cells read from its metrics and reasons (documents or their JSON text)."""
    if isinstance(metrics, str):
        metrics = json.loads(metrics) if metrics != "{}" else None
    if isinstance(reasons, str):
        reasons = json.loads(reasons) if reasons != "[]" else None
    # only a probe's target can be a protected attribute: ``protected`` is asked about probes only
    prot = protected(art, metrics or {}) if kind == "probe" else None
    if metrics:
        g = metrics.get
        mse, cossim, l0, dead, flip, dense, kl, lrec, auc, gap = [_f(g(k)) for k in _ROW_METRICS]
    else:
        mse = cossim = l0 = dead = flip = dense = kl = lrec = auc = gap = None
    head += [mse, cossim, l0, dead, flip, status, dense, kl, lrec, auc, prot, gap,
             [str(x) for x in reasons] if reasons else []]
    return head


_ROW_METRICS = ("mse", "cossim", "l0", "dead_fraction", "decision_flip_rate", "dense_fraction", "kl",
                "loss_recovered", "auc", "baseline_gap")
# JSON columns as their stored text (``cast`` is a no-op on SQLite): only a non-empty document is
# decoded, in Python, instead of every one by the driver (PostgreSQL) or the ORM
_DOC_COLS = (Check.id, cast(Check.metrics, Text), cast(Check.reasons, Text))


class _LeanCells:
    """The printed fidelity rows' cells that come from the lean rows (the checks the section
    counts, as of the same time), in display order: id, artifact, kind, model, version, date,
    explained variance (the check's column — the figure the analysis and the chart use; every
    writer fills it from the metrics) and status. Only a check's metrics and reasons are read
    again, per check (:meth:`values`); both the page and the CSV take their rows from here."""

    def __init__(self, lean: LeanChecks, order: np.ndarray, label: dict, artifacts: dict,
                 protected: Callable[[Any, dict], bool | None]):
        self.label, self.protected = label, protected
        self.aid, self.mid = lean.aid[order], lean.mid[order]
        self.ids, self.down = lean.id[order], lean.down[order] == 1
        arts = [artifacts.get(a) for a in lean.aids]
        self.names = np.array(lean.aids, dtype=object)
        self.kinds = np.array([a.kind if a is not None else "" for a in arts], dtype=object)
        self.art_of = np.empty(len(arts), dtype=object)
        self.art_of[:] = arts
        self.mids, self.statuses = np.array(lean.mids, dtype=object), np.array(lean.statuses, dtype=object)
        self.vid, self.st, self.ev, self.fin = lean.vid[order], lean.status[order], lean.ev[order], lean.fin[order]

    def values(self, at: slice | np.ndarray, docs: list) -> list[list]:
        """The field values (``C.FidelityRow``'s order) of the rows at display positions ``at``;
        ``docs``: each one's (id, metrics, reasons) as stored (JSON text or documents)."""
        a = self.aid[at]
        e = self.ev[at]
        evs = [x if ok else None for x, ok in zip(e.tolist(), np.isfinite(e).tolist())]
        heads = zip(self.ids[at].astype(str).tolist(), self.names[a].tolist(), self.kinds[a].tolist(),
                    self.mids[self.mid[at]].tolist(), [self.label.get(v, "?") for v in self.vid[at].tolist()],
                    np.datetime_as_string((self.fin[at] // 86_400_000_000_000).astype("datetime64[D]"), unit="D").tolist(),
                    evs)
        return [_with_metrics(list(h), status, doc[1], doc[2], art, kind, self.protected)
                for h, status, doc, art, kind in zip(heads, self.statuses[self.st[at]].tolist(), docs,
                                                      self.art_of[a].tolist(), self.kinds[a].tolist())]


def _fidelity_rows_at(session: Session, cells: _LeanCells, at: np.ndarray) -> list[list]:
    """The field values of the rows at display positions ``at`` (the few a page shows), their
    metrics and reasons read by check id."""
    ids = cells.ids[at]
    got = {r[0]: r for r in _rows_by_id(session, list(_DOC_COLS), Check.id, np.unique(ids), raw=True)}
    return cells.values(at, [got[i] for i in ids.tolist()])


def _fidelity_rows_all(session: Session, cells: _LeanCells, where: tuple,
                       per_query: int = 200) -> Iterator[tuple[list[bool], list[list]]]:
    """Every row in display order, as batches of (downstream flags, the rows' field values). The
    metrics and reasons are read by artifact (the covering index finds the checks; ``where``
    bounds them as the lean rows were bounded), ``per_query`` artifacts in display order at a
    time, on the driver's cursor, and put in order here (no row is looked up by id)."""
    aid, mid, ids, names = cells.aid, cells.mid, cells.ids, cells.names
    starts = np.flatnonzero(np.r_[True, (aid[1:] != aid[:-1]) | (mid[1:] != mid[:-1])]) if len(aid) else np.empty(0, int)
    bounds = np.r_[starts, len(aid)]
    for g in range(0, len(starts), per_query):
        lo, hi = int(bounds[g]), int(bounds[min(g + per_query, len(starts))])
        want = dict(zip(ids[lo:hi].tolist(), range(hi - lo)))  # id -> position in the batch
        arts_here = sorted(names[sorted(set(aid[lo:hi].tolist()))].tolist())
        got: list = [None] * (hi - lo)
        for k in range(0, len(arts_here), IN_CHUNK):
            stmt = select(*_DOC_COLS).where(*where, Check.artifact_id.in_(arts_here[k:k + IN_CHUNK]))
            for rows in raw_batches(session, stmt):
                for row in rows:
                    pos = want.get(row[0])
                    if pos is not None:
                        got[pos] = row
        if None in got:  # cannot happen: the lean rows come from the same store as of the same time
            raise RuntimeError(f"fidelity check {int(ids[lo + got.index(None)])} vanished while the report was built")
        yield cells.down[lo:hi].tolist(), cells.values(slice(lo, hi), got)


class Keep:
    """Which checks the pack may use: not left out by the data-quality screen or a correction,
    on a usable version (or none), naming usable artifacts (or none)."""

    def __init__(self, left_out_checks: set[int], versions: Iterable[int], artifacts: Iterable[str]):
        self.left_out = left_out_checks
        self.versions = set(versions)
        self.artifacts = set(artifacts)

    def __call__(self, cid: int, vid: Any, aid: Any, oid: Any) -> bool:
        return (cid not in self.left_out and (vid is None or vid in self.versions)
                and (aid is None or aid in self.artifacts) and (oid is None or oid in self.artifacts))

    def mask_codes(self, lean: "LeanChecks") -> np.ndarray:
        """The same test over lean rows (artifact codes: -1 none, else a position in ``lean.aids``)."""
        ok = ~np.isin(lean.id, np.fromiter(self.left_out, dtype=np.int64, count=len(self.left_out)))
        ok &= (lean.vid == -1) | np.isin(lean.vid, np.fromiter(self.versions, dtype=np.int64, count=len(self.versions)))
        usable = np.array([a in self.artifacts for a in lean.aids] + [True], dtype=bool)  # [-1] = no artifact
        ok &= usable[lean.aid] & usable[lean.oid]
        return ok


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
    by check time and id (one row per reason; '(no reason recorded)' when none). With the export's
    CSV to write, every row streams in that order; otherwise the checks are read lean (keys and
    the number of reasons, counted in SQL), ordered here, and only those the page shows are read
    in full."""
    t = full.table("check_reasons", C.CheckReasonRow)
    where = (Check.recorded_at <= as_of, Check.finished_at >= qstart, Check.finished_at < qend,
             Check.model_id.in_(scope), Check.status.in_(("warn", "fail", "error")))
    cols = (Check.id, Check.kind, Check.model_id, Check.version_id, Check.artifact_id,
            Check.other_artifact_id, Check.finished_at, Check.status, cast(Check.reasons, Text))

    def add(row) -> None:  # a row as SQLAlchemy or the driver returns it (reasons: a list or its JSON text)
        cid, kind, mid, vid, aid, oid, fin, status, reasons = row
        if isinstance(reasons, str):
            reasons = json.loads(reasons) if reasons != "[]" else None
        head = [str(cid), kind, mid, label.get(vid, "—"), aid, _raw_day(fin), status]
        for r in (reasons or ["(no reason recorded)"]):
            t.add_values(head + [str(r)])

    if full.folder is not None:
        for rows in raw_batches(session, select(*cols).where(*where).order_by(Check.finished_at, Check.id), BATCH):
            for row in rows:
                if usable(row[0], row[3], row[4], row[5]):
                    add(row)
        return t
    n = func.coalesce(func.json_array_length(Check.reasons), 0)
    keys = [r for batch in raw_batches(session, select(Check.id, Check.version_id, Check.artifact_id,
                                                              Check.other_artifact_id, Check.finished_at, n)
                                                       .where(*where), 100_000, scan=CHECK_SCAN)
            for r in batch if usable(r[0], r[1], r[2], r[3])]
    if not keys:
        return t
    ids = np.fromiter((r[0] for r in keys), dtype=np.int64, count=len(keys))
    fin = _times(np.array([r[4] for r in keys], dtype=object))
    counts = np.maximum(np.fromiter((r[5] for r in keys), dtype=np.int64, count=len(keys)), 1)
    order = np.lexsort((ids, fin))
    ids, counts = ids[order], counts[order]
    before = np.cumsum(counts) - counts  # reasons of the checks before each one
    page = ids[before < t.limit]
    got = {}
    for chunk in _chunks(page, IN_CHUNK):
        got.update((r[0], r) for r in session.execute(select(*cols).where(Check.id.in_(chunk.tolist()))))
    for cid in page.tolist():
        add(got[cid])
    rest = int(counts[len(page):].sum())
    if rest:
        t.skip(rest)
    return t


def _chunks(ids: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _rows_by_id(session: Session, cols: list, key, ids: np.ndarray, raw: bool = False) -> Iterator:
    """Rows of ``cols`` whose ``key`` (an integer column) is in ``ids`` (sorted, unique), by key:
    a range scan where the ids are dense, IN lists where they are not. ``raw``: the driver's
    values (no ORM type processing: JSON as text on SQLite, times as stored)."""
    def run(stmt):
        if raw:
            return [r for rows in raw_batches(session, stmt) for r in rows]
        return session.execute(stmt).all()

    for chunk in _chunks(ids, BATCH):
        lo, hi = int(chunk[0]), int(chunk[-1])
        if hi - lo < 4 * len(chunk):
            want = set(chunk.tolist())
            got = run(select(*cols).where(key >= lo, key <= hi).order_by(key))
            yield from (r for r in got if r[0] in want)
        else:
            part = []
            for sub in _chunks(chunk, IN_CHUNK):
                part += run(select(*cols).where(key.in_(sub.tolist())))
            part.sort(key=lambda r: r[0])
            yield from part


def _raw_day(v: Any) -> str | None:
    """The ISO date of a time as the driver returns it (SQLite: the stored UTC text; PostgreSQL:
    a naive UTC datetime)."""
    if v is None:
        return None
    if isinstance(v, str):
        return v[:10]
    return v.date().isoformat() if v.tzinfo is None else _d(v)  # naive: UTC by the store's convention


def first_inserts(session: Session, as_of: datetime, entity_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(entity ids, seqs) of the first ledger entry that inserted each row of an integer-keyed
    table (an insert written by a replay inserted it all the same), sorted by id."""
    stmt = (select(cast(LedgerEntry.entity_id, Integer), LedgerEntry.seq)
            .where(LedgerEntry.entity_type == entity_type, LedgerEntry.action.in_(("insert", "replay")),
                   LedgerEntry.recorded_at <= as_of).order_by(LedgerEntry.seq))
    parts = [np.asarray(p, dtype=np.int64).reshape(-1, 2)
             for p in session.execute(stmt.execution_options(yield_per=100_000)).partitions()]
    both = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    first = _first_of(both[:, 0])  # first occurrence = lowest seq, by id
    ids = both[first, 0]
    return ids, both[first, 1]


def ledger_hashes(session: Session, seqs: Iterable[int]) -> dict[int, str]:
    """seq -> hash of the ledger entries ``seqs``."""
    arr = np.unique(np.fromiter((int(s) for s in seqs), dtype=np.int64))
    return {int(s): h for s, h in _rows_by_id(session, [LedgerEntry.seq, LedgerEntry.hash], LedgerEntry.seq, arr)}


def check_evidence(session: Session, *, as_of: datetime, relied: np.ndarray, label: dict,
                   marks: dict[int, str], all_of_them: bool) -> Iterator[list]:
    """The evidence rows of the checks ``relied`` (sorted unique ids), by id, with the ledger
    entry that recorded each, as field values (``C.EvidenceRow``'s order). ``marks``: the note
    after a check's description (voided, left out) by check id. ``all_of_them``: ``relied`` is
    every check of the index (one scan of the ledger finds their entries) rather than the few a
    page shows (looked up by id)."""
    if all_of_them:
        led_ids, led_seqs = first_inserts(session, as_of, "check_run")
    cols = [Check.id, Check.kind, Check.artifact_id, Check.model_id, Check.version_id, Check.status,
            Check.finished_at, cast(Check.input_hashes, Text)]

    def emit(batch):
        if all_of_them:
            ids = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
            pos = np.minimum(np.searchsorted(led_ids, ids), max(len(led_ids) - 1, 0))
            hit = (led_ids[pos] == ids) if len(led_ids) else np.zeros(len(ids), dtype=bool)
            seqs = [int(s) if h else None for s, h in zip(led_seqs[pos].tolist() if len(led_ids) else [0] * len(ids),
                                                           hit.tolist())]
            hashes = ledger_hashes(session, (s for s in seqs if s is not None))
            cites = [None if s is None else (s, hashes[s]) for s in seqs]
        else:
            from compliance.services.report import cited_entries

            got = cited_entries(session, as_of, [("check_run", str(r[0])) for r in batch])
            cites = [got.get(("check_run", str(r[0]))) for r in batch]
        for (cid, kind, aid, mid, vid, status, fin, hs), cite in zip(batch, cites):
            if isinstance(hs, str):  # the stored text (many checks share their input hashes' document)
                digest = hashed.get(hs)
                if digest is None:
                    digest = hashed[hs] = sha256_bytes(_canon(json.loads(hs) or {}).encode())
            else:  # NULL
                digest = sha256_bytes(_canon(hs or {}).encode())
            seq, h = cite if cite is not None else (None, "")
            yield ["check", f"check {cid} ({kind})",
                   f"{aid or mid} on {label.get(vid, '-')}: {status}, {_raw_day(fin)}{marks.get(cid, '')}", digest, seq, h]

    hashed: dict = {}
    batch: list = []
    for r in _rows_by_id(session, cols, Check.id, relied, raw=True):
        batch.append(tuple(r))
        if len(batch) >= BATCH:
            yield from emit(batch)
            batch = []
    if batch:
        yield from emit(batch)


def relied_checks(session: Session, lean: LeanChecks, *, qstart: datetime, ids: np.ndarray, more: set[int],
                  artifacts: dict) -> np.ndarray:
    """The ids (sorted) of every check the pack relies on: ``ids`` (the fidelity checks it
    prints), ``more`` (the quarter's other checks, the compute budget's, the failure-mode
    register's: those not in the store are dropped), each artifact's baseline (first non-error
    fidelity check on its bound version) and the latest fidelity check per artifact and version
    before the quarter (the validity carried into it). Over the lean rows of every fidelity check
    (:func:`lean_fidelity`), in numpy."""
    out = [ids]
    lean = lean.subset(lean.aid >= 0)
    if len(lean.id):
        lean.take(np.lexsort((lean.id, lean.fin)))
        bound = np.array([artifacts[a].bound_version_id if a in artifacts else -2 for a in lean.aids], dtype=np.int64)
        known = bound[lean.aid] != -2
        on_bound = known & (lean.status != lean.status_code("error")) & (lean.vid == bound[lean.aid])
        out.append(lean.id[on_bound][_first_of(lean.aid[on_bound])])  # first by (time, id)
        pre = lean.fin < _ns(qstart)
        pair = lean.aid[pre] * (int(lean.vid.max()) + 2) + (lean.vid[pre] + 1)
        out.append(lean.id[pre][::-1][_first_of(pair[::-1])])  # last by (time, id)
    have = _sorted_unique(np.concatenate(out).astype(np.int64))
    extra = _sorted_unique(np.fromiter(more, dtype=np.int64, count=len(more)))
    pos = np.minimum(np.searchsorted(have, extra), max(len(have) - 1, 0))
    rest = extra[have[pos] != extra] if len(have) else extra
    found = np.asarray([r[0] for r in _rows_by_id(session, [Check.id], Check.id, rest)], dtype=np.int64)
    return _sorted_unique(np.concatenate([have, found])) if len(found) else have


def _first_of(keys: np.ndarray) -> np.ndarray:
    """Index of the first entry of each distinct key (``np.unique(..., return_index=True)``'s
    second result, by one stable sort)."""
    o = np.argsort(keys, kind="stable")
    k = keys[o]
    return o[np.r_[True, k[1:] != k[:-1]]] if len(k) else o


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of integers by one sort (numpy's hash-based unique is several times slower
    on millions of ids)."""
    a = np.sort(a, kind="stable")
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a
