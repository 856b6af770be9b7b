"""The shared kernels: PPO-clip and DPO losses on hand-computed examples, advantages, the stat
tracker, and the PPO/DPO update passes (on a fake one-parameter policy, so no UNet is needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from hero_bench.algorithms import kernels
from hero_bench.algorithms.kernels import (
    PerPromptStatTracker,
    PPOConfig,
    clip_advantages,
    dpo_step_loss,
    ppo_clip_loss,
    ppo_optimizer_steps,
    standardize,
    trained_timesteps,
)
from hero_bench.diffusion.sampler import SamplerConfig, Trajectory
from hero_bench.errors import ConfigError

# -- PPO-clip ------------------------------------------------------------------------------------


def test_ppo_clip_loss_matches_hand_computation():
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1])
    adv = torch.tensor([1.0, 1.0, -2.0, -2.0, 1.0])
    old = torch.tensor([0.3, -0.2, 0.0, 1.0, 0.5])
    new = (old + torch.log(ratios)).requires_grad_(True)
    loss, info = ppo_clip_loss(new, old, adv, clip_range=0.2)
    # per sample max(-A·ρ, -A·clip(ρ, 0.8, 1.2)):
    #   ρ=1.5,A=1: max(-1.5,-1.2) = -1.2    ρ=0.5,A=1: max(-0.5,-0.8) = -0.5
    #   ρ=1.5,A=-2: max(3.0, 2.4) = 3.0     ρ=0.5,A=-2: max(1.0, 1.6) = 1.6    ρ=1.1,A=1: -1.1
    # float32 against a float64 hand value: terms |A·ρ| <= 3 with ~3 roundings each (log, exp, product)
    # and a 5-term sum, divided by 5: <= ~6e-7 worst (measured 4.5e-8)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 3.0 + 1.6 - 1.1) / 5, abs=1e-6)
    logs = [math.log(r) for r in (1.5, 0.5, 1.5, 0.5, 1.1)]
    assert info["approx_kl"].item() == pytest.approx(0.5 * sum(x * x for x in logs) / 5, rel=1e-5)
    assert info["clipfrac"].item() == pytest.approx(4 / 5)
    loss.backward()
    # d/dlogp of -A·ρ is -A·ρ (ρ = exp(logp - old)); clipped branches have no gradient
    expected = torch.tensor([0.0, -0.5, 3.0, 0.0, -1.1]) / 5
    assert torch.allclose(new.grad, expected, atol=1e-6)


def test_ppo_clip_loss_at_ratio_one_is_minus_mean_advantage():
    lp = torch.tensor([0.1, -0.4, 2.0])
    loss, info = ppo_clip_loss(lp, lp.clone(), torch.tensor([1.0, 2.0, -6.0]), 1e-4)
    assert loss.item() == pytest.approx(1.0)
    assert info["approx_kl"].item() == 0.0 and info["clipfrac"].item() == 0.0


# -- DPO ------------------------------------------------------------------------------------------


def test_dpo_step_loss_matches_hand_computation_and_clamps_gradients():
    beta, eps = 0.1, 0.1
    ref = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.5, 0.5]])
    delta = torch.tensor([[0.05, -0.2], [0.3, 0.0], [0.01, 0.02]])  # log π_θ − log π_ref
    lp = (ref + delta).requires_grad_(True)
    signs = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])  # image 0 / image 1 preferred / tie
    loss, info = dpo_step_loss(lp, ref, signs, beta, eps)

    # pair 1: r_w = e^0.05 (inside [0.9, 1.1]), r_l = e^-0.2 = 0.819 -> clamped to 0.9
    z1 = beta * (0.05 - math.log(0.9))
    # pair 2: image 1 preferred; r_0 = e^0.3 -> clamped to 1.1, r_1 = 1
    z2 = beta * (-math.log(1.1) + 0.0)
    # tie: constant log 2
    expected = (math.log1p(math.exp(-z1)) + math.log1p(math.exp(-z2)) + math.log(2)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert info["pair_accuracy"].item() == pytest.approx(1 / 3)  # only pair 1 has a positive logit
    assert info["clampfrac"].item() == pytest.approx(2 / 6)
    loss.backward()
    g = lp.grad
    # clamped ratios have no gradient; the tie has none; the in-range preferred image is pushed up
    assert g[0, 1] == 0 and g[1, 0] == 0 and torch.all(g[2] == 0)
    sig = 1 / (1 + math.exp(-z1))
    assert g[0, 0].item() == pytest.approx(-(1 - sig) * beta / 3, rel=1e-5)
    assert g[1, 1].item() < 0  # image 1 preferred in pair 2: increasing its log-prob lowers the loss


def test_dpo_loss_is_log2_when_policy_equals_reference():
    lp = torch.randn(4, 2)
    loss, _ = dpo_step_loss(lp, lp.clone(), torch.tensor([[1.0, -1.0]]).expand(4, 2), 0.1, 0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)  # float32 log 2 is within eps/2·0.69 = 4e-8


# -- advantages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_ppo_clip_loss_stays_finite_when_the_log_ratio_overflows_exp(advantage):
    # DDIM near eta 0: a per-step std of 5e-4 turns a small weight change into log-ratios of
    # hundreds; exp overflows float32 above ~88.7 and its backward made the gradient NaN
    log_prob = torch.tensor([200.0, 0.0005, -300.0], requires_grad=True)
    loss, info = ppo_clip_loss(log_prob, torch.zeros(3), torch.full((3,), advantage), clip_range=1e-3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(log_prob.grad).all()
    # the sample inside the clip range keeps its gradient -A·ρ/3; the overflowing one has none
    assert log_prob.grad[1].item() == pytest.approx(-advantage * math.exp(0.0005) / 3, rel=1e-5)
    assert log_prob.grad[0].item() == 0.0


def test_dpo_step_loss_stays_finite_when_the_log_ratio_overflows_exp():
    log_prob = torch.tensor([[200.0, -1e-4]], requires_grad=True)
    loss, _ = dpo_step_loss(log_prob, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), beta=0.1, clamp_eps=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(log_prob.grad).all()
    assert log_prob.grad[0, 0].item() == 0.0 and log_prob.grad[0, 1].item() != 0.0


def test_a_non_finite_gradient_is_dropped_not_stepped():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], lr=0.1)
    weight.grad = torch.tensor([1.0, float("nan"), 0.0])
    assert math.isnan(kernels._optimizer_step([weight], optimizer, max_grad_norm=1.0))
    assert weight.grad is None and torch.equal(weight.detach(), torch.ones(3))
    weight.grad = torch.tensor([1.0, 0.0, 0.0])  # a finite one still steps
    assert kernels._optimizer_step([weight], optimizer, max_grad_norm=1.0) == pytest.approx(1.0)
    assert weight.detach()[0].item() < 1.0


def test_standardize_and_clip():
    a = standardize(np.array([1.0, 2.0, 3.0]))
    # float64: a few roundings (~1e-16 relative) against rel 1e-7
    assert a == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)], rel=1e-7)  # population std sqrt(2/3)
    assert standardize(np.array([4.0, 4.0])) == pytest.approx([0.0, 0.0])  # std 0: no division by zero
    assert clip_advantages(np.array([-7.0, 0.5, 9.0]), 5.0).tolist() == [-5.0, 0.5, 5.0]


def test_per_prompt_stat_tracker_hand_values():
    t = PerPromptStatTracker(buffer_size=3, min_count=2)
    adv = t.update(["a", "a", "b"], np.array([1.0, 3.0, 5.0]))
    # "a": buffer [1, 3] has min_count values -> its own mean 2, std 1
    assert adv[:2] == pytest.approx([-1 / (1 + 1e-6), 1 / (1 + 1e-6)])
    # "b": buffer [5] is short -> the whole epoch's mean 3 and std sqrt(8/3)
    assert adv[2] == pytest.approx(2 / (math.sqrt(8 / 3) + 1e-6))
    adv2 = t.update(["a", "a"], np.array([5.0, 7.0]))
    # buffer of "a" keeps the last 3 values [3, 5, 7]: mean 5, std sqrt(8/3)
    assert adv2 == pytest.approx([0.0, 2 / (math.sqrt(8 / 3) + 1e-6)])
    restored = PerPromptStatTracker(3, 2)
    restored.load_state_dict(t.state_dict())
    assert restored.update(["a"], np.array([9.0])) == pytest.approx(t.update(["a"], np.array([9.0])))


def test_trained_timesteps_and_step_counts():
    assert trained_timesteps(50, 1.0) == 50
    assert trained_timesteps(20, 0.25) == 5
    assert trained_timesteps(50, 1.0, per_sample=5) == 5
    assert trained_timesteps(4, 0.1) == 1  # never zero
    # HERO's Table 7 setting: 64 samples, batch 2, grad-accum 4 -> 8 optimizer steps per epoch (docs/algorithms.md §4.6)
    assert ppo_optimizer_steps(64, PPOConfig(train_batch_size=2, grad_accum_steps=4)) == 8
    assert ppo_optimizer_steps(256, PPOConfig(train_batch_size=4, grad_accum_steps=16)) == 4
    assert ppo_optimizer_steps(10, PPOConfig(train_batch_size=4, grad_accum_steps=2)) == 2  # 3 chunks: 2 + 1


@pytest.mark.parametrize("key,value", [("lr", 0.0), ("train_batch_size", 0), ("timestep_fraction", 1.5),
                                       ("timesteps_per_sample", 0), ("clip_range", -1.0),
                                       ("target_kl", 0.0), ("last_steps", 0), ("warmup_steps", -1)])
def test_ppo_config_rejects_bad_values(key, value):
    with pytest.raises(ConfigError, match=key):
        PPOConfig(**{key: value})


def test_warmup_ramps_the_learning_rate_linearly_then_holds_it():
    """Step s (from 0) runs at lr·min(1, (s+1)/N): lr/4, lr/2, 3lr/4, then lr from step 3 on; each
    first Adam step moves a weight by about its rate (sign-like), so the moves show the ramp."""
    w = torch.nn.Parameter(torch.zeros(1))
    opt = kernels.make_adamw([w], 0.08, 0.0)
    assert kernels.add_warmup(opt, 4) is not None
    rates = []
    for _ in range(6):
        rates.append(opt.param_groups[0]["lr"])
        w.grad = torch.ones(1)
        opt.step()
    assert rates == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.08, 0.08])
    # a constant gradient: every Adam step moves w by its rate (up to eps), so w sums the ramp
    assert float(w.detach()) == pytest.approx(-sum(rates), rel=1e-6)


def test_no_warmup_leaves_the_optimizer_untouched():
    opt = kernels.make_adamw([torch.nn.Parameter(torch.zeros(1))], 0.08, 0.0)
    assert kernels.add_warmup(opt, 0) is None
    assert opt.param_groups[0]["lr"] == 0.08


# -- the update passes on a fake one-parameter policy ---------------------------------------------------


@dataclass
class _FakeBackbone:
    w: torch.nn.Parameter
    device: torch.device = torch.device("cpu")


def _fake_step_log_prob(calls):
    """log p = w · mean(next_latent): differentiable in the single parameter w; records each call."""

    def fn(backbone, prompt_embeds, negative_embeds, latents_t, timesteps_t, next_latents, cfg):
        calls.append((prompt_embeds[:, 0, 0].long().tolist(), torch.as_tensor(timesteps_t).tolist()))
        return backbone.w * next_latents.flatten(1).mean(1)

    return fn


def _fake_traj(n: int, steps: int, w0: float, seed: int = 0) -> Trajectory:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn((n, steps + 1, 1, 2, 2), generator=g)
    return Trajectory(
        prompts=[f"p{i}" for i in range(n)],
        prompt_embeds=torch.arange(n, dtype=torch.float32).reshape(n, 1, 1),  # carries the sample index
        negative_embeds=torch.zeros(1, 1, 1),
        z_T=latents[:, 0].clone(),
        latents=latents,
        timesteps=torch.arange(steps - 1, -1, -1) * 10,
        log_probs=w0 * latents[:, 1:].flatten(2).mean(2),  # the policy that sampled = the initial w
        images=np.zeros((n, 2, 2, 3), dtype=np.uint8),
    )


def test_ppo_update_trains_k_distinct_timesteps_per_sample_in_chunks(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
    n, steps = 6, 5
    w = torch.nn.Parameter(torch.tensor(0.7))
    traj = _fake_traj(n, steps, 0.7)
    cfg = PPOConfig(lr=1e-2, train_batch_size=4, grad_accum_steps=1, timesteps_per_sample=3)
    opt = kernels.make_adamw([w], cfg.lr, cfg.weight_decay)
    out = kernels.ppo_update(_FakeBackbone(w), traj, torch.ones(n), [w], opt, cfg, SamplerConfig(steps=steps),
                             torch.Generator().manual_seed(1))
    seen: dict[int, list[int]] = {}
    for samples, ts in calls:
        assert len(samples) <= 4
        for s, t in zip(samples, ts):
            seen.setdefault(s, []).append(t)
    assert sorted(seen) == list(range(n))  # every sample trained
    for ts in seen.values():
        assert len(ts) == 3 and len(set(ts)) == 3  # K distinct timesteps each
    # per-sample permutations: the samples do not all train the same timesteps
    assert len({tuple(sorted(ts)) for ts in seen.values()}) > 1
    assert out["optimizer_steps"] == 2 == ppo_optimizer_steps(n, cfg)  # chunks of 4 and 2
    assert out["clipfrac"] >= 0 and math.isfinite(out["loss"])


def test_ppo_update_trains_only_the_last_steps_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
    n, steps = 6, 5
    traj = _fake_traj(n, steps, 0.7)  # step index i has timestep (steps - 1 - i) * 10
    w = torch.nn.Parameter(torch.tensor(0.7))
    cfg = PPOConfig(lr=1e-2, train_batch_size=3, timestep_fraction=1.0, last_steps=2)
    kernels.ppo_update(_FakeBackbone(w), traj, torch.ones(n), [w], kernels.make_adamw([w], cfg.lr, 0.0), cfg,
                       SamplerConfig(steps=steps), torch.Generator().manual_seed(1))
    seen: dict[int, list[int]] = {}
    for samples, ts in calls:
        for s, t in zip(samples, ts):
            seen.setdefault(s, []).append(t)
    # the fraction applies to the window: every sample trains both of the chain's last two steps, nothing else
    assert sorted(seen) == list(range(n)) and all(sorted(ts) == [0, 10] for ts in seen.values())


def test_ppo_update_leaves_the_final_step_out_when_asked(monkeypatch):
    n, steps = 6, 5
    seen: dict[bool, dict[int, list[int]]] = {}
    for final in (True, False):
        calls = []
        monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
        traj = _fake_traj(n, steps, 0.7)  # step index i has timestep (steps - 1 - i) * 10: the final step is t = 0
        w = torch.nn.Parameter(torch.tensor(0.7))
        cfg = PPOConfig(lr=1e-2, train_batch_size=3, timestep_fraction=1.0, last_steps=2, train_final_step=final)
        kernels.ppo_update(_FakeBackbone(w), traj, torch.ones(n), [w], kernels.make_adamw([w], cfg.lr, 0.0), cfg,
                           SamplerConfig(steps=steps), torch.Generator().manual_seed(1))
        seen[final] = {}
        for samples, ts in calls:
            for s, t in zip(samples, ts):
                seen[final].setdefault(s, []).append(t)
    assert all(sorted(ts) == [0, 10] for ts in seen[True].values())
    # the window of the last two trainable steps now ends one step before the chain does
    assert sorted(seen[False]) == list(range(n)) and all(sorted(ts) == [10, 20] for ts in seen[False].values())


def test_approx_kl_is_also_logged_without_the_chains_final_step(monkeypatch):
    """A policy whose log-prob moves at the chain's final step only (timestep 0 here: its std is
    tiny on a real sampler): ``approx_kl`` sees the move, ``approx_kl_excl_final`` is exactly 0."""

    def fn(backbone, prompt_embeds, negative_embeds, latents_t, timesteps_t, next_latents, cfg):
        final = (torch.as_tensor(timesteps_t) == 0).float()
        return traj_log_probs_at(next_latents) + final * (backbone.w - 0.7) * 100.0

    n, steps = 6, 5
    traj = _fake_traj(n, steps, 0.7)
    # the stored log-prob of the step a next-latent came from: the fake policy's value at w = 0.7
    traj_log_probs_at = lambda nxt: 0.7 * nxt.flatten(1).mean(1)  # noqa: E731
    monkeypatch.setattr(kernels, "step_log_prob", fn)
    w = torch.nn.Parameter(torch.tensor(0.7))
    cfg = PPOConfig(lr=1e-2, train_batch_size=3, timestep_fraction=1.0, inner_epochs=2)
    out = kernels.ppo_update(_FakeBackbone(w), traj, torch.tensor([1.0, -1.0] * 3), [w],
                             kernels.make_adamw([w], cfg.lr, 0.0), cfg, SamplerConfig(steps=steps),
                             torch.Generator().manual_seed(1))
    assert out["approx_kl"] > 0
    assert out["approx_kl_excl_final"] == 0.0


def test_a_window_of_the_whole_chain_is_the_default_bit_for_bit(monkeypatch):
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob([]))
    results = []
    for last in (None, 5, 50):
        w = torch.nn.Parameter(torch.tensor(0.5))
        cfg = PPOConfig(lr=0.05, train_batch_size=3, clip_range=0.2, timesteps_per_sample=2, last_steps=last)
        out = kernels.ppo_update(_FakeBackbone(w), _fake_traj(8, 5, 0.5), torch.linspace(-1, 1, 8), [w],
                                 kernels.make_adamw([w], cfg.lr, cfg.weight_decay), cfg, SamplerConfig(steps=5),
                                 torch.Generator().manual_seed(7))
        results.append((w.item(), out))
    assert results[0] == results[1] == results[2]


def _dpo_run(monkeypatch, last_steps, steps=5, fraction=1.0):
    calls = []
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
    w = torch.nn.Parameter(torch.tensor(0.2))
    traj = _fake_traj(6, steps, 0.2)
    pairs = torch.tensor([[0, 1], [2, 1], [3, 4], [5, 4]])
    out = kernels.dpo_update(_FakeBackbone(w), traj, pairs, traj.log_probs, [w], kernels.make_adamw([w], 0.05, 0.0),
                             beta=0.1, clamp_eps=0.5, train_batch_size=2, grad_accum_steps=1,
                             timestep_fraction=fraction, max_grad_norm=1.0, sampler=SamplerConfig(steps=steps),
                             generator=torch.Generator().manual_seed(3), last_steps=last_steps)
    return w.item(), out, calls


def test_dpo_update_trains_only_the_last_steps_when_asked(monkeypatch):
    _, _, calls = _dpo_run(monkeypatch, last_steps=2)
    # timestep (steps - 1 - i) * 10 at step i: the last two steps are t = 10 and t = 0, both trained
    # (the fraction applies to the window) by both chunks of pairs, and no other step
    assert sorted(t for _, ts in calls for t in set(ts)) == [0, 0, 10, 10]
    _, _, half = _dpo_run(monkeypatch, last_steps=4, fraction=0.5)
    assert len(half) == 4 and all(ts[0] in (0, 10, 20, 30) for _, ts in half)  # 2 of the last 4 per chunk


def test_dpo_window_of_the_whole_chain_is_the_default_bit_for_bit(monkeypatch):
    runs = [_dpo_run(monkeypatch, last, fraction=0.6)[:2] for last in (None, 5, 50)]
    assert runs[0] == runs[1] == runs[2]


def test_ppo_update_accumulates_the_mean_gradient(monkeypatch):
    """One optimizer step over every chunk and all timesteps: the gradient is the mean of −A·∂log p."""
    calls = []
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
    n, steps = 6, 4
    w = torch.nn.Parameter(torch.tensor(0.3))
    traj = _fake_traj(n, steps, 0.3, seed=3)
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0, -1.0])
    cfg = PPOConfig(train_batch_size=2, grad_accum_steps=3, timestep_fraction=1.0, max_grad_norm=1e9)
    grads = []
    opt = kernels.make_adamw([w], cfg.lr, cfg.weight_decay)
    original_step = opt.step

    def spy_step(*a, **k):
        grads.append(w.grad.item())
        return original_step(*a, **k)

    opt.step = spy_step
    kernels.ppo_update(_FakeBackbone(w), traj, adv, [w], opt, cfg, SamplerConfig(steps=steps),
                       torch.Generator().manual_seed(0))
    # ratio = 1 inside the clip range: ∂L/∂w = −(1/(N·K)) Σ_i A_i Σ_t mean(x_{i,t+1})
    x = traj.latents[:, 1:].flatten(2).mean(2)  # [N, steps]
    expected = -(adv[:, None] * x).sum().item() / (n * steps)
    assert len(grads) == 1
    # float32 sums of N·K = 24 terms in another order than `expected`: <= 24·eps ≈ 3e-6 relative to
    # the terms' size (measured 7e-8 relative)
    assert grads[0] == pytest.approx(expected, rel=1e-5)


def test_ppo_update_is_deterministic_given_the_generator(monkeypatch):
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob([]))
    results = []
    for _ in range(2):
        w = torch.nn.Parameter(torch.tensor(0.5))
        traj = _fake_traj(8, 5, 0.5)
        cfg = PPOConfig(lr=0.05, train_batch_size=3, grad_accum_steps=2, clip_range=0.2, timesteps_per_sample=2)
        opt = kernels.make_adamw([w], cfg.lr, cfg.weight_decay)
        out = kernels.ppo_update(_FakeBackbone(w), traj, torch.linspace(-1, 1, 8), [w], opt, cfg,
                                 SamplerConfig(steps=5), torch.Generator().manual_seed(7))
        results.append((w.item(), out))
    assert results[0] == results[1]


def _kl_run(monkeypatch, target_kl):
    """A pass whose every step moves log p far (lr 0.5 on the fake policy): 4 groups x 2 inner epochs."""
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob([]))
    w = torch.nn.Parameter(torch.tensor(0.5))
    traj = _fake_traj(8, 4, 0.5, seed=5)
    cfg = PPOConfig(lr=0.5, train_batch_size=2, grad_accum_steps=1, clip_range=0.2, timestep_fraction=1.0,
                    inner_epochs=2, target_kl=target_kl)
    opt = kernels.make_adamw([w], cfg.lr, cfg.weight_decay)
    steps_taken = []
    out = kernels.ppo_update(_FakeBackbone(w), traj, torch.linspace(-1, 1, 8), [w], opt, cfg,
                             SamplerConfig(steps=4), torch.Generator().manual_seed(2),
                             on_step=lambda means: steps_taken.append(w.item()))
    return w.item(), out, steps_taken


def test_ppo_update_stops_once_the_policy_passes_target_kl(monkeypatch):
    w_free, out_free, _ = _kl_run(monkeypatch, None)
    assert out_free["optimizer_steps"] == 8 and "kl_stop" not in out_free
    w_stop, out_stop, taken = _kl_run(monkeypatch, 1e-6)
    # the first group is measured at the sampling policy (kl 0) and stepped; the second measures
    # the moved policy, is not stepped, and ends the pass (both inner epochs)
    assert out_stop["optimizer_steps"] == 1 and out_stop["kl_stop"] == 1.0
    assert w_stop == taken[-1] != w_free  # no step after the stop: w is where the one step left it
    w_loose, out_loose, _ = _kl_run(monkeypatch, 1e9)
    assert out_loose["optimizer_steps"] == 8 and out_loose["kl_stop"] == 0.0 and w_loose == w_free


def test_dpo_update_uses_each_pair_and_both_images_at_the_same_timesteps(monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "step_log_prob", _fake_step_log_prob(calls))
    n, steps = 6, 4
    w = torch.nn.Parameter(torch.tensor(0.2))
    traj = _fake_traj(n, steps, 0.2)
    pairs = torch.tensor([[0, 1], [2, 1], [3, 4], [5, 4]])
    opt = kernels.make_adamw([w], 1e-3, 0.0)
    out = kernels.dpo_update(_FakeBackbone(w), traj, pairs, traj.log_probs, [w], opt, beta=0.1, clamp_eps=0.1,
                             train_batch_size=2, grad_accum_steps=1, timestep_fraction=1.0, max_grad_norm=1.0,
                             sampler=SamplerConfig(steps=steps), generator=torch.Generator().manual_seed(0))
    assert out["optimizer_steps"] == 2  # 4 pairs in chunks of 2
    # every call evaluates the chunk's distinct images once, at one shared timestep
    assert all(len(set(ts)) == 1 and len(set(s)) == len(s) for s, ts in calls)
    assert len(calls) == 2 * steps
    # at the first forward the policy equals the reference: loss log 2
    assert out["loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert kernels.dpo_update(_FakeBackbone(w), traj, torch.empty(0, 2, dtype=torch.long), traj.log_probs, [w], opt,
                              beta=0.1, clamp_eps=0.1, train_batch_size=1, grad_accum_steps=1, timestep_fraction=1.0,
                              max_grad_norm=1.0, sampler=SamplerConfig(steps=steps),
                              generator=torch.Generator())["optimizer_steps"] == 0


# -- the KL penalty to the pretrained model, on the tiny UNet ---------------------------------------


def _kl_to_pretrained(bb, traj, cfg: SamplerConfig) -> float:
    """Mean step KL of the adapted policy to the pretrained one over every stored step of ``traj``."""
    from hero_bench.diffusion.ddim import step_kl
    from hero_bench.diffusion.lora import disable_lora
    from hero_bench.diffusion.sampler import step_distribution

    total = 0.0
    with torch.no_grad():
        for i in range(cfg.steps):
            args = (bb, traj.prompt_embeds, traj.negative_embeds, traj.latents[:, i],
                    traj.timesteps[i].expand(len(traj)), cfg)
            mean, std = step_distribution(*args)
            with disable_lora(bb.unet):
                pretrained, _ = step_distribution(*args)
            total += step_kl(mean, pretrained, std).mean().item()
    return total / cfg.steps


def _drifted_adapter_and_batch(tiny_backbone_dir):
    """The tiny UNet with an adapter far from the pretrained model (B is 0 after add_lora, so every
    weight is moved), that adapter's weights, a 4-step sampler and a batch of 4 trajectories."""
    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.lora import add_lora
    from hero_bench.diffusion.sampler import initial_noise, sample_trajectories

    bb = load_backbone(str(tiny_backbone_dir))
    params = add_lora(bb.unet, seed=0)
    start = []
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
            start.append(p.detach().clone())
    sampler = SamplerConfig(steps=4, guidance_scale=5.0)
    g = torch.Generator().manual_seed(2)
    prompts = ["a red circle", "two blue squares", "a green triangle", "a red circle"]
    traj = sample_trajectories(bb, prompts, initial_noise(bb, 4, g), sampler, g)
    return bb, params, start, sampler, traj


