"""Statistics for feedback-efficiency tables: IQM, stratified bootstrap CIs, probability of
improvement, normalised AUC, censored feedback to a threshold (a success rate, or a gain over the
run's own base success) and the HERO-vs-D3PO feedback ratio.

Plain numpy/scipy re-implementations of what rliable (Agarwal et al., NeurIPS 2021) computes, so
the project does not depend on rliable.  Conventions (documented for users in ``docs/metrics.md``):

* A *run* is one (task, method, seed); its *curve* is the list of checkpoints
  ``(feedback_used, success)``.  The success at a budget ``b`` is the success of the run's last
  checkpoint with ``feedback_used <= b`` (a step function: the model you would have if you stopped
  at ``b``).  Nothing is interpolated.
* Intervals are percentile bootstrap intervals; runs (seeds) are resampled with replacement within
  each task (stratum).  Every function that draws takes an explicit ``seed`` and builds its own
  ``numpy.random.Generator``, so a cell's interval does not depend on which other cells exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as _sps

# statistic(samples, axis=-1) -> reduced array; must reduce along ``axis`` (vectorised, as in scipy)
Statistic = Callable[..., np.ndarray]

# tolerance for "reached a threshold": success rates are ratios of small integers, and IQMs of
# them can differ from the threshold by a rounding error only
_TOL = 1e-9


def iqm(x, axis: int | None = -1):
    """Interquartile mean: the 25% trimmed mean (``scipy.stats.trim_mean(x, 0.25)``).

    Drops ``int(0.25 * n)`` values from each end and averages the rest, along ``axis``.
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        raise ValueError("iqm of an empty array")
    if axis is None:
        x, axis = x.ravel(), 0
    return _sps.trim_mean(x, 0.25, axis=axis)


def _as_strata(scores_by_task: Mapping[str, Sequence[float]]) -> list[np.ndarray]:
    strata = [np.asarray(v, dtype=float).ravel() for v in scores_by_task.values()]
    if not strata:
        raise ValueError("no tasks (strata) given")
    for name, s in zip(scores_by_task, strata):
        if s.size == 0:
            raise ValueError(f"task {name!r} has no scores")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"task {name!r} has non-finite scores: {s.tolist()}")
    return strata


