# Helpers of the hero-bench workflow: every Python function the rules use lives here, so the rule
# files hold rules only. The Snakefile includes this file first, then normalises and validates
# the config (workflows/schemas/config.schema.yaml, which also fills in defaults) and runs
# check_config; everything below that reads `config` runs only after that.

import functools
import os
import re
import shlex
import shutil
import sys

from snakemake.logging import logger
from snakemake.utils import validate


# Rules call the `hero-bench` console script. When it is not on the PATH (as with
# `.venv/bin/snakemake --cores 2` and no activated venv), put the interpreter's own bin folder
# on the jobs' PATH; a `hero-bench` the user put on the PATH wins
# (set -euo pipefail is Snakemake's own default prefix, which shell.prefix replaces).
if shutil.which("hero-bench") is None:
    shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')

# the smoke tier's random tiny backbone, built by rule build_tiny_backbone
TINY_BACKBONE = "results/models/tiny-sd"
TINY_BACKBONE_SEED = 0

# the config's JSON schema, relative to the Snakefile
CONFIG_SCHEMA = "workflows/schemas/config.schema.yaml"

# hero-bench train --set keys that receive the config's evaluation settings
EVAL_SET_KEYS = {"every_epochs": "eval.every_epochs", "images": "eval.n_images",
                 "transfer_images": "eval.transfer_images"}


# ---- config ----------------------------------------------------------------------------------
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?$")
_VERBATIM_KEYS = ("set", "backbone")  # free-form strings, never converted
_BOOLEAN_KEYS = ("train_prompt_eval",)  # `--config key=true` arrives as 'true' (only 'True' is parsed)


def _numbers_from_strings(value):
    if isinstance(value, str):
        if _INT.match(value):
            return int(value)
        if _FLOAT.match(value):
            return float(value)
        return value
    if isinstance(value, list):
        return [_numbers_from_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_from_strings(v) for k, v in value.items()}
    return value


def normalize_config(config):
    """Read numbers and booleans that `--config` passed as strings (in place); returns config.

    Snakemake parses `--config seeds=[0,1]` with YAML's BaseLoader, so list items and nested
    values arrive as strings ('0', '1'); convert those that look like numbers before the schema
    checks types, and 'true' or 'false' of the boolean keys (Snakemake itself reads only 'True' and
    'False'). Free-form keys (set, backbone) stay as they are.
    """
    for key, value in list(config.items()):
        if key in _BOOLEAN_KEYS:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                config[key] = value.lower() == "true"
        elif key not in _VERBATIM_KEYS:
            config[key] = _numbers_from_strings(value)
    return config


def load_schema(schema_file):
    """The schema at ``schema_file`` (relative to the Snakefile, as Snakemake's validate reads it)."""
    import yaml

    with open(os.path.join(workflow.basedir, schema_file)) as fh:
        return yaml.safe_load(fh)


def validate_config(config, schema_file):
    """Snakemake's schema validation (which also fills the schema's defaults), with the error cut to
    one line: the key, what is wrong and what is accepted (Snakemake's own prints the whole schema,
    hundreds of lines, after the one line that matters)."""
    import jsonschema

    schema = load_schema(schema_file)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        raise ValueError(f"invalid workflow config: {_schema_error_line(error, schema)}")
    validate(config, os.path.join(workflow.basedir, schema_file))


def method_wildcard():
    """The train rules' `method` wildcard: the method names the config schema accepts (which
    tests/test_workflow.py keeps equal to the library's method table, hero_bench/methods.py)."""
    return "|".join(re.escape(name) for name in load_schema(CONFIG_SCHEMA)["$defs"]["method"]["enum"])


def _schema_error_line(error, schema):
    where = ""
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    where = where or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        accepted = ", ".join(sorted(error.schema.get("properties", {})))
        return (f"unknown key(s) {', '.join(repr(k) for k in extra)} in {where}; accepted: {accepted} "
                "(workflows/config/README.md)")
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "enum":
        return f"{where} = {error.instance!r}; accepted: {', '.join(map(str, error.validator_value))}"
    return f"{where} = {error.instance!r}: {error.message} (workflows/config/README.md)"


