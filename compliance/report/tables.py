"""Page-sized long tables: the context keeps the rows a page shows, the rest goes to disk.

A long table of the report (every fidelity check of four quarters, every evidence row, ...) grows
with the number of checks. The context carries only its first ``PAGE_ROWS`` rows in display order
and the table's total (``CAPPED_TABLES``); a :class:`PageTable` receives the rows in that order,
keeps the first ones, counts all of them and, when the caller gives it a file, writes every row to
the export's CSV as it arrives (nothing more is held in memory). The CSV bytes are those
``table_csv`` derives from the same rows, so the context's rows are the CSV's first rows
(``verify --pack`` checks the prefix and the count).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import operator
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Optional

from compliance.report.context import PAGE_ROWS, FidelityRow, FidelitySeries, _cell

#: table name (as ``context_tables`` names it) -> (rows path, total path) in the context
CAPPED_TABLES: dict[str, tuple[str, str]] = {
    "fidelity_checks": ("fidelity.checks", "fidelity.checks_total"),
    "fidelity_downstream": ("fidelity.downstream", "fidelity.downstream_total"),
    "fidelity_clt_layers": ("fidelity.clt_layers", "fidelity.clt_layers_total"),
    "check_reasons": ("check_reasons", "check_reasons_total"),
    "appendix_evidence": ("appendix.evidence", "appendix.evidence_total"),
    "changes": ("changes", "changes_total"),
    "debt_staleness": ("debt.staleness", "debt.staleness_total"),
}


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def capped_total(ctx: Any, name: str) -> int:
    """The total of capped table ``name`` of a context (dataclass or its JSON as a dict)."""
    return int(_get(ctx, CAPPED_TABLES[name][1]))


def csv_value(v: Any) -> str:
    """One CSV cell as the export writes it (None empty, floats as repr, lists joined by ';')."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return ";".join(csv_value(x) for x in v)
    if isinstance(v, dict):
        from compliance.report.context import canonical_json

        return canonical_json(v).decode("utf-8")
    return str(v)


def _converted_columns(row_type: type) -> list[int]:
    """Positions of the fields of ``row_type`` whose values the csv module would not write as
    ``csv_value`` does: any type but str, int, float and None (bools, lists, mappings, unknown)."""
    hints = typing.get_type_hints(row_type)
    plain = {str, int, float, type(None)}
    out = []
    for i, f in enumerate(dataclasses.fields(row_type)):
        tp = hints.get(f.name, Any)
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if not all(a in plain for a in args):
            out.append(i)
    return out


class PageTable:
    """Rows of one capped table, in display order: the first ``limit`` kept, all counted, and
    every row written to ``path`` (a CSV) when one is given."""

    def __init__(self, row_type: type, path: Optional[Path] = None, limit: int = PAGE_ROWS):
        self.row_type = row_type
        self.columns = [f.name for f in dataclasses.fields(row_type)]
        self.rows: list = []
        self.total = 0
        self.limit = limit
        self.path = Path(path) if path is not None else None
        self._fh = None
        self._w = None
        if self.path is not None:
            self._fh = open(self.path, "w", encoding="utf-8", newline="")
            self._w = csv.writer(self._fh, lineterminator="\n")
            self._w.writerow(self.columns)
            self._get = operator.attrgetter(*self.columns) if len(self.columns) > 1 else (
                lambda r, c=self.columns[0]: (getattr(r, c),))
            self._convert = _converted_columns(row_type)

    def add(self, row: Any) -> None:
        if len(self.rows) < self.limit:
            self.rows.append(row)
        self.total += 1
        if self._w is not None:
            values = list(self._get(row))
            self._convert_cells(values)
            self._w.writerow(values)

    def add_values(self, values: list) -> None:
        """Add a row given as its field values in field order (a fresh list, changed here): the
        row object is built only when the page keeps it — the CSV needs none (millions of rows
        stream through an export)."""
        self.add_many([values])

    def add_many(self, batch: list[list]) -> None:
        """``add_values`` for each of ``batch`` (written in one call)."""
        room = self.limit - len(self.rows)
        if room > 0:
            self.rows.extend(self.row_type(*v) for v in batch[:room])
        self.total += len(batch)
        if self._w is not None and batch:
            for values in batch:
                self._convert_cells(values)
            self._w.writerows(batch)

    def _convert_cells(self, values: list) -> None:
        # the csv module writes None as '' and numbers and strings as str() (a float's str is
        # its repr): only the columns that may hold a bool, a list or a mapping need csv_value
        # (None needs nothing; a list is what _cell joins, as csv_value writes that text)
        for i in self._convert:
            v = values[i]
            if v is None:
                continue
            if v.__class__ is list:
                values[i] = ";".join(["" if x is None else str(x) for x in v]) if v else ""
            else:
                values[i] = csv_value(_cell(v))

    @property
    def page_full(self) -> bool:
        """No file to write and the page is full: later rows need only be counted (``skip``)."""
        return self._w is None and len(self.rows) >= self.limit

    def skip(self, n: int = 1) -> None:
        """Count ``n`` rows that are neither shown nor written (only when ``page_full``)."""
        if not self.page_full:
            raise RuntimeError("rows may be skipped only when the page is full and no file is written")
        self.total += n

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._w = None


