"""The size of each PPO run's first update against its later ones: approx_kl per round, read from
``train_log.csv`` (HERO and DDPO log it; D3PO does not). AdamW's first steps move every adapter
weight by about the learning rate whatever the gradient, so a run's first round can jump where
later rounds creep (docs/methods.md, "Adam's first round").

    python scripts/first_round_kl.py RUN_DIR [RUN_DIR ...] [--rounds 3]

One line per run: method, task, seed, warmup, the first round's approx_kl, the largest of the later
rounds', and success on the training batch of the first ``--rounds`` rounds; then, per method and
warmup, the median first-round approx_kl and how many runs had no positive in some round 2..N
(every label 0: DDPO's advantages vanish and it cannot climb back).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def read_run(run: Path, rounds: int) -> dict | None:
    """The first-round figures of one run folder, or None if it logs no approx_kl."""
    with open(run / "train_log.csv", newline="") as fh:
        log = list(csv.DictReader(fh))
    if not log or not log[0].get("approx_kl"):
        return None
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    method = cfg["method"]
    settings = cfg[method]
    kl = [float(r["approx_kl"]) for r in log]
    success = [float(r["train_success"]) for r in log[:rounds]]
    return {"method": method, "task": cfg["task"], "seed": cfg["seed"],
            "warmup": int(settings.get("ppo", settings).get("warmup_steps", 0) or 0),
            "kl_first": kl[0], "kl_later_max": max(kl[1:], default=float("nan")),
            "success": success, "emptied": any(s == 0.0 for s in success[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with train_log.csv and config.yaml)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of training-batch success to show (default 3)")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        if not (run / "train_log.csv").is_file():
            parser.error(f"{run}: no train_log.csv (pass run folders)")
        row = read_run(run, args.rounds)
        if row is None:
            print(f"{run}: no approx_kl in its train_log.csv (D3PO, or no round yet); skipped", file=sys.stderr)
            continue
        rows.append(row)
        print(f"{row['method']:5s} {row['task']:12s} seed {row['seed']:<4} warmup {row['warmup']:<3d} "
              f"first-round kl {row['kl_first']:8.3f}  later max {row['kl_later_max']:7.3f}  "
              f"success {' '.join(f'{s:.2f}' for s in row['success'])}")
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["warmup"])].append(row)
    print()
    for (method, warmup), group in sorted(groups.items()):
        kls = [r["kl_first"] for r in group]
        emptied = sum(r["emptied"] for r in group)
        print(f"{method} warmup {warmup}: {len(group)} runs, first-round kl median {statistics.median(kls):.3f} "
              f"(range {min(kls):.3f}-{max(kls):.3f}); a round with no positive by round {args.rounds}: "
              f"{emptied} of {len(group)}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
