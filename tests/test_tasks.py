"""The task registry: the contract every registered task keeps, discovery of task files, errors,
and the `hero-bench tasks` command."""

from __future__ import annotations

import numpy as np
import pytest

from hero_bench import tasks as registry
from hero_bench.cli import main
from hero_bench.errors import ConfigError, HeroBenchError, UnknownTaskError
from hero_bench.tasks import (Prompt, Task, TaskDefinitionError, get_task, get_task_of_tier, list_tasks,
                              register_task)
from hero_bench.toyworld import scenes
from oracles.base import OracleResult

ALL_TASKS = list_tasks()


@pytest.mark.parametrize("task", ALL_TASKS, ids=[t.name for t in ALL_TASKS])
def test_registered_task_contract(task):
    assert get_task(task.name) is task
    assert task.tier in registry.TIERS
    assert task.category.strip() and task.description.strip() and task.oracle_name.strip()
    assert "\n" not in task.description, "the description is one line"
    for prompts in (task.train_prompts, task.eval_prompts):
        assert isinstance(prompts, tuple) and prompts
        assert all(isinstance(p, Prompt) and p.text.strip() for p in prompts)
    assert callable(task.oracle_factory)


@pytest.mark.parametrize("task", ALL_TASKS, ids=[t.name for t in ALL_TASKS])
def test_eval_prompts_are_held_out_or_explained(task):
    assert not task.eval_overlaps_train or task.eval_note.strip(), (
        f"task {task.name!r}: eval prompts repeat train prompts; hold out different prompts or "
        f"say why in Task(eval_note=...)")


TOY_TASKS = list_tasks("toy")


@pytest.mark.parametrize("task", TOY_TASKS, ids=[t.name for t in TOY_TASKS])
def test_toy_task_prompts_and_oracle(task):
    prompts = task.train_prompts + task.eval_prompts
    for p in prompts:
        assert set(p.text.split()) <= set(scenes.VOCAB), f"{p.text!r} has words outside scenes.VOCAB"
    assert {p.text for p in task.eval_prompts}.isdisjoint({p.text for p in task.train_prompts}) or task.eval_note
    oracle = task.oracle_factory()
    assert oracle.name == task.oracle_name and isinstance(oracle.version, str)
    images, _ = scenes.training_batch(np.random.default_rng(0), 2 * len(prompts))
    batch = list(prompts) * 2
    results = oracle(images, [p.text for p in batch], [p.metadata for p in batch])
    assert len(results) == len(images)
    for r in results:
        assert isinstance(r, OracleResult)
        assert type(r.success) is bool and type(r.score) is float and isinstance(r.details, dict)


def test_training_captions_contain_each_toy_prompt_family():
    """The model is trained once, so the caption distribution must already speak every task's language."""
    rng = np.random.default_rng(5)
    captions = set()
    for _ in range(4000):
        captions.add(scenes.caption(scenes.sample_scene(rng), rng))
    frequent = {"anomaly", "counting", "preference", "safety"}  # their exact prompts are common captions
    for task in TOY_TASKS:
        if task.name in frequent:
            assert any(p.text in captions for p in task.train_prompts), task.name


def test_unknown_task_names_the_known_ones():
    with pytest.raises(UnknownTaskError) as info:
        get_task("countng")
    message = str(info.value)
    assert "unknown task 'countng'" in message
    for name in ("anomaly", "counting", "safety"):
        assert name in message
    assert isinstance(info.value, HeroBenchError) and isinstance(info.value, KeyError)


