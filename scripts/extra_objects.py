"""What else a trained model's successes draw: preference asks for exactly one well-formed square
in the hidden colour, so a second object that is not a well-formed square (a notched copy, a purple
fragment, a circle) does not count against it. A person might. For each run's last adapter (and
the base model), on the evaluation's 64 images of the task's training prompts, this counts the
successes that also hold a second object recognisable as the requested shape, and those that hold
a second object in the liked colour.

    python scripts/extra_objects.py RUNS_DIR [--task preference] [--shape square] [--colour purple]

RUNS_DIR is a workflow's ``results/runs`` (run folders ``<tier>/<task>/<method>/seed<k>`` with their
``lora/`` adapters). One line per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hero_bench.methods import method_names
from hero_bench.toyworld.analysis import analyse


def extra_counts(judged: dict, shape: str, colour: str) -> tuple[int, int, int]:
    """(successes, successes with a second recognisable ``shape``, successes with a second
    ``colour`` object) of one judged sample."""
    successes = second_shape = second_colour = 0
    for analysis, ok in zip(analyse(judged["_images"]), judged["_success"]):
        if not ok:
            continue
        successes += 1
        second_shape += sum(o.shape == shape and o.recognisable for o in analysis.objects) > 1
        second_colour += sum(o.color == colour for o in analysis.objects) > 1
    return successes, second_shape, second_colour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", type=Path, help="a workflow's results/runs folder")
    parser.add_argument("--task", default="preference")
    parser.add_argument("--tier", default="toy")
    parser.add_argument("--shape", default="square", help="the requested shape (default square)")
    parser.add_argument("--colour", default="purple", help="the liked colour (default purple, preference's)")
    args = parser.parse_args()
    # the sibling script's sampling (the evaluation's images of a run's last adapter); imported
    # here, as scripts/ is on the path only when a script runs, so the tests can load this module
    from trained_samples import N_IMAGES, judge_run

    torch.set_num_threads(1)
    task_dir = args.runs_dir / args.tier / args.task
    runs = sorted(task_dir.glob("*/seed*"))
    if not runs:
        parser.error(f"no run folders under {task_dir}")
    base = next((r for r in runs if r.parent.name == "base"), runs[0])
    order = {m: i for i, m in enumerate(method_names())}
    trained = sorted((r for r in runs if r.parent.name != "base"), key=lambda r: (order.get(r.parent.name, 99), r.name))
    for run, is_base in [(base, True)] + [(r, False) for r in trained]:
        name = "base" if is_base else f"{run.parent.name} {run.name}"
        k, shape, colour = extra_counts(judge_run(run, is_base), args.shape, args.colour)
        print(f"{name:12s} successes {k:2d}/{N_IMAGES}  with a second recognisable {args.shape}: {shape:2d}  "
              f"with a second {args.colour} object: {colour:2d}", flush=True)


if __name__ == "__main__":
    main()
