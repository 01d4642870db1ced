"""Charts of the audit pack as deterministic vector SVG (matplotlib, no pyplot state).

Every function takes plain context data and returns an SVG document as a string. Text stays
text (``svg.fonttype: none``, DejaVu Sans, rendered by WeasyPrint: five times faster to lay
out than glyph paths, and extractable from the PDF), ids are salted with a fixed salt and the SVG
carries no date, so the same data always gives the same bytes. Empty data gives a "no data" box
saying what is missing instead of an empty chart.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from compliance.report.context import (  # noqa: E402
    DensityHistogram,
    FidelityRow,
    FidelitySeries,
    ModelDebt,
    PsiMatrix,
    TimelineSeries,
    TrendRow,
)
from compliance.report.tables import fidelity_series  # noqa: E402

WIDTH_IN = 6.7  # A4 text width at 20 mm margins
INK = "#1d2733"
GRID = "#d5dae1"
SERIES = ["#1f3a5f", "#2f7f8a", "#b5833a", "#7a4e8c", "#5b7f3a", "#8a3b3b", "#4d6d9a",
          "#9a8a4d", "#3f5f4f", "#6d4d9a", "#9a4d6d", "#4d9a8a"]
STATE_COLOURS = {"pending": "#e8d58a", "stale": "#c9a227", "broken": "#b3261e", "missing": "#6b7785"}
RC = {
    "svg.hashsalt": "compliance-report",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.edgecolor": "#8a94a3",
    "axes.labelcolor": INK,
    "axes.titlesize": 8.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "legend.fontsize": 7,
    "path.simplify": False,
}


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=72)
    FigureCanvasSVG(fig)
    return fig


def _svg(fig: Figure) -> str:
    if _FORMAT[0] == "png":  # the same figure as a PNG (Word export), base64 in a str
        buf = io.BytesIO()
        with rc_context(RC):
            fig.savefig(buf, format="png", dpi=200, metadata={"Software": None})
        return base64.b64encode(buf.getvalue()).decode("ascii")
    buf = io.StringIO()
    with rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


_FORMAT = ["svg"]


def all_charts_png(ctx, kind: Optional[str] = None) -> dict[str, bytes]:
    """Every chart of a pack as PNG bytes, drawn by the same code from the same data as the SVG."""
    _FORMAT[0] = "png"
    try:
        return {k: base64.b64decode(v) for k, v in all_charts(ctx, kind).items()}
    finally:
        _FORMAT[0] = "svg"


def _draw(height_in: float, draw) -> str:
    with rc_context(RC):
        fig = _figure(height_in)
        draw(fig)
        return _svg(fig)


def no_data_svg(title: str, message: str, height_in: float = 1.1) -> str:
    """A framed box: the chart's title and why there is nothing to plot."""
    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.005, 0.03, 0.99, 0.94))
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(True)
            s.set_linestyle((0, (4, 3)))
            s.set_edgecolor("#8a94a3")
        ax.text(0.02, 0.78, title, fontsize=8.5, fontweight="bold", color=INK,
                transform=ax.transAxes, va="top")
        ax.text(0.5, 0.35, "No data: " + message, fontsize=8, color="#5a6573",
                transform=ax.transAxes, ha="center", va="center")
    return _draw(height_in, draw)


