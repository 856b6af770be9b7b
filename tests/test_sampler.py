"""The trajectory sampler: parity with diffusers' pipeline, log-prob replay, determinism, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hero_bench.diffusion.backbone import load_backbone
from hero_bench.diffusion.lora import add_lora
from hero_bench.diffusion.sampler import (
    SamplerConfig,
    Trajectory,
    initial_noise,
    sample_trajectories,
    step_log_prob,
)
from hero_bench.errors import ConfigError

from conftest import NET_RTOL

PROMPTS = ["a red circle", "two blue squares", "a red circle", "a hand with five fingers"]


def sample(backbone, seed: int, cfg: SamplerConfig, prompts=PROMPTS) -> Trajectory:
    generator = torch.Generator().manual_seed(seed)
    return sample_trajectories(backbone, prompts, initial_noise(backbone, len(prompts), generator), cfg, generator)


def test_images_match_diffusers_stable_diffusion_pipeline(tiny_backbone):
    from diffusers import StableDiffusionPipeline

    bb = tiny_backbone
    pipe = StableDiffusionPipeline(
        vae=bb.vae, text_encoder=bb.text_encoder, tokenizer=bb.tokenizer, unet=bb.unet,
        scheduler=bb.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    cfg = SamplerConfig(steps=3, eta=1.0, guidance_scale=5.0)
    ours = sample(bb, 7, cfg)
    # the pipeline draws z_T and then each step's noise from the generator in the same order as we do
    expected = pipe(
        PROMPTS, num_inference_steps=3, guidance_scale=5.0, eta=1.0,
        generator=torch.Generator().manual_seed(7), output_type="np",
    ).images
    expected_uint8 = (expected * 255).round().astype(np.uint8)
    # another path (the pipeline encodes all 4 prompts, we encode the 3 distinct ones; its own step
    # code): latents may differ by ~3 steps x CFG 9 x |eps| 1.5 x NET_RTOL = 4e-3, which the VAE
    # turns into < 0.4 of a grey level (measured gain 78 levels per unit latent), so rounding to
    # uint8 moves a pixel by at most 1 (measured: bitwise equal here)
    assert np.abs(ours.images.astype(int) - expected_uint8.astype(int)).max() <= 1


def test_trajectory_layout(tiny_backbone):
    cfg = SamplerConfig(steps=3)
    traj = sample(tiny_backbone, 0, cfg)
    b, n = len(PROMPTS), 3
    assert len(traj) == b and traj.prompts == PROMPTS
    assert traj.latents.shape == (b, n + 1, 4, 16, 16)
    assert torch.equal(traj.latents[:, 0], traj.z_T)
    assert torch.equal(traj.final_latents, traj.latents[:, -1])
    assert traj.timesteps.tolist() == [667, 334, 1]  # SD 1.5 "leading" spacing with steps_offset 1
    assert traj.log_probs.shape == (b, n) and torch.isfinite(traj.log_probs).all()
    assert traj.images.shape == (b, 32, 32, 3) and traj.images.dtype == np.uint8
    assert traj.prompt_embeds.shape == (b, 77, 32) and traj.negative_embeds.shape == (1, 77, 32)
    # identical prompts share one embedding computed once
    assert torch.equal(traj.prompt_embeds[0], traj.prompt_embeds[2])
    # the sampler encodes the 3 distinct prompts, encode_prompts all 4: another batch (other GEMM
    # blocking, a prompt in another row), so the text encoder's relative NET_RTOL, not bitwise
    torch.testing.assert_close(traj.prompt_embeds, tiny_backbone.encode_prompts(PROMPTS), rtol=NET_RTOL, atol=NET_RTOL)
    # bitwise: the sampler decoded the same 4 latents as one batch (batch_size 64: one chunk)
    np.testing.assert_array_equal(traj.images, tiny_backbone.decode(traj.final_latents))

    sub = traj.select([3, 1])
    assert sub.prompts == [PROMPTS[3], PROMPTS[1]]
    assert torch.equal(sub.latents, traj.latents[[3, 1]]) and np.array_equal(sub.images, traj.images[[3, 1]])
    assert len(traj.select(2)) == 1 and len(traj.select(np.array([True, False, True, False]))) == 2
    joined = Trajectory.concat([traj.select(slice(0, 2)), traj.select(slice(2, 4))])
    assert joined.prompts == traj.prompts and torch.equal(joined.log_probs, traj.log_probs)


def test_same_seed_same_trajectory_different_seed_different(tiny_backbone):
    cfg = SamplerConfig(steps=2)
    a, b, c = sample(tiny_backbone, 3, cfg), sample(tiny_backbone, 3, cfg), sample(tiny_backbone, 4, cfg)
    # bitwise: the same operations on the same batches in one process, and the same RNG draws
    assert torch.equal(a.latents, b.latents) and torch.equal(a.log_probs, b.log_probs)
    assert np.array_equal(a.images, b.images)
    assert not torch.allclose(a.latents[:, 1:], c.latents[:, 1:])


def test_chunking_by_batch_size_does_not_change_the_draws(tiny_backbone):
    whole = sample(tiny_backbone, 5, SamplerConfig(steps=2, batch_size=64))
    chunked = sample(tiny_backbone, 5, SamplerConfig(steps=2, batch_size=3))
    # the same draws, but UNet forwards on batches of 6 + 2 rows instead of 8 (CFG doubles them):
    # other conv/GEMM blocking, so each prediction differs by up to NET_RTOL (relative, |eps| <= 1.5
    # here). CFG (w = 5) multiplies that by |1 - w| + |w| = 9, step 1 (t 501 -> 1) maps an eps error
    # to x with gain 1.6 and step 2 passes x on with gain 1.0 (its eps gain is 0.02): |dx| <= 2e-3.
    # Measured 1e-5..2e-5 across thread counts and AVX-512/AVX2/SSE kernels; a prompt misaligned
    # between chunks moves x by 0.45, per-chunk noise draws by ~0.1.
    torch.testing.assert_close(chunked.latents, whole.latents, rtol=0, atol=1.6 * 9 * 1.5 * NET_RTOL)
    # x' - mean = std * z in both paths (same z), so a log-prob differs only by the round-off of
    # x' = mean + std * z: per element <= 2 eps |x| / std ~ 1e-4 (|x| <= 8.5, std 0.02), averaged over
    # 1024 independent elements -> ~3e-6 (measured <= 2.4e-7)
    torch.testing.assert_close(chunked.log_probs, whole.log_probs, rtol=1e-5, atol=1e-5)


def test_replayed_log_probs_give_unit_ratios_with_lora_and_cfg(tiny_backbone_dir):
    bb = load_backbone(str(tiny_backbone_dir))  # private copy: LoRA is attached
    params = add_lora(bb.unet, seed=0)
    with torch.no_grad():  # a non-zero adapter, so the replay really runs through LoRA
        g = torch.Generator().manual_seed(1)
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    cfg = SamplerConfig(steps=4, guidance_scale=5.0)
    traj = sample(bb, 11, cfg)
    # replay every step with a different timestep order per sample, as training does
    perm = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(i)) for i in range(len(traj))])
    rows = torch.arange(len(traj))
    for k in range(4):
        idx = perm[:, k]
        new = step_log_prob(
            bb, traj.prompt_embeds, traj.negative_embeds, traj.latents[rows, idx], traj.timesteps[idx],
            traj.latents[rows, idx + 1], cfg,
        )
        ratio = torch.exp(new - traj.log_probs[rows, idx])
        # the replay runs the same batch (4 rows, CFG: 8) through the same kernels as sampling, only
        # with per-sample timesteps and autograd on: bitwise equal on every kernel set tried; 1e-5
        # leaves room for round-off (see test_chunking...: ~3e-6 from re-rounding x' - mean) and
        # stays 10x inside PPO's clip range 1e-4, which is what a replay must respect
        torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-5)
        assert new.requires_grad
    new.sum().backward()
    assert all(p.grad is not None for p in params)
    assert all(p.grad is None for name, p in bb.unet.named_parameters() if ".lora_" not in name)


def test_use_clipped_model_output_reaches_sampling_and_replay(tiny_backbone_dir):
    from diffusers import DDIMScheduler

    bb = load_backbone(str(tiny_backbone_dir))  # private copy: its scheduler is replaced
    # a tight clip, so that x̂0 is clipped at every step (the tiny model's scheduler does not clip)
    bb.scheduler = DDIMScheduler.from_config(bb.scheduler.config, clip_sample=True, clip_sample_range=0.05)
    plain_cfg = SamplerConfig(steps=3, eta=0.5)
    cfg = SamplerConfig(steps=3, eta=0.5, use_clipped_model_output=True)
    plain, traj = sample(bb, 2, plain_cfg), sample(bb, 2, cfg)
    assert torch.equal(plain.z_T, traj.z_T)  # the same draws; only the steps differ
    assert not torch.allclose(plain.latents[:, -1], traj.latents[:, -1], rtol=1e-3, atol=1e-3)
    rows, k = torch.arange(len(traj)), 1
    args = (bb, traj.prompt_embeds, traj.negative_embeds, traj.latents[:, k], traj.timesteps[k].expand(len(traj)),
            traj.latents[:, k + 1])
    # the replay re-derives ε̂ as the sampler did: unit ratios (the same batch and kernels as above)
    torch.testing.assert_close(step_log_prob(*args, cfg), traj.log_probs[rows, k], rtol=0, atol=1e-5)
    # a replay that keeps the unclipped ε̂ scores the step as another Gaussian's
    assert not torch.allclose(step_log_prob(*args, plain_cfg), traj.log_probs[rows, k], rtol=0, atol=1e-3)


def test_guidance_changes_the_prediction(tiny_backbone):
    traj_w5 = sample(tiny_backbone, 2, SamplerConfig(steps=2, guidance_scale=5.0))
    traj_w1 = sample(tiny_backbone, 2, SamplerConfig(steps=2, guidance_scale=1.0))
    assert torch.equal(traj_w5.z_T, traj_w1.z_T)
    assert not torch.allclose(traj_w5.latents[:, 1], traj_w1.latents[:, 1])


def test_bad_inputs_are_rejected(tiny_backbone):
    with pytest.raises(ConfigError, match="steps"):
        SamplerConfig(steps=0)
    with pytest.raises(ConfigError, match="eta"):
        SamplerConfig(eta=-1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        SamplerConfig(batch_size=0)
    z = initial_noise(tiny_backbone, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="z_T has shape"):
        sample_trajectories(tiny_backbone, PROMPTS, z, SamplerConfig(steps=1), torch.Generator())
