"""Charts of the "Outcomes and performance" and "Fairness" chapters (deterministic SVG, as charts.py)."""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

from compliance.report.charts import GRID, INK, SERIES, _draw, _pct_axis, no_data_svg, policy_float
from compliance.report.context import FairnessGroupRow, PerformanceRow

MAX_SERIES = 8


def _label(r) -> str:
    return f"{r.model_id} {r.version}"


def roc_and_calibration(rows: Sequence[PerformanceRow], title: str = "ROC curve and calibration (matured outcomes)") -> str:
    """Left: ROC curves with the chance diagonal; right: observed vs predicted per calibration bin."""
    rows = [r for r in rows if r.roc_fpr][:MAX_SERIES]
    if not rows:
        return no_data_svg(title, "no performance check with outcomes in the period")

    def draw(fig: Figure) -> None:
        left = fig.add_axes((0.07, 0.17, 0.36, 0.68))
        right = fig.add_axes((0.55, 0.17, 0.36, 0.68))
        for ax in (left, right):
            ax.plot([0, 1], [0, 1], color="#8a94a3", linewidth=0.7, linestyle="--")
            ax.set_xlim(0, 1)
            _pct_axis(ax)
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
            ax.set_xticklabels(["0 %", "25 %", "50 %", "75 %", "100 %"])
        for i, r in enumerate(rows):
            col = SERIES[i % len(SERIES)]
            auc = f" (AUC {r.auc:.3f})" if r.auc is not None else ""
            left.plot(r.roc_fpr, r.roc_tpr, color=col, linewidth=1.2, label=_label(r) + auc)
            if r.calibration_predicted:
                right.plot(r.calibration_predicted, r.calibration_observed, color=col, linewidth=1.0, marker="o",
                           markersize=2.8, label=_label(r))
        left.set_xlabel("false positive rate")
        left.set_ylabel("true positive rate")
        left.set_title("ROC curve")
        right.set_xlabel("mean predicted probability (bin)")
        right.set_ylabel("observed event rate")
        right.set_title("Calibration (10 bins)")
        left.legend(loc="lower right", fontsize=6.3)
        fig.text(0.01, 0.97, title, fontsize=8.5, fontweight="bold", va="top", color=INK)
    return _draw(2.6, draw)


def fairness_bars(groups: Sequence[FairnessGroupRow], air_warn: float = 0.8, air_fail: float = 0.7,
                  title: str = "Approval rate and adverse impact ratio by group") -> str:
    """Horizontal bars of the approval rate per group (per check and attribute), the AIR printed,
    groups too small to judge hatched."""
    if not groups:
        return no_data_svg(title, "no fairness check in the period")
    rows = list(groups)[:40]
    n = len(rows)
    height = 0.8 + 0.19 * n

    def draw(fig: Figure) -> None:
        ax = fig.add_axes((0.36, 0.45 / height, 0.44, 1 - 0.8 / height))
        colours = {"pass": "#5b7f3a", "warn": "#c9a227", "fail": "#b3261e", "too_small": "#c5cbd3"}
        for i, g in enumerate(rows):
            val = g.approval_rate or 0.0
            ax.barh(i, val, color=colours.get(g.status, "#6b7785"), height=0.7,
                    hatch="///" if g.status == "too_small" else None, edgecolor="white", linewidth=0.5)
            note = "reference" if g.reference else ("too small: not judged" if g.status == "too_small"
                                                    else (f"AIR {g.air:.2f}" if g.air is not None else ""))
            ax.text(min(val, 1.0) + 0.01, i, note, va="center", fontsize=6.3, color=INK)
        ax.set_yticks(range(n))
        ax.set_yticklabels([f"{g.model_id} {g.version} · {g.attribute}={g.group} (n={g.n:,})" for g in rows], fontsize=6.3)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(0, 1.25)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xticklabels(["0 %", "25 %", "50 %", "75 %", "100 %"])
        ax.set_xlabel("approval rate (not flagged)")
        ax.grid(axis="x", color=GRID, linewidth=0.5)
        ax.set_axisbelow(True)
        fig.text(0.01, 1 - 0.06 / height, title + (f" (first 40 of {len(groups)})" if len(groups) > 40 else ""),
                 fontsize=8.5, fontweight="bold", va="top", color=INK)
        fig.text(0.82, 0.5, f"green   pass\namber   warn (AIR < {air_warn:g})\nred     fail (AIR < {air_fail:g})\n"
                 "grey    too small", fontsize=6.3, va="center", color=INK)
    return _draw(height, draw)


def outcome_charts(ctx) -> dict[str, str]:
    """The charts of the two chapters, only for a chapter that has evidence."""
    pol = ctx.appendix.policy
    out = {}
    if ctx.outcomes.checks:
        out["outcomes"] = roc_and_calibration(ctx.outcomes.checks)
    if ctx.fairness.groups:
        out["fairness_groups"] = fairness_bars(ctx.fairness.groups, policy_float(pol, "fairness.air_warn", 0.8),
                                               policy_float(pol, "fairness.air_fail", 0.7))
    return out
