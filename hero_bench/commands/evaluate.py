"""`hero-bench evaluate`: recompute a run's eval.csv from its saved adapters."""

from __future__ import annotations

from hero_bench.commands import set_threads
from hero_bench.errors import ConfigError

HELP = "recompute a run's evaluation (eval.csv: success on its own prompts + transfer) from its saved LoRA adapters"
DESCRIPTION = """\
Re-evaluate every saved adapter of a run (RUN_DIR/lora/epoch_XXXX.safetensors) with the fixed
eval noise, judged by the noise-free oracle, and rewrite RUN_DIR/eval.csv (or write --out), as
training does: the primary metric on the task's own (training) prompts (success_rate, mean_score,
n_eval, diversity) and transfer to its held-out eval prompts (transfer_success_rate,
transfer_mean_score, transfer_n_eval).  With the run's own settings the result equals the eval.csv
written during training.  Feedback counters of each row come from RUN_DIR/train_log.csv.

Only eval.* settings can change (training is fixed by the run), e.g. a larger eval set, or
eval.transfer_images=0 to skip the transfer evaluation (its columns left empty).

--prompts train or --prompts eval samples one prompt list only (the training prompts, or the
held-out ones) into a single-split file, RUN_DIR/eval_train.csv or RUN_DIR/eval_heldout.csv: the
columns of eval.csv, success_rate etc. holding that list's numbers, plus prompt_set; gather and
report refuse these files, and eval.csv is left alone.  (Before the primary metric moved to the
task's own prompts, the default was --prompts eval, which rewrote eval.csv with held-out rows.)

examples:
  hero-bench evaluate runs/counting/hero/seed0
  hero-bench evaluate runs/counting/hero/seed0 --set eval.n_images=1024 --out /tmp/eval-1024.csv
  hero-bench evaluate runs/counting/hero/seed0 --prompts train --epochs 0,last
  hero-bench evaluate runs/counting/hero/seed0 --method-noise   # from N(0, I) and from pi_HERO
"""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `hero-bench train`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="eval.KEY=VALUE",
                        help="override an eval setting: eval.n_images, eval.transfer_images, eval.seed, "
                             "eval.batch_size (repeatable)")
    parser.add_argument("--out", default=None, metavar="CSV",
                        help="write here instead of RUN_DIR/eval.csv (or the --prompts file)")
    parser.add_argument("--prompts", choices=("both", "train", "eval"), default="both",
                        help="both: the task's own prompts (primary) and its held-out prompts (transfer), "
                             "rewriting eval.csv (default); train: only the training prompts, writing "
                             "eval_train.csv; eval: only the held-out prompts, writing eval_heldout.csv")
    parser.add_argument("--epochs", default=None, metavar="LIST",
                        help="only these saved checkpoints, comma-separated epoch numbers or 'last' (default: "
                             "all); not with a rewrite of eval.csv, which always holds every checkpoint")
    parser.add_argument("--method-noise", action="store_true",
                        help="HERO runs: evaluate the final model twice on the task's own prompts, from N(0, I) "
                             "and from pi_HERO as training left it (the best and good images' noises), into "
                             "RUN_DIR/eval_method_noise.csv (column initial_noise: gaussian | method); what the "
                             "sampler buys against what the weights learned. Reads RUN_DIR/checkpoint.pt")
    parser.add_argument("--device", default=None, help="evaluate on this device instead of the run's")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's choice, one per core); on a shared or "
                             "oversubscribed machine 1 is often many times faster. Results are bitwise "
                             "reproducible for a fixed thread count")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def run(args) -> int:
    set_threads(args.threads)
    # deferred: torch, through reevaluate (hero-bench --help must not import it)
    from hero_bench.reevaluate import evaluate_method_noise, evaluate_run

    if args.method_noise:
        if args.prompts != "both" or args.epochs is not None:
            raise ConfigError("--method-noise evaluates the final model on the task's own prompts; it takes "
                              "neither --prompts nor --epochs")
        path = evaluate_method_noise(args.run_dir, overrides=args.overrides, out=args.out, device=args.device,
                                     progress=not args.quiet)
        if not args.quiet:
            print(f"wrote {path}")
        return 0
    epochs = None
    if args.epochs is not None:
        epochs = [e.strip() for e in args.epochs.split(",") if e.strip()]
        bad = [e for e in epochs if e != "last" and not e.isdigit()]
        if bad or not epochs:
            raise ConfigError(f"--epochs {args.epochs!r}: give comma-separated epoch numbers or 'last', e.g. 0,last")
    path = evaluate_run(args.run_dir, overrides=args.overrides, out=args.out, device=args.device,
                        progress=not args.quiet, prompt_set=args.prompts, epochs=epochs)
    if not args.quiet:
        print(f"wrote {path}")
    return 0
