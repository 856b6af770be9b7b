"""Where does HERO win? Its success against DDPO's and D3PO's at equal feedback, per noise-influence
regime, set against how much the initial noise z_T decides the outcome there (ICC(1) of success
over initial noises, `hero-bench noise-influence`), and the feedback HERO needs to reach D3PO's
final success (the paper's headline ratio), per regime.

Inputs are files only (this module imports no run code): the eval.csv of the runs of an ablation
sweep (layout ``<task>/<method>/<variant>/seed<k>/eval.csv``, as the workflow's tune rules write
it), the JSON files of `hero-bench noise-influence --regime NAME --json FILE`, and a map from each
regime to the variant that is every method's plain run in it (toy-ablations.yaml: ``initial-noise:
zT``, ``step-noise: step``).

Comparisons at equal feedback are paired by seed: every run of a seed is evaluated on the same
evaluation noise (``eval.seed`` is shared by all methods and training seeds), so the per-seed
difference of two methods' success carries no evaluation-noise variance of its own; its mean gets
the Student t interval on n − 1 degrees of freedom (``stats.mean_t_ci``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hero_bench.errors import HeroBenchError
from hero_bench.io import atomic_save_figure
from hero_bench.noise_influence import recorded_interval
from hero_bench.plots import figure_grid
from hero_bench.stats import feedback_ratio, mean_t_ci, success_at
from hero_bench.sweep import SweepError, parse_run_path

CANDIDATE = "hero"
"""The method whose gain is measured."""
OTHERS = ("ddpo", "d3po")
"""The methods HERO is set against, in table order; D3PO is also the reference of the feedback ratio."""
REFERENCE = "d3po"

COMPARISON_COLUMNS = ("task", "regime", "variant", "icc", "icc_low", "icc_high", "other", "budget", "n_seeds",
                      "hero_success", "other_success", "diff", "diff_low", "diff_high")
PERSON_COLUMNS = ("task", "person", "variant", "method", "budget", "n_seeds", "success", "gain", "gain_low",
                  "gain_high", "change", "change_low", "change_high", "hero_minus", "hero_minus_low", "hero_minus_high")
RATIO_COLUMNS = ("task", "regime", "variant", "n_hero", "n_d3po", "d3po_final", "d3po_feedback",
                 "hero_feedback", "reached", "ratio", "ratio_low", "ratio_high", "censored_share")


class RegimeComparisonError(HeroBenchError, ValueError):
    """Inputs that do not make a regime comparison (a missing run, an ICC file without its regime)."""


@dataclass(frozen=True)
class IccRecord:
    """ICC(1) of success over initial noises for one (task, regime), read from a noise-influence JSON."""

    task: str
    regime: str
    icc: float
    low: float
    high: float
    n_noises: int
    repeats: int


def read_icc(paths: Iterable[str | os.PathLike]) -> dict[tuple[str, str], IccRecord]:
    """(task, regime) -> its ICC record, from `hero-bench noise-influence --regime NAME --json` files."""
    out: dict[tuple[str, str], IccRecord] = {}
    for path in paths:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RegimeComparisonError(f"{str(path)!r}: not a readable noise-influence JSON ({exc})") from None
        if not d.get("regime"):
            raise RegimeComparisonError(
                f"{str(path)!r} records no regime; measure it with `hero-bench noise-influence --regime NAME "
                f"--json FILE` (without --eta, --steps, --guidance or --use-clipped-model-output)")
        try:
            low, high = recorded_interval(d)
        except ValueError as exc:
            raise RegimeComparisonError(f"{str(path)!r} {exc}; measure it again with this version") from None
        key = (str(d["task"]), str(d["regime"]))
        if key in out:
            raise RegimeComparisonError(f"two noise-influence files for task {key[0]!r} in regime {key[1]!r}")
        out[key] = IccRecord(key[0], key[1], float(d["icc_success"]), float(low), float(high),
                             int(d["n_noises"]), int(d["repeats"]))
    return out


def read_curves(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per evaluation of each run: task, method, variant, seed, feedback_used, success_rate."""
    frames = []
    for path in paths:
        key = parse_run_path(path)
        df = pd.read_csv(path, usecols=["feedback_used", "success_rate"])
        if df.empty:
            raise RegimeComparisonError(f"{str(path)!r} holds no evaluation rows")
        frames.append(df.assign(**key))
    if not frames:
        raise RegimeComparisonError("no runs given")
    return pd.concat(frames, ignore_index=True)


