"""DDPO_IS: PPO-clip on the evaluator's per-image rewards (docs/algorithms.md §2).

One epoch, top to bottom:

1. sample   prompts uniformly from the task's train prompts, z_T ~ N(0, I), DDIM η = 1 with CFG;
2. label    one scalar reward per image from the evaluator (its 0/1 success label by default,
            ``evaluator.ddpo_reward``);
3. update   advantages by per-prompt stat tracking (§2.2; or batch standardisation), clipped to
            ±adv_clip, then the shared PPO-clip pass (``kernels.ppo_update``, §2.3) over a
            ``timestep_fraction`` of the denoising steps of every trajectory; with
            ``no_success_pull``, an epoch in which no image succeeded instead pulls the adapters back
            towards the pretrained model (all advantages 0, the KL term of §2.5); with
            ``pull_scope`` "prompt", so do the images of each prompt without a success.

The only state carried across epochs besides the LoRA weights and AdamW is the stat tracker's
per-prompt reward buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hero_bench.algorithms.base import Batch, PPOMethod, RunContext, load_optimizer_state, optimizer_state
from hero_bench.algorithms.kernels import PerPromptStatTracker, PPOConfig, standardize
from hero_bench.errors import ConfigError

PULL_SCOPES = ("epoch", "prompt")
"""Accepted values of ``DDPOConfig.pull_scope``."""


@dataclass(frozen=True)
class DDPOConfig:
    """DDPO's settings. Defaults: docs/algorithms.md §2.4 / §7.6 (ddpo-pytorch's reproduction configs)."""

    images_per_epoch: int = 256
    """Images sampled and rewarded per epoch (ddpo-pytorch dgx configs: 256)."""
    per_prompt_stat_tracking: bool = True
    """Normalise rewards per prompt with a running buffer (§2.2); False = batch standardisation."""
    stat_buffer_size: int = 16
    """Rewards kept per prompt (FIFO) by the stat tracker."""
    stat_min_count: int = 16
    """Below this many buffered rewards a prompt is normalised with the whole epoch's statistics."""
    # ddpo-pytorch / the DDPO paper with LoRA (§2.4, §7.6): lr 3e-4, clip 1e-4, adv clip 5, all
    # timesteps; 256 samples per epoch in 4 optimizer steps of 64 (train batch 4 × grad-accum 16)
    ppo: PPOConfig = PPOConfig(lr=3e-4, train_batch_size=4, grad_accum_steps=16, clip_range=1e-4, adv_clip=5.0,
                               timestep_fraction=1.0)
    """The PPO-clip update of the LoRA weights (shared kernel with HERO)."""
    no_success_pull: float = 0.0
    """β of a pull back to the pretrained model in an epoch where no image succeeded (binary labels,
    ``evaluator.ddpo_reward="success"``): such an epoch has nothing to reinforce, so its update
    minimises β·KL(π_θ ‖ π_pretrained) over the epoch's trajectories (the ``ppo.kl_to_pretrained``
    term, §2.5) with every advantage set to 0.  Without it such an epoch's advantages are 0 (or,
    for a prompt whose stat-tracker buffer still holds successes, negative for all its images):
    nothing leads back, and a model that has collapsed onto images the evaluator always rejects
    never shows it a success again (docs/methods.md, "Pulling back after an epoch without a
    success").  0 = off (DDPO's code)."""

    pull_scope: str = "epoch"
    """Where ``no_success_pull`` looks for "no success": ``epoch``, only an epoch in which no image
    succeeded pulls (all of it); ``prompt``, in addition the images of every prompt none of whose
    images succeeded in this epoch get advantage 0 and the pull, while the other prompts' images
    keep DDPO's update.  An epoch without any success, and one in which every prompt had one, is
    the same under both.  On a task of several prompts DDPO otherwise gives a prompt that stopped
    succeeding nothing to learn from while the other prompts' updates move the shared adapter
    further from it (docs/methods.md, "Pulling back a prompt without a success")."""

    def __post_init__(self) -> None:
        if self.pull_scope not in PULL_SCOPES:
            raise ConfigError(f"ddpo.pull_scope must be one of {', '.join(PULL_SCOPES)}, got {self.pull_scope!r}")
        if not self.no_success_pull >= 0:
            raise ConfigError(f"ddpo.no_success_pull must be >= 0 (0 = off), got {self.no_success_pull}")
        if self.images_per_epoch < 1:
            raise ConfigError(f"ddpo.images_per_epoch must be >= 1, got {self.images_per_epoch}")
        if self.stat_buffer_size < 1 or self.stat_min_count < 0:
            raise ConfigError("ddpo.stat_buffer_size must be >= 1 and ddpo.stat_min_count >= 0")


