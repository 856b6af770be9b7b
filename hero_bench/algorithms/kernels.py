"""The shared training kernels: PPO-clip and DPO losses, advantages, and the two update passes.

Every method trains through this file (by design the sampler and the PPO/DPO inner loop exist once,
docs/architecture.md).  HERO and DDPO both call :func:`ppo_update` (they differ only in where the advantages come
from and how many timesteps per trajectory are trained); D3PO calls :func:`dpo_update`.

Section references (``docs/algorithms.md``):
- §2.1  PPO-clip surrogate  L = max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)),  ρ = exp(log p_θ − log p_old)
- §2.2  advantages: per-prompt stat tracking (buffer, min_count, 1e-6) or batch standardisation
        (1e-8), then clipped to ±adv_clip
- §2.3  the update pass: shuffle samples, permute each sample's timesteps, train batches, gradient
        accumulation over chunks × trained timesteps, grad-norm clip, AdamW; approx_kl (also without
        the chain's final step: approx_kl_excl_final), clipfrac
- §2.5  the optional KL penalty to the pretrained model, β·KL(π_θ(·|x_t) ‖ π_pre(·|x_t)) per step
- §3.1  D3PO's per-step DPO loss in its code form (sign vector h, ratio clamp [1−ε, 1+ε])
- §1.4  trajectory storage and timestep shuffling
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hero_bench.diffusion.ddim import gaussian_step_log_prob, step_kl
from hero_bench.diffusion.lora import disable_lora
from hero_bench.diffusion.sampler import SamplerConfig, Trajectory, step_distribution, step_log_prob
from hero_bench.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PPOConfig:
    """The PPO-clip update of the LoRA weights (DDPO's, also used by HERO). Defaults: DDPO §2.4."""

    lr: float = 3e-4
    """AdamW learning rate of the LoRA weights (DDPO with LoRA: 3e-4)."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    adam_beta1: float = 0.9
    """AdamW β1."""
    adam_beta2: float = 0.999
    """AdamW β2."""
    adam_eps: float = 1e-8
    """AdamW ε."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global L2 norm before every optimizer step."""
    train_batch_size: int = 1
    """Trajectories per forward/backward chunk."""
    grad_accum_steps: int = 1
    """Chunks whose gradients are accumulated into one optimizer step (a shorter last group at the
    end of a pass is stepped too, its loss scaled by its own size)."""
    clip_range: float = 1e-4
    """PPO clip ε of the ratio ρ (tiny because log-probs are means over latent elements, §1.1)."""
    adv_clip: float = 5.0
    """Advantages are clipped to [−adv_clip, +adv_clip]."""
    inner_epochs: int = 1
    """Passes over each epoch's trajectories (each pass reshuffles samples and timesteps)."""
    timestep_fraction: float = 1.0
    """Fraction of each trajectory's trainable denoising steps trained per pass,
    int(trainable × fraction), where trainable = last_steps or all steps, less the final one when
    train_final_step is False (ignored when timesteps_per_sample is set)."""
    timesteps_per_sample: int | None = None
    """K: number of randomly chosen denoising steps trained per trajectory per pass (HERO: 5);
    None = use timestep_fraction."""
    last_steps: int | None = None
    """Train only among the last N denoising steps of each trajectory (the low-noise end of the
    chain); None = among all steps (both papers' code). On the toy model the first steps decide
    almost nothing of the outcome (docs/methods.md, "When is success decided"), and at PPO lr 1e-2
    training them is part of what collapsed anomaly; at lr 5e-3 the window changes nothing
    (docs/methods.md, "Training only the steps that decide the outcome"). The toy preset's DDPO
    trains all of its last 10 steps (selected by the whole-curve sweep, tune-curve.yaml)."""
    train_final_step: bool = True
    """Train the chain's final denoising step with the others (both papers' code). Its std is the
    chain's smallest (toy sampler: 0.01 at DDIM η 1, 0.0005 at η 0.05), so its log-ratio swells
    with any shift of its mean: at η 0.05 it alone carried approx_kl of hundreds to tens of
    thousands per round while the other steps stayed below 0.01, and through PPO's unclipped branch
    (a negative advantage, a rising ratio) it drove every update. False ends the trainable steps one
    before the chain does (docs/methods.md, "Noise-influence regimes")."""
    target_kl: float | None = None
    """Early stop of the update phase: once an accumulation group's mean approx_kl (measured
    before its step, against the sampling policy) exceeds this value, that group is not stepped
    and the phase ends, remaining inner epochs included. None = never stop (both papers' code)."""
    warmup_steps: int = 0
    """Linear learning-rate warmup over the run's first N optimizer steps (step s uses
    lr·min(1, (s+1)/N)); 0 = none (both papers' code). AdamW's first steps move every adapter weight
    by about lr whatever the gradient's size, before its second-moment estimate holds more than one
    round's gradients (docs/methods.md, "Adam's first round")."""
    kl_to_pretrained: float = 0.0
    """β of a KL penalty to the pretrained model added to every trained step's loss:
    β·KL(π_θ(x_t' | x_t) ‖ π_pre(x_t' | x_t)) between the two step Gaussians (same std, so
    (μ_θ − μ_pre)²/(2 std²), a mean over latent elements; docs/algorithms.md §2.5, DPOK's
    regulariser).  It pulls the adapters back when every label of a round is 0 and the PPO
    advantages vanish (docs/methods.md, "A KL penalty to the pretrained model").  Costs one more
    UNet forward (without gradient) per trained step.  0 = none (DDPO's and HERO's code)."""

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _positive("train_batch_size", self.train_batch_size)
        _positive("grad_accum_steps", self.grad_accum_steps)
        _positive("clip_range", self.clip_range)
        _positive("adv_clip", self.adv_clip)
        _positive("max_grad_norm", self.max_grad_norm)
        _positive("inner_epochs", self.inner_epochs)
        if self.weight_decay < 0:
            raise ConfigError(f"ppo.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ConfigError(f"ppo.timestep_fraction must be in (0, 1], got {self.timestep_fraction}")
        if self.timesteps_per_sample is not None and self.timesteps_per_sample < 1:
            raise ConfigError(f"ppo.timesteps_per_sample must be >= 1 or null, got {self.timesteps_per_sample}")
        if self.last_steps is not None and self.last_steps < 1:
            raise ConfigError(f"ppo.last_steps must be >= 1 or null, got {self.last_steps}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ConfigError(f"ppo.target_kl must be > 0 or null, got {self.target_kl}")
        if self.warmup_steps < 0:
            raise ConfigError(f"ppo.warmup_steps must be >= 0 (0 = no warmup), got {self.warmup_steps}")
        if not self.kl_to_pretrained >= 0:
            raise ConfigError(f"ppo.kl_to_pretrained must be >= 0 (0 = no penalty), got {self.kl_to_pretrained}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def trained_timesteps(steps: int, fraction: float, per_sample: int | None = None) -> int:
    """How many of a trajectory's ``steps`` denoising steps one pass trains (at least 1)."""
    k = per_sample if per_sample is not None else int(steps * fraction)
    return max(1, min(steps, k))


def make_adamw(params: Sequence[torch.nn.Parameter], lr: float, weight_decay: float,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """The LoRA optimizer every method uses (AdamW, as all three released codebases)."""
    return torch.optim.AdamW(list(params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def add_warmup(optimizer: torch.optim.Optimizer,
               warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """Linear learning-rate warmup over ``optimizer``'s first ``warmup_steps`` steps (step s at
    lr·min(1, (s+1)/warmup_steps)), or None for 0. The schedule advances by itself after every
    ``optimizer.step()`` (a step post-hook), so the update passes need not know it exists; its
    state (the steps taken) belongs in the method's checkpoint beside the optimizer's."""
    if warmup_steps <= 0:
        return None
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup_steps))
    optimizer.register_step_post_hook(lambda *_: schedule.step())
    return schedule


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


LOG_RATIO_MAX = 80.0
"""Log-ratios are capped here before ``exp`` (float32 overflows above about 88.7). Below the cap
nothing changes, bit for bit; above it the ratio lies far outside any clip range, where the clipped
term has no gradient, and without the cap ``exp`` gives inf and its backward 0·inf = NaN, which the
optimizer step would write into every weight. Log-ratios this large occur when the sampler's per-step
std is tiny (DDIM η near 0: docs/methods.md, "Noise-influence regimes")."""


def _ratio(log_ratio: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.clamp(log_ratio, max=LOG_RATIO_MAX))


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_range: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate (§2.1), averaged over the batch; also approx_kl and clipfrac (§2.3).

    L = mean max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)) with ρ = exp(log p − log p_old).
    """
    ratio = _ratio(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        info = {
            "approx_kl": 0.5 * torch.mean((log_prob - old_log_prob) ** 2),
            "clipfrac": torch.mean((torch.abs(ratio - 1.0) > clip_range).float()),
        }
    return loss, info


def dpo_step_loss(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, signs: torch.Tensor,
                  beta: float, clamp_eps: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D3PO's per-step DPO loss in the released code's form (§3.1), averaged over pairs.

    ``log_prob``, ``ref_log_prob`` and ``signs`` are ``[P, 2]`` (the two images of each pair).
    r_k = clamp(exp(log π_θ − log π_ref), 1−ε, 1+ε);  L = −mean log σ(β·Σ_k h_k·log r_k).
    h = (+1, −1) when image 0 is preferred, (−1, +1) when image 1 is, (0, 0) for a tie (constant
    log 2, no gradient).  The clamp is a trust region: outside [1−ε, 1+ε] the ratio has no gradient.
    """
    ratio = torch.clamp(_ratio(log_prob - ref_log_prob), 1.0 - clamp_eps, 1.0 + clamp_eps)
    logits = beta * (signs * torch.log(ratio)).sum(dim=1)
    loss = -F.logsigmoid(logits).mean()
    with torch.no_grad():
        raw = _ratio(log_prob - ref_log_prob)
        info = {
            # fraction of pairs whose implicit reward already ranks the preferred image higher
            "pair_accuracy": torch.mean((logits > 0).float()),
            "clampfrac": torch.mean((torch.abs(raw - 1.0) > clamp_eps).float()),
        }
    return loss, info


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


def standardize(rewards: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Batch standardisation (§2.2 "without tracking"): (r − mean)/(std + eps), population std."""
    r = np.asarray(rewards, dtype=np.float64)
    return (r - r.mean()) / (r.std() + eps)


def clip_advantages(advantages: np.ndarray, adv_clip: float) -> np.ndarray:
    return np.clip(np.asarray(advantages, dtype=np.float64), -adv_clip, adv_clip)


class PerPromptStatTracker:
    """Per-prompt reward normalisation (§2.2, ddpo-pytorch's stat tracker).

    For each prompt of the epoch: append its rewards to the prompt's FIFO buffer first; if the
    buffer then holds fewer than ``min_count`` values, normalise with the mean/std of ALL rewards of
    the current epoch, otherwise with the buffer's; A = (r − mean)/(std + 1e-6).  The buffers
    persist across epochs (and are checkpointed).
    """

    EPS = 1e-6

    def __init__(self, buffer_size: int, min_count: int):
        self.buffer_size = int(buffer_size)
        self.min_count = int(min_count)
        self.buffers: dict[str, deque] = {}

    def update(self, prompts: Sequence[str], rewards: np.ndarray) -> np.ndarray:
        prompts_arr = np.asarray(list(prompts), dtype=object)
        rewards = np.asarray(rewards, dtype=np.float64)
        advantages = np.empty_like(rewards)
        # sorted: the order buffers are created in never depends on the batch order
        for prompt in sorted(set(prompts_arr.tolist())):
            mask = prompts_arr == prompt
            buf = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buf.extend(rewards[mask].tolist())
            if len(buf) < self.min_count:
                mean, std = rewards.mean(), rewards.std()
            else:
                values = np.asarray(buf, dtype=np.float64)
                mean, std = values.mean(), values.std()
            advantages[mask] = (rewards[mask] - mean) / (std + self.EPS)
        return advantages

    def state_dict(self) -> dict:
        return {"buffer_size": self.buffer_size, "min_count": self.min_count,
                "buffers": {k: list(v) for k, v in self.buffers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.buffers = {k: deque(v, maxlen=self.buffer_size) for k, v in state["buffers"].items()}


# --------------------------------------------------------------------------------------------
# Update passes
# --------------------------------------------------------------------------------------------


class _Meter:
    """Running means of scalar diagnostics (plain floats, so logs are deterministic)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def summary(self) -> dict[str, float]:
        """The means plus the number of optimizer steps taken (each step adds one ``grad_norm``)."""
        out = self.means()
        out["optimizer_steps"] = float(self.counts.get("grad_norm", 0))
        return out


def _accumulation_groups(n_chunks: int, grad_accum: int) -> list[range]:
    return [range(s, min(s + grad_accum, n_chunks)) for s in range(0, n_chunks, grad_accum)]


def _optimizer_step(params, optimizer, max_grad_norm: float) -> float:
    """Clip the gradient's norm and step; a non-finite gradient is dropped instead of stepped (the
    step would turn every weight into NaN for the rest of the run) and its NaN/inf norm is returned,
    so that train_log.csv shows it (grad_norm)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if torch.isfinite(grad_norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def _end_group(params, optimizer, max_grad_norm: float, meter: _Meter,
               on_step: Callable[[dict], None] | None) -> None:
    """The optimizer step that ends an accumulation group; ``on_step`` sees the running means.
    (``_optimizer_step`` is looked up at call time: the profiler times it by replacing it.)"""
    meter.add(grad_norm=_optimizer_step(params, optimizer, max_grad_norm))
    if on_step is not None:
        on_step(meter.means())


def ppo_optimizer_steps(n_samples: int, cfg: PPOConfig) -> int:
    """Optimizer steps one :func:`ppo_update` call makes on ``n_samples`` trajectories."""
    chunks = math.ceil(n_samples / cfg.train_batch_size)
    return cfg.inner_epochs * math.ceil(chunks / cfg.grad_accum_steps)


def ppo_update(
    backbone,
    traj: Trajectory,
    advantages: torch.Tensor,
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: PPOConfig,
    sampler: SamplerConfig,
    generator: torch.Generator,
    on_step: Callable[[dict], None] | None = None,
    kl_weights: torch.Tensor | None = None,
) -> dict[str, float]:
    """One PPO-clip training phase on a batch of trajectories (§2.3, §4.6).

    For each inner epoch: shuffle the samples, permute each sample's trainable timesteps (all, or
    the last ``last_steps``; without the chain's final one when ``train_final_step`` is False)
    independently, cut the shuffled samples into ``train_batch_size`` chunks, and for every chunk
    train the first K permuted timesteps of each sample (K = timesteps_per_sample or
    int(trainable × fraction)), each with its own backward pass.  Gradients accumulate over ``grad_accum_steps`` chunks × K timesteps
    (losses scaled so the step uses their mean), are clipped to ``max_grad_norm``, then AdamW steps.
    Old log-probs are the sampler's (the policy that generated the batch); new ones are recomputed
    with CFG exactly as sampled (``step_log_prob``, §1.2).

    ``kl_weights`` ``[N]``, when given, replaces ``cfg.kl_to_pretrained`` by a β per trajectory: the
    KL term of a chunk is the mean over its samples of β_i·KL_i, and a chunk whose every β is 0 costs
    no pretrained forward (DDPO's pull of the prompts of an epoch that had no success).
    """
    device = traj.latents.device
    n, steps = traj.log_probs.shape
    # the trainable window is the last `window` steps before `end` (the chain's end, or one step
    # before it); with last_steps=None and the final step trained it is the whole chain and the
    # random draws below are exactly those of the code before either option existed
    end = steps if cfg.train_final_step else steps - 1
    if end < 1:
        raise ConfigError("ppo.train_final_step=false leaves no step to train in a chain of one step")
    window = end if cfg.last_steps is None else min(end, cfg.last_steps)
    first = end - window
    k = trained_timesteps(window, cfg.timestep_fraction, cfg.timesteps_per_sample)
    advantages = advantages.to(device=device, dtype=torch.float32)
    meter = _Meter()
    optimizer.zero_grad(set_to_none=True)
    for _ in range(cfg.inner_epochs):
        order = torch.randperm(n, generator=generator)
        # an independent random permutation of the step axis per sample (argsort of uniforms)
        step_perm = torch.rand((n, window), generator=generator).argsort(dim=1) + first
        chunks = order.split(cfg.train_batch_size)
        for group in _accumulation_groups(len(chunks), cfg.grad_accum_steps):
            scale = 1.0 / (len(group) * k)
            group_kl = 0.0
            for c in group:
                idx = chunks[c]
                # the chunk's β of the KL term: the same for each of its k timesteps
                beta = None if kl_weights is None else kl_weights[idx].to(device=device, dtype=torch.float32)
                penalised = cfg.kl_to_pretrained > 0 if beta is None else bool((beta > 0).any())
                for j in range(k):
                    step_idx = step_perm[idx, j]
                    idx_d, step_d = idx.to(device), step_idx.to(device)
                    step_args = (backbone, traj.prompt_embeds[idx_d], traj.negative_embeds,
                                 traj.latents[idx_d, step_d], traj.timesteps[step_d])
                    old_log_prob = traj.log_probs[idx_d, step_d]
                    if penalised:
                        log_prob, kl = _log_prob_and_kl_to_pretrained(step_args, traj.latents[idx_d, step_d + 1],
                                                                      sampler)
                    else:
                        log_prob = step_log_prob(*step_args, traj.latents[idx_d, step_d + 1], sampler)
                    loss, info = ppo_clip_loss(log_prob, old_log_prob, advantages[idx_d], cfg.clip_range)
                    if penalised:
                        # the logged loss stays the PPO surrogate; the penalty is logged on its own
                        meter.add(kl_pretrained=kl.mean().item())
                        penalty = cfg.kl_to_pretrained * kl.mean() if beta is None else (beta * kl).mean()
                        ((loss + penalty) * scale).backward()
                    else:
                        (loss * scale).backward()
                    meter.add(loss=loss.item(), approx_kl=info["approx_kl"].item(),
                              clipfrac=info["clipfrac"].item())
                    inner = step_idx < steps - 1
                    if bool(inner.any()):
                        # the chain's final step has a std 15 times smaller than the one before it
                        # on the toy sampler (0.01), so its log-ratio, and approx_kl with it, swells
                        # with any shift of its mean; this one shows the rest of the chain
                        # (docs/methods.md, "What approx_kl measures")
                        with torch.no_grad():
                            half_sq = 0.5 * (log_prob - old_log_prob) ** 2
                        meter.add(approx_kl_excl_final=half_sq[inner.to(device)].mean().item())
                    group_kl += info["approx_kl"].item() * scale
            if cfg.target_kl is not None and group_kl > cfg.target_kl:
                # The policy has already moved past the trust region on this batch: one more Adam
                # step (sized by lr whatever the gradient) is what broke the toy model's runs
                # (docs/methods.md, "Stopping a PPO phase early").
                optimizer.zero_grad(set_to_none=True)
                meter.add(kl_stop=1.0)
                return meter.summary()
            _end_group(params, optimizer, cfg.max_grad_norm, meter, on_step)
    if cfg.target_kl is not None:
        meter.add(kl_stop=0.0)
    return meter.summary()


def _log_prob_and_kl_to_pretrained(step_args: tuple, next_latents: torch.Tensor,
                                   sampler: SamplerConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained policy's log-prob ``[B]`` of the stored steps and its KL ``[B]`` to the pretrained
    model's step Gaussian at the same states (§2.5): the policy's forward carries the gradient, the
    pretrained model's (adapters bypassed) none."""
    mean, std = step_distribution(*step_args, sampler)
    with torch.no_grad(), disable_lora(step_args[0].unet):
        pretrained_mean, _ = step_distribution(*step_args, sampler)
    return gaussian_step_log_prob(next_latents.detach().float(), mean, std), step_kl(mean, pretrained_mean, std)


def dpo_update(
    backbone,
    traj: Trajectory,
    pairs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    params: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    *,
    beta: float,
    clamp_eps: float,
    train_batch_size: int,
    grad_accum_steps: int,
    timestep_fraction: float,
    max_grad_norm: float,
    sampler: SamplerConfig,
    generator: torch.Generator,
    last_steps: int | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> dict[str, float]:
    """One D3PO training phase: per-step DPO on preference pairs against fixed reference log-probs.

    ``pairs`` is ``[P, 2]`` (preferred, other) batch indices; ``ref_log_probs`` ``[N, steps]`` are
    the reference policy's log-probs of every stored step.  Pairs are shuffled and cut into
    ``train_batch_size`` chunks; each chunk trains int(window × fraction) timesteps, window = the
    chain's last ``last_steps`` steps or all of them when None (a random subset of the window in
    random order, shared by the chunk's pairs, as the released code shares one permutation
    between the two images of a pair), one backward per timestep; gradients accumulate over
    ``grad_accum_steps`` chunks × timesteps, are clipped, then AdamW steps (§3.1, §3.4).  An image
    that appears in several pairs of a chunk is run through the UNet once per timestep (its
    log-prob is shared: same gradient, less compute).
    """
    device = traj.latents.device
    n_pairs = int(pairs.shape[0])
    steps = traj.log_probs.shape[1]
    # the trainable window, as in ppo_update; last_steps=None keeps the released draws bit for bit
    window = steps if last_steps is None else min(steps, last_steps)
    first = steps - window
    k = trained_timesteps(window, timestep_fraction)
    meter = _Meter()
    optimizer.zero_grad(set_to_none=True)
    if n_pairs == 0:
        return {"optimizer_steps": 0.0}
    # the preferred image is column 0: sign vector h = (+1, −1) for every pair (ties never reach here)
    signs = torch.tensor([1.0, -1.0], device=device).expand(1, 2)
    order = torch.randperm(n_pairs, generator=generator)
    chunks = order.split(train_batch_size)
    for group in _accumulation_groups(len(chunks), grad_accum_steps):
        scale = 1.0 / (len(group) * k)
        for c in group:
            chunk_pairs = pairs[chunks[c]]  # [b, 2]
            images, inverse = torch.unique(chunk_pairs.reshape(-1), return_inverse=True)
            step_order = torch.randperm(window, generator=generator)[:k] + first
            img_d = images.to(device)
            for s in step_order.tolist():
                log_prob = step_log_prob(
                    backbone,
                    traj.prompt_embeds[img_d],
                    traj.negative_embeds,
                    traj.latents[img_d, s],
                    traj.timesteps[s].expand(len(images)),
                    traj.latents[img_d, s + 1],
                    sampler,
                )
                pair_lp = log_prob[inverse.to(device)].reshape(-1, 2)
                pair_ref = ref_log_probs[chunk_pairs.to(device), s]
                loss, info = dpo_step_loss(pair_lp, pair_ref, signs.expand(len(chunk_pairs), 2), beta, clamp_eps)
                (loss * scale).backward()
                meter.add(loss=loss.item(), pair_accuracy=info["pair_accuracy"].item(),
                          clampfrac=info["clampfrac"].item())
        _end_group(params, optimizer, max_grad_norm, meter, on_step)
    return meter.summary()
