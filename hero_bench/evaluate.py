"""Evaluation: success rate of a model on the task's prompts, judged by the noise-free oracle.

Two evaluations per checkpoint (docs/metrics.md, "The primary metric: success on the task's own prompts"):
- **primary** (columns ``success_rate``, ``mean_score``, ``n_eval``, ``diversity``): the task's OWN
  training prompts, sampled from fresh evaluation noise that no training batch used.  This is what
  the HERO paper measures, and every table and plot leads with it.
- **transfer** (columns ``transfer_success_rate``, ``transfer_mean_score``, ``transfer_n_eval``):
  the task's held-out eval prompts, with the same evaluation noise; ``eval.transfer_images`` sets
  its size (None = ``n_images``; 0 = skipped, columns left empty).

Protocol (docs/architecture.md, "The flow of one run", step 8), for each of the two prompt lists:
- ``n`` images; image i uses prompt ``i mod len(prompts)`` (prompts cycled).
- The initial noises and the sampler's per-step noises come from generators seeded only by
  ``eval.seed`` (never by the run seed), so at a given eval seed every method, every training seed
  and every checkpoint is evaluated on the SAME noise and prompts: comparisons between them are
  paired, and the base model's row is the common starting point of every curve.
- The judge is the task's oracle itself, without the simulated evaluator's noise models (label
  flips, bias): the evaluation measures true success even when training feedback is noisy.
  Both evaluations draw from the same two streams, so the first images of each share their noise.
- ``diversity`` = mean pairwise L2 distance between the primary evaluation's images in a fixed feature space:
  each image area-averaged to 8×8 RGB, scaled to [0, 1] and flattened (192 values).  It drops
  when a method collapses onto a few images (a concern the HERO reviewers raised, docs/algorithms.md §6.4).

``hero-bench evaluate RUN_DIR`` recomputes a run's eval.csv (both evaluations) from its saved adapters
(``lora/epoch_XXXX.safetensors``) with ``hero_bench.reevaluate.evaluate_run``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from hero_bench.diffusion.sampler import initial_noise, sample_trajectories
from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.results import EVAL_COLUMNS, TRANSFER_COLUMNS
from hero_bench.seeding import derive_seed

DIVERSITY_SIDE = 8


@dataclass(frozen=True)
class EvalConfig:
    """When and how a run is evaluated: on the task's own prompts (primary) and held-out ones (transfer)."""

    n_images: int = 256
    """Images generated per primary evaluation (the task's training prompts cycled, fresh eval noise)."""
    every_epochs: int = 1
    """Evaluate after every k-th training epoch; the last epoch is always evaluated."""
    at_start: bool = True
    """Also evaluate the pretrained model before any training (epoch 0, feedback 0)."""
    seed: int = 20250
    """Eval noise seed: the same for every method and training seed, so comparisons are paired."""
    batch_size: int = 64
    """Images per sampler forward during evaluation (memory only; does not change the draws)."""
    transfer_images: int | None = None
    """Images for the transfer evaluation on the task's held-out eval prompts; None = same as
    n_images; 0 = skip it (the transfer columns are left empty)."""

    def __post_init__(self) -> None:
        for name in ("n_images", "every_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"eval.seed must be >= 0, got {self.seed}")
        if self.transfer_images is not None and self.transfer_images < 0:
            raise ConfigError(f"eval.transfer_images must be >= 0 (0 = skip the transfer evaluation), "
                              f"got {self.transfer_images}")

    @property
    def n_transfer(self) -> int:
        """Images of the transfer evaluation (0 = skipped)."""
        return self.n_images if self.transfer_images is None else int(self.transfer_images)


def diversity(images: np.ndarray) -> float:
    """Mean pairwise L2 distance of ``uint8 [N, H, W, 3]`` images, each pooled to 8×8 in [0, 1]."""
    if len(images) < 2:
        return 0.0
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).double() / 255.0
    feats = torch.nn.functional.adaptive_avg_pool2d(x, DIVERSITY_SIDE).flatten(1)
    return float(torch.pdist(feats).mean())


TRANSFER_KEYS = dict(zip(("success_rate", "mean_score", "n_eval"), TRANSFER_COLUMNS))
"""Result key of one prompt-list evaluation -> its eval.csv column in the transfer evaluation."""


def cycle_prompts(prompts: Sequence[Any], n: int) -> list[Any]:
    """``n`` prompts: ``prompts`` cycled (image i gets prompt ``i mod len(prompts)``)."""
    if not prompts:
        raise HeroBenchError("no prompts to evaluate on")
    return [prompts[i % len(prompts)] for i in range(n)]


def eval_prompts(task, n: int) -> list[Any]:
    """The task's held-out eval prompts, cycled to ``n`` (the transfer evaluation's prompts)."""
    if not task.eval_prompts:
        raise HeroBenchError(f"task {task.name!r} has no eval prompts")
    return cycle_prompts(task.eval_prompts, n)


@dataclass(frozen=True)
class JudgedImages:
    """The images of one evaluation and the oracle's verdict on each (what ``evaluate_prompts`` summarises)."""

    prompts: list[Any]
    """The prompt of each image (the prompt list cycled to the number of images)."""
    images: np.ndarray
    """uint8 ``[N, H, W, 3]``."""
    results: list[Any]
    """The oracle's ``OracleResult`` of each image."""

    @property
    def success(self) -> np.ndarray:
        """bool ``[N]``: the oracle's success verdict per image."""
        return np.array([bool(r.success) for r in self.results])

    @property
    def scores(self) -> np.ndarray:
        """float64 ``[N]``: the oracle's score per image."""
        return np.array([float(r.score) for r in self.results], dtype=np.float64)