class DDPO(PPOMethod):
    name = "ddpo"
    cfg: DDPOConfig

    def __init__(self, ctx: RunContext):
        super().__init__(ctx, ctx.settings)
        self.tracker = PerPromptStatTracker(self.cfg.stat_buffer_size, self.cfg.stat_min_count)

    # 1. sample ---------------------------------------------------------------------------------
    def sample(self, epoch: int, n: int) -> Batch:
        return self.sample_batch(epoch, self.draw_prompts(epoch, n), self.gaussian_noise(epoch, n))

    # 2. label ----------------------------------------------------------------------------------
    def label(self, epoch: int, batch: Batch) -> np.ndarray:
        return self.ctx.evaluator.ddpo(batch.traj.images, batch.texts, batch.metadata, epoch)

    # 3. update ---------------------------------------------------------------------------------
    def update(self, epoch: int, batch: Batch, rewards: np.ndarray) -> dict[str, float]:
        if self.cfg.per_prompt_stat_tracking:
            advantages = self.tracker.update(batch.texts, rewards)
        else:
            advantages = standardize(rewards)
        pulled = self.pulled_images(batch.texts, rewards)
        beta = max(self.cfg.ppo.kl_to_pretrained, self.cfg.no_success_pull)
        if pulled.all():
            # nothing to reinforce: the PPO term is silenced and only the KL to the pretrained
            # model moves the adapters (the tracker still records the zeros)
            pull = replace(self.cfg.ppo, kl_to_pretrained=beta)
            metrics = self.ppo_step(epoch, batch.traj, np.zeros_like(advantages), pull)
        elif pulled.any():
            # the same, for the prompts that had no success, inside DDPO's update of the others
            weights = np.where(pulled, beta, self.cfg.ppo.kl_to_pretrained)
            metrics = self.ppo_step(epoch, batch.traj, np.where(pulled, 0.0, advantages), kl_weights=weights)
        else:
            metrics = self.ppo_step(epoch, batch.traj, advantages)
        if self.cfg.no_success_pull > 0:
            # the share of the epoch's images whose update was the pull (1: the whole epoch)
            metrics["no_success_pull"] = float(np.mean(pulled))
        metrics["reward_mean"] = float(np.mean(rewards))
        if self.ctx.evaluator.config.ddpo_reward == "success":
            metrics["train_success"] = float(np.mean(rewards))
        return metrics

    def pulled_images(self, prompts, rewards: np.ndarray) -> np.ndarray:
        """Which images' update is the pull back to the pretrained model (``no_success_pull``): all
        of an epoch without a success; with ``pull_scope`` "prompt" also those of every prompt
        without a success in this epoch.  Binary labels only: with a continuous reward "no success"
        has no meaning."""
        rewards = np.asarray(rewards)
        if self.cfg.no_success_pull <= 0 or self.ctx.evaluator.config.ddpo_reward != "success":
            return np.zeros(len(rewards), dtype=bool)
        if not np.any(rewards > 0):
            return np.ones(len(rewards), dtype=bool)
        if self.cfg.pull_scope == "epoch":
            return np.zeros(len(rewards), dtype=bool)
        texts = np.asarray(list(prompts), dtype=object)
        succeeded = {t for t, r in zip(texts.tolist(), rewards.tolist()) if r > 0}
        return np.array([t not in succeeded for t in texts.tolist()], dtype=bool)

    # checkpoint ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**optimizer_state(self.optimizer, self.warmup), "tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        load_optimizer_state(self.optimizer, self.warmup, state)
        self.tracker.load_state_dict(state["tracker"])
