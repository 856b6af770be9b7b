"""The DDIM step with log-prob against diffusers' DDIMScheduler.step and an independent Gaussian density."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from hero_bench.diffusion.ddim import ddim_step_mean_std, ddim_step_with_logprob, step_kl
from hero_bench.diffusion.tiny import SD15_SCHEDULER

STEPS = 20
SHAPE = (3, 4, 8, 8)
# Our step vs diffusers': the same pointwise float32 formulas (no BLAS, no reductions but the log-prob
# mean over 256 elements), each operation correctly rounded on any CPU; only the operation order may
# differ. A few roundings of intermediates up to |x0| ≈ 11·(|x| + |eps|) ≈ 50 (1/sqrt(ᾱ_t) = 11 at
# t = 951; randn inputs) are ~2e-5, scaled down by sqrt(ᾱ_t') before they reach the result: 1e-5 abs
# + 1e-5 rel covers them. Measured bitwise equal with AVX-512, AVX2 and SSE kernels, 1 or 2 threads.


def make_scheduler(**overrides) -> DDIMScheduler:
    scheduler = DDIMScheduler(**{**SD15_SCHEDULER, **overrides})
    scheduler.set_timesteps(STEPS)
    return scheduler


def randn(seed: int, shape=SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def timestep_cases():
    timesteps = make_scheduler().timesteps.tolist()
    return [timesteps[0], timesteps[7], timesteps[-2], timesteps[-1]]  # first, middle, last two


@pytest.mark.parametrize("timestep", timestep_cases())
@pytest.mark.parametrize("eta", [1.0, 0.5])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_matches_diffusers_step_given_the_same_noise(timestep, eta, prediction_type):
    scheduler = make_scheduler(prediction_type=prediction_type)
    model_output, sample, noise = randn(1), randn(2), randn(3)
    expected = scheduler.step(model_output, timestep, sample, eta=eta, variance_noise=noise).prev_sample
    ours, _ = ddim_step_with_logprob(scheduler, model_output, timestep, sample, eta=eta, variance_noise=noise)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_clip_sample_config_is_respected():
    scheduler = make_scheduler(clip_sample=True, clip_sample_range=0.5)
    model_output, sample, noise = randn(1) * 3, randn(2) * 3, randn(3)
    t = scheduler.timesteps[3]
    expected = scheduler.step(model_output, t, sample, eta=1.0, variance_noise=noise).prev_sample
    ours, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=1.0, variance_noise=noise)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    unclipped, _ = ddim_step_with_logprob(make_scheduler(), model_output, t, sample, eta=1.0, variance_noise=noise)
    assert not torch.allclose(ours, unclipped)


@pytest.mark.parametrize("timestep", timestep_cases()[:3])
@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_use_clipped_model_output_matches_diffusers(timestep, eta, prediction_type):
    # inputs scaled by 3 and a clip range of 0.5, so that x̂0 is clipped in most elements
    scheduler = make_scheduler(prediction_type=prediction_type, clip_sample=True, clip_sample_range=0.5)
    model_output, sample, noise = randn(1) * 3, randn(2) * 3, randn(3)
    expected = scheduler.step(model_output, timestep, sample, eta=eta, variance_noise=noise,
                              use_clipped_model_output=True).prev_sample
    ours, _ = ddim_step_with_logprob(scheduler, model_output, timestep, sample, eta=eta, variance_noise=noise,
                                     use_clipped_model_output=True)
    # the re-derived ε̂ divides by sqrt(1 - ᾱ_t) >= 0.03 at these timesteps, which scales the round-off
    # of the clipped x̂0 (|x̂0| <= 0.5, ~3e-8) to ~1e-6: inside the tolerance of the test above
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    default, _ = ddim_step_with_logprob(scheduler, model_output, timestep, sample, eta=eta, variance_noise=noise)
    assert not torch.allclose(ours, default, rtol=1e-3, atol=1e-3)


def test_use_clipped_model_output_does_nothing_without_a_clip():
    scheduler = make_scheduler()
    model_output, sample, noise = randn(1) * 3, randn(2) * 3, randn(3)
    t = scheduler.timesteps[3]
    plain, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=0.5, variance_noise=noise)
    flagged, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=0.5, variance_noise=noise,
                                        use_clipped_model_output=True)
    assert torch.equal(plain, flagged)  # bitwise: the same operations (no re-derivation without a clip)


@pytest.mark.parametrize("timestep", timestep_cases())
def test_log_prob_is_the_mean_gaussian_log_density(timestep):
    scheduler = make_scheduler()
    eta = 1.0
    model_output, sample, noise = randn(4), randn(5), randn(6)
    # the step's mean is diffusers' step with zero noise; its std is eta * sqrt(DDIM variance)
    mean = scheduler.step(model_output, timestep, sample, eta=eta, variance_noise=torch.zeros(SHAPE)).prev_sample
    prev_t = timestep - 1000 // STEPS
    std = eta * math.sqrt(float(scheduler._get_variance(torch.tensor(timestep), torch.tensor(prev_t))))
    x_prev = mean + std * noise
    expected = torch.distributions.Normal(mean, std).log_prob(x_prev).mean(dim=(1, 2, 3))

    sampled, log_prob = ddim_step_with_logprob(scheduler, model_output, timestep, sample, eta=eta, variance_noise=noise)
    torch.testing.assert_close(sampled, x_prev, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)
    # evaluating a given prev_sample returns it unchanged and scores it the same way
    other = randn(7)
    returned, other_lp = ddim_step_with_logprob(scheduler, model_output, timestep, sample, eta=eta, prev_sample=other)
    assert torch.equal(returned, other)  # a pure copy
    torch.testing.assert_close(
        other_lp, torch.distributions.Normal(mean, std).log_prob(other).mean(dim=(1, 2, 3)), rtol=1e-5, atol=1e-5
    )


def test_per_sample_timesteps_equal_separate_scalar_steps():
    scheduler = make_scheduler()
    timesteps = torch.tensor(timestep_cases()[:3])
    model_output, sample, prev = randn(8), randn(9), randn(10)
    _, batched = ddim_step_with_logprob(scheduler, model_output, timesteps, sample, prev_sample=prev)
    for i, t in enumerate(timesteps.tolist()):
        _, single = ddim_step_with_logprob(scheduler, model_output[i : i + 1], t, sample[i : i + 1], prev_sample=prev[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single)  # pointwise ops per row: bitwise in fact
    with pytest.raises(ValueError, match="timestep must be a scalar or have shape"):
        ddim_step_with_logprob(scheduler, model_output, timesteps[:2], sample, prev_sample=prev)


def test_generator_draws_are_reproducible_and_gradients_flow_only_through_the_mean():
    scheduler = make_scheduler()
    t = scheduler.timesteps[5]
    model_output = randn(11).requires_grad_(True)
    sample = randn(12)
    a, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, generator=torch.Generator().manual_seed(0))
    b, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, generator=torch.Generator().manual_seed(0))
    c, _ = ddim_step_with_logprob(scheduler, model_output, t, sample, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)  # same ops, same RNG draws: bitwise
    assert not a.requires_grad  # the stored next latent is detached
    _, log_prob = ddim_step_with_logprob(scheduler, model_output, t, sample, prev_sample=a)
    log_prob.sum().backward()
    assert model_output.grad is not None and model_output.grad.abs().sum() > 0


def test_eta_zero_is_deterministic_ddim_with_undefined_log_prob():
    scheduler = make_scheduler()
    t = scheduler.timesteps[2]
    model_output, sample = randn(13), randn(14)
    expected = scheduler.step(model_output, t, sample, eta=0.0).prev_sample
    ours, log_prob = ddim_step_with_logprob(scheduler, model_output, t, sample, eta=0.0)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert torch.isnan(log_prob).all()


def test_scheduler_without_timesteps_is_rejected():
    scheduler = DDIMScheduler(**SD15_SCHEDULER)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        ddim_step_with_logprob(scheduler, randn(1), 501, randn(2))


@pytest.mark.parametrize("timestep", timestep_cases())
def test_step_kl_is_the_mean_kl_of_the_two_step_gaussians(timestep):
    scheduler = make_scheduler()
    sample = randn(13)
    mean_a, std = ddim_step_mean_std(scheduler, randn(14), timestep, sample, eta=1.0)
    mean_b, std_b = ddim_step_mean_std(scheduler, randn(15), timestep, sample, eta=1.0)
    assert torch.equal(std, std_b)  # the std is the schedule's, not the model's
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean_a, std), torch.distributions.Normal(mean_b, std)).mean(dim=(1, 2, 3))
    torch.testing.assert_close(step_kl(mean_a, mean_b, std), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(step_kl(mean_a, mean_a, std), torch.zeros(SHAPE[0]))
