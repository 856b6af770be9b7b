"""What every method implements, what the runner hands it, and the `base` method (no training).

The runner (``hero_bench/runner.py``) owns the epoch loop; a method owns one epoch's three phases,
which the runner calls in this order (crash-injection points sit between them):

    batch    = method.sample(epoch, n)          # prompts, initial noise, trajectories, images
    feedback = method.label(epoch, batch)       # the simulated evaluator (ledger first)
    metrics  = method.update(epoch, batch, feedback)

plus ``state_dict``/``load_state_dict`` for everything that must survive a crash (optimizers,
HERO's networks and noise bank, DDPO's per-prompt buffers).

Randomness: a method never keeps a running random stream.  Every draw comes from a generator
made fresh for (run seed, epoch, purpose) by :meth:`RunContext.generator`, so the state of "all
RNGs" at the start of an epoch is a pure function of the seed and the epoch number: a run resumed
from the checkpoint of epoch e draws in epoch e+1 exactly what an uninterrupted run draws, without
storing generator states.  Draws for different purposes (prompts, noise, PPO shuffles, triplets)
are independent streams, so e.g. switching HERO's noise guidance off leaves the prompt draws alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from hero_bench.algorithms.kernels import (PPOConfig, add_warmup, clip_advantages, make_adamw, ppo_optimizer_steps,
                                          ppo_update)
from hero_bench.diffusion.sampler import SamplerConfig, Trajectory, initial_noise, sample_trajectories
from hero_bench.seeding import derive_seed


@dataclass
class RunContext:
    """Everything a method needs from the run (built by the runner).  A method sees the part of the
    run's configuration it uses (its own settings section, the sampler, the seed), not the whole
    ``RunConfig``: the run's other settings (budget, evaluation, backbone) are the loop's."""

    settings: Any
    """The method's settings section of the run config (``RunConfig.<section>`` of its row in
    ``hero_bench/methods.py``: a ``HeroConfig``, ``DDPOConfig`` or ``D3POConfig``); None for a
    method without settings (``base``)."""
    sampler: SamplerConfig
    """The run's sampler settings (η, steps, guidance), shared by training and evaluation."""
    seed: int
    """The run seed, from which every random stream of the method is derived."""
    backbone: Any  # hero_bench.diffusion.Backbone
    task: Any  # hero_bench.tasks.Task
    evaluator: Any  # hero_bench.feedback.SimulatedEvaluator
    lora_params: list[torch.nn.Parameter]
    reached: Callable[[str], None] = lambda point: None
    """Tells the run's hooks that the method passed a point inside its update (HERO:
    "epoch<E>.after_embedding"), so crash tests and traces see the update's two halves."""

    def generator(self, epoch: int, purpose: str) -> torch.Generator:
        """A fresh CPU torch generator for (seed, epoch, purpose): same draws on every device."""
        return torch.Generator(device="cpu").manual_seed(derive_seed(self.seed, epoch, purpose))

    def rng(self, epoch: int, purpose: str) -> np.random.Generator:
        """A fresh numpy generator for (seed, epoch, purpose)."""
        return np.random.default_rng(derive_seed(self.seed, epoch, purpose))


def training_prompt_indices(seed: int, epoch: int, n_prompts: int, n: int) -> np.ndarray:
    """Which of a task's ``n_prompts`` training prompts each of an epoch's ``n`` draws uses (uniform,
    with replacement, from the (seed, epoch, "prompts") stream): ``Method.draw_prompts``, and what
    lets a finished run's ledger be split by prompt (scripts/prompt_labels.py)."""
    return np.random.default_rng(derive_seed(seed, epoch, "prompts")).integers(n_prompts, size=n)


@dataclass
class Batch:
    """One epoch's sampled images with what produced them."""

    traj: Trajectory
    prompts: list[Any]  # hero_bench.tasks.Prompt, one per image (text + oracle metadata)
    groups: list[int] | None = None  # D3PO: group id per image (images of a group share z_T and prompt)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]

    @property
    def metadata(self) -> list[Any]:
        return [p.metadata for p in self.prompts]


