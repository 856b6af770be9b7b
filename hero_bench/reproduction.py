"""Does a rerun reproduce the published results? Fresh estimates against published 95% CIs.

Runs are bitwise reproducible on one machine, not across machines: SIMD kernels and BLAS builds
round differently, a sampled image can cross the oracle's decision boundary, and a success rate
then moves by one image in ``n_eval`` (measured on a fresh machine of the development kind: 16 of
150 checkpoint values differed, by at most 3 of 32 images). So a rerun is judged against the
published intervals, not the published numbers.

The rule, per (tier, task, method, metric, budget) row that both summaries share, for the
``success`` metric (every budget) and ``auc``:

    inside  <=>  published.ci_low - slack <= fresh.estimate <= published.ci_high + slack

``slack`` is the resolution of a success rate, one image of the evaluation (``1 / n_eval`` from
the runs table when the caller gives it, else ``--slack``). Without it the base model's row,
whose CI has zero width because every seed samples the same evaluation noise, would be "outside"
whenever one image of the rerun rounds the other way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from hero_bench.errors import HeroBenchError
from hero_bench.summary import AGGREGATE_TASK

KEY_COLUMNS = ("tier", "task", "method", "metric", "budget")
COMPARED_METRICS = ("success", "auc")
COLUMNS = ("tier", "task", "method", "metric", "budget", "fresh", "fresh_ci_low", "fresh_ci_high",
           "published", "published_ci_low", "published_ci_high", "slack", "inside", "mismatch")
DESIGN_COLUMNS = ("n_seeds", "n_tasks", "oracle_version", "task_version", "label_noise", "backbone")
"""Columns that must agree for a cell to be comparable at all: a rerun with other seeds, tasks,
oracle version, task definition, label noise or backbone is a different experiment, not a
reproduction."""


class ReproductionError(HeroBenchError, ValueError):
    """A summary that cannot be compared (missing file or columns, no shared rows)."""


def summary_file(path: str | Path) -> Path:
    """A summary.csv, or the results folder holding summary/summary.csv, as the summary's path."""
    path = Path(path)
    return path / "summary" / "summary.csv" if path.is_dir() else path


