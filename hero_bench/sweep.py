"""Hyper-parameter sweeps: rank each method's configurations by the area under its success curve.

A sweep (``workflows/config/tune.yaml``) runs every method with the same number of named
configurations ("variants") on tuning seeds that no reported result uses. Each run's eval.csv
lives at ``.../<task>/<method>/<variant>/seed<k>/eval.csv``; this module reads those, scores each
run by its normalised area under the success-vs-feedback step curve from 0 to the budget
(``stats.normalized_auc``: the whole curve counts, so a configuration that climbs and falls back
loses to one that climbs and holds), and picks, per method, the variant with the highest mean
AUC over tasks and seeds.

A highest mean is not yet a decision: with a few tuning runs per configuration, one 64-image
evaluation point moves a run's AUC by several hundredths. ``selection_margins`` therefore sets the
selected variant against the runner-up on the runs they share (the same task and tuning seed, so
the evaluation noise and the first round's batch are common to both) and gives the mean paired
AUC difference with its Student t interval. A difference whose interval reaches 0 is a tie: the
table says so, and the project's rule is to keep the preset's value on a tie (docs/methods.md,
"How sure a sweep's selection is").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from hero_bench.errors import HeroBenchError
from hero_bench.methods import trained_method_names
from hero_bench.stats import mean_t_ci, normalized_auc

COLUMNS = ("task", "method", "variant", "n_seeds", "auc_mean", "auc_min", "auc_max", "base", "final_mean",
           "final_min", "final_max", "budget", "selected")
MARGIN_COLUMNS = ("method", "selected", "runner_up", "n_pairs", "diff_mean", "diff_low", "diff_high", "decided")


class SweepError(HeroBenchError, ValueError):
    """An eval.csv that is not part of a sweep layout, or an empty sweep."""


def _path_pattern(filename: str) -> re.Pattern:
    """``<task>/<method>/<variant>/seed<k>/<filename>`` where the method is one that trains (the
    method table's, hero_bench/methods.py: base has no settings to sweep)."""
    methods = "|".join(map(re.escape, trained_method_names()))
    return re.compile(rf"(?P<task>[a-z][a-z0-9_]*)/(?P<method>{methods})/(?P<variant>[A-Za-z0-9_.+-]+)"
                      rf"/seed(?P<seed>[0-9]+)/{re.escape(filename)}$")


def parse_run_path(path: str | Path, filename: str = "eval.csv") -> dict:
    """task, method, variant and seed (int) of the path of a sweep run's file ``filename``; a
    SweepError otherwise."""
    m = _path_pattern(filename).search(Path(path).as_posix())
    if m is None:
        raise SweepError(f"{str(path)!r} is not a sweep run's {filename}; expected "
                         f".../<task>/<method>/<variant>/seed<k>/{filename}")
    return {**m.groupdict(), "seed": int(m["seed"])}


def read_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: task, method, variant, seed, budget, auc, base, final and best success
    (``best``: the highest evaluation of the run, for telling a run that fell back from one that
    never rose)."""
    rows = []
    for path in paths:
        key = parse_run_path(path)
        df = pd.read_csv(path)
        if df.empty or "feedback_used" not in df or "success_rate" not in df:
            raise SweepError(f"{str(path)!r} holds no evaluation rows with feedback_used and success_rate")
        df = df.sort_values(["feedback_used", "epoch"])
        budget = float(df.feedback_used.max())
        if budget <= 0:
            raise SweepError(f"{str(path)!r}: the run spent no feedback (base runs are not swept)")
        rows.append({
            **key, "budget": budget,
            "auc": normalized_auc(df.feedback_used, df.success_rate, budget),
            "base": float(df.success_rate.iloc[0]), "final": float(df.success_rate.iloc[-1]),
            "best": float(df.success_rate.max()),
        })
    if not rows:
        raise SweepError("no sweep runs given")
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, method, variant): the AUC and final success over seeds; ``selected`` marks each
    method's variant with the highest mean AUC over all its runs (ties: the first name)."""
    groups = runs.groupby(["task", "method", "variant"], sort=True)
    table = groups.agg(n_seeds=("seed", "nunique"), auc_mean=("auc", "mean"), auc_min=("auc", "min"),
                       auc_max=("auc", "max"), base=("base", "mean"), final_mean=("final", "mean"),
                       final_min=("final", "min"), final_max=("final", "max"),
                       budget=("budget", "max")).reset_index()
    best = {method: _best_two(mruns)[0] for method, mruns in runs.groupby("method")}
    table["selected"] = [best[m] == v for m, v in zip(table.method, table.variant)]
    return table[list(COLUMNS)]


def _best_two(runs: pd.DataFrame) -> tuple[str, str | None]:
    """The method's variants with the highest and second-highest mean AUC (ties: the first name)."""
    order = runs.groupby("variant").auc.mean().sort_index()
    ranked = sorted(order.index, key=lambda v: -order[v])  # stable: equal means keep name order
    return ranked[0], (ranked[1] if len(ranked) > 1 else None)


def paired_aucs(runs: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """The AUCs of variants ``first`` and ``second`` (columns) on the (task, seed) runs both have
    (rows): runs only one of them has do not share the other's noise and are left out."""
    auc = runs.pivot_table(index=["task", "seed"], columns="variant", values="auc", aggfunc="mean")
    return auc[[first, second]].dropna()


def selection_margins(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per method: the selected variant against the runner-up, paired on (task, seed).

    ``diff_*`` is the mean over shared runs of AUC(selected) − AUC(runner-up) and its two-sided
    1 − alpha Student t interval (``stats.mean_t_ci``; one shared run gives an unbounded interval).
    ``decided`` is true when the interval lies above 0; otherwise the two are a tie. A method with a
    single variant has no runner-up (``decided`` false, nothing to compare). Unpaired runs (a task
    or seed only one of the two ran) are left out of the difference: they do not share its noise."""
    rows = []
    for method, mruns in runs.groupby("method", sort=True):
        selected, runner_up = _best_two(mruns)
        row = {"method": method, "selected": selected, "runner_up": runner_up, "n_pairs": 0,
               "diff_mean": float("nan"), "diff_low": float("nan"), "diff_high": float("nan"), "decided": False}
        if runner_up is not None:
            paired = paired_aucs(mruns, selected, runner_up)
            row["n_pairs"] = len(paired)
            if len(paired):
                ci = mean_t_ci((paired[selected] - paired[runner_up]).to_numpy(), alpha=alpha)
                row.update(diff_mean=ci.estimate, diff_low=ci.low, diff_high=ci.high, decided=bool(ci.low > 0))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(MARGIN_COLUMNS))


def _margin_line(r) -> str:
    if r.runner_up is None:
        return f"| {r.method} | {r.selected} | (one configuration) | 0 | | |"
    if r.n_pairs == 0:
        return f"| {r.method} | {r.selected} | {r.runner_up} | 0 | (no shared task and seed) | tie |"
    verdict = "decided" if r.decided else "**tie**: keep the preset's value"
    return (f"| {r.method} | {r.selected} | {r.runner_up} | {r.n_pairs} | {r.diff_mean:+.3f} "
            f"[{r.diff_low:+.3f}, {r.diff_high:+.3f}] | {verdict} |")


def render_markdown(table: pd.DataFrame, runs: pd.DataFrame, command: str,
                    margins: pd.DataFrame | None = None) -> str:
    counts = runs.groupby("method").variant.nunique()
    lines = [
        "# Hyper-parameter sweep",
        "",
        "Configurations per method: " + ", ".join(f"{m} {n}" for m, n in counts.items()) + "; tuning seeds "
        + ", ".join(str(s) for s in sorted(runs.seed.unique())) + " (never used for reported results).",
        "Score: normalised area under the success-vs-feedback step curve from 0 to the budget (mean over "
        "seeds, [min, max]); the selected variant (**bold**) has the highest mean AUC over all tasks.",
        "",
        "| task | method | variant | n | AUC mean [min, max] | base | final mean [min, max] | budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        name = f"**{r.variant}**" if r.selected else r.variant
        lines.append(f"| {r.task} | {r.method} | {name} | {r.n_seeds} | {r.auc_mean:.3f} [{r.auc_min:.3f}, "
                     f"{r.auc_max:.3f}] | {r.base:.3f} | {r.final_mean:.3f} [{r.final_min:.3f}, "
                     f"{r.final_max:.3f}] | {r.budget:.0f} |")
    if margins is not None:
        lines += [
            "",
            "Selected against the runner-up on the runs both have (same task and tuning seed): mean AUC "
            "difference with its 95% Student t interval. An interval that reaches 0 is a tie.",
            "",
            "| method | selected | runner-up | paired runs | AUC difference [95% t] | verdict |",
            "|---|---|---|---|---|---|",
            *(_margin_line(r) for r in margins.itertuples()),
        ]
    lines += ["", f"Made by `{command}`.", ""]
    return "\n".join(lines)

