"""The simulated evaluator: HERO / D3PO / DDPO protocols, noise models, budget and replay.

Every oracle result here is hand-made (carried in the metadata), so the expected labels, best
picks and pairs are known exactly.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero_bench.config import from_dict
from hero_bench.errors import BudgetExceededError, ConfigError
from hero_bench.feedback import (
    BestImage,
    EvaluatorConfig,
    FeedbackLedger,
    LedgerError,
    SimulatedEvaluator,
    image_id,
    softmax_choice,
)

T, F = True, False


@dataclass(frozen=True)
class FakeResult:
    success: bool
    score: float
    details: dict = field(default_factory=dict)


class FakeOracle:
    """Returns the (success, score) written into each image's metadata; counts its calls."""

    name = "fake"
    version = "0"

    def __init__(self):
        self.calls = 0

    def __call__(self, images, prompts, metadata):
        self.calls += 1
        assert len(images) == len(prompts) == len(metadata)
        return [FakeResult(bool(m["success"]), float(m["score"])) for m in metadata]


def batch(spec, prompt="a prompt"):
    """spec: list of (success, score) -> (images, prompts, metadata) for the evaluator."""
    n = len(spec)
    images = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    prompts = [prompt] * n
    metadata = [{"success": s, "score": x} for s, x in spec]
    return images, prompts, metadata


def make(tmp_path, budget=1000, seed=0, run_id="run", **cfg):
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", budget=budget, run_id=run_id)
    oracle = FakeOracle()
    ev = SimulatedEvaluator(oracle, EvaluatorConfig(**cfg), ledger, seed=seed)
    return ev, oracle, ledger


def read_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ----------------------------------------------------------------------------------------------
# HERO
# ----------------------------------------------------------------------------------------------


def test_hero_first_batch_best_of_whole_batch(tmp_path):
    ev, oracle, ledger = make(tmp_path)
    fb = ev.hero(*batch([(F, 0.1), (T, 0.5), (T, 0.9), (F, 0.3)]), epoch=0, current_best=None)
    assert fb.good.tolist() == [F, T, T, F]
    assert fb.best_index == 2
    assert fb.best == BestImage("e0000-i0002", 0, 0.9)
    assert fb.fallback is None and not fb.replayed
    assert (ledger.feedback_used, ledger.queries, oracle.calls) == (4, 1, 1)
    recs = read_records(ledger.path)
    labels = [r for r in recs if r["type"] == "label"]
    assert [r["image_id"] for r in labels] == [image_id(0, i) for i in range(4)]
    assert [r["value"] for r in labels] == [F, T, T, F]
    assert [r["oracle_score"] for r in labels] == [0.1, 0.5, 0.9, 0.3]
    assert [r["oracle_success"] for r in labels] == [F, T, T, F]
    assert all(r["kind"] == "hero_good" and r["run_id"] == "run" and r["epoch"] == 0 for r in labels)
    assert all(r["evaluator_seed"] == ev.evaluator_seed for r in recs)
    assert [r["seq"] for r in recs] == list(range(5))
    (query,) = [r for r in recs if r["type"] == "query"]
    assert query["kind"] == "hero_best" and query["value"]["best_index"] == 2


def test_hero_first_batch_best_is_added_to_good(tmp_path):
    # The highest-scoring image failed the oracle; as the batch's best it is still labelled good.
    ev, _, _ = make(tmp_path)
    fb = ev.hero(*batch([(F, 0.9), (T, 0.2), (F, 0.1)]), epoch=0, current_best=None)
    assert fb.best_index == 0
    assert fb.good.tolist() == [T, T, F]
    assert fb.fallback is None


def test_hero_later_batch_current_best_stays(tmp_path):
    ev, _, ledger = make(tmp_path)
    current = BestImage("e0000-i0003", 0, 0.95)
    # Image 1 scores higher than the current best but is bad, so it is not a candidate.
    fb = ev.hero(*batch([(T, 0.5), (F, 0.99), (T, 0.8)]), epoch=1, current_best=current)
    assert fb.best_index is None
    assert fb.best == current
    assert fb.good.tolist() == [T, F, T]
    assert fb.fallback is None
    assert ledger.lookup("hero_best", "e0001")["value"]["best_index"] is None


