"""Preview grids of the ShapesWorld model and writing them as PNG files.

Pretraining writes ``OUT/preview/step_XXXXXX.png`` at every checkpoint (a quick visual check);
``save_png`` also writes the base-rate grids (``base_rates.py``) and other figures.
"""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from hero_bench.io import atomic_write_bytes
from hero_bench.toyworld.model import encode_prompts

PREVIEW_PROMPTS = ("", "a red circle", "a blue square", "a green triangle")
"""Prompts of the preview grid (one row each); captions outside the vocabulary would show as <unk>."""


def preview_grid(components, prompts: Sequence[str] = PREVIEW_PROMPTS, per_prompt: int = 8, steps: int = 20,
                 guidance: float = 5.0, eta: float = 1.0, seed: int = 0) -> np.ndarray:
    """A uint8 grid image: one row of ``per_prompt`` samples per prompt (a stand-alone DDIM+CFG loop).

    The benchmark's own sampler lives in ``hero_bench.diffusion``; this small loop only exists so
    that pretraining can show progress without depending on it.
    """
    # deferred: torch (the toy modules import without it)
    import torch

    tok, te, unet = components.tokenizer, components.text_encoder, components.unet
    sched = copy.deepcopy(components.scheduler)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    prompts_all = [p for p in prompts for _ in range(per_prompt)]
    size = unet.config.sample_size
    was_training = unet.training, te.training
    unet.eval(), te.eval()
    with torch.no_grad():
        cond = encode_prompts(tok, te, prompts_all)
        uncond = encode_prompts(tok, te, [""]).expand_as(cond)
        ctx = torch.cat([uncond, cond])
        x = torch.randn((len(prompts_all), 3, size, size), generator=gen)
        for t in sched.timesteps:
            eps_u, eps_c = unet(torch.cat([x, x]), t, ctx).sample.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
            x = sched.step(eps, t, x, eta=eta, generator=gen).prev_sample
    unet.train(was_training[0]), te.train(was_training[1])
    imgs = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return tile(imgs, per_prompt)


def tile(images: np.ndarray, columns: int, pad: int = 1, scale: int = 4) -> np.ndarray:
    """Tile ``[N,H,W,3]`` uint8 images into a grid (nearest-neighbour upscaled by ``scale``, grey gutters)."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / columns)
    big = images.repeat(scale, axis=1).repeat(scale, axis=2)
    H, W = h * scale, w * scale
    grid = np.full((rows * (H + pad) + pad, columns * (W + pad) + pad, 3), 128, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = big[i]
    return grid


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Atomically write a uint8 RGB array as PNG."""
    # deferred: PIL (the toy modules import without it)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
