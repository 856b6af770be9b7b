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
(``lora/epoch_XXXX.safetensors``) with :func:`evaluate_run`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from dataclasses import dataclass
from pathlib import Path
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
        if self.n_images < 1:
            raise ConfigError(f"eval.n_images must be >= 1, got {self.n_images}")
        if self.every_epochs < 1:
            raise ConfigError(f"eval.every_epochs must be >= 1, got {self.every_epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be >= 1, got {self.batch_size}")
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


@torch.no_grad()
def evaluate_prompts(backbone, prompts: Sequence[Any], oracle, sampler_cfg, eval_cfg: EvalConfig,
                     n_images: int | None = None) -> dict[str, float]:
    """Sample ``n_images`` (default ``eval_cfg.n_images``) images cycling through ``prompts`` from the
    fixed evaluation noise, with the backbone's current weights, and judge them with ``oracle``.

    Returns ``success_rate``, ``mean_score``, ``n_eval`` and ``diversity``."""
    n = eval_cfg.n_images if n_images is None else int(n_images)
    if n < 1:
        raise ConfigError(f"an evaluation needs at least one image, got {n}")
    prompts = cycle_prompts(prompts, n)
    noise_gen = torch.Generator(device="cpu").manual_seed(derive_seed(eval_cfg.seed, 0, "eval-noise"))
    step_gen = torch.Generator(device="cpu").manual_seed(derive_seed(eval_cfg.seed, 0, "eval-sampler"))
    z_T = initial_noise(backbone, n, noise_gen)
    cfg = dataclasses.replace(sampler_cfg, batch_size=eval_cfg.batch_size)
    traj = sample_trajectories(backbone, [p.text for p in prompts], z_T, cfg, step_gen)
    results = []
    for start in range(0, n, eval_cfg.batch_size):
        sl = slice(start, start + eval_cfg.batch_size)
        results += list(oracle(traj.images[sl], [p.text for p in prompts[sl]], [p.metadata for p in prompts[sl]]))
    success = np.array([bool(r.success) for r in results], dtype=np.float64)
    score = np.array([float(r.score) for r in results], dtype=np.float64)
    return {
        "success_rate": float(success.mean()),
        "mean_score": float(score.mean()),
        "n_eval": int(n),
        "diversity": diversity(traj.images),
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
             result: dict[str, float], oracle, config_hash: str, git_sha: str) -> dict[str, Any]:
    """One eval.csv row (columns: ``hero_bench.results.EVAL_COLUMNS``)."""
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


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


_LORA_FILE = re.compile(r"^epoch_(\d{4,})\.safetensors$")


PROMPT_SETS = ("both", "train", "eval")
"""What ``evaluate_run`` samples: ``both`` = the run's own evaluation (primary on the task's training
prompts + transfer on its held-out eval prompts, eval.csv's columns); ``train`` / ``eval`` = one
prompt list only, a single-split file whose ``success_rate``, ``mean_score``, ``n_eval`` and
``diversity`` hold that list's numbers, marked by a ``prompt_set`` column (transfer columns empty)."""
PROMPT_SET_FILES = {"both": "eval.csv", "train": "eval_train.csv", "eval": "eval_heldout.csv"}
"""Default output file per prompt set; a single-split file never overwrites eval.csv.  (Before the
primary metric moved to the training prompts, ``eval`` was the default and rewrote eval.csv with
held-out rows; eval.csv now holds both evaluations.)"""


