"""hero_bench.stats: IQM, stratified bootstrap, probability of improvement, AUC, censoring, ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from hero_bench import stats


# ------------------------------------------------------------------------------------------ IQM
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40))
def test_iqm_matches_scipy_trim_mean(values):
    assert stats.iqm(values) == pytest.approx(sps.trim_mean(values, 0.25), rel=1e-12, abs=1e-9)


def test_iqm_hand_cases_and_axis():
    assert stats.iqm([1, 2, 3, 4]) == pytest.approx(2.5)  # drops 1 and 4
    assert stats.iqm([0, 0, 0, 0, 10, 10, 10, 10]) == pytest.approx(5.0)
    assert stats.iqm([0, 1, 2, 3, 100]) == pytest.approx(2.0)  # drops 0 and 100: robust to the outlier
    m = np.array([[1, 2, 3, 4], [0, 0, 0, 8]], dtype=float)
    np.testing.assert_allclose(stats.iqm(m, axis=-1), [2.5, 0.0])
    with pytest.raises(ValueError):
        stats.iqm([])


# ------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(7).normal(0.4, 0.1, size=12)
    ours = stats.stratified_bootstrap_ci({"t": x}, stats.iqm, reps=5000, seed=1)
    ref = sps.bootstrap((x,), stats.iqm, n_resamples=5000, method="percentile", vectorized=True,
                        random_state=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert ours.estimate == pytest.approx(sps.trim_mean(x, 0.25))
    # different random streams: agree within Monte-Carlo error (about 1% of the width at 5000 reps)
    assert abs(ours.low - ref.low) < 0.1 * width
    assert abs(ours.high - ref.high) < 0.1 * width
    assert ours.low < ours.estimate < ours.high


def test_bootstrap_resamples_within_each_task():
    # task a is all 0 (3 seeds), task b all 1 (5 seeds): any stratified resample has mean 5/8 exactly;
    # pooling the 8 runs and resampling them together would not
    ci = stats.stratified_bootstrap_ci({"a": [0, 0, 0], "b": [1, 1, 1, 1, 1]}, np.mean, reps=500, seed=3)
    assert ci.estimate == pytest.approx(5 / 8)
    assert ci.low == pytest.approx(5 / 8) and ci.high == pytest.approx(5 / 8)


def test_bootstrap_identical_scores_give_zero_width_and_is_seeded():
    ci = stats.iqm_ci([0.25] * 5, reps=300)
    assert ci.low == ci.high == ci.estimate == 0.25
    x = [0.1, 0.5, 0.2, 0.9, 0.4, 0.3]
    a, b = stats.iqm_ci(x, reps=300, seed=5), stats.iqm_ci(x, reps=300, seed=5)
    assert a == b
    assert stats.iqm_ci(x, reps=300, seed=6) != a
    wide, narrow = stats.iqm_ci(x, reps=2000, alpha=0.05), stats.iqm_ci(x, reps=2000, alpha=0.5)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="task 'b' has no scores"):
        stats.stratified_bootstrap_ci({"a": [1.0], "b": []})
    with pytest.raises(ValueError, match="reps"):
        stats.iqm_ci([1.0, 2.0], reps=0)
    with pytest.raises(ValueError, match="non-finite"):
        stats.iqm_ci([1.0, float("nan")])


# --------------------------------------------------------------------- probability of improvement
@pytest.mark.parametrize(
    "x, y, expected",
    [
        ([1, 2, 3], [0, 0, 0], 1.0),
        ([0, 0], [1, 2], 0.0),
        ([1, 1], [1, 1], 0.5),  # all ties
        ([1, 3], [2, 2], 0.5),  # one win, one loss per y
        ([2, 3], [1, 2], (3 + 0.5) / 4),  # 3 wins and a tie out of 4 pairs
    ],
)
def test_probability_of_improvement_hand_cases(x, y, expected):
    ci = stats.probability_of_improvement(x, y, reps=200)
    assert ci.estimate == pytest.approx(expected)
    assert 0.0 <= ci.low <= ci.high <= 1.0


def test_probability_of_improvement_is_mann_whitney_and_averages_tasks():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 7) / 4, rng.integers(0, 5, 6) / 4  # with ties
    u = sps.mannwhitneyu(x, y, alternative="two-sided").statistic
    ci = stats.probability_of_improvement(x, y, reps=1000, seed=0)
    assert ci.estimate == pytest.approx(u / (x.size * y.size))
    assert ci.low <= ci.estimate <= ci.high
    both = stats.probability_of_improvement({"a": [1, 2, 3], "b": [0, 0]}, {"a": [0, 0, 0], "b": [1, 1]}, reps=100)
    assert both.estimate == pytest.approx((1.0 + 0.0) / 2)
    assert both.low == both.high == 0.5  # every resample is still 1 in task a and 0 in task b
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement({"a": [1]}, {"b": [1]})


# -------------------------------------------------------------------------------- step curves
def test_success_at_reads_last_checkpoint_at_or_below_budget():
    f, s = [0, 63, 126, 189], [0.1, 0.2, 0.3, 0.4]
    np.testing.assert_allclose(stats.success_at(f, s, [0, 62, 63, 128, 1000]), [0.1, 0.1, 0.2, 0.3, 0.4])
    assert math.isnan(stats.success_at([64, 128], [0.2, 0.3], 10))
    # unsorted input and a repeated feedback value: the later entry wins
    assert stats.success_at([128, 0, 128], [0.3, 0.1, 0.35], 200) == pytest.approx(0.35)


def test_normalized_auc_hand_computed():
    f, s = [0, 100, 200], [0.2, 0.4, 0.6]
    assert stats.normalized_auc(f, s, 300) == pytest.approx((0.2 * 100 + 0.4 * 100 + 0.6 * 100) / 300)
    assert stats.normalized_auc(f, s, 150) == pytest.approx((0.2 * 100 + 0.4 * 50) / 150)
    assert stats.normalized_auc(f[::-1], s[::-1], 300) == pytest.approx(0.4)  # order does not matter
    assert stats.normalized_auc([0], [0.3], 512) == pytest.approx(0.3)  # a flat base model
    with pytest.raises(ValueError, match="feedback 0"):
        stats.normalized_auc([64, 128], [0.2, 0.3], 128)


def test_feedback_to_threshold_reached_and_censored():
    f, s = [0, 64, 128, 192, 256], [0.1, 0.3, 0.55, 0.4, 0.7]
    assert stats.feedback_to_threshold(f, s, 0.5) == stats.ThresholdResult(128, True)
    assert stats.feedback_to_threshold(f, s, 0.6) == stats.ThresholdResult(256, True)
    assert stats.feedback_to_threshold(f, s, 0.6, budget=192) == stats.ThresholdResult(192, False)
    assert stats.feedback_to_threshold(f, s, 0.9) == stats.ThresholdResult(256, False)
    assert stats.feedback_to_threshold(f, s, 0.9, budget=512) == stats.ThresholdResult(512, False)
    assert stats.feedback_to_threshold(f, s, 0.1) == stats.ThresholdResult(0, True)  # the base already does
    # a success equal to the threshold up to rounding counts as reached
    assert stats.feedback_to_threshold([0, 10], [0.0, 0.7 - 0.4], 0.3).reached


def test_censored_median_never_drops_censored_seeds():
    # 3 of 5 censored at 512: the median seed did not reach it
    assert stats.censored_median([100, 200, 512, 512, 512], [True, True, False, False, False]) == (512.0, True)
    # 2 of 5 censored: the median (3rd smallest) is observed
    assert stats.censored_median([300, 100, 512, 200, 512], [True, True, False, True, False]) == (300.0, False)
    # dropping the censored seeds would give a median of 150 here; counted, the median is censored
    assert stats.censored_median([100, 200, 512, 512], [True, True, False, False]) == (512.0, True)
    assert stats.censored_median([100, 200, 512], [True, True, False]) == (200.0, False)


# -------------------------------------------------------------------------------- feedback ratio
def test_feedback_ratio_reached():
    d3po = [([0, 252, 504], [0.1, 0.3, 0.4])] * 3
    hero = [([0, 128, 256, 384], [0.1, 0.3, 0.45, 0.5])] * 3
    r = stats.feedback_ratio(d3po, hero)
    assert r.reached
    assert r.reference_success == pytest.approx(0.4)
    assert r.reference_feedback == 504
    assert r.candidate_feedback == 256
    assert r.ratio == pytest.approx(504 / 256)


def test_feedback_ratio_paper_headline_and_censoring():
    d3po = [([0, 1000, 4000, 5000], [0.115, 0.155, 0.285, 0.333])] * 5
    hero = [([0, 128, 1024, 1152], [0.12, 0.19, 0.28, 0.34])] * 5
    r = stats.feedback_ratio(d3po, hero)
    assert r.reached and r.ratio == pytest.approx(5000 / 1152)
    weak = [([0, 128, 256], [0.12, 0.2, 0.25])] * 5
    c = stats.feedback_ratio(d3po, weak)
    assert not c.reached
    assert c.candidate_feedback == 256
    assert c.ratio == pytest.approx(5000 / 256)  # an upper bound


def test_feedback_ratio_uses_iqm_over_seeds_on_the_union_grid():
    d3po = [([0, 63], [0.0, 0.5])] * 4
    # seeds checkpoint at different feedback; at 100 the seeds read 0.6, 0.6, 0.2 (still at 64), 0.6
    hero = [([0, 100], [0.0, 0.6]), ([0, 100], [0.0, 0.6]), ([0, 64, 200], [0.0, 0.2, 0.6]), ([0, 100], [0.0, 0.6])]
    r = stats.feedback_ratio(d3po, hero)
    grid, curve = stats.iqm_curve(hero)
    np.testing.assert_allclose(grid, [0, 64, 100, 200])
    assert curve[2] == pytest.approx(sps.trim_mean([0.6, 0.6, 0.2, 0.6], 0.25))
    assert r.candidate_feedback == 100 and r.ratio == pytest.approx(63 / 100)


# ------------------------------------------------------------------------- mean with t interval
def test_mean_t_ci_hand_values():
    ci = stats.mean_t_ci([1.0, 2.0, 3.0])
    # mean 2, sample sd 1, t_{0.975, 2} = 4.302653 -> half width 4.302653 / sqrt(3) = 2.484138
    assert ci.estimate == pytest.approx(2.0, abs=1e-12)
    assert (ci.low, ci.high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)
    narrow = stats.mean_t_ci([1.0, 2.0, 3.0], alpha=0.5)
    assert ci.low < narrow.low < 2.0 < narrow.high < ci.high


def test_mean_t_ci_one_value_is_unbounded_and_bad_input_is_refused():
    one = stats.mean_t_ci([0.3])
    assert one.estimate == 0.3 and one.low == -math.inf and one.high == math.inf
    for bad in ([], [0.1, float("nan")], [[0.1, 0.2]]):
        with pytest.raises(ValueError, match="mean_t_ci"):
            stats.mean_t_ci(bad)


def test_feedback_to_gain_counts_from_the_run_s_own_base():
    f = [0, 64, 128, 192]
    # a base at 0.45: a fixed threshold of 0.4 is "reached" at 0, a gain of 0.15 only at 0.60
    s = [0.45, 0.5, 0.61, 0.7]
    assert stats.feedback_to_threshold(f, s, 0.4) == stats.ThresholdResult(0, True)
    assert stats.feedback_to_gain(f, s, 0.15) == stats.ThresholdResult(128, True)
    assert stats.feedback_to_gain(f, [0.2, 0.3, 0.35, 0.36], 0.15) == stats.ThresholdResult(128, True)
    assert stats.feedback_to_gain(f, s, 0.3, budget=256) == stats.ThresholdResult(256, False)
    assert stats.feedback_to_gain(f, [0.5, 0.4, 0.45, 0.5], 0.05) == stats.ThresholdResult(192, False)
    with pytest.raises(ValueError, match="feedback 0"):
        stats.feedback_to_gain([64, 128], [0.2, 0.5], 0.15)
    with pytest.raises(ValueError, match="gain must be > 0"):
        stats.feedback_to_gain(f, s, 0.0)
