"""Drift pushed down to where the data lives: any SQLAlchemy dialect (PostgreSQL, SQLite, …).

No row leaves the engine. Every statistic is computed from aggregates the engine returns (counts,
minima, maxima, sums, per-bin counts), each statement a ``GROUP BY`` with a bounded number of groups:

1. **Counts and ranges** (one statement per side): rows, finite values, ±inf, minimum, maximum and
   sum of each numeric column. A value is *finite* when ``x > -inf AND x < inf`` in the engine's
   double precision: NULL, NaN and ±inf are missing, as in the in-memory path.
2. **Exact reference deciles** by histogram refinement: the ranks numpy's type-7 quantiles need
   (:func:`compliance.checks.drift.order_stat_indices`) are located by a ``RANK_BINS``-cell histogram
   of the reference (``GROUP BY`` cell, with each cell's count, minimum and maximum); each rank's cell
   becomes the next range ``[min, max]`` of the values it holds, refined again until it holds one
   distinct value — the order statistic itself. All pending ranges of all columns go in one
   statement per level (``UNION ALL``); a handful of levels suffices (each divides the range by
   ``RANK_BINS``). The edges are then interpolated exactly as numpy does, so they equal
   ``np.quantile`` bit for bit, and **PSI, JS and chi-square equal the in-memory exact path**.
3. **Per-bin counts** (one statement per side): each value's decile bin (``CASE`` over the edges,
   right-closed as :mod:`compliance.checks.drift`) and its cell on the same asinh grid as the
   streaming path (:mod:`compliance.checks.drift_stream`), grouped together. PSI and JS come from
   the bin counts; KS and Wasserstein from the grid with the streaming path's documented a-posteriori
   bounds (``ks_error_bound``, ``wasserstein_error_bound``). The reference standard deviation is a
   second aggregate pass ``Σ (x − mean)²``.
4. **Categorical counts**: ``GROUP BY`` the column per side (NULL counted as missing).

Every statement and its result rows are hashed in order (:attr:`PushdownResult.aggregates_sha256`),
so the check records what it computed from — query text, engine and version, and that hash — and
the evidence can be reproduced without the rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from compliance.checks.drift import (
    DriftPolicy,
    DriftResult,
    FeatureDrift,
    categorical_drift_counts,
    finish,
    js_from_counts,
    order_stat_indices,
    psi_from_counts,
    quantile_edges_from_order_stats,
)
from compliance.errors import InputError

RANK_BINS = 4096
GRID_BINS = 1 << 16
MAX_LEVELS = 12

# type codes PostgreSQL reports for numeric columns (int2, int4, int8, float4, float8, numeric, oid)
_PG_NUMERIC = {20, 21, 23, 26, 700, 701, 1700}


@dataclass
class PushdownResult:
    result: DriftResult
    engine: str  # dialect name
    engine_version: str
    statements: int
    aggregates_sha256: str
    queries: dict = field(default_factory=dict)  # side → query text

    def evidence(self) -> dict:
        return {"engine": self.engine, "engine_version": self.engine_version, "statements": self.statements,
                "aggregates_sha256": self.aggregates_sha256, "queries": self.queries}


class _Warehouse:
    """Runs aggregate statements on one connection and keeps a hash of everything it returned."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect.name
        self._h = hashlib.sha256()
        self.statements = 0

    def q(self, name: str) -> str:
        return self.conn.dialect.identifier_preparer.quote(name)

    def lit(self, x: float) -> str:
        """A float64 literal the engine reads back to the same double."""
        if math.isinf(x):
            s = "Infinity" if x > 0 else "-Infinity"
            return f"CAST('{s}' AS DOUBLE PRECISION)" if self.dialect == "postgresql" else ("9e999" if x > 0 else "-9e999")
        r = repr(float(x))
        return f"CAST('{r}' AS DOUBLE PRECISION)" if self.dialect == "postgresql" else r

    def num(self, col: str) -> str:
        typ = "DOUBLE PRECISION" if self.dialect == "postgresql" else "REAL"
        return f"CAST({self.q(col)} AS {typ})"

    def finite(self, x: str) -> str:
        return f"({x} > {self.lit(-math.inf)} AND {x} < {self.lit(math.inf)})"

    def floor_nonneg(self, x: str) -> str:
        """floor of a non-negative finite value (SQLite: CAST truncates; SQLAlchemy's floor() there
        is a Python function per row)."""
        return f"CAST({x} AS INTEGER)" if self.dialect == "sqlite" else f"FLOOR({x})"

    def rows(self, sql: str) -> list[tuple]:
        try:
            out = [tuple(r) for r in self.conn.execute(text(sql)).all()]
        except SQLAlchemyError as e:
            msg = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise InputError(f"the warehouse refused a drift aggregate ({self.dialect}): {msg}") from None
        self.statements += 1
        rows = sorted(json.dumps([_plain(v) for v in r], default=str) for r in out)  # engines order groups freely
        self._h.update(json.dumps([sql, rows]).encode())
        return out

    def digest(self) -> str:
        return self._h.hexdigest()

    def version(self) -> str:
        info = self.conn.dialect.server_version_info
        if self.dialect == "sqlite":
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version}"
        return f"{self.dialect} {'.'.join(map(str, info)) if info else '?'}"


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def _source(query: str) -> str:
    q = query.strip().rstrip(";").strip()
    if not q:
        raise InputError("empty drift query")
    return f"({q}) AS src"