def test_hero_later_batch_new_best_maps_to_batch_index(tmp_path):
    ev, _, _ = make(tmp_path)
    current = BestImage("e0000-i0000", 0, 0.6)
    spec = [(F, 0.9), (T, 0.3), (F, 0.95), (T, 0.7), (T, 0.65)]
    fb = ev.hero(*batch(spec), epoch=1, current_best=current)
    # Candidates are [current 0.6, i1 0.3, i3 0.7, i4 0.65]; the winner is candidate 2 -> BATCH
    # index 3. The released code would have used 2 (a bad image) as the batch index (docs/algorithms.md §4.12.1).
    assert fb.best_index == 3
    assert fb.best == BestImage("e0001-i0003", 1, 0.7)
    assert fb.good[fb.best_index]
    assert fb.good.tolist() == [F, T, F, T, T]


def test_hero_exact_tie_keeps_current_best(tmp_path):
    ev, _, _ = make(tmp_path)
    current = BestImage("e0000-i0000", 0, 0.7)
    fb = ev.hero(*batch([(T, 0.7), (F, 0.1)]), epoch=1, current_best=current)
    assert fb.best_index is None and fb.best == current


def test_hero_first_batch_no_good_fallback(tmp_path):
    ev, _, _ = make(tmp_path)
    fb = ev.hero(*batch([(F, 0.1), (F, 0.7), (F, 0.3)]), epoch=0, current_best=None)
    assert fb.fallback == "no_good"
    assert fb.good.tolist() == [F, T, F]
    assert fb.best_index == 1


def test_hero_later_no_good_fallback_top_image_becomes_candidate(tmp_path):
    ev, _, _ = make(tmp_path)
    fb = ev.hero(*batch([(F, 0.2), (F, 0.8), (F, 0.5)]), epoch=1,
                 current_best=BestImage("e0000-i0000", 0, 0.5))
    assert fb.fallback == "no_good"
    assert fb.good.tolist() == [F, T, F]
    assert fb.best_index == 1 and fb.best.score == 0.8
    # Same batch against a better current best: the forced-good image does not win.
    ev2, _, _ = make(tmp_path / "b")
    fb2 = ev2.hero(*batch([(F, 0.2), (F, 0.8), (F, 0.5)]), epoch=1,
                   current_best=BestImage("e0000-i0000", 0, 0.9))
    assert fb2.fallback == "no_good" and fb2.good.tolist() == [F, T, F] and fb2.best_index is None


def test_hero_first_batch_all_good_fallback(tmp_path):
    ev, _, _ = make(tmp_path)
    fb = ev.hero(*batch([(T, 0.5), (T, 0.2), (T, 0.9)]), epoch=0, current_best=None)
    assert fb.fallback == "all_good"
    assert fb.good.tolist() == [T, F, T]
    assert fb.best_index == 2


def test_hero_later_all_good_fallback(tmp_path):
    ev, _, _ = make(tmp_path)
    fb = ev.hero(*batch([(T, 0.4), (T, 0.1), (T, 0.6)]), epoch=1,
                 current_best=BestImage("e0000-i0000", 0, 0.5))
    assert fb.fallback == "all_good"
    assert fb.good.tolist() == [T, F, T]
    assert fb.best_index == 2 and fb.good[2]


def test_hero_needs_two_images(tmp_path):
    ev, oracle, ledger = make(tmp_path)
    with pytest.raises(ValueError, match="at least 2"):
        ev.hero(*batch([(T, 0.4)]), epoch=0, current_best=None)
    assert oracle.calls == 0 and ledger.feedback_used == 0


@given(st.lists(st.tuples(st.booleans(), st.floats(-5, 5)), min_size=2, max_size=12),
       st.none() | st.floats(-5, 5), st.floats(0, 1), st.floats(0, 3))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hero_invariants(spec, current_score, flip, temperature):
    with tempfile.TemporaryDirectory() as d:
        ev, _, _ = make(Path(d), flip_prob=flip, best_temperature=temperature)
        current = None if current_score is None else BestImage("e0000-i0000", 0, current_score)
        fb = ev.hero(*batch(spec), epoch=1, current_best=current)
        assert fb.good.dtype == bool and fb.good.shape == (len(spec),)
        assert fb.good.any() and not fb.good.all()
        if fb.best_index is None:
            assert current is not None and fb.best == current
        else:
            assert fb.good[fb.best_index]
            assert fb.best.image_id == image_id(1, fb.best_index)
            assert fb.best.score == pytest.approx(spec[fb.best_index][1])
        if temperature == 0 and current is not None:
            good_scores = [spec[i][1] for i in np.flatnonzero(fb.good)]
            assert fb.best.score == max([current.score] + good_scores)