def svg_data_uri(svg: str) -> str:
    """The SVG as a ``data:`` URI for an ``<img src>``."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _pct_axis(ax) -> None:
    ax.set_ylim(-0.02, 1.04)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["0 %", "25 %", "50 %", "75 %", "100 %"])
    ax.grid(axis="y", color=GRID, linewidth=0.5)
    ax.set_axisbelow(True)


def coverage_timeline(series: Sequence[TimelineSeries], title: str = "Daily explanation "
                      "coverage by tier") -> str:
    """Line chart of daily coverage, one line per series (tier)."""
    usable = [s for s in series if any(v is not None for v in s.values)]
    if not usable:
        return no_data_svg(title, "no deployed version-days in the period")

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.11, 0.17, 0.71, 0.7))
        for i, s in enumerate(usable):
            xs = [dt.date.fromisoformat(d) for d in s.dates]
            ys = [float("nan") if v is None else v for v in s.values]
            ax.plot(xs, ys, color=SERIES[i % len(SERIES)], linewidth=1.3, label=s.label)
        _pct_axis(ax)
        ax.set_title(title)
        ax.set_ylabel("coverage")
        first = min(dt.date.fromisoformat(s.dates[0]) for s in usable)
        last = max(dt.date.fromisoformat(s.dates[-1]) for s in usable)
        ticks, d = [], first.replace(day=1)
        while d <= last:
            if d >= first:
                ticks.append(d)
            d = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        if last not in ticks:
            ticks.append(last)
        if first not in ticks:
            ticks.insert(0, first)
        ax.set_xticks(ticks)
        ax.set_xticklabels([t.strftime("%d %b") for t in ticks])
        ax.set_xlim(first, last)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _draw(2.5, draw)


def debt_by_model(rows: Sequence[ModelDebt], top_n: int = 15,
                  title: str = "Interpretability debt by model") -> str:
    """Horizontal stacked bars (pending / stale / broken / missing slot-days) for the top-N models."""
    rows = [r for r in rows if r.debt_slot_days > 0]
    if not rows:
        return no_data_svg(title, "no model carries debt in the period")
    rows = sorted(rows, key=lambda r: (-r.weighted_debt, r.model_id))[:top_n]
    total = len(rows)

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.27, 0.55 / (0.9 + 0.19 * total), 0.55,
                           1 - 0.95 / (0.9 + 0.19 * total)))
        ys = list(range(total))[::-1]
        left = [0] * total
        for state in ("pending", "stale", "broken", "missing"):
            vals = [getattr(r, state) for r in rows]
            if state == "pending" and not any(vals):
                continue
            ax.barh(ys, vals, left=left, color=STATE_COLOURS[state], height=0.62, label=state)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_yticks(ys)
        ax.set_yticklabels([f"{r.model_id} (T{r.tier})" for r in rows])
        for y, r, x in zip(ys, rows, left):
            ax.annotate(f"{r.debt_slot_days:,} / w {r.weighted_debt:,}", (x, y),
                        xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=6.5, color=INK)
        ax.set_xlim(0, max(left) * 1.25)
        ax.set_xlabel("slot-days not fresh (label: debt / weighted debt)")
        ax.grid(axis="x", color=GRID, linewidth=0.5)
        ax.set_axisbelow(True)
        shown = f"top {total} by weighted debt" if total == top_n else (f"{total} models" if total != 1 else "1 model")
        ax.set_title(f"{title} ({shown})", x=-0.36)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _draw(0.9 + 0.19 * total, draw)


def debt_trend(rows: Sequence[TrendRow], title: str = "Debt over the last four quarters") -> str:
    """Grouped bars of debt and weighted debt per quarter, coverage as a line."""
    if not rows:
        return no_data_svg(title, "no earlier quarters recorded")

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.1, 0.15, 0.62, 0.72))
        xs = list(range(len(rows)))
        ax.bar([x - 0.2 for x in xs], [r.debt_slot_days for r in rows], width=0.38,
               color="#8a94a3", label="debt (slot-days)")
        ax.bar([x + 0.2 for x in xs], [r.weighted_debt for r in rows], width=0.38,
               color="#1f3a5f", label="weighted debt")
        top = max([r.weighted_debt for r in rows] + [r.debt_slot_days for r in rows] + [1])
        for x, r in zip(xs, rows):
            ax.text(x - 0.2, r.debt_slot_days + top * 0.01, f"{r.debt_slot_days:,}",
                    ha="center", va="bottom", fontsize=6)
            ax.text(x + 0.2, r.weighted_debt + top * 0.01, f"{r.weighted_debt:,}",
                    ha="center", va="bottom", fontsize=6)
        ax.set_ylim(0, top * 1.15)
        ax.set_xticks(xs)
        ax.set_xticklabels([r.quarter for r in rows])
        ax.set_ylabel("slot-days")
        ax.grid(axis="y", color=GRID, linewidth=0.5)
        ax.set_axisbelow(True)
        ax.set_title(title)
        ax2 = ax.twinx()
        ax2.spines["right"].set_visible(True)
        cov = [float("nan") if r.coverage is None else r.coverage for r in rows]
        ax2.plot(xs, cov, color="#2f7f8a", marker="o", linewidth=1.3, markersize=3.5,
                 label="coverage")
        ax2.set_ylim(-0.02, 1.04)
        ax2.set_yticks([0, 0.5, 1.0])
        ax2.set_yticklabels(["0 %", "50 %", "100 %"])
        ax2.set_ylabel("coverage")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    return _draw(2.3, draw)


def fidelity_by_version(rows: Sequence[FidelityRow], ev_warn: float = 0.8,
                        ev_fail: float = 0.6, top_n: int = 10,
                        title: str = "Explained variance per artifact across versions") -> str:
    """Explained variance of each artifact on each version checked (worst latest first)."""
    series, n = fidelity_series(rows, top_n)
    return fidelity_chart(series, n, ev_warn, ev_fail, title=title)


def fidelity_chart(series: Sequence[FidelitySeries], n_artifacts: int, ev_warn: float = 0.8,
                   ev_fail: float = 0.6, title: str = "Explained variance per artifact across versions") -> str:
    """The fidelity chart from its series (``fidelity_series``; the context's ``fidelity.chart``)."""
    series = [s for s in series if s.values]
    if not series:
        return no_data_svg(title, "no fidelity check with an explained variance in the period")
    nmax = max(len(s.values) for s in series)

    ncol = 2
    legend_rows = (len(series) + ncol - 1) // ncol
    height = 2.2 + 0.14 * legend_rows
    plot_bottom = (0.55 + 0.14 * legend_rows) / height

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.1, plot_bottom, 0.78, 1 - plot_bottom - 0.28 / height))
        for i, s in enumerate(series):
            aid = s.artifact_id
            label = aid if len(aid) <= 44 else aid[:41] + "..."
            ax.plot(range(len(s.values)), list(s.values), marker="o",
                    markersize=3, linewidth=1.1, color=SERIES[i % len(SERIES)],
                    label=f"{label} ({', '.join(s.versions)})")
        ax.axhline(ev_warn, color="#c9a227", linewidth=0.8, linestyle="--")
        ax.axhline(ev_fail, color="#b3261e", linewidth=0.8, linestyle="--")
        trans = ax.get_yaxis_transform()
        ax.text(1.01, ev_warn, f"warn {ev_warn:g}", fontsize=6.5, va="center", transform=trans)
        ax.text(1.01, ev_fail, f"fail {ev_fail:g}", fontsize=6.5, va="center", transform=trans)
        lo = min(min(s.values) for s in series)
        ax.set_ylim(min(lo, ev_fail) - 0.05, 1.0)
        ax.set_xlim(-0.2, nmax - 1 + 0.2)
        ax.set_xticks(range(nmax))
        ax.set_xticklabels([f"check {i + 1}" for i in range(nmax)])
        ax.set_xlabel("successive versions checked, oldest first (versions in the legend)")
        ax.set_ylabel("explained variance")
        ax.grid(axis="y", color=GRID, linewidth=0.5)
        ax.set_axisbelow(True)
        extra = f" ({len(series)} lowest of {n_artifacts})" if n_artifacts > len(series) else ""
        ax.set_title(title + extra)
        ax.legend(loc="upper left", bbox_to_anchor=(-0.08, -0.42 / (height * (1 - plot_bottom - 0.28 / height))),
                  ncol=ncol, fontsize=6.3, handlelength=1.5, columnspacing=1.5)
    return _draw(height, draw)


