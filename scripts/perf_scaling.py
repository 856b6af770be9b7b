"""Toy-tier epoch time against images per epoch and against denoising steps (docs/performance.md, "Scaling").

Each point is one ``hero_bench.profiling.profile_epoch`` (one training epoch of the shipped
ShapesWorld model with the toy preset, an evaluation of as many images, one torch thread),
recorded with its CPU and wall seconds.  The points are appended to the JSON file as they finish,
so an interrupted sweep keeps what it measured and a rerun skips the points already there.

    python scripts/perf_scaling.py run --method ddpo --out results/bench/scaling.json
    python scripts/perf_scaling.py plot --json results/bench/scaling.json --method ddpo \\
        --cores-json results/bench/workflow_cores.json --figures docs/figures

``plot`` draws ``perf_images.png`` and ``perf_steps.png`` (epoch CPU and wall seconds per
method) and, given ``--cores-json`` (``[{"cores": N, "wall_s": s, "cpu_s": s}, ...]``, written by
hand from ``/usr/bin/time`` of the workflow runs), ``perf_cores.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hero_bench.methods import trained_method_names

IMAGES = (16, 32, 64)
"""Images per epoch at the preset's 20 steps (D3PO: the nearest whole number of groups of 7)."""
STEPS = (10, 20, 40)
"""Denoising steps at 32 images per epoch."""
DEFAULT_STEPS = 20
METHODS = tuple(trained_method_names())


def grid(methods) -> list[tuple[str, int, int]]:
    """(method, images, steps) of every point; the shared point (32 images, 20 steps) once."""
    points = []
    for method in methods:
        points += [(method, n, DEFAULT_STEPS) for n in IMAGES]
        points += [(method, 32, s) for s in STEPS if s != DEFAULT_STEPS]
    return points


def point(profile: dict) -> dict:
    """The fields of a profile the scaling page uses."""
    return {
        "method": profile["method"], "images": profile["images"], "steps": profile["sampler_steps"],
        "threads": profile["threads"], "torch": profile["torch"],
        "epoch_cpu_s": profile["cpu"]["epoch_s"], "epoch_wall_s": profile["wall"]["epoch_s"],
        "unet_share_cpu": profile["cpu"]["unet_share"],
        "phases_cpu_s": profile["cpu"]["phases_s"],
    }


def run(args) -> int:
    from hero_bench.io import atomic_write_text
    from hero_bench.profiling import profile_epoch

    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else []
    have = {(p["method"], p["requested_images"], p["steps"]) for p in done}
    for method, images, steps in grid(args.method or ["ddpo"]):
        if (method, images, steps) in have:
            continue
        profile = profile_epoch(method, images, steps=steps, threads=1, reference_repeats=2)
        done.append({**point(profile), "requested_images": images})
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(done, indent=1) + "\n")
        print(f"{method} {profile['images']} img {steps} steps: {profile['cpu']['epoch_s']:.1f} CPU s, "
              f"{profile['wall']['epoch_s']:.1f} wall s", flush=True)
    return 0


def _figure(ncols: int = 2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * ncols, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def plot(args) -> int:
    from matplotlib.ticker import NullLocator, ScalarFormatter

    points = json.loads(Path(args.json).read_text())
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    methods = sorted({p["method"] for p in points} & set(args.method or METHODS))
    for name, x, fixed, label in (("images", "images", ("steps", DEFAULT_STEPS), "images per epoch"),
                                  ("steps", "steps", ("requested_images", 32), "denoising steps")):
        fig, axes = _figure()
        for ax, kind in zip(axes, ("cpu", "wall")):
            for method in methods:
                row = sorted((p[x], p[f"epoch_{kind}_s"]) for p in points
                             if p["method"] == method and p[fixed[0]] == fixed[1])
                if row:
                    ax.plot(*zip(*row), marker="o", label=method)
            ax.set_xlabel(label)
            ax.set_ylabel(f"epoch, {kind} s")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log", base=2)
            ax.set_xticks(sorted({p[x] for p in points}), minor=False)
            ax.xaxis.set_minor_locator(NullLocator())
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_formatter(ScalarFormatter())
            ax.grid(alpha=0.3)
            ax.legend()
        fixed_text = f"{fixed[1]} steps" if fixed[0] == "steps" else "32 images per epoch"
        fig.suptitle(f"toy tier, one epoch (training + evaluation) vs {label} ({fixed_text}, 1 thread)",
                     fontsize=9)
        fig.savefig(figures / f"perf_{name}.png", dpi=110)
    if args.cores_json:
        runs = sorted(json.loads(Path(args.cores_json).read_text()), key=lambda r: r["cores"])
        fig, axes = _figure(1)
        ax = axes[0]
        cores = [r["cores"] for r in runs]
        ax.bar([str(c) for c in cores], [r["wall_s"] / 60 for r in runs], color="tab:blue")
        for i, r in enumerate(runs):
            ax.text(i, r["wall_s"] / 60, f"{r['wall_s'] / 60:.1f} min", ha="center", va="bottom", fontsize=8)
        ax.set_xlabel("snakemake --cores")
        ax.set_ylabel("workflow wall time, min")
        ax.set_title("reduced toy workflow (sanity, seed 0, 3 methods, budget 32)", fontsize=9)
        fig.savefig(figures / "perf_cores.png", dpi=110)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="measure the grid (appends to --out, skips points already there)")
    p.add_argument("--method", action="append", choices=METHODS,
                   help="method(s) (repeatable; default: ddpo)")
    p.add_argument("--out", default="results/bench/scaling.json")
    p.set_defaults(fn=run)
    p = sub.add_parser("plot", help="draw docs/figures/perf_*.png from the JSON files")
    p.add_argument("--json", default="results/bench/scaling.json")
    p.add_argument("--method", action="append", choices=METHODS, help="method(s) to draw (default: all measured)")
    p.add_argument("--cores-json", default=None)
    p.add_argument("--figures", default="docs/figures")
    p.set_defaults(fn=plot)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
