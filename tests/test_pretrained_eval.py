"""The shared evaluation of the pretrained model (hero_bench.pretrained_eval): the same numbers, computed once."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

import hero_bench.provenance as provenance
import hero_bench.runner as runner_module
from hero_bench.cli import main
from hero_bench.presets import build_run_config
from hero_bench.pretrained_eval import PretrainedEvalCache, adapters_are_zero
from hero_bench.runner import Run, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", "hero.images_per_epoch=4",
         "hero.triplet_passes=2", "hero.ppo.timesteps_per_sample=1", "hero.ppo.train_batch_size=4"]
# the columns that name the run rather than the evaluation
RUN_COLUMNS = {"method", "seed", "config_hash"}
REAL_CPU = provenance.cpu_model()


def micro(backbone_dir, method, seed, extra=()):
    return build_run_config("smoke", "anomaly", method, seed=seed, budget=4, backbone=str(backbone_dir),
                            overrides=MICRO + list(extra))


def first_row(run_dir):
    with open(run_dir / "eval.csv", newline="") as fh:
        return next(csv.DictReader(fh))


@pytest.fixture
def evaluations(monkeypatch):
    """How many times the runner evaluated a model (``evaluate_model`` calls)."""
    calls = []
    real = runner_module.evaluate_model

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "evaluate_model", counted)
    return calls


def test_runs_share_the_pretrained_evaluation_and_write_the_same_rows(tmp_path, tiny_backbone_dir, evaluations):
    cache = tmp_path / "cache"
    train(micro(tiny_backbone_dir, "base", 0), tmp_path / "alone", progress=False)  # no cache: the reference
    assert len(evaluations) == 1
    train(micro(tiny_backbone_dir, "base", 1), tmp_path / "first", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 2 and len(list(cache.glob("*.json"))) == 1
    # another seed and another method: epoch 0 is read, only the trained epoch is evaluated
    train(micro(tiny_backbone_dir, "hero", 2), tmp_path / "hero", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 3

    reference = first_row(tmp_path / "alone")
    for name in ("first", "hero"):
        row = first_row(tmp_path / name)
        assert row["epoch"] == "0"
        assert {k: v for k, v in row.items() if k not in RUN_COLUMNS} == \
            {k: v for k, v in reference.items() if k not in RUN_COLUMNS}


def test_other_evaluation_settings_are_another_entry(tmp_path, tiny_backbone_dir, evaluations):
    cache = tmp_path / "cache"
    train(micro(tiny_backbone_dir, "base", 0), tmp_path / "a", progress=False, pretrained_eval_cache=cache)
    train(micro(tiny_backbone_dir, "base", 0, ["eval.seed=7"]), tmp_path / "b", progress=False,
          pretrained_eval_cache=cache)
    train(micro(tiny_backbone_dir, "base", 0, ["sampler.eta=0.5"]), tmp_path / "c", progress=False,
          pretrained_eval_cache=cache)
    # when a run evaluates is not part of what one evaluation is
    train(micro(tiny_backbone_dir, "base", 0, ["eval.every_epochs=3"]), tmp_path / "d", progress=False,
          pretrained_eval_cache=cache)
    assert len(evaluations) == 3 and len(list(cache.glob("*.json"))) == 3


def test_an_entry_made_on_another_cpu_is_not_read(tmp_path, tiny_backbone_dir, evaluations, monkeypatch):
    # runs are bitwise on one processor only, so a cache copied from another machine must not answer
    cache = tmp_path / "cache"
    train(micro(tiny_backbone_dir, "base", 0), tmp_path / "a", progress=False, pretrained_eval_cache=cache)
    monkeypatch.setattr(provenance, "cpu_model", lambda: "Another Processor 9000")
    train(micro(tiny_backbone_dir, "base", 1), tmp_path / "b", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 2 and len(list(cache.glob("*.json"))) == 2
    cpus = {json.loads(p.read_text())["fields"]["environment"]["cpu"] for p in cache.glob("*.json")}
    assert cpus == {REAL_CPU, "Another Processor 9000"}


def test_another_scheduler_configuration_is_another_entry(tmp_path, tiny_backbone_dir, evaluations):
    # the scheduler's settings live beside the weights: clip_sample changes every image, not the weights
    edited = tmp_path / "edited"
    shutil.copytree(tiny_backbone_dir, edited)
    config_file = edited / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config["clip_sample"] = not config.get("clip_sample", True)
    config_file.write_text(json.dumps(config))
    cache = tmp_path / "cache"
    train(micro(tiny_backbone_dir, "base", 0), tmp_path / "a", progress=False, pretrained_eval_cache=cache)
    train(micro(edited, "base", 0), tmp_path / "b", progress=False, pretrained_eval_cache=cache)
    train(micro(edited, "base", 1), tmp_path / "c", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 2 and len(list(cache.glob("*.json"))) == 2


def test_an_unreadable_or_foreign_entry_is_computed_again(tmp_path, tiny_backbone_dir, evaluations):
    cache = tmp_path / "cache"
    train(micro(tiny_backbone_dir, "base", 0), tmp_path / "a", progress=False, pretrained_eval_cache=cache)
    (entry,) = cache.glob("*.json")
    truth = json.loads(entry.read_text())

    forged = {**truth, "fields": {**truth["fields"], "task": "another"}, "result": {**truth["result"], "success_rate": 0.5}}
    entry.write_text(json.dumps(forged))
    train(micro(tiny_backbone_dir, "base", 1), tmp_path / "b", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 2 and json.loads(entry.read_text()) == truth

    entry.write_text("{ cut off")
    train(micro(tiny_backbone_dir, "base", 2), tmp_path / "c", progress=False, pretrained_eval_cache=cache)
    assert len(evaluations) == 3 and json.loads(entry.read_text()) == truth


def test_adapters_that_are_not_zero_are_never_looked_up(tmp_path, tiny_backbone_dir, evaluations):
    cache = tmp_path / "cache"
    cfg = micro(tiny_backbone_dir, "base", 0)
    train(cfg, tmp_path / "a", progress=False, pretrained_eval_cache=cache)
    run = Run(micro(tiny_backbone_dir, "base", 1), tmp_path / "b", progress=False,
              pretrained_eval_cache=PretrainedEvalCache(cache))
    run.setup()
    assert adapters_are_zero(run.backbone.unet)
    run.evaluation(0)
    assert len(evaluations) == 1  # all-zero B: the stored result
    with torch.no_grad():
        next(p for name, p in run.backbone.unet.named_parameters() if "lora_B" in name).view(-1)[0] = 1e-3
    assert not adapters_are_zero(run.backbone.unet)
    run.evaluation(0)
    assert len(evaluations) == 2  # the model is no longer the pretrained one: evaluated


def test_the_command_line_flag_fills_the_cache(tmp_path, tiny_backbone_dir, capsys):
    cache = tmp_path / "cache"
    args = ["train", "--tier", "smoke", "--task", "anomaly", "--method", "base", "--backbone", str(tiny_backbone_dir),
            "--pretrained-eval-cache", str(cache)] + [a for item in MICRO for a in ("--set", item)]
    assert main(args + ["--seed", "0", "--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert len(list(cache.glob("*.json"))) == 1
    out = capsys.readouterr()
    assert "shared cache" in out.err
    # base spends no feedback: its summary says so instead of "feedback 0/<budget>"
    assert "no training, no feedback" in out.out and "feedback 0/" not in out.out
