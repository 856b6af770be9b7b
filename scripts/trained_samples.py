"""What trained models draw: each run's best-scoring and borderline images, one row per method.

Training finds every hole in an oracle, so after a comparison look at the pictures behind the
numbers. For each task, this samples every method's last adapter (seed ``--seed``) on 64 images of
the task's training prompts with the benchmark's evaluation noise, judges them with the task's
oracle, and writes one grid per task: a row per model (base, HERO, DDPO, D3PO), each the 8
best-scoring images, then the 4 lowest-scoring successes and the 4 highest-scoring failures (green
frame = success, red = failure).

    python scripts/trained_samples.py RUNS_DIR OUT_DIR [--task sanity --task preference] [--seed 0]
    python scripts/trained_samples.py --run RUN [--run RUN ...] OUT_DIR

The second form draws a row for the base model and one per run folder given (any layout, e.g. a
sweep's ``results/tune/<tier>/<task>/<method>/<variant>/seed<k>``, all of one task);
docs/figures/trained_safety.png is such a grid of the preset's DDPO on safety, seeds 0-2.

RUNS_DIR is a workflow's ``results/runs`` (run folders ``<tier>/<task>/<method>/seed<k>`` with their
``lora/`` adapters; the published copies keep no adapters). Writes ``OUT_DIR/trained_<task>.png``.
docs/figures/trained_{sanity,anomaly,preference}.png were made from the default run's results/runs
(anomaly: when it was the default run's second task).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
from hero_bench.diffusion.lora import add_lora, load_lora
from hero_bench.methods import method_names
from hero_bench.run_config import load_config_file
from hero_bench.tasks import get_task
from hero_bench.toyworld.base_rates import measure_task, success_grid
from hero_bench.toyworld.pretrain import save_png

METHODS = tuple(method_names())  # one row each, in the report's order (hero_bench/methods.py)
N_IMAGES = 64


def judge_run(run: Path, base: bool = False, n_images: int = N_IMAGES) -> dict:
    """The run's last adapter (``base``: its backbone without one, the pretrained model) sampled on
    ``n_images`` images of the task's training prompts with the evaluation's noise and judged by the
    task's oracle: ``measure_task``'s dict (``_images``, ``_scores``, ``_success``, ...)."""
    cfg = load_config_file(run / "config.yaml")
    backbone = load_backbone(resolve_backbone(cfg.backbone))
    add_lora(backbone.unet, cfg.lora)
    adapters = [] if base else sorted((run / "lora").glob("epoch_*.safetensors"))
    if adapters:  # the base model's run has none: LoRA B = 0 is the pretrained model
        load_lora(backbone.unet, adapters[-1])
    # the evaluation's own noise streams and oracle: the images the run's primary metric judged
    return measure_task(backbone, get_task(cfg.task), cfg.sampler, n_images, cfg.eval.seed,
                        batch_size=cfg.sampler.batch_size, prompt_set="train")


def model_row(run: Path, base: bool = False) -> np.ndarray:
    """``base``: the run's backbone without its adapter (the pretrained model, the same evaluation)."""
    judged = judge_run(run, base)
    score, success = judged["_scores"], judged["_success"]
    best = list(np.argsort(-score)[:8])
    weakest_successes = [i for i in np.argsort(score) if success[i]][:4]
    strongest_failures = [i for i in np.argsort(-score) if not success[i]][:4]
    pick = best + weakest_successes + strongest_failures
    pick += [pick[-1]] * (16 - len(pick))  # a model with few successes repeats its last image
    print(f"{run}{' (base)' if base else ''}: success {judged['success_rate']:.3f} on {N_IMAGES} images")
    return success_grid(judged["_images"][pick], success[pick], columns=16)


def save_grid(path: Path, rows: list[np.ndarray]) -> None:
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    save_png(path, np.concatenate([part for row in rows for part in (row, gap)][:-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", metavar="[RUNS_DIR] OUT_DIR",
                        help="a workflow's results/runs folder and the folder for trained_<task>.png "
                             "(only the output folder with --run)")
    parser.add_argument("--run", type=Path, action="append", default=None,
                        help="a run folder (repeatable): a base row, then one row per run, instead of RUNS_DIR")
    parser.add_argument("--task", action="append", default=None, help="task (repeatable; default sanity, preference: the default run's tasks)")
    parser.add_argument("--tier", default="toy")
    parser.add_argument("--seed", type=int, default=0, help="which seed's runs (default 0)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.run:
        if len(args.paths) != 1:
            parser.error("with --run, give only the output folder")
        tasks = {load_config_file(run / "config.yaml").task for run in args.run}
        if len(tasks) != 1:
            parser.error(f"--run folders must be runs of one task, got {sorted(tasks)}")
        rows = [model_row(args.run[0], base=True)] + [model_row(run) for run in args.run]
        save_grid(args.paths[0] / f"trained_{tasks.pop()}.png", rows)
        return
    if len(args.paths) != 2:
        parser.error("give RUNS_DIR and OUT_DIR (or --run folders and OUT_DIR)")
    runs_dir, out = args.paths
    for task in args.task or ["sanity", "preference"]:
        rows = [model_row(runs_dir / args.tier / task / method / f"seed{args.seed}") for method in METHODS]
        save_grid(out / f"trained_{task}.png", rows)


if __name__ == "__main__":
    main()