# ----------------------------------------------------------------------------------------------
# D3PO
# ----------------------------------------------------------------------------------------------


def test_d3po_pairs_only_within_groups_ties_skipped(tmp_path):
    ev, _, ledger = make(tmp_path)
    spec = [(T, 0.9), (F, 0.1), (F, 0.2),  # group 0: 0 beats 1 and 2; 1-2 is a tie
            (F, 0.3), (T, 0.4),            # group 1: 4 beats 3
            (T, 0.5), (T, 0.6)]            # group 2: all good -> no pair
    groups = [0, 0, 0, 1, 1, 2, 2]
    fb = ev.d3po(*batch(spec), groups=groups, epoch=0)
    assert fb.success.tolist() == [T, F, F, F, T, T, T]
    assert fb.pairs == [(0, 1), (0, 2), (4, 3)]
    # Image 0 (good) and image 3 (bad) are in different groups: never paired.
    assert (0, 3) not in fb.pairs
    assert (ledger.feedback_used, ledger.queries) == (7, 3)
    q = ledger.lookup("d3po_pair", "e0000-i0003/e0000-i0004")
    assert q["value"] == {"preferred": 4, "other": 3, "by": "class"}


def test_d3po_interleaved_group_layout(tmp_path):
    ev, _, _ = make(tmp_path)
    spec = [(T, 0.0), (F, 0.0), (F, 0.0), (T, 0.0)]
    groups = [5, 7, 5, 7]  # groups need not be contiguous in the batch
    fb = ev.d3po(*[list(x) for x in batch(spec)], groups=groups, epoch=0)
    assert fb.pairs == [(0, 2), (3, 1)]


def test_d3po_tie_break_by_score_flag(tmp_path):
    spec = [(T, 0.5), (F, 0.1), (F, 0.3), (F, 0.3)]
    ev, _, ledger = make(tmp_path, d3po_tie_break_by_score=True)
    fb = ev.d3po(*batch(spec), groups=[0, 0, 0, 0], epoch=0)
    # Class decides first; same-class pairs by score; equal scores (2, 3) still skipped.
    assert fb.pairs == [(0, 1), (0, 2), (0, 3), (2, 1), (3, 1)]
    assert ledger.queries == 5
    ev2, _, _ = make(tmp_path / "default")
    assert ev2.d3po(*batch(spec), groups=[0, 0, 0, 0], epoch=0).pairs == [(0, 1), (0, 2), (0, 3)]


def test_d3po_group_must_share_prompt(tmp_path):
    ev, oracle, _ = make(tmp_path)
    images, prompts, metadata = batch([(T, 0.5), (F, 0.1)])
    prompts = ["a cat", "a dog"]
    with pytest.raises(ValueError, match="different prompts"):
        ev.d3po(images, prompts, metadata, groups=[0, 0], epoch=0)
    assert oracle.calls == 0


# ----------------------------------------------------------------------------------------------
# DDPO
# ----------------------------------------------------------------------------------------------


def test_ddpo_success_reward(tmp_path):
    ev, _, ledger = make(tmp_path)
    r = ev.ddpo(*batch([(T, 0.2), (F, 0.9), (T, -1.0)]), epoch=0)
    assert r.dtype == np.float64 and r.tolist() == [1.0, 0.0, 1.0]
    assert (ledger.feedback_used, ledger.queries) == (3, 0)


def test_ddpo_score_reward_with_bias(tmp_path):
    ev, _, ledger = make(tmp_path, ddpo_reward="score", bias=0.5, flip_prob=1.0)
    r = ev.ddpo(*batch([(T, 0.2), (F, 0.9), (T, -1.0)]), epoch=0)
    # Flip noise applies to binary labels only; bias shifts the seen score.
    assert r.tolist() == pytest.approx([0.7, 1.4, -0.5])
    assert [x["oracle_score"] for x in ledger.records()] == [0.2, 0.9, -1.0]


# ----------------------------------------------------------------------------------------------
# Noise models
# ----------------------------------------------------------------------------------------------


