"""`hero-bench train --replace-stale`: the workflow's decision between resuming a run folder and
moving it aside, made by the CLI (the training rules pass the flag; tests/test_workflow.py checks
that they do)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from conftest import finished_micro_run, micro_train_args
from hero_bench import tasks as registry
from hero_bench.cli import main
from hero_bench.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train_args(backbone, out, budget=4):
    """A micro smoke-tier HERO run: one epoch of 4 images at the default budget, 2 sampling steps."""
    return micro_train_args(backbone, out, method="hero", budget=budget)


@pytest.fixture
def finished(tmp_path, tiny_backbone_dir):
    """A finished micro run in tmp_path/run, trained without the flag."""
    return finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="hero", budget=4)


def test_same_config_resumes_in_place(finished, tiny_backbone_dir, capsys):
    eval_csv = (finished / "eval.csv").read_bytes()
    # a job killed before its outputs: the rerun must continue the folder, not replace it
    (finished / "DONE.json").unlink()
    (finished / "eval.csv").unlink()
    capsys.readouterr()
    assert main(train_args(tiny_backbone_dir, finished) + ["--replace-stale"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"train: {finished} holds this run's config: resuming it"
    assert not list(finished.parent.glob("run.replaced-*"))
    assert (finished / "DONE.json").exists()
    assert (finished / "eval.csv").read_bytes() == eval_csv  # rewritten from the checkpoint, not retrained


def test_changed_config_moves_the_old_run_aside_and_starts_afresh(finished, tiny_backbone_dir, capsys):
    old_config = (finished / "config.yaml").read_text()
    capsys.readouterr()
    assert main(train_args(tiny_backbone_dir, finished, budget=8) + ["--replace-stale"]) == 0
    (stale,) = finished.parent.glob("run.replaced-*")
    assert capsys.readouterr().out.splitlines()[0] == (
        f"train: the settings of {finished} changed (differs in: budget); old run moved to {stale}; "
        "starting afresh")
    # the old run is kept whole; the new one is a complete run of the new settings
    assert (stale / "config.yaml").read_text() == old_config
    assert (stale / "checkpoint.pt").exists() and (stale / "DONE.json").exists()
    assert yaml.safe_load((finished / "config.yaml").read_text())["budget"] == 8
    assert (finished / "DONE.json").exists()


def test_a_run_of_an_earlier_task_version_is_moved_aside(finished, tiny_backbone_dir, capsys, monkeypatch):
    """Same settings, but the task's prompts or criterion changed since (``Task.version``)."""
    current = get_task("anomaly")
    monkeypatch.setitem(registry._REGISTRY, "anomaly", dataclasses.replace(current, version=current.version + 1))
    capsys.readouterr()
    assert main(train_args(tiny_backbone_dir, finished) + ["--replace-stale"]) == 0
    (stale,) = finished.parent.glob("run.replaced-*")
    assert capsys.readouterr().out.splitlines()[0] == (
        f"train: the settings of {finished} changed (task 'anomaly' version {current.version} -> "
        f"{current.version + 1}); old run moved to {stale}; starting afresh")
    assert json.loads((finished / "DONE.json").read_text())["task_version"] == current.version + 1


def test_changed_config_without_the_flag_is_an_error(finished, tiny_backbone_dir, capsys):
    assert main(train_args(tiny_backbone_dir, finished, budget=8)) == 2
    assert "already holds a run with a different config (differs in: budget)" in capsys.readouterr().err
    assert not list(finished.parent.glob("run.replaced-*"))


def test_a_new_folder_just_starts(tmp_path, tiny_backbone_dir, capsys):
    run = tmp_path / "fresh"
    assert main(train_args(tiny_backbone_dir, run) + ["--replace-stale", "--print-config"]) == 0
    assert not run.exists()  # --print-config decides nothing and touches nothing
    capsys.readouterr()
    assert main(train_args(tiny_backbone_dir, run) + ["--replace-stale"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"train: {run} holds no run yet: starting it"
    assert (run / "DONE.json").exists()


def test_a_run_being_trained_elsewhere_is_not_moved(finished, tiny_backbone_dir, capsys):
    from hero_bench.io import exclusive_folder

    with exclusive_folder(finished):  # as a training process holds it
        assert main(train_args(tiny_backbone_dir, finished, budget=8) + ["--replace-stale"]) == 2
    assert "is being trained by another process" in capsys.readouterr().err
    assert not list(finished.parent.glob("run.replaced-*"))
