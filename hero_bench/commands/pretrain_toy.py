"""``hero-bench pretrain-toy``: (re)build the ShapesWorld model from scratch."""

from __future__ import annotations

import dataclasses

from hero_bench.commands import set_threads
from hero_bench.config import apply_overrides
from hero_bench.errors import ConfigError
from hero_bench.toyworld.pretrain import PretrainConfig, pretrain
from hero_bench.toyworld.recipe import RECIPES, run_recipe

HELP = "pretrain the ShapesWorld toy text-to-image model (the toy tier's backbone)"
DESCRIPTION = """\
Pretrain the ShapesWorld model (pixel-space UNet2DConditionModel + CLIP text encoder, 16x16 RGB)
on freshly generated scenes.  Deterministic from --seed/--data-seed; checkpoints every
--checkpoint-every steps into OUT/checkpoint.pt and, with --resume (the default), continues from
there, giving the same weights as an uninterrupted run.

Writes OUT/model/ (diffusers folder, EMA weights; load it with --backbone OUT/model),
OUT/model_raw/ (non-EMA weights), OUT/train_log.csv, OUT/training_config.json, OUT/preview/*.png.
The toy tier uses the shipped weights in hero_bench/toyworld/pretrained/shapesworld/; this command
is only needed to rebuild them.  Other PretrainConfig fields: --set key=value (e.g.
--set learning_rate=5e-4 --set model.unet.block_out_channels=32,64).

--recipe NAME runs a multi-stage recipe instead (hero_bench/toyworld/recipe.py) into OUT/<stage>/,
each stage starting from the previous stage's raw or EMA weights as the recipe says; the final model
is the last stage's model/.  Recipes: shipped (the four stages of the shipped weights, about 71 min
on 2 cores) and world2 (the same plus a fifth stage on version 2 of the scene distribution, whose
captions state relations between two objects of one kind: a candidate model, not shipped).  A recipe
fixes every setting that changes the weights, so it takes no --steps, --seed, --data-seed,
--batch-size or --set.

examples:
  hero-bench pretrain-toy --recipe shipped --out work --threads 2    # rebuild the shipped weights
  hero-bench pretrain-toy --recipe world2 --out work --threads 2     # the same, then stage 5 (+35 min)
  hero-bench pretrain-toy --out work/small --steps 500 --set learning_rate=5e-4
"""


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; holds checkpoint.pt and model/)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: PretrainConfig.steps)")
    parser.add_argument("--seed", type=int, default=None, help="seed of init, noise and timesteps (default 0)")
    parser.add_argument("--data-seed", type=int, default=None, help="seed of the scene generator (default 0)")
    parser.add_argument("--batch-size", type=int, default=None, help="scenes per step (default: PretrainConfig.batch_size)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    parser.add_argument(
        "--resume", action="store_true", default=True,
        help="continue from OUT/checkpoint.pt when it exists (default)",
    )
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="start from scratch, overwriting OUT")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any PretrainConfig field, e.g. --set ema_decay=0 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--recipe", default=None, metavar="NAME",
                        help="run a named multi-stage recipe into OUT/<stage>/ (accepted: shipped, the recipe "
                             "of the shipped weights; world2, the candidate model on version 2 of the world)")


# direct options that change the weights (a recipe fixes them); --checkpoint-every is bookkeeping
WEIGHT_OPTIONS = ("steps", "seed", "data_seed", "batch_size")


def config_from_args(args):
    """The PretrainConfig of a single-stage run: defaults, then --set, then the direct options."""
    direct = {name: getattr(args, name) for name in (*WEIGHT_OPTIONS, "checkpoint_every")}
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in direct.items() if v is not None]
    return apply_overrides(PretrainConfig, PretrainConfig(), overrides)


def _check_recipe_args(args) -> None:
    if args.recipe not in RECIPES:
        raise ConfigError(f"--recipe {args.recipe!r} is unknown; accepted: {', '.join(sorted(RECIPES))}")
    fixed = [f"--{name.replace('_', '-')}" for name in WEIGHT_OPTIONS if getattr(args, name) is not None]
    fixed += ["--set"] if args.overrides else []
    if fixed:
        raise ConfigError(f"--recipe {args.recipe} fixes every setting that changes the weights; "
                          f"drop {', '.join(fixed)} (or run single stages without --recipe)")


def _summary(prefix: str, result) -> str:
    return (f"{prefix}: {result.steps_done} steps, final loss {result.final_loss:.4f} "
            f"(mean of the last 100), {result.wall_seconds / 60:.1f} min; model: {result.model_dir}")


def run(args) -> int:
    # every input check before torch is configured or anything is written
    if args.recipe is not None:
        _check_recipe_args(args)
    else:
        cfg = config_from_args(args)
    set_threads(args.threads)
    if args.recipe is None:
        print(_summary("pretrain-toy", pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress)))
        return 0

    base = PretrainConfig()
    if args.checkpoint_every is not None:  # bookkeeping only: allowed with a recipe
        base = dataclasses.replace(base, checkpoint_every=args.checkpoint_every)
    results = run_recipe(RECIPES[args.recipe], args.out, base=base, resume=args.resume,
                         progress=not args.no_progress,
                         on_stage=lambda i, name, res: print(_summary(f"pretrain-toy {args.recipe}/{name}", res)))
    total = sum(r.wall_seconds for r in results)
    print(f"pretrain-toy: recipe {args.recipe} done in {total / 60:.1f} min; final model: {results[-1].model_dir}")
    return 0
