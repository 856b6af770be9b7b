"""Checkpoint/resume: a run killed at any point and restarted with the same command ends with the
same eval.csv, ledger.jsonl and adapters (bitwise, CPU) as an uninterrupted run."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from hero_bench.presets import build_run_config
from hero_bench.run_hooks import (
    CRASH_ENV,
    CRASH_EXIT_CODE,
    CRASH_MODE_ENV,
    CRASH_PHASES,
    CrashAt,
    InjectedCrash,
    RunHooks,
    crash_from_env,
)
from hero_bench.runner import train


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread (see test_runner.py): fast on a shared machine, and the subprocess run below
    uses the same count, so in-process and CLI runs compute the same bits."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4",
         "hero.images_per_epoch=4", "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1",
         "hero.ppo.train_batch_size=2", "hero.ppo.grad_accum_steps=1",
         "ddpo.images_per_epoch=4", "ddpo.ppo.train_batch_size=2", "ddpo.stat_min_count=2",
         "d3po.group_size=2", "d3po.groups_per_epoch=2", "d3po.timestep_fraction=1.0",
         "evaluator.ddpo_reward=score", "evaluator.d3po_tie_break_by_score=true",
         # eval at epochs 0, 2 and the last (3): crashes hit evaluated and unevaluated epochs
         "eval.every_epochs=2"]
BUDGET = 12
COMPARED = ("eval.csv", "ledger.jsonl", "lora/epoch_0003.safetensors")


def config(method, backbone_dir):
    return build_run_config("smoke", "anomaly", method, seed=5, budget=BUDGET, backbone=str(backbone_dir),
                            overrides=MICRO)


def train_log_without_timings(run_dir):
    with open(run_dir / "train_log.csv", newline="") as fh:
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(fh)]


def assert_same_results(reference, resumed):
    for name in COMPARED:
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    assert train_log_without_timings(resumed) == train_log_without_timings(reference)
    assert json.loads((resumed / "DONE.json").read_text())["feedback_used"] == BUDGET


def crash_then_resume(method, backbone_dir, run_dir, points):
    """Run, crashing at each of ``points`` in turn (each restart resumes), then run to the end."""
    for point in points:
        with pytest.raises(InjectedCrash, match=point):
            train(config(method, backbone_dir), run_dir, progress=False, hooks=[CrashAt(point)])
        assert not (run_dir / "DONE.json").exists()
    train(config(method, backbone_dir), run_dir, progress=False)


class PointRecorder(RunHooks):
    """The crash points a run passes, in order."""

    def __init__(self):
        self.points = []

    def reached(self, point):
        self.points.append(point)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_backbone_dir):
    """Uninterrupted runs, one per method, computed on first use; ``reference.points[method]``
    are the crash points the run passed."""
    runs = {}

    def get(method):
        if method not in runs:
            out = tmp_path_factory.mktemp(f"ref_{method}")
            recorder = PointRecorder()
            train(config(method, tiny_backbone_dir), out, progress=False, hooks=[recorder])
            runs[method] = out
            get.points[method] = recorder.points
        return runs[method]

    get.points = {}
    return get


def test_the_loop_passes_every_crash_point_in_order(reference):
    """The points the crash tests below name are real moments of the loop, in this order."""
    reference("hero")
    # 12 labels, 4 per epoch; HERO also reports the point between its embedding and policy updates
    phases = [*CRASH_PHASES[:2], "after_embedding", *CRASH_PHASES[2:]]
    epochs = [f"epoch{e}.{phase}" for e in (1, 2, 3) for phase in phases]
    assert reference.points["hero"] == ["start.after_checkpoint", *epochs, "end.before_done"]


def test_crash_point_from_the_environment(monkeypatch):
    """HERO_BENCH_CRASH_AT installs a crash point (a real kill, or InjectedCrash with _MODE=raise)."""
    monkeypatch.delenv(CRASH_ENV, raising=False)
    assert crash_from_env() == []
    monkeypatch.setenv(CRASH_ENV, "epoch2.after_eval")
    monkeypatch.setenv(CRASH_MODE_ENV, "raise")
    [hook] = crash_from_env()
    hook.reached("epoch2.after_update")  # another point: nothing happens
    with pytest.raises(InjectedCrash, match="epoch2.after_eval"):
        hook.reached("epoch2.after_eval")
    monkeypatch.delenv(CRASH_MODE_ENV)
    assert crash_from_env()[0].exit_process  # the kill itself: test_killed_process_resumes_from_the_command_line


@pytest.mark.parametrize("points", [
    ["start.after_checkpoint"],
    ["epoch1.after_feedback"],  # labels in the ledger, no checkpoint: replayed, not asked again
    ["epoch2.after_update", "epoch3.after_sampling"],  # two crashes, two resumes
    ["epoch2.after_embedding"],  # HERO's embedding network updated, its policy not yet
    ["epoch2.after_eval"],  # evaluated and adapter saved, checkpoint not written
    ["epoch2.after_checkpoint"],  # checkpoint written, eval.csv/train_log.csv not yet rewritten
    ["end.before_done"],
], ids=lambda p: "+".join(p))
def test_hero_resume_after_crash_is_identical(points, reference, tmp_path, tiny_backbone_dir):
    crash_then_resume("hero", tiny_backbone_dir, tmp_path, points)
    assert_same_results(reference("hero"), tmp_path)


def test_resume_replays_labels_instead_of_asking_again(reference, tmp_path, tiny_backbone_dir, monkeypatch):
    calls = []
    import hero_bench.feedback as feedback

    real_ask = feedback.SimulatedEvaluator._ask

    def counting_ask(self, images, prompts, metadata):
        calls.append(len(images))
        return real_ask(self, images, prompts, metadata)

    monkeypatch.setattr(feedback.SimulatedEvaluator, "_ask", counting_ask)
    crash_then_resume("hero", tiny_backbone_dir, tmp_path, ["epoch2.after_feedback"])
    assert calls == [4, 4, 4]  # epochs 1, 2 (before the crash) and 3; epoch 2 was replayed
    assert_same_results(reference("hero"), tmp_path)


def test_ddpo_resume_restores_the_stat_tracker(reference, tmp_path, tiny_backbone_dir):
    crash_then_resume("ddpo", tiny_backbone_dir, tmp_path, ["epoch3.after_feedback"])
    assert_same_results(reference("ddpo"), tmp_path)


def test_d3po_resume_after_crash_is_identical(tmp_path, tiny_backbone_dir, brightness_task):
    train(config("d3po", tiny_backbone_dir), tmp_path / "ref", progress=False)
    log = train_log_without_timings(tmp_path / "ref")
    assert all(float(r["n_pairs"]) > 0 for r in log)  # D3PO really trained
    crash_then_resume("d3po", tiny_backbone_dir, tmp_path / "resumed", ["epoch2.after_update"])
    assert_same_results(tmp_path / "ref", tmp_path / "resumed")


def test_killed_process_resumes_from_the_command_line(reference, tmp_path, tiny_backbone_dir):
    """A real kill (os._exit inside the loop, no cleanup) of the CLI, then the same command again."""
    cmd = [sys.executable, "-m", "hero_bench", "train", "--tier", "smoke", "--task", "anomaly", "--method", "hero",
           "--seed", "5", "--budget", str(BUDGET), "--backbone", str(tiny_backbone_dir), "--out", str(tmp_path),
           "--threads", "1", "--quiet"] + [a for o in MICRO for a in ("--set", o)]
    from hero_bench.provenance import git_sha

    # the same provenance string as the in-process reference (the checkout may change in between)
    env = dict(os.environ, **{CRASH_ENV: "epoch3.after_feedback", "HERO_BENCH_GIT_SHA": git_sha()})
    env.pop(CRASH_MODE_ENV, None)
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == CRASH_EXIT_CODE, killed.stderr
    labels = [json.loads(x) for x in io.StringIO((tmp_path / "ledger.jsonl").read_text())]
    assert {r["epoch"] for r in labels} == {1, 2, 3}  # epoch 3 was labelled before the kill
    env.pop(CRASH_ENV)
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(reference("hero"), tmp_path)


@pytest.mark.parametrize("method,key", [("ddpo", "ddpo.ppo.warmup_steps"), ("hero", "hero.ppo.warmup_steps"),
                                        ("d3po", "d3po.warmup_steps")])
def test_resume_in_the_middle_of_a_warmup_is_identical(method, key, tmp_path, tiny_backbone_dir, brightness_task):
    """The learning-rate warmup's position is checkpointed: a run resumed mid-ramp continues it
    (restarting the ramp would take the resumed run's next steps at a fraction of the rate)."""
    # 2 optimizer steps per epoch here (D3PO: one per pair): a 50-step ramp lasts the whole run
    overrides = MICRO + [f"{key}=50"]

    def cfg():
        return build_run_config("smoke", "anomaly", method, seed=5, budget=BUDGET,
                                backbone=str(tiny_backbone_dir), overrides=overrides)

    train(cfg(), tmp_path / "ref", progress=False)
    plain = tmp_path / "plain"
    train(config(method, tiny_backbone_dir), plain, progress=False)
    # the ramp changes what is learned (it is really applied)
    assert (plain / COMPARED[2]).read_bytes() != (tmp_path / "ref" / COMPARED[2]).read_bytes()
    with pytest.raises(InjectedCrash):
        train(cfg(), tmp_path / "resumed", progress=False, hooks=[CrashAt("epoch2.after_checkpoint")])
    train(cfg(), tmp_path / "resumed", progress=False)
    assert_same_results(tmp_path / "ref", tmp_path / "resumed")