def _known_tasks():
    """Task name -> tier from the library's registry (no torch import), or None if unavailable."""
    try:
        from hero_bench.tasks import list_tasks
    except ImportError:
        return None
    return {task.name: task.tier for task in list_tasks()}


def check_config(config):
    """Checks the JSON schema cannot express; an error names the key and the accepted values."""
    known = _known_tasks()
    if known is None:
        logger.warning("config: hero_bench is not importable here; task names are not checked")
    else:
        task_tier = "paper" if config["tier"] == "paper" else "toy"
        accepted = sorted(name for name, tier in known.items() if tier == task_tier)
        for i, task in enumerate(config["tasks"]):
            if known.get(task) != task_tier:
                what = f"a {known[task]}-tier task" if task in known else "unknown"
                raise ValueError(
                    f"invalid workflow config: tasks[{i}] = {task!r} is {what}; tier "
                    f"{config['tier']!r} accepts: {', '.join(accepted)}"
                )
    for task in config["per_task"]:
        if task not in config["tasks"]:
            logger.warning(
                f"config: per_task.{task} is ignored: task {task!r} is not in tasks {config['tasks']}"
            )
    _check_sweep_tasks(config)
    _check_run_configs(config)
    _check_regime_comparison(config)
    if config["tier"] == "paper" and config["device"] != "cuda":
        logger.warning(
            "config: tier 'paper' with device 'cpu' runs Stable Diffusion v1.5 on the CPU "
            "(only sensible for dry runs)"
        )


def sweep_variants(task, method):
    """The method's sweep variants that run on the task: all of them but those that sweep_tasks
    keeps to other tasks."""
    only = config.get("sweep_tasks") or {}
    return [variant for variant in (config.get("sweep") or {}).get(method, {})
            if task in only.get(variant, [task])]


def _check_sweep_tasks(config):
    """Every sweep_tasks entry names a variant the sweep has and tasks the config runs."""
    only = config.get("sweep_tasks") or {}
    if only and not config.get("sweep"):
        raise ValueError("invalid workflow config: sweep_tasks limits a sweep's variants; the config has no sweep")
    known = sorted({variant for variants in (config.get("sweep") or {}).values() for variant in variants})
    for variant, tasks in only.items():
        if variant not in known:
            raise ValueError(f"invalid workflow config: sweep_tasks.{variant}: no method's sweep has the variant "
                             f"{variant!r}; the sweep's variants: {', '.join(known)}")
        for task in tasks:
            if task not in config["tasks"]:
                raise ValueError(f"invalid workflow config: sweep_tasks.{variant} names task {task!r}, which is not "
                                 f"in tasks; accepted: {', '.join(config['tasks'])}")


def _check_run_configs(config):
    """Build every run's config as `hero-bench train` will (preset, budget, overrides), so that a bad
    `set` item, a budget that buys no round or a value the library refuses stops the workflow at
    load, in one line, before any job has spent compute."""
    try:
        from hero_bench.errors import HeroBenchError
        from hero_bench.presets import build_run_config
    except ImportError:
        logger.warning("config: hero_bench is not importable here; run settings are not checked")
        return
    sweep = config.get("sweep")
    for task in config["tasks"]:
        for method in config["methods"]:
            budget = run_budget(task, method)
            for variant in (sweep_variants(task, method) if sweep else [None]):
                run = "/".join([task, method] + ([variant] if variant else []))
                try:
                    build_run_config(config["tier"], task, method, seed=config["seeds"][0], budget=budget,
                                     device=config["device"], overrides=override_items(task, method, variant))
                except HeroBenchError as exc:
                    raise ValueError(f"invalid workflow config: the {run} runs: {exc}") from None