def test_kl_to_pretrained_pulls_the_adapters_back_when_the_advantages_vanish(tiny_backbone_dir):
    """The absorbing state of a collapsed run: every label 0, so every advantage 0.  Without the
    penalty PPO has no gradient and the adapters stay where they are; with it they move back
    towards the pretrained model."""
    bb, params, start, sampler, traj = _drifted_adapter_and_batch(tiny_backbone_dir)
    before = _kl_to_pretrained(bb, traj, sampler)
    assert before > 0

    after = {}
    for beta in (0.0, 0.1):
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        cfg = PPOConfig(lr=1e-2, train_batch_size=4, inner_epochs=4, timestep_fraction=1.0, kl_to_pretrained=beta)
        out = kernels.ppo_update(bb, traj, torch.zeros(4), params, kernels.make_adamw(params, cfg.lr, 0.0), cfg,
                                 sampler, torch.Generator().manual_seed(3))
        assert ("kl_pretrained" in out) == (beta > 0)  # logged only when the penalty is on
        after[beta] = _kl_to_pretrained(bb, traj, sampler)
    # zero advantages and no penalty: zero gradients, so Adam (weight decay 0) leaves every weight
    assert after[0.0] == pytest.approx(before, rel=1e-6)
    # 4 Adam steps of lr 1e-2 against adapter weights of size 0.05 undo a large part of the drift
    # (measured: the KL falls to about a fifth)
    assert after[0.1] < 0.5 * before


