"""``hero-bench pretrain-toy``: (re)build the ShapesWorld model from scratch."""

from __future__ import annotations

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


def run(args) -> int:
    from hero_bench.config import apply_overrides
    from hero_bench.errors import ConfigError
    from hero_bench.toyworld.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig()
    direct = {
        "steps": args.steps, "seed": args.seed, "data_seed": args.data_seed,
        "batch_size": args.batch_size, "checkpoint_every": args.checkpoint_every,
    }
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in direct.items() if v is not None]
    cfg = apply_overrides(PretrainConfig, cfg, overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    result = pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(
        f"pretrain-toy: {result.steps_done} steps, final loss {result.final_loss:.4f} "
        f"(mean of the last 100), {result.wall_seconds / 60:.1f} min; model: {result.model_dir}"
    )
    return 0
