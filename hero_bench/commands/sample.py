"""``hero-bench sample``: sample images from a backbone (optionally with a LoRA) into a grid PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hero_bench.errors import ConfigError
from hero_bench.io import atomic_path

HELP = "sample images from a backbone (optionally with a LoRA adapter) and save them as a grid"
DESCRIPTION = """\
Sample --n images with the benchmark's own sampler (DDIM with eta, classifier-free guidance) and
write them as one image grid.  Small images are enlarged with nearest-neighbour scaling so each
cell is at least --cell-px pixels wide.  Prompts given several times are used in turn.

--backbone takes a diffusers-format folder (e.g. one made by `hero-bench build-tiny`, or the
shipped ShapesWorld model) or a Hugging Face hub id that is in the local cache (e.g.
stable-diffusion-v1-5/stable-diffusion-v1-5).  --lora takes an adapter saved by training
(RUN_DIR/lora/epoch_XXXX.safetensors).

Example:
  hero-bench sample --backbone models/tiny --prompt "a red circle" --n 16 --steps 20 --seed 0 --out grid.png
"""

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def add_arguments(parser) -> None:
    parser.add_argument("--backbone", required=True, metavar="PATH_OR_ID", help="diffusers folder or hub id")
    parser.add_argument("--prompt", required=True, action="append", metavar="TEXT",
                        help="prompt (repeatable: images cycle through the prompts)")
    parser.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial and per-step noise (default 0)")
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM eta: 1 stochastic, 0 deterministic (default 1.0)")
    parser.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5.0)")
    parser.add_argument("--negative-prompt", default="", help="prompt of the unconditional branch (default empty)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per UNet forward (memory only; default 64)")
    parser.add_argument("--lora", metavar="FILE", default=None, help="LoRA adapter (.safetensors) to apply")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default float32)")
    parser.add_argument("--cell-px", type=int, default=64, help="minimum grid cell size in pixels (default 64)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output image (.png, .jpg or .webp)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def image_grid(images, cell_px: int = 64, gap: int = 2):
    """Tile uint8 images ``[N, H, W, 3]`` in a near-square grid, each enlarged (nearest) to >= cell_px."""
    n, h, w, _ = images.shape
    scale = max(1, math.ceil(cell_px / min(h, w)))
    big = images.repeat(scale, axis=1).repeat(scale, axis=2)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    ch, cw = h * scale, w * scale
    grid = np.full((rows * ch + (rows - 1) * gap, cols * cw + (cols - 1) * gap, 3), 255, dtype=np.uint8)
    for i, img in enumerate(big):
        r, c = divmod(i, cols)
        grid[r * (ch + gap): r * (ch + gap) + ch, c * (cw + gap): c * (cw + gap) + cw] = img
    return grid


def run(args) -> int:
    out = Path(args.out)
    fmt = IMAGE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {str(out)!r}: unknown image type {out.suffix!r}; accepted: {', '.join(IMAGE_FORMATS)}")
    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    if args.cell_px < 1:
        raise ConfigError(f"--cell-px must be at least 1, got {args.cell_px}")

    # deferred: torch, PIL and the diffusion modules (hero-bench --help must not import them)
    import torch
    from PIL import Image

    from hero_bench.diffusion.backbone import load_backbone
    from hero_bench.diffusion.lora import load_lora
    from hero_bench.diffusion.sampler import SamplerConfig, initial_noise, sample_trajectories

    cfg = SamplerConfig(
        steps=args.steps, eta=args.eta, guidance_scale=args.guidance,
        batch_size=args.batch_size, negative_prompt=args.negative_prompt,
    )
    backbone = load_backbone(args.backbone, device=args.device, dtype=args.dtype)
    if args.lora:
        load_lora(backbone.unet, args.lora)
    prompts = [args.prompt[i % len(args.prompt)] for i in range(args.n)]
    generator = torch.Generator().manual_seed(args.seed)
    z_T = initial_noise(backbone, args.n, generator)
    traj = sample_trajectories(backbone, prompts, z_T, cfg, generator, progress=not args.no_progress)
    grid = image_grid(traj.images, cell_px=args.cell_px)
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format=fmt)
    print(f"sample: wrote {args.n} images ({traj.images.shape[1]} px) as a {grid.shape[1]}x{grid.shape[0]} grid to {out}")
    return 0
