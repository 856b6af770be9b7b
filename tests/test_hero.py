"""HERO: the per-sample triplet loss, the networks, the noise mixture, the reward, and the best-image
bookkeeping through the real simulated evaluator (released-code bugs of docs/algorithms.md §4.12 not reproduced)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hero_bench.algorithms.base import RunContext
from hero_bench.algorithms.hero import (
    EmbeddingNet,
    Hero,
    ProjectionHead,
    cosine_distance,
    guided_noise,
    reward_auc,
    triplet_loss,
)
from hero_bench.feedback import FeedbackLedger, SimulatedEvaluator
from hero_bench.presets import build_run_config
from oracles.base import OracleResult

from conftest import NET_RTOL, rounding_tol

# float32 cosine of two 32-d embeddings (the smoke preset's embedding_dim): a 32-term dot product and
# two norms, so it can leave [-1, 1] by up to D·eps (measured 1 + 3.6e-7): rewards (1 + cos) / 2 get
# half of that
COS_TOL = rounding_tol(32)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- triplet loss ------------------------------------------------------------------------------


def test_cosine_distance_range():
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    v = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert cosine_distance(u, v).tolist() == pytest.approx([0.0, 0.5, 1.0])  # exact in float32: norms 1 and 2


def test_triplet_loss_is_per_sample_and_differs_from_the_released_dim0_variant():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # per sample: row 1 max(0 − 0.5 + 0.5, 0) = 0; row 2 max(0.5 − (1 − 1/√2)/2 + 0.5, 0)
    row2 = 0.5 - (1 - 1 / math.sqrt(2)) / 2 + 0.5
    # float32 (~8 roundings of values <= 1: <= 8 eps/2 = 5e-7) against a float64 hand value
    assert triplet_loss(a, p, n, 0.5).item() == pytest.approx(row2 / 2, abs=1e-6)
    # released code (cosine along dim 0): feature 0: d(a,p) = d(a,n) = (1 − 1/√2)/2 -> 0.5;
    # feature 1: the anchor column is zero, cos = 0 for both -> 0.5; mean 0.5
    assert triplet_loss(a, p, n, 0.5, across_batch=True).item() == pytest.approx(0.5, abs=1e-6)


def test_triplet_loss_is_zero_when_margin_is_satisfied_and_has_gradients():
    a = torch.tensor([[1.0, 0.0]])
    assert triplet_loss(a, a.clone(), torch.tensor([[-1.0, 0.0]]), 0.5).item() == 0.0  # 0 − 1 + 0.5 < 0
    x = torch.tensor([[0.6, 0.8]], requires_grad=True)
    triplet_loss(a, x, torch.tensor([[0.0, 1.0]]), 0.5).backward()
    assert x.grad.abs().sum() > 0


# -- networks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,flat", [((4, 64, 64), 2048), ((3, 16, 16), 128), ((4, 16, 16), 128), ((4, 5, 5), 32)])
def test_embedding_net_is_sized_from_the_latent(shape, flat):
    net = EmbeddingNet(shape, 24)
    assert net.fc.in_features == flat
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, 24) and (out >= 0).all()  # final ReLU: non-negative embeddings


def test_paper_sized_networks():
    e = EmbeddingNet((4, 64, 64), 2048)
    g = ProjectionHead(2048, (2048, 1024), 512)
    # Linear 2048→2048 dominates E: about 4.2 M parameters (docs/algorithms.md §4.3)
    assert sum(p.numel() for p in e.parameters()) == pytest.approx(4.2e6, rel=0.02)
    assert g(torch.zeros(1, 2048)).shape == (1, 512)


# -- π_HERO ----------------------------------------------------------------------------------------


def test_guided_noise_split_and_sources():
    best = torch.full((1, 2, 2), 7.0)
    goods = torch.stack([torch.full((1, 2, 2), float(v)) for v in (1, 2, 3)])
    z = guided_noise(best, goods, 10, 0.5, 0.0, torch.Generator().manual_seed(0))  # ε = 0: the sources exactly
    assert (z[:5] == 7.0).all()  # first ⌊0.5·10⌋ from the best noise
    assert all(float(z[i, 0, 0, 0]) in (1.0, 2.0, 3.0) and (z[i] == z[i, 0, 0, 0]).all() for i in range(5, 10))
    z7 = guided_noise(best, goods, 7, 0.5, 0.0, torch.Generator().manual_seed(0))
    assert (z7[:3] == 7.0).all() and (z7[3:] != 7.0).all()  # ⌊3.5⌋ = 3
    # no good noise besides the best: everything from the best (the released code crashes here)
    z = guided_noise(best, goods[:0], 6, 0.5, 0.0, torch.Generator())
    assert (z == 7.0).all()
    # β = 0: everything from the good noises; β = 1: everything from the best
    assert (guided_noise(best, goods, 6, 0.0, 0.0, torch.Generator()) != 7.0).all()
    assert (guided_noise(best, goods, 6, 1.0, 0.0, torch.Generator()) == 7.0).all()


def test_guided_noise_keeps_unit_variance_and_is_a_small_perturbation():
    g = torch.Generator().manual_seed(1)
    best = torch.randn(4, 16, 16, generator=g)
    goods = torch.randn(5, 4, 16, 16, generator=g)
    eps = 0.1
    z = guided_noise(best, goods, 512, 0.5, eps, torch.Generator().manual_seed(2))
    # statistical tolerances on seeded draws (sampling error, not round-off: ulp-level differences
    # in the draws between CPUs do not matter): the 512 samples reuse 6 noises of 1024 elements, so
    # var's standard error is a few 0.01
    assert z.var().item() == pytest.approx(1.0, abs=0.05)
    residual = (z[:256] - math.sqrt(1 - eps**2) * best) / eps  # the added N(0, I)
    assert residual.mean().item() == pytest.approx(0.0, abs=0.02)
    assert residual.std().item() == pytest.approx(1.0, abs=0.02)
    # each good-sourced sample is √(1−ε²)·(one good noise) + ε·N(0, I)
    for i in range(256, 266):
        dist = [((z[i] - math.sqrt(1 - eps**2) * goods[j]) / eps).std().item() for j in range(5)]
        assert min(dist) == pytest.approx(1.0, abs=0.15)


# -- the method, through the real evaluator ------------------------------------------------------------


class ScriptedOracle:
    """Scores fixed per epoch call: (success list, score list)."""

    name = "scripted"
    version = "1"

    def __init__(self, plan):
        self.plan = list(plan)
        self.calls = 0

    def __call__(self, images, prompts, metadata):
        success, score = self.plan[self.calls]
        self.calls += 1
        return [OracleResult(bool(s), float(v)) for s, v in zip(success, score)]


MICRO = ["sampler.steps=2", "hero.images_per_epoch=4", "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1",
         "hero.ppo.train_batch_size=4"]


def _hero(tmp_path, backbone_dir, oracle, overrides=()):
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.lora import add_lora
    from hero_bench.tasks import get_task

    cfg = build_run_config("smoke", "anomaly", "hero", backbone=str(backbone_dir), budget=100,
                           overrides=MICRO + list(overrides))
    backbone = load_backbone(cfg.backbone)
    params = add_lora(backbone.unet, cfg.lora)
    ledger = FeedbackLedger(tmp_path / "ledger.jsonl", cfg.budget, cfg.run_id)
    evaluator = SimulatedEvaluator(oracle, cfg.evaluator, ledger, cfg.seed)
    ctx = RunContext(settings=cfg.hero, sampler=cfg.sampler, seed=cfg.seed, backbone=backbone, task=get_task("anomaly"),
                     evaluator=evaluator, lora_params=params)
    return Hero(ctx)


def _epoch(m, epoch):
    batch = m.sample(epoch, 4)
    fb = m.label(epoch, batch)
    metrics = m.update(epoch, batch, fb)
    return batch, fb, metrics


def test_best_image_mapping_noise_bank_and_persistence(tmp_path, tiny_backbone_dir):
    oracle = ScriptedOracle([
        # epoch 1: only image 1 is good -> it is the best; no other positive
        ([0, 1, 0, 0], [0.1, 0.9, 0.2, 0.3]),
        # epoch 2: good = {1, 3}; candidates [old best 0.9, img1 0.5, img3 0.95] -> candidate 2 = BATCH
        # index 3 (the released code would have used batch index 2, a bad image: docs/algorithms.md §4.12.1)
        ([0, 1, 0, 1], [0.0, 0.5, 0.1, 0.95]),
        # epoch 3: nothing beats 0.95 -> the best stays
        ([1, 0, 1, 0], [0.4, 0.1, 0.5, 0.2]),
    ])
    m = _hero(tmp_path, tiny_backbone_dir, oracle)
    b1, fb1, met1 = _epoch(m, 1)
    assert fb1.best_index == 1
    assert torch.equal(m.best_latent, b1.traj.latents[1, -2])  # input of the last denoising step
    assert torch.equal(m.best_noise, b1.traj.z_T[1])
    assert m.good_noises.shape[0] == 0  # the best is not in the positive pool
    assert met1["triplet_loss"] >= 0 and met1["best_changed"] == 1.0

    b2, fb2, _ = _epoch(m, 2)
    # empty good pool: every initial noise of epoch 2 comes from the best noise (§4.12.3 fallback)
    expected = guided_noise(b1.traj.z_T[1], b1.traj.z_T[:0], 4, 0.5, 0.1, m.ctx.generator(2, "noise"))
    assert torch.equal(b2.traj.z_T, expected)
    assert fb2.best_index == 3
    assert torch.equal(m.best_latent, b2.traj.latents[3, -2])
    assert torch.equal(m.best_noise, b2.traj.z_T[3])
    assert m.best.image_id == "e0002-i0003"
    assert torch.equal(m.good_noises, b2.traj.z_T[[1]])  # good images minus the new best

    b3, fb3, met3 = _epoch(m, 3)
    # epoch 3's noise: first ⌊β·4⌋ = 2 from the best (image 3 of epoch 2), the rest from the good pool
    expected = guided_noise(b2.traj.z_T[3], b2.traj.z_T[[1]], 4, 0.5, 0.1, m.ctx.generator(3, "noise"))
    assert torch.equal(b3.traj.z_T, expected)
    assert fb3.best_index is None and met3["best_changed"] == 0.0
    assert torch.equal(m.best_latent, b2.traj.latents[3, -2])  # persists across epochs
    assert torch.equal(m.best_noise, b2.traj.z_T[3])
    assert torch.equal(m.good_noises, b3.traj.z_T[[0, 2]])  # no new best: every good image's noise


def test_rewards_are_similarity_to_best_and_state_round_trips(tmp_path, tiny_backbone_dir):
    oracle = ScriptedOracle([([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.2])] * 2)
    m = _hero(tmp_path, tiny_backbone_dir, oracle)
    batch, fb, _ = _epoch(m, 1)
    feats = batch.traj.latents[:, -2]
    r = m.rewards(feats, fb.good, np.array([2]))
    assert r[0] == pytest.approx(1.0, abs=COS_TOL)  # the best itself (embedded alone: ~NET_RTOL², negligible)
    assert ((r >= 0.5 - COS_TOL) & (r <= 1.0 + COS_TOL)).all()  # non-negative embeddings: r ∈ [0.5, 1]
    with torch.no_grad():
        e = m.embed(feats)
        by_hand = ((1 + torch.nn.functional.cosine_similarity(e, e[:1], dim=-1)) / 2).double().numpy()
    # rewards embed the best latent alone, by_hand takes row 0 of the batch of 4: another batch, so e
    # differs by NET_RTOL (relative) and r = (1 + cos) / 2 by at most half that, plus the cosines'
    # round-off (a reference taken from the wrong latent -- the step's output -- moves r by 2e-4)
    assert r == pytest.approx(by_hand, abs=NET_RTOL / 2 + COS_TOL)
    # state round trip: a fresh method loaded from the state computes the same rewards
    state = m.state_dict()
    m2 = _hero(tmp_path / "b", tiny_backbone_dir, ScriptedOracle([]))
    m2.load_state_dict(state)
    # bitwise: the same weights (loaded from the state) run the same batches
    np.testing.assert_array_equal(m2.rewards(feats, fb.good, np.array([2])), r)
    assert m2.best == m.best and torch.equal(m2.good_noises, m.good_noises)


@pytest.mark.parametrize("mode", ["similarity-to-positives", "binary"])
def test_other_reward_modes(tmp_path, tiny_backbone_dir, mode):
    oracle = ScriptedOracle([([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.2])])
    m = _hero(tmp_path, tiny_backbone_dir, oracle, [f"hero.reward_mode={mode}"])
    batch, fb, metrics = _epoch(m, 1)
    r = m.rewards(batch.traj.latents[:, -2], fb.good, np.array([2]))
    if mode == "binary":
        assert r.tolist() == [1.0, 0.0, 1.0, 0.0]
    else:
        assert ((r >= 0.5 - COS_TOL) & (r <= 1.0 + COS_TOL)).all()
    assert math.isfinite(metrics["loss"])


def test_noise_guidance_off_samples_standard_normal(tmp_path, tiny_backbone_dir):
    oracle = ScriptedOracle([([1, 0, 1, 0], [0.9, 0.1, 0.5, 0.2])] * 2)
    m = _hero(tmp_path, tiny_backbone_dir, oracle, ["hero.noise_guidance=false"])
    _epoch(m, 1)
    b2 = m.sample(2, 4)
    from hero_bench.diffusion.sampler import initial_noise

    assert torch.equal(b2.traj.z_T, initial_noise(m.ctx.backbone, 4, m.ctx.generator(2, "noise")))


def test_reward_auc_counts_good_over_bad_pairs_by_hand():
    good = np.array([True, False, True, False])
    assert reward_auc(np.array([0.9, 0.1, 0.8, 0.2]), good) == 1.0
    assert reward_auc(np.array([0.1, 0.9, 0.2, 0.8]), good) == 0.0
    # pairs (good, bad): (0.9, 0.5) win, (0.9, 0.7) win, (0.5, 0.5) tie, (0.5, 0.7) loss -> 2.5 / 4
    assert reward_auc(np.array([0.9, 0.5, 0.5, 0.7]), good) == pytest.approx(0.625)
    assert math.isnan(reward_auc(np.array([0.3, 0.4]), np.array([True, True])))
