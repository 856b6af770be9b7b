"""`hero-bench train`: finetune with one method under a feedback budget, or resume an interrupted run."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import yaml

from hero_bench.commands import add_regime_argument, set_threads
from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.feedback import OracleCallPolicy
from hero_bench.io import FolderBusyError, exclusive_folder
from hero_bench.methods import accepted_names
from hero_bench.regimes import REGIME_KEY

HELP = "finetune with HERO, DDPO or D3PO under a feedback budget (resumes an interrupted run)"
DESCRIPTION = """\
Finetune a text-to-image diffusion model (LoRA) on one task with one method, asking the simulated
evaluator for feedback until the budget is spent (one feedback = one image labelled), and evaluate
along the way: success on the task's own prompts from fresh evaluation noise that no training batch
used (the primary metric), and transfer to its held-out prompts (eval.transfer_images; 0 skips it).

Settings come from the tier's preset for the method (hero_bench/presets.py; every field is
documented in docs/methods.md), then the flags below, then --set overrides.  The resolved config
is written to OUT/config.yaml.  --config RUN/config.yaml starts from a run's saved settings instead
of a preset: it trains exactly that run again (a published one, say), whatever the presets have
become since; --set still applies on top (e.g. --set seed=3 for another seed of it).

Methods:
  hero   good/bad + best labels -> learned embedding -> similarity-to-best reward -> PPO,
         next noise from the best/good mixture (docs/algorithms.md §4)
  ddpo   PPO-clip on the evaluator's per-image reward, per-prompt normalised (docs/algorithms.md §2)
  d3po   per-step DPO on preferences within groups of images sharing noise and prompt (docs/algorithms.md §3)
  base   no training: evaluates the pretrained model once (feedback 0)

