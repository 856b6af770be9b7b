"""Trajectory sampling with per-step log-probs, and re-evaluating a stored step under the current weights.

One implementation serves every method: ``sample_trajectories`` runs DDIM with η and classifier-free
guidance from explicit initial noise and records the whole chain; ``step_log_prob`` recomputes one
step's log-prob differentiably (LoRA weights get gradients) for PPO/DPO updates.

Determinism: all random draws come from the ``generator`` argument.  The steps run in step-major
order (every chunk of ``batch_size`` images advances one step before the next step starts) and each
step draws its noise for the whole batch at once, so the random draws do not depend on
``batch_size``; only floating-point round-off of batched kernels can differ between chunkings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hero_bench.diffusion.backbone import Backbone
from hero_bench.diffusion.ddim import ddim_step_mean_std, ddim_step_with_logprob, gaussian_step_log_prob
from hero_bench.errors import ConfigError


@dataclass(frozen=True)
class SamplerConfig:
    """How images are sampled (and how stored steps are re-evaluated)."""

    steps: int = 20
    """Number of DDIM denoising steps."""
    eta: float = 1.0
    """DDIM η: 1.0 makes each step a DDPM-like Gaussian (needed for log-probs); 0 is deterministic
    (the images are plain DDIM, the log-probs are undefined and come back as NaN)."""
    guidance_scale: float = 5.0
    """Classifier-free guidance weight w in ε_u + w (ε_c − ε_u); 1.0 = conditional prediction only."""
    batch_size: int = 64
    """Images per UNet forward (a memory limit only: it does not change the random draws)."""
    negative_prompt: str = ""
    """Prompt of the unconditional branch of classifier-free guidance."""
    use_clipped_model_output: bool = False
    """When the backbone's scheduler clips x̂0 (``clip_sample``; the shipped ShapesWorld model does),
    re-derive ε̂ from the clipped x̂0 in every step, as diffusers' ``DDIMScheduler.step(...,
    use_clipped_model_output=True)``.  False (diffusers' default) keeps the unclipped ε̂, which matters
    less at η = 1 (fresh noise replaces most of it) but breaks deterministic sampling (docs/methods.md, "Sampling below η = 1").
    No effect on a scheduler that does not clip (Stable Diffusion 1.5)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"sampler.steps must be at least 1, got {self.steps}")
        if self.eta < 0:
            raise ConfigError(f"sampler.eta must be >= 0, got {self.eta}")
        if self.batch_size < 1:
            raise ConfigError(f"sampler.batch_size must be at least 1, got {self.batch_size}")


@dataclass
class Trajectory:
    """A batch of sampled denoising chains."""

    prompts: list[str]
    prompt_embeds: torch.Tensor  # [B, L, D]
    negative_embeds: torch.Tensor  # [1, L, D] (the negative prompt, shared)
    z_T: torch.Tensor  # [B, C, H, W]; the chain's first latent (a later state for a continued chain)
    latents: torch.Tensor  # [B, N+1, C, H, W]; latents[:, 0] = z_T, latents[:, -1] = final x_0
    timesteps: torch.Tensor  # [N] long, descending
    log_probs: torch.Tensor  # [B, N]; log_probs[:, i] = log p(latents[:, i+1] | latents[:, i])
    images: np.ndarray  # uint8 [B, H, W, 3]

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def final_latents(self) -> torch.Tensor:
        return self.latents[:, -1]

    def select(self, index) -> "Trajectory":
        """The sub-batch at ``index`` (int, slice, sequence of ints, boolean mask, or tensor)."""
        positions = torch.arange(len(self))[index if not isinstance(index, np.ndarray) else torch.as_tensor(index)]
        positions = positions.reshape(-1)
        idx_np = positions.numpy()
        return Trajectory(
            prompts=[self.prompts[i] for i in idx_np],
            prompt_embeds=self.prompt_embeds[positions.to(self.prompt_embeds.device)],
            negative_embeds=self.negative_embeds,
            z_T=self.z_T[positions.to(self.z_T.device)],
            latents=self.latents[positions.to(self.latents.device)],
            timesteps=self.timesteps,
            log_probs=self.log_probs[positions.to(self.log_probs.device)],
            images=self.images[idx_np],
        )

    @staticmethod
    def concat(parts: Sequence["Trajectory"]) -> "Trajectory":
        """Join batches sampled with the same timesteps and negative prompt."""
        if not parts:
            raise ValueError("Trajectory.concat needs at least one trajectory")
        first = parts[0]
        for p in parts[1:]:
            if not torch.equal(p.timesteps, first.timesteps):
                raise ValueError("cannot concatenate trajectories sampled with different timesteps")
            if not torch.equal(p.negative_embeds, first.negative_embeds):
                raise ValueError("cannot concatenate trajectories sampled with different negative prompts")
        return Trajectory(
            prompts=[s for p in parts for s in p.prompts],
            prompt_embeds=torch.cat([p.prompt_embeds for p in parts]),
            negative_embeds=first.negative_embeds,
            z_T=torch.cat([p.z_T for p in parts]),
            latents=torch.cat([p.latents for p in parts]),
            timesteps=first.timesteps,
            log_probs=torch.cat([p.log_probs for p in parts]),
            images=np.concatenate([p.images for p in parts]),
        )


