"""Re-evaluating a finished (or interrupted) run folder from its saved adapters.

``hero-bench evaluate RUN_DIR`` loads the run's config.yaml, applies ``eval.*`` overrides only,
and evaluates every saved adapter (``lora/epoch_XXXX.safetensors``) with the evaluation protocol of
``hero_bench.evaluate``, the one the runner uses during training; the feedback counters of each
row come from the run's train_log.csv. ``hero-bench evaluate RUN_DIR --method-noise`` evaluates a
HERO run's final model twice, from N(0, I) and from its own π_HERO (``evaluate_method_noise``).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path
from typing import Sequence

import torch

from hero_bench.algorithms.hero import guided_noise
from hero_bench.config import apply_overrides
from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
from hero_bench.diffusion.lora import add_lora, load_lora, load_lora_state_dict
from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.evaluate import eval_row, evaluate_model, evaluate_prompts, rows_to_csv
from hero_bench.io import atomic_write_text
from hero_bench.provenance import git_sha, run_config_hash
from hero_bench.results import EVAL_COLUMNS, TRANSFER_COLUMNS
from hero_bench.run_config import CHECKPOINT_FILE, CONFIG_FILE, TRAIN_LOG_FILE, RunConfig, load_config_file
from hero_bench.run_records import recorded_task_version
from hero_bench.seeding import derive_seed
from hero_bench.tasks import get_task


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


def _run_config(run_dir: Path, overrides: Sequence[str], device: str | None) -> RunConfig:
    """The run's config.yaml with ``eval.*`` overrides applied (training is fixed by the run)."""
    if not run_dir.exists():
        raise HeroBenchError(f"{run_dir} is not a run directory: it does not exist (evaluate takes a folder "
                             "that `hero-bench train --out` wrote)")
    if not (run_dir / CONFIG_FILE).is_file():
        raise HeroBenchError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    cfg = load_config_file(run_dir / CONFIG_FILE)
    bad = [o for o in overrides if not o.strip().startswith("eval.")]
    if bad:
        raise ConfigError(f"evaluate accepts only eval.* overrides (training is fixed by the run); got {', '.join(bad)}")
    cfg = apply_overrides(RunConfig, cfg, list(overrides))
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    return cfg


def _adapter_files(run_dir: Path, target: Path, epochs: Sequence[int | str] | None) -> list[tuple[int, Path]]:
    """(epoch, adapter file) of the saved adapters to evaluate, in epoch order: all of them, or
    those of ``epochs`` (numbers or ``"last"``), which may not be written into eval.csv."""
    files = sorted(
        (int(m.group(1)), p) for p in (run_dir / "lora").glob("epoch_*.safetensors") if (m := _LORA_FILE.match(p.name))
    )
    if not files:
        raise HeroBenchError(f"{run_dir / 'lora'} holds no epoch_XXXX.safetensors adapters to evaluate")
    if epochs is None:
        return files
    if target.resolve() == (run_dir / "eval.csv").resolve():
        raise ConfigError("selecting epochs would drop checkpoints from eval.csv; write the subset elsewhere "
                          "with --out, or use --prompts train|eval")
    saved = [e for e, _ in files]
    wanted = {saved[-1] if str(e) == "last" else int(e) for e in epochs}
    unknown = sorted(wanted - set(saved))
    if unknown:
        raise ConfigError(f"no saved adapter for epoch(s) {unknown}; {run_dir / 'lora'} has epochs {saved}")
    return [(e, p) for e, p in files if e in wanted]


def _feedback_counters(run_dir: Path, epochs: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """(feedback_used, queries, images_generated) per epoch from train_log.csv; epoch 0 (the
    pretrained model) has none.  Every epoch in ``epochs`` must have its row."""
    counters = {0: (0, 0, 0)}
    if (run_dir / TRAIN_LOG_FILE).is_file():
        for r in read_csv_rows(run_dir / TRAIN_LOG_FILE):
            counters[int(r["epoch"])] = (int(r["feedback_used"]), int(r["queries"]), int(r["images_generated"]))
    missing = [e for e in epochs if e not in counters]
    if missing:
        raise HeroBenchError(f"{run_dir / TRAIN_LOG_FILE} has no row for epoch(s) {missing}; cannot label their feedback")
    return counters


def _evaluate_adapter(backbone, task, oracle, cfg: RunConfig, prompt_set: str) -> dict:
    """The evaluation of the adapter loaded into ``backbone``: the run's own (``both``) or that
    of one prompt list, with the transfer columns left empty."""
    if prompt_set == "both":
        return evaluate_model(backbone, task, oracle, cfg.sampler, cfg.eval)
    prompts, n = (task.train_prompts, cfg.eval.n_images) if prompt_set == "train" else \
        (task.eval_prompts, cfg.eval.n_transfer)
    return {**evaluate_prompts(backbone, prompts, oracle, cfg.sampler, cfg.eval, n_images=n),
            **dict.fromkeys(TRANSFER_COLUMNS)}


def _progress_line(epoch: int, result: dict, prompt_set: str) -> str:
    line = f"epoch {epoch}: success {result['success_rate']:.3f} (n={result['n_eval']}, "
    if prompt_set == "both":
        line += "the task's prompts"
        if result["transfer_n_eval"] is not None:
            line += (f"; transfer {result['transfer_success_rate']:.3f} on held-out prompts, "
                     f"n={result['transfer_n_eval']}")
    else:
        line += f"{prompt_set} prompts only"
    return line + ")"


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
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir, overrides, device)
    target = Path(out) if out is not None else run_dir / PROMPT_SET_FILES[prompt_set]
    files = _adapter_files(run_dir, target, epochs)
    counters = _feedback_counters(run_dir, [e for e, _ in files])

    task = get_task(cfg.task)
    made_under = recorded_task_version(run_dir)
    if made_under != task.version:
        # today's prompts or criterion would judge a model trained for another definition, and the
        # rows would carry today's version: such a run is evaluated from a commit of its own version
        raise HeroBenchError(
            f"{run_dir} was trained under version {made_under} of task {task.name!r}, and this code defines "
            f"version {task.version} (its prompts or criterion changed); evaluate it from a commit of version "
            f"{made_under}")
    if prompt_set == "eval" and cfg.eval.n_transfer == 0:
        raise ConfigError("--prompts eval with eval.transfer_images=0 has nothing to evaluate")
    oracle = task.oracle_factory()
    backbone = load_backbone(resolve_backbone(cfg.backbone), cfg.device, cfg.dtype)
    add_lora(backbone.unet, cfg.lora)
    chash, sha = run_config_hash(cfg), git_sha()
    rows = []
    for epoch, path in files:
        load_lora(backbone.unet, path)
        result = _evaluate_adapter(backbone, task, oracle, cfg, prompt_set)
        rows.append(eval_row(cfg, epoch, *counters[epoch], result, oracle, task.version, chash, sha))
        if progress:
            print(_progress_line(epoch, result, prompt_set), flush=True)
    columns = EVAL_COLUMNS
    if prompt_set != "both":  # say so in every row, so a single-split row is never mistaken for eval.csv's
        columns = (*EVAL_COLUMNS, "prompt_set")
        rows = [{**r, "prompt_set": prompt_set} for r in rows]
    atomic_write_text(target, rows_to_csv(rows, columns))
    return target


