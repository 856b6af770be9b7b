"""Does z_T decide more at DDIM η = 1 when the chain starts below the schedule's first timestep?

The shipped ShapesWorld model's 20-step grid starts at t = 999, where ᾱ = 0 (zero terminal SNR), and
at η = 1 its first step keeps nothing of z_T (docs/methods.md, "Sampling below η = 1"). Stable
Diffusion's chains start where ᾱ ≈ 0.005, and pure noise fed in there is read partly as the image's
low frequencies. This probe feeds z_T ~ N(0, I) in at the grid's step ``START`` instead (t = 699 at
step 6: ᾱ 0.006; t = 599 at step 8: ᾱ 0.024), runs the rest of the chain at the given η, and
measures ICC(1) of success over 32 initial noises × 8 repeats of the task's first training prompt,
with `hero-bench noise-influence`'s sampling (`noise_influence.sample_noise_groups`, seed 0).

    python scripts/start_step_probe.py safety 8 --png grid.png   # ICC, success; 8 noises x 8 repeats grid

A probe for docs/methods.md, not a regime: no run or sampler setting takes a start step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", help="a toy task")
    parser.add_argument("start", type=int, help="the grid step at which z_T is fed in (0 = the tier's chain)")
    parser.add_argument("--eta", type=float, default=1.0)
    parser.add_argument("--png", default=None, help="also save the first 8 noises' 8 repeats as a grid (rows = noises)")
    args = parser.parse_args(argv)

    import torch

    from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
    from hero_bench.diffusion.sampler import set_timesteps
    from hero_bench.noise_influence import icc1, icc1_interval, sample_noise_groups
    from hero_bench.presets import build_run_config
    from hero_bench.tasks import get_task

    torch.set_num_threads(1)
    cfg = build_run_config("toy", task=args.task)
    backbone = load_backbone(resolve_backbone(cfg.backbone), device="cpu", dtype=cfg.dtype)
    grid = set_timesteps(backbone, cfg.sampler.steps)
    if not 0 <= args.start < len(grid):
        parser.error(f"start must lie in 0..{len(grid) - 1}")
    t = int(grid[args.start])
    sampler = dataclasses.replace(cfg.sampler, eta=args.eta)
    repeats = 8
    groups = sample_noise_groups(backbone, get_task(args.task), sampler, n_noises=32, repeats=repeats, seed=0,
                                 start_step=args.start)
    success = groups.success
    low, high = icc1_interval(success)
    print(json.dumps({"task": args.task, "prompt": groups.prompt.text, "start_step": args.start, "t": t,
                      "alpha_bar": float(backbone.scheduler.alphas_cumprod[t]), "eta": args.eta,
                      "success_rate": float(success.mean()), "icc_success": icc1(success),
                      "icc_success_ci95": [low, high]}))
    if args.png:
        from PIL import Image

        images = groups.images[: 8 * repeats]
        _, h, w, c = images.shape
        tiles = images.reshape(8, repeats, h, w, c).transpose(0, 2, 1, 3, 4).reshape(8 * h, repeats * w, c)
        Image.fromarray(tiles).resize((repeats * w * 4, 8 * h * 4), Image.NEAREST).save(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
