"""D3PO: group layout, the reference log-probs (previous epoch's model / pretrained), and a smoke run."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from hero_bench.algorithms.d3po import D3PO, D3POConfig, group_layout
from hero_bench.errors import ConfigError
from hero_bench.presets import build_run_config
from hero_bench.runner import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_group_layout():
    assert group_layout(63, 7) == [g for g in range(9) for _ in range(7)]
    assert group_layout(8, 7) == [0] * 8  # a single leftover image joins the last group
    assert group_layout(10, 4) == [0] * 4 + [1] * 4 + [2] * 2  # two leftovers form their own group
    assert group_layout(3, 7) == [0, 0, 0]


def test_d3po_config_validation():
    with pytest.raises(ConfigError, match="group_size"):
        D3POConfig(group_size=1)
    with pytest.raises(ConfigError, match="beta"):
        D3POConfig(beta=0.0)
    with pytest.raises(ConfigError, match="d3po.last_steps must be >= 1"):
        D3POConfig(last_steps=0)
    with pytest.raises(ConfigError, match="d3po.warmup_steps must be >= 0"):
        D3POConfig(warmup_steps=-1)


def _method(tmp_path, backbone_dir, overrides=()):
    from hero_bench.algorithms.base import RunContext
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.lora import add_lora
    from hero_bench.feedback import FeedbackLedger, SimulatedEvaluator
    from hero_bench import runner

    cfg = build_run_config("smoke", "counting", "d3po", backbone=str(backbone_dir), budget=100,
                           overrides=["sampler.steps=3", "d3po.group_size=3", "d3po.groups_per_epoch=2",
                                      "evaluator.d3po_tie_break_by_score=true", *overrides])
    backbone = load_backbone(cfg.backbone)
    params = add_lora(backbone.unet, cfg.lora)
    task = runner.get_task_of_tier(cfg.task, cfg.tier)  # patched by the brightness_task fixture
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", cfg.budget, cfg.run_id)
    ctx = RunContext(settings=cfg.d3po, sampler=cfg.sampler, seed=cfg.seed, backbone=backbone, task=task,
                     evaluator=SimulatedEvaluator(task.oracle_factory(), cfg.evaluator, ledger, cfg.seed),
                     lora_params=params)
    return D3PO(ctx)


def test_groups_share_noise_and_prompt_and_the_previous_reference_is_the_sampling_policy(tmp_path, tiny_backbone_dir,
                                                                                         brightness_task):
    from hero_bench.diffusion.sampler import step_log_prob

    m = _method(tmp_path, tiny_backbone_dir)
    batch = m.sample(1, 6)
    traj = batch.traj
    assert batch.groups == [0, 0, 0, 1, 1, 1]
    assert torch.equal(traj.z_T[0], traj.z_T[2]) and torch.equal(traj.z_T[3], traj.z_T[5])  # copies of one draw
    assert not torch.equal(traj.z_T[0], traj.z_T[3])
    assert len(set(batch.texts[:3])) == 1 and len(set(batch.texts[3:])) == 1
    assert not torch.equal(traj.latents[0, -1], traj.latents[1, -1])  # the per-step noise differs
    # default reference = the start-of-epoch weights, which sampled the batch: the stored log-probs
    # are what a frozen copy would recompute
    with torch.no_grad():
        for s in range(traj.log_probs.shape[1]):
            lp = step_log_prob(m.ctx.backbone, traj.prompt_embeds, traj.negative_embeds, traj.latents[:, s],
                               traj.timesteps[s].expand(6), traj.latents[:, s + 1], m.ctx.sampler)
            # the same 6-row batch through the same kernels as sampling (bitwise equal on every kernel
            # set tried); 1e-5 leaves room for re-rounding x' - mean (~3e-6, see test_sampler) and
            # is far inside D3PO's ratio clamp (±0.1)
            assert torch.allclose(lp, traj.log_probs[:, s], atol=1e-5, rtol=0)

    fb = m.label(1, batch)
    assert fb.pairs and all(batch.groups[a] == batch.groups[b] for a, b in fb.pairs)
    metrics = m.update(1, batch, fb)
    assert metrics["n_pairs"] == len(fb.pairs)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=0.02)  # the policy starts at the reference
    assert metrics["optimizer_steps"] >= 1


def test_a_window_needs_the_pretrained_reference_only_inside_it(tmp_path, tiny_backbone_dir, brightness_task):
    m = _method(tmp_path, tiny_backbone_dir, ["d3po.reference=pretrained", "d3po.last_steps=1"])
    batch = m.sample(1, 6)
    full = m.pretrained_log_probs(batch)
    windowed = m.pretrained_log_probs(batch, last_steps=1)
    assert torch.equal(windowed[:, -1], full[:, -1]) and torch.isnan(windowed[:, :-1]).all()
    metrics = m.update(1, batch, m.label(1, batch))  # trains on the window only: no NaN reaches the loss
    assert math.isfinite(metrics["loss"])


def test_pretrained_reference_ignores_the_adapter(tmp_path, tiny_backbone_dir, brightness_task):
    m = _method(tmp_path, tiny_backbone_dir, ["d3po.reference=pretrained"])
    batch = m.sample(1, 6)
    before = m.pretrained_log_probs(batch)
    # LoRA starts as the identity (B = 0 adds exact zeros); same batch as sampling: see above
    assert torch.allclose(before, batch.traj.log_probs, atol=1e-5)
    with torch.no_grad():  # move the adapter far away: the pretrained reference must not change
        for p in m.ctx.lora_params:
            p.add_(0.5)
    after = m.pretrained_log_probs(batch)
    assert torch.equal(before, after)  # bitwise: adapter disabled, the same base weights on the same batch
    fb = m.label(1, batch)
    metrics = m.update(1, batch, fb)
    assert math.isfinite(metrics["loss"])


def test_d3po_smoke_run_end_to_end(tmp_path, tiny_backbone_dir, brightness_task):
    cfg = build_run_config("smoke", "counting", "d3po", seed=1, budget=11, backbone=str(tiny_backbone_dir),
                           overrides=["evaluator.d3po_tie_break_by_score=true", "eval.n_images=4",
                                      "sampler.steps=3"])
    state = train(cfg, tmp_path, progress=False)
    # groups of 4, 2 per epoch: 8 images, then 3 left -> one group of 3
    assert [r["n_images"] for r in state.train_rows] == [8, 3]
    with open(tmp_path / "train_log.csv", newline="") as fh:
        log = list(csv.DictReader(fh))
    assert all(float(r["n_pairs"]) > 0 and float(r["optimizer_steps"]) >= 1 for r in log)
    assert all(float(r["grad_norm"]) > 0 for r in log)
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    # all C(4,2) + C(4,2) pairs of epoch 1 and C(3,2) of epoch 2 (distinct scores: no ties)
    assert [float(r["n_pairs"]) for r in log] == [12.0, 3.0]
    n_pairs = sum(float(r["n_pairs"]) for r in log)
    assert len(lines) == 11 + n_pairs  # 11 labels + one query per compared pair
    from safetensors.torch import load_file

    w0 = load_file(tmp_path / "lora" / "epoch_0000.safetensors")
    w2 = load_file(tmp_path / "lora" / "epoch_0002.safetensors")
    assert any(not torch.equal(w0[k], w2[k]) for k in w0)