def _resample(strata: list[np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, sum(n_t)]``: each row resamples every stratum with replacement, concatenated."""
    parts = [s[rng.integers(0, s.size, size=(reps, s.size))] for s in strata]
    return np.concatenate(parts, axis=1)


def _percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _check_bootstrap_args(reps: int, alpha: float) -> None:
    if int(reps) < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval (percentile bootstrap, or t for ``mean_t_ci``)."""

    estimate: float
    low: float
    high: float


def stratified_bootstrap_ci(
    scores_by_task: Mapping[str, Sequence[float]],
    statistic: Statistic = iqm,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Point estimate and ``1 - alpha`` percentile bootstrap interval of ``statistic``.

    ``scores_by_task`` maps each task to its scores over seeds.  Each bootstrap replicate resamples
    the seeds of every task with replacement (stratified: each task keeps its number of seeds) and
    applies ``statistic`` to all resampled scores concatenated (runs x tasks, as rliable's IQM).
    ``statistic(samples, axis=-1)`` must reduce along ``axis``.
    """
    _check_bootstrap_args(reps, alpha)
    strata = _as_strata(scores_by_task)
    point = float(statistic(np.concatenate(strata), axis=-1))
    rng = np.random.default_rng(seed)
    boot = np.asarray(statistic(_resample(strata, int(reps), rng), axis=-1), dtype=float)
    lo, hi = _percentile_interval(boot, alpha)
    return Interval(point, lo, hi)


def iqm_ci(scores: Sequence[float], reps: int = 2000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """IQM over seeds of one task with its bootstrap interval (a single stratum)."""
    return stratified_bootstrap_ci({"task": scores}, iqm, reps=reps, alpha=alpha, seed=seed)


def mean_t_ci(values: Sequence[float], alpha: float = 0.05) -> Interval:
    """Mean of per-seed values (e.g. each seed's gain over the base model) with the Student t
    interval on n − 1 degrees of freedom: with 3 seeds a bootstrap has only 10 distinct
    resamples, a t interval at least widens with the spread it sees.  n = 1 gives an unbounded
    interval (±inf), not a zero-width one."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"mean_t_ci needs a non-empty 1-d list of finite values, got {values!r}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, -np.inf, np.inf)
    half = float(_sps.t.ppf(1 - alpha / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half)


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + 0.5 P(X = Y) over all pairs, along the last axis; x ``[..., n]``, y ``[..., m]``."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(
    x: Sequence[float] | Mapping[str, Sequence[float]],
    y: Sequence[float] | Mapping[str, Sequence[float]],
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> Interval:
    """Probability that a run of X scores higher than a run of Y: P(X > Y) + 0.5 P(X = Y).

    This is the Mann-Whitney U statistic divided by ``n * m``.  ``x`` and ``y`` are scores over
    seeds of one task, or dicts ``task -> scores`` with the same tasks: then the per-task
    probabilities are averaged over tasks (as rliable does).  The interval resamples the seeds of
    X and of Y independently within each task.
    """
    _check_bootstrap_args(reps, alpha)
    if not isinstance(x, Mapping):
        x, y = {"task": x}, {"task": y}
    if not isinstance(y, Mapping) or set(x) != set(y):
        raise ValueError("x and y must cover the same tasks")
    tasks = list(x)
    xs = _as_strata({t: x[t] for t in tasks})
    ys = _as_strata({t: y[t] for t in tasks})
    point = float(np.mean([_poi(a, b) for a, b in zip(xs, ys)]))
    rng = np.random.default_rng(seed)
    boot = np.zeros(int(reps))
    chunk = max(1, 2_000_000 // max(1, max(a.size * b.size for a, b in zip(xs, ys))))
    for a, b in zip(xs, ys):
        for start in range(0, int(reps), chunk):
            k = min(chunk, int(reps) - start)
            ra = a[rng.integers(0, a.size, size=(k, a.size))]
            rb = b[rng.integers(0, b.size, size=(k, b.size))]
            boot[start : start + k] += _poi(ra, rb)
    boot /= len(tasks)
    lo, hi = _percentile_interval(boot, alpha)
    return Interval(point, lo, hi)


def _curve(feedback: Sequence[float], success: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Checkpoints sorted by feedback; of equal feedback values the later entry wins."""
    f = np.asarray(feedback, dtype=float).ravel()
    s = np.asarray(success, dtype=float).ravel()
    if f.size != s.size:
        raise ValueError(f"feedback ({f.size}) and success ({s.size}) differ in length")
    if f.size == 0:
        raise ValueError("a curve needs at least one checkpoint")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(s))):
        raise ValueError("feedback and success must be finite")
    order = np.argsort(f, kind="stable")
    f, s = f[order], s[order]
    keep = np.append(f[1:] != f[:-1], True)  # last of each run of equal feedback
    return f[keep], s[keep]


def _curve_from_base(feedback: Sequence[float], success: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``_curve``, for metrics measured against the base model: its first checkpoint must be at feedback 0."""
    f, s = _curve(feedback, success)
    if f[0] != 0:
        raise ValueError(f"the curve must start at feedback 0 (the base model); first checkpoint is {f[0]:g}")
    return f, s


def success_at(feedback: Sequence[float], success: Sequence[float], budgets) -> np.ndarray:
    """Success of the last checkpoint with ``feedback <= b`` for each budget ``b`` (NaN if none)."""
    f, s = _curve(feedback, success)
    b = np.atleast_1d(np.asarray(budgets, dtype=float))
    idx = np.searchsorted(f, b, side="right") - 1
    out = np.where(idx >= 0, s[np.clip(idx, 0, None)], np.nan)
    return out if np.ndim(budgets) else out[0]


def normalized_auc(feedback: Sequence[float], success: Sequence[float], budget: float) -> float:
    """Area under the step curve of success against feedback from 0 to ``budget``, / ``budget``.

    The curve must start at feedback 0 (the base model).  A value of 1 means success 1 from the
    first label on; the base model's success held flat gives the base success.
    """
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    f, s = _curve_from_base(feedback, success)
    edges = np.append(np.minimum(f, budget), budget)
    widths = np.diff(edges)
    return float(np.sum(widths * s) / budget)


@dataclass(frozen=True)
class ThresholdResult:
    """Feedback needed to reach a success threshold; ``reached=False`` means right-censored:
    ``feedback`` is then the censoring point (the run needed more than that)."""

    feedback: float
    reached: bool


def feedback_to_threshold(
    feedback: Sequence[float], success: Sequence[float], threshold: float, budget: float | None = None
) -> ThresholdResult:
    """The first checkpoint (in feedback order) whose success is ``>= threshold``.

    Only checkpoints with ``feedback <= budget`` count when ``budget`` is given.  If none reaches
    the threshold the result is censored at ``budget`` (or the last checkpoint's feedback).
    """
    f, s = _curve(feedback, success)
    within = f <= budget if budget is not None else np.ones_like(f, dtype=bool)
    hit = np.flatnonzero(within & (s >= threshold - _TOL))
    if hit.size:
        return ThresholdResult(float(f[hit[0]]), True)
    cap = float(budget) if budget is not None else float(f[-1])
    return ThresholdResult(cap, False)


def feedback_to_gain(
    feedback: Sequence[float], success: Sequence[float], gain: float, budget: float | None = None
) -> ThresholdResult:
    """The first checkpoint whose success is at least the run's own base success + ``gain``.

    The base success is the run's checkpoint at feedback 0 (the pretrained model on the run's
    evaluation noise), so tasks whose base rates differ are compared on the same footing: a fixed
    threshold below a task's base rate is "reached" at 0 feedback and says nothing.  Censoring as
    in ``feedback_to_threshold``.
    """
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    f, s = _curve_from_base(feedback, success)
    return feedback_to_threshold(f, s, float(s[0]) + gain, budget)


def censored_median(values: Sequence[float], reached: Sequence[bool]) -> tuple[float, bool]:
    """Median of right-censored values: censored ones count as larger than every observed value.

    Returns ``(median, censored)``; when the median falls on a censored value, it is returned as
    the censoring point and ``censored`` is True (read: "> value").  No value is ever dropped.
    """
    v = np.asarray(values, dtype=float)
    r = np.asarray(reached, dtype=bool)
    if v.size == 0:
        raise ValueError("censored_median of nothing")
    keyed = np.where(r, v, np.inf)
    med = float(np.median(keyed))
    if np.isfinite(med):
        return med, False
    return float(np.max(v[~r])), True


@dataclass(frozen=True)
class FeedbackRatio:
    """How much less feedback the candidate (HERO) needs to match the reference's (D3PO's) final
    success: ``ratio = reference_feedback / candidate_feedback``.

    If the candidate never reaches ``reference_success`` the result is censored: ``reached`` is
    False, ``candidate_feedback`` is its last checkpoint and ``ratio`` is an upper bound ("<").
    """

    ratio: float
    reached: bool
    reference_success: float
    reference_feedback: float
    candidate_feedback: float


def iqm_curve(runs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """IQM over runs of the step-aligned success, on the union of the runs' checkpoints."""
    if not runs:
        raise ValueError("no runs")
    grid = np.unique(np.concatenate([np.asarray(f, dtype=float) for f, _ in runs]))
    table = np.stack([success_at(f, s, grid) for f, s in runs])  # [runs, grid]
    first = np.max([np.min(np.asarray(f, dtype=float)) for f, _ in runs])
    keep = grid >= first  # every run has a checkpoint at or below each kept point
    return grid[keep], iqm(table[:, keep], axis=0)


def feedback_ratio(
    reference_runs: Sequence[tuple[Sequence[float], Sequence[float]]],
    candidate_runs: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> FeedbackRatio:
    """The paper's "HERO is 4x more feedback-efficient than D3PO" number, from runs of each.

    Each run is ``(feedback, success)`` over its checkpoints.  The reference (D3PO) target is the
    IQM over its seeds of the success at each run's last checkpoint, reached with the IQM of those
    checkpoints' feedback.  The candidate (HERO) needs the feedback of the first of its
    checkpoints at which the IQM over its seeds (step-aligned on the union of its checkpoints)
    reaches the target.  Ratio = reference feedback / candidate feedback (inf if the candidate
    reaches it at 0 feedback).
    """
    finals = [_curve(f, s) for f, s in reference_runs]
    if not finals:
        raise ValueError("no reference runs")
    target = float(iqm([s[-1] for _, s in finals]))
    ref_feedback = float(iqm([f[-1] for f, _ in finals]))
    grid, curve = iqm_curve(candidate_runs)
    hit = np.flatnonzero(curve >= target - _TOL)
    if hit.size:
        needed = float(grid[hit[0]])
        ratio = ref_feedback / needed if needed > 0 else float("inf")
        return FeedbackRatio(ratio, True, target, ref_feedback, needed)
    needed = float(grid[-1])
    ratio = ref_feedback / needed if needed > 0 else float("inf")
    return FeedbackRatio(ratio, False, target, ref_feedback, needed)