SPEC = [(T, 0.9), (F, 0.1), (F, 0.5), (T, 0.2), (F, 0.3), (T, 0.4)]


def test_flip_prob_zero_changes_nothing(tmp_path):
    for seed in range(5):
        ev, _, _ = make(tmp_path / f"s{seed}", seed=seed, flip_prob=0.0)
        assert ev.ddpo(*batch(SPEC), epoch=0).tolist() == [float(s) for s, _ in SPEC]
        assert ev.d3po(*batch(SPEC), groups=[0] * 6, epoch=1).success.tolist() == [s for s, _ in SPEC]


def test_flip_prob_one_flips_everything(tmp_path):
    ev, _, _ = make(tmp_path, flip_prob=1.0)
    assert ev.ddpo(*batch(SPEC), epoch=0).tolist() == [float(not s) for s, _ in SPEC]
    d = ev.d3po(*batch(SPEC[:3]), groups=[0, 0, 0], epoch=1)
    assert d.success.tolist() == [F, T, T]
    assert d.pairs == [(1, 0), (2, 0)]  # preferences reverse
    fb = ev.hero(*batch([(T, 0.9), (F, 0.1), (F, 0.5), (T, 0.2)]), epoch=2, current_best=None)
    # Noisy labels [F, T, T, F]; the best (highest seen score, image 0) is added to the good set.
    assert fb.good.tolist() == [T, T, T, F] and fb.best_index == 0


def test_flip_frequency_matches_prob(tmp_path):
    ev, _, ledger = make(tmp_path, budget=4000, flip_prob=0.3)
    r = ev.ddpo(*batch([(T, 0.0)] * 4000), epoch=0)
    assert abs((r == 0).mean() - 0.3) < 0.03
    flipped = [rec["extra"]["flipped"] for rec in ledger.records()]
    assert flipped == (r == 0).tolist()


def test_bias_shifts_seen_scores(tmp_path):
    ev, _, _ = make(tmp_path, bias=0.25)
    fb = ev.hero(*batch([(T, 0.5), (F, 0.1)]), epoch=0, current_best=None)
    assert fb.best.score == pytest.approx(0.75)
    # Against a current best seen without bias (0.7), a 0.5-scored good image now wins.
    fb = ev.hero(*batch([(T, 0.5), (F, 0.1)]), epoch=1, current_best=BestImage("x", 0, 0.7))
    assert fb.best_index == 0


def test_softmax_choice_argmax_and_frequencies():
    rng = np.random.default_rng(0)
    assert softmax_choice([0.1, 0.9, 0.9, 0.2], 0.0, rng) == 1  # first maximum
    scores = np.array([0.0, 1.0, 2.0])
    p = np.exp(scores) / np.exp(scores).sum()
    draws = [softmax_choice(scores, 1.0, rng) for _ in range(20000)]
    freq = np.bincount(draws, minlength=3) / len(draws)
    assert np.abs(freq - p).max() < 0.015
    # A tiny temperature is (numerically) argmax; a huge one is (nearly) uniform.
    assert {softmax_choice(scores, 1e-6, rng) for _ in range(50)} == {2}
    wide = np.bincount([softmax_choice(scores, 1e6, rng) for _ in range(6000)], minlength=3) / 6000
    assert np.abs(wide - 1 / 3).max() < 0.03


def test_temperature_choice_deterministic_and_softmax_distributed(tmp_path):
    spec = [(T, 0.0), (T, 1.0), (T, 2.0)]

    def picks(path, noise_seed, epochs):
        ev, _, _ = make(path, budget=3 * epochs, noise_seed=noise_seed, best_temperature=1.0)
        return [ev.hero(*batch(spec), epoch=e, current_best=None).best_index for e in range(epochs)]

    a = picks(tmp_path / "a", 0, 400)
    assert picks(tmp_path / "b", 0, 40) == a[:40]  # same seeds -> same choices
    assert picks(tmp_path / "c", 1, 40) != a[:40]  # another evaluator chooses differently
    p = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    freq = np.bincount(a, minlength=3) / len(a)
    assert np.abs(freq - p).max() < 0.08


