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
   distinct value — the order statistic itself. All pending ranges of all columns are counted in
   one statement per level (one scan where the engine can unpivot); a handful of levels suffices (each divides the range by
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
    """Runs aggregate statements and keeps a hash of every statement with what it returned.
    Subclasses spell the dialect: quoting, float literals, casts, and how a statement runs."""

    dialect = "?"

    def __init__(self):
        self._h = hashlib.sha256()
        self.statements = 0

    def q(self, name: str) -> str:
        raise NotImplementedError

    def lit(self, x: float) -> str:
        raise NotImplementedError

    def num(self, col: str) -> str:
        raise NotImplementedError

    def floor_nonneg(self, x: str) -> str:
        return f"FLOOR({x})"

    def finite(self, x: str) -> str:
        return f"({x} > {self.lit(-math.inf)} AND {x} < {self.lit(math.inf)})"

    def execute(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def columns(self, src: str, where: str) -> list[str]:
        raise NotImplementedError

    def kinds(self, src: str, cols: list[str]) -> dict[str, str]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def grouped(self, src: str, items: list[tuple[int, str, str]]) -> list[tuple]:
        """Per item ``(k, cell, value)``: ``(k, cell, COUNT, MIN(value), MAX(value))`` over the rows
        whose cell is not NULL, grouped by cell. Here one ``UNION ALL`` part per item; engines
        that can unpivot do it in one scan (:meth:`_SqlWarehouse.grouped`, :meth:`_SparkWarehouse.grouped`)."""
        parts = [f"SELECT {k} AS k, {c} AS cell, COUNT(*) AS n, MIN({v}) AS lo, MAX({v}) AS hi FROM {src} "
                 f"WHERE {c} IS NOT NULL GROUP BY {c}" for k, c, v in items]
        return self.rows(" UNION ALL ".join(parts))

    def rows(self, sql: str) -> list[tuple]:
        out = self.execute(sql)
        self.statements += 1
        rows = sorted(json.dumps([_plain(v) for v in r], default=str) for r in out)  # engines order groups freely
        self._h.update(json.dumps([sql, rows]).encode())
        return out

    def digest(self) -> str:
        return self._h.hexdigest()


def _first_line(e: BaseException) -> str:
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]


class _SqlWarehouse(_Warehouse):
    """Any SQLAlchemy dialect (tested: PostgreSQL, SQLite)."""

    def __init__(self, conn: Connection):
        super().__init__()
        self.conn = conn
        self.dialect = conn.dialect.name

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

    def floor_nonneg(self, x: str) -> str:
        """floor of a non-negative finite value (SQLite: CAST truncates; SQLAlchemy's floor() there
        is a Python function per row)."""
        return f"CAST({x} AS INTEGER)" if self.dialect == "sqlite" else f"FLOOR({x})"

    def grouped(self, src: str, items: list[tuple[int, str, str]]) -> list[tuple]:
        if self.dialect != "postgresql":
            return super().grouped(src, items)
        values = ", ".join(f"({k}, CAST({c} AS DOUBLE PRECISION), {v})" for k, c, v in items)
        return self.rows(f"SELECT u.k, u.cell, COUNT(*), MIN(u.v), MAX(u.v) FROM {src} CROSS JOIN LATERAL "
                         f"(VALUES {values}) AS u(k, cell, v) WHERE u.cell IS NOT NULL GROUP BY u.k, u.cell")

    def execute(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self.conn.execute(text(sql)).all()]
        except SQLAlchemyError as e:
            raise InputError(f"the warehouse refused a drift aggregate ({self.dialect}): {_first_line(e)}") from None

    def columns(self, src: str, where: str) -> list[str]:
        try:
            return list(self.conn.execute(text(f"SELECT * FROM {src} LIMIT 0")).keys())
        except SQLAlchemyError as e:
            raise InputError(f"the {where} query failed ({self.dialect}): {_first_line(e)}") from None

    def type_codes(self, src: str) -> dict:
        cur = self.conn.exec_driver_sql(f"SELECT * FROM {src} LIMIT 0")
        return {d[0]: d[1] for d in cur.cursor.description}

    def kinds(self, src: str, cols: list[str]) -> dict[str, str]:
        """numeric / categorical per column, from the engine's own types (aggregates only)."""
        if self.dialect == "postgresql":
            codes = self.type_codes(src)
            return {c: "numeric" if codes.get(c) in _PG_NUMERIC else "categorical" for c in cols}
        out = {}
        for c in cols:  # SQLite: storage classes of the non-NULL values
            types = {t for (t,) in self.rows(f"SELECT DISTINCT typeof({self.q(c)}) FROM {src} WHERE {self.q(c)} IS NOT NULL")}
            out[c] = "numeric" if types and types <= {"integer", "real"} else "categorical"
        return out

    def version(self) -> str:
        if self.dialect == "sqlite":
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version}"
        info = self.conn.dialect.server_version_info
        return f"{self.dialect} {'.'.join(map(str, info)) if info else '?'}"


