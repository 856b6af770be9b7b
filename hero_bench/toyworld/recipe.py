"""Multi-stage pretraining recipes, above all the one that made the shipped ShapesWorld weights.

The shipped model was trained in four stages: a short high-learning-rate stage from random weights,
a longer one at half the learning rate starting from the first stage's raw weights, a third that
moves the second stage's EMA weights from epsilon- to v-prediction, and a fourth that moves the
third's EMA weights onto a zero-terminal-SNR schedule (MODEL_CARD.md, "Why the last stages").
``WORLD2`` adds a fifth stage that continues the fourth's EMA weights on version 2 of the scene
distribution, whose captions state relations between two objects of one kind: a candidate model,
not shipped (docs/methods.md, "Version 2 of the world: a candidate model").  Keeping
the stages here as data, rather than only as two command lines in the model card, gives users one
command to rebuild the weights (``hero-bench pretrain-toy --recipe shipped --out DIR``) and lets a
test hold the recipe to the training record shipped with the weights, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Sequence

from hero_bench.errors import ConfigError
from hero_bench.toyworld.model import ModelConfig, SchedulerConfig
from hero_bench.toyworld.pretrain import PretrainConfig, PretrainResult, pretrain

Stage = tuple[str, Mapping[str, object]]
"""(folder name under the recipe's output folder, PretrainConfig fields that differ from the base).

One key is the recipe's own: ``start_from`` = ``"raw"`` (default) or ``"ema"``, which of the previous
stage's weights the stage starts from."""

START_FROM = {"raw": "model_raw", "ema": "model"}
"""A stage's ``start_from`` value -> the previous stage's folder holding those weights."""

SHIPPED: tuple[Stage, ...] = (
    ("stage1", {"steps": 1800, "batch_size": 56, "learning_rate": 1e-3, "warmup_steps": 200,
                "ema_decay": 0.999, "seed": 0, "data_seed": 0, "generator": "shapesworld-1"}),
    # stage 1's samples were still blobs (0-3.5% base success); this continues at half the learning
    # rate on another data seed (MODEL_CARD.md, "Why two stages")
    ("stage2", {"steps": 3000, "batch_size": 64, "learning_rate": 5e-4, "warmup_steps": 100,
                "ema_decay": 0.998, "seed": 1, "data_seed": 1, "generator": "shapesworld-1"}),
    # stage 2's epsilon model breaks at eta < 1; v-prediction keeps the first step's x0 estimate well
    # conditioned.  It did not mend eta < 1 but raised eta = 1 success (MODEL_CARD.md, "Why the last stages")
    ("stage3", {"steps": 3000, "batch_size": 64, "learning_rate": 5e-4, "warmup_steps": 100,
                "ema_decay": 0.998, "seed": 2, "data_seed": 2, "generator": "shapesworld-1", "start_from": "ema",
                "model": ModelConfig(scheduler=SchedulerConfig(prediction_type="v_prediction"))}),
    # then onto a zero-terminal-SNR schedule with trailing spacing, so that sampling starts where the
    # training noise is pure (MODEL_CARD.md, "Why the last stages": it raised eta = 1 success, not eta = 0's)
    ("stage4", {"steps": 2500, "batch_size": 64, "learning_rate": 5e-4, "warmup_steps": 100,
                "ema_decay": 0.998, "seed": 3, "data_seed": 3, "generator": "shapesworld-1", "start_from": "ema",
                "model": ModelConfig(scheduler=SchedulerConfig(prediction_type="v_prediction",
                                                               rescale_betas_zero_snr=True,
                                                               timestep_spacing="trailing"))}),
)

WORLD2: tuple[Stage, ...] = SHIPPED + (
    # the shipped model's schedule on version 2 of the world, whose captions say what the relation
    # task asks ("a red triangle above a red triangle"), which version 1 never did (docs/methods.md,
    # "Version 2 of the world: a candidate model")
    ("stage5", {**SHIPPED[-1][1], "seed": 4, "data_seed": 4, "generator": "shapesworld-2"}),
)

RECIPES: dict[str, tuple[Stage, ...]] = {"shipped": SHIPPED, "world2": WORLD2}
"""Named recipes of ``hero-bench pretrain-toy --recipe``."""


def stage_configs(stages: Sequence[Stage], out_dir: str | Path,
                  base: PretrainConfig = PretrainConfig()) -> list[tuple[Path, PretrainConfig]]:
    """Each stage's output folder and config.  Every stage after the first starts from the previous
    stage's raw (non-EMA) weights, ``OUT/<previous>/model_raw``, or with ``start_from: "ema"`` from its
    EMA weights, ``OUT/<previous>/model``."""
    out_dir = Path(out_dir)
    plan: list[tuple[Path, PretrainConfig]] = []
    for name, fields in stages:
        fields = dict(fields)
        start_from = fields.pop("start_from", "raw")
        if start_from not in START_FROM:
            raise ConfigError(f"recipe stage {name!r}: start_from={start_from!r}; accepted: {', '.join(START_FROM)}")
        if "init_from" in fields:
            raise ConfigError(f"recipe stage {name!r} sets init_from; the recipe chains its stages itself")
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(PretrainConfig)})
        if unknown:
            raise ConfigError(f"recipe stage {name!r}: unknown PretrainConfig field(s) {', '.join(unknown)}")
        init_from = str(plan[-1][0] / START_FROM[start_from]) if plan else ""
        plan.append((out_dir / name, dataclasses.replace(base, **fields, init_from=init_from)))
    return plan


def run_recipe(stages: Sequence[Stage], out_dir: str | Path, base: PretrainConfig = PretrainConfig(),
               resume: bool = True, progress: bool = True, preview: bool = True,
               batch_fn: Callable | None = None,
               on_stage: Callable[[int, str, PretrainResult], None] | None = None) -> list[PretrainResult]:
    """Run the stages in order into ``out_dir/<stage name>/``; the final model is the last stage's
    ``model/``.  Each stage resumes from its own checkpoint, so rerunning the same command after an
    interruption continues where it stopped (finished stages only rewrite their model folders)."""
    results = []
    for i, (folder, cfg) in enumerate(stage_configs(stages, out_dir, base)):
        result = pretrain(cfg, folder, resume=resume, progress=progress, preview=preview, batch_fn=batch_fn)
        results.append(result)
        if on_stage is not None:
            on_stage(i, folder.name, result)
    return results
