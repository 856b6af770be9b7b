"""Statistics rows: a gathered runs table summarised into feedback-efficiency figures.

``summarise`` turns the runs table (``hero_bench.runs_table.gather``) into one tidy summary
table, one row per tier, task, method, metric and budget or baseline (``SUMMARY_COLUMNS``); the
Markdown tables (``hero_bench.summary_tables``) and the figures (``hero_bench.plots``) are drawn
from it.  Every metric is defined in ``docs/metrics.md``; the statistics are ``hero_bench.stats``.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from hero_bench import stats
from hero_bench.methods import METHODS, method_names
from hero_bench.results import EVAL_COLUMNS
from hero_bench.runs_table import RUN_KEY, ResultsFormatError

# roles in the paper's comparisons, by name: the reference at feedback 0, the candidate of the
# probability of improvement and of the feedback ratio, and the ratio's baseline. The order and
# labels of all methods are the method table's (hero_bench/methods.py).
BASE = "base"
HERO = "hero"
D3PO = "d3po"
AGGREGATE_TASK = "all-tasks"
DEFAULT_THRESHOLD = 0.5
# the gain the toy tier's learnability bar asks of a learner (docs/metrics.md, feedback to gain)
DEFAULT_GAIN = 0.15
DEFAULT_REPS = 2000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05

PROVENANCE_COLUMNS = ("oracle", "oracle_version", "task_version", "label_noise", "backbone", "git_sha")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "tier",
    "task",
    "method",
    "metric",  # success | transfer | auc | feedback_to_threshold | feedback_to_gain | prob_improvement | feedback_ratio
    "budget",  # feedback budget the value is read at (success) or computed up to (others)
    "baseline",  # prob_improvement, feedback_ratio: the method compared against
    "threshold",  # feedback_to_threshold: the success threshold; feedback_to_gain: the gain over the
    # run's base success; feedback_ratio: the target success
    "n_seeds",
    "n_seeds_baseline",
    "estimate",
    "ci_low",
    "ci_high",
    "mean",
    "std",
    "n_reached",
    "censored",
    "reference_feedback",
    "candidate_feedback",
    "feedback_max",  # smallest last-checkpoint feedback_used over the group's runs
    "n_tasks",
    "oracle",
    "oracle_version",
    "task_version",
    "label_noise",
    "backbone",
    "git_sha",
    "n_config_hashes",
    "ci_level",
    "bootstrap_reps",
    "bootstrap_seed",
)


def method_sort_key(method: str) -> tuple[int, str]:
    """The method table's order (hero_bench/methods.py); names it does not hold last, by name."""
    order, m = method_names(), str(method)
    return (order.index(m.lower()) if m.lower() in order else len(order), m)


def method_label(method: str) -> str:
    """The method table's label; a name it does not hold stands for itself."""
    spec = METHODS.get(str(method).lower())
    return spec.label if spec is not None else str(method)


def default_budgets(df: pd.DataFrame) -> list[int]:
    """The checkpoint grid when none is given: the distinct non-zero ``feedback_used`` values of
    the HERO runs (HERO labels whole batches), else of all non-base runs."""
    trained = df[df["method"].str.lower() != BASE]
    hero = trained[trained["method"].str.lower() == HERO]
    pool = hero if not hero.empty else trained
    values = sorted({int(v) for v in pool["feedback_used"] if v > 0})
    if not values:
        raise ResultsFormatError(
            "no checkpoint with feedback_used > 0 in the runs; pass the budgets explicitly (--budgets)"
        )
    return values


def _join(values: Iterable) -> str:
    vals = sorted({str(v) for v in values if not (isinstance(v, float) and math.isnan(v)) and str(v) != ""})
    return ";".join(vals)


def _provenance(rows: pd.DataFrame) -> dict:
    prov = {c: _join(rows[c]) for c in PROVENANCE_COLUMNS}
    prov["n_config_hashes"] = int(rows["config_hash"].replace("", np.nan).nunique())
    return prov


class _Run:
    __slots__ = ("key", "feedback", "success", "transfer")

    def __init__(self, key: tuple, feedback: np.ndarray, success: np.ndarray, transfer: "_Run | None" = None):
        self.key, self.feedback, self.success = key, feedback, success
        self.transfer = transfer  # the same run's transfer curve (held-out prompts), None without one

    def at(self, budgets) -> np.ndarray:
        return stats.success_at(self.feedback, self.success, budgets)

    @property
    def last_feedback(self) -> float:
        return float(np.max(self.feedback))


