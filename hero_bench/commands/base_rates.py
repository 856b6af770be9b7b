"""`hero-bench base-rates`: how often a toy backbone succeeds before any training (its model card numbers)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hero_bench.commands import CLIPPED_MODEL_OUTPUT_HELP, add_regime_argument, set_threads
from hero_bench.errors import ConfigError
from hero_bench.io import atomic_write_json
from hero_bench.regimes import REGIME_KEY
from hero_bench.tasks import get_task, list_tasks
from hero_bench.toyworld.base_rates import (
    ACCEPTED_RANGE,
    CARD_NOTES,
    TRAIN_ACCEPTED_RANGE,
    compare_rates,
    comparison_table,
    measure_all,
    merge_rates,
    rates_table,
    write_model_card,
)

HELP = "measure a toy backbone's success rate on every toy task before training (the model card's base rates)"
DESCRIPTION = """\
The HERO paper's premise is that success is possible but rare: a method needs a few successes in
every round to learn from.  For each toy task this samples N images on the task's own (training)
prompts and N on its held-out prompts with the toy tier's sampler, from the benchmark's fixed
evaluation noise, and judges them with the task's oracle: exactly the epoch-0 evaluation of every
toy run (the primary metric and the transfer column).  Each rate is printed with its 95% Wilson
interval and checked against the design's accepted range: 10-60% on the training prompts, 5-60% on
the held-out ones (docs/architecture.md, "Design requirements").

