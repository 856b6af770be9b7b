"""What HERO's sampler buys against what its weights learned: the two rows of each run's
``eval_method_noise.csv`` (`hero-bench evaluate RUN --method-noise`), per task and variant.

    python scripts/method_noise_table.py results/tune/toy/*/hero/*/seed*/eval_method_noise.csv

Per (task, variant): the number of runs n, mean success of the final model from N(0, I) (the
benchmark's evaluation) and from π_HERO as training left it, and their paired difference with its
95% Student t interval (n − 1 degrees of freedom; none when n < 2). Each run's two evaluations share
prompts and per-step noise; half of π_HERO's initial noises perturb one noise (the best image's, β =
0.5) by ε, so in a regime where z_T decides the outcome that half counts about as one draw per
prompt: the π_HERO row varies more from run to run than its n images suggest. The same table is a
section of `hero-bench regime-comparison --method-noise FILES` (the ablation workflow's report).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hero_bench.regime_comparison import method_noise_markdown, method_noise_table, read_method_noise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="eval_method_noise.csv files")
    args = parser.parse_args(argv)
    print("\n".join(method_noise_markdown(method_noise_table(read_method_noise(args.files)))))
    print("\nMade by `python scripts/method_noise_table.py FILES`; each file by `hero-bench evaluate RUN "
          "--method-noise` (128 images of the task's own prompts per row unless the run's eval.n_images says "
          "otherwise).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
