"""A task definition's version travels with every result: ``Task.version`` -> each eval.csv row's
``task_version`` -> the gathered runs table and the summary's provenance, and an eval.csv written
before the column existed still gathers (with the version unknown)."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from conftest import finished_micro_run, micro_overrides
from hero_bench import tasks as registry
from hero_bench.results import EVAL_COLUMNS, LATER_COLUMNS
from hero_bench.runs_table import read_eval_csv as read_eval
from hero_bench.summary import summarise
from hero_bench.tasks import get_task


def test_a_run_records_its_task_definition_version(tmp_path, monkeypatch, tiny_backbone_dir):
    get_task("anomaly")  # discover the registered tasks before one is replaced
    bumped = dataclasses.replace(registry._REGISTRY["anomaly"], version=7)
    monkeypatch.setitem(registry._REGISTRY, "anomaly", bumped)
    run = finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="ddpo")
    rows = pd.read_csv(run / "eval.csv", dtype=str)
    assert list(rows.columns) == list(EVAL_COLUMNS)
    assert set(rows.task_version) == {"7"}
    gathered = read_eval(str(run / "eval.csv"))
    assert set(gathered.task_version) == {"7"}
    summary = summarise(gathered, budgets=[4], reps=20)
    assert set(summary[summary.task == "anomaly"].task_version) == {"7"}


def test_an_eval_csv_from_before_task_versions_still_gathers(tmp_path):
    row = {c: "" for c in EVAL_COLUMNS if c not in LATER_COLUMNS}
    row.update(tier="toy", task="relation", method="ddpo", seed="0", epoch="0", feedback_used="0",
               success_rate="0.25", oracle="shapes", oracle_version="6")
    path = tmp_path / "eval.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    gathered = read_eval(str(path))
    assert len(gathered) == 1 and set(gathered.task_version) == {""}


def test_a_run_of_an_earlier_task_version_is_not_resumed(tmp_path, monkeypatch, tiny_backbone_dir):
    """Resuming across a change of the task's definition would train later rounds on another task."""
    from hero_bench.errors import HeroBenchError
    from hero_bench.presets import build_run_config
    from hero_bench.run_hooks import CrashAt, InjectedCrash
    from hero_bench.runner import train

    cfg = build_run_config("smoke", "anomaly", "ddpo", seed=0, budget=8, backbone=str(tiny_backbone_dir),
                           overrides=micro_overrides("ddpo"))
    run = tmp_path / "run"
    with pytest.raises(InjectedCrash):
        train(cfg, run, progress=False, hooks=[CrashAt("epoch1.after_checkpoint")])
    current = get_task("anomaly")
    monkeypatch.setitem(registry._REGISTRY, "anomaly", dataclasses.replace(current, version=current.version + 1))
    with pytest.raises(HeroBenchError, match=rf"under version {current.version} of task 'anomaly', and this "
                                             rf"code defines version {current.version + 1}"):
        train(cfg, run, progress=False)
    assert not (run / "DONE.json").exists()
    monkeypatch.setitem(registry._REGISTRY, "anomaly", current)  # the same version resumes to the end
    train(cfg, run, progress=False)
    done = json.loads((run / "DONE.json").read_text())
    assert done["task_version"] == current.version and done["feedback_used"] == 8


def test_a_run_of_another_task_version_is_not_evaluated(tmp_path, monkeypatch, tiny_backbone_dir):
    """Re-evaluating would judge the run by today's prompts or criterion and stamp today's version on
    its rows; eval.csv is left as training wrote it."""
    from hero_bench.errors import HeroBenchError
    from hero_bench.reevaluate import evaluate_run

    run = finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="ddpo")
    before = (run / "eval.csv").read_bytes()
    current = get_task("anomaly")
    monkeypatch.setitem(registry._REGISTRY, "anomaly", dataclasses.replace(current, version=current.version + 1))
    with pytest.raises(HeroBenchError, match=rf"trained under version {current.version} of task 'anomaly', and "
                                             rf"this code defines version {current.version + 1}"):
        evaluate_run(run, progress=False)
    assert (run / "eval.csv").read_bytes() == before
