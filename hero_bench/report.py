"""Gather per-run ``eval.csv`` files and summarise them into feedback-efficiency tables.

``gather`` validates and concatenates the tidy per-run tables; ``summarise`` turns them into one
tidy summary table (one row per tier, task, method, metric and budget or baseline); ``render_markdown``
formats that summary as Markdown tables with captions.  Plots live in ``hero_bench.plots``.
Every metric is defined in ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from hero_bench import stats
from hero_bench.errors import HeroBenchError
from hero_bench.results import EVAL_COLUMNS, TRANSFER_COLUMNS

BASE = "base"
HERO = "hero"
D3PO = "d3po"
METHOD_ORDER = (BASE, HERO, "ddpo", D3PO)
METHOD_LABELS = {BASE: "base", HERO: "HERO", "ddpo": "DDPO", D3PO: "D3PO"}
AGGREGATE_TASK = "all-tasks"
DEFAULT_THRESHOLD = 0.5
DEFAULT_REPS = 2000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 0.05

# columns of eval.csv by how they are parsed
_TEXT_REQUIRED = ("tier", "task", "method")
_TEXT_OPTIONAL = ("oracle", "oracle_version", "label_noise", "backbone", "config_hash", "git_sha")
_INT_REQUIRED = ("seed", "epoch", "feedback_used")
_INT_OPTIONAL = ("queries", "images_generated", "n_eval", "transfer_n_eval")
_FLOAT_REQUIRED = ("success_rate",)
_FLOAT_OPTIONAL = ("mean_score", "diversity", "transfer_success_rate", "transfer_mean_score")
_RATES = ("success_rate", "transfer_success_rate")
_RUN_KEY = ["tier", "task", "method", "seed"]
_SORT_KEY = ["tier", "task", "method", "seed", "feedback_used", "epoch"]
PROVENANCE_COLUMNS = ("oracle", "oracle_version", "label_noise", "backbone", "git_sha")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "tier",
    "task",
    "method",
    "metric",  # success | transfer | auc | feedback_to_threshold | prob_improvement | feedback_ratio
    "budget",  # feedback budget the value is read at (success) or computed up to (others)
    "baseline",  # prob_improvement, feedback_ratio: the method compared against
    "threshold",  # feedback_to_threshold: the success threshold; feedback_ratio: the target success
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
    "label_noise",
    "backbone",
    "git_sha",
    "n_config_hashes",
    "ci_level",
    "bootstrap_reps",
    "bootstrap_seed",
)


class ResultsFormatError(HeroBenchError, ValueError):
    """An eval.csv / runs.csv file is missing, unreadable or has a bad column or value."""


# --------------------------------------------------------------------------------------- gather
def _read_one(path: str | os.PathLike) -> pd.DataFrame:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ResultsFormatError(f"{path}: no such file (expected a per-run eval.csv)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ResultsFormatError(f"{path}: empty file; expected a CSV header with columns {', '.join(EVAL_COLUMNS)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ResultsFormatError(f"{path}: not a readable CSV ({exc})") from None
    for c in TRANSFER_COLUMNS:
        if c not in raw.columns:  # an eval.csv written before the transfer evaluation: no transfer values
            raw[c] = ""
    missing = [c for c in EVAL_COLUMNS if c not in raw.columns]
    if missing:
        raise ResultsFormatError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}; "
            f"an eval.csv needs the columns {', '.join(EVAL_COLUMNS)} (hero_bench.results.EVAL_COLUMNS)"
        )
    if "prompt_set" in raw.columns:
        # `hero-bench evaluate --prompts train|eval` rows: one prompt list only, in the success_rate
        # column; mixing them with eval.csv rows would put two different metrics in one column
        sets = sorted({v.strip() for v in raw["prompt_set"]})
        which = " and ".join({"train": "the training prompts", "eval": "the held-out prompts"}.get(v, repr(v))
                             for v in sets)
        raise ResultsFormatError(
            f"{path}: a single-split file, rows evaluated on {which} only (prompt_set {sets}, written by "
            "`hero-bench evaluate --prompts`); gather and report read eval.csv rows only (primary success "
            "on the task's own prompts, plus transfer)"
        )
    raw = raw[list(EVAL_COLUMNS)].apply(lambda col: col.str.strip())
    out = pd.DataFrame(index=raw.index)

    def bad(column: str, mask: pd.Series, what: str) -> None:
        i = int(np.flatnonzero(mask.to_numpy())[0])
        value = raw[column].iloc[i]
        raise ResultsFormatError(
            f"{path}: column {column!r}, line {i + 2}: {value!r} is not {what}"
        )

    for c in _TEXT_REQUIRED:
        empty = raw[c] == ""
        if empty.any():
            bad(c, empty, "a non-empty name")
        out[c] = raw[c]
    for c in _TEXT_OPTIONAL:
        out[c] = raw[c]
    for c in _INT_REQUIRED + _INT_OPTIONAL:
        num = pd.to_numeric(raw[c], errors="coerce")
        required = c in _INT_REQUIRED
        invalid = (num.isna() & ((raw[c] != "") | required)) | np.isinf(num)
        invalid |= num.notna() & ~invalid & (num != num.round())
        if invalid.any():
            bad(c, invalid, "an integer" + ("" if required else " (or empty)"))
        negative = num < 0
        if c != "seed" and negative.any():
            bad(c, negative, "a non-negative integer")
        out[c] = num.astype("int64") if required else num.astype("Int64")
    for c in _FLOAT_REQUIRED + _FLOAT_OPTIONAL:
        num = pd.to_numeric(raw[c], errors="coerce")
        required = c in _FLOAT_REQUIRED
        invalid = (num.isna() & ((raw[c] != "") | required)) | np.isinf(num)
        if invalid.any():
            bad(c, invalid, "a finite number" + ("" if required else " (or empty)"))
        out[c] = num.astype(float)
    for c in _RATES:
        out_of_range = (out[c] < 0) | (out[c] > 1)
        if out_of_range.any():
            bad(c, out_of_range, "a success rate in [0, 1]")
    out["_source"] = path
    return out[list(EVAL_COLUMNS) + ["_source"]]


def gather(csv_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Validate and concatenate per-run ``eval.csv`` files into one tidy table.

    Columns are exactly ``EVAL_COLUMNS`` (extra columns are dropped); rows are sorted by tier,
    task, method, seed, feedback_used, epoch.  Raises ``ResultsFormatError`` naming the file,
    column and line of the first bad value, or both files when a checkpoint appears twice.
    """
    paths = [os.fspath(p) for p in csv_paths]
    if not paths:
        raise ResultsFormatError("no eval.csv files given")
    frames = [_read_one(p) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    if df.empty:
        raise ResultsFormatError(f"no result rows in {', '.join(paths)}")
    key = _RUN_KEY + ["epoch", "feedback_used"]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        rows = df[dup].sort_values(key)
        first = rows.iloc[0]
        same = rows[(rows[key] == first[key]).all(axis=1)]
        files = sorted(set(same["_source"]))
        where = " and ".join(files) if len(files) > 1 else f"{files[0]} (twice)"
        raise ResultsFormatError(
            "the same checkpoint appears more than once: tier={tier} task={task} method={method} "
            "seed={seed} epoch={epoch} feedback_used={feedback_used} in {where}; gather each run's "
            "eval.csv once".format(where=where, **{k: first[k] for k in key})
        )
    df = df.drop(columns="_source").sort_values(_SORT_KEY, kind="stable").reset_index(drop=True)
    return df


# ------------------------------------------------------------------------------------ summarise
def method_sort_key(method: str) -> tuple[int, str]:
    m = str(method)
    return (METHOD_ORDER.index(m.lower()) if m.lower() in METHOD_ORDER else len(METHOD_ORDER), m)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(str(method).lower(), str(method))


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
    for key, r in rows.groupby(_RUN_KEY, sort=True):
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


def summarise(
    df: pd.DataFrame,
    budgets: Sequence[int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
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
    ``prob_improvement`` (HERO vs each other method at the final budget) and ``feedback_ratio``
    (D3PO's final feedback / HERO's feedback to match D3PO's final success).  Rows with task
    ``all-tasks`` aggregate over the tasks every trained method has (stratified bootstrap).
    """
    if df.empty:
        raise ResultsFormatError("no result rows to summarise")
    missing = [c for c in EVAL_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsFormatError(f"results table lacks column(s) {', '.join(missing)}")
    if not 0 <= threshold <= 1:
        raise ResultsFormatError(f"threshold must be a success rate in [0, 1], got {threshold}")
    if int(reps) < 1:
        raise ResultsFormatError(f"bootstrap reps must be >= 1, got {reps}")
    if not 0 < alpha < 1:
        raise ResultsFormatError(f"alpha must be in (0, 1), got {alpha}")
    if budgets is not None:
        budgets = sorted({int(b) for b in budgets})
        if not budgets or budgets[0] <= 0:
            raise ResultsFormatError(f"budgets must be positive integers, got {list(budgets)}")

    boot = dict(reps=int(reps), alpha=float(alpha), seed=int(seed))
    common = dict(ci_level=1 - alpha, bootstrap_reps=int(reps), bootstrap_seed=int(seed))
    rows: list[dict] = []
    for tier, tdf in df.groupby("tier", sort=True):
        grid = budgets if budgets is not None else default_budgets(tdf)
        final = int(grid[-1])
        # runs[task][method] -> list of _Run; rows for provenance
        runs: dict[str, dict[str, list[_Run]]] = {}
        group_rows: dict[tuple[str, str], pd.DataFrame] = {}
        for (task, method), g in tdf.groupby(["task", "method"], sort=True):
            runs.setdefault(task, {})[method] = _runs(g)
            group_rows[(task, method)] = g
        methods = sorted({m for t in runs.values() for m in t}, key=method_sort_key)
        trained = [m for m in methods if m.lower() != BASE]
        hero = next((m for m in methods if m.lower() == HERO), None)
        d3po = next((m for m in methods if m.lower() == D3PO), None)

        def row(task, method, metric, **values):
            r = dict(tier=tier, task=task, method=method, metric=metric, **common)
            r.update(values)
            unknown = set(r) - set(SUMMARY_COLUMNS)
            assert not unknown, unknown
            return r

        def prov(task, method):
            if task != AGGREGATE_TASK:
                return _provenance(group_rows[(task, method)])
            frames = [group_rows[(t, method)] for t in agg_tasks if (t, method) in group_rows]
            return _provenance(pd.concat(frames))

        def group_budgets(method):
            return [0] if method.lower() == BASE else [0] + list(grid)

        def curve_rows(task, method, metric, runs_by_task, p):
            """``metric`` (success or transfer) at feedback 0 and each budget: IQM over the runs
            with its stratified-bootstrap CI (one stratum per task; per task, iqm_ci's)."""
            every = [r for rs in runs_by_task.values() for r in rs]
            fmax = float(min(r.last_feedback for r in every))
            for b in group_budgets(method):
                by_task = {t: np.array([r.at(b) for r in rs]) for t, rs in runs_by_task.items()}
                ci = stats.stratified_bootstrap_ci(by_task, stats.iqm, **boot)
                mean, std = _spread(np.concatenate(list(by_task.values())))
                rows.append(row(task, method, metric, budget=b, n_seeds=len(every), estimate=ci.estimate,
                                ci_low=ci.low, ci_high=ci.high, mean=mean, std=std, feedback_max=fmax,
                                n_tasks=len(runs_by_task), **p))

        # ---- per task
        for task in sorted(runs):
            for method in sorted(runs[task], key=method_sort_key):
                rs = runs[task][method]
                p = prov(task, method)
                fmax = float(min(r.last_feedback for r in rs))
                n = len(rs)
                curve_rows(task, method, "success", {task: rs}, p)
                trs = [r.transfer for r in rs if r.transfer is not None]
                if trs:
                    curve_rows(task, method, "transfer", {task: trs}, p)
                if method.lower() == BASE:
                    continue
                aucs = np.array([stats.normalized_auc(r.feedback, r.success, final) for r in rs])
                ci = stats.iqm_ci(aucs, **boot)
                mean, std = _spread(aucs)
                rows.append(row(task, method, "auc", budget=final, n_seeds=n, estimate=ci.estimate,
                                ci_low=ci.low, ci_high=ci.high, mean=mean, std=std,
                                feedback_max=fmax, n_tasks=1, **p))
                hits = [stats.feedback_to_threshold(r.feedback, r.success, threshold, final) for r in rs]
                med, cens = stats.censored_median([h.feedback for h in hits], [h.reached for h in hits])
                rows.append(row(task, method, "feedback_to_threshold", budget=final, threshold=threshold,
                                n_seeds=n, estimate=med, censored=cens,
                                n_reached=int(sum(h.reached for h in hits)),
                                feedback_max=fmax, n_tasks=1, **p))
            if hero is not None and hero in runs[task]:
                x = np.array([r.at(final) for r in runs[task][hero]])
                for other in sorted(runs[task], key=method_sort_key):
                    if other == hero:
                        continue
                    y = np.array([r.at(final) for r in runs[task][other]])
                    ci = stats.probability_of_improvement(x, y, **boot)
                    rows.append(row(task, hero, "prob_improvement", budget=final, baseline=other,
                                    n_seeds=len(x), n_seeds_baseline=len(y), estimate=ci.estimate,
                                    ci_low=ci.low, ci_high=ci.high, n_tasks=1, **prov(task, hero)))
                if d3po is not None and d3po in runs[task]:
                    fr = stats.feedback_ratio(
                        [(r.feedback, r.success) for r in runs[task][d3po]],
                        [(r.feedback, r.success) for r in runs[task][hero]],
                    )
                    rows.append(row(task, hero, "feedback_ratio", baseline=d3po, threshold=fr.reference_success,
                                    n_seeds=len(runs[task][hero]), n_seeds_baseline=len(runs[task][d3po]),
                                    estimate=fr.ratio, censored=not fr.reached,
                                    reference_feedback=fr.reference_feedback,
                                    candidate_feedback=fr.candidate_feedback, n_tasks=1, **prov(task, hero)))

        # ---- across tasks: the tasks every trained method was run on
        task_sets = [{t for t in runs if m in runs[t]} for m in trained]
        agg_tasks = sorted(set.intersection(*task_sets)) if task_sets else []
        if len(agg_tasks) < 2:
            continue
        for method in methods:
            if not all(method in runs[t] for t in agg_tasks):
                continue
            n = sum(len(runs[t][method]) for t in agg_tasks)
            p = prov(AGGREGATE_TASK, method)
            fmax = float(min(r.last_feedback for t in agg_tasks for r in runs[t][method]))
            curve_rows(AGGREGATE_TASK, method, "success", {t: runs[t][method] for t in agg_tasks}, p)
            t_runs = {t: [r.transfer for r in runs[t][method] if r.transfer is not None] for t in agg_tasks}
            if all(t_runs.values()):  # transfer across tasks only when every task has it
                curve_rows(AGGREGATE_TASK, method, "transfer", t_runs, p)
            if method.lower() == BASE:
                continue
            by_task = {t: np.array([stats.normalized_auc(r.feedback, r.success, final) for r in runs[t][method]])
                       for t in agg_tasks}
            ci = stats.stratified_bootstrap_ci(by_task, stats.iqm, **boot)
            mean, std = _spread(np.concatenate(list(by_task.values())))
            rows.append(row(AGGREGATE_TASK, method, "auc", budget=final, n_seeds=n, estimate=ci.estimate,
                            ci_low=ci.low, ci_high=ci.high, mean=mean, std=std, feedback_max=fmax,
                            n_tasks=len(agg_tasks), **p))
        if hero is not None:
            for other in methods:
                if other == hero or not all(other in runs[t] for t in agg_tasks):
                    continue
                x = {t: np.array([r.at(final) for r in runs[t][hero]]) for t in agg_tasks}
                y = {t: np.array([r.at(final) for r in runs[t][other]]) for t in agg_tasks}
                ci = stats.probability_of_improvement(x, y, **boot)
                rows.append(row(AGGREGATE_TASK, hero, "prob_improvement", budget=final, baseline=other,
                                n_seeds=sum(len(v) for v in x.values()),
                                n_seeds_baseline=sum(len(v) for v in y.values()),
                                estimate=ci.estimate, ci_low=ci.low, ci_high=ci.high,
                                n_tasks=len(agg_tasks), **prov(AGGREGATE_TASK, hero)))

    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    out["censored"] = out["censored"].astype("boolean")
    for c in ("budget", "n_seeds", "n_seeds_baseline", "n_reached", "n_tasks", "n_config_hashes"):
        out[c] = out[c].astype("Int64")
    _warn_mixed_provenance(out)
    return out


def _warn_mixed_provenance(summary: pd.DataFrame) -> None:
    per_task = summary[summary["task"] != AGGREGATE_TASK]
    for (tier, task), g in per_task.groupby(["tier", "task"]):
        for c in ("oracle", "oracle_version", "label_noise"):
            # the base model gets no feedback, so its label_noise entry carries no meaning
            rows = g[g["method"].str.lower() != BASE] if c == "label_noise" else g
            vals = {v for s in rows[c].dropna() for v in str(s).split(";") if v}
            if len(vals) > 1:
                warnings.warn(
                    f"tier {tier} task {task}: runs disagree on {c} ({', '.join(sorted(vals))}); "
                    "their success rates may not be comparable",
                    stacklevel=3,
                )


# ------------------------------------------------------------------------------------- markdown
def _num(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}f}"


def _fb(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "∞"
    return f"{int(round(v))}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def _cell(r) -> str:
    return f"{_num(r.estimate)} [{_num(r.ci_low)}, {_num(r.ci_high)}]"


def _is_true(v) -> bool:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return False
    return v is True or str(v).strip().lower() in ("true", "1")


def _beyond(r) -> bool:
    """A success cell at a budget above some run's last checkpoint (the cell holds its final model)."""
    fmax = getattr(r, "feedback_max", float("nan"))
    return (str(r.method).lower() != BASE and fmax is not None
            and not pd.isna(fmax) and float(r.budget) > float(fmax))


def _budget_rows(rows, tasks, methods, budgets, extra=None) -> tuple[list[list[str]], bool]:
    """Table rows (task, method, n, one cell per budget [+ extra(task, method)]) of one metric's
    summary rows, and whether any cell reads a run that stopped before its budget (†)."""
    body, daggers = [], False
    for task in tasks:
        for method in methods:
            g = rows[(rows.task == task) & (rows.method == method)]
            if g.empty:
                continue
            by_b = {int(r.budget): r for r in g.itertuples()}
            cells = [(_cell(by_b[b]) + ("†" if _beyond(by_b[b]) else "")) if b in by_b else "—" for b in budgets]
            daggers |= any(_beyond(by_b[b]) for b in budgets if b in by_b)
            n = int(g.n_seeds.iloc[0])
            n_cell = f"{n} ({int(g.n_tasks.iloc[0])} tasks)" if task == AGGREGATE_TASK else str(n)
            body.append([_task_label(task), _esc(method_label(method)), n_cell] + cells
                        + (extra(task, method) if extra else []))
    return body, daggers


def _esc(s) -> str:
    return str(s).replace("|", "\\|")


def _task_label(task: str) -> str:
    return "all tasks" if task == AGGREGATE_TASK else _esc(task)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _n_phrase(ns: Iterable[int]) -> str:
    ns = sorted({int(n) for n in ns})
    if not ns:
        return "n = 0 seeds"
    if len(ns) == 1:
        return f"n = {ns[0]} seed{'s' if ns[0] != 1 else ''} per task and method"
    return f"n = {ns[0]}–{ns[-1]} seeds per task and method (column n)"


def render_markdown(summary: pd.DataFrame) -> str:
    """Markdown tables of a ``summarise`` result, led by the primary metric: success on the task's own
    prompts at each budget (``IQM [lo, hi]``) with the normalised AUC; then, when the runs have it,
    transfer (success on the held-out prompts) at each budget; feedback to threshold (censoring shown as ``> 512 (2/5 reached)``), probability
    of improvement, the HERO-vs-D3PO feedback ratio, and provenance; each with a caption."""
    if summary.empty:
        raise ResultsFormatError("empty summary: nothing to render")
    out = ["# Feedback-efficiency summary", ""]
    first = summary.iloc[0]
    level = int(round(100 * float(first.ci_level)))
    reps, bseed = int(first.bootstrap_reps), int(first.bootstrap_seed)
    ci_text = (f"{level}% stratified bootstrap CI of the IQM over seeds ({reps} resamples, seed {bseed}; "
               "seeds are resampled within each task)")
    unit = ("Feedback unit: one image labelled by the (simulated) evaluator; HERO's best-image picks and "
            "D3PO's pair comparisons are counted separately as queries.")
    for tier, t in summary.groupby("tier", sort=True):
        out += [f"## Tier `{tier}`", ""]
        succ = t[t.metric == "success"]
        budgets = sorted({int(b) for b in succ.budget.dropna()})
        final = budgets[-1]
        tasks = sorted(set(t.task) - {AGGREGATE_TASK}) + ([AGGREGATE_TASK] if AGGREGATE_TASK in set(t.task) else [])
        methods = sorted(set(t.method), key=method_sort_key)

        # success at budgets + AUC
        header = ["task", "method", "n"] + [str(b) for b in budgets] + [f"norm. AUC 0–{final}"]
        def auc_cell(task, method):
            auc = t[(t.metric == "auc") & (t.task == task) & (t.method == method)]
            return [_cell(next(auc.itertuples())) if not auc.empty else "—"]

        body, daggers = _budget_rows(succ, tasks, methods, budgets, auc_cell)
        out += ["### Success rate at fixed feedback budgets", ""] + _table(header, body) + [""]
        ns = succ[succ.task != AGGREGATE_TASK].n_seeds
        caption = (
            f"*Primary metric: success on the task's own prompts (fresh evaluation noise), i.e. the share of "
            f"evaluation images sampled on the task's training prompts, from evaluation noise no training "
            f"batch used, that the noise-free oracle judges successful; the model each run would have "
            f"if it stopped at the budget: its last checkpoint with feedback_used ≤ budget (a step function; "
            f"no interpolation). Column 0 is the base model. Cells: IQM over seeds [{ci_text}]. "
            f"Normalised AUC: area under the step curve of success against feedback from 0 to {final}, "
            f"divided by {final}. {_n_phrase(ns)}. {unit}"
        )
        if AGGREGATE_TASK in tasks:
            caption += (" 'all tasks': IQM over all runs of the tasks every method was run on "
                        "(stratified bootstrap, n counts runs).")
        if daggers:
            ends = []
            trained = succ[(succ.task != AGGREGATE_TASK) & (succ.method.str.lower() != BASE)]
            for method in sorted(set(trained.method), key=method_sort_key):
                fm = sorted({float(v) for v in trained[trained.method == method].feedback_max.dropna()})
                if fm and fm[0] < final:
                    ends.append(f"{method_label(method)} at {' or '.join(_fb(v) for v in fm)}")
            caption += (" †: some runs stopped before this budget (last checkpoints: "
                        + "; ".join(ends) + " feedback, depending on task and seed); the cell reads each "
                        "run's last checkpoint, the model it ended with.")
        out += [caption + "*", ""]

        # transfer: success on the held-out prompts (secondary)
        tr = t[t.metric == "transfer"]
        if not tr.empty:
            body, t_daggers = _budget_rows(tr, tasks, methods, budgets)
            header = ["task", "method", "n"] + [str(b) for b in budgets]
            out += ["### Transfer: success on held-out prompts at fixed feedback budgets", ""]
            out += _table(header, body) + [""]
            caption = (
                "*Transfer (secondary): success on the task's held-out evaluation prompts, which no training "
                "batch used, from the same fresh evaluation noise and noise-free oracle as the primary table, "
                "read at each budget the same way (last checkpoint with feedback_used ≤ budget; column 0 is "
                f"the base model). Cells: IQM over seeds [{ci_text}]. n counts the runs that have transfer "
                "values (runs evaluated with eval.transfer_images=0, or written before the transfer columns "
                "existed, have none)."
            )
            if t_daggers:
                caption += " †: as above, some runs stopped before this budget."
            out += [caption + "*", ""]

        # feedback to threshold
        ftt = t[t.metric == "feedback_to_threshold"]
        if not ftt.empty:
            thr = float(ftt.threshold.iloc[0])
            f_methods = [m for m in methods if m in set(ftt.method)]
            body = []
            for task in [x for x in tasks if x in set(ftt.task)]:
                cells = []
                for m in f_methods:
                    g = ftt[(ftt.task == task) & (ftt.method == m)]
                    if g.empty:
                        cells.append("—")
                        continue
                    r = next(g.itertuples())
                    value = f"> {_fb(r.estimate)}" if _is_true(r.censored) else _fb(r.estimate)
                    cells.append(f"{value} ({int(r.n_reached)}/{int(r.n_seeds)} reached)")
                body.append([_task_label(task)] + cells)
            out += [f"### Feedback to reach success ≥ {thr:g}", ""]
            out += _table(["task"] + [_esc(method_label(m)) for m in f_methods], body) + [""]
            out += [
                f"*Median over seeds of the feedback at the first checkpoint whose success is ≥ {thr:g}, "
                f"looking at checkpoints up to {final} feedback. Seeds that never reach it are censored "
                f"(counted as needing more than {final}), never dropped; '> {final}' means the median seed "
                f"did not reach it. (k/n reached) counts the seeds that did. {unit}*",
                "",
            ]

        # probability of improvement
        poi = t[t.metric == "prob_improvement"]
        if not poi.empty:
            hero = poi.method.iloc[0]
            others = sorted(set(poi.baseline), key=method_sort_key)
            body = []
            for task in [x for x in tasks if x in set(poi.task)]:
                cells = []
                for o in others:
                    g = poi[(poi.task == task) & (poi.baseline == o)]
                    cells.append(_cell(next(g.itertuples())) if not g.empty else "—")
                body.append([_task_label(task)] + cells)
            header = ["task"] + [f"P({_esc(method_label(hero))} > {_esc(method_label(o))})" for o in others]
            out += [f"### Probability of improvement at {final} feedback", ""] + _table(header, body) + [""]
            out += [
                f"*P(X > Y) + ½ P(X = Y) for the success of a random {method_label(hero)} seed X against a random "
                f"seed Y of the other method, both read at {final} feedback (runs that stopped earlier at their "
                f"last checkpoint; the base model at 0). "
                f"[{level}% bootstrap CI, seeds of both methods resampled independently within each task, "
                f"{reps} resamples, seed {bseed}.] 0.5 means no difference; 'all tasks' averages over tasks.*",
                "",
            ]

        # feedback ratio
        fr = t[t.metric == "feedback_ratio"]
        if not fr.empty:
            hero_l, ref_l = method_label(fr.method.iloc[0]), method_label(fr.baseline.iloc[0])
            body = []
            for r in fr.sort_values("task").itertuples():
                if _is_true(r.censored):
                    ratio = f"< {r.estimate:.2f}× (not reached)"
                    need = f"> {_fb(r.candidate_feedback)}"
                else:
                    # a match at 0 feedback means the reference ended no better than the base
                    # model: "infinitely more efficient" would overstate a non-result
                    ratio = "n/a (no gain over base)" if math.isinf(r.estimate) else f"{r.estimate:.2f}×"
                    need = _fb(r.candidate_feedback)
                body.append([_task_label(r.task), _num(r.threshold), _fb(r.reference_feedback), need, ratio])
            header = ["task", f"{ref_l} final success (IQM)", f"{ref_l} feedback", f"{hero_l} feedback to match", "ratio"]
            out += [f"### Feedback ratio {hero_l} vs {ref_l}", ""] + _table(header, body) + [""]
            out += [
                f"*{ref_l} feedback (IQM over seeds of its last checkpoint) divided by the feedback at the first "
                f"{hero_l} checkpoint where the IQM over {hero_l} seeds (step-aligned, no interpolation) reaches "
                f"{ref_l}'s final IQM success. 'Not reached': {hero_l} never matched it, so the ratio is an upper "
                "bound. The paper's headline is 5000 / 1152 ≈ 4.3× on hand anomaly correction.*",
                "",
            ]

        # provenance
        body = []
        for task in [x for x in tasks if x != AGGREGATE_TASK]:
            for method in methods:
                g = succ[(succ.task == task) & (succ.method == method)]
                if g.empty:
                    continue
                r = next(g.itertuples())
                body.append([_task_label(task), _esc(method_label(method))] +
                            [_esc(getattr(r, c) or "—") for c in ("oracle", "oracle_version", "label_noise", "backbone")] +
                            [_esc(str(r.git_sha).replace(";", ", ") or "—"), str(int(r.n_config_hashes))])
        header = ["task", "method", "oracle", "oracle version", "label noise", "backbone", "git SHA", "config hashes"]
        out += ["### Provenance", ""] + _table(header, body) + [""]
        out += [f"*Bootstrap: {reps} resamples, seed {bseed}, {level}% percentile intervals.*", ""]
    return "\n".join(out)