def _kinds(wh: _Warehouse, src: str, cols: list[str]) -> dict[str, str]:
    """numeric / categorical per column, from the engine's own types (aggregates only)."""
    if wh.dialect == "postgresql":
        cur = wh.conn.exec_driver_sql(f"SELECT * FROM {src} LIMIT 0")
        codes = {d[0]: d[1] for d in cur.cursor.description}
        return {c: "numeric" if codes.get(c) in _PG_NUMERIC else "categorical" for c in cols}
    out = {}
    for c in cols:  # SQLite: storage classes of the non-NULL values
        types = {t for (t,) in wh.rows(f"SELECT DISTINCT typeof({wh.q(c)}) FROM {src} WHERE {wh.q(c)} IS NOT NULL")}
        out[c] = "numeric" if types and types <= {"integer", "real"} else "categorical"
    return out


_PG_TEMPORAL = {1082, 1083, 1114, 1184, 1266}


def query_schema(warehouse: str, query: str) -> list[tuple[str, str]]:
    """[(column, dtype)] of a query's result, from the engine's metadata (no row is read):
    'float64' for numeric columns, 'datetime' for dates and times, 'object' otherwise."""
    engine = _engine(warehouse)
    try:
        with _connect(engine) as conn:
            wh = _Warehouse(conn)
            src = _source(_as_query(query))
            cols = _columns(wh, src, "query")
            if wh.dialect == "postgresql":
                cur = conn.exec_driver_sql(f"SELECT * FROM {src} LIMIT 0")
                codes = {d[0]: d[1] for d in cur.cursor.description}
                return [(c, "datetime" if codes.get(c) in _PG_TEMPORAL else
                         "float64" if codes.get(c) in _PG_NUMERIC else "object") for c in cols]
            kinds = _kinds(wh, src, cols)
            return [(c, "float64" if kinds[c] == "numeric" else "object") for c in cols]
    finally:
        engine.dispose()


def _engine(url: str) -> Engine:
    try:
        return create_engine(url)
    except Exception as e:  # bad URL, missing driver
        raise InputError(f"cannot use warehouse {redact(url)}: {str(e).splitlines()[0]}") from None


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except SQLAlchemyError as e:
        msg = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise InputError(f"cannot reach the warehouse: {msg}") from None