def drift_heatmap(matrix: PsiMatrix, psi_warn: float = 0.1, psi_fail: float = 0.25,
                  top_n: int = 30, title: str = "PSI by feature and quarter") -> str:
    """Heat-map of PSI, features × quarters, banded at the policy thresholds, values printed."""
    if not matrix.features or not matrix.quarters:
        return no_data_svg(title, "no drift checks recorded for these quarters")
    rows = list(zip(matrix.features, matrix.values))
    rows.sort(key=lambda fr: (-max([v for v in fr[1] if v is not None] or [-1.0]), fr[0]))
    rows = rows[:top_n]
    nf, nq = len(rows), len(matrix.quarters)
    height = 0.75 + 0.2 * nf

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.36, 0.12 / height, 0.42, 1 - 0.62 / height))  # room for 'model · feature'
        cmap = ListedColormap(["#e3efe6", "#f6e7b5", "#f0b7b0"]).with_extremes(bad="#f2f3f5")
        norm = BoundaryNorm([0, psi_warn, psi_fail, 1e9], cmap.N)
        data = [[float("nan") if v is None else v for v in vals] for _, vals in rows]
        # pcolormesh (vector quads), not imshow (which embeds a raster image in the SVG)
        ax.pcolormesh([x - 0.5 for x in range(nq + 1)], [y - 0.5 for y in range(nf + 1)],
                      data, cmap=cmap, norm=norm, edgecolors="white", linewidth=1.2)
        ax.set_xlim(-0.5, nq - 0.5)
        ax.set_ylim(nf - 0.5, -0.5)
        for i, (_, vals) in enumerate(rows):
            for j, v in enumerate(vals):
                ax.text(j, i, "n/a" if v is None else f"{v:.3f}", ha="center", va="center",
                        fontsize=6.5, color=INK)
        ax.set_xticks(range(nq))
        ax.set_xticklabels(matrix.quarters)
        ax.xaxis.tick_top()
        ax.set_yticks(range(nf))
        ax.set_yticklabels([f for f, _ in rows])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.tick_params(length=0)
        shown = f" (top {nf} of {len(matrix.features)})" if len(matrix.features) > nf else ""
        fig.text(0.01, 1 - 0.06 / height, title + shown, fontsize=8.5, fontweight="bold",
                 va="top", color=INK)
        fig.text(0.8, 0.5, f"green  < {psi_warn:g}\namber  {psi_warn:g}–{psi_fail:g}\n"
                 f"red    ≥ {psi_fail:g}", fontsize=6.5, va="center", color=INK)
    return _draw(height, draw)