def initial_noise(backbone: Backbone, n: int, generator: torch.Generator) -> torch.Tensor:
    """Initial latents z_T ``[n, C, H, W]`` (float32), drawn on the generator's device then moved.

    Drawing on the generator's device means a CPU generator gives the same noise on every device.
    """
    noise = torch.randn((n, *backbone.latent_shape), generator=generator, device=generator.device)
    return (noise * backbone.scheduler.init_noise_sigma).to(backbone.device)


def set_timesteps(backbone: Backbone, steps: int) -> torch.Tensor:
    """Configure the backbone's scheduler for ``steps`` DDIM steps; returns the timesteps (descending)."""
    scheduler = backbone.scheduler
    if steps > scheduler.config.num_train_timesteps:
        raise ConfigError(
            f"sampler.steps={steps} exceeds the scheduler's {scheduler.config.num_train_timesteps} training timesteps"
        )
    if scheduler.num_inference_steps != steps:
        scheduler.set_timesteps(steps)
    return scheduler.timesteps.to(backbone.device)


def encode_unique(backbone: Backbone, prompts: Sequence[str]) -> torch.Tensor:
    """Prompt embeddings ``[B, L, D]``, running the text encoder once per distinct prompt."""
    unique = list(dict.fromkeys(prompts))
    embeds = backbone.encode_prompts(unique)
    where = {p: i for i, p in enumerate(unique)}
    return embeds[torch.tensor([where[p] for p in prompts], device=embeds.device)]