class FullTables:
    """Where the full capped tables of one context go: a folder of ``<name>.csv`` files (the
    export's ``tables/<name>.csv``), or nowhere (``folder=None``: only the page rows are kept)."""

    def __init__(self, folder: Optional[Path] = None, limit: int = PAGE_ROWS):
        self.folder = Path(folder) if folder is not None else None
        self.limit = limit
        self.tables: dict[str, PageTable] = {}
        #: ledger entries (seq) the full evidence index cites: the export carries the older ones
        self.cited_seqs: set[int] = set()

    def table(self, name: str, row_type: type) -> PageTable:
        if name not in CAPPED_TABLES:
            raise KeyError(name)
        path = self.folder / f"{name}.csv" if self.folder is not None else None
        t = self.tables[name] = PageTable(row_type, path, self.limit)
        return t

    def close(self) -> None:
        for t in self.tables.values():
            t.close()

    def files(self) -> dict[str, Path]:
        """``tables/<name>.csv`` -> the file written (only when a folder was given)."""
        if self.folder is None:
            return {}
        return {f"tables/{n}.csv": t.path for n, t in sorted(self.tables.items()) if t.path is not None}


def csv_prefix_and_count(data: bytes, prefix: bytes) -> tuple[bool, int]:
    """Whether CSV ``data`` starts with ``prefix`` (the header and the context's rows) and how
    many data rows it holds (records, not lines: a reason may span lines)."""
    n = -1
    for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
        n += 1
    return data.startswith(prefix), max(n, 0)


def effective_total(ctx: Any, name: str) -> int:
    """Rows of capped table ``name``: its total, or the rows the context carries when more (a
    context built in memory, e.g. by a test, may carry a whole table and leave the total 0)."""
    return max(capped_total(ctx, name), len(_get(ctx, CAPPED_TABLES[name][0])))


def derive_in_memory(ctx: Any) -> Any:
    """For a context built in memory with whole tables (tests, synthetic benches): the totals,
    the downstream rows and the fidelity chart derived from its rows, as the store path
    computes them while streaming. Returns ``ctx`` (changed in place)."""
    f = ctx.fidelity
    f.downstream = [r for r in f.checks if r.kl is not None or r.loss_recovered is not None
                    or r.decision_flip_rate is not None or r.auc is not None or r.baseline_gap is not None]
    f.chart, f.chart_artifacts = fidelity_series(f.checks)
    for name in CAPPED_TABLES:
        path, total = CAPPED_TABLES[name]
        obj = ctx
        *head, last = total.split(".")
        for part in head:
            obj = getattr(obj, part)
        setattr(obj, last, len(_get(ctx, path)))
    return ctx


# --------------------------------------------------------------------------- the fidelity chart
def fidelity_series(rows: Iterable[FidelityRow], top_n: int = 10) -> tuple[list[FidelitySeries], int]:
    """The fidelity chart's data: the ``top_n`` artifacts with the lowest latest explained
    variance (ties by id), each with its checks by (date, version, check id), and the number of
    artifacts with an explained variance at all."""
    by_art: dict[str, list[FidelityRow]] = {}
    for r in rows:
        if r.explained_variance is not None:
            by_art.setdefault(r.artifact_id, []).append(r)
    keep = SeriesKeeper(top_n)
    for aid, rs in by_art.items():
        keep.add(aid, [(r.date, r.version, r.check_id, r.explained_variance) for r in rs])
    return keep.result()


class SeriesKeeper:
    """The lowest ``top_n`` artifact series seen so far (one artifact at a time, any order)."""

    def __init__(self, top_n: int = 10):
        self.top_n = top_n
        self.count = 0
        self._kept: list[tuple[float, str, list]] = []

    def add(self, aid: str, points: list[tuple[str, str, str, float]]) -> None:
        """``points``: (date, version, check id, explained variance) of one artifact's checks."""
        if not points:
            return
        self.count += 1
        pts = sorted(points, key=lambda p: (p[0], p[1], p[2]))
        self._kept.append((pts[-1][3], aid, pts))
        if len(self._kept) > 4 * self.top_n:
            self._trim()

    def _trim(self) -> None:
        self._kept.sort(key=lambda s: (s[0], s[1]))
        del self._kept[self.top_n:]

    def result(self) -> tuple[list[FidelitySeries], int]:
        self._trim()
        return ([FidelitySeries(artifact_id=aid, versions=[p[1] for p in pts], values=[p[3] for p in pts])
                 for _, aid, pts in self._kept], self.count)