def _read_summary(path: str | Path, role: str) -> pd.DataFrame:
    path = summary_file(path)
    if not path.is_file():
        raise ReproductionError(f"{role} summary {str(path)!r} does not exist; pass a summary.csv written "
                                f"by `hero-bench report` or the results folder that holds summary/summary.csv")
    df = pd.read_csv(path)
    needed = set(KEY_COLUMNS) | {"estimate", "ci_low", "ci_high"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ReproductionError(f"{role} summary {str(path)!r} lacks the columns {missing}; "
                                f"is it a summary.csv written by `hero-bench report`?")
    df = df[df.metric.isin(COMPARED_METRICS)].copy()
    df["budget"] = df["budget"].fillna(-1).astype(int)
    return df


def compare(fresh: str | Path, published: str | Path, slack: float = 0.0) -> pd.DataFrame:
    """One row per compared cell with ``inside`` (bool); see the module docstring for the rule."""
    if slack < 0:
        raise ReproductionError(f"slack must be >= 0, got {slack}")
    new = _read_summary(fresh, "fresh")
    ref = _read_summary(published, "published")
    keys = list(KEY_COLUMNS)
    merged = new.merge(ref, on=keys, suffixes=("_new", "_ref"))
    if merged.empty:
        raise ReproductionError(
            f"the fresh summary {str(fresh)!r} and the published one {str(published)!r} share no "
            f"(tier, task, method, metric, budget) row; were they made with the same config?")
    out = pd.DataFrame({
        **{k: merged[k] for k in keys},
        "fresh": merged.estimate_new, "fresh_ci_low": merged.ci_low_new, "fresh_ci_high": merged.ci_high_new,
        "published": merged.estimate_ref, "published_ci_low": merged.ci_low_ref,
        "published_ci_high": merged.ci_high_ref,
    })
    out["slack"] = float(slack)
    tasks_new, tasks_ref = _tasks_per_tier(new), _tasks_per_tier(ref)
    out["mismatch"] = [_mismatch(row, tasks_new, tasks_ref) for _, row in merged.iterrows()]
    out["inside"] = ((out.fresh >= out.published_ci_low - slack - 1e-12)
                     & (out.fresh <= out.published_ci_high + slack + 1e-12) & (out.mismatch == ""))
    return out.sort_values(keys).reset_index(drop=True)[list(COLUMNS)]


def _tasks_per_tier(df: pd.DataFrame) -> dict[str, str]:
    """tier -> the sorted, comma-joined tasks a summary has rows for (the aggregate row excluded)."""
    rows = df[df.task != AGGREGATE_TASK]
    return {tier: ",".join(sorted(set(group.task))) for tier, group in rows.groupby("tier")}


def _mismatch(row, tasks_new: dict[str, str], tasks_ref: dict[str, str]) -> str:
    """'' when the two cells come from the same design, else what differs (e.g. 'n_seeds 3 vs 5').

    An aggregate cell also needs the same tasks: a default run whose second task changed has the
    same n_tasks but averages over different things."""
    out = []
    if row["task"] == AGGREGATE_TASK:
        new, ref = tasks_new.get(row["tier"], ""), tasks_ref.get(row["tier"], "")
        if new != ref:
            out.append(f"tasks {new} vs {ref}")
    for col in DESIGN_COLUMNS:
        new, ref = row.get(f"{col}_new"), row.get(f"{col}_ref")
        if new is None or ref is None or (pd.isna(new) and pd.isna(ref)):
            continue
        if str(new) != str(ref):
            out.append(f"{col} {new} vs {ref}")
    return "; ".join(out)


def eval_resolution(runs_csv: str | Path) -> float:
    """One image of the evaluation: 1 / the smallest n_eval in a gathered runs table."""
    runs = pd.read_csv(runs_csv, usecols=["n_eval"])
    if runs.empty:
        raise ReproductionError(f"{str(runs_csv)!r} holds no rows")
    return 1.0 / int(runs.n_eval.min())


def headline(table: pd.DataFrame) -> str:
    """One sentence: all cells reproduce, or how many fall outside and how many compare cells of
    another design (another oracle version, say), which is no verdict on the numbers."""
    n = len(table)
    incomparable = table.mismatch != ""
    n_outside = int((~table.inside & ~incomparable).sum())
    if n_outside == 0 and not incomparable.any():
        return f"**All {n} cells reproduce.**"
    parts = []
    if n_outside:
        parts.append(f"**{n_outside} of {n} cells fall outside the published intervals** (marked ✗ below).")
    if incomparable.any():
        designs = "; ".join(sorted(set(table.mismatch[incomparable])))
        parts.append(f"**{int(incomparable.sum())} of {n} cells are not comparable**: they come from another "
                     f"design ({designs}), so they say nothing about reproduction; rerun with the "
                     f"published design, or publish these results as the new reference.")
    return " ".join(parts)


def render_markdown(table: pd.DataFrame, fresh: str, published: str) -> str:
    """The verdict as a Markdown section: a headline, then every compared cell."""
    lines = [
        "# Reproduction check",
        "",
        f"Fresh results `{fresh}` against the published ones `{published}`: a cell reproduces when its "
        f"fresh estimate lies inside the published 95% CI widened by {table.slack.iloc[0]:.4f} on each "
        f"side (one evaluation image; runs are bitwise reproducible on one machine, not across CPUs).",
        "",
        headline(table),
        "",
        "| task | method | metric | budget | fresh [95% CI] | published [95% CI] | inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        budget = "—" if r.budget < 0 else str(r.budget)
        lines.append(
            f"| {r.task} | {r.method} | {r.metric} | {budget} | {r.fresh:.3f} [{r.fresh_ci_low:.3f}, "
            f"{r.fresh_ci_high:.3f}] | {r.published:.3f} [{r.published_ci_low:.3f}, {r.published_ci_high:.3f}] "
            f"| {'✓' if r.inside else ('✗ not comparable: ' + r.mismatch if r.mismatch else '✗')} |")
    lines.append("")
    lines.append(f"Made by `hero-bench compare {fresh} {published}`.")
    return "\n".join(lines) + "\n"


def outside(table: pd.DataFrame) -> Sequence[str]:
    """One line per cell outside its published interval (for the console)."""
    return [f"{r.task}/{r.method} {r.metric}@{r.budget}: "
            + (f"not comparable ({r.mismatch})" if r.mismatch else
               f"fresh {r.fresh:.3f} not in [{r.published_ci_low - r.slack:.3f}, {r.published_ci_high + r.slack:.3f}]")
            for r in table.itertuples() if not r.inside]