def cfg_embeddings(prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """The UNet's encoder states: ``[uncond; cond]`` (2B rows) with guidance, ``cond`` alone at w = 1."""
    if guidance_scale == 1.0:  # ε_u + 1·(ε_c − ε_u) = ε_c: the unconditional branch is not needed
        return prompt_embeds
    return torch.cat([negative_embeds.expand(prompt_embeds.shape[0], -1, -1), prompt_embeds])


def _guided(backbone: Backbone, latents, timestep, embeds, guidance_scale: float) -> torch.Tensor:
    dtype = backbone.dtype
    if guidance_scale == 1.0:
        out = backbone.unet(latents.to(dtype), timestep, encoder_hidden_states=embeds.to(dtype), return_dict=False)[0]
        return out.float()
    model_in = torch.cat([latents, latents]).to(dtype)
    t_in = torch.cat([timestep, timestep]) if timestep.ndim == 1 else timestep
    # DDIM's scale_model_input is the identity, so the latents go to the UNet as they are
    out = backbone.unet(model_in, t_in, encoder_hidden_states=embeds.to(dtype), return_dict=False)[0].float()
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def guided_noise_prediction(
    backbone: Backbone,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """The UNet's CFG-combined prediction (float32) from ONE forward on the [uncond; cond] batch."""
    embeds = cfg_embeddings(prompt_embeds, negative_embeds, guidance_scale)
    return _guided(backbone, latents, timestep, embeds, guidance_scale)


@torch.no_grad()
def sample_trajectories(
    backbone: Backbone,
    prompts: Sequence[str],
    z_T: torch.Tensor,
    cfg: SamplerConfig,
    generator: torch.Generator,
    progress: bool = False,
    start_step: int = 0,
) -> Trajectory:
    """Sample one denoising chain per prompt from the given initial noise ``z_T`` ``[B, C, H, W]``.

    With ``start_step`` k > 0, ``z_T`` is instead a state after k of the ``cfg.steps`` steps (a
    chain's ``latents[:, k]``) and the chain is continued from there: the trajectory holds the
    remaining steps only.  This is how the decision curve (hero_bench/noise_influence.py) branches
    one chain into several continuations with fresh per-step noise.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    batch = len(prompts)
    if batch == 0:
        raise ValueError("sample_trajectories needs at least one prompt")
    if tuple(z_T.shape) != (batch, *backbone.latent_shape):
        raise ValueError(
            f"z_T has shape {tuple(z_T.shape)}, expected {(batch, *backbone.latent_shape)} "
            f"({batch} prompts, latent shape {backbone.latent_shape})"
        )
    device = backbone.device
    if not 0 <= start_step < cfg.steps:
        raise ConfigError(f"start_step must lie in 0..{cfg.steps - 1} (the sampler has {cfg.steps} steps), "
                          f"got {start_step}")
    timesteps = set_timesteps(backbone, cfg.steps)[start_step:]
    prompt_embeds = encode_unique(backbone, prompts)
    negative_embeds = backbone.encode_prompts([cfg.negative_prompt])

    steps = len(timesteps)
    latents = torch.empty((batch, steps + 1, *backbone.latent_shape), device=device)
    log_probs = torch.empty((batch, steps), device=device)
    x = z_T.to(device=device, dtype=torch.float32)
    latents[:, 0] = x
    chunks = [slice(s, s + cfg.batch_size) for s in range(0, batch, cfg.batch_size)]
    iterator = enumerate(timesteps)
    if progress:
        iterator = tqdm(iterator, total=steps, desc="sampling", unit="step")
    # the UNet's encoder states per chunk, built once rather than at every step
    chunk_embeds = [cfg_embeddings(prompt_embeds[c], negative_embeds, cfg.guidance_scale) for c in chunks]
    for i, t in iterator:
        eps = torch.cat(
            [_guided(backbone, x[c], t, embeds, cfg.guidance_scale) for c, embeds in zip(chunks, chunk_embeds)]
        )
        noise = None
        if cfg.eta > 0:  # one draw for the whole batch: chunking never changes the random sequence
            noise = torch.randn(x.shape, generator=generator, device=generator.device)
        x, log_prob = ddim_step_with_logprob(backbone.scheduler, eps, t, x, cfg.eta, variance_noise=noise,
                                             use_clipped_model_output=cfg.use_clipped_model_output)
        latents[:, i + 1] = x
        log_probs[:, i] = log_prob

    images = np.concatenate([backbone.decode(x[c]) for c in chunks])
    return Trajectory(
        prompts=prompts,
        prompt_embeds=prompt_embeds,
        negative_embeds=negative_embeds,
        z_T=latents[:, 0].clone(),
        latents=latents,
        timesteps=timesteps,
        log_probs=log_probs,
        images=images,
    )


def step_distribution(
    backbone: Backbone,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    latents_t: torch.Tensor,
    timesteps_t: torch.Tensor,
    cfg: SamplerConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian of the denoising steps from ``latents_t`` at ``timesteps_t`` ``[B]``: its mean
    ``[B, ...]`` and std, with CFG applied exactly as when sampling; differentiable with respect to
    the UNet's trainable (LoRA) parameters.  One forward for the whole batch."""
    set_timesteps(backbone, cfg.steps)
    timesteps_t = torch.as_tensor(timesteps_t, device=backbone.device).long()
    if timesteps_t.ndim == 0:
        timesteps_t = timesteps_t.expand(latents_t.shape[0])
    eps = guided_noise_prediction(
        backbone, latents_t, timesteps_t, prompt_embeds, negative_embeds, cfg.guidance_scale
    )
    return ddim_step_mean_std(backbone.scheduler, eps, timesteps_t, latents_t, cfg.eta, cfg.use_clipped_model_output)


def step_log_prob(
    backbone: Backbone,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    latents_t: torch.Tensor,
    timesteps_t: torch.Tensor,
    next_latents: torch.Tensor,
    cfg: SamplerConfig,
) -> torch.Tensor:
    """Log-prob ``[B]`` of stored steps ``latents_t -> next_latents`` at ``timesteps_t`` ``[B]``.

    Differentiable with respect to the UNet's trainable (LoRA) parameters; CFG is applied exactly
    as when sampling.  Runs the whole batch in one forward (callers choose the training batch).
    """
    mean, std = step_distribution(backbone, prompt_embeds, negative_embeds, latents_t, timesteps_t, cfg)
    return gaussian_step_log_prob(next_latents.detach().float(), mean, std)