def redact(url: str) -> str:
    """The URL without its password (what the evidence records)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _columns(wh: _Warehouse, src: str, where: str) -> list[str]:
    try:
        res = wh.conn.execute(text(f"SELECT * FROM {src} LIMIT 0"))
    except SQLAlchemyError as e:
        msg = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise InputError(f"the {where} query failed ({wh.dialect}): {msg}") from None
    return list(res.keys())


@dataclass
class _Side:
    rows: int = 0
    n: dict = field(default_factory=dict)
    inf: dict = field(default_factory=dict)
    lo: dict = field(default_factory=dict)
    hi: dict = field(default_factory=dict)
    total: dict = field(default_factory=dict)


def _counts(wh: _Warehouse, src: str, num: list[str]) -> _Side:
    parts = ["COUNT(*)"]
    for c in num:
        x = wh.num(c)
        v = f"CASE WHEN {wh.finite(x)} THEN {x} END"
        parts += [f"COUNT({v})", f"COUNT(CASE WHEN {x} = {wh.lit(math.inf)} OR {x} = {wh.lit(-math.inf)} THEN 1 END)",
                  f"MIN({v})", f"MAX({v})", f"SUM({v})"]
    (row,) = wh.rows(f"SELECT {', '.join(parts)} FROM {src}")
    s = _Side(rows=int(row[0]))
    for i, c in enumerate(num):
        n, inf, lo, hi, tot = row[1 + 5 * i: 6 + 5 * i]
        s.n[c], s.inf[c] = int(n), int(inf or 0)
        s.lo[c], s.hi[c], s.total[c] = (float(lo), float(hi), float(tot)) if n else (math.nan, math.nan, math.nan)
    return s


def _cell(wh: _Warehouse, x: str, lo: float, width: float, bins: int) -> str:
    """Cell index of ``x`` on ``bins`` equal cells from ``lo`` (clipped to the grid)."""
    t = f"(({x} - {wh.lit(lo)}) / {wh.lit(width)})"
    return f"(CASE WHEN {t} >= {bins} THEN {bins - 1} WHEN {t} < 0 THEN 0 ELSE {wh.floor_nonneg(t)} END)"


@dataclass
class _Range:
    col: str
    a: float
    b: float
    ranks: dict  # rank within this range → original rank


def _order_stats(wh: _Warehouse, src: str, num: list[str], ref: _Side) -> dict[str, dict[int, float]]:
    """Exact order statistics of the reference by histogram refinement (module docstring, step 2)."""
    found: dict[str, dict[int, float]] = {c: {} for c in num}
    pending = []
    for c in num:
        if ref.n[c]:
            ks = [int(k) for k in order_stat_indices(ref.n[c])]
            pending.append(_Range(c, ref.lo[c], ref.hi[c], {k: k for k in ks}))
    for _level in range(MAX_LEVELS):
        todo = []
        for r in pending:
            if r.a == r.b:
                for k in r.ranks.values():
                    found[r.col][k] = r.a
            else:
                todo.append(r)
        if not todo:
            return found
        parts = []
        for i, r in enumerate(todo):
            x = wh.num(r.col)
            cell = _cell(wh, x, r.a, (r.b - r.a) / RANK_BINS, RANK_BINS)
            parts.append(f"SELECT {i} AS k, {cell} AS cell, COUNT(*) AS n, MIN({x}) AS lo, MAX({x}) AS hi FROM {src} "
                         f"WHERE {x} >= {wh.lit(r.a)} AND {x} <= {wh.lit(r.b)} GROUP BY {cell}")
        rows = wh.rows(" UNION ALL ".join(parts))
        by: dict[int, list] = {}
        for k, cell, n, lo, hi in rows:
            by.setdefault(int(k), []).append((int(cell), int(n), float(lo), float(hi)))
        nxt: dict[tuple, _Range] = {}
        for i, r in enumerate(todo):
            cells = sorted(by.get(i, []))
            cum = np.cumsum([n for _, n, _, _ in cells])
            for local, orig in r.ranks.items():
                j = int(np.searchsorted(cum, local, side="right"))
                before = int(cum[j - 1]) if j else 0
                _, _, lo, hi = cells[j]
                if (lo, hi) == (r.a, r.b):  # no progress: the engine's arithmetic cannot split it
                    raise InputError(f"column {r.col!r}: the warehouse's histogram could not separate the values "
                                     f"in [{r.a!r}, {r.b!r}]")
                key = (r.col, lo, hi)
                nxt.setdefault(key, _Range(r.col, lo, hi, {})).ranks[local - before] = orig
        pending = list(nxt.values())
    raise InputError(f"reference deciles did not resolve in {MAX_LEVELS} histogram passes")


def _std(wh: _Warehouse, src: str, cols: list[str], mean: dict) -> dict[str, float]:
    parts = []
    for c in cols:
        x = wh.num(c)
        d = f"({x} - {wh.lit(mean[c])})"
        parts.append(f"SUM(CASE WHEN {wh.finite(x)} THEN {d} * {d} END)")
    (row,) = wh.rows(f"SELECT {', '.join(parts)} FROM {src}")
    return {c: float(v or 0.0) for c, v in zip(cols, row)}


def _bins_and_grid(wh: _Warehouse, src: str, grid: dict) -> dict[str, dict]:
    """Per numeric column: counts per (grid cell, decile bin) with each group's minimum and maximum."""
    parts = []
    cols = list(grid)
    for i, c in enumerate(cols):
        g = grid[c]
        x = wh.num(c)
        b = "CASE " + " ".join(f"WHEN {x} <= {wh.lit(e)} THEN {j}" for j, e in enumerate(g["e"])) + f" ELSE {g['e'].size} END"
        u = f"asinh(({x} - {wh.lit(g['center'])}) / {wh.lit(g['scale'])})"
        cell = _cell(wh, u, g["ulo"], g["du"], g["bins"])
        parts.append(f"SELECT {i} AS k, {cell} AS g, {b} AS b, COUNT(*) AS n, MIN({x}) AS lo, MAX({x}) AS hi "
                     f"FROM {src} WHERE {wh.finite(x)} GROUP BY {cell}, {b}")
    out: dict[str, dict] = {c: {} for c in cols}
    for k, cell, b, n, lo, hi in wh.rows(" UNION ALL ".join(parts)):
        out[cols[int(k)]][(int(cell), int(b))] = (int(n), float(lo), float(hi))
    return out