def test_config_validation_and_from_dict():
    with pytest.raises(ConfigError, match="flip_prob"):
        EvaluatorConfig(flip_prob=1.5)
    with pytest.raises(ConfigError, match="best_temperature"):
        EvaluatorConfig(best_temperature=-1.0)
    with pytest.raises(ConfigError, match="ddpo_reward"):
        from_dict(EvaluatorConfig, {"ddpo_reward": "pickscore"})
    with pytest.raises(ConfigError, match="noise_seed"):
        EvaluatorConfig(noise_seed=-3)
    with pytest.raises(ConfigError, match="unknown config key"):
        from_dict(EvaluatorConfig, {"flip": 0.1})
    cfg = from_dict(EvaluatorConfig, {"flip_prob": "0.2", "d3po_tie_break_by_score": "true"})
    assert cfg.flip_prob == 0.2 and cfg.d3po_tie_break_by_score is True


# ----------------------------------------------------------------------------------------------
# Budget
# ----------------------------------------------------------------------------------------------


def test_batch_over_budget_raises_before_asking(tmp_path):
    ev, oracle, ledger = make(tmp_path, budget=5)
    ev.ddpo(*batch([(T, 0.0)] * 3), epoch=0)
    with pytest.raises(BudgetExceededError, match=r"budget 5, used 3, requested 3"):
        ev.hero(*batch([(T, 0.0), (F, 0.0), (T, 0.0)]), epoch=1, current_best=None)
    assert oracle.calls == 1 and ledger.feedback_used == 3 and len(read_records(ledger.path)) == 3
    ev.d3po(*batch([(T, 0.0), (F, 0.0)]), groups=[0, 0], epoch=1)  # sized with ledger.remaining
    assert ledger.remaining == 0 and ledger.feedback_used == 5


@given(st.integers(0, 40), st.lists(st.integers(1, 15), max_size=8))
@settings(max_examples=40, deadline=None)
def test_budget_never_exceeded(budget, sizes):
    with tempfile.TemporaryDirectory() as d:
        ev, oracle, ledger = make(Path(d), budget=budget)
        expected = 0
        for epoch, n in enumerate(sizes):
            if expected + n > budget:
                with pytest.raises(BudgetExceededError):
                    ev.ddpo(*batch([(T, 0.1)] * n), epoch=epoch)
            else:
                ev.ddpo(*batch([(T, 0.1)] * n), epoch=epoch)
                expected += n
            assert ledger.feedback_used == expected <= budget
            assert ledger.remaining == budget - expected
        reopened = FeedbackLedger(Path(d) / "ledger.jsonl", budget=budget, run_id="run")
        assert reopened.feedback_used == expected


# ----------------------------------------------------------------------------------------------
# Replay (resume after a crash between labelling and checkpointing)
# ----------------------------------------------------------------------------------------------


NOISY = dict(flip_prob=0.3, best_temperature=0.5, noise_seed=7)
HERO_BATCHES = [
    [(T, 0.2), (F, 0.8), (T, 0.5), (F, 0.1), (T, 0.4), (F, 0.6)],
    [(F, 0.7), (T, 0.9), (T, 0.3), (F, 0.2), (T, 0.6), (F, 0.5)],
    [(T, 0.95), (F, 0.4), (T, 0.1), (T, 0.3), (F, 0.9), (F, 0.0)],
]


def run_hero(ev, epochs, current=None):
    out = []
    for e in epochs:
        fb = ev.hero(*batch(HERO_BATCHES[e]), epoch=e, current_best=current)
        out.append(fb)
        current = fb.best
    return out


def same(a, b):
    return (a.good.tolist() == b.good.tolist() and a.best_index == b.best_index and a.best == b.best
            and a.fallback == b.fallback)


def test_hero_replay_without_oracle_and_same_future(tmp_path):
    ref_ev, _, _ = make(tmp_path / "ref", seed=3, **NOISY)
    ref = run_hero(ref_ev, [0, 1, 2])

    ev, oracle, ledger = make(tmp_path / "run", seed=3, **NOISY)
    first = run_hero(ev, [0, 1])
    assert oracle.calls == 2 and ledger.feedback_used == 12 and ledger.queries == 2
    # Crash after labelling epoch 1 but before its checkpoint: resume from the epoch-0 state.
    ev2, oracle2, ledger2 = make(tmp_path / "run", seed=3, **NOISY)
    assert ledger2.feedback_used == 12 and ledger2.used_before(1) == 6
    replayed = ev2.hero(*batch(HERO_BATCHES[1]), epoch=1, current_best=first[0].best)
    assert replayed.replayed and oracle2.calls == 0
    assert same(replayed, first[1]) and same(replayed, ref[1])
    assert (ledger2.feedback_used, ledger2.queries) == (12, 2)
    # The next epoch draws exactly what the uninterrupted run drew.
    nxt = ev2.hero(*batch(HERO_BATCHES[2]), epoch=2, current_best=replayed.best)
    assert oracle2.calls == 1 and same(nxt, ref[2])


