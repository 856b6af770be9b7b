"""Markdown table of ICC(1) of success over initial noises, per DDIM η and task, from the JSON files
that `hero-bench noise-influence --json` writes.

    python scripts/icc_table.py results/published/noise-influence-regimes/*.json \
        > results/published/noise-influence-regimes/icc.md

Each cell: ICC(1) [95% percentile bootstrap over the initial noises, 2,000 resamples]; n = noises ×
repeats of one training prompt (named in the table). A file written before the command recorded
the interval is given the one the command computes (`noise_influence.recorded_interval`). The
regime column names the toy regime (hero_bench/regimes.py) that samples so. The last column
counts the tasks at ICC >= 0.3, the issue's bar for a regime in which the initial noise largely
decides the outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from hero_bench.noise_influence import recorded_interval
from hero_bench.presets import build_run_config
from hero_bench.regimes import REGIMES

DECIDES = 0.3


def regime_names() -> dict[tuple, str]:
    """(eta, re-derived, steps, guidance) -> the toy regime sampling that way."""
    names = {}
    for name in REGIMES["toy"]:
        s = build_run_config("toy", overrides=[f"regime={name}"]).sampler
        names[(float(s.eta), bool(s.use_clipped_model_output), s.steps, s.guidance_scale)] = name
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="noise-influence JSON files")
    args = parser.parse_args(argv)
    cells: dict[tuple, dict[str, dict]] = defaultdict(dict)
    prompts, designs = {}, set()
    for path in args.files:
        r = json.loads(path.read_text())
        s = r["sampler"]
        key = (float(s["eta"]), bool(s.get("use_clipped_model_output", False)), s["steps"], s["guidance_scale"])
        if r["task"] in cells[key]:
            sys.exit(f"{path}: a second measurement of {r['task']} at {key}")
        cells[key][r["task"]] = r
        prompts[r["task"]] = r["prompt"]
        designs.add((r["n_noises"], r["repeats"]))
    tasks = sorted(prompts)
    print("# ICC(1) of success over initial noises\n")
    print("Share of the variance of success that lies between initial noises z_T (0: the per-step noise decides, "
          "1: z_T decides). Each task's first training prompt: "
          + "; ".join(f"{t} \"{prompts[t]}\"" for t in tasks) + ". "
          + "; ".join(f"n = {n} noises × {k} repeats" for n, k in sorted(designs))
          + " per cell; [95% percentile bootstrap over the noises, 2,000 resamples]. Made by "
          "`python scripts/icc_table.py FILES`; each file by `hero-bench noise-influence --tier toy --task TASK "
          "--eta ETA [--use-clipped-model-output] --noises 32 --repeats 8 --seed 0 --json FILE`.\n")
    regimes = regime_names()
    print("| η | ε̂ from clipped x̂0 | regime | " + " | ".join(tasks) + f" | tasks at ICC ≥ {DECIDES} |")
    print("|---|---|---|" + "---|" * len(tasks) + "---|")
    for key in sorted(cells, key=lambda k: (-k[0], k[1])):
        eta, rederived, steps, guidance = key
        row, decided = [], 0
        for t in tasks:
            r = cells[key].get(t)
            if r is None:
                row.append("—")
                continue
            low, high = recorded_interval(r)
            decided += r["icc_success"] >= DECIDES
            row.append(f"{r['icc_success']:.2f} [{low:.2f}, {high:.2f}]")
        print(f"| {eta:g} | {'yes' if rederived else 'no'} | {regimes.get(key, '')} | " + " | ".join(row)
              + f" | {decided} of {len(cells[key])} |")
    print("\nSampler: " + "; ".join(sorted({f"{k[2]} DDIM steps, guidance {k[3]:g}" for k in cells})) + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
