"""ICC(1) on hand-computed tables, and the noise-influence measurement on the tiny backbone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hero_bench.cli import main
from hero_bench.noise_influence import (binary_matrix, icc1, icc1_interval, measure_noise_influence,
                                        recorded_interval)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_icc1_matches_a_hand_computed_table():
    # means 2/3 and 0, grand mean 1/3: MSB = 3·2·(1/3)² = 2/3, MSW = (2/9 + 4/9)/4 = 1/6
    # ICC = (2/3 − 1/6) / (2/3 + 2·1/6) = 0.5
    assert icc1(np.array([[1, 1, 0], [0, 0, 0]])) == pytest.approx(0.5)


def test_icc1_extremes():
    # the group decides everything: every repeat agrees, groups differ
    assert icc1(np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]])) == pytest.approx(1.0)
    # the group decides nothing: identical groups -> MSB = 0 -> −1/(k−1)
    assert icc1(np.array([[1, 0, 1, 0], [1, 0, 1, 0]])) == pytest.approx(-1 / 3)
    assert math.isnan(icc1(np.zeros((3, 4))))


def test_icc1_interval_brackets_the_estimate_and_narrows_with_more_noises():
    rng = np.random.default_rng(0)

    def table(groups):  # each noise has its own success probability: a true ICC near 0.5
        p = rng.choice([0.1, 0.9], size=groups)
        return (rng.random((groups, 8)) < p[:, None]).astype(float)

    small, large = table(16), table(256)
    for x in (small, large):
        low, high = icc1_interval(x, reps=500, seed=1)
        assert low <= icc1(x) <= high
    width = [np.subtract(*icc1_interval(x, reps=500, seed=1)[::-1]) for x in (small, large)]
    assert width[1] < width[0] / 2  # 16 times the groups: about a quarter of the width
    # groups that all agree: every resample gives 1
    assert icc1_interval(np.array([[1, 1], [0, 0], [1, 1], [0, 0]]), reps=200) == (1.0, 1.0)


def test_binary_matrix_gives_the_icc_of_the_table_it_summarises():
    rng = np.random.default_rng(3)
    x = (rng.random((12, 8)) < rng.random(12)[:, None]).astype(float)
    rebuilt = binary_matrix(x.mean(axis=1).round(4), 8)
    assert rebuilt.sum(axis=1).tolist() == x.sum(axis=1).tolist()
    assert icc1(rebuilt) == pytest.approx(icc1(x), abs=1e-12)


def test_an_older_file_is_given_the_interval_the_command_would_have_recorded():
    rng = np.random.default_rng(5)
    x = (rng.random((16, 8)) < rng.random(16)[:, None]).astype(float)
    low, high = icc1_interval(x, seed=7)
    older = {"success_per_noise": x.mean(axis=1).round(4).tolist(), "repeats": 8, "seed": 7}
    assert recorded_interval(older) == pytest.approx((low, high), abs=1e-12)
    # a recorded interval is read as written, not recomputed
    assert recorded_interval({**older, "icc_success_ci95": [0.125, 0.5]}) == (0.125, 0.5)
    with pytest.raises(ValueError, match="records neither icc_success_ci95 nor success_per_noise"):
        recorded_interval({"repeats": 8, "seed": 7})


@pytest.mark.parametrize("shape", [(1, 4), (4, 1), (8,)])
def test_icc1_rejects_tables_without_groups_and_repeats(shape):
    with pytest.raises(ValueError, match="groups"):
        icc1(np.zeros(shape))


def test_eta_zero_makes_every_repeat_of_a_noise_identical(tiny_backbone):
    """With deterministic DDIM the repeats of a z_T are the same image, so z_T decides the score."""
    from hero_bench.diffusion.sampler import SamplerConfig
    from hero_bench.tasks import get_task

    task = get_task("anomaly")
    cfg = SamplerConfig(steps=3, eta=0.0, guidance_scale=2.0, batch_size=16)
    r = measure_noise_influence(tiny_backbone, task, cfg, n_noises=4, repeats=3, seed=0)
    assert r["n_noises"] == 4 and r["repeats"] == 3 and r["prompt"] == task.train_prompts[0].text
    # the random tiny model's oracle scores differ between noises but never within one
    assert r["icc_score"] == pytest.approx(1.0)
    # eta = 1 adds fresh noise at every step: the repeats differ and z_T no longer decides
    stochastic = measure_noise_influence(tiny_backbone, task, SamplerConfig(steps=3, eta=1.0, batch_size=16),
                                         n_noises=4, repeats=3, seed=0)
    assert stochastic["icc_score"] < 0.9


def test_noise_groups_feed_z_T_in_at_the_start_step(tiny_backbone):
    """sample_noise_groups(start_step=k) is sample_trajectories(start_step=k) on the repeated noises
    with the measurement's seeds (noises from ``seed``, per-step noise from ``seed + 1``)."""
    import torch

    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories
    from hero_bench.noise_influence import sample_noise_groups
    from hero_bench.tasks import get_task

    task = get_task("anomaly")
    cfg = SamplerConfig(steps=4, eta=1.0, guidance_scale=2.0, batch_size=16)
    groups = sample_noise_groups(tiny_backbone, task, cfg, n_noises=2, repeats=2, seed=5, start_step=2)
    z_T = initial_noise(tiny_backbone, 2, torch.Generator().manual_seed(5)).repeat_interleave(2, dim=0)
    with torch.no_grad():
        expected = sample_trajectories(tiny_backbone, [task.train_prompts[0].text] * 4, z_T, cfg,
                                       torch.Generator().manual_seed(6), start_step=2)
    assert np.array_equal(groups.images, expected.images)
    assert groups.success.shape == groups.score.shape == (2, 2)
    full = sample_noise_groups(tiny_backbone, task, cfg, n_noises=2, repeats=2, seed=5)
    assert not np.array_equal(full.images, groups.images)


