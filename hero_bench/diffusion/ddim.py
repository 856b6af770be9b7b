"""One stochastic DDIM step with the Gaussian log-probability of its result.

This is the step every method shares (docs/algorithms.md §1.1), written from the equations:

    x̂0   = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t)            (or from v / x0 predictions)
    σ²   = (1 - ᾱ_t') / (1 - ᾱ_t) · (1 - ᾱ_t / ᾱ_t'),      t' = t - num_train_timesteps / steps
    std  = η σ
    μ    = sqrt(ᾱ_t') x̂0 + sqrt(1 - ᾱ_t' - std²) ε̂
    x_t' = μ + std z,  z ~ N(0, I)
    log p(x_t') = mean over latent elements of  -(x_t' - μ)² / (2 std²) - log std - log sqrt(2π)

Differences from diffusers' ``DDIMScheduler.step`` (whose sample it reproduces given the same noise):
the timestep may be a per-sample tensor ``[B]`` (training replays a different timestep for every
sample), the arithmetic runs in float32 whatever the model's dtype, and the log-prob is returned.
The log-prob is a MEAN over elements, not a sum, so that the published PPO clip range (1e-4)
transfers.  With η = 0 the step is deterministic and its log-prob is undefined (NaN).
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values ``[B]`` to broadcast against ``like`` ``[B, ...]``."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def _alphas(scheduler, timestep, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ᾱ_t and ᾱ_t' per sample, for a scalar timestep or a per-sample timestep tensor."""
    if scheduler.num_inference_steps is None:
        raise RuntimeError("the scheduler has no inference steps; call scheduler.set_timesteps(steps) first")
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)
    t = torch.as_tensor(timestep, device=device).long()
    if t.ndim == 0:
        t = t.expand(batch)
    elif t.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or have shape [{batch}], got {tuple(t.shape)}")
    prev_t = t - stride
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=device, dtype=torch.float32)
    alpha_prev = torch.where(prev_t >= 0, alphas_cumprod[prev_t.clamp(min=0)], final)
    return alphas_cumprod[t], alpha_prev


def _predicted_x0_and_eps(scheduler, model_output, sample, alpha_t, use_clipped_model_output=False):
    beta_t = 1 - alpha_t
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        x0 = (sample - beta_t.sqrt() * model_output) / alpha_t.sqrt()
        eps = model_output
    elif kind == "v_prediction":
        x0 = alpha_t.sqrt() * sample - beta_t.sqrt() * model_output
        eps = alpha_t.sqrt() * model_output + beta_t.sqrt() * sample
    elif kind == "sample":
        x0 = model_output
        eps = (sample - alpha_t.sqrt() * x0) / beta_t.sqrt()
    else:
        raise ValueError(f"scheduler prediction_type {kind!r} is not supported; accepted: epsilon, v_prediction, sample")
    if scheduler.config.thresholding:
        x0 = scheduler._threshold_sample(x0)  # dynamic thresholding, as the scheduler would do
    elif scheduler.config.clip_sample:
        limit = scheduler.config.clip_sample_range
        x0 = x0.clamp(-limit, limit)
    else:
        return x0, eps
    if use_clipped_model_output:
        # ε̂ that, with the clipped (or thresholded) x̂0, adds up to x_t again.  Without it the step's
        # mean combines a clipped x̂0 with the unclipped ε̂; fresh noise hides the mismatch at η = 1,
        # but at η < 1 it compounds over the steps (docs/methods.md, "Sampling below η = 1").
        eps = (sample - alpha_t.sqrt() * x0) / beta_t.sqrt()
    return x0, eps


def ddim_step_mean_std(
    scheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    use_clipped_model_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian of one DDIM step from ``sample``: its mean ``[B, ...]`` and std (broadcastable),
    in float32 and differentiable through ``model_output``.  ``use_clipped_model_output`` as in
    diffusers' ``DDIMScheduler.step``: when the scheduler clips (or thresholds) x̂0, re-derive ε̂
    from the clipped x̂0."""
    batch = sample.shape[0]
    device = sample.device
    model_output = model_output.float()
    sample = sample.float()
    alpha_t, alpha_prev = (_broadcast(a, sample) for a in _alphas(scheduler, timestep, batch, device))

    x0, eps = _predicted_x0_and_eps(scheduler, model_output, sample, alpha_t, use_clipped_model_output)
    variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
    std = eta * variance.sqrt()
    # clamp: guards eta > 1 where the direction coefficient would go negative
    mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - std**2).clamp(min=0).sqrt() * eps
    return mean, std


def gaussian_step_log_prob(prev_sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density ``[B]`` of ``prev_sample`` under N(mean, std²), a MEAN over latent elements."""
    log_prob = -((prev_sample - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return log_prob.mean(dim=tuple(range(1, log_prob.ndim)))


def step_kl(mean: torch.Tensor, other_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL ``[B]`` between two step Gaussians of the same std, N(mean, std²) ‖ N(other_mean, std²):
    (mean − other_mean)² / (2 std²), a MEAN over latent elements like the log-prob, so that it is on
    the scale of the PPO ratio's log (docs/algorithms.md §2.5)."""
    kl = (mean - other_mean) ** 2 / (2 * std**2)
    return kl.mean(dim=tuple(range(1, kl.ndim)))


def ddim_step_with_logprob(
    scheduler,
    model_output: torch.Tensor,
    timestep: int | torch.Tensor,
    sample: torch.Tensor,
    eta: float = 1.0,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    variance_noise: torch.Tensor | None = None,
    use_clipped_model_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from ``sample`` at ``timestep``; returns ``(prev_sample, log_prob[B])`` in float32.

    ``prev_sample`` given: its log-prob under the step's Gaussian (the stored value is detached, so
    gradients flow only through the mean).  Not given: a new sample, with noise from
    ``variance_noise`` when given, otherwise drawn from ``generator`` (on the generator's device, so
    a CPU generator gives the same draws on any device).  ``timestep`` is a scalar or a tensor ``[B]``.
    ``use_clipped_model_output``: see ``ddim_step_mean_std``.
    """
    device = sample.device
    mean, std = ddim_step_mean_std(scheduler, model_output, timestep, sample, eta, use_clipped_model_output)

    if prev_sample is None:
        if eta > 0:
            if variance_noise is None:
                gen_device = generator.device if generator is not None else device
                variance_noise = torch.randn(sample.shape, generator=generator, device=gen_device)
            prev_sample = mean + std * variance_noise.to(device=device, dtype=torch.float32)
        else:
            prev_sample = mean
    prev_sample = prev_sample.detach().float()
    return prev_sample, gaussian_step_log_prob(prev_sample, mean, std)