Outputs in OUT: config.yaml, ledger.jsonl (every label), checkpoint.pt (latest epoch),
lora/epoch_XXXX.safetensors, train_log.csv, eval.csv (one row per evaluated epoch: success_rate etc.
on the task's prompts, transfer_success_rate etc. on held-out prompts) and DONE.json.

Resume: rerunning the same command continues from OUT/checkpoint.pt; labels already given are
replayed from the ledger, and the results equal those of an uninterrupted run.  A finished run
(DONE.json present) is left alone.  A different config in an existing OUT is an error (so is
resuming a run made under another version of its task), unless --replace-stale moves that old run
aside to OUT.replaced-<UTC time> (nothing is deleted) and starts afresh; the workflow trains with it,
so changed settings or a changed task retrain a run instead of failing the job.

Faulty oracle: a call that raises, returns a non-finite score or the wrong number of results, or
runs past --oracle-timeout is retried (--oracle-retries, waiting --oracle-backoff seconds, doubled
each time); if no attempt succeeds, the command stops (exit code 2) with one line naming the task,
the oracle and the batch.  Nothing of that batch is recorded or counted as feedback, so rerunning
the same command once the oracle works resumes the run, with the results of a run that never
failed.  These settings do not change results and are not part of config.yaml.

examples:
  hero-bench train --tier smoke --task anomaly --method hero --seed 0 --budget 16 --out runs/smoke-hero
  hero-bench train --tier toy --task counting --method d3po --seed 1 --out runs/counting/d3po/seed1
  hero-bench train --tier toy --task anomaly --method hero --out runs/x --set hero.triplet_passes=50 \\
      --set hero.ppo.lr=3e-4 --set evaluator.flip_prob=0.1
  hero-bench train --config results/published/toy/runs/toy/preference/ddpo/seed1/config.yaml --out /tmp/rerun
"""


def add_arguments(parser) -> None:
    # tier, method and seed default to None so that --config can tell them given from left out
    parser.add_argument("--tier", choices=("smoke", "toy", "paper"), default=None,
                        help="preset family: smoke (tiny random model, seconds), toy (ShapesWorld, minutes on a "
                             "CPU; default), paper (Stable Diffusion 1.5, GPU)")
    parser.add_argument("--task", default=None,
                        help="task name (`hero-bench tasks` lists them); default: anomaly (smoke, toy), hand (paper)")
    # no `choices`: a wrong name is the library's one-line error (get_algorithm), which names them too
    parser.add_argument("--method", default=None, metavar="{" + ",".join(accepted_names()) + "}",
                        help="finetuning method (default: hero)")
    parser.add_argument("--seed", type=int, default=None, help="run seed: every training draw derives from it (default: 0)")
    parser.add_argument("--budget", type=int, default=None,
                        help="feedback budget in labelled images (default: the preset's: smoke 16, toy 512, "
                             "paper per task and method, e.g. hand 1152 for HERO, 5000 for D3PO)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created; resumed if it holds a run)")
    parser.add_argument("--backbone", default=None, metavar="PATH_OR_ID",
                        help="diffusers folder or hub id (default: smoke results/models/tiny-sd, toy the shipped "
                             "ShapesWorld model, paper stable-diffusion-v1-5/stable-diffusion-v1-5)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or mps (default: cpu; paper tier: cuda when available)")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                        help="dtype of the frozen backbone; LoRA weights stay float32 "
                             "(default: float32; paper tier on CUDA: float16)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="start from this run's saved settings (RUN_DIR/config.yaml) instead of the tier's "
                             "preset, to train that run again exactly; --set applies on top, and the flags that "
                             "choose settings (--tier, --task, --method, --seed, --budget, --backbone, --device, "
                             "--dtype) cannot be given with it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. hero.ppo.lr=1e-4, sampler.steps=10, eval.n_images=64, "
                             "evaluator.flip_prob=0.1 (repeatable; unknown keys are errors)")
    add_regime_argument(parser)
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: torch's choice, one per core); on a shared or "
                             "oversubscribed machine 1 is often many times faster. Results are bitwise "
                             "reproducible for a fixed thread count")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit without training")
    parser.add_argument("--replace-stale", action="store_true",
                        help="when RUN_DIR holds a run whose config.yaml differs from this one, move that run "
                             "to RUN_DIR.replaced-<UTC time> and start afresh (default: stop with an error); "
                             "a run with the same config is resumed either way. The first line printed says "
                             "which happened")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    parser.add_argument("--pretrained-eval-cache", default=None, metavar="DIR",
                        help="share the evaluation of the pretrained model (epoch 0) through this folder: a run "
                             "whose backbone, task, oracle, evaluation and sampler settings and code equal an "
                             "earlier one's reads that run's result instead of computing it again (the same "
                             "numbers, bit for bit: the evaluation noise does not depend on the run's method or "
                             "seed). The workflow uses results/cache/pretrained_eval (default: no cache)")
    # defaults live in feedback.OracleCallPolicy (None here = its default; the help repeats them)
    parser.add_argument("--oracle-timeout", type=float, default=None, metavar="SECONDS",
                        help="give up on one oracle call on a batch after this long (it is abandoned and may "
                             "still finish in the background) and retry; 0 = no limit (default: 600)")
    parser.add_argument("--evaluator", choices=("oracle", "web"), default="oracle",
                        help="who labels: the task's scripted oracle (default), or a person on a local web "
                             "page (the URL, with its access token, is printed; the run waits for each round's "
                             "labels; rerunning the command resumes at the first unlabelled round)")
    parser.add_argument("--web-host", default="127.0.0.1", metavar="HOST",
                        help="address the labelling page listens on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--web-port", type=int, default=0, metavar="PORT",
                        help="port of the labelling page (default: 0, a free one)")
    parser.add_argument("--oracle-retries", type=int, default=None, metavar="N",
                        help="retries of a batch whose oracle call failed, before the run stops (default: 2)")
    parser.add_argument("--oracle-backoff", type=float, default=None, metavar="SECONDS",
                        help="wait before the first retry, doubled before each further one (default: 2)")


def run(args) -> int:
    set_threads(args.threads)
    # deferred: torch, through presets, run_config and runner (hero-bench --help must not import it)
    from hero_bench.run_config import config_yaml
    from hero_bench.runner import train

    policy = oracle_policy(args)
    cfg = resolve_config(args)
    if args.print_config:
        print(config_yaml(cfg), end="")
        return 0
    if args.replace_stale:
        print(replace_stale_run(cfg, args.out), flush=True)
    if args.evaluator == "web":
        state = train_with_a_person(cfg, args, policy)
    else:
        state = train(cfg, args.out, progress=not args.quiet, oracle_policy=policy,
                      pretrained_eval_cache=args.pretrained_eval_cache)
    if state is not None and not args.quiet:
        final = state.eval_rows[-1] if state.eval_rows else None
        summary = f"; final eval success {final['success_rate']:.3f} on the task's prompts" if final else ""
        if final and final.get("transfer_success_rate") is not None:
            summary += f", transfer {final['transfer_success_rate']:.3f} on held-out prompts"
        # base spends no feedback whatever its budget: "0/512" would read as a run cut short
        spent = (f"{state.epoch} epoch(s), feedback {state.feedback_used}/{cfg.budget}" if cfg.method != "base"
                 else "evaluating the pretrained model (no training, no feedback)")
        print(f"{cfg.run_id}: done after {spent}{summary} -> {args.out}")
    return 0


# the flags that choose a setting, which --config takes from its file instead
SETTING_FLAGS = ("tier", "task", "method", "seed", "budget", "backbone", "device", "dtype")


def resolve_config(args):
    """The run's RunConfig: from --config's file, or from the tier's preset and the flags."""
    # deferred: torch, through presets (hero-bench --help must not import it)
    from hero_bench.presets import build_run_config, run_config_from_file

    overrides = ([f"{REGIME_KEY}={args.regime}"] if args.regime else []) + list(args.overrides)
    if args.config is not None:
        given = [f"--{name}" for name in SETTING_FLAGS if getattr(args, name) is not None]
        if given:
            raise ConfigError(f"--config takes every setting from {args.config}; {', '.join(given)} cannot be given "
                              "with it; accepted: --set KEY=VALUE on top of the file (e.g. --set seed=3)")
        return run_config_from_file(args.config, overrides)
    return build_run_config(args.tier or "toy", task=args.task, method=args.method or "hero",
                            seed=0 if args.seed is None else args.seed, budget=args.budget,
                            backbone=args.backbone, device=args.device, dtype=args.dtype, overrides=overrides)


def train_with_a_person(cfg, args, policy):
    """``train`` with the labelling page standing in for the oracle, for as long as the run lasts."""
    # deferred: torch, through web_evaluator (hero-bench --help must not import it)
    from hero_bench.runner import train
    from hero_bench.web_evaluator import check_web_evaluator_config
    from hero_bench.web_server import LabellingServer

    check_web_evaluator_config(cfg.evaluator)  # before a port is opened
    if cfg.method == "base":
        raise ConfigError("--evaluator web: method 'base' asks for no labels; accepted: hero, ddpo, d3po")
    with LabellingServer(host=args.web_host, port=args.web_port) as server:
        # the line a person (or a test) waits for: flushed at once, even under a pipe
        print(f"label at {server.url}", flush=True)
        return train(cfg, args.out, progress=not args.quiet, oracle_policy=policy, labeller=server,
                     pretrained_eval_cache=args.pretrained_eval_cache)


def oracle_policy(args):
    """The ``OracleCallPolicy`` of the --oracle-* flags (an unset flag keeps the policy's default)."""
    changes = {}
    if args.oracle_timeout is not None:
        changes["timeout_s"] = None if args.oracle_timeout == 0 else args.oracle_timeout
    if args.oracle_retries is not None:
        changes["retries"] = args.oracle_retries
    if args.oracle_backoff is not None:
        changes["backoff_s"] = args.oracle_backoff
    return replace(OracleCallPolicy(), **changes)


def replace_stale_run(cfg, run_dir) -> str:
    """Move ``run_dir`` aside when it holds a run of another config; returns what it found, as a line.

    "Another config" is what the runner would refuse to resume: its own check (``Run.check_config``,
    the parsed config.yaml against ``cfg``) decides, so the two never disagree; so is a run made
    under another version of its task (``Task.version``), whose checkpoint the runner refuses.  A
    config.yaml that cannot be parsed counts as another config.  The old run is renamed to
    ``<run_dir>.replaced-<UTC time>``, never deleted: its labels and checkpoints may still be wanted.
    The check and the move hold the run folder's lock, so a run that another process is training
    is never moved from under it (that is an error, as it is for the runner).
    """
    # deferred: torch, through run_config and runner (hero-bench --help must not import it)
    from hero_bench.run_config import CONFIG_FILE
    from hero_bench.run_records import recorded_task_version
    from hero_bench.runner import Run
    from hero_bench.tasks import get_task

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        return f"train: {run_dir} holds no run yet: starting it"
    try:
        with exclusive_folder(run_dir):
            try:
                Run(cfg, run_dir, progress=False).check_config()  # with a config.yaml present it only compares
                # the same settings, but the task's definition may have changed since (Task.version)
                made_under, current = recorded_task_version(run_dir), get_task(cfg.task).version
                if made_under == current:
                    return f"train: {run_dir} holds this run's config: resuming it"
                why = f" (task {cfg.task!r} version {made_under} -> {current})"
            except ConfigError as exc:
                differs = re.search(r"differs in: [^)]*", str(exc))
                why = f" ({differs.group(0)})" if differs else ""
            except yaml.YAMLError:
                why = f" ({CONFIG_FILE} cannot be read)"
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            stale = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
            n = 1
            while stale.exists():  # replaced twice within one second
                n += 1
                stale = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{n}")
            run_dir.rename(stale)  # the lock is on the folder itself and moves with it
    except FolderBusyError:
        raise HeroBenchError(f"{run_dir} is being trained by another process; wait for it to end, "
                             "or give this run another --out") from None
    return f"train: the settings of {run_dir} changed{why}; old run moved to {stale}; starting afresh"
