"""Property-based workflow configs (hypothesis): a grid config with one or two keys changed to
values a user might write is either planned (a dry run plans every training job), or refused at
load in one line that names the key and says what is accepted; never a traceback of Snakemake's
internals, never a grid that would fail in its jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "workflows" / "config" / "smoke.yaml").read_text())

pytestmark = pytest.mark.slow

names = st.sampled_from(["anomaly", "counting", "sanity", "hand", "nosuch", "Bad Name"])
methods = st.sampled_from(["base", "hero", "ddpo", "d3po", "sgd"])
small_ints = st.integers(min_value=-2, max_value=40)
set_items = st.sampled_from(["ddpo.ppo.lr=1e-3", "hero.triplet_passes=2", "sampler.eta=0", "nosuch.key=1",
                             "ddpo.images_per_epoch=0", "lora.rank=8", "not an override", "sampler.steps=abc"])
CHANGES = {
    "tier": st.sampled_from(["smoke", "toy", "paper", "big", 3]),
    "tasks": st.one_of(st.lists(names, max_size=3), names),
    "methods": st.lists(methods, max_size=4),
    "seeds": st.lists(small_ints, max_size=3),
    "budget": st.one_of(small_ints, st.just("lots"), st.just(1.5)),
    "evaluation": st.dictionaries(st.sampled_from(["every_epochs", "images", "transfer_images", "often"]),
                                  small_ints, max_size=2),
    "set": st.dictionaries(st.sampled_from(["all", "hero", "ddpo", "d3po", "sgd"]), st.lists(set_items, max_size=2),
                           max_size=2),
    "per_task": st.dictionaries(names, st.dictionaries(st.sampled_from(["budget", "eval_every_epochs", "x"]),
                                                       small_ints, min_size=1, max_size=1), max_size=1),
    "report": st.fixed_dictionaries({"budgets": st.lists(small_ints, max_size=2),
                                     "threshold": st.sampled_from([0.5, -1, 2, "high"])}),
    "device": st.sampled_from(["cpu", "cuda", "tpu"]),
    "no_such_key": st.just(1),
}


def dry_run(config_file: Path, workdir: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    exe = str(exe) if exe.exists() else shutil.which("snakemake")
    return subprocess.run([exe, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--dry-run",
                           "--configfile", str(config_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=180)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(sorted(CHANGES)), st.just(None), min_size=1, max_size=2)
       .flatmap(lambda keys: st.fixed_dictionaries({k: CHANGES[k] for k in keys})))
@example(changes={"set": {"ddpo": ["nosuch.key=1"]}})
@example(changes={"budget": 1, "methods": ["hero"]})
@example(changes={"no_such_key": 1})
def test_a_workflow_config_is_planned_or_refused_in_one_line(tmp_path_factory, changes):
    config = {**SMOKE, **changes}
    workdir = tmp_path_factory.mktemp("wf")
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    proc = dry_run(config_file, workdir)
    if proc.returncode == 0:
        event("planned")
        runs = len(config["tasks"]) * len(config["methods"]) * len(config["seeds"])
        assert re.search(rf"^train\s+{runs}$", proc.stdout, re.M), proc.stdout[-2000:]
        return
    event("refused")
    errors = [line for line in proc.stdout.splitlines() if line.startswith("invalid workflow config:")]
    assert len(errors) == 1, proc.stdout[-3000:]
    named = [key for key in changes if key in errors[0]] or [t for t in str(changes).split("'") if t in errors[0]]
    assert named, (changes, errors[0])
    assert any(word in errors[0] for word in ("accepted", "accepts", "expected", "minimum", "not of type",
                                              "maximum", "should", "must", "is unknown", "is a ")), errors[0]