def test_a_run_tier_names_only_the_tasks_it_can_run(tmp_path):
    with pytest.raises(UnknownTaskError) as info:
        get_task_of_tier("countng", "toy")
    toy_names = ", ".join(t.name for t in list_tasks("toy"))
    assert str(info.value) == f"unknown task 'countng'; tier toy runs: {toy_names} (see `hero-bench tasks`)"
    assert "hand" not in str(info.value)  # a paper task would only mislead a toy user
    with pytest.raises(ConfigError, match="task 'hand' belongs to the paper tier; tier smoke runs: anomaly"):
        get_task_of_tier("hand", "smoke")
    assert get_task_of_tier("hand", "paper").name == "hand"
    # the CLI refuses before a run folder exists
    assert main(["train", "--tier", "toy", "--task", "countng", "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()


def test_list_tasks_filters_by_tier():
    toy = list_tasks("toy")
    assert toy and all(t.tier == "toy" for t in toy)
    assert list_tasks("smoke") == toy  # the smoke tier runs the toy tasks
    assert [t.name for t in list_tasks()] == sorted(t.name for t in list_tasks())
    with pytest.raises(ConfigError, match=r"tier 'big' is not one of \['smoke', 'toy', 'paper'\]"):
        list_tasks("big")


def _task(name="demo", **changes):
    fields = dict(name=name, tier="toy", category="counting", description="d",
                  train_prompts=(Prompt("a red circle", {}),), eval_prompts=(Prompt("a red square", {}),),
                  oracle_factory=lambda: None, oracle_name="shapes")
    fields.update(changes)
    return Task(**fields)


def test_duplicate_names_are_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    first = register_task(_task())
    assert register_task(first) is first  # registering the very same task again is harmless
    with pytest.raises(TaskDefinitionError, match="'demo' is registered twice"):
        register_task(_task())


@pytest.mark.parametrize("changes, message", [
    ({"name": "Bad Name"}, "not accepted"),
    ({"tier": "smoke"}, r"tier 'smoke' is not one of \['toy', 'paper'\]"),
    ({"train_prompts": ()}, "train_prompts is empty"),
    ({"eval_prompts": ("a red circle",)}, "must hold Prompt objects"),
    ({"oracle_factory": "shapes"}, "oracle_factory must be callable"),
    ({"version": 0}, "version must be an integer >= 1, got 0"),
    ({"version": "2"}, "version must be an integer >= 1, got '2'"),
    ({"version": True}, "version must be an integer >= 1, got True"),
])
def test_malformed_tasks_are_refused(changes, message):
    with pytest.raises(TaskDefinitionError, match=message):
        _task(**changes)
    with pytest.raises(TaskDefinitionError, match="non-empty string"):
        Prompt("  ")


def test_prompt_metadata_is_a_private_copy():
    meta = {"objects": []}
    prompt = Prompt("a circle", meta)
    meta["objects"] = None
    assert prompt.metadata == {"objects": []}


def _fake_oracles_package(tmp_path, monkeypatch, files):
    """A throwaway task package; its name is unique per test so that no import is cached."""
    name = f"fake_oracles_{tmp_path.name.replace('-', '_')}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, text in files.items():
        (package / module).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "ORACLES_PACKAGE", name)
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_discovered", False)


TASK_FILE = """
from hero_bench.tasks import Prompt, Task, register_task
register_task(Task(name="{name}", tier="toy", category="counting", description="d",
                   train_prompts=(Prompt("a red circle"),), eval_prompts=(Prompt("a red square"),),
                   oracle_factory=lambda: None, oracle_name="none"))
"""


def test_discovery_imports_every_task_file(tmp_path, monkeypatch):
    _fake_oracles_package(tmp_path, monkeypatch, {
        "first.py": TASK_FILE.format(name="first_task"),
        "second.py": TASK_FILE.format(name="second_task"),
        "_private.py": "raise RuntimeError('private modules are not task files')",
    })
    assert [t.name for t in list_tasks()] == ["first_task", "second_task"]


def test_a_broken_task_file_is_named(tmp_path, monkeypatch):
    _fake_oracles_package(tmp_path, monkeypatch, {"broken.py": "import not_a_real_module_xyz\n"})
    with pytest.raises(registry.TaskDiscoveryError, match=r"fake_oracles_\w+\.broken.*not_a_real_module_xyz"):
        get_task("anything")


def test_a_duplicate_across_task_files_is_an_error(tmp_path, monkeypatch):
    _fake_oracles_package(tmp_path, monkeypatch, {
        "one.py": TASK_FILE.format(name="same"), "two.py": TASK_FILE.format(name="same")})
    with pytest.raises(TaskDefinitionError, match="'same' is registered twice"):
        list_tasks()


def test_cli_lists_tasks_as_a_table(capsys):
    assert main(["tasks", "--tier", "toy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["name", "tier", "category", "oracle", "train", "eval"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {t.name for t in TOY_TASKS}
    counting = get_task("counting")
    assert rows["counting"][1:6] == ["toy", counting.category, "shapes",
                                     str(len(counting.train_prompts)), str(len(counting.eval_prompts))]


def test_cli_shows_one_task_and_rejects_unknown_names(capsys):
    assert main(["tasks", "counting"]) == 0
    out = capsys.readouterr().out
    assert "two blue squares" in out and '"exact": true' in out
    assert main(["tasks", "relation"]) == 0
    assert f"definition version {get_task('relation').version})" in capsys.readouterr().out.splitlines()[0]
    assert main(["tasks", "countng"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'countng'" in err and "counting" in err and "Traceback" not in err