--model-card rewrites MODEL_CARD.md in the backbone folder from its training_config.json, these
rates and --card-notes; the shipped card and base_rates.json were made with --n 256.
--compare checks a rebuilt model against the shipped one (the model card's reproduction criterion):
exit status 1 unless every task lies inside the reference's 95% interval.  Both measurements must
use the same --n, --seed and sampler settings.
--update re-measures only the --task tasks in an existing base_rates.json (after an oracle change
that touches some tasks, for example) and keeps the others as they were measured; each task's
entry records the oracle version that judged it, and the model card names them.

Exit status: 0 done (rates outside the accepted range are reported, not an error), 1 a task outside
the --compare reference's interval, 2 bad input.

examples:
  hero-bench base-rates --backbone hero_bench/toyworld/pretrained/shapesworld --n 256
  hero-bench base-rates --backbone work/stage2/model --n 256 --compare hero_bench/toyworld/pretrained/shapesworld
  hero-bench base-rates --backbone work/stage2/model --n 256 --json work/stage2/model/base_rates.json \\
      --figures docs/figures --model-card
  hero-bench base-rates --backbone hero_bench/toyworld/pretrained/shapesworld --task counting --guidance 4
  hero-bench base-rates --backbone hero_bench/toyworld/pretrained/shapesworld --n 256 --task rare_binding \\
      --update hero_bench/toyworld/pretrained/shapesworld/base_rates.json --figures docs/figures --model-card
"""


def add_arguments(parser) -> None:
    parser.add_argument("--backbone", required=True, metavar="FOLDER",
                        help="backbone folder, e.g. the shipped hero_bench/toyworld/pretrained/shapesworld")
    parser.add_argument("--n", type=int, default=256, help="images per task and prompt set (default 256)")
    parser.add_argument("--seed", type=int, default=None,
                        help="evaluation noise seed (default: eval.seed of the benchmark, 20250)")
    parser.add_argument("--task", action="append", default=None,
                        help="only this toy task (repeatable; default: every toy task)")
    parser.add_argument("--guidance", type=float, default=None, help="override the toy sampler's guidance scale")
    parser.add_argument("--steps", type=int, default=None, help="override the toy sampler's DDIM steps")
    add_regime_argument(parser, "the toy")
    parser.add_argument("--eta", type=float, default=None, help="override the toy sampler's DDIM eta (and --regime's)")
    parser.add_argument("--use-clipped-model-output", action="store_true",
                        help=CLIPPED_MODEL_OUTPUT_HELP)
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write the rates as JSON here (atomically), e.g. the model's base_rates.json")
    parser.add_argument("--update", default=None, metavar="FILE",
                        help="an existing base_rates.json (or the model folder holding it): replace the measured tasks' "
                             "entries in it, keep the others, and write it back (atomically); same --n, --seed "
                             "and sampler required")
    parser.add_argument("--figures", default=None, metavar="FOLDER",
                        help="folder for one sample grid PNG per task (first 32 images on the training prompts, "
                             "framed green for success, red for failure)")
    parser.add_argument("--model-card", action="store_true",
                        help="(re)write MODEL_CARD.md in the backbone folder")
    parser.add_argument("--card-notes", default=None, metavar="FILE",
                        help="Markdown appended to MODEL_CARD.md (measurements behind the choices; "
                             "default: hero_bench/toyworld/model_card_notes.md, which describes the shipped "
                             "model; '' for none)")
    parser.add_argument("--compare", default=None, metavar="JSON_OR_FOLDER",
                        help="a base_rates.json (or a model folder holding one, e.g. the shipped "
                             "hero_bench/toyworld/pretrained/shapesworld) to check these rates against: "
                             "exit 1 unless every task lies inside the reference's 95%% interval")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _rates_file(path_arg: str) -> Path:
    """A base_rates.json given as the file or as the model folder that holds it."""
    path = Path(path_arg)
    return path / "base_rates.json" if path.is_dir() else path


def _read_rates(path_arg: str, flag: str) -> dict:
    """A base_rates.json, or a model folder holding one (for ``flag``'s error messages)."""
    path = _rates_file(path_arg)
    if not path.is_file():
        raise ConfigError(f"{flag} {path_arg}: no base_rates.json there; give the file or the model folder "
                          "that holds it")
    try:
        rates = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} {path}: not a base_rates.json written by this command ({exc})") from None
    if not isinstance(rates, dict) or not isinstance(rates.get("tasks"), list):
        raise ConfigError(f"{flag} {path}: not a base_rates.json written by this command (no 'tasks' list)")
    return rates


def run(args) -> int:
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    set_threads(args.threads)

    for name in args.task or []:
        tier = get_task(name).tier  # an unknown name raises, listing the tasks
        if tier != "toy":
            accepted = ", ".join(t.name for t in list_tasks(tier="toy"))
            raise ConfigError(f"--task {name}: a {tier}-tier task; base-rates measures toy tasks: {accepted}")
    # read the reference, the file to update and the notes before the (minutes-long) measurement,
    # so a typo fails at once
    reference = _read_rates(args.compare, "--compare") if args.compare else None
    if args.update and args.json:
        raise ConfigError("--update FILE writes FILE; give --json or --update, not both")
    existing = _read_rates(args.update, "--update") if args.update else None
    if existing is not None and existing.get("n") != args.n:
        raise ConfigError(f"--update {args.update}: its rates were measured with --n {existing.get('n')}, "
                          f"this run has --n {args.n}; give the same --n")
    notes_file = CARD_NOTES if args.card_notes is None else args.card_notes
    if args.model_card and notes_file and not Path(notes_file).is_file():
        raise ConfigError(f"--card-notes {notes_file}: no such file (give a Markdown file, or '' for no notes)")

    overrides = _regime_sampler(args.regime) if args.regime else {}
    overrides |= {k: v for k, v in (("guidance_scale", args.guidance), ("steps", args.steps), ("eta", args.eta))
                  if v is not None}
    if args.use_clipped_model_output:
        overrides["use_clipped_model_output"] = True
    rates = measure_all(args.backbone, n=args.n, seed=args.seed, tasks=args.task, sampler_overrides=overrides,
                        figures=args.figures, progress=not args.no_progress)
    if existing is not None:
        rates = merge_rates(existing, rates)
        atomic_write_json(_rates_file(args.update), rates)
    if args.json:
        atomic_write_json(args.json, rates)
    if args.model_card:
        notes = Path(notes_file).read_text() if notes_file else ""
        write_model_card(args.backbone, rates, notes=notes)
    comparison = None if reference is None else compare_rates(reference, rates)

    s = rates["sampler"]
    print(f"backbone {rates['backbone']}; DDIM {s['steps']} steps, eta {s['eta']}, guidance {s['guidance_scale']}; "
          f"n={rates['n']}, eval seed {rates['eval_seed']}")
    print(rates_table(rates["tasks"]))
    outside = [r["task"] for r in rates["tasks"] if not r["in_accepted_range"]]
    if outside:
        print(f"held-out prompts outside the accepted range {ACCEPTED_RANGE}: {', '.join(outside)}")
    outside = [r["task"] for r in rates["tasks"] if not r["train"]["in_accepted_range"]]
    if outside:
        print(f"training prompts outside the accepted range {TRAIN_ACCEPTED_RANGE}: {', '.join(outside)}")
    if comparison is not None:
        print(f"\ncompared with {args.compare}:")
        print(comparison_table(comparison))
        missed = [r["task"] for r in comparison if not r["inside"]]
        if missed:
            print(f"outside the reference's 95% interval: {', '.join(missed)}")
            return 1
        print("every task inside the reference's 95% interval")
    return 0


def _regime_sampler(name: str) -> dict:
    """The sampler settings by which the toy regime ``name`` differs from the toy preset."""
    # deferred: presets imports torch (hero-bench --help imports this module)
    from hero_bench.presets import build_run_config

    preset = build_run_config("toy").sampler
    regime = build_run_config("toy", overrides=[f"{REGIME_KEY}={name}"]).sampler
    return {f.name: getattr(regime, f.name) for f in dataclasses.fields(regime)
            if getattr(regime, f.name) != getattr(preset, f.name)}