def density_histograms(hists: Sequence[DensityHistogram],
                       title: str = "Feature density (log10 of activation frequency)") -> str:
    """Overlaid step histograms of feature density, one per sample."""
    hists = [h for h in hists if h.counts]
    if not hists:
        return no_data_svg(title, "no feature-density sample recorded")

    arts = sorted({h.artifact_id for h in hists})

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.08, 0.17, 0.68, 0.7))
        for i, h in enumerate(hists):
            who = f" {h.artifact_id}" if len(arts) > 1 else ""
            ax.stairs(h.counts, h.bin_edges, color=SERIES[i % len(SERIES)], linewidth=1.3,
                      label=f"{h.label}{who}\n(dead: {h.dead:,})")
        ax.set_xlabel("log10(feature density)")
        ax.set_ylabel("features")
        ax.grid(axis="y", color=GRID, linewidth=0.5)
        ax.set_axisbelow(True)
        ax.set_title(title + (f" — {arts[0]}" if len(arts) == 1 else ""))
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6.5)
    return _draw(2.3, draw)


def policy_float(policy_rows, key: str, default: float) -> float:
    """A float policy value from the appendix rows, or ``default``."""
    for r in policy_rows:
        if r.key == key:
            try:
                return float(r.value)
            except ValueError:
                return default
    return default


def all_charts(ctx, kind: Optional[str] = None) -> dict[str, str]:
    """Every chart of a pack as SVG, keyed by name."""
    pol = ctx.appendix.policy
    charts = {
        "coverage_timeline": coverage_timeline(ctx.coverage.timeline),
        "debt_by_model": debt_by_model(ctx.debt.per_model),
        "debt_trend": debt_trend(ctx.debt.trend),
        "fidelity": fidelity_chart(ctx.fidelity.chart, ctx.fidelity.chart_artifacts,
                                        policy_float(pol, "fidelity.ev_warn", 0.8),
                                        policy_float(pol, "fidelity.ev_fail", 0.6)),
        "drift_heatmap": drift_heatmap(ctx.drift.psi_matrix,
                                       policy_float(pol, "drift.psi_warn", 0.1),
                                       policy_float(pol, "drift.psi_fail", 0.25)),
    }
    if (kind or ctx.kind) == "model":
        dens = ctx.model_detail.densities if ctx.model_detail else []
        charts["densities"] = density_histograms(dens)
    from compliance.report.outcome_charts import outcome_charts

    charts.update(outcome_charts(ctx))
    return charts