def _psi_counts(groups: dict, n_bins: int) -> np.ndarray:
    out = np.zeros(n_bins, np.int64)
    for (_, b), (n, _, _) in groups.items():
        out[b] += n
    return out


def ks_wasserstein_cells(ref: dict, cur: dict, n1: int, n2: int, std: float) -> tuple[float, float, float, float]:
    """KS D, Wasserstein-1 / max(std, floor) and their a-posteriori bounds from grouped counts.

    ``ref`` / ``cur``: ``{cell key: (count, min, max)}`` with keys ordered as the values are. The
    groups' supports ``[min, max]`` (over both sides) are disjoint and ordered, so each CDF is known
    exactly after every group and constant between groups; inside a group holding several distinct
    values it moves by at most the group's share. Hence ``ks_stat`` (the largest CDF gap after a
    group) is a lower bound of D with ``D − ks_stat ≤ max(p_ref, p_cur)`` over groups with more
    than one value (0 when each group is one value), and ``|W − wasserstein| ≤ Σ (max − min) ·
    (p_ref + p_cur) / 2`` (exact between groups, midpoint inside)."""
    from compliance.checks.drift import STD_FLOOR

    keys = sorted(set(ref) | set(cur))
    h1 = np.array([ref.get(k, (0,))[0] for k in keys], np.float64)
    h2 = np.array([cur.get(k, (0,))[0] for k in keys], np.float64)
    lo = np.array([min(x[1] for x in (ref.get(k), cur.get(k)) if x) for k in keys])
    hi = np.array([max(x[2] for x in (ref.get(k), cur.get(k)) if x) for k in keys])
    F1, F2 = np.cumsum(h1) / n1, np.cumsum(h2) / n2
    dd = F1 - F2
    d = float(np.max(np.abs(dd))) if dd.size else 0.0
    p1, p2 = h1 / n1, h2 / n2
    spread = hi > lo
    ks_bound = float(np.max(np.maximum(p1, p2)[spread])) if spread.any() else 0.0
    F1a, F2a = np.concatenate([[0.0], F1[:-1]]), np.concatenate([[0.0], F2[:-1]])
    inside = np.abs((F1a + F1) / 2 - (F2a + F2) / 2) * (hi - lo)
    between = np.abs(dd[:-1]) * (lo[1:] - hi[:-1])
    norm = max(std, STD_FLOOR)
    w = (float(inside.sum()) + float(between.sum())) / norm
    w_bound = float(np.dot(hi - lo, (p1 + p2) / 2)) / norm
    return min(d, 1.0), ks_bound, w, w_bound


def _categories(wh: _Warehouse, src: str, col: str) -> tuple[dict[str, int], int]:
    counts, missing = {}, 0
    for v, n in wh.rows(f"SELECT {wh.q(col)}, COUNT(*) FROM {src} GROUP BY {wh.q(col)}"):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            missing += int(n)
        else:
            counts[str(v)] = counts.get(str(v), 0) + int(n)
    return counts, missing