def _runs(curves: pd.DataFrame, task: str, method: str, variant: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """seed -> (feedback, success) of the runs of one cell."""
    cell = curves[(curves.task == task) & (curves.method == method) & (curves.variant == variant)]
    return {int(seed): (g.feedback_used.to_numpy(float), g.success_rate.to_numpy(float))
            for seed, g in cell.groupby("seed")}


def _at(runs: Mapping[int, tuple[np.ndarray, np.ndarray]], budget: int, what: str) -> dict[int, float]:
    """seed -> success at ``budget`` labels (the last evaluation at or below it) of a cell's runs."""
    out = {seed: float(success_at(fb, sr, budget)) for seed, (fb, sr) in runs.items()}
    if any(math.isnan(v) for v in out.values()):
        raise RegimeComparisonError(f"{what}: a run has no evaluation at or below {budget} labels")
    return out


_NO_VALUE = (math.nan, math.nan, math.nan)


def _paired(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[int, float, float, float]:
    """n, mean and t interval of a − b over the seeds both have (NaN when they share none)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return 0, math.nan, math.nan, math.nan
    ci = mean_t_ci([a[s] - b[s] for s in seeds])
    return len(seeds), ci.estimate, ci.low, ci.high


def common_budget(curves: pd.DataFrame) -> int:
    """The largest feedback every run reached: the default budget of the comparison."""
    return int(curves.groupby(["task", "method", "variant", "seed"]).feedback_used.max().min())


def compare(curves: pd.DataFrame, icc: Mapping[tuple[str, str], IccRecord], variants: Mapping[str, str],
            budget: int) -> pd.DataFrame:
    """Per (task, regime, other method): HERO's success minus the other's at ``budget``, paired by seed.

    ``variants`` maps each regime to the variant that is every method's plain run in it. A cell is
    left out when either method has no run of that variant for the task; an ICC record must exist
    for every (task, regime) that has a cell."""
    rows = []
    for task in sorted(set(curves.task)):
        for regime, variant in variants.items():
            hero = _runs(curves, task, CANDIDATE, variant)
            for other in OTHERS:
                runs = _runs(curves, task, other, variant)
                if not hero or not runs:
                    continue
                rec = icc.get((task, regime))
                if rec is None:
                    raise RegimeComparisonError(f"no noise-influence file for task {task!r} in regime {regime!r}")
                h = _at(hero, budget, f"{task}/{variant}")
                o = _at(runs, budget, f"{task}/{variant}")
                n, diff, low, high = _paired(h, o)
                if n == 0:
                    raise RegimeComparisonError(f"{task}/{variant}: HERO and {other} share no seed")
                seeds = set(h) & set(o)
                rows.append({"task": task, "regime": regime, "variant": variant, "icc": rec.icc,
                             "icc_low": rec.low, "icc_high": rec.high, "other": other, "budget": budget,
                             "n_seeds": n, "hero_success": float(np.mean([h[s] for s in seeds])),
                             "other_success": float(np.mean([o[s] for s in seeds])),
                             "diff": diff, "diff_low": low, "diff_high": high})
    if not rows:
        raise RegimeComparisonError("no (task, regime) has runs of HERO and of DDPO or D3PO under the variants "
                                    + ", ".join(f"{r}: {v}" for r, v in variants.items()))
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def ratios(curves: pd.DataFrame, variants: Mapping[str, str], budget: int, reps: int = 2000,
           seed: int = 0) -> pd.DataFrame:
    """Per (task, regime): the feedback HERO needs to reach D3PO's final success and D3PO's over it
    (``stats.feedback_ratio``) on the evaluations at or below ``budget`` labels (so that runs trained
    further count as stopped there: equal feedback), with a 95% percentile interval from resampling
    each method's seeds with replacement. A resample in which HERO never reaches the target gives an
    upper bound of the ratio; ``censored_share`` says how many did (and the point estimate is one
    when ``reached`` is False)."""
    curves = curves[curves.feedback_used <= budget]
    rng = np.random.default_rng(seed)
    rows = []
    for task in sorted(set(curves.task)):
        for regime, variant in variants.items():
            hero = list(_runs(curves, task, CANDIDATE, variant).values())
            ref = list(_runs(curves, task, REFERENCE, variant).values())
            if not hero or not ref:
                continue
            point = feedback_ratio(ref, hero)
            boot, censored = np.empty(reps), 0
            for i in range(reps):
                rh = [hero[j] for j in rng.integers(0, len(hero), len(hero))]
                rr = [ref[j] for j in rng.integers(0, len(ref), len(ref))]
                r = feedback_ratio(rr, rh)
                boot[i] = r.ratio
                censored += not r.reached
            finite = boot[np.isfinite(boot)]
            low, high = (np.percentile(finite, [2.5, 97.5]) if finite.size else (math.inf, math.inf))
            rows.append({"task": task, "regime": regime, "variant": variant, "n_hero": len(hero), "n_d3po": len(ref),
                         "d3po_final": point.reference_success, "d3po_feedback": point.reference_feedback,
                         "hero_feedback": point.candidate_feedback, "reached": point.reached, "ratio": point.ratio,
                         "ratio_low": float(low), "ratio_high": float(high), "censored_share": censored / reps})
    return pd.DataFrame(rows, columns=list(RATIO_COLUMNS))


def gains(curves: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Per (task, method, variant): success at ``budget`` and its gain over the same runs at 0 labels
    (the pretrained model on the same evaluation noise), mean over seeds with its t interval."""
    rows = []
    for (task, method, variant), cell in curves.groupby(["task", "method", "variant"], sort=True):
        per_seed = [(success_at(g.feedback_used, g.success_rate, 0), success_at(g.feedback_used, g.success_rate, budget))
                    for _, g in cell.groupby("seed")]
        base = np.array([b for b, _ in per_seed])
        at = np.array([a for _, a in per_seed])
        if np.isnan(base).any() or np.isnan(at).any():
            raise RegimeComparisonError(f"{task}/{method}/{variant}: a run lacks its evaluation at 0 or at {budget} labels")
        ci = mean_t_ci(at - base)
        rows.append({"task": task, "method": method, "variant": variant, "n_seeds": len(per_seed),
                     "base": float(base.mean()), "success": float(at.mean()), "gain": ci.estimate,
                     "gain_low": ci.low, "gain_high": ci.high})
    return pd.DataFrame(rows)


def person_table(curves: pd.DataFrame, person: Mapping[str, str], budget: int) -> pd.DataFrame:
    """How an imperfect person erodes each method: per (task, person, method) with runs.

    ``person`` maps a label to the variant every method runs with that person (toy-ablations.yaml:
    ``oracle: zT``, ``flip0.1: zT_flip0.1``, ...); the first entry is the reference, the oracle's
    own labels. Per cell, at ``budget`` labels: the success (mean over seeds), its gain over the same
    runs at 0 labels, its change from the same method and seed with the reference person, and
    HERO's success minus this method's with the same person; each a paired mean over seeds with its
    t interval. Pairing across persons holds because only the labels differ between those runs: the
    seed fixes the sampling noise, the evaluation noise and the pretrained model."""
    if not person:
        raise RegimeComparisonError("no person given; expected LABEL=VARIANT items, the first the reference")
    labels = list(person)
    methods = (CANDIDATE, *OTHERS)
    rows = []
    for task in sorted(set(curves.task)):
        cells = {(label, method): _runs(curves, task, method, person[label]) for label in labels for method in methods}
        # a task where no method ran an imperfect person (a workflow's sweep_tasks kept it to
        # others) has nothing to compare with its reference runs
        if not any(cells[label, method] for label in labels[1:] for method in methods):
            continue
        # each cell's success at the budget, read once: its own row, the reference and HERO's lead use it
        at_budget = {(label, method): _at(runs, budget, f"{task}/{method}/{person[label]}")
                     for (label, method), runs in cells.items()}
        for label in labels:
            variant = person[label]
            for method in methods:
                runs = cells[label, method]
                if not runs:
                    continue
                at = at_budget[label, method]
                base = _at(runs, 0, f"{task}/{method}/{variant}")
                n, gain, gain_low, gain_high = _paired(at, base)
                # the reference has no change of its own, HERO no lead over itself
                change = _paired(at, at_budget[labels[0], method])[1:] if label != labels[0] else _NO_VALUE
                vs_hero = _paired(at_budget[label, CANDIDATE], at)[1:] if method != CANDIDATE else _NO_VALUE
                rows.append({"task": task, "person": label, "variant": variant, "method": method, "budget": budget,
                             "n_seeds": n, "success": float(np.mean(list(at.values()))), "gain": gain,
                             "gain_low": gain_low, "gain_high": gain_high, "change": change[0],
                             "change_low": change[1], "change_high": change[2], "hero_minus": vs_hero[0],
                             "hero_minus_low": vs_hero[1], "hero_minus_high": vs_hero[2]})
    if not rows:
        raise RegimeComparisonError("no task has runs of the person variants " + ", ".join(person.values()))
    return pd.DataFrame(rows, columns=list(PERSON_COLUMNS))


def read_method_noise(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per HERO run from its eval_method_noise.csv (`hero-bench evaluate RUN --method-noise`):
    task, variant, seed, feedback_used and the final model's success from N(0, I) (``gaussian``) and
    from its own π_HERO (``method``)."""
    rows = []
    for path in paths:
        df = pd.read_csv(path)
        by_noise = {str(r.initial_noise): r for r in df.itertuples()} if "initial_noise" in df else {}
        if set(by_noise) != {"gaussian", "method"}:
            raise RegimeComparisonError(f"{str(path)!r}: expected the rows initial_noise = gaussian and method, "
                                        f"got {sorted(by_noise)}")
        g, m = by_noise["gaussian"], by_noise["method"]
        try:
            variant = parse_run_path(path, Path(path).name)["variant"]
        except SweepError:  # a run of the main grid, .../<task>/hero/seed<k>/: no variant
            variant = ""
        rows.append({"task": g.task, "variant": variant, "seed": int(g.seed), "feedback_used": int(g.feedback_used),
                     "gaussian": float(g.success_rate), "method": float(m.success_rate)})
    return pd.DataFrame(rows, columns=["task", "variant", "seed", "feedback_used", "gaussian", "method"])


def method_noise_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant): HERO's final model from N(0, I) and from π_HERO, mean over runs, and their
    paired difference (the same prompts and per-step noise) with its t interval."""
    rows = []
    for (task, variant), cell in runs.groupby(["task", "variant"], sort=True):
        cell = cell.sort_values("seed")
        ci = mean_t_ci(cell.method - cell.gaussian)
        rows.append({"task": task, "variant": variant, "n_seeds": len(cell),
                     "labels": "/".join(str(v) for v in sorted(set(cell.feedback_used))),
                     "gaussian": float(cell.gaussian.mean()), "method": float(cell.method.mean()),
                     "diff": ci.estimate, "diff_low": ci.low, "diff_high": ci.high,
                     "per_seed": ", ".join(f"seed{r.seed}: {r.gaussian:.3f} / {r.method:.3f}"
                                           for r in cell.itertuples())})
    return pd.DataFrame(rows)


def method_noise_markdown(table: pd.DataFrame) -> list[str]:
    """The method-noise table's Markdown lines (header and one row per (task, variant))."""
    lines = ["| task | variant | n | labels | from N(0, I) | from π_HERO | π_HERO − N(0, I) [95% t] | "
             "per seed (N(0, I) / π_HERO) |", "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.variant} | {r.n_seeds} | {r.labels} | {r.gaussian:.3f} | {r.method:.3f} | "
                     f"{_interval(r.diff, r.diff_low, r.diff_high, 3)} | {r.per_seed} |")
    return lines


def _interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:+.{digits}f} (n = 1: no interval)"
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def person_markdown(table: pd.DataFrame) -> list[str]:
    """The imperfect-person section's Markdown lines."""
    reference = table.person.iloc[0]
    budget = int(table.budget.iloc[0])
    lines = ["## An imperfect person", "",
             f"Each method at {budget} labels when the labels come from a person who errs (the variant's evaluator "
             f"settings) against the oracle's own labels ({reference}): success (mean over seeds), gain over the "
             f"pretrained model, the change from the same method and seed with {reference}, and HERO's success minus "
             f"the method's with the same person; each paired by seed, mean [95% t].", "",
             f"| task | person (variant) | method | n | success | gain | change from {reference} | HERO − method |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(mean, low, high):
        return "—" if math.isnan(mean) else _interval(mean, low, high)

    for r in table.itertuples():
        lines.append(f"| {r.task} | {r.person} ({r.variant}) | {r.method.upper()} | {r.n_seeds} | {r.success:.3f} | "
                     f"{cell(r.gain, r.gain_low, r.gain_high)} | {cell(r.change, r.change_low, r.change_high)} | "
                     f"{cell(r.hero_minus, r.hero_minus_low, r.hero_minus_high)} |")
    return lines


def render_markdown(comparison: pd.DataFrame, ratio: pd.DataFrame, gain: pd.DataFrame, command: str,
                    method_noise: pd.DataFrame | None = None, person: pd.DataFrame | None = None) -> str:
    """The tables as Markdown, with how they were made (the method-noise and person tables when given)."""
    budget = int(comparison.budget.iloc[0])
    lines = ["# Where HERO wins: noise-influence regimes", "",
             f"HERO's success on the task's own prompts (fresh evaluation noise) minus DDPO's and D3PO's at "
             f"{budget} labels, paired by seed (every method's runs of a seed share the evaluation noise): mean "
             f"[95% t interval, n − 1 degrees of freedom], set against the regime's ICC(1) of success over initial "
             f"noises [95% bootstrap over the noises].", "",
             "| task | regime | ICC(1) | vs | n | HERO | other | HERO − other |",
             "|---|---|---|---|---|---|---|---|"]
    for r in comparison.itertuples():
        lines.append(f"| {r.task} | {r.regime} ({r.variant}) | {r.icc:.2f} [{r.icc_low:.2f}, {r.icc_high:.2f}] | "
                     f"{r.other.upper()} | {r.n_seeds} | {r.hero_success:.3f} | {r.other_success:.3f} | "
                     f"{_interval(r.diff, r.diff_low, r.diff_high)} |")
    lines += ["", "## Feedback HERO needs to reach D3PO's final success", "",
              "D3PO's final success (IQM over its seeds of each run's last evaluation) is the target; HERO needs the "
              "feedback of the first of its evaluations at which the IQM over its seeds reaches it; ratio = D3PO's "
              "feedback / HERO's (above 1: HERO needs less). Interval: 95% percentile bootstrap, each method's seeds "
              "resampled with replacement; \"> F\" means HERO did not reach the target within its F labels, so the "
              "ratio is an upper bound (\"<\"), and the censored share is the resamples in which it did not.", "",
              "| task | regime | n (HERO, D3PO) | D3PO final | D3PO feedback | HERO feedback | ratio [95%] | censored share |",
              "|---|---|---|---|---|---|---|---|"]
    for r in ratio.itertuples():
        fb = f"{r.hero_feedback:.0f}" if r.reached else f"> {r.hero_feedback:.0f}"
        rt = f"{r.ratio:.2f}" if r.reached else f"< {r.ratio:.2f}"
        # bounds from resamples that all stayed below the target say nothing: leave the interval out
        rt += (f" [{r.ratio_low:.2f}, {r.ratio_high:.2f}]" if r.censored_share < 1
               else " (no resample reached the target)")
        lines.append(f"| {r.task} | {r.regime} ({r.variant}) | {r.n_hero}, {r.n_d3po} | {r.d3po_final:.3f} | "
                     f"{r.d3po_feedback:.0f} | {fb} | {rt} | "
                     f"{r.censored_share:.2f} |")
    lines += ["", f"## Every variant: gain over the pretrained model at {budget} labels", "",
              "Success at the budget minus the same runs' success at 0 labels (the pretrained model on the same "
              "evaluation noise), mean over seeds [95% t].", "",
              "| task | method | variant | n | base | success | gain |", "|---|---|---|---|---|---|---|"]
    for r in gain.itertuples():
        lines.append(f"| {r.task} | {r.method} | {r.variant} | {r.n_seeds} | {r.base:.3f} | {r.success:.3f} | "
                     f"{_interval(r.gain, r.gain_low, r.gain_high)} |")
    if method_noise is not None and len(method_noise):
        lines += ["", "## What HERO's sampler buys against what its weights learned", "",
                  "HERO's final model evaluated twice on the task's own prompts (`hero-bench evaluate RUN "
                  "--method-noise`): from N(0, I), the benchmark's evaluation, and from π_HERO as training left it; "
                  "the two share prompts and per-step noise, so their difference is paired within each run.", ""]
        lines += method_noise_markdown(method_noise)
    if person is not None and len(person):
        lines += [""] + person_markdown(person)
    lines += ["", f"Made by `{command}`.", ""]
    return "\n".join(lines)


def plot(comparison: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """One panel per other method: HERO's gain over it (y, with its t interval) against the regime's
    ICC(1) (x, with its bootstrap interval); one marker per regime, each point named by its task."""
    others = [o for o in OTHERS if o in set(comparison.other)]
    fig, grid = figure_grid(1, len(others), 4.4, 3.6)
    axes = grid[0]
    regimes = list(dict.fromkeys(comparison.regime))
    markers = dict(zip(regimes, "os^Dv<>"))
    for ax, other in zip(axes, others):
        g = comparison[comparison.other == other]
        for regime in regimes:
            gr = g[g.regime == regime]
            x, y = gr.icc.to_numpy(float), gr["diff"].to_numpy(float)
            xerr = np.vstack([x - gr.icc_low.to_numpy(float), gr.icc_high.to_numpy(float) - x])
            lo, hi = gr.diff_low.to_numpy(float), gr.diff_high.to_numpy(float)
            yerr = np.vstack([np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi), hi - y, 0)])
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=markers[regime], ms=6, capsize=3, label=regime)
            for xi, yi, task in zip(x, y, gr.task):
                ax.annotate(task, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.axhline(0, color="0.4", lw=0.8, ls="--")
        ax.set_xlabel("ICC(1) of success over initial noises z_T")
        ax.set_ylabel(f"HERO − {other.upper()} success at {int(g.budget.iloc[0])} labels")
        ax.set_title(f"HERO vs {other.upper()}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(title="regime", fontsize=8, title_fontsize=8)
    n = ", ".join(sorted({str(v) for v in comparison.n_seeds}))
    fig.suptitle(f"Where HERO wins (n = {n} seeds per cell; 95% t and bootstrap intervals)", fontsize=10)
    atomic_save_figure(fig, out_png, dpi=120)


def plot_person(table: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """One panel per task: each method's gain over the pretrained model (t interval) at each person,
    the reference first, so the slope of a line is how fast that method erodes."""
    tasks = list(dict.fromkeys(table.task))
    labels = list(dict.fromkeys(table.person))
    fig, grid = figure_grid(1, len(tasks), 4.2, 3.4)
    methods = [m for m in (CANDIDATE, *OTHERS) if m in set(table.method)]
    for ax, task in zip(grid[0], tasks):
        for k, method in enumerate(methods):
            g = table[(table.task == task) & (table.method == method)]
            # a small sideways shift per method keeps the error bars apart
            x = np.array([labels.index(p) for p in g.person], dtype=float) + (k - (len(methods) - 1) / 2) * 0.08
            y = g.gain.to_numpy(float)
            lo, hi = g.gain_low.to_numpy(float), g.gain_high.to_numpy(float)
            yerr = np.vstack([np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi), hi - y, 0)])
            ax.errorbar(x, y, yerr=yerr, fmt="o-", ms=5, capsize=3, label=method.upper())
        ax.axhline(0, color="0.4", lw=0.8, ls="--")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("who labels")
        ax.set_ylabel(f"gain over pretrained at {int(table.budget.iloc[0])} labels")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
    grid[0][0].legend(fontsize=8)
    n = ", ".join(sorted({str(v) for v in table.n_seeds}))
    # two lines: one task's panel is narrower than the title on one line
    fig.suptitle(f"An imperfect person\n(n = {n} seeds per point; 95% t intervals)", fontsize=10)
    atomic_save_figure(fig, out_png, dpi=120)


def parse_variants(items: Sequence[str], option: str = "--variant", key: str = "REGIME",
                   example: str = "initial-noise=zT") -> dict[str, str]:
    """``["initial-noise=zT", ...]`` -> {regime: variant}, in the order given (``--person`` items
    too: {label: variant}); a RegimeComparisonError names a bad or repeated item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, variant = item.partition("=")
        if not sep or not name.strip() or not variant.strip():
            raise RegimeComparisonError(f"{option} {item!r}: expected {key}=VARIANT, e.g. {example}")
        if name.strip() in out:
            raise RegimeComparisonError(f"{option} {item!r}: {name.strip()!r} is named twice")
        out[name.strip()] = variant.strip()
    return out
