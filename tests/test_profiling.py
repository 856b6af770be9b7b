"""The epoch profiler (hero_bench/profiling.py) on the smoke tier: it accounts for the whole epoch,
attributes time to the components it names, leaves nothing patched, and changes no result."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from hero_bench.algorithms import kernels
from hero_bench.profiling import COMPONENTS, PHASES, Clock, profile_config, profile_epoch, table

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def test_clock_charges_the_innermost_frame():
    clock = Clock()
    with clock.frame(phase="update"):
        with clock.frame(component="embedding_net"), clock.frame(component="unet_backward",
                                                                  unless_inside=("embedding_net",)):
            pass
        with clock.frame(component="unet_backward", unless_inside=("embedding_net",)):
            pass
    clock._charge()
    assert ("update", "unet_backward") in clock.calls and ("update", "embedding_net") in clock.calls
    assert clock.calls[("update", "embedding_net")] == 2  # the backward inside it stayed the embedding net's
    assert set(clock.seconds) <= {("runner", "other"), ("update", "other"), ("update", "embedding_net"),
                                  ("update", "unet_backward")}


def test_profile_of_a_hero_epoch(tiny_backbone_dir, tmp_path):
    backward, step = torch.Tensor.backward, kernels._optimizer_step
    profile = profile_epoch("hero", 8, tier="smoke", task="anomaly", backbone=str(tiny_backbone_dir),
                            reference_repeats=2, run_dir=tmp_path / "profiled")
    assert torch.Tensor.backward is backward and kernels._optimizer_step is step  # everything restored
    for kind in ("cpu", "wall"):
        split = profile[kind]
        assert set(split["components_s"]) == set(COMPONENTS) and set(split["phases_s"]) == set(PHASES)
        assert math.isclose(sum(split["components_share"].values()), 1.0, rel_tol=1e-9)
        assert math.isclose(sum(split["phases_share"].values()), 1.0, rel_tol=1e-9)
    wall = profile["wall"]["components_s"]
    for component in ("unet_forward", "unet_backward", "oracle", "embedding_net", "optimizer", "checkpoint"):
        assert wall[component] > 0, component
    calls = profile["unet_forward_calls"]
    # smoke: 4 steps in one chunk; the evaluation samples the primary and the transfer prompts
    assert calls["sample/no_grad"] == 4 and calls["evaluate/no_grad"] == 8
    assert calls["update/grad"] == profile["reference"]["training_calls"] > 0
    assert profile["reference"]["cpu"]["bare_forward_backward_s"] > 0
    assert "hero (8 img)" in table([profile])


def test_profiling_changes_no_result(tiny_backbone_dir, tmp_path):
    """The instrumented epoch ends with the same LoRA weights, bit for bit, as a plain one."""
    from hero_bench.runner import Run, RunState

    profile_epoch("ddpo", 8, tier="smoke", task="anomaly", backbone=str(tiny_backbone_dir), reference_repeats=1,
                  run_dir=tmp_path / "profiled")
    cfg = profile_config("ddpo", 8, tier="smoke", task="anomaly", backbone=str(tiny_backbone_dir))
    run = Run(cfg, tmp_path / "plain", progress=False)
    run.check_config()
    run.setup()
    state = RunState()
    run.evaluate(state)
    run.run_epoch(state, run.method.batch_size(cfg.budget))
    profiled = torch.load(tmp_path / "profiled" / "checkpoint.pt", weights_only=True)
    plain = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)
    assert profiled["lora"].keys() == plain["lora"].keys()
    assert all(torch.equal(profiled["lora"][k], plain["lora"][k]) for k in plain["lora"])
    assert profiled["eval_rows"][-1]["success_rate"] == plain["eval_rows"][-1]["success_rate"]


def test_profile_config_sets_the_sampler_steps():
    """``--steps`` (scaling against denoising steps) changes the sampler's steps and nothing else."""
    preset = profile_config("ddpo", 8, tier="smoke", task="anomaly")
    longer = profile_config("ddpo", 8, tier="smoke", task="anomaly", steps=7)
    assert preset.sampler.steps == 4 and longer.sampler.steps == 7
    assert replace(longer, sampler=preset.sampler) == preset