def evaluate_run(run_dir: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None,
                 device: str | None = None, progress: bool = True, prompt_set: str = "both",
                 epochs: Sequence[int | str] | None = None) -> Path:
    """Recompute a run's eval.csv from its saved adapters; returns the CSV path written.

    ``overrides`` may change ``eval.*`` keys only (e.g. ``eval.n_images=1024``,
    ``eval.transfer_images=0``): training settings are fixed by the run.  The feedback counters of
    each row come from ``train_log.csv``.  ``prompt_set="both"`` (default) writes eval.csv exactly
    as training does: primary (the task's training prompts) and transfer (its held-out prompts).
    ``prompt_set="train"`` or ``"eval"`` samples one prompt list only (same eval noise, same oracle)
    into ``eval_train.csv`` / ``eval_heldout.csv``, with an extra ``prompt_set`` column; ``gather``
    and the report refuse such single-split files.  ``epochs`` limits the checkpoints evaluated
    (epoch numbers, or ``"last"``); eval.csv itself is only ever rewritten whole.
    """
    if prompt_set not in PROMPT_SETS:
        raise ConfigError(f"prompt set {prompt_set!r} is unknown; accepted: {', '.join(PROMPT_SETS)}")
    from hero_bench.config import apply_overrides
    from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
    from hero_bench.diffusion.lora import add_lora, load_lora
    from hero_bench.io import atomic_write_text
    from hero_bench.provenance import git_sha, run_config_hash
    from hero_bench.runner import CONFIG_FILE, TRAIN_LOG_FILE, RunConfig, load_config_file
    from hero_bench.tasks import get_task

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise HeroBenchError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    cfg = load_config_file(run_dir / CONFIG_FILE)
    bad = [o for o in overrides if not o.strip().startswith("eval.")]
    if bad:
        raise ConfigError(f"evaluate accepts only eval.* overrides (training is fixed by the run); got {', '.join(bad)}")
    cfg = apply_overrides(RunConfig, cfg, list(overrides))
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)

    files = sorted(
        (int(m.group(1)), p) for p in (run_dir / "lora").glob("epoch_*.safetensors") if (m := _LORA_FILE.match(p.name))
    )
    if not files:
        raise HeroBenchError(f"{run_dir / 'lora'} holds no epoch_XXXX.safetensors adapters to evaluate")
    target = Path(out) if out is not None else run_dir / PROMPT_SET_FILES[prompt_set]
    if epochs is not None:
        if target.resolve() == (run_dir / "eval.csv").resolve():
            raise ConfigError("selecting epochs would drop checkpoints from eval.csv; write the subset elsewhere "
                              "with --out, or use --prompts train|eval")
        saved = [e for e, _ in files]
        wanted = {saved[-1] if str(e) == "last" else int(e) for e in epochs}
        unknown = sorted(wanted - set(saved))
        if unknown:
            raise ConfigError(f"no saved adapter for epoch(s) {unknown}; {run_dir / 'lora'} has epochs {saved}")
        files = [(e, p) for e, p in files if e in wanted]
    counters = {0: (0, 0, 0)}
    if (run_dir / TRAIN_LOG_FILE).is_file():
        for r in read_csv_rows(run_dir / TRAIN_LOG_FILE):
            counters[int(r["epoch"])] = (int(r["feedback_used"]), int(r["queries"]), int(r["images_generated"]))
    missing = [e for e, _ in files if e not in counters]
    if missing:
        raise HeroBenchError(f"{run_dir / TRAIN_LOG_FILE} has no row for epoch(s) {missing}; cannot label their feedback")

    task = get_task(cfg.task)
    if prompt_set == "eval" and cfg.eval.n_transfer == 0:
        raise ConfigError("--prompts eval with eval.transfer_images=0 has nothing to evaluate")
    oracle = task.oracle_factory()
    backbone = load_backbone(resolve_backbone(cfg.backbone), cfg.device, cfg.dtype)
    add_lora(backbone.unet, cfg.lora)
    chash, sha = run_config_hash(cfg), git_sha()
    rows = []
    for epoch, path in files:
        load_lora(backbone.unet, path)
        if prompt_set == "both":
            result = evaluate_model(backbone, task, oracle, cfg.sampler, cfg.eval)
        else:
            prompts, n = (task.train_prompts, cfg.eval.n_images) if prompt_set == "train" else \
                (task.eval_prompts, cfg.eval.n_transfer)
            result = {**evaluate_prompts(backbone, prompts, oracle, cfg.sampler, cfg.eval, n_images=n),
                      **dict.fromkeys(TRANSFER_COLUMNS)}
        rows.append(eval_row(cfg, epoch, *counters[epoch], result, oracle, chash, sha))
        if progress:
            line = f"epoch {epoch}: success {result['success_rate']:.3f} (n={result['n_eval']}, "
            if prompt_set == "both":
                line += "the task's prompts"
                if result["transfer_n_eval"] is not None:
                    line += (f"; transfer {result['transfer_success_rate']:.3f} on held-out prompts, "
                             f"n={result['transfer_n_eval']}")
            else:
                line += f"{prompt_set} prompts only"
            print(line + ")", flush=True)
    columns = EVAL_COLUMNS
    if prompt_set != "both":  # say so in every row, so a single-split row is never mistaken for eval.csv's
        columns = (*EVAL_COLUMNS, "prompt_set")
        rows = [{**r, "prompt_set": prompt_set} for r in rows]
    atomic_write_text(target, rows_to_csv(rows, columns))
    return target
