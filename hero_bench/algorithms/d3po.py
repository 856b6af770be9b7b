"""D3PO: per-step DPO on human preferences between images that share z_T and prompt (docs/algorithms.md §3).

One epoch, top to bottom:

1. sample     ``groups_per_epoch`` groups of ``group_size`` images (7 in the human-feedback runs);
              the images of a group share one prompt and one initial noise z_T ~ N(0, I), so they
              differ only through the sampler's per-step noise;
2. label      the evaluator classes every image (one feedback each) and prefers, inside each
              group, every image of the better class over every image of the worse; pairs of the
              same class are ties and are skipped (§3.2);
3. reference  log-probs of every stored step under the frozen reference policy: by default the
              model as it was at the start of the epoch, i.e. the previous epoch's model (human-
              feedback mode, §3.1: "the model fine-tuned after each epoch serves as the reference
              model for the subsequent epoch"); optionally the pretrained model (reward-model mode);
4. update     the DPO step loss on every trained timestep of every pair (``kernels.dpo_update``):
              r_k = clamp(π_θ/π_ref, 1−ε, 1+ε), L = −log σ(β·(log r_w − log r_l)).

Why the reference costs nothing in the default mode: the epoch's trajectories were sampled by the
start-of-epoch weights, which ARE the reference, so their stored log-probs are the reference
log-probs of exactly the steps being trained (the same numbers a frozen copy of those weights
would recompute, up to float round-off of batching).  No second adapter or weight swap is needed,
and a resumed epoch restarts from the same weights, so the reference is restored with them.  The
pretrained reference is recomputed once per epoch with the adapters disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from hero_bench.algorithms.base import Batch, Method, RunContext, load_optimizer_state, optimizer_state
from hero_bench.algorithms.kernels import add_warmup, dpo_update, make_adamw
from hero_bench.diffusion.lora import disable_lora
from hero_bench.diffusion.sampler import step_log_prob
from hero_bench.errors import ConfigError
from hero_bench.feedback import D3POFeedback


@dataclass(frozen=True)
class D3POConfig:
    """D3PO's settings. Defaults: docs/algorithms.md §3.4 and §7.5 (paper Table 2 and the released code)."""

    group_size: int = 7
    """Images per group sharing prompt and z_T (human-feedback runs: 7, all C(7,2) = 21 pairs)."""
    groups_per_epoch: int = 9
    """Groups sampled per epoch (9 × 7 = 63 images ≈ HERO's 64)."""
    beta: float = 0.1
    """DPO temperature β."""
    clamp_eps: float = 0.1
    """Ratio clamp ε: π_θ/π_ref is clamped to [1−ε, 1+ε] (the maintainer's intended 0.1, §3.1)."""
    reference: Literal["previous", "pretrained"] = "previous"
    """Frozen reference: the previous epoch's model (human-feedback runs) or the pretrained model."""
    lr: float = 3e-5
    """AdamW learning rate of the LoRA weights."""
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
    """Preference pairs per forward/backward chunk (released code: 1)."""
    grad_accum_steps: int = 1
    """Chunks accumulated into one optimizer step (released code: 1, so one step per pair)."""
    timestep_fraction: float = 1.0
    """Fraction of the trainable denoising steps trained per pair (released code: all of them);
    trainable = the last ``last_steps`` steps, or all steps when that is None."""
    last_steps: int | None = None
    """Train only the chain's last N denoising steps (the low-noise end), as ``ppo.last_steps`` does
    for HERO and DDPO; None = all steps (the released code), as in every preset."""
    warmup_steps: int = 0
    """Linear learning-rate warmup over the run's first N optimizer steps, as ``ppo.warmup_steps``
    for HERO and DDPO; 0 = none (the released code)."""

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"d3po.group_size must be >= 2 (pairs are formed inside a group), got {self.group_size}")
        for name in ("groups_per_epoch", "train_batch_size", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"d3po.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("beta", "clamp_eps", "lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"d3po.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ConfigError(f"d3po.timestep_fraction must be in (0, 1], got {self.timestep_fraction}")
        if self.last_steps is not None and self.last_steps < 1:
            raise ConfigError(f"d3po.last_steps must be >= 1 or null, got {self.last_steps}")
        if self.warmup_steps < 0:
            raise ConfigError(f"d3po.warmup_steps must be >= 0 (0 = no warmup), got {self.warmup_steps}")


def group_layout(n: int, group_size: int) -> list[int]:
    """Group id of each of ``n`` images: full groups of ``group_size``; a remainder of two or more
    images forms a smaller last group, a single leftover image joins the last group (a group of one
    could never be compared)."""
    sizes = [group_size] * (n // group_size)
    rest = n % group_size
    if rest >= 2 or not sizes:
        sizes.append(rest)
    elif rest == 1:
        sizes[-1] += 1
    return [g for g, size in enumerate(sizes) for _ in range(size)]


class D3PO(Method):
    name = "d3po"
    min_batch = 2  # one pair

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.cfg: D3POConfig = ctx.settings
        self.optimizer = make_adamw(ctx.lora_params, self.cfg.lr, self.cfg.weight_decay,
                                    (self.cfg.adam_beta1, self.cfg.adam_beta2), self.cfg.adam_eps)
        self.warmup = add_warmup(self.optimizer, self.cfg.warmup_steps)

    def images_per_epoch(self) -> int:
        return self.cfg.group_size * self.cfg.groups_per_epoch

    def optimizer_steps(self, n_images: int) -> str:
        groups = self.cfg.groups_per_epoch
        most = groups * self.cfg.group_size * (self.cfg.group_size - 1) // 2
        per = self.cfg.train_batch_size * self.cfg.grad_accum_steps
        return f"<= {-(-most // per)} (one per {per} preferred pair(s); ties form no pair)"

    # 1. sample ---------------------------------------------------------------------------------
    def sample(self, epoch: int, n: int) -> Batch:
        groups = group_layout(n, self.cfg.group_size)
        n_groups = groups[-1] + 1
        group_prompts = self.draw_prompts(epoch, n_groups)
        group_noise = self.gaussian_noise(epoch, n_groups)
        g = torch.as_tensor(groups, device=group_noise.device)
        return self.sample_batch(epoch, [group_prompts[i] for i in groups], group_noise[g], groups=groups)

    # 2. label ----------------------------------------------------------------------------------
    def label(self, epoch: int, batch: Batch) -> D3POFeedback:
        return self.ctx.evaluator.d3po(batch.traj.images, batch.texts, batch.metadata, batch.groups, epoch)

    # 3.–4. reference and update -----------------------------------------------------------------
    def update(self, epoch: int, batch: Batch, fb: D3POFeedback) -> dict[str, float]:
        traj = batch.traj
        if self.cfg.reference == "previous":
            ref_log_probs = traj.log_probs  # sampled by the start-of-epoch weights = the reference
        else:
            ref_log_probs = self.pretrained_log_probs(batch, self.cfg.last_steps)
        pairs = torch.tensor(fb.pairs, dtype=torch.long).reshape(-1, 2)
        metrics = dpo_update(
            self.ctx.backbone, traj, pairs, ref_log_probs, self.ctx.lora_params, self.optimizer,
            beta=self.cfg.beta, clamp_eps=self.cfg.clamp_eps, train_batch_size=self.cfg.train_batch_size,
            grad_accum_steps=self.cfg.grad_accum_steps, timestep_fraction=self.cfg.timestep_fraction,
            max_grad_norm=self.cfg.max_grad_norm, sampler=self.ctx.sampler,
            generator=self.ctx.generator(epoch, "dpo"), last_steps=self.cfg.last_steps,
        )
        metrics["n_pairs"] = float(len(fb.pairs))
        metrics["train_success"] = float(fb.success.mean())
        return metrics

    @torch.no_grad()
    def pretrained_log_probs(self, batch: Batch, last_steps: int | None = None) -> torch.Tensor:
        """Log-probs ``[N, steps]`` of the stored steps under the pretrained model (adapters off):
        every step, or only the last ``last_steps`` (the others are NaN: they are never trained,
        and a NaN makes any use of them visible)."""
        traj = batch.traj
        backbone = self.ctx.backbone
        n, steps = traj.log_probs.shape
        first = 0 if last_steps is None else steps - min(steps, last_steps)
        out = torch.full_like(traj.log_probs, float("nan"))
        chunk = self.ctx.sampler.batch_size
        with disable_lora(backbone.unet):
            for s in range(first, steps):
                for start in range(0, n, chunk):
                    sl = slice(start, start + chunk)
                    out[sl, s] = step_log_prob(
                        backbone, traj.prompt_embeds[sl], traj.negative_embeds, traj.latents[sl, s],
                        traj.timesteps[s].expand(traj.latents[sl].shape[0]), traj.latents[sl, s + 1],
                        self.ctx.sampler,
                    )
        return out

    # checkpoint ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return optimizer_state(self.optimizer, self.warmup)

    def load_state_dict(self, state: dict) -> None:
        load_optimizer_state(self.optimizer, self.warmup, state)