def _check_regime_comparison(config):
    """regime_comparison needs a sweep, HERO and another method, regimes the tier has and variants
    the sweep runs for every method it compares."""
    rc = config.get("regime_comparison")
    if not rc:
        return
    if not config.get("sweep"):
        raise ValueError("invalid workflow config: regime_comparison compares a sweep's variants; the config has no sweep")
    compared = [m for m in ("hero", "ddpo", "d3po") if m in config["methods"]]
    if "hero" not in compared or len(compared) < 2:
        raise ValueError(f"invalid workflow config: regime_comparison needs hero and ddpo or d3po in methods, "
                         f"got {config['methods']}")
    try:
        from hero_bench.regimes import regime_items
        from hero_bench.errors import HeroBenchError
    except ImportError:
        logger.warning("config: hero_bench is not importable here; regime names are not checked")
        regime_items = None
    for regime in rc["variants"]:
        if regime_items is not None:
            try:
                regime_items(config["tier"], regime)
            except HeroBenchError as exc:
                raise ValueError(f"invalid workflow config: regime_comparison.variants: {exc}") from None
    # every variant the comparison reads, a regime's or a person's, must be run by every compared method
    for key in ("variants", "person"):
        for name, variant in (rc.get(key) or {}).items():
            for method in compared:
                if variant not in config["sweep"].get(method, {}):
                    raise ValueError(f"invalid workflow config: regime_comparison.{key}.{name} = {variant!r} is not "
                                     f"a sweep variant of {method}; its variants: "
                                     f"{', '.join(config['sweep'].get(method, {}))}")
    # a regime's plain runs, and the reference person's, are what every other run is compared
    # with: they run on every task (an imperfect person's may be kept to fewer)
    only = config.get("sweep_tasks") or {}
    person = list((rc.get("person") or {}).items())[:1]
    for key, name, variant in ([("variants", n, v) for n, v in rc["variants"].items()]
                               + [("person", n, v) for n, v in person]):
        if variant in only and set(only[variant]) != set(config["tasks"]):
            raise ValueError(f"invalid workflow config: regime_comparison.{key}.{name} = {variant!r} runs only on "
                             f"{', '.join(only[variant])} (sweep_tasks); the variants compared with must run on "
                             f"every task ({', '.join(config['tasks'])})")


def noise_influence_jsons():
    """The ICC measurement of every (task, regime) of regime_comparison."""
    return [f"results/tune/{config['tier']}/noise_influence/{task}_{regime}.json"
            for task in config["tasks"] for regime in config["regime_comparison"]["variants"]]


def _samples_from_pi_hero(task, variant):
    """Whether a HERO sweep run keeps its noise guidance, read from the run's resolved config (the
    preset, `set`, regimes and the variant's items, as `hero-bench train` builds it)."""
    from hero_bench.presets import build_run_config

    cfg = build_run_config(config["tier"], task, "hero", seed=config["seeds"][0], budget=run_budget(task, "hero"),
                           device=config["device"], overrides=override_items(task, "hero", variant))
    return cfg.hero.noise_guidance


def method_noise_csvs():
    """eval_method_noise.csv of every HERO sweep run that samples from pi_HERO (not the variants that
    turn the noise guidance off: their sampler is N(0, I), which eval.csv already measures)."""
    return [
        f"results/tune/{config['tier']}/{task}/hero/{variant}/seed{seed}/eval_method_noise.csv"
        for task in config["tasks"]
        for variant in sweep_variants(task, "hero")
        if _samples_from_pi_hero(task, variant)
        for seed in config["seeds"]
    ]


def person_outputs():
    """rule regime_comparison's imperfect-person outputs, when regime_comparison.person names persons."""
    if not (config.get("regime_comparison") or {}).get("person"):
        return {}
    return {
        "person_csv": "results/tune/regime_person.csv",
        "person_figure": report(
            "results/tune/person_erosion.png",
            caption="../report/person_erosion.rst",
            category="Regimes",
            labels={"item": "imperfect person"},
        ),
    }


def regime_comparison_args():
    rc = config["regime_comparison"]
    items = [f"--variant {shlex.quote(f'{regime}={variant}')}" for regime, variant in rc["variants"].items()]
    items += [f"--person {shlex.quote(f'{label}={variant}')}" for label, variant in (rc.get("person") or {}).items()]
    # runs with a smaller per_task budget count with their last evaluation (stats.success_at)
    items.append(f"--budget {int(rc.get('budget') or config['budget'])}")
    return " ".join(items)


# ---- per-job resources, by tier (override with --set-resources / --set-threads or a profile) --
# runtime is minutes; training jobs are also killed locally after `runtime` (timeout), so a hung
# job cannot block the workflow forever (a killed run resumes from its checkpoint on rerun).
def train_threads():
    return {"smoke": 1, "toy": 1, "paper": 4}[config["tier"]]


