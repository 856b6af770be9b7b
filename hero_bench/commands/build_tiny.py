"""``hero-bench build-tiny``: build the tiny random SD-architecture backbone for tests and the smoke tier."""

from __future__ import annotations

from pathlib import Path

from hero_bench.errors import HeroBenchError

HELP = "build the tiny random Stable-Diffusion-architecture backbone (smoke tier, tests)"
DESCRIPTION = """\
Build a tiny Stable-Diffusion-architecture backbone with random weights from configs (UNet 16x16x4
latents, VAE to 32 px images, 2-layer CLIP text encoder, offline CLIP BPE tokenizer, DDIM scheduler
with SD 1.5's noise schedule) and save it in diffusers format to --out.  Offline, deterministic
from --seed, written atomically.  Load it anywhere a backbone is accepted: --backbone DIR.

If --out already holds a complete tiny backbone built with the same seed, nothing is done
(exit 0); --force rebuilds it.

Example:
  hero-bench build-tiny --out models/tiny
  hero-bench sample --backbone models/tiny --prompt "a red circle" --n 16 --out grid.png
"""


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (diffusers layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a model")


def run(args) -> int:
    # deferred: torch, through diffusion.tiny (hero-bench --help must not import it)
    from hero_bench.diffusion.tiny import build_info, build_tiny_backbone, is_complete

    out = Path(args.out)
    if out.exists() and not args.force:
        if is_complete(out):
            built_seed = (build_info(out) or {}).get("seed")
            if built_seed == args.seed:
                print(f"build-tiny: {out} already holds a complete tiny backbone (seed {args.seed}); "
                      "nothing to do (--force rebuilds it)")
                return 0
            raise HeroBenchError(
                f"{out} holds a tiny backbone built with seed {built_seed}, not {args.seed}; "
                "pass --force to replace it"
            )
        if out.is_file() or any(out.iterdir()):
            raise HeroBenchError(f"{out} exists but is not a complete tiny backbone; pass --force to replace it")
    path = build_tiny_backbone(out, seed=args.seed, overwrite=True)
    print(f"build-tiny: wrote {path} (seed {args.seed})")
    return 0