def _runs(rows: pd.DataFrame) -> list[_Run]:
    out = []
    for key, r in rows.groupby(RUN_KEY, sort=True):
        run = _Run(key, r["feedback_used"].to_numpy(float), r["success_rate"].to_numpy(float))
        t = r[r["transfer_success_rate"].notna()]
        if not t.empty and float(t["feedback_used"].min()) == 0:  # a transfer curve needs its base point
            run.transfer = _Run(key, t["feedback_used"].to_numpy(float), t["transfer_success_rate"].to_numpy(float))
        if float(np.min(run.feedback)) != 0:
            tier, task, method, seed = key
            raise ResultsFormatError(
                f"run tier={tier} task={task} method={method} seed={seed} has no feedback_used = 0 row "
                f"(its first checkpoint is at {np.min(run.feedback):g}); every run's eval.csv must start "
                "with the base model evaluated at feedback 0"
            )
        out.append(run)
    return out


def _spread(values: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return mean, std


class _TierSummary:
    """The summary rows of one tier: its runs by task and method, and one method per metric."""

    def __init__(self, tier: str, tdf: pd.DataFrame, grid: Sequence[int], threshold: float, gain: float,
                 boot: dict):
        self.tier, self.grid, self.final, self.threshold = tier, list(grid), int(grid[-1]), threshold
        self.gain = gain
        self.boot = boot  # reps, alpha, seed of every bootstrap
        self.common = dict(ci_level=1 - boot["alpha"], bootstrap_reps=boot["reps"], bootstrap_seed=boot["seed"])
        self.runs: dict[str, dict[str, list[_Run]]] = {}  # task -> method -> runs
        self.group_rows: dict[tuple[str, str], pd.DataFrame] = {}  # (task, method) -> rows, for provenance
        for (task, method), g in tdf.groupby(["task", "method"], sort=True):
            self.runs.setdefault(task, {})[method] = _runs(g)
            self.group_rows[(task, method)] = g
        self.methods = sorted({m for t in self.runs.values() for m in t}, key=method_sort_key)
        self.hero = next((m for m in self.methods if m.lower() == HERO), None)
        self.d3po = next((m for m in self.methods if m.lower() == D3PO), None)
        # across tasks: the tasks every trained method was run on
        task_sets = [{t for t in self.runs if m in self.runs[t]} for m in self.methods if m.lower() != BASE]
        self.agg_tasks = sorted(set.intersection(*task_sets)) if task_sets else []
        self.rows: list[dict] = []

    def summary_rows(self) -> list[dict]:
        for task in sorted(self.runs):
            for method in sorted(self.runs[task], key=method_sort_key):
                self.method_rows(task, method)
            if self.hero is not None and self.hero in self.runs[task]:
                self.prob_improvement(task)
                if self.d3po is not None and self.d3po in self.runs[task]:
                    self.feedback_ratio(task)
        if len(self.agg_tasks) >= 2:
            for method in self.methods:
                if all(method in self.runs[t] for t in self.agg_tasks):
                    self.aggregate_method_rows(method)
            if self.hero is not None:
                self.aggregate_prob_improvement()
        return self.rows

    # -- helpers ----------------------------------------------------------------------------
    def add(self, task: str, method: str, metric: str, **values) -> None:
        r = dict(tier=self.tier, task=task, method=method, metric=metric, **self.common)
        r.update(values)
        unknown = set(r) - set(SUMMARY_COLUMNS)
        assert not unknown, unknown
        self.rows.append(r)

    def prov(self, task: str, method: str) -> dict:
        if task != AGGREGATE_TASK:
            return _provenance(self.group_rows[(task, method)])
        frames = [self.group_rows[(t, method)] for t in self.agg_tasks if (t, method) in self.group_rows]
        return _provenance(pd.concat(frames))

    def curve(self, task: str, method: str, metric: str, runs_by_task: dict[str, list[_Run]], p: dict) -> None:
        """``metric`` (success or transfer) at feedback 0 and each budget: IQM over the runs
        with its stratified-bootstrap CI (one stratum per task; per task, iqm_ci's)."""
        every = [r for rs in runs_by_task.values() for r in rs]
        fmax = float(min(r.last_feedback for r in every))
        for b in [0] if method.lower() == BASE else [0] + self.grid:
            by_task = {t: np.array([r.at(b) for r in rs]) for t, rs in runs_by_task.items()}
            ci = stats.stratified_bootstrap_ci(by_task, stats.iqm, **self.boot)
            mean, std = _spread(np.concatenate(list(by_task.values())))
            self.add(task, method, metric, budget=b, n_seeds=len(every), estimate=ci.estimate,
                     ci_low=ci.low, ci_high=ci.high, mean=mean, std=std, feedback_max=fmax,
                     n_tasks=len(runs_by_task), **p)

    # -- per task ---------------------------------------------------------------------------
    def method_rows(self, task: str, method: str) -> None:
        """success and transfer curves; for a trained method also AUC and feedback to threshold and to gain."""
        rs = self.runs[task][method]
        p = self.prov(task, method)
        self.curve(task, method, "success", {task: rs}, p)
        trs = [r.transfer for r in rs if r.transfer is not None]
        if trs:
            self.curve(task, method, "transfer", {task: trs}, p)
        if method.lower() == BASE:
            return
        fmax = float(min(r.last_feedback for r in rs))
        aucs = np.array([stats.normalized_auc(r.feedback, r.success, self.final) for r in rs])
        ci = stats.iqm_ci(aucs, **self.boot)
        mean, std = _spread(aucs)
        self.add(task, method, "auc", budget=self.final, n_seeds=len(rs), estimate=ci.estimate,
                 ci_low=ci.low, ci_high=ci.high, mean=mean, std=std, feedback_max=fmax, n_tasks=1, **p)
        for metric, value, first_hit in (("feedback_to_threshold", self.threshold, stats.feedback_to_threshold),
                                         ("feedback_to_gain", self.gain, stats.feedback_to_gain)):
            hits = [first_hit(r.feedback, r.success, value, self.final) for r in rs]
            med, cens = stats.censored_median([h.feedback for h in hits], [h.reached for h in hits])
            self.add(task, method, metric, budget=self.final, threshold=value, n_seeds=len(rs), estimate=med,
                     censored=cens, n_reached=int(sum(h.reached for h in hits)), feedback_max=fmax, n_tasks=1,
                     **p)

    def prob_improvement(self, task: str) -> None:
        """P(HERO > other) at the final budget, against every other method of the task."""
        hero, runs = self.hero, self.runs[task]
        x = np.array([r.at(self.final) for r in runs[hero]])
        for other in sorted(runs, key=method_sort_key):
            if other == hero:
                continue
            y = np.array([r.at(self.final) for r in runs[other]])
            ci = stats.probability_of_improvement(x, y, **self.boot)
            self.add(task, hero, "prob_improvement", budget=self.final, baseline=other,
                     n_seeds=len(x), n_seeds_baseline=len(y), estimate=ci.estimate,
                     ci_low=ci.low, ci_high=ci.high, n_tasks=1, **self.prov(task, hero))

    def feedback_ratio(self, task: str) -> None:
        """D3PO's final feedback / HERO's feedback to match D3PO's final success."""
        hero, d3po, runs = self.hero, self.d3po, self.runs[task]
        fr = stats.feedback_ratio(
            [(r.feedback, r.success) for r in runs[d3po]],
            [(r.feedback, r.success) for r in runs[hero]],
        )
        self.add(task, hero, "feedback_ratio", baseline=d3po, threshold=fr.reference_success,
                 n_seeds=len(runs[hero]), n_seeds_baseline=len(runs[d3po]),
                 estimate=fr.ratio, censored=not fr.reached,
                 reference_feedback=fr.reference_feedback,
                 candidate_feedback=fr.candidate_feedback, n_tasks=1, **self.prov(task, hero))

    # -- across tasks (stratified bootstrap, one stratum per task) --------------------------
    def aggregate_method_rows(self, method: str) -> None:
        """success and transfer curves over all tasks; for a trained method also AUC."""
        tasks, task = self.agg_tasks, AGGREGATE_TASK
        p = self.prov(task, method)
        self.curve(task, method, "success", {t: self.runs[t][method] for t in tasks}, p)
        t_runs = {t: [r.transfer for r in self.runs[t][method] if r.transfer is not None] for t in tasks}
        if all(t_runs.values()):  # transfer across tasks only when every task has it
            self.curve(task, method, "transfer", t_runs, p)
        if method.lower() == BASE:
            return
        n = sum(len(self.runs[t][method]) for t in tasks)
        fmax = float(min(r.last_feedback for t in tasks for r in self.runs[t][method]))
        by_task = {t: np.array([stats.normalized_auc(r.feedback, r.success, self.final) for r in self.runs[t][method]])
                   for t in tasks}
        ci = stats.stratified_bootstrap_ci(by_task, stats.iqm, **self.boot)
        mean, std = _spread(np.concatenate(list(by_task.values())))
        self.add(task, method, "auc", budget=self.final, n_seeds=n, estimate=ci.estimate,
                 ci_low=ci.low, ci_high=ci.high, mean=mean, std=std, feedback_max=fmax,
                 n_tasks=len(tasks), **p)

    def aggregate_prob_improvement(self) -> None:
        hero, tasks = self.hero, self.agg_tasks
        for other in self.methods:
            if other == hero or not all(other in self.runs[t] for t in tasks):
                continue
            x = {t: np.array([r.at(self.final) for r in self.runs[t][hero]]) for t in tasks}
            y = {t: np.array([r.at(self.final) for r in self.runs[t][other]]) for t in tasks}
            ci = stats.probability_of_improvement(x, y, **self.boot)
            self.add(AGGREGATE_TASK, hero, "prob_improvement", budget=self.final, baseline=other,
                     n_seeds=sum(len(v) for v in x.values()),
                     n_seeds_baseline=sum(len(v) for v in y.values()),
                     estimate=ci.estimate, ci_low=ci.low, ci_high=ci.high,
                     n_tasks=len(tasks), **self.prov(AGGREGATE_TASK, hero))


def _checked_budgets(df: pd.DataFrame, budgets: Sequence[int] | None, threshold: float, gain: float, reps: int,
                     alpha: float) -> list[int] | None:
    """The sorted distinct budgets (None: each tier's default grid), after checking every argument."""
    if df.empty:
        raise ResultsFormatError("no result rows to summarise")
    missing = [c for c in EVAL_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsFormatError(f"results table lacks column(s) {', '.join(missing)}")
    if not 0 <= threshold <= 1:
        raise ResultsFormatError(f"threshold must be a success rate in [0, 1], got {threshold}")
    if not 0 < gain <= 1:
        raise ResultsFormatError(f"gain must be a success-rate difference in (0, 1], got {gain}")
    if int(reps) < 1:
        raise ResultsFormatError(f"bootstrap reps must be >= 1, got {reps}")
    if not 0 < alpha < 1:
        raise ResultsFormatError(f"alpha must be in (0, 1), got {alpha}")
    if budgets is None:
        return None
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] <= 0:
        raise ResultsFormatError(f"budgets must be positive integers, got {list(budgets)}")
    return budgets


def summarise(
    df: pd.DataFrame,
    budgets: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    gain: float = DEFAULT_GAIN,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> pd.DataFrame:
    """One tidy row per (tier, task, method, metric, budget/baseline); columns ``SUMMARY_COLUMNS``.

    Metrics: ``success`` (the primary metric: success on the task's own prompts from fresh
    evaluation noise; IQM over seeds at feedback 0 and each budget, with a 95% bootstrap CI, mean
    and std), ``transfer`` (the same for the held-out prompts, column ``transfer_success_rate``;
    only for groups whose runs have transfer values, n_seeds counting those runs), ``auc`` (normalised area under the step curve up to the final
    budget), ``feedback_to_threshold`` (censored median over seeds, and how many reached it),
    ``feedback_to_gain`` (the same for reaching the run's base success + ``gain``),
    ``prob_improvement`` (HERO vs each other method at the final budget) and ``feedback_ratio``
    (D3PO's final feedback / HERO's feedback to match D3PO's final success).  Rows with task
    ``all-tasks`` aggregate over the tasks every trained method has (stratified bootstrap).
    """
    budgets = _checked_budgets(df, budgets, threshold, gain, reps, alpha)
    _warn_unrecorded_task_version(df)
    boot = dict(reps=int(reps), alpha=float(alpha), seed=int(seed))
    rows: list[dict] = []
    for tier, tdf in df.groupby("tier", sort=True):
        grid = budgets if budgets is not None else default_budgets(tdf)
        rows += _TierSummary(tier, tdf, grid, threshold, gain, boot).summary_rows()

    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out["censored"] = out["censored"].astype("boolean")
    for c in ("budget", "n_seeds", "n_seeds_baseline", "n_reached", "n_tasks", "n_config_hashes"):
        out[c] = out[c].astype("Int64")
    _warn_mixed_provenance(out)
    return out


def _warn_unrecorded_task_version(df: pd.DataFrame) -> None:
    """An eval.csv from before runs recorded ``task_version`` was made under version 1 of its task
    (``run_records.recorded_task_version``) but leaves the column empty, which the summary's joined
    provenance drops; so runs of a later version beside it would pass unnoticed."""
    if "task_version" not in df.columns:
        return
    versions = df["task_version"].fillna("").astype(str).str.strip()
    for (tier, task), v in versions.groupby([df["tier"], df["task"]]):
        recorded = set(v[v != ""])
        if (v == "").any() and recorded - {"1"}:
            warnings.warn(
                f"tier {tier} task {task}: runs disagree on task_version (some eval.csv files predate the "
                f"column, so version 1; others record {', '.join(sorted(recorded))}); their success rates "
                "may not be comparable",
                stacklevel=3,
            )


def _warn_mixed_provenance(summary: pd.DataFrame) -> None:
    per_task = summary[summary["task"] != AGGREGATE_TASK]
    for (tier, task), g in per_task.groupby(["tier", "task"]):
        for c in ("oracle", "oracle_version", "task_version", "label_noise"):
            # the base model gets no feedback, so its label_noise entry carries no meaning
            rows = g[g["method"].str.lower() != BASE] if c == "label_noise" else g
            vals = {v for s in rows[c].dropna() for v in str(s).split(";") if v}
            if len(vals) > 1:
                warnings.warn(
                    f"tier {tier} task {task}: runs disagree on {c} ({', '.join(sorted(vals))}); "
                    "their success rates may not be comparable",
                    stacklevel=3,
                )