METHOD_NOISE_FILE = "eval_method_noise.csv"
"""Where ``evaluate_method_noise`` writes: two rows, the final model from N(0, I) and from the
method's own initial-noise distribution, told apart by an ``initial_noise`` column."""


def evaluate_method_noise(run_dir: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None,
                          device: str | None = None, progress: bool = True) -> Path:
    """A HERO run's final model, evaluated twice on the task's own prompts: from N(0, I), the
    benchmark's evaluation (the same images as eval.csv's last row), and from π_HERO as training left
    it (docs/algorithms.md §4.5: the best image's and the last round's good images' noises, perturbed
    by ε), so that what HERO's sampler buys is told apart from what its weights learned. Both use the
    evaluation's per-step noise; π_HERO's draws come from a stream of their own, seeded by
    ``eval.seed`` only. Reads the run's checkpoint.pt (its final weights and HERO's state), whose
    config hash must be the run's. Returns the CSV path (default RUN_DIR/eval_method_noise.csv).
    """
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir, overrides, device)
    if cfg.method != "hero":
        raise ConfigError(f"{run_dir} is a {cfg.method} run; only HERO samples from a noise distribution of its own "
                          "(π_HERO), so --method-noise accepts HERO runs only")
    if not cfg.hero.noise_guidance:
        raise ConfigError(f"{run_dir} trained with hero.noise_guidance=false: its sampler draws from N(0, I), which "
                          "the run's own evaluation (eval.csv) already measures")
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise HeroBenchError(f"{path} is missing: the π_HERO of the end of training lives in the run's checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    trained = run_config_hash(load_config_file(run_dir / CONFIG_FILE))
    if ckpt.get("config_hash") != trained:
        raise HeroBenchError(f"{path} was written by another run (config hash {ckpt.get('config_hash')} vs {trained})")
    state = ckpt["method"]
    if state.get("best_noise") is None:
        raise HeroBenchError(f"{run_dir} has no best image yet, so no π_HERO to sample from")
    task = get_task(cfg.task)
    if recorded_task_version(run_dir) != task.version:
        raise HeroBenchError(f"{run_dir} was trained under another version of task {task.name!r}; evaluate it from "
                             "a commit of that version")
    oracle = task.oracle_factory()
    backbone = load_backbone(resolve_backbone(cfg.backbone), cfg.device, cfg.dtype)
    add_lora(backbone.unet, cfg.lora)
    load_lora_state_dict(backbone.unet, ckpt["lora"])
    generator = torch.Generator(device="cpu").manual_seed(derive_seed(cfg.eval.seed, 0, "eval-method-noise"))
    method_noise = guided_noise(state["best_noise"], state["good_noises"], cfg.eval.n_images, cfg.hero.best_ratio,
                                cfg.hero.noise_scale, generator).to(backbone.device)
    chash, sha = run_config_hash(cfg), git_sha()
    counters = (ckpt["feedback_used"], ckpt["queries"], ckpt["images_generated"])
    rows = []
    for label, z_T in (("gaussian", None), ("method", method_noise)):
        result = {**evaluate_prompts(backbone, task.train_prompts, oracle, cfg.sampler, cfg.eval, z_T=z_T),
                  **dict.fromkeys(TRANSFER_COLUMNS)}
        rows.append({**eval_row(cfg, ckpt["epoch"], *counters, result, oracle, task.version, chash, sha),
                     "initial_noise": label})
        if progress:
            print(f"epoch {ckpt['epoch']}, initial noise from {'N(0, I)' if label == 'gaussian' else 'π_HERO'}: "
                  f"success {result['success_rate']:.3f} (n={result['n_eval']}, the task's prompts)", flush=True)
    target = Path(out) if out is not None else run_dir / METHOD_NOISE_FILE
    atomic_write_text(target, rows_to_csv(rows, (*EVAL_COLUMNS, "initial_noise")))
    return target
