"""What HERO's sampler buys against what its weights learned: the two rows of each run's
``eval_method_noise.csv`` (`hero-bench evaluate RUN --method-noise`), per task and variant.

    python scripts/method_noise_table.py results/tune/toy/*/hero/*/seed*/eval_method_noise.csv

Per (task, variant): the number of runs n, mean success of the final model from N(0, I) (the
benchmark's evaluation) and from π_HERO as training left it, and their paired difference with its
95% Student t interval (n − 1 degrees of freedom; none when n < 2). Each run's two evaluations share
prompts and per-step noise; half of π_HERO's initial noises perturb one noise (the best image's, β =
0.5) by ε, so in a regime where z_T decides the outcome that half counts about as one draw per
prompt: the π_HERO row varies more from run to run than its n images suggest.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from hero_bench.stats import mean_t_ci


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="eval_method_noise.csv files")
    args = parser.parse_args(argv)
    cells: dict[tuple[str, str], list[tuple[int, float, float, int]]] = defaultdict(list)
    for path in args.files:
        rows = {r["initial_noise"]: r for r in csv.DictReader(open(path, newline=""))}
        if set(rows) != {"gaussian", "method"}:
            sys.exit(f"{path}: expected the rows gaussian and method, got {sorted(rows)}")
        g, m = rows["gaussian"], rows["method"]
        variant = path.parent.parent.name if path.parent.parent.name != g["method"] else ""
        cells[(g["task"], variant)].append((int(g["seed"]), float(g["success_rate"]), float(m["success_rate"]),
                                            int(g["feedback_used"])))
    print("| task | variant | n | labels | from N(0, I) | from π_HERO | π_HERO − N(0, I) [95% t] | per seed (N(0, I) / π_HERO) |")
    print("|---|---|---|---|---|---|---|---|")
    for (task, variant), runs in sorted(cells.items()):
        runs.sort()
        n = len(runs)
        gauss = sum(r[1] for r in runs) / n
        method = sum(r[2] for r in runs) / n
        diffs = [r[2] - r[1] for r in runs]
        ci = mean_t_ci(diffs)
        mean, low, high = ci.estimate, ci.low, ci.high
        interval = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" if n > 1 else f"{mean:+.3f}"
        labels = "/".join(sorted({str(r[3]) for r in runs}))
        seeds = ", ".join(f"seed{s}: {a:.3f} / {b:.3f}" for s, a, b, _ in runs)
        print(f"| {task} | {variant} | {n} | {labels} | {gauss:.3f} | {method:.3f} | {interval} | {seeds} |")
    print("\nMade by `python scripts/method_noise_table.py FILES`; each file by `hero-bench evaluate RUN "
          "--method-noise` (128 images of the task's own prompts per row unless the run's eval.n_images says "
          "otherwise).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