def train_resources():
    """Training jobs; gpu=1 only in the paper tier (local: limit with --resources gpu=N)."""
    return {
        "smoke": {"mem_mb": 2000, "runtime": 30},
        "toy": {"mem_mb": 4000, "runtime": 240},
        "paper": {"mem_mb": 32000, "runtime": 2880, "gpu": 1},
    }[config["tier"]]


def small_resources():
    """Backbone build, gather and report."""
    return {"mem_mb": 2000, "runtime": 30}


# GPU jobs on one machine: gpu_slot.py locks one of the visible devices (flock) and exports
# CUDA_VISIBLE_DEVICES for the job; inside a SLURM allocation it changes nothing.
GPU_SLOT = os.path.join(workflow.basedir, "workflows", "profiles", "local", "gpu_slot.py")


# ---- targets ---------------------------------------------------------------------------------
def run_dir(task, method, seed):
    return f"results/runs/{config['tier']}/{task}/{method}/seed{seed}"


def all_eval_csvs():
    """eval.csv of every (task, method, seed) in the grid, in a stable order."""
    return [
        f"{run_dir(task, method, seed)}/eval.csv"
        for task in config["tasks"]
        for method in config["methods"]
        for seed in config["seeds"]
    ]


def all_eval_train_csvs():
    """eval_train.csv (rule evaluate_train_prompts) of every run in the grid, in a stable order."""
    return [
        os.path.join(run_dir(task, method, seed), "eval_train.csv")
        for task in config["tasks"]
        for method in config["methods"]
        for seed in config["seeds"]
    ]


def final_outputs():
    if config.get("sweep"):
        outputs = ["results/tune/sweep.md", "results/tune/sweep.csv", "results/tune/sweep_selection.csv"]
        if config.get("regime_comparison"):
            outputs += ["results/tune/regime_comparison.md", "results/tune/hero_gain_vs_icc.png",
                        *person_outputs().values()]
        return outputs
    outputs = [
        "results/summary/runs.csv",
        "results/summary/summary.csv",
        "results/tables/summary.md",
        "results/figures/success_vs_feedback.png",
        "results/figures/final_success.png",
    ]
    if published_summary():
        outputs.append("results/tables/reproduction.md")
    if config["train_prompt_eval"]:
        outputs += all_eval_train_csvs()
    return outputs


@functools.cache  # rule all and rule compare both ask; look (and warn) once
def published_summary():
    """The published summary.csv to compare the rerun with (config key `published`), or None.

    A folder stands for its summary/summary.csv. A path that does not exist (e.g. when running
    with --directory elsewhere) skips the check with a warning instead of failing the workflow.
    """
    path = config.get("published")
    if not path:
        return None
    if os.path.isdir(path):
        path = os.path.join(path, "summary", "summary.csv")
    if not os.path.isfile(path):
        logger.warning(f"config: published results {path!r} not found; the reproduction check is skipped")
        return None
    return path


# ---- train -----------------------------------------------------------------------------------
def _per_task_value(key, task, method, default):
    """per_task.<task>.<key>: an int for every method, or a mapping method -> int."""
    value = config["per_task"].get(task, {}).get(key)
    if isinstance(value, dict):
        return value.get(method, default)
    return default if value is None else value


def run_budget(task, method):
    """Feedback budget of one run; the base model spends none."""
    if method == "base":
        return 0
    return _per_task_value("budget", task, method, config["budget"])


def train_budget(wildcards):
    return run_budget(wildcards.task, wildcards.method)


def train_priority(wildcards):
    """Longest run first: the run's label budget stands for its cost (the base model's is 0).
    Started in the order Snakemake happens to pick, a long run that starts last keeps one core
    busy for minutes while the other waits (the default run on 2 cores ended with one 4-minute
    preference run alone); started longest first, the short runs fill the gaps at the end."""
    return run_budget(wildcards.task, wildcards.method)


