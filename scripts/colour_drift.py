"""How far off the world's palette do trained models draw their successes?

Oracle v4 quantised every pixel to the nearest palette colour, so a model that drifted off the
world's colours (a grainy olive square, a beige canvas) was judged in the colours it drifted from:
D3PO's anomaly adapter of the calibrated acceptance grid scored 0.73 with such squares
(results/published/acceptance-512-calibrated/). Oracle v5 judges it per object
(``analysis.WELL_FORMED_MAX_DRIFT``); this script measures the drift behind that rule. For the
pretrained model and each run given, it samples the images ``trained_samples.py`` judges (64 of the
task's training prompts, the evaluation's noise) and prints, over the successes, the mean distance
of an image's object pixels to their palette colour (median and max over images), the background's,
and the success rate counting only images whose object pixels lie within ``--tolerance`` of the
palette on average (by default the oracle's own per-object bound).

``--objects`` prints instead the distribution of the drift of every well-shaped object (fit, defect
and box as for well formed, the colour not asked): the measurement that set the oracle's bound
(docs/methods.md, "Colour fidelity: oracle version 5"). ``--task`` gives rows of the pretrained
toy model on a task's training prompts (the toy preset's sampler and evaluation seed), no run needed.

    python scripts/colour_drift.py --run RUN [--run RUN ...] [--tolerance 25]
    python scripts/colour_drift.py --objects --images 256 --task anomaly [--task counting ...]
    python scripts/colour_drift.py --objects --images 128 --run RUN [--run RUN ...]

RUN is a run folder with its ``lora/`` adapters (a workflow's ``results/runs/<tier>/<task>/<method>/seed<k>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hero_bench.toyworld import analysis, scenes
from hero_bench.toyworld.analysis import PALETTE_NAMES, WELL_FORMED_MAX_DRIFT, nearest_palette

DEFAULT_TOLERANCE = WELL_FORMED_MAX_DRIFT
"""RGB units: the oracle's bound on a well-formed object's drift (its docstring says how it was set)."""
_BACKGROUND = [PALETTE_NAMES.index(name) for name in scenes.BACKGROUNDS]


def drift_stats(images: np.ndarray, success: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Per-image mean palette distance of object pixels (not a background colour) and of background
    pixels, summarised over the successes; ``success_on_palette`` counts the successes whose object
    pixels lie within ``tolerance`` on average, over all images."""
    success = np.asarray(success, dtype=bool)
    labels, dist = nearest_palette(images)
    objects = ~np.isin(labels, _BACKGROUND)
    obj = np.array([dist[i][objects[i]].mean() if objects[i].any() else np.nan for i in range(len(dist))])
    bg = np.array([dist[i][~objects[i]].mean() if (~objects[i]).any() else np.nan for i in range(len(dist))])
    hit = success & (obj <= tolerance)
    return {
        "n": len(dist),
        "success": float(success.mean()),
        "success_on_palette": float(hit.mean()),
        "object_median": float(np.nanmedian(obj[success])) if success.any() else float("nan"),
        "object_max": float(np.nanmax(obj[success])) if success.any() else float("nan"),
        "background_median": float(np.nanmedian(bg[success])) if success.any() else float("nan"),
    }


def object_drifts(images: np.ndarray) -> np.ndarray:
    """Drift (``DetectedObject.drift``) of every well-shaped object (well formed but for its
    colour)."""
    return np.array([o.drift for a in analysis.analyse(images) for o in a.objects if o.well_shaped],
                    dtype=float)


def object_row(name: str, judged: dict, bound: float) -> str:
    """A Markdown row: the model's success and the drift percentiles of its well-shaped objects."""
    d = object_drifts(judged["_images"])
    if d.size == 0:
        return f"| {name} | {len(judged['_images'])} | {judged['success_rate']:.3f} | 0 | — | — |"
    p10, p50, p90, p99 = np.percentile(d, [10, 50, 90, 99])
    return (f"| {name} | {len(judged['_images'])} | {judged['success_rate']:.3f} | {d.size} | "
            f"{p10:.1f} / {p50:.1f} / {p90:.1f} / {p99:.1f} / {d.max():.1f} | {int((d > bound).sum())} |")


def _judge_pretrained(task: str, n_images: int) -> dict:
    """The pretrained toy model on ``task``'s training prompts, as a toy run evaluates it."""
    from hero_bench.diffusion.backbone import load_backbone, resolve_backbone
    from hero_bench.presets import build_run_config
    from hero_bench.tasks import get_task
    from hero_bench.toyworld.base_rates import measure_task

    cfg = build_run_config("toy", task, method="base")
    backbone = load_backbone(resolve_backbone(cfg.backbone))
    return measure_task(backbone, get_task(task), cfg.sampler, n_images, cfg.eval.seed,
                        batch_size=cfg.sampler.batch_size, prompt_set="train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a run folder with lora/ adapters (repeatable); the first also gives the base row")
    parser.add_argument("--task", action="append", default=[],
                        help="a toy task: a row of the pretrained model on its training prompts (repeatable)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"RGB distance for success_on_palette, or --objects' count above it "
                             f"(default {DEFAULT_TOLERANCE:g}, the oracle's bound)")
    parser.add_argument("--images", type=int, default=None, help="images per model (default 64)")
    parser.add_argument("--objects", action="store_true",
                        help="print the drift distribution of every well-shaped object instead")
    args = parser.parse_args()
    if args.tolerance <= 0:
        parser.error(f"--tolerance must be > 0 RGB units, got {args.tolerance}")
    if not args.run and not args.task:
        parser.error("give at least one --run or --task")
    if args.images is not None and args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    from trained_samples import N_IMAGES, judge_run  # beside this script; loads torch and the backbone

    torch.set_num_threads(1)
    n_images = args.images or N_IMAGES
    if args.objects:
        print(f"| model | n | success | well-shaped objects | drift p10 / median / p90 / p99 / max | above {args.tolerance:g} |")
        print("|---|---|---|---|---|---|")
        for task in args.task:
            print(object_row(f"pretrained, {task}", _judge_pretrained(task, n_images), args.tolerance), flush=True)
        for run in args.run:
            print(object_row("/".join(run.parts[-3:]), judge_run(run, False, n_images), args.tolerance), flush=True)
        return
    if not args.run:
        parser.error("the success table needs --run (--task goes with --objects)")
    print("| model | n | success | success on palette | object distance, successes: median / max | background median |")
    print("|---|---|---|---|---|---|")
    for run, base in [(args.run[0], True)] + [(run, False) for run in args.run]:
        judged = judge_run(run, base, n_images)
        s = drift_stats(judged["_images"], judged["_success"], args.tolerance)
        name = "base" if base else "/".join(run.parts[-3:])
        print(f"| {name} | {s['n']} | {s['success']:.3f} | {s['success_on_palette']:.3f} | "
              f"{s['object_median']:.1f} / {s['object_max']:.1f} | {s['background_median']:.1f} |")


if __name__ == "__main__":
    main()
