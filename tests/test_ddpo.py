"""DDPO end to end on the smoke tier, and its advantages (per-prompt tracking vs batch)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hero_bench.algorithms.ddpo import DDPO, DDPOConfig
from hero_bench.errors import ConfigError
from hero_bench.presets import build_run_config
from hero_bench.results import EVAL_COLUMNS
from hero_bench.runner import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ddpo_smoke_run_end_to_end(tmp_path, tiny_backbone_dir, brightness_task):
    # train on the continuous score (the reward-model upper bound) to get non-zero advantages
    cfg = build_run_config("smoke", "counting", "ddpo", seed=3, budget=12, backbone=str(tiny_backbone_dir),
                           overrides=["evaluator.ddpo_reward=score", "eval.n_images=4", "sampler.steps=3",
                                      "ddpo.images_per_epoch=5"])
    state = train(cfg, tmp_path, progress=False)
    assert [r["n_images"] for r in state.train_rows] == [5, 5, 2]  # last batch sized to the budget
    assert state.feedback_used == 12
    log = _rows(tmp_path / "train_log.csv")
    for row in log:
        assert float(row["optimizer_steps"]) >= 1
        assert math.isfinite(float(row["loss"])) and float(row["approx_kl"]) >= 0
        assert float(row["grad_norm"]) > 0
    evals = _rows(tmp_path / "eval.csv")
    assert [int(r["epoch"]) for r in evals] == [0, 1, 2, 3]
    assert [int(r["feedback_used"]) for r in evals] == [0, 5, 10, 12]
    assert list(evals[0]) == list(EVAL_COLUMNS)
    assert {r["oracle"] for r in evals} == {"brightness"}
    # the adapter was trained: the last epoch's weights differ from the initial ones
    from safetensors.torch import load_file

    w0 = load_file(tmp_path / "lora" / "epoch_0000.safetensors")
    w3 = load_file(tmp_path / "lora" / "epoch_0003.safetensors")
    assert any(not torch.equal(w0[k], w3[k]) for k in w0)
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 12  # one label per image, no queries


class _Calls(list):
    def __init__(self):
        super().__init__()
        self.kl_weights = []


def _recording_ddpo(monkeypatch, cfg: DDPOConfig, reward_kind: str = "success"):
    """A DDPO whose PPO pass only records the advantages and PPO settings it is given (and, in
    ``calls.kl_weights``, the per-image β of the KL to the pretrained model, None when not given)."""
    calls = _Calls()

    def fake_ppo_update(backbone, traj, advantages, params, optimizer, ppo, *a, kl_weights=None, **k):
        calls.append((advantages.numpy().copy(), ppo))
        calls.kl_weights.append(None if kl_weights is None else kl_weights.numpy().copy())
        return {"loss": 0.0}

    # the PPO pass DDPO and HERO share lives in PPOMethod (algorithms/base.py)
    monkeypatch.setattr("hero_bench.algorithms.base.ppo_update", fake_ppo_update)

    class Ctx:
        lora_params = [torch.nn.Parameter(torch.zeros(1))]
        settings = cfg
        sampler = None
        backbone = None

        class evaluator:  # noqa: N801
            class config:  # noqa: N801
                ddpo_reward = reward_kind

        @staticmethod
        def generator(epoch, purpose):
            return torch.Generator()

    return DDPO(Ctx()), calls


def test_ddpo_advantages_use_the_stat_tracker(monkeypatch):
    m, calls = _recording_ddpo(monkeypatch, DDPOConfig(stat_buffer_size=4, stat_min_count=2))

    class Batch:
        texts = ["a", "a", "b", "b", "b"]
        traj = None

    rewards = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    m.update(1, Batch(), rewards)
    a = calls[-1][0]
    # prompt a: its own buffer [0, 1]: mean 0.5, std 0.5; prompt b: buffer [1, 1, 0] mean 2/3, std 0.4714
    # the tolerances cover the 6-digit literal 0.471405 (sqrt(2)/3 rounded: 5e-7) and the
    # stat tracker's +1e-6 on the std, not round-off (float64, ~1e-16)
    assert a[:2] == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert a[2:] == pytest.approx([(1 - 2 / 3) / 0.471405, (1 - 2 / 3) / 0.471405, (-2 / 3) / 0.471405], abs=1e-4)
    # tracking off: batch standardisation, clipped
    m.cfg = DDPOConfig(per_prompt_stat_tracking=False, ppo=DDPOConfig().ppo)
    m.update(2, Batch(), np.array([0.0, 0.0, 0.0, 0.0, 100.0]))
    a = calls[-1][0]
    assert a == pytest.approx([-0.5, -0.5, -0.5, -0.5, 2.0], abs=1e-5)


class _FourImages:
    texts = ["a", "a", "b", "b"]
    traj = None


@pytest.mark.parametrize("pull", [0.0, 0.5])
def test_an_epoch_without_a_success_pulls_back_to_the_pretrained_model_when_asked(monkeypatch, pull):
    """The all-zero-label state: after an epoch with successes, an epoch without any.  DDPO's code
    gives every image of it a negative advantage (the buffers remember the successes); with
    ``no_success_pull`` the epoch's pass has zero advantages and the KL to the pretrained model."""
    m, calls = _recording_ddpo(monkeypatch, DDPOConfig(stat_buffer_size=8, stat_min_count=2, no_success_pull=pull))
    first = m.update(1, _FourImages(), np.array([1.0, 0.0, 1.0, 0.0]))
    second = m.update(2, _FourImages(), np.zeros(4))
    (adv1, ppo1), (adv2, ppo2) = calls
    # an epoch with a success is DDPO's own update whatever the setting
    assert adv1 == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-5) and ppo1 == m.cfg.ppo
    if pull == 0:
        assert (adv2 < 0).all() and ppo2.kl_to_pretrained == 0.0
        assert "no_success_pull" not in first and "no_success_pull" not in second
    else:
        assert (adv2 == 0).all() and ppo2.kl_to_pretrained == pull
        # nothing else of the PPO settings changes for the pull
        assert ppo2 == replace(m.cfg.ppo, kl_to_pretrained=pull)
        assert first["no_success_pull"] == 0.0 and second["no_success_pull"] == 1.0
    # the stat tracker records the zeros either way: prompt a's buffer is [1, 0, 0, 0]
    assert list(m.tracker.buffers["a"]) == [1.0, 0.0, 0.0, 0.0]