def override_items(task, method, variant=None):
    """The `key=value` overrides of one run: evaluation settings, then `set.all`, then
    `set.<method>`, then (a sweep run) its variant's configuration."""
    evaluation = dict(config["evaluation"])
    per_task = _per_task_value("eval_every_epochs", task, method, None)
    if per_task is not None:
        evaluation["every_epochs"] = per_task
    items = [f"{EVAL_SET_KEYS[key]}={evaluation[key]}" for key in EVAL_SET_KEYS if key in evaluation]
    items += config["set"].get("all", [])
    items += config["set"].get(method, [])
    if variant is not None:
        items += config.get("sweep", {})[method][variant]
    return items


def train_overrides(wildcards):
    """`--set key=value` arguments of one run (``override_items``), quoted for the shell, and
    `--evaluator web` when a person labels (config key evaluator). The flag rides here rather than
    in a params entry of its own, so that the default (oracle) leaves the params of existing runs,
    and so Snakemake's rerun decisions, as they were."""
    variant = wildcards.variant if "variant" in wildcards.keys() else None
    items = override_items(wildcards.task, wildcards.method, variant)
    args = " ".join(f"--set {shlex.quote(item)}" for item in items)
    if config["evaluator"] == "web" and wildcards.method != "base":
        args += " --evaluator web"
    return args


def train_backbone_input(wildcards):
    """The backbone folder a run depends on, when the workflow builds it (smoke tier)."""
    if config["tier"] == "smoke" and not config["backbone"]:
        return [TINY_BACKBONE]
    return []


def train_backbone_arg(wildcards, input):
    if input.backbone:
        return f"--backbone {shlex.quote(str(input.backbone))}"
    if config["backbone"]:
        return f"--backbone {shlex.quote(config['backbone'])}"
    return ""  # the tier's default backbone (toy: shipped ShapesWorld, paper: SD v1.5)


def train_launcher(wildcards):
    """Command prefix of a training job: the GPU slot wrapper when training on cuda.

    The path is relative to the working directory, so it stays the same (and does not count as
    a params change) when the checkout moves together with its results.
    """
    if config["device"] != "cuda":
        return ""
    return f"python3 {shlex.quote(os.path.relpath(GPU_SLOT))} --"


def run_dir_of(wildcards, output):
    return os.path.dirname(output.eval_csv)


def run_dir_of_done(wildcards, input):
    """The run folder of a finished run's DONE.json (rule evaluate_train_prompts)."""
    return os.path.dirname(input.done)


# The shell of a training job (rules train and tune_train). `--replace-stale` resumes the run
# folder when its config.yaml is this job's config, else moves it aside to RUN_DIR.replaced-<UTC
# time> and starts afresh, and says which in the log. `timeout --verbose` names the time limit in
# the log when it stops a job (resources.runtime; a rerun resumes from the checkpoint).
# The pretrained model's evaluation is the same numbers for every method and seed of a task
# (hero_bench/pretrained_eval.py): the first run computes it into PRETRAINED_EVAL_CACHE and the
# others read it there.
PRETRAINED_EVAL_CACHE = "results/cache/pretrained_eval"
TRAIN_SHELL = (
    "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} TQDM_DISABLE=1 "
    "{params.launcher} timeout --verbose -k 60 {resources.runtime}m "
    "hero-bench train --tier {wildcards.tier} --task {wildcards.task} --method {wildcards.method} "
    "--seed {wildcards.seed} --budget {params.budget} --device {params.device} "
    "{params.backbone} {params.overrides} --out {params.run_dir:q} --replace-stale "
    f"--pretrained-eval-cache {PRETRAINED_EVAL_CACHE} > {{log}} 2>&1"
)


# ---- sweeps (tune.yaml) ----------------------------------------------------------------------
def sweep_eval_csvs():
    """eval.csv of every (task, method, variant, seed) of the config's sweep."""
    return [
        f"results/tune/{config['tier']}/{task}/{method}/{variant}/seed{seed}/eval.csv"
        for task in config["tasks"]
        for method in config["methods"]
        for variant in sweep_variants(task, method)
        for seed in config["seeds"]
    ]


# ---- report ----------------------------------------------------------------------------------
def report_out_dir(wildcards, output):
    """`hero-bench report --out-dir`: the folder above summary/, tables/ and figures/."""
    return os.path.dirname(os.path.dirname(output.summary))


def report_budgets():
    return ",".join(str(b) for b in config["report"]["budgets"])
