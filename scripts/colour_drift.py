"""How far off the world's palette do trained models draw their successes?

The shape oracle quantises every pixel to the nearest palette colour, so a model that drifts off
the world's colours (a grainy olive square, a beige canvas) is judged in the colours it drifted
from: D3PO's anomaly adapter of the calibrated acceptance grid scores 0.75 with such squares
(results/published/acceptance-512-calibrated/). For the pretrained model and each run given, this
samples the images ``trained_samples.py`` judges (64 of the task's training prompts, the
evaluation's noise) and prints, over the successes, the mean distance of an image's object pixels
to their palette colour (median and max over images), the background's, and the success rate
counting only images whose object pixels lie within ``--tolerance`` of the palette on average.

    python scripts/colour_drift.py --run RUN [--run RUN ...] [--tolerance 20]

RUN is a run folder with its ``lora/`` adapters (a workflow's ``results/runs/<tier>/<task>/<method>/seed<k>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hero_bench.toyworld import scenes
from hero_bench.toyworld.analysis import PALETTE_NAMES, palette_distance, quantise

DEFAULT_TOLERANCE = 20.0
"""RGB units; the pretrained model's successes on anomaly lie at 6 (median) and at most 13 (seed 0,
64 images), the nearest two palette colours (red, purple) 139 apart."""
_BACKGROUND = [PALETTE_NAMES.index(name) for name in scenes.BACKGROUNDS]


def drift_stats(images: np.ndarray, success: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Per-image mean palette distance of object pixels (not a background colour) and of background
    pixels, summarised over the successes; ``success_on_palette`` counts the successes whose object
    pixels lie within ``tolerance`` on average, over all images."""
    success = np.asarray(success, dtype=bool)
    dist, labels = palette_distance(images), quantise(images)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="a run folder with lora/ adapters (repeatable); the first also gives the base row")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"RGB distance for success_on_palette (default {DEFAULT_TOLERANCE:g})")
    args = parser.parse_args()
    if args.tolerance <= 0:
        parser.error(f"--tolerance must be > 0 RGB units, got {args.tolerance}")
    from trained_samples import judge_run  # beside this script; loads torch and the backbone

    torch.set_num_threads(1)
    print("| model | n | success | success on palette | object distance, successes: median / max | background median |")
    print("|---|---|---|---|---|---|")
    for run, base in [(args.run[0], True)] + [(run, False) for run in args.run]:
        judged = judge_run(run, base)
        s = drift_stats(judged["_images"], judged["_success"], args.tolerance)
        name = "base" if base else "/".join(run.parts[-3:])
        print(f"| {name} | {s['n']} | {s['success']:.3f} | {s['success_on_palette']:.3f} | "
              f"{s['object_median']:.1f} / {s['object_max']:.1f} | {s['background_median']:.1f} |")


if __name__ == "__main__":
    main()
