"""The Snakemake workflow: lint, the planned DAG of every shipped config, fast config errors,
what reruns when a setting changes, and the GPU slot wrapper of the local profile.

Everything here is quick: dry runs, plus small real runs against a fake `hero-bench` command
(the real CLI is exercised by the smoke DAG in CI, `.ci/run`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CONFIG_DIR = REPO / "workflows" / "config"
SCHEMA = REPO / "workflows" / "schemas" / "config.schema.yaml"
GPU_SLOT = REPO / "workflows" / "profiles" / "local" / "gpu_slot.py"
CONFIGS = ["smoke", "toy", "toy-full", "toy-acceptance", "tune-designed", "paper"]
TIMEOUT = 120


def snakemake_exe() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    if exe.exists():
        return str(exe)
    found = shutil.which("snakemake")
    if not found:
        pytest.skip("snakemake is not installed")
    return found


def snakemake(*args, cwd=REPO, env=None, check=True) -> subprocess.CompletedProcess:
    """Run snakemake; returns the process (stdout and stderr merged in .stdout)."""
    proc = subprocess.run(
        [snakemake_exe(), "--snakefile", str(SNAKEFILE), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run ({} if nothing to do)."""
    if "Nothing to be done" in output:
        return {}
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    counts = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        if parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def load_config(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


def dry_run(tmp_path, *args) -> str:
    """Dry run of the whole DAG in an empty working directory."""
    return snakemake("--dry-run", "--printshellcmds", "--directory", tmp_path, *args).stdout


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Dry-run output of each shipped config (computed once per module, on demand)."""
    cache = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = dry_run(
                tmp_path_factory.mktemp(name), "--configfile", CONFIG_DIR / f"{name}.yaml"
            )
        return cache[name]

    return get


# ---- lint and shipped configs ----------------------------------------------------------------
def test_lint_passes():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("name", CONFIGS)
def test_dry_run_plans_the_configured_grid(planned, name):
    cfg = load_config(name)
    out = planned(name)
    if cfg.get("sweep"):  # a sweep: every (task, method, variant, seed), then the table
        runs = sum(len(cfg["tasks"]) * len(cfg["sweep"].get(m, {})) * len(cfg["seeds"]) for m in cfg["methods"])
        assert runs > 0
        assert planned_jobs(out) == {"tune_train": runs, "tune_table": 1, "all": 1}
        for method in cfg["methods"]:
            for variant in cfg["sweep"][method]:
                assert f"results/tune/{cfg['tier']}/{cfg['tasks'][0]}/{method}/{variant}/seed{cfg['seeds'][0]}/eval.csv" in out
        return
    runs = len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["seeds"])
    expected = {"train": runs, "gather": 1, "report": 1, "all": 1}
    if cfg["tier"] == "smoke":
        expected["build_tiny_backbone"] = 1
    assert planned_jobs(out) == expected  # no published results in the dry run's folder: no compare
    # every run of the grid is planned, under the configured tier
    for task in cfg["tasks"]:
        for method in cfg["methods"]:
            for seed in cfg["seeds"]:
                assert f"results/runs/{cfg['tier']}/{task}/{method}/seed{seed}/eval.csv" in out


def test_default_config_is_toy(tmp_path):
    # in an empty working directory: the checkout's own results/ (a run in progress, say) must not matter
    out = snakemake("--dry-run", "--forceall", "--directory", tmp_path).stdout
    cfg = load_config("toy")
    assert cfg["tier"] == "toy"
    assert planned_jobs(out)["train"] == len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["seeds"])
    assert "results/runs/toy/" in out


def test_toy_default_grid_is_meaningful():
    # the learning check (sanity) plus at least one designed task, every method, seeds for a CI;
    # the calibrated settings cost 2-4x the paper's per label, so half an hour on 2 cores holds
    # 2 tasks x 3 seeds at 64 labels (toy-full.yaml is the full comparison)
    cfg = load_config("toy")
    assert "sanity" in cfg["tasks"] and len(cfg["tasks"]) >= 2 and len(cfg["seeds"]) >= 3
    assert set(cfg["methods"]) == {"base", "hero", "ddpo", "d3po"}
    assert cfg["published"] == "results/published/toy"


def test_training_jobs_start_longest_first(planned):
    # priority = the run's label budget: on few cores the long runs start first and the short ones
    # fill the end (the default run once ended with one preference run alone for minutes)
    cfg = load_config("toy")
    seen = {}
    for block in planned("toy").split("rule train:")[1:]:
        block = block.split("\nrule ")[0].split("\nlocalrule ")[0]
        wildcards = dict(item.split("=") for item in re.search(r"wildcards: (.*)", block).group(1).split(", "))
        priority = re.search(r"priority: (\d+)", block)
        seen[(wildcards["task"], wildcards["method"])] = int(priority.group(1)) if priority else 0
    budgets = {task: cfg.get("per_task", {}).get(task, {}).get("budget", cfg["budget"]) for task in cfg["tasks"]}
    assert seen == {(task, method): 0 if method == "base" else budgets[task]
                    for task in cfg["tasks"] for method in cfg["methods"]}
    assert len(set(seen.values())) == 3  # preference before sanity before the base model's evaluations


def test_published_results_plan_the_reproduction_check(tmp_path):
    published = tmp_path / "results" / "published" / "toy" / "summary"
    published.mkdir(parents=True)
    (published / "summary.csv").write_text("tier,task,method,metric,budget,estimate,ci_low,ci_high\n")
    out = dry_run(tmp_path, "--configfile", CONFIG_DIR / "toy.yaml")
    assert planned_jobs(out)["compare"] == 1
    assert "hero-bench compare results/summary/summary.csv results/published/toy/summary/summary.csv" in out


def _train_commands(out: str) -> dict[tuple[str, str], str]:
    """(task, method) -> the dry-run block (incl. shell command) of its seed-0 training job."""
    cmds = {}
    for block in out.split("rule train:")[1:]:
        m = re.search(r"wildcards: tier=\w+, task=(\w+), method=(\w+), seed=0\n", block)
        if m:
            cmds[(m.group(1), m.group(2))] = re.sub(r"\s+", " ", block)
    return cmds


def test_evaluator_web_puts_a_person_on_every_training_job_and_the_default_on_none(planned, tmp_path):
    web = _train_commands(dry_run(tmp_path, "--configfile", CONFIG_DIR / "smoke.yaml", "--config", "evaluator=web"))
    default = _train_commands(planned("smoke"))
    assert set(web) == set(default) and any(m == "base" for _, m in web)
    for (task, method), block in web.items():
        assert ("--evaluator web" in block) == (method != "base"), (task, method)
        # the rest of the command is the default's: the flag is the only difference
        shell = re.compile(r"hero-bench train .*?--replace-stale")
        assert shell.search(block.replace(" --evaluator web", "")).group(0) == shell.search(default[(task, method)]).group(0)
    assert not any("--evaluator" in block for block in default.values())


def test_paper_tier_budgets_gpus_and_devices(planned):
    out = planned("paper")
    cmds = _train_commands(out)
    assert "--budget 1152 " in cmds[("hand", "hero")]
    assert "--budget 5000 " in cmds[("hand", "d3po")]
    assert "--set eval.every_epochs=1" in cmds[("hand", "d3po")]
    assert "--set eval.every_epochs=2" in cmds[("mountain", "d3po")]
    assert "--budget 512 " in cmds[("mountain", "hero")]
    assert "--budget 0 " in cmds[("hand", "base")]
    assert all("--device cuda" in c and "gpu_slot.py -- " in c for c in cmds.values())
    train_resources = re.findall(r"rule train:.*?resources: ([^\n]*)", out, flags=re.S)
    assert train_resources and all("gpu=1" in r for r in train_resources)
    other = re.findall(r"rule (?:gather|report):.*?resources: ([^\n]*)", out, flags=re.S)
    assert other and not any("gpu=" in r for r in other)


def test_paper_workflow_plans_the_paper_presets_budgets(planned):
    # paper.yaml states the budgets the workflow passes with --budget; the paper preset reads them
    # from oracles/paper_prompts.py (PAPER_BUDGETS): every planned run must get the preset's
    from hero_bench.presets import paper

    cmds = _train_commands(planned("paper"))
    cfg = load_config("paper")
    assert set(cmds) == {(task, method) for task in cfg["tasks"] for method in cfg["methods"]}
    for (task, method), cmd in sorted(cmds.items()):
        planned_budget = int(re.search(r"--budget (\d+) ", cmd).group(1))
        assert planned_budget == paper(method, task).budget, (
            f"workflows/config/paper.yaml gives {task}/{method} a budget of {planned_budget}; "
            f"oracles/paper_prompts.py gives {paper(method, task).budget}")


@pytest.mark.parametrize("name", ["smoke", "toy"])
def test_cpu_tiers_request_no_gpu(planned, name):
    out = planned(name)
    assert "gpu=" not in out
    assert "gpu_slot.py" not in out
    cmds = _train_commands(out)
    backbone = "--backbone results/models/tiny-sd" if name == "smoke" else "--backbone"
    for cmd in cmds.values():
        assert "--device cpu" in cmd
        assert (backbone in cmd) == (name == "smoke")


def test_profiles_load(tmp_path):
    for profile in ["local", "slurm"]:
        out = dry_run(
            tmp_path,
            "--profile",
            REPO / "workflows" / "profiles" / profile,
            "--configfile",
            CONFIG_DIR / "smoke.yaml",
        )
        assert planned_jobs(out)["train"] == 16


# ---- schema ----------------------------------------------------------------------------------
def _schema_properties(node, path=""):
    """Yield (path, schema) for every named property in the schema (recursively)."""
    for key, sub in node.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _schema_properties(sub, f"{path}{key}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _schema_properties(extra, f"{path}<name>.")


def test_schema_documents_every_key():
    schema = yaml.safe_load(SCHEMA.read_text())
    readme = (CONFIG_DIR / "README.md").read_text()
    props = list(_schema_properties(schema))
    assert len(props) > 15
    for path, sub in props:
        assert sub.get("description") or "$ref" in sub, f"schema key {path} has no description"
        leaf = path.split(".")[-1]
        if leaf != "<name>":
            assert f"`{leaf}`" in readme, f"workflows/config/README.md does not document {path}"


def test_schema_names_the_method_tables_methods():
    # the schema is static YAML and cannot import the library's method table
    # (hero_bench/methods.py); this is what keeps the two one list
    from hero_bench.methods import method_names, trained_method_names

    schema = yaml.safe_load(SCHEMA.read_text())
    stated = {
        "$defs.method.enum": schema["$defs"]["method"]["enum"],
        "properties.set.properties": list(schema["properties"]["set"]["properties"]),
        "properties.sweep.properties": list(schema["properties"]["sweep"]["properties"]),
    }
    expected = {
        "$defs.method.enum": method_names(),
        "properties.set.properties": ["all", *method_names()],
        "properties.sweep.properties": trained_method_names(),
    }
    for where, names in stated.items():
        assert names == expected[where], (
            f"{SCHEMA.relative_to(REPO)} {where} is {names}; the method table (hero_bench/methods.py) "
            f"makes it {expected[where]}")


@pytest.mark.parametrize(
    "key, value, names",
    [
        ("seeds", [-1], ["seeds", "-1"]),
        ("seeds", [0, 0], ["seeds", "non-unique"]),
        ("methods", ["hero", "ppo"], ["methods", "ppo"]),
        ("tier", "huge", ["tier", "huge"]),
        ("budget", 0, ["budget"]),
        ("evaluation", {"every_epochs": 0, "images": 8}, ["evaluation", "every_epochs"]),
        ("evaluation", {"every": 2}, ["evaluation", "every"]),
        ("tasks", ["Counting"], ["tasks", "Counting"]),
        ("device", "tpu", ["device", "tpu"]),
        ("report", {"budgets": [8], "threshold": 1.5, "bootstrap_reps": 200, "bootstrap_seed": 0},
         ["report", "threshold"]),
        ("per_task", {"anomaly": {"budget": {"ppo": 3}}}, ["per_task", "ppo"]),
        ("set", {"hero": ["no_equals_sign"]}, ["set", "no_equals_sign"]),
        ("budgett", 5, ["budgett"]),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(key, value, names):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = load_config("toy")
    config[key] = value
    with pytest.raises(WorkflowError) as info:
        validate(config, str(SCHEMA))
    for name in names:
        assert name in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "override, line",
    [("seeds=[-1]", "invalid workflow config: seeds[0] = -1: -1 is less than the minimum of 0"),
     ("methods=[hero,ppo]", "invalid workflow config: methods[1] = 'ppo'; accepted: base, hero, ddpo, d3po"),
     ("no_such_key=1", "invalid workflow config: unknown key(s) 'no_such_key' in (top level); accepted: backbone, "
                       "budget,")],
)
def test_bad_config_fails_fast_naming_the_key(tmp_path, override, line):
    # (how fast it fails is measured, not asserted here: about 1.3 s, nearly all of it
    # Snakemake's own start-up; a wall-clock bound in a unit test fails on a busy machine)
    proc = snakemake(
        "--dry-run", "--directory", tmp_path, "--configfile", CONFIG_DIR / "toy.yaml",
        "--config", override, check=False,
    )
    assert proc.returncode != 0, proc.stdout
    assert line in proc.stdout, proc.stdout
    # the error, where it was raised and the two frames: not the whole schema (it used to be 326 lines)
    assert len(proc.stdout.strip().splitlines()) <= 6, proc.stdout
    assert "rule train" not in proc.stdout  # nothing was planned


@pytest.mark.parametrize(
    "config, override, message",
    [
        ("toy", "tasks=[counting,countng]", "tasks[1] = 'countng' is unknown"),
        ("toy", "tasks=[hand]", "tasks[0] = 'hand' is a paper-tier task"),
        ("paper", "tasks=[counting]", "tasks[0] = 'counting' is a toy-tier task"),
    ],
)
def test_unknown_or_wrong_tier_task_fails_naming_it(tmp_path, config, override, message):
    pytest.importorskip("hero_bench.tasks")
    proc = snakemake(
        "--dry-run", "--directory", tmp_path, "--configfile", CONFIG_DIR / f"{config}.yaml",
        "--config", override, check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout
    assert "accepts: " in proc.stdout


def test_config_numbers_given_as_strings_are_read(tmp_path):
    """`--config seeds=[0,1]` reaches the workflow as strings; it must still work."""
    out = dry_run(tmp_path, "--config", "seeds=[0,1]", "tasks=[counting]",
                  "--configfile", CONFIG_DIR / "toy.yaml")
    assert planned_jobs(out)["train"] == 4 * 2
    assert "seed1/eval.csv" in out


# ---- real runs against a fake hero-bench: what reruns when a setting changes -----------------
FAKE_CLI = r'''#!/usr/bin/env python3
"""Stand-in for the hero-bench CLI: writes the files each command promises, records its argv."""
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_HERO_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
cmd = args[0]
opt = lambda name: args[args.index(name) + 1]
if cmd == "build-tiny":
    os.makedirs(opt("--out"), exist_ok=True)
    open(os.path.join(opt("--out"), "model_index.json"), "w").write("{}")
elif cmd == "train":
    out = opt("--out")
    resolved = json.dumps([a for a in args if a not in ("--print-config", "--replace-stale", "--out", out)]) + "\n"
    if "--print-config" in args:
        sys.stdout.write(resolved)
        sys.exit(0)
    config = os.path.join(out, "config.yaml")
    if os.path.exists(config) and open(config).read() != resolved:
        if "--replace-stale" not in args:
            sys.exit(f"{out} already holds a run with a different config")
        # what the real --replace-stale does (tests/test_train_replace_stale.py runs the real one)
        os.rename(out, out + ".replaced-fake")
        print(f"train: the settings of {out} changed; old run moved to {out}.replaced-fake; starting afresh")
    elif os.path.exists(config) and "--replace-stale" in args:
        print(f"train: {out} holds this run's config: resuming it")
    os.makedirs(out, exist_ok=True)
    open(config, "w").write(resolved)
    open(os.path.join(out, "checkpoint.pt"), "w").write("ckpt")
    if os.environ.get("FAKE_HERO_FAIL") == opt("--method"):
        sys.exit("simulated crash")
    open(os.path.join(out, "eval.csv"), "w").write(
        "task,method,seed,feedback_used,success_rate\n"
        f"{opt('--task')},{opt('--method')},{opt('--seed')},{opt('--budget')},0.5\n")
    open(os.path.join(out, "DONE.json"), "w").write("{}")
elif cmd == "evaluate":
    open(opt("--out"), "w").write(f"task,method,seed,epoch,success_rate,prompt_set\n{args[1]},0,0.5,train\n")
elif cmd == "gather":
    rows = [open(p).read().splitlines() for p in args[3:]]
    open(opt("--out"), "w").write("\n".join([rows[0][0]] + [r[1] for r in rows]) + "\n")
elif cmd == "report":
    d = opt("--out-dir")
    for sub in ("summary", "tables", "figures"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for p in ("summary/summary.csv", "tables/summary.md", "figures/success_vs_feedback.png",
              "figures/final_success.png"):
        open(os.path.join(d, p), "w").write(" ".join(args))
else:
    sys.exit(f"fake hero-bench: unknown command {cmd}")
'''

SMALL_GRID = ["tasks=[counting,anomaly]", "seeds=[0]"]


@pytest.fixture
def fake_env(tmp_path):
    return _fake_env(tmp_path)


def _fake_env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cli = bindir / "hero-bench"
    cli.write_text(FAKE_CLI.replace("/usr/bin/env python3", sys.executable, 1))
    cli.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["FAKE_HERO_LOG"] = str(tmp_path / "calls.jsonl")
    env.pop("FAKE_HERO_FAIL", None)
    work = tmp_path / "work"
    work.mkdir()
    return work, env


@pytest.fixture(scope="module")
def finished_fake_run(tmp_path_factory):
    """A complete small smoke-config run against the fake CLI: (work dir, env), done once."""
    base = tmp_path_factory.mktemp("fake-run")
    work, env = _fake_env(base)
    smoke_run(work, env)
    return work, env


@pytest.fixture
def fake_done(finished_fake_run, tmp_path):
    """A private copy of the finished run (mtimes and Snakemake metadata included)."""
    work, env = finished_fake_run
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    return copy, env


def smoke_run(work, env, *config, dry=False, check=True, targets=()):
    args = [*targets, "--cores", "2", "--directory", work, "--configfile", CONFIG_DIR / "smoke.yaml",
            "--config", *SMALL_GRID, *config]
    if dry:
        args.insert(0, "--dry-run")
    return snakemake(*args, env=env, check=check)


def calls(env) -> list[list[str]]:
    path = Path(env["FAKE_HERO_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_rules_pass_the_documented_cli_arguments(finished_fake_run):
    work, env = finished_fake_run
    got = calls(env)
    by_cmd = {}
    for c in got:
        by_cmd.setdefault(c[0], []).append(c)
    assert [c[0] for c in got].count("train") == 2 * 4
    assert by_cmd["build-tiny"] == [["build-tiny", "--out", "results/models/tiny-sd", "--seed", "0"]]
    cfg = load_config("smoke")
    for c in by_cmd["train"]:
        method = c[c.index("--method") + 1]
        assert c[c.index("--tier") + 1] == "smoke"
        assert c[c.index("--budget") + 1] == ("0" if method == "base" else str(cfg["budget"]))
        assert c[c.index("--backbone") + 1] == "results/models/tiny-sd"
        assert c[c.index("--device") + 1] == "cpu"
        assert f"eval.every_epochs={cfg['evaluation']['every_epochs']}" in c
        assert f"eval.n_images={cfg['evaluation']['images']}" in c
        assert c[c.index("--out") + 1].endswith(f"/{method}/seed0")
        assert "--replace-stale" in c  # a run folder of other settings is moved aside, not an error
        # the runs of a task share the pretrained model's evaluation (hero_bench/pretrained_eval.py)
        assert c[c.index("--pretrained-eval-cache") + 1] == "results/cache/pretrained_eval"
    (gather,) = by_cmd["gather"]
    assert gather[:3] == ["gather", "--out", "results/summary/runs.csv"]
    assert len(gather[3:]) == 8 and all(p.endswith("/eval.csv") for p in gather[3:])
    (report,) = by_cmd["report"]
    assert report[report.index("--budgets") + 1] == ",".join(map(str, cfg["report"]["budgets"]))
    assert report[report.index("--out-dir") + 1] == "results"
    for name in ("summary/summary.csv", "tables/summary.md", "figures/final_success.png"):
        assert (work / "results" / name).exists()
    # a second call has nothing to do
    assert planned_jobs(smoke_run(work, env, dry=True).stdout) == {}


@pytest.mark.slow
def test_report_change_reruns_only_the_report(fake_done):
    work, env = fake_done
    out = smoke_run(work, env, "report={threshold: 0.9, bootstrap_reps: 500}", dry=True).stdout
    assert planned_jobs(out) == {"report": 1, "all": 1}, out
    assert "params have changed" in out.lower() or "Params have changed" in out


@pytest.mark.slow
def test_method_override_reruns_only_that_method(fake_done):
    work, env = fake_done
    out = smoke_run(work, env, "set={hero: [hero.best_ratio=0.25]}", dry=True).stdout
    assert planned_jobs(out) == {"train": 2, "gather": 1, "report": 1, "all": 1}, out
    planned_methods = set(re.findall(r"wildcards: tier=smoke, task=\w+, method=(\w+)", out))
    assert planned_methods == {"hero"}, out
    out = smoke_run(work, env, "evaluation={images: 4}", dry=True).stdout
    assert planned_jobs(out)["train"] == 8


@pytest.mark.slow
def test_changed_settings_restart_the_run_and_keep_the_old_one(fake_done):
    work, env = fake_done
    runs = work / "results" / "runs" / "smoke" / "counting"
    smoke_run(work, env, "set={hero: [hero.best_ratio=0.25]}")
    hero = runs / "hero" / "seed0"
    assert "hero.best_ratio=0.25" in (hero / "config.yaml").read_text()
    (replaced,) = list(runs.joinpath("hero").glob("seed0.replaced-*"))
    assert "best_ratio" not in (replaced / "config.yaml").read_text()
    assert (replaced / "checkpoint.pt").exists()  # the old run is kept, not deleted
    assert not list(runs.joinpath("ddpo").glob("seed0.replaced-*"))
    log = (work / "results" / "logs" / "train" / "smoke" / "counting" / "hero" / "seed0.log").read_text()
    assert "settings of" in log and "moved to" in log


@pytest.mark.slow
def test_missing_outputs_resume_the_existing_run(fake_done):
    work, env = fake_done
    run = work / "results" / "runs" / "smoke" / "anomaly" / "d3po" / "seed0"
    (run / "eval.csv").unlink()
    (run / "DONE.json").unlink()
    # (a missing intermediate file alone does not make Snakemake rerun a complete DAG: ask for it)
    out = smoke_run(work, env, targets=[run.relative_to(work) / "eval.csv"]).stdout
    log = (work / "results" / "logs" / "train" / "smoke" / "anomaly" / "d3po" / "seed0.log").read_text()
    assert "resuming it" in log, out + log
    assert (run / "DONE.json").exists() and (run / "eval.csv").exists()
    assert not list(run.parent.glob("seed0.replaced-*"))


@pytest.mark.slow
def test_train_prompt_eval_reevaluates_every_finished_run(fake_done, tmp_path):
    work, env = fake_done
    env = {**env, "FAKE_HERO_LOG": str(tmp_path / "calls-train-prompts.jsonl")}
    smoke_run(work, env, "train_prompt_eval=true")  # 'true' as --config gives it: a string
    got = calls(env)
    assert [c[0] for c in got] == ["evaluate"] * 8, got  # no training reruns
    for c in got:
        run = c[1]
        assert c[2:] == ["--prompts", "train", "--epochs", "last", "--out", f"{run}/eval_train.csv"]
        assert (work / run / "eval_train.csv").exists() and (work / run / "DONE.json").exists()
    assert planned_jobs(smoke_run(work, env, "train_prompt_eval=true", dry=True).stdout) == {}


@pytest.mark.slow
def test_failed_training_job_keeps_its_checkpoint(fake_env):
    work, env = fake_env
    env["FAKE_HERO_FAIL"] = "hero"
    proc = smoke_run(work, env, "--keep-going", check=False)
    assert proc.returncode != 0
    run = work / "results" / "runs" / "smoke" / "counting" / "hero" / "seed0"
    assert (run / "checkpoint.pt").exists()  # the run folder survives for the resume
    assert not (run / "eval.csv").exists() and not (run / "DONE.json").exists()
    assert (work / "results" / "runs" / "smoke" / "counting" / "ddpo" / "seed0" / "DONE.json").exists()
    del env["FAKE_HERO_FAIL"]
    out = smoke_run(work, env, dry=True).stdout
    assert planned_jobs(out) == {"train": 2, "gather": 1, "report": 1, "all": 1}, out


# ---- gpu_slot.py: distinct devices for concurrent local GPU jobs -----------------------------
def slot(lock_dir, *args, env_extra=None, command=("sh", "-c", "echo $CUDA_VISIBLE_DEVICES")):
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")}
    env["HERO_GPU_LOCK_DIR"] = str(lock_dir)
    env.pop("HERO_GPU_DEVICES", None)
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, str(GPU_SLOT), *args, "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_file(path: Path, timeout=20):
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_gpu_slots_are_distinct_and_released(tmp_path):
    locks = tmp_path / "locks"
    holders = []
    for i in range(2):
        marker = tmp_path / f"m{i}"
        release = tmp_path / f"release{i}"
        cmd = ("sh", "-c", f'echo $CUDA_VISIBLE_DEVICES > {marker}; while [ ! -e {release} ]; do sleep 0.05; done')
        holders.append((slot(locks, "--devices", "2", command=cmd), marker, release))
    devices = {wait_for_file(m) for _, m, _ in holders}
    assert devices == {"0", "1"}

    # every slot is held: a third job waits, then gives up with EX_TEMPFAIL and a clear message
    busy = slot(locks, "--devices", "2", "--timeout", "0.5")
    _, err = busy.communicate(timeout=20)
    assert busy.returncode == 75 and "busy" in err

    # a waiting job gets the slot that is freed first
    waiter = slot(locks, "--devices", "2")
    time.sleep(0.3)
    assert waiter.poll() is None
    proc0, marker0, release0 = holders[0]
    release0.touch()
    proc0.wait(timeout=20)
    out, _ = waiter.communicate(timeout=20)
    assert out.strip() == marker0.read_text().strip()
    holders[1][2].touch()
    holders[1][0].wait(timeout=20)


def test_gpu_slot_picks_from_visible_devices_and_passes_exit_code(tmp_path):
    proc = slot(tmp_path, env_extra={"CUDA_VISIBLE_DEVICES": "5,7"})
    assert proc.communicate(timeout=20)[0].strip() == "5"
    proc = slot(tmp_path, "--devices", "2", command=("sh", "-c", "exit 3"))
    proc.wait(timeout=20)
    assert proc.returncode == 3


def test_gpu_slot_leaves_slurm_allocations_alone(tmp_path):
    proc = slot(tmp_path, "--devices", "4", env_extra={"SLURM_JOB_ID": "12", "CUDA_VISIBLE_DEVICES": "3"})
    assert proc.communicate(timeout=20)[0].strip() == "3"
    assert not (tmp_path / "gpu-0.lock").exists()


def test_gpu_slot_without_gpus_runs_the_command(tmp_path):
    proc = slot(tmp_path, env_extra={"PATH": "/usr/bin:/bin", "HERO_GPU_DEVICES": "0"})
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.strip() == "" and "no GPU" in err


def test_a_regime_item_reaches_train_and_an_unknown_one_stops_the_workflow(tmp_path):
    pytest.importorskip("hero_bench.regimes")
    out = dry_run(tmp_path / "ablations", "--configfile", CONFIG_DIR / "toy-ablations.yaml")
    commands = [re.sub(r"\s+", " ", block) for block in out.split("rule tune_train:")[1:]]
    assert len(commands) == 90  # 18 variants x 2 tasks x 3 seeds, the 2 label flips x 3 methods on safety only
    assert any("--set regime=initial-noise --set hero.noise_guidance=false" in c for c in commands)
    assert any("--set regime=step-noise" in c for c in commands)
    proc = snakemake("--dry-run", "--directory", tmp_path / "bad", "--configfile", CONFIG_DIR / "toy.yaml",
                     "--config", "set={hero: [regime=deterministic]}", check=False)
    assert proc.returncode != 0
    assert "unknown regime 'deterministic' for the toy tier; accepted: step-noise, initial-noise" in proc.stdout


def test_the_ablations_end_in_the_regime_comparison_and_a_bad_one_stops_the_workflow(tmp_path):
    """toy-ablations.yaml measures each (task, regime)'s ICC and ends in hero-bench regime-comparison
    over every run; a regime_comparison variant that the sweep does not run stops the workflow."""
    pytest.importorskip("hero_bench.regimes")
    out = re.sub(r"\s+", " ", dry_run(tmp_path / "ablations", "--configfile", CONFIG_DIR / "toy-ablations.yaml"))
    for task in ("safety", "preference"):
        for regime in ("initial-noise", "step-noise"):
            assert (f"hero-bench noise-influence --tier toy --task {task} --regime {regime} --noises 32 --repeats 8"
                    in out)
    command = out.split("hero-bench regime-comparison")[1].split(">")[0]
    assert ("--variant initial-noise=zT --variant step-noise=step --person oracle=zT --person flip0.1=zT_flip0.1 "
            "--person flip0.2=zT_flip0.2 --budget 512") in command
    assert "results/tune/person_erosion.png" in out
    # 18 variants x 2 tasks x 3 seeds, less the label flips (2 variants x 3 methods) on preference
    assert command.count("/eval.csv") == 90 and command.count("noise_influence/") == 4
    assert "safety/d3po/zT_flip0.2/seed2/eval.csv" in command and "preference/d3po/zT_flip0.2" not in out
    # pi_HERO against N(0, I) for every HERO run but those without noise guidance: 9 variants x 2 tasks
    # x 3 seeds, less the 2 flips on preference
    assert command.count("eval_method_noise.csv") == 48 and "zT_no_guidance/seed0/eval_method_noise" not in command
    assert out.count("--method-noise --out results/tune/toy/") == 48
    proc = snakemake("--dry-run", "--directory", tmp_path / "bad", "--configfile", CONFIG_DIR / "toy-ablations.yaml",
                     "--config", "regime_comparison={variants: {initial-noise: zT_beta0}}", check=False)
    assert proc.returncode != 0
    assert "regime_comparison.variants.initial-noise = 'zT_beta0' is not a sweep variant of ddpo" in proc.stdout
    proc = snakemake("--dry-run", "--directory", tmp_path / "bad", "--configfile", CONFIG_DIR / "toy-ablations.yaml",
                     "--config", "regime_comparison={variants: {initial-noise: zT}, person: {oracle: zT, tired: zT_beta0}}",
                     check=False)
    assert proc.returncode != 0
    assert "regime_comparison.person.tired = 'zT_beta0' is not a sweep variant of ddpo" in proc.stdout
    for bad, message in [("sweep_tasks={zT_flip0.3: [safety]}", "sweep_tasks.zT_flip0.3: no method's sweep has"),
                         ("sweep_tasks={zT_flip0.1: [counting]}", "sweep_tasks.zT_flip0.1 names task 'counting'"),
                         ("sweep_tasks={zT: [safety]}", "regime_comparison.variants.initial-noise = 'zT' runs only on")]:
        proc = snakemake("--dry-run", "--directory", tmp_path / "bad", "--configfile",
                         CONFIG_DIR / "toy-ablations.yaml", "--config", bad, check=False)
        assert proc.returncode != 0 and message in proc.stdout, bad