class Method:
    """Base class of the methods; each row of the method table (``hero_bench/methods.py``) names one."""

    name: ClassVar[str] = "?"
    trains: ClassVar[bool] = True
    """False = no feedback is asked and no weights change (the `base` method); as the method's row
    says (no settings section = does not train)."""
    min_batch: ClassVar[int] = 1
    """Smallest batch the method's feedback protocol accepts; a budget remainder below it is left unspent."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    # -- sizes ------------------------------------------------------------------------------
    def images_per_epoch(self) -> int:
        raise NotImplementedError

    def batch_size(self, remaining: int) -> int:
        """Images to sample (and have labelled) this epoch: a full epoch, or what the budget allows."""
        n = min(self.images_per_epoch(), remaining)
        return n if n >= self.min_batch else 0

    def optimizer_steps(self, n_images: int) -> str:
        """Optimizer steps an epoch of ``n_images`` makes (a string: D3PO's depends on the labels)."""
        return "0"

    # -- one epoch --------------------------------------------------------------------------
    def sample(self, epoch: int, n: int) -> Batch:
        raise NotImplementedError

    def label(self, epoch: int, batch: Batch) -> Any:
        raise NotImplementedError

    def update(self, epoch: int, batch: Batch, feedback: Any) -> dict[str, float]:
        raise NotImplementedError

    # -- checkpoint -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # -- helpers shared by the methods ------------------------------------------------------
    def draw_prompts(self, epoch: int, n: int) -> list[Any]:
        """``n`` training prompts drawn uniformly with replacement from the task's train prompts."""
        prompts = self.ctx.task.train_prompts
        return [prompts[i] for i in training_prompt_indices(self.ctx.seed, epoch, len(prompts), n)]

    def gaussian_noise(self, epoch: int, n: int) -> torch.Tensor:
        """``n`` initial latents z_T ~ N(0, I) from this epoch's noise stream."""
        return initial_noise(self.ctx.backbone, n, self.ctx.generator(epoch, "noise"))

    def sample_batch(self, epoch: int, prompts: Sequence[Any], z_T: torch.Tensor,
                     groups: list[int] | None = None) -> Batch:
        """Run the shared sampler (DDIM η, CFG, per-step log-probs) from ``z_T``."""
        traj = sample_trajectories(self.ctx.backbone, [p.text for p in prompts], z_T, self.ctx.sampler,
                                   self.ctx.generator(epoch, "sampler"))
        return Batch(traj=traj, prompts=list(prompts), groups=groups)


def optimizer_state(optimizer: torch.optim.Optimizer, warmup: Any) -> dict:
    """A LoRA optimizer's checkpoint entries, with its warmup's position when it has one
    (``kernels.add_warmup``): resuming mid-warmup must continue the same learning-rate ramp."""
    state = {"optimizer": optimizer.state_dict()}
    if warmup is not None:
        state["warmup"] = warmup.state_dict()
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, warmup: Any, state: dict) -> None:
    optimizer.load_state_dict(state["optimizer"])
    if warmup is not None:
        warmup.load_state_dict(state["warmup"])


class PPOMethod(Method):
    """A method that trains the LoRA weights with the shared PPO-clip pass on per-image advantages
    (DDPO, HERO).  Its config has ``images_per_epoch`` and a ``ppo`` section (``kernels.PPOConfig``),
    which fixes the LoRA optimizer and every PPO setting; only how advantages are made differs."""

    def __init__(self, ctx: RunContext, cfg: Any):
        super().__init__(ctx)
        self.cfg = cfg
        ppo = cfg.ppo
        self.optimizer = make_adamw(ctx.lora_params, ppo.lr, ppo.weight_decay, (ppo.adam_beta1, ppo.adam_beta2),
                                    ppo.adam_eps)
        self.warmup = add_warmup(self.optimizer, ppo.warmup_steps)

    def images_per_epoch(self) -> int:
        return self.cfg.images_per_epoch

    def optimizer_steps(self, n_images: int) -> str:
        steps = str(ppo_optimizer_steps(n_images, self.cfg.ppo))
        return steps if self.cfg.ppo.target_kl is None else f"at most {steps}"

    def ppo_step(self, epoch: int, traj: Trajectory, advantages: np.ndarray,
                 ppo: PPOConfig | None = None, kl_weights: np.ndarray | None = None) -> dict[str, float]:
        """Clip ``advantages`` to ±ppo.adv_clip and run the PPO-clip pass over ``traj`` (its
        shuffles draw from this epoch's "ppo" stream); returns the pass's metrics.  ``ppo`` replaces
        the method's PPO settings for this pass only (the optimizer stays the method's);
        ``kl_weights`` gives each trajectory its own β of the KL to the pretrained model."""
        ppo = self.cfg.ppo if ppo is None else ppo
        advantages = clip_advantages(advantages, ppo.adv_clip)
        weights = None if kl_weights is None else torch.from_numpy(np.asarray(kl_weights, dtype=np.float32))
        return ppo_update(self.ctx.backbone, traj, torch.from_numpy(advantages).float(), self.ctx.lora_params,
                          self.optimizer, ppo, self.ctx.sampler, self.ctx.generator(epoch, "ppo"),
                          kl_weights=weights)


class Base(Method):
    """The pretrained model: no feedback, no training; evaluated once at feedback 0."""

    name = "base"
    trains = False

    def images_per_epoch(self) -> int:
        return 0
