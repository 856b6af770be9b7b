"""Markdown tables of a summary (``hero_bench.summary.summarise``), each with its caption.

``render_markdown`` writes, per tier, one table per metric, led by the primary metric: success on
the task's own prompts at each budget with the normalised AUC; then transfer (held-out prompts),
feedback to threshold, feedback to gain over the base model, probability of improvement, the
HERO-vs-D3PO feedback ratio and the provenance of the runs.  Each table is one function below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from hero_bench.runs_table import ResultsFormatError
from hero_bench.summary import AGGREGATE_TASK, BASE, method_label, method_sort_key

UNIT = ("Feedback unit: one image labelled by the (simulated) evaluator; HERO's best-image picks and "
        "D3PO's pair comparisons are counted separately as queries.")


# -- cells --------------------------------------------------------------------------------------
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


# -- one tier -----------------------------------------------------------------------------------
@dataclass
class _Tier:
    """One tier's summary rows and what every table of it shares."""

    rows: pd.DataFrame
    budgets: list[int]  # the success rows' budgets (0 = the base model)
    tasks: list[str]  # sorted, the aggregate last
    methods: list[str]
    level: int  # CI level in percent
    reps: int
    bseed: int

    @classmethod
    def of(cls, t: pd.DataFrame, level: int, reps: int, bseed: int) -> "_Tier":
        succ = t[t.metric == "success"]
        tasks = sorted(set(t.task) - {AGGREGATE_TASK}) + ([AGGREGATE_TASK] if AGGREGATE_TASK in set(t.task) else [])
        return cls(t, sorted({int(b) for b in succ.budget.dropna()}), tasks, sorted(set(t.method), key=method_sort_key),
                   level, reps, bseed)

    @property
    def final(self) -> int:
        return self.budgets[-1]

    @property
    def ci_text(self) -> str:
        return (f"{self.level}% stratified bootstrap CI of the IQM over seeds ({self.reps} resamples, seed "
                f"{self.bseed}; seeds are resampled within each task)")

    def metric(self, name: str) -> pd.DataFrame:
        return self.rows[self.rows.metric == name]


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


def _success_table(tier: _Tier) -> list[str]:
    """The primary metric at each budget, with the normalised AUC."""
    succ, auc, final = tier.metric("success"), tier.metric("auc"), tier.final
    header = ["task", "method", "n"] + [str(b) for b in tier.budgets] + [f"norm. AUC 0–{final}"]

    def auc_cell(task, method):
        a = auc[(auc.task == task) & (auc.method == method)]
        return [_cell(next(a.itertuples())) if not a.empty else "—"]

    body, daggers = _budget_rows(succ, tier.tasks, tier.methods, tier.budgets, auc_cell)
    ns = succ[succ.task != AGGREGATE_TASK].n_seeds
    caption = (
        f"*Primary metric: success on the task's own prompts (fresh evaluation noise), i.e. the share of "
        f"evaluation images sampled on the task's training prompts, from evaluation noise no training "
        f"batch used, that the noise-free oracle judges successful; the model each run would have "
        f"if it stopped at the budget: its last checkpoint with feedback_used ≤ budget (a step function; "
        f"no interpolation). Column 0 is the base model. Cells: IQM over seeds [{tier.ci_text}]. "
        f"Normalised AUC: area under the step curve of success against feedback from 0 to {final}, "
        f"divided by {final}. {_n_phrase(ns)}. {UNIT}"
    )
    if AGGREGATE_TASK in tier.tasks:
        caption += (" 'all tasks': IQM over all runs of the tasks every method was run on "
                    "(stratified bootstrap, n counts runs).")
    if daggers:
        caption += _early_stop_note(succ, final)
    return ["### Success rate at fixed feedback budgets", ""] + _table(header, body) + ["", caption + "*", ""]


