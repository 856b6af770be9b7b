"""Markdown table of base success on each toy task's training prompts, one row per `hero-bench
base-rates --json` file (for example one per DDIM η).

    python scripts/base_rate_table.py results/published/noise-influence-regimes/base-rates/*.json

Each cell: success rate [95% interval the command recorded (Wilson)] of the pretrained model on the
task's own training prompts; n per cell from the file. Rows are sorted by η, then by whether the
noise prediction was re-derived from the clipped x̂0 (`--use-clipped-model-output`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="base-rates JSON files")
    args = parser.parse_args(argv)
    rows = []
    for path in args.files:
        rates = json.loads(path.read_text())
        s = rates["sampler"]
        cells = {r["task"]: r.get("train", r) for r in rates["tasks"]}
        rows.append((float(s["eta"]), bool(s.get("use_clipped_model_output", False)), rates["n"], cells, path.name))
    tasks = sorted({t for row in rows for t in row[3]})
    print("| η | ε̂ from clipped x̂0 | n | " + " | ".join(tasks) + " | file |")
    print("|---|---|---|" + "---|" * len(tasks) + "---|")
    for eta, rederived, n, cells, name in sorted(rows, key=lambda r: (-r[0], r[1])):
        row = []
        for t in tasks:
            c = cells.get(t)
            row.append("—" if c is None else f"{c['success_rate']:.3f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}]")
        print(f"| {eta:g} | {'yes' if rederived else 'no'} | {n} | " + " | ".join(row) + f" | {name} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