@torch.no_grad()
def sample_and_judge(backbone, prompts: Sequence[Any], oracle, sampler_cfg, eval_cfg: EvalConfig,
                     n_images: int | None = None, z_T: torch.Tensor | None = None) -> JudgedImages:
    """Sample ``n_images`` (default ``eval_cfg.n_images``) images cycling through ``prompts`` from the
    fixed evaluation noise, with the backbone's current weights, and judge each with ``oracle``.
    ``z_T`` replaces the initial noises (``[n, C, H, W]``; the per-step noise stays the evaluation
    stream's): a method's own noise distribution, e.g. HERO's π_HERO at the end of training.

    This is the protocol itself; ``evaluate_prompts`` summarises it for eval.csv, and the base-rate
    measurement (``hero_bench.toyworld.base_rates``) keeps the images and per-image verdicts."""
    n = eval_cfg.n_images if n_images is None else int(n_images)
    if n < 1:
        raise ConfigError(f"an evaluation needs at least one image, got {n}")
    prompts = cycle_prompts(prompts, n)
    noise_gen = torch.Generator(device="cpu").manual_seed(derive_seed(eval_cfg.seed, 0, "eval-noise"))
    step_gen = torch.Generator(device="cpu").manual_seed(derive_seed(eval_cfg.seed, 0, "eval-sampler"))
    if z_T is None:
        z_T = initial_noise(backbone, n, noise_gen)
    elif z_T.shape[0] != n:
        raise ConfigError(f"{z_T.shape[0]} initial noises given for an evaluation of {n} images")
    cfg = dataclasses.replace(sampler_cfg, batch_size=eval_cfg.batch_size)
    traj = sample_trajectories(backbone, [p.text for p in prompts], z_T, cfg, step_gen)
    results = []
    for start in range(0, n, eval_cfg.batch_size):
        sl = slice(start, start + eval_cfg.batch_size)
        results += list(oracle(traj.images[sl], [p.text for p in prompts[sl]], [p.metadata for p in prompts[sl]]))
    return JudgedImages(prompts=prompts, images=traj.images, results=results)


def evaluate_prompts(backbone, prompts: Sequence[Any], oracle, sampler_cfg, eval_cfg: EvalConfig,
                     n_images: int | None = None, z_T: torch.Tensor | None = None) -> dict[str, float]:
    """``sample_and_judge``, summarised: ``success_rate``, ``mean_score``, ``n_eval`` and ``diversity``."""
    judged = sample_and_judge(backbone, prompts, oracle, sampler_cfg, eval_cfg, n_images, z_T)
    return {
        "success_rate": float(judged.success.astype(np.float64).mean()),
        "mean_score": float(judged.scores.mean()),
        "n_eval": len(judged.results),
        "diversity": diversity(judged.images),
    }


def evaluate_model(backbone, task, oracle, sampler_cfg, eval_cfg: EvalConfig) -> dict[str, float | None]:
    """Both evaluations of the backbone's current weights (the runner's scheduled evaluation).

    Primary: ``eval_cfg.n_images`` images on the task's training prompts (keys ``success_rate``,
    ``mean_score``, ``n_eval``, ``diversity``).  Transfer: ``eval_cfg.n_transfer`` images on its
    held-out eval prompts (keys ``transfer_success_rate``, ``transfer_mean_score``,
    ``transfer_n_eval``; None when ``eval.transfer_images`` is 0).  Both use the same evaluation
    noise streams, seeded only by ``eval.seed``, so they are fresh with respect to training."""
    primary = evaluate_prompts(backbone, task.train_prompts, oracle, sampler_cfg, eval_cfg)
    result: dict[str, float | None] = {**primary, **dict.fromkeys(TRANSFER_COLUMNS)}
    if eval_cfg.n_transfer > 0:
        # a task that evaluates on its own prompts (sanity) would sample the very same images again
        same = tuple(task.eval_prompts) == tuple(task.train_prompts) and eval_cfg.n_transfer == eval_cfg.n_images
        transfer = primary if same else evaluate_prompts(backbone, task.eval_prompts, oracle, sampler_cfg, eval_cfg,
                                                         n_images=eval_cfg.n_transfer)
        result.update({col: transfer[key] for key, col in TRANSFER_KEYS.items()})
    return result


def eval_row(cfg, epoch: int, feedback_used: int, queries: int, images_generated: int,
             result: dict[str, float], oracle, task_version: int, config_hash: str, git_sha: str) -> dict[str, Any]:
    """One eval.csv row (columns: ``hero_bench.results.EVAL_COLUMNS``); ``task_version`` is the
    evaluated task's ``Task.version``."""
    row = {
        "tier": cfg.tier,
        "task": cfg.task,
        "method": cfg.method,
        "seed": int(cfg.seed),
        "epoch": int(epoch),
        "feedback_used": int(feedback_used),
        "queries": int(queries),
        "images_generated": int(images_generated),
        **result,
        "oracle": str(getattr(oracle, "name", type(oracle).__name__)),
        "oracle_version": str(getattr(oracle, "version", "")),
        "task_version": str(int(task_version)),
        "label_noise": float(cfg.evaluator.flip_prob),
        "backbone": str(cfg.backbone),
        "config_hash": config_hash,
        "git_sha": git_sha,
    }
    return {k: row[k] for k in EVAL_COLUMNS}


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text; floats written with repr (shortest exact form), so equal numbers give equal bytes."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()