def _early_stop_note(succ: pd.DataFrame, final: int) -> str:
    """The † note: which methods' runs stopped before the final budget, and where."""
    ends = []
    trained = succ[(succ.task != AGGREGATE_TASK) & (succ.method.str.lower() != BASE)]
    for method in sorted(set(trained.method), key=method_sort_key):
        fm = sorted({float(v) for v in trained[trained.method == method].feedback_max.dropna()})
        if fm and fm[0] < final:
            ends.append(f"{method_label(method)} at {' or '.join(_fb(v) for v in fm)}")
    return (" †: some runs stopped before this budget (last checkpoints: "
            + "; ".join(ends) + " feedback, depending on task and seed); the cell reads each "
            "run's last checkpoint, the model it ended with.")


def _transfer_table(tier: _Tier) -> list[str]:
    """Success on the held-out prompts (secondary), when the runs have it."""
    tr = tier.metric("transfer")
    if tr.empty:
        return []
    body, daggers = _budget_rows(tr, tier.tasks, tier.methods, tier.budgets)
    header = ["task", "method", "n"] + [str(b) for b in tier.budgets]
    caption = (
        "*Transfer (secondary): success on the task's held-out evaluation prompts, which no training "
        "batch used, from the same fresh evaluation noise and noise-free oracle as the primary table, "
        "read at each budget the same way (last checkpoint with feedback_used ≤ budget; column 0 is "
        f"the base model). Cells: IQM over seeds [{tier.ci_text}]. n counts the runs that have transfer "
        "values (runs evaluated with eval.transfer_images=0, or written before the transfer columns "
        "existed, have none)."
    )
    if daggers:
        caption += " †: as above, some runs stopped before this budget."
    return (["### Transfer: success on held-out prompts at fixed feedback budgets", ""]
            + _table(header, body) + ["", caption + "*", ""])


def _censored_feedback_table(tier: _Tier, metric: str, title: str, reached: str) -> list[str]:
    """A censored-feedback metric per task and method: the median over seeds, censoring shown as
    ``> 512 (2/5 reached)``. ``title`` and ``reached`` (what a checkpoint's success must be) may
    name the metric's value as ``{v}``."""
    rows = tier.metric(metric)
    if rows.empty:
        return []
    v = f"{float(rows.threshold.iloc[0]):g}"
    f_methods = [m for m in tier.methods if m in set(rows.method)]
    body = []
    for task in [x for x in tier.tasks if x in set(rows.task)]:
        cells = []
        for m in f_methods:
            g = rows[(rows.task == task) & (rows.method == m)]
            if g.empty:
                cells.append("—")
                continue
            r = next(g.itertuples())
            value = f"> {_fb(r.estimate)}" if _is_true(r.censored) else _fb(r.estimate)
            cells.append(f"{value} ({int(r.n_reached)}/{int(r.n_seeds)} reached)")
        body.append([_task_label(task)] + cells)
    final = tier.final
    return [f"### {title.format(v=v)}", ""] + _table(["task"] + [_esc(method_label(m)) for m in f_methods], body) + [
        "",
        f"*Median over seeds of the feedback at the first checkpoint whose success is {reached.format(v=v)}, "
        f"looking at checkpoints up to {final} feedback. Seeds that never reach it are censored "
        f"(counted as needing more than {final}), never dropped; '> {final}' means the median seed "
        f"did not reach it. (k/n reached) counts the seeds that did. {UNIT}*",
        "",
    ]


def _threshold_table(tier: _Tier) -> list[str]:
    """Feedback to reach the success threshold."""
    return _censored_feedback_table(tier, "feedback_to_threshold", "Feedback to reach success ≥ {v}", "≥ {v}")


def _gain_table(tier: _Tier) -> list[str]:
    """Feedback to gain a fixed margin over the base model's success."""
    return _censored_feedback_table(
        tier, "feedback_to_gain", "Feedback to gain +{v} over the base model",
        "at least the run's success at 0 feedback (the base model on the same evaluation noise) + {v}: "
        "unlike a fixed threshold, the same demand on tasks whose base rates differ")


