"""``hero-bench noise-influence``: does the initial noise decide success (HERO's noise-guidance premise)?"""

from __future__ import annotations

import dataclasses

from hero_bench.commands import CLIPPED_MODEL_OUTPUT_HELP, add_regime_argument, set_threads
from hero_bench.errors import ConfigError
from hero_bench.io import atomic_write_json
from hero_bench.noise_influence import check_branch_steps, check_design, measure_decision_curve, measure_noise_influence
from hero_bench.regimes import REGIME_KEY
from hero_bench.tasks import get_task

HELP = "measure how much the initial noise z_T decides an image's success (HERO's noise-guidance premise)"
DESCRIPTION = """\
HERO samples the next epoch's initial noises near those of the best and good images (docs/algorithms.md §4.5).
That raises the success rate only if the initial noise largely decides the outcome.  This command
draws --noises initial noises, samples each --repeats times with different per-step noise (the
tier's sampler: DDIM eta, guidance, steps, unless overridden), judges the images with the task's
oracle and prints ICC(1): the share of the outcome's variance that lies between initial noises
(about 0: z_T does not matter; 1: z_T decides everything, as with eta = 0).

With --branch-steps, it draws the decision curve instead: --noises chains cycling through the
task's train prompts, each branched after step k (for each k given) into --repeats continuations
with fresh per-step noise, and ICC(1) over the chains' states after k steps. Where the curve rises
tells which steps decide success: early (layout, colour) or only in the last, low-noise steps.

examples:
  hero-bench noise-influence --tier toy --task anomaly
  hero-bench noise-influence --tier toy --task counting --eta 0.5 --noises 32 --json out.json
  hero-bench noise-influence --tier toy --task anomaly --noises 64 --branch-steps 0,4,8,12,16,18
"""


def _steps_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--branch-steps takes comma-separated step numbers such as 0,4,8,12, got {text!r}") from None


def add_arguments(parser) -> None:
    parser.add_argument("--tier", choices=("smoke", "toy", "paper"), default="toy",
                        help="preset family whose backbone and sampler are used (default toy)")
    parser.add_argument("--task", default=None, help="task name (`hero-bench tasks`; default: the tier's default)")
    parser.add_argument("--prompt-index", type=int, default=0, help="which of the task's train prompts (default 0)")
    parser.add_argument("--noises", type=int, default=16, help="initial noises (default 16)")
    parser.add_argument("--repeats", type=int, default=8, help="samplings per initial noise (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial and per-step noise (default 0)")
    add_regime_argument(parser)
    parser.add_argument("--eta", type=float, default=None, help="override the tier's DDIM eta (and --regime's)")
    parser.add_argument("--use-clipped-model-output", action="store_true",
                        help=CLIPPED_MODEL_OUTPUT_HELP)
    parser.add_argument("--guidance", type=float, default=None, help="override the tier's guidance scale")
    parser.add_argument("--steps", type=int, default=None, help="override the tier's DDIM steps")
    parser.add_argument("--backbone", default=None, metavar="PATH_OR_ID", help="override the tier's backbone")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the tier's)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--branch-steps", default=None, metavar="K,K,...",
                        help="draw the decision curve: branch each chain after these steps (0 = at z_T); --noises "
                        "chains then cycle through all the task's train prompts (--prompt-index is not used)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON (atomically)")


def run(args) -> int:
    set_threads(args.threads)

    # deferred: torch, through the backbone and presets (hero-bench --help must not import it)
    from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
    from hero_bench.presets import build_run_config

    regime = [f"{REGIME_KEY}={args.regime}"] if args.regime else []
    cfg = build_run_config(args.tier, task=args.task, backbone=args.backbone, device=args.device, overrides=regime)
    changes = {k: v for k, v in (("eta", args.eta), ("guidance_scale", args.guidance), ("steps", args.steps))
               if v is not None}
    if args.use_clipped_model_output:
        changes["use_clipped_model_output"] = True
    try:
        sampler = dataclasses.replace(cfg.sampler, **changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    task = get_task(cfg.task)
    # the design checks come before the (slow) backbone load
    check_design(task, args.noises, args.repeats, args.prompt_index)
    if args.branch_steps is not None:
        branch_steps = check_branch_steps(_steps_list(args.branch_steps), sampler.steps)
    backbone = load_backbone(resolve_backbone(cfg.backbone), device=cfg.device, dtype=cfg.dtype)
    if args.branch_steps is not None:
        return _decision_curve(args, cfg, task, sampler, backbone, branch_steps)
    result = measure_noise_influence(backbone, task, sampler, n_noises=args.noises, repeats=args.repeats,
                                     seed=args.seed, prompt_index=args.prompt_index)
    # the regime's name only when its settings are what was measured (`regime-comparison` reads it)
    result["regime"] = args.regime if args.regime and not changes else None
    s = _record(result, cfg.backbone, args.json)
    print(f"noise-influence: task {task.name}, prompt {result['prompt']!r}; DDIM {s['steps']} steps, "
          f"eta {s['eta']}, guidance {s['guidance_scale']}; {args.noises} noises x {args.repeats} repeats")
    print(f"  success rate {result['success_rate']:.3f}")
    low, high = result["icc_success_ci95"]
    print(f"  ICC(1) of success {result['icc_success']:.3f} [95% bootstrap over noises {low:.3f}, {high:.3f}], "
          f"of the oracle score {result['icc_score']:.3f} "
          f"(0: z_T does not matter, 1: z_T decides)")
    return 0


def _record(result: dict, backbone: str, json_path: str | None) -> dict:
    """Note the backbone in ``result``, write it to ``json_path`` if given; returns its sampler settings."""
    result["backbone"] = backbone
    if json_path:
        atomic_write_json(json_path, result)
    return result["sampler"]


def _decision_curve(args, cfg, task, sampler, backbone, branch_steps) -> int:
    result = measure_decision_curve(backbone, task, sampler, branch_steps, n_chains=args.noises,
                                    repeats=args.repeats, seed=args.seed)
    s = _record(result, cfg.backbone, args.json)
    print(f"decision curve: task {task.name} (its train prompts); DDIM {s['steps']} steps, eta {s['eta']}, "
          f"guidance {s['guidance_scale']}; {args.noises} chains x {args.repeats} continuations per branch step")
    print("  after step  timestep  success  ICC(1) success  ICC(1) score")
    for row in result["curve"]:
        print(f"  {row['step']:>10}  {row['timestep']:>8}  {row['success_rate']:>7.3f}  {row['icc_success']:>14.3f}"
              f"  {row['icc_score']:>12.3f}")
    print("  (ICC(1) over the states after k steps: 0 = the rest of the chain decides, 1 = decided by step k)")
    return 0