def compute_drift_sql(
    warehouse: str | Engine | Connection,
    reference: str,
    current: str,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    policy: DriftPolicy = DriftPolicy(),
    grid_bins: int = GRID_BINS,
) -> PushdownResult:
    """Drift between two queries run where the data lives (see the module docstring).

    ``warehouse``: a SQLAlchemy URL, engine or connection; ``reference`` / ``current``: SELECT
    statements (or table names) whose columns are the features."""
    from compliance.checks.drift import kinds_for, ks_pvalue, resolve_features

    own = isinstance(warehouse, str)
    engine = _engine(warehouse) if own else None
    ctx = _connect(engine) if own else (_connect(warehouse) if isinstance(warehouse, Engine) else None)
    conn = ctx if ctx is not None else warehouse
    try:
        wh = _Warehouse(conn)
        srcs = {"reference": _source(_as_query(reference)), "current": _source(_as_query(current))}
        cols = {side: _columns(wh, s, side) for side, s in srcs.items()}
        feats, cats = resolve_features(cols["reference"], cols["current"], features, categorical)
        for name, sql in srcs.items():  # an empty window says so before any type is guessed from it
            if wh.rows(f"SELECT COUNT(*) FROM {sql}")[0][0] == 0:
                raise InputError(f"the {name} window has 0 rows")
        plain = [f for f in feats if f not in cats]
        kinds = kinds_for(_kinds(wh, srcs["reference"], plain), _kinds(wh, srcs["current"], plain), feats, cats)
        num = [f for f in feats if kinds[f] == "numeric"]
        cat = [f for f in feats if kinds[f] == "categorical"]
        side = {s: _counts(wh, srcs[s], num) for s in srcs}
        ref, cur = side["reference"], side["current"]
        stats = _order_stats(wh, srcs["reference"], num, ref)
        mean = {c: ref.total[c] / ref.n[c] for c in num if ref.n[c]}
        m2 = _std(wh, srcs["reference"], list(mean), mean) if mean else {}
        grid, edges = {}, {}
        for c in num:
            if not (ref.n[c] and cur.n[c]):
                continue
            base = stats[c]
            edges[c] = quantile_edges_from_order_stats(lambda k: base[k], ref.n[c])
            e = np.unique(edges[c])
            center = float(np.median(edges[c]))
            scale = float(edges[c][-1] - edges[c][0]) / 2
            if not scale > 0:
                scale = math.sqrt(m2[c] / ref.n[c]) if m2[c] > 0 else max(abs(center), 1.0) * 1e-9
            lo, hi = min(ref.lo[c], cur.lo[c]), max(ref.hi[c], cur.hi[c])
            ulo, uhi = (math.asinh(min(max((v - center) / scale, -1e300), 1e300)) for v in (lo, hi))  # finite grid
            grid[c] = dict(e=e, center=center, scale=scale, lo=lo, hi=hi, ulo=ulo,
                           du=(uhi - ulo) / grid_bins if uhi > ulo else 1.0, bins=grid_bins)
        counted = {s: _bins_and_grid(wh, srcs[s], grid) for s in srcs} if grid else {}
        catc = {s: {c: _categories(wh, srcs[s], c) for c in cat} for s in srcs}
        out: list[FeatureDrift] = []
        for f in feats:
            if kinds[f] == "categorical":
                (rc, rm), (cc, cm) = catc["reference"][f], catc["current"][f]
                labels = sorted(set(rc) | set(cc))
                out.append(categorical_drift_counts(f, labels, np.array([rc.get(x, 0) for x in labels], np.int64),
                                                    np.array([cc.get(x, 0) for x in labels], np.int64), rm, cm))
                continue
            fd = FeatureDrift(f, "numeric", ref.n[f], cur.n[f], ref.rows - ref.n[f], cur.rows - cur.n[f],
                              inf_ref=ref.inf[f], inf_cur=cur.inf[f])
            out.append(fd)
            if f not in grid:
                fd.note = f"no non-missing values in the {'reference' if ref.n[f] == 0 else 'current'} window"
                continue
            g = grid[f]
            gr, gc = counted["reference"][f], counted["current"][f]
            rc, cc = _psi_counts(gr, g["e"].size + 1), _psi_counts(gc, g["e"].size + 1)
            fd.psi, fd.js_distance, fd.n_bins = psi_from_counts(rc, cc), js_from_counts(rc, cc), int(rc.size)
            d, fd.ks_error_bound, fd.wasserstein, fd.wasserstein_error_bound = ks_wasserstein_cells(
                gr, gc, ref.n[f], cur.n[f], math.sqrt(m2[f] / ref.n[f]))
            fd.ks_stat, fd.ks_pvalue = ks_pvalue(d, ref.n[f], cur.n[f])
            fd.status = "pass"
            notes = []
            if g["e"].size == 1 and ref.lo[f] == ref.hi[f]:
                notes.append("constant reference column")
            if ref.inf[f] or cur.inf[f]:
                notes.append(f"±inf values excluded (reference {ref.inf[f]}, current {cur.inf[f]})")
            notes.append(f"KS/Wasserstein from grouped counts on a {grid_bins}-cell grid (bounds in *_error_bound)")
            fd.note = "; ".join(notes)
        method = f"pushdown-sql({wh.dialect}; exact deciles by {RANK_BINS}-cell refinement; {grid_bins}-cell asinh grid)"
        res = finish(out, ref.rows, cur.rows, policy, approximate=True, method=method)
        return PushdownResult(res, wh.dialect, wh.version(), wh.statements, wh.digest(),
                              {"reference": reference, "current": current})
    finally:
        if ctx is not None:
            ctx.close()
        if own:
            engine.dispose()


def _as_query(q: str) -> str:
    """A SELECT statement as given, or a bare table name (``schema.table``) as ``SELECT * FROM`` it."""
    s = q.strip()
    if s and all(part.replace("_", "").isalnum() for part in s.split(".")):
        return f"SELECT * FROM {s}"
    return s