class _SparkWarehouse(_Warehouse):
    """A SparkSession: the sources are temporary views, statements run as Spark SQL."""

    dialect = "spark"

    def __init__(self, spark):
        super().__init__()
        self.spark = spark

    def q(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def lit(self, x: float) -> str:
        if math.isinf(x):
            return f"CAST('{'Infinity' if x > 0 else '-Infinity'}' AS DOUBLE)"
        return f"CAST('{float(x)!r}' AS DOUBLE)"

    def num(self, col: str) -> str:
        return f"CAST({self.q(col)} AS DOUBLE)"

    def grouped(self, src: str, items: list[tuple[int, str, str]]) -> list[tuple]:
        args = ", ".join(f"{k}, CAST({c} AS BIGINT), {v}" for k, c, v in items)
        return self.rows(f"SELECT k, cell, COUNT(*), MIN(v), MAX(v) FROM (SELECT stack({len(items)}, {args}) AS (k, cell, v) "
                         f"FROM {src}) u WHERE cell IS NOT NULL GROUP BY k, cell")

    def execute(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self.spark.sql(sql).collect()]
        except Exception as e:  # Spark raises AnalysisException, Py4JJavaError, …
            raise InputError(f"Spark refused a drift aggregate: {_first_line(e)}") from None

    def columns(self, src: str, where: str) -> list[str]:
        return list(self.spark.table(src).columns)

    def kinds(self, src: str, cols: list[str]) -> dict[str, str]:
        dtypes = dict(_spark_dtypes(self.spark.table(src).schema))
        out = {}
        for c in cols:
            if dtypes[c] == "datetime":
                raise InputError(f"feature {c!r} is a date or time; cast it or leave it out")
            out[c] = "numeric" if dtypes[c] == "float64" else "categorical"
        return out

    def version(self) -> str:
        return f"Spark {self.spark.version}"


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    return v


def _source(query: str) -> str:
    q = query.strip().rstrip(";").strip()
    if not q:
        raise InputError("empty drift query")
    return f"({q}) AS src"


_PG_TEMPORAL = {1082, 1083, 1114, 1184, 1266}


def query_schema(warehouse: str, query: str) -> list[tuple[str, str]]:
    """[(column, dtype)] of a query's result, from the engine's metadata (no row is read):
    'float64' for numeric columns, 'datetime' for dates and times, 'object' otherwise."""
    engine = _engine(warehouse)
    try:
        with _connect(engine) as conn:
            wh = _SqlWarehouse(conn)
            src = _source(_as_query(query))
            cols = wh.columns(src, "query")
            if wh.dialect == "postgresql":
                codes = wh.type_codes(src)
                return [(c, "datetime" if codes.get(c) in _PG_TEMPORAL else
                         "float64" if codes.get(c) in _PG_NUMERIC else "object") for c in cols]
            kinds = wh.kinds(src, cols)
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
        raise InputError(f"cannot reach the warehouse: {_first_line(e)}") from None


def redact(url: str) -> str:
    """The URL without its password (what the evidence records)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


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
        cols = sorted({r.col for r in todo})
        ranges = {c: [r for r in todo if r.col == c] for c in cols}  # disjoint: distinct cells of the last level
        items = []
        for k, c in enumerate(cols):
            x = wh.num(c)
            when = " ".join(f"WHEN {x} >= {wh.lit(r.a)} AND {x} <= {wh.lit(r.b)} THEN "
                            f"{j * RANK_BINS} + {_cell(wh, x, r.a, (r.b - r.a) / RANK_BINS, RANK_BINS)}"
                            for j, r in enumerate(ranges[c]))
            items.append((k, f"(CASE {when} END)", x))
        by: dict[int, list] = {}
        for k, cell, n, lo, hi in wh.grouped(src, items):
            r = ranges[cols[int(k)]][int(cell) // RANK_BINS]
            by.setdefault(id(r), []).append((int(cell) % RANK_BINS, int(n), float(lo), float(hi)))
        nxt: dict[tuple, _Range] = {}
        for r in todo:
            cells = sorted(by.get(id(r), []))
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
    """Per numeric column: counts per (grid cell, decile bin) with each group's minimum and maximum,
    in one statement (the pair is encoded as ``cell * 16 + bin``: at most 10 bins)."""
    cols = list(grid)
    items = []
    for k, c in enumerate(cols):
        g = grid[c]
        x = wh.num(c)
        b = "CASE " + " ".join(f"WHEN {x} <= {wh.lit(e)} THEN {j}" for j, e in enumerate(g["e"])) + f" ELSE {g['e'].size} END"
        u = f"asinh(({x} - {wh.lit(g['center'])}) / {wh.lit(g['scale'])})"
        cell = _cell(wh, u, g["ulo"], g["du"], g["bins"])
        items.append((k, f"(CASE WHEN {wh.finite(x)} THEN {cell} * 16 + {b} END)", x))
    out: dict[str, dict] = {c: {} for c in cols}
    for k, code, n, lo, hi in wh.grouped(src, items):
        code = int(code)
        out[cols[int(k)]][(code // 16, code % 16)] = (int(n), float(lo), float(hi))
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
    own = isinstance(warehouse, str)
    engine = _engine(warehouse) if own else None
    ctx = _connect(engine) if own else (_connect(warehouse) if isinstance(warehouse, Engine) else None)
    try:
        wh = _SqlWarehouse(ctx if ctx is not None else warehouse)
        srcs = {"reference": _source(_as_query(reference)), "current": _source(_as_query(current))}
        return _compute(wh, srcs, {"reference": reference, "current": current}, features, categorical, policy, grid_bins)
    finally:
        if ctx is not None:
            ctx.close()
        if own:
            engine.dispose()


def compute_drift_spark(
    spark,
    reference,
    current,
    *,
    features: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    policy: DriftPolicy = DriftPolicy(),
    grid_bins: int = GRID_BINS,
) -> PushdownResult:
    """Drift between two Spark DataFrames (or Spark SQL queries) computed by Spark: the same
    aggregate statements as :func:`compute_drift_sql`, run as Spark SQL on temporary views; only
    the aggregates reach the driver."""
    import uuid

    views, queries = {}, {}
    try:
        for side, src in (("reference", reference), ("current", current)):
            if isinstance(src, str):
                queries[side] = src
                try:
                    df = spark.sql(_as_query(src).strip().rstrip(";"))
                except Exception as e:  # AnalysisException, ParseException
                    raise InputError(f"the {side} query failed (spark): {_first_line(e)}") from None
            else:
                df, queries[side] = src, f"<DataFrame {getattr(src, 'columns', '?')}>"
            views[side] = f"compliance_{side}_{uuid.uuid4().hex[:12]}"
            df.createOrReplaceTempView(views[side])
        return _compute(_SparkWarehouse(spark), views, queries, features, categorical, policy, grid_bins)
    finally:
        for v in views.values():
            spark.catalog.dropTempView(v)


def spark_session(master: str):
    """The SparkSession of this process for ``master`` (``local[2]``, ``spark://host:7077``, ``yarn``)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("spark: queries need pyspark: pip install 'compliance[spark]' (and Java 17)") from None
    try:
        s = SparkSession.builder.master(master).appName("compliance").config("spark.ui.enabled", "false").getOrCreate()
    except Exception as e:  # no Java, unreachable master
        raise InputError(f"cannot start Spark at {master!r}: {_first_line(e)}") from None
    s.sparkContext.setLogLevel("ERROR")
    return s


def spark_query_schema(spark, query: str) -> list[tuple[str, str]]:
    """[(column, dtype)] of a Spark SQL query's result, from its schema (no row is read)."""
    try:
        schema = spark.sql(_as_query(query).strip().rstrip(";")).schema
    except Exception as e:
        raise InputError(f"the query failed (spark): {_first_line(e)}") from None
    return _spark_dtypes(schema)


def _spark_dtypes(schema) -> list[tuple[str, str]]:
    from pyspark.sql import types as T

    numeric = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
    return [(f.name, "datetime" if isinstance(f.dataType, (T.DateType, T.TimestampType)) else
             "float64" if isinstance(f.dataType, numeric) else "object") for f in schema.fields]


def _compute(wh: _Warehouse, srcs: dict[str, str], queries: dict[str, str], features, categorical,
             policy: DriftPolicy, grid_bins: int) -> PushdownResult:
    from compliance.checks.drift import kinds_for, ks_pvalue, resolve_features

    cols = {side: wh.columns(s, side) for side, s in srcs.items()}
    feats, cats = resolve_features(cols["reference"], cols["current"], features, categorical)
    for name, sql in srcs.items():  # an empty window says so before any type is guessed from it
        if wh.rows(f"SELECT COUNT(*) FROM {sql}")[0][0] == 0:
            raise InputError(f"the {name} window has 0 rows")
    plain = [f for f in feats if f not in cats]
    kinds = kinds_for(wh.kinds(srcs["reference"], plain), wh.kinds(srcs["current"], plain), feats, cats)
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
    method = f"pushdown({wh.dialect}; exact deciles by {RANK_BINS}-cell refinement; {grid_bins}-cell asinh grid)"
    res = finish(out, ref.rows, cur.rows, policy, approximate=True, method=method)
    return PushdownResult(res, wh.dialect, wh.version(), wh.statements, wh.digest(), queries)


def _as_query(q: str) -> str:
    """A SELECT statement as given, or a bare table name (``schema.table``) as ``SELECT * FROM`` it."""
    s = q.strip()
    if s and all(part.replace("_", "").isalnum() for part in s.split(".")):
        return f"SELECT * FROM {s}"
    return s