def test_d3po_and_ddpo_replay(tmp_path):
    spec = [(T, 0.3), (F, 0.2), (F, 0.9), (T, 0.1), (T, 0.5), (F, 0.4)]
    groups = [0, 0, 0, 1, 1, 1]
    ev, oracle, ledger = make(tmp_path, **NOISY)
    d = ev.d3po(*batch(spec), groups=groups, epoch=0)
    r = ev.ddpo(*batch(spec), epoch=0)
    counts = (ledger.feedback_used, ledger.queries)
    ev2, oracle2, ledger2 = make(tmp_path, **NOISY)
    d2 = ev2.d3po(*batch(spec), groups=groups, epoch=0)
    r2 = ev2.ddpo(*batch(spec), epoch=0)
    assert oracle2.calls == 0 and d2.replayed
    assert d2.success.tolist() == d.success.tolist() and d2.pairs == d.pairs
    assert r2.tolist() == r.tolist()
    assert (ledger2.feedback_used, ledger2.queries) == counts
    with pytest.raises(LedgerError, match="group layout"):
        ev2.d3po(*batch(spec), groups=[0, 0, 1, 1, 2, 2], epoch=0)


def test_replay_refuses_a_different_evaluator_or_batch(tmp_path):
    ev, _, _ = make(tmp_path, **NOISY)
    fb0 = ev.hero(*batch(HERO_BATCHES[0]), epoch=0, current_best=None)
    with pytest.raises(LedgerError, match="different evaluator"):
        make(tmp_path, seed=99, **NOISY)[0].hero(*batch(HERO_BATCHES[0]), epoch=0, current_best=None)
    with pytest.raises(LedgerError, match="different evaluator"):
        make(tmp_path, **dict(NOISY, flip_prob=0.0))[0].hero(*batch(HERO_BATCHES[0]), epoch=0, current_best=None)
    with pytest.raises(LedgerError, match="4 images"):
        make(tmp_path, **NOISY)[0].hero(*batch(HERO_BATCHES[0][:4]), epoch=0, current_best=None)
    with pytest.raises(LedgerError, match="checkpoint and ledger disagree"):
        make(tmp_path, **NOISY)[0].hero(*batch(HERO_BATCHES[0]), epoch=0, current_best=fb0.best)


def test_labels_are_durable_before_they_are_returned(tmp_path, monkeypatch):
    import os

    ev, _, ledger = make(tmp_path)
    seen_at_fsync = []
    real_fsync = os.fsync

    def spy(fd):
        if ledger.path.exists():
            seen_at_fsync.append(len(read_records(ledger.path)))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ev.hero(*batch([(T, 0.5), (F, 0.1), (T, 0.2)]), epoch=0, current_best=None)
    assert 4 in seen_at_fsync  # 3 labels + the best pick were on disk when fsync ran

    def failing(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        ev.ddpo(*batch([(T, 0.5)]), epoch=1)
    monkeypatch.setattr(os, "fsync", real_fsync)
    # A label that could not be made durable is neither returned nor counted.
    assert ledger.feedback_used == 3 and len(read_records(ledger.path)) == 4
    assert ev.ddpo(*batch([(T, 0.5)]), epoch=1).tolist() == [1.0]
    assert FeedbackLedger(ledger.path, budget=1000, run_id="run").feedback_used == 4


def test_works_with_the_real_oracle_result(tmp_path):
    base = pytest.importorskip("oracles.base")

    class Oracle:
        name, version = "real-result", "0"

        def __call__(self, images, prompts, metadata):
            return [base.OracleResult(success=m["success"], score=m["score"], details={}) for m in metadata]

    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", budget=10, run_id="run")
    ev = SimulatedEvaluator(Oracle(), EvaluatorConfig(), ledger, seed=1)
    fb = ev.hero(*batch([(F, 0.2), (T, 0.6)]), epoch=0, current_best=None)
    assert fb.good.tolist() == [F, T] and fb.best_index == 1