def test_the_pull_needs_binary_labels(monkeypatch):
    """With the oracle's continuous score as reward, "no success" has no meaning: no pull."""
    m, calls = _recording_ddpo(monkeypatch, DDPOConfig(stat_buffer_size=8, stat_min_count=2, no_success_pull=0.5),
                               reward_kind="score")
    m.update(1, _FourImages(), np.array([0.0, -1.0, 0.0, -2.0]))
    assert calls[0][1].kl_to_pretrained == 0.0 and (calls[0][0] != 0).any()


@pytest.mark.parametrize("scope", ["epoch", "prompt"])
def test_a_prompt_without_a_success_is_pulled_back_alone_when_the_scope_is_prompt(monkeypatch, scope):
    """Prompt "b" succeeds in the first epoch and not in the second, while "a" succeeds in both.
    DDPO's code gives b's images of the second epoch negative advantages (its buffer remembers the
    success) and nothing leads them back; with ``pull_scope`` "prompt" they get advantage 0 and the
    pull's β, and a's images keep DDPO's update unchanged."""
    m, calls = _recording_ddpo(monkeypatch, DDPOConfig(stat_buffer_size=8, stat_min_count=2, no_success_pull=0.5,
                                                       pull_scope=scope))
    m.update(1, _FourImages(), np.array([1.0, 0.0, 1.0, 0.0]))
    second = m.update(2, _FourImages(), np.array([1.0, 0.0, 0.0, 0.0]))
    (_, _), (adv2, ppo2) = calls
    # prompt a's buffer [1, 0, 1, 0]: mean 0.5, std 0.5, whatever the scope
    assert adv2[:2] == pytest.approx([1.0, -1.0], abs=1e-5)
    assert ppo2 == m.cfg.ppo  # the pass's own settings are the method's: no epoch-wide KL
    if scope == "epoch":
        assert (adv2[2:] < 0).all() and calls.kl_weights[1] is None
        assert second["no_success_pull"] == 0.0
    else:
        assert (adv2[2:] == 0).all()
        assert calls.kl_weights[1] == pytest.approx([0.0, 0.0, 0.5, 0.5])
        assert second["no_success_pull"] == 0.5  # the share of the epoch's images that pulled
    # the first epoch, in which both prompts succeeded, is DDPO's own update under both scopes
    assert calls.kl_weights[0] is None


def test_an_epoch_without_any_success_is_pulled_alike_under_both_scopes(monkeypatch):
    runs = {}
    for scope in ("epoch", "prompt"):
        m, calls = _recording_ddpo(monkeypatch, DDPOConfig(stat_buffer_size=8, stat_min_count=2, no_success_pull=0.5,
                                                           pull_scope=scope))
        m.update(1, _FourImages(), np.zeros(4))
        runs[scope] = (calls[0][0], calls[0][1], calls.kl_weights[0])
    for adv, ppo, weights in runs.values():
        assert (adv == 0).all() and ppo.kl_to_pretrained == 0.5 and weights is None
    assert runs["epoch"][1] == runs["prompt"][1]


def test_ddpo_config_validation():
    with pytest.raises(ConfigError, match="no_success_pull must be >= 0"):
        DDPOConfig(no_success_pull=-0.1)
    with pytest.raises(ConfigError, match="pull_scope must be one of epoch, prompt, got 'prompts'"):
        DDPOConfig(pull_scope="prompts")
    with pytest.raises(ConfigError, match="images_per_epoch"):
        DDPOConfig(images_per_epoch=0)