def _prob_improvement_table(tier: _Tier) -> list[str]:
    """P(HERO > other) at the final budget, per task and across tasks."""
    poi, final = tier.metric("prob_improvement"), tier.final
    if poi.empty:
        return []
    hero = poi.method.iloc[0]
    others = sorted(set(poi.baseline), key=method_sort_key)
    body = []
    for task in [x for x in tier.tasks if x in set(poi.task)]:
        cells = []
        for o in others:
            g = poi[(poi.task == task) & (poi.baseline == o)]
            cells.append(_cell(next(g.itertuples())) if not g.empty else "—")
        body.append([_task_label(task)] + cells)
    header = ["task"] + [f"P({_esc(method_label(hero))} > {_esc(method_label(o))})" for o in others]
    return [f"### Probability of improvement at {final} feedback", ""] + _table(header, body) + [
        "",
        f"*P(X > Y) + ½ P(X = Y) for the success of a random {method_label(hero)} seed X against a random "
        f"seed Y of the other method, both read at {final} feedback (runs that stopped earlier at their "
        f"last checkpoint; the base model at 0). "
        f"[{tier.level}% bootstrap CI, seeds of both methods resampled independently within each task, "
        f"{tier.reps} resamples, seed {tier.bseed}.] 0.5 means no difference; 'all tasks' averages over tasks.*",
        "",
    ]


def _feedback_ratio_table(tier: _Tier) -> list[str]:
    """HERO's feedback to match D3PO's final success, against D3PO's feedback."""
    fr = tier.metric("feedback_ratio")
    if fr.empty:
        return []
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
    return [f"### Feedback ratio {hero_l} vs {ref_l}", ""] + _table(header, body) + [
        "",
        f"*{ref_l} feedback (IQM over seeds of its last checkpoint) divided by the feedback at the first "
        f"{hero_l} checkpoint where the IQM over {hero_l} seeds (step-aligned, no interpolation) reaches "
        f"{ref_l}'s final IQM success. 'Not reached': {hero_l} never matched it, so the ratio is an upper "
        "bound. The paper's headline is 5000 / 1152 ≈ 4.3× on hand anomaly correction.*",
        "",
    ]


def _provenance_table(tier: _Tier) -> list[str]:
    """Oracle, label noise, backbone, code version and config hashes behind each task and method."""
    succ = tier.metric("success")
    body = []
    for task in [x for x in tier.tasks if x != AGGREGATE_TASK]:
        for method in tier.methods:
            g = succ[(succ.task == task) & (succ.method == method)]
            if g.empty:
                continue
            r = next(g.itertuples())
            body.append([_task_label(task), _esc(method_label(method))] +
                        [_esc(getattr(r, c) or "—")
                         for c in ("oracle", "oracle_version", "task_version", "label_noise", "backbone")] +
                        [_esc(str(r.git_sha).replace(";", ", ") or "—"), str(int(r.n_config_hashes))])
    header = ["task", "method", "oracle", "oracle version", "task version", "label noise", "backbone", "git SHA",
              "config hashes"]
    return ["### Provenance", ""] + _table(header, body) + [
        "", f"*Bootstrap: {tier.reps} resamples, seed {tier.bseed}, {tier.level}% percentile intervals.*", ""]


TABLES = (_success_table, _transfer_table, _threshold_table, _gain_table, _prob_improvement_table,
          _feedback_ratio_table, _provenance_table)
"""The tables of a tier, in order; each returns its Markdown lines (none when the metric is absent)."""


def render_markdown(summary: pd.DataFrame) -> str:
    """Markdown tables of a ``summarise`` result, led by the primary metric: success on the task's own
    prompts at each budget (``IQM [lo, hi]``) with the normalised AUC; then, when the runs have it,
    transfer (success on the held-out prompts) at each budget; feedback to threshold and to gain over
    the base model (censoring shown as ``> 512 (2/5 reached)``), probability of improvement, the
    HERO-vs-D3PO feedback ratio, and provenance; each with a caption."""
    if summary.empty:
        raise ResultsFormatError("empty summary: nothing to render")
    out = ["# Feedback-efficiency summary", ""]
    first = summary.iloc[0]
    level = int(round(100 * float(first.ci_level)))
    reps, bseed = int(first.bootstrap_reps), int(first.bootstrap_seed)
    for tier_name, t in summary.groupby("tier", sort=True):
        out += [f"## Tier `{tier_name}`", ""]
        tier = _Tier.of(t, level, reps, bseed)
        for table in TABLES:
            out += table(tier)
    return "\n".join(out)