def test_per_sample_kl_weights_are_the_scalar_penalty_when_equal_and_no_penalty_when_zero(tiny_backbone_dir):
    """``kl_weights`` (DDPO's pull of one prompt): β for every sample trains the adapters as
    ``kl_to_pretrained`` = β does, up to the order of a float32 mean; 0 for every sample is no
    penalty at all, bit for bit (no pretrained forward, the same random draws); β for some samples
    moves the adapters away from the unpenalised run."""
    bb, params, start, sampler, traj = _drifted_adapter_and_batch(tiny_backbone_dir)

    def train(beta: float, weights):
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        cfg = PPOConfig(lr=1e-2, train_batch_size=2, inner_epochs=2, timestep_fraction=1.0, kl_to_pretrained=beta)
        out = kernels.ppo_update(bb, traj, torch.tensor([1.0, -1.0, 0.5, -0.5]), params,
                                 kernels.make_adamw(params, cfg.lr, 0.0), cfg, sampler,
                                 torch.Generator().manual_seed(3), kl_weights=weights)
        return out, [p.detach().clone() for p in params]

    _, plain = train(0.0, None)
    out_zero, zero = train(0.0, torch.zeros(4))
    assert "kl_pretrained" not in out_zero
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))
    _, scalar = train(0.1, None)
    _, weighted = train(0.0, torch.full((4,), 0.1))
    # Adam's steps are about lr = 1e-2 per weight; the two differ only in the float32 order of β·mean
    # against mean of β·KL, so they agree far below one step
    assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(scalar, weighted))
    assert not all(torch.equal(a, b) for a, b in zip(plain, scalar))
    _, some = train(0.0, torch.tensor([0.0, 0.0, 0.1, 0.1]))
    moved = lambda ws: sum(float((w - p).abs().sum()) for w, p in zip(ws, plain))  # noqa: E731
    assert 0 < moved(some)
