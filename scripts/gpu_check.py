"""The paper tier at full size: one epoch of each method on a random SD-1.5-architecture model
(docs/performance.md, "Paper tier on a GPU").

Builds Stable Diffusion 1.5's architecture with RANDOM weights from configs (no download): the
UNet (block channels 320/640/1280/1280, two layers per block, cross-attention 768, 4×64×64
latents), the CLIP text encoder (12 layers, width 768, 12 heads) and the VAE (4 latent channels,
scale factor 8: 512×512 images).  The tokenizer is the tiny backbone's offline CLIP BPE
tokenizer; its ids are a subset of the text encoder's 49,408-entry vocabulary.  The model is
saved in diffusers format and loaded by the training code itself, so ``Run.setup`` attaches LoRA
rank 4 and the paper preset's dtype (float16 on CUDA) applies as in a real paper run.

Then, per method (HERO, DDPO, D3PO), ``hero_bench.profiling.profile_epoch`` runs one epoch with
the paper preset's images per epoch, denoising steps and batch sizes (``hero_bench.presets.paper``)
and the preset's evaluation (128 images), the task's oracle running on a test-sized model (the
CLIP judge on a random 3.4 M-parameter open_clip, as in ``tests/test_paper_oracles.py``; the hand
oracle is mediapipe's bundled models).  Random weights label nearly every image alike, so D3PO
breaks ties by the oracle's score and trains every pair of a group (an upper bound on its update
time).  Reported per method: wall and CPU seconds of the epoch and
of its phases, and the peak GPU memory (``torch.cuda.max_memory_allocated``) of that method alone.

Last, the sampler (``hero_bench.diffusion.sampler.sample_trajectories``, DDIM η = 1 with per-step
log-probs) against diffusers' own ``StableDiffusionPipeline`` built from the same components: the
same prompts, initial noise and per-step noise (replayed into diffusers' DDIM scheduler), the max
abs difference of the final latents and of the images, the log-probs of diffusers' chain
recomputed by ``step_log_prob`` against the sampler's, and the time of each.

    python scripts/gpu_check.py                           # full size, CUDA: results/bench/gpu_check.json
    python scripts/gpu_check.py --task hand               # the hand task's epoch sizes (128 / 1,001 images)
    python scripts/gpu_check.py --size reduced --device cpu --out /tmp/gpu_check_reduced.json

``--size reduced`` keeps the script runnable on a CPU: tiny channel counts, 64×64 images, 2 steps,
2 images per epoch (D3PO: one group of 2) and 2 evaluation images (``tests/test_gpu_check.py``).
The GPU figures are only as good as the synchronisation points of an epoch: every phase ends
with images or scalars copied to the host, so epoch and phase wall times are complete; the
per-component shares of the profile are not (CUDA kernels run asynchronously) and are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hero_bench.methods import get_method, trained_method_names
from hero_bench.provenance import cpu_model

METHODS = tuple(trained_method_names())
SIZES = ("full", "reduced")
TEXT_VOCAB = 49408
"""SD 1.5's CLIP vocabulary size (the text encoder's embedding table; the tokenizer uses a subset)."""
TINY_CLIP = "HeroBenchGpuCheckClip"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 4},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
"""The test-sized open_clip architecture of ``tests/test_paper_oracles.py`` (about 3.4 M parameters)."""
REDUCED_OVERRIDES = ("eval.n_images=2", "eval.batch_size=2", "sampler.batch_size=2", "d3po.group_size=2",
                     "d3po.groups_per_epoch=1", "hero.ppo.train_batch_size=2", "ddpo.ppo.train_batch_size=2",
                     "hero.triplet_passes=5", "hero.embedding_dim=64", "hero.head_hidden_dims=[64,32]",
                     "hero.head_out_dim=16")
"""What ``--size reduced`` changes in the paper preset besides the model: 2 images everywhere, and
HERO's embedding network (Table 7: 500 Adam passes over 2048/1024-wide layers) cut to 5 passes of
a narrow one."""
REDUCED_STEPS = 2
COMPARE_IMAGES = {"full": 4, "reduced": 2}
LATENT_TOLERANCE_FACTOR = 8
"""Latents tolerance = factor × eps(dtype) × steps × max(1, max |latent|): a rounding of the
latents' dtype per step (diffusers keeps its latents in the model's dtype, the sampler in float32)."""


def unet_kwargs(size: str) -> dict[str, Any]:
    if size == "full":  # SD 1.5's unet/config.json
        return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                    block_out_channels=(320, 640, 1280, 1280),
                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                      "DownBlock2D"),
                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
    return dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)


def vae_kwargs(size: str) -> dict[str, Any]:
    down, up = ("DownEncoderBlock2D",) * 4, ("UpDecoderBlock2D",) * 4
    if size == "full":  # SD 1.5's vae/config.json
        return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2,
                    block_out_channels=(128, 256, 512, 512), down_block_types=down, up_block_types=up)
    # four blocks as SD's: the same scale factor 8, so 64×64 images from 8×8 latents
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
                block_out_channels=(32, 32, 32, 32), down_block_types=down, up_block_types=up)


def text_kwargs(size: str) -> dict[str, Any]:
    if size == "full":  # SD 1.5's text_encoder/config.json (CLIP ViT-L/14's text tower)
        return dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    projection_dim=768, hidden_act="quick_gelu")
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                projection_dim=32, hidden_act="quick_gelu")


def build_model(size: str, out_dir: Path, seed: int = 0) -> dict[str, int]:
    """Save a random SD-1.5-architecture model (``size``) in diffusers format, float32 (the training
    code loads it in the run's dtype, as it loads SD 1.5); return the parameter counts."""
    from diffusers import StableDiffusionPipeline

    from hero_bench.diffusion.backbone import quiet_hf_progress
    from hero_bench.diffusion.tiny import build_components

    components = build_components(seed, unet=unet_kwargs(size), vae=vae_kwargs(size),
                                  text={"vocab_size": TEXT_VOCAB, **text_kwargs(size)})
    counts = {name: sum(p.numel() for p in components[name].parameters()) for name in ("unet", "vae", "text_encoder")}
    pipeline = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    with quiet_hf_progress():
        pipeline.save_pretrained(out_dir, safe_serialization=True)
    return counts


def tiny_clip_settings(folder: Path, device: str) -> dict[str, str]:
    """Save the test-sized open_clip model; the ``clip_judge`` / ``nsfw_judge`` settings that load it."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(TINY_CLIP, pretrained=None)
    ckpt = folder / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    return {"model_name": TINY_CLIP, "pretrained": str(ckpt), "model_config_dir": str(folder), "device": device}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else None


def epoch(method: str, task: str, size: str, backbone: Path, device: str, dtype: str, run_dir: Path) -> dict:
    """One profiled epoch of ``method`` at the paper preset's sizes (``--size reduced``: 2 images)."""
    from hero_bench.presets import build_run_config
    from hero_bench.profiling import profile_epoch

    preset = build_run_config("paper", task, method, device=device, dtype=dtype)
    overrides = [f"device={device}", f"dtype={dtype}"]
    section = get_method(method).section  # its settings: D3PO's groups, or a PPO method's images_per_epoch
    if section == "d3po":
        # random weights and a random judge label (nearly) every image alike, and D3PO trains only on
        # pairs of different classes: break ties by the oracle's score so the update runs.  Every
        # pair of a group then trains (21 of 7 images; real labels train at most 3 x 4 = 12), an
        # upper bound on D3PO's update time
        overrides.append("evaluator.d3po_tie_break_by_score=true")
    if size == "full":
        images = preset.d3po.group_size * preset.d3po.groups_per_epoch if section == "d3po" else \
            getattr(preset, section).images_per_epoch
        overrides.append(f"eval.n_images={preset.eval.n_images}")  # the preset's evaluation, not = images
        steps = None
    else:
        images, steps = 2, REDUCED_STEPS
        overrides += REDUCED_OVERRIDES
    import torch

    _reset_memory(device)
    profile = profile_epoch(method, images, task=task, tier="paper", backbone=str(backbone), overrides=overrides,
                            steps=steps, threads=torch.get_num_threads(), reference_repeats=1, run_dir=run_dir)
    _sync(device)
    keep = ("method", "task", "images", "eval_images", "sampler_steps", "setup_s", "warmup_eval_s")
    return {**{k: profile[k] for k in keep},
            "epoch_s": profile["wall"]["epoch_s"], "epoch_cpu_s": profile["cpu"]["epoch_s"],
            "phases_s": profile["wall"]["phases_s"], "unet_forward_calls": profile["unet_forward_calls"],
            "training_calls": (profile["reference"] or {}).get("training_calls", 0),
            "peak_gpu_memory_bytes": _peak_memory(device)}


class _ReplayedNoise:
    """Per-step DDIM noise drawn exactly as ``sample_trajectories`` draws it (one ``torch.randn`` of the
    whole batch per step from a CPU generator), handed to diffusers' scheduler as ``variance_noise``."""

    def __init__(self, seed: int):
        import torch

        self.generator = torch.Generator("cpu").manual_seed(seed)

    def scheduler(self, config):
        import torch
        from diffusers import DDIMScheduler

        replayed = self.generator

        class ReplayDDIM(DDIMScheduler):
            # the pipeline passes ``eta`` and ``generator`` only to a step whose signature names them
            def step(self, model_output, timestep, sample, eta=0.0, use_clipped_model_output=False,
                     generator=None, variance_noise=None, return_dict=True):
                noise = torch.randn(sample.shape, generator=replayed, device="cpu")
                return super().step(model_output, timestep, sample, eta, use_clipped_model_output, None,
                                    noise.to(sample.device, model_output.dtype), return_dict)

        return ReplayDDIM.from_config(config)


def compare_with_diffusers(backbone_dir: Path, size: str, device: str, dtype: str, steps: int,
                           guidance_scale: float, seed: int = 0) -> dict:
    """The sampler against ``StableDiffusionPipeline`` on the same model, noise and prompts."""
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from hero_bench.diffusion.backbone import load_backbone, quiet_hf_progress
    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories, step_log_prob

    n = COMPARE_IMAGES[size]
    _reset_memory(device)
    backbone = load_backbone(str(backbone_dir), device, dtype)
    cfg = SamplerConfig(steps=steps, eta=1.0, guidance_scale=guidance_scale, batch_size=n)
    prompts = ["photo of one blue rose in a vase", "1 hand"] * (n // 2) + ["1 hand"] * (n % 2)
    z_T = initial_noise(backbone, n, torch.Generator("cpu").manual_seed(seed))

    def ours():
        return sample_trajectories(backbone, prompts, z_T, cfg, torch.Generator("cpu").manual_seed(seed + 1))

    replay = _ReplayedNoise(seed + 1)
    pipe = StableDiffusionPipeline(vae=backbone.vae, text_encoder=backbone.text_encoder, tokenizer=backbone.tokenizer,
                                   unet=backbone.unet, scheduler=replay.scheduler(backbone.scheduler.config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    chain: list[torch.Tensor] = []

    def record(_pipe, _i, _t, tensors):
        chain.append(tensors["latents"].float().clone())
        return {}

    def theirs():
        chain.clear()
        replay.generator.manual_seed(seed + 1)
        with quiet_hf_progress():
            return pipe(prompts, negative_prompt=[cfg.negative_prompt] * n, num_inference_steps=steps,
                        guidance_scale=guidance_scale, eta=1.0, latents=z_T.to(backbone.dtype),
                        output_type="np", callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents"])

    timings: dict[str, list[float]] = {"ours": [], "diffusers": []}
    for _ in range(2):  # the first pass of each warms up kernels and allocator; the second is timed
        for name, fn in (("ours", ours), ("diffusers", theirs)):
            _sync(device)
            t0 = time.perf_counter()
            out = fn()
            _sync(device)
            timings[name].append(time.perf_counter() - t0)
            if name == "ours":
                traj = out
            else:
                reference = out
    their_latents = torch.stack(chain, dim=1).to(traj.latents.device)  # [B, N, C, H, W] after each step
    their_images = (np.clip(reference.images, 0, 1) * 255).round().astype(np.uint8)
    with torch.no_grad():  # the log-prob of each of diffusers' steps under the sampler's own step formula
        prev = torch.cat([traj.z_T[:, None], their_latents[:, :-1]], dim=1)
        their_log_probs = torch.stack([
            step_log_prob(backbone, traj.prompt_embeds, traj.negative_embeds, prev[:, i], traj.timesteps[i],
                          their_latents[:, i], cfg) for i in range(steps)], dim=1)
    latent_diff = float((traj.latents[:, 1:] - their_latents).abs().max())
    scale = max(1.0, float(their_latents.abs().max()))
    eps = float(torch.finfo(backbone.dtype).eps)
    tolerance = LATENT_TOLERANCE_FACTOR * eps * steps * scale
    result = {
        "images": n, "steps": steps, "guidance_scale": guidance_scale, "eta": 1.0, "dtype": dtype,
        "max_abs_diff_latents": latent_diff,
        "max_abs_diff_final_latents": float((traj.final_latents - their_latents[:, -1]).abs().max()),
        "max_abs_diff_images_uint8": int(np.abs(traj.images.astype(int) - their_images.astype(int)).max()),
        "max_abs_diff_log_prob": float((traj.log_probs - their_log_probs).abs().max()),
        "max_abs_log_prob": float(traj.log_probs.abs().max()),
        "latent_tolerance": tolerance,
        "agrees": latent_diff <= tolerance,
        "ours_s": timings["ours"][-1], "diffusers_s": timings["diffusers"][-1],
        "ours_s_first": timings["ours"][0], "diffusers_s_first": timings["diffusers"][0],
        "peak_gpu_memory_bytes": _peak_memory(device),
    }
    del pipe, backbone, traj
    return result


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({cpu_model()}, {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="full",
                        help="full: SD 1.5's architecture at 512 px; reduced: tiny channels, 64 px, 2 steps")
    parser.add_argument("--task", default="blue_rose",
                        help="paper task whose epoch sizes and oracle are used (default blue_rose: 64 images, "
                             "50 steps; hand: 128 / 1,001 images, 20 steps)")
    parser.add_argument("--method", action="append", choices=METHODS,
                        help="repeatable; default: every method that trains")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU (the paper preset's)")
    parser.add_argument("--no-compare", action="store_true", help="skip the comparison with diffusers' pipeline")
    parser.add_argument("--out", default=None,
                        help="JSON to write (default results/bench/gpu_check.json; reduced: gpu_check_reduced.json)")
    args = parser.parse_args(argv)

    import torch

    from hero_bench.io import atomic_write_text
    from hero_bench.presets import build_run_config
    from oracles.paper_prompts import ORACLE_SETTINGS_ENV

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    out = Path(args.out or f"results/bench/gpu_check{'_reduced' if args.size == 'reduced' else ''}.json")
    methods = args.method or list(METHODS)
    report: dict[str, Any] = {
        "device": device, "device_name": device_name(device), "size": args.size, "task": args.task, "dtype": dtype,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "lora_rank": build_run_config("paper", args.task, "hero").lora.rank, "methods": {},
    }
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        clip = tiny_clip_settings(work / "clip", device)
        old_settings = os.environ.get(ORACLE_SETTINGS_ENV)
        os.environ[ORACLE_SETTINGS_ENV] = json.dumps({"clip_judge": clip, "nsfw_judge": clip})
        stack.callback(lambda: os.environ.__setitem__(ORACLE_SETTINGS_ENV, old_settings) if old_settings is not None
                       else os.environ.pop(ORACLE_SETTINGS_ENV, None))
        t0 = time.perf_counter()
        report["parameters"] = build_model(args.size, work / "model")
        report["build_s"] = time.perf_counter() - t0
        for method in methods:
            report["methods"][method] = epoch(method, args.task, args.size, work / "model", device, dtype,
                                              work / f"run-{method}")
            row = report["methods"][method]
            memory = row["peak_gpu_memory_bytes"]
            print(f"{method}: {row['images']} images, {row['sampler_steps']} steps: epoch {row['epoch_s']:.1f} s"
                  + (f", peak {memory / 2**30:.2f} GiB" if memory is not None else ""), flush=True)
        if not args.no_compare:
            preset = build_run_config("paper", args.task, "hero")
            steps = REDUCED_STEPS if args.size == "reduced" else preset.sampler.steps
            report["compare_diffusers"] = c = compare_with_diffusers(
                work / "model", args.size, device, dtype, steps, preset.sampler.guidance_scale)
            print(f"sampler vs diffusers: latents max |diff| {c['max_abs_diff_latents']:.3g} "
                  f"(tolerance {c['latent_tolerance']:.3g}), images {c['max_abs_diff_images_uint8']} levels, "
                  f"{c['ours_s']:.2f} s vs {c['diffusers_s']:.2f} s", flush=True)
    report["total_s"] = time.perf_counter() - t_start
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
