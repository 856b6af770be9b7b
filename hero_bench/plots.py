"""Figures of a ``hero_bench.summary.summarise`` result (``hero_bench.report.summarise``).

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend switch, no display needed) and saved with ``hero_bench.io.atomic_save_figure``.
Both figures show the primary metric: success on the task's own prompts (fresh evaluation noise).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from hero_bench.io import atomic_save_figure
from hero_bench.runs_table import ResultsFormatError
from hero_bench.summary import AGGREGATE_TASK, BASE, method_label, method_sort_key

FEEDBACK_LABEL = "feedback (images labelled)"
SUCCESS_LABEL = "success on the task's prompts"
"""The y-axis: the primary metric, success on the task's own prompts from fresh evaluation noise
(the summary's ``success`` rows; the held-out ``transfer`` rows are tabulated, not plotted)."""


def figure_grid(nrows: int, ncols: int, width: float, height: float):
    """A Figure (Agg canvas, constrained layout) of nrows × ncols axes, each width × height inches;
    returns (fig, axes[nrows, ncols])."""
    # deferred: matplotlib (0.3 s; only drawing a figure needs it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _colors(methods) -> dict:
    # deferred: matplotlib (only drawing a figure needs it)
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _success(summary: pd.DataFrame) -> pd.DataFrame:
    succ = summary[summary["metric"] == "success"]
    if succ.empty:
        raise ResultsFormatError("the summary has no 'success' rows to plot")
    return succ


def _ci_text(summary: pd.DataFrame) -> str:
    r = summary.iloc[0]
    return (f"IQM over seeds with {int(round(100 * float(r.ci_level)))}% stratified bootstrap CI "
            f"({int(r.bootstrap_reps)} resamples)")


def plot_curves(summary: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Success against feedback: per method the IQM over seeds at each budget of the checkpoint grid
    with its CI band, one panel per (tier, task); the base model as a dashed horizontal line."""
    succ = _success(summary)
    panels = [(tier, task) for (tier, task) in
              sorted(set(zip(succ.tier, succ.task)), key=lambda k: (k[0], k[1] == AGGREGATE_TASK, k[1]))]
    methods = sorted(set(succ.method), key=method_sort_key)
    colors = _colors(methods)
    multi_tier = len({p[0] for p in panels}) > 1
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = figure_grid(nrows, ncols, 4.2, 3.2)
    held = False
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (tier, task) in zip(axes.flat, panels):
        g = succ[(succ.tier == tier) & (succ.task == task)]
        xmax = float(g.budget.max())
        for m in methods:
            gm = g[g.method == m].sort_values("budget")
            if gm.empty:
                continue
            label = method_label(m)
            if m.lower() == BASE:
                ax.axhline(float(gm.estimate.iloc[0]), color=colors[m], ls="--", lw=1.2, label=f"{label} (0 feedback)")
                continue
            x = gm.budget.to_numpy(float)
            y, lo, hi = (gm[c].to_numpy(float) for c in ("estimate", "ci_low", "ci_high"))
            fmax = pd.to_numeric(gm.feedback_max, errors="coerce").to_numpy(float)
            measured = ~(x > fmax)  # NaN feedback_max: treat as measured
            last = int(np.flatnonzero(measured)[-1]) if measured.any() else 0
            ax.plot(x[: last + 1], y[: last + 1], marker="o", ms=3, color=colors[m], label=label)
            ax.fill_between(x[: last + 1], lo[: last + 1], hi[: last + 1], color=colors[m], alpha=0.2, lw=0)
            if last + 1 < len(x):  # budgets past some run's last checkpoint: the final model, held
                ax.plot(x[last:], y[last:], ls=":", lw=1.2, color=colors[m])
                ax.plot(x[last + 1 :], y[last + 1 :], ls="none", marker="o", ms=3, mfc="none", color=colors[m])
                held = True
        title = "all tasks" if task == AGGREGATE_TASK else str(task)
        ax.set_title(f"{tier}: {title}" if multi_tier else title, fontsize=10)
        xmax = xmax if xmax > 0 else 1.0
        ax.set_xlim(-0.02 * xmax, 1.03 * xmax)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(FEEDBACK_LABEL)
        ax.set_ylabel(SUCCESS_LABEL)
        ax.grid(alpha=0.3)
    handles, labels = {}, {}
    for ax in axes.flat[: len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if held:
        # deferred: matplotlib (only drawing a figure needs it)
        from matplotlib.lines import Line2D

        handles["runs ended: last checkpoint held"] = Line2D([], [], ls=":", color="0.4")
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncols=max(1, len(handles)), fontsize=9, frameon=False)
    fig.suptitle(f"Success on the task's prompts vs feedback ({_ci_text(summary)})", fontsize=10)
    atomic_save_figure(fig, out_png, dpi=120)


def plot_final(summary: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Final-budget IQM success with its CI for every task and method (the base model at 0 feedback),
    one panel per tier."""
    succ = _success(summary)
    tiers = sorted(set(succ.tier))
    fig_width = max(4.5, 1.2 * max(len(set(succ[succ.tier == t].task)) for t in tiers) + 1.5)
    fig, axes = figure_grid(len(tiers), 1, fig_width, 3.4)
    methods = sorted(set(succ.method), key=method_sort_key)
    colors = _colors(methods)
    for ax, tier in zip(axes[:, 0], tiers):
        g = succ[succ.tier == tier]
        final = int(g.budget.max())
        tasks = sorted(set(g.task) - {AGGREGATE_TASK}) + ([AGGREGATE_TASK] if AGGREGATE_TASK in set(g.task) else [])
        width = 0.8 / max(1, len(methods))
        for j, m in enumerate(methods):
            xs, ys, lo, hi = [], [], [], []
            for i, task in enumerate(tasks):
                gm = g[(g.task == task) & (g.method == m)]
                if gm.empty:
                    continue
                r = gm.sort_values("budget").iloc[-1]  # base: its only row (0); others: the final budget
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(r.estimate))
                lo.append(float(r.estimate) - float(r.ci_low))
                hi.append(float(r.ci_high) - float(r.estimate))
            if not xs:
                continue
            label = method_label(m) + (" (0 feedback)" if m.lower() == BASE else "")
            ax.errorbar(xs, ys, yerr=np.array([lo, hi]), fmt="o", ms=5, capsize=3, color=colors[m], label=label)
        ax.set_xticks(range(len(tasks)), ["all tasks" if t == AGGREGATE_TASK else str(t) for t in tasks])
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(SUCCESS_LABEL)
        ax.set_title(f"{tier}: success on the task's prompts at {final} feedback", fontsize=10)
        ax.set_xlabel(_ci_text(summary), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    atomic_save_figure(fig, out_png, dpi=120)