def test_design_checks_name_the_problem():
    from hero_bench.errors import ConfigError
    from hero_bench.noise_influence import check_design
    from hero_bench.tasks import get_task

    task = get_task("anomaly")
    check_design(task, 2, 2, len(task.train_prompts) - 1)
    with pytest.raises(ConfigError, match="noises must be at least 2"):
        check_design(task, 1, 8, 0)
    with pytest.raises(ConfigError, match="out of range"):
        check_design(task, 4, 4, len(task.train_prompts))


def test_cli_writes_json_and_rejects_bad_input(tiny_backbone_dir, tmp_path, capsys):
    out = tmp_path / "ni.json"
    args = ["noise-influence", "--tier", "smoke", "--task", "counting", "--backbone", str(tiny_backbone_dir),
            "--noises", "2", "--repeats", "2", "--steps", "2"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == "counting" and result["sampler"]["steps"] == 2
    assert len(result["icc_success_ci95"]) == 2
    assert "ICC(1)" in capsys.readouterr().out
    assert main([*args, "--repeats", "1"]) == 2
    assert "repeats must be at least 2" in capsys.readouterr().err
    assert main([*args, "--prompt-index", "9"]) == 2
    assert "train prompts" in capsys.readouterr().err


def test_cli_records_the_regime_it_measured(tiny_backbone_dir, tmp_path, monkeypatch):
    """`regime-comparison` reads the regime from the JSON: recorded with --regime alone, not when a
    sampler option changed what was measured, and None without --regime."""
    from hero_bench.regimes import REGIMES

    monkeypatch.setitem(REGIMES, "smoke", {"test-regime": ("sampler.eta=0.5",)})
    base = ["noise-influence", "--tier", "smoke", "--task", "counting", "--backbone", str(tiny_backbone_dir),
            "--noises", "2", "--repeats", "2"]
    for extra, expected in ((["--regime", "test-regime"], "test-regime"),
                            (["--regime", "test-regime", "--steps", "2"], None), (["--steps", "2"], None)):
        out = tmp_path / "ni.json"
        assert main([*base, *extra, "--json", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["regime"] == expected, extra
    assert result["sampler"]["eta"] == 1.0


def test_a_continued_chain_is_the_rest_of_the_chain(tiny_backbone):
    """sample_trajectories(start_step=k) from a chain's state after k steps, with the generator where the
    chain's own was after k steps, reproduces the chain's remaining states and image bit for bit."""
    import torch

    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories

    cfg = SamplerConfig(steps=4, eta=1.0, guidance_scale=2.0, batch_size=16)
    prompts = ["a red circle", "two blue squares"]
    z_T = initial_noise(tiny_backbone, 2, torch.Generator().manual_seed(3))
    full = sample_trajectories(tiny_backbone, prompts, z_T, cfg, torch.Generator().manual_seed(4))
    k = 2
    gen = torch.Generator().manual_seed(4)
    for _ in range(k):  # the chain's first k steps each drew one noise tensor of the batch's shape
        torch.randn(z_T.shape, generator=gen)
    rest = sample_trajectories(tiny_backbone, prompts, full.latents[:, k], cfg, gen, start_step=k)
    assert torch.equal(rest.timesteps, full.timesteps[k:])
    assert torch.equal(rest.latents, full.latents[:, k:])
    assert np.array_equal(rest.images, full.images)
    # a different draw after step k gives a different continuation
    other = sample_trajectories(tiny_backbone, prompts, full.latents[:, k], cfg, torch.Generator().manual_seed(9),
                                start_step=k)
    assert not torch.equal(other.latents[:, -1], full.latents[:, -1])


def test_start_step_out_of_range_is_refused(tiny_backbone):
    import torch

    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories
    from hero_bench.errors import ConfigError

    cfg = SamplerConfig(steps=3, eta=1.0, batch_size=16)
    z = initial_noise(tiny_backbone, 1, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"start_step must lie in 0\.\.2"):
        sample_trajectories(tiny_backbone, ["a red circle"], z, cfg, torch.Generator(), start_step=3)


def test_decision_curve_rows_and_refusals(tiny_backbone):
    from hero_bench.diffusion.sampler import SamplerConfig
    from hero_bench.errors import ConfigError
    from hero_bench.noise_influence import measure_decision_curve
    from hero_bench.tasks import get_task

    task = get_task("counting")
    cfg = SamplerConfig(steps=3, eta=1.0, guidance_scale=2.0, batch_size=32)
    r = measure_decision_curve(tiny_backbone, task, cfg, [2, 0, 2], n_chains=4, repeats=3, seed=0)
    assert [row["step"] for row in r["curve"]] == [0, 2]  # sorted, each once
    steps_t = [row["timestep"] for row in r["curve"]]
    assert steps_t[0] > steps_t[1]  # later steps sit at lower noise
    for row in r["curve"]:
        assert 0.0 <= row["success_rate"] <= 1.0
    # the same seed draws the same chains and continuations (json: the random model's ICCs can be NaN)
    again = measure_decision_curve(tiny_backbone, task, cfg, [0, 2], n_chains=4, repeats=3, seed=0)
    assert json.dumps(again["curve"]) == json.dumps(r["curve"])
    with pytest.raises(ConfigError, match="branch step 3 out of range"):
        measure_decision_curve(tiny_backbone, task, cfg, [3], n_chains=4, repeats=3)
    with pytest.raises(ConfigError, match="eta > 0"):
        measure_decision_curve(tiny_backbone, task, SamplerConfig(steps=3, eta=0.0), [0], n_chains=4, repeats=3)


def test_cli_decision_curve(tiny_backbone_dir, tmp_path, capsys):
    out = tmp_path / "curve.json"
    args = ["noise-influence", "--tier", "smoke", "--task", "counting", "--backbone", str(tiny_backbone_dir),
            "--noises", "2", "--repeats", "2", "--steps", "3"]
    assert main([*args, "--branch-steps", "0,2", "--json", str(out)]) == 0
    assert [row["step"] for row in json.loads(out.read_text())["curve"]] == [0, 2]
    assert "decision curve" in capsys.readouterr().out
    assert main([*args, "--branch-steps", "0,x"]) == 2
    assert "comma-separated step numbers" in capsys.readouterr().err
    assert main([*args, "--branch-steps", "5"]) == 2
    assert "branch step 5 out of range" in capsys.readouterr().err
