"""Does D3PO's implicit reward rank fresh preference pairs the way the evaluator did?

D3PO logs, per round, ``pair_accuracy``: the share of (pair, trained step) terms whose implicit
reward β·(log r_w − log r_l), computed just before that term's backward pass, already favours the
preferred image. Against a fixed pretrained reference it measures how the weights learned from
earlier rounds rank this round's new images; against the previous round's model it starts each
round at a tie (0) and then mostly measures what the round's own earlier steps taught about images
that recur in several pairs of a group. This prints, per run, the accuracy over rounds
``--from-round`` onwards (weighted by the round's pairs) and, per reference mode, the mean over
runs with a Student t interval (``hero_bench.stats.mean_t_ci``).

    python scripts/pair_accuracy.py results/published/*/runs/toy/*/d3po/**/train_log.csv

Each path is a D3PO run's ``train_log.csv``, with its ``config.yaml`` beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from hero_bench.stats import mean_t_ci


def run_accuracy(train_log: Path, from_round: int) -> dict:
    """One run's pair accuracy over rounds ``from_round`` onwards, weighted by each round's pairs."""
    log = pd.read_csv(train_log)
    missing = {"epoch", "n_pairs", "pair_accuracy"} - set(log.columns)
    if missing:
        raise SystemExit(f"{train_log}: not a D3PO train log (no column {', '.join(sorted(missing))})")
    config = yaml.safe_load((train_log.parent / "config.yaml").read_text())
    rounds = log[(log["epoch"] >= from_round) & (log["n_pairs"] > 0)].dropna(subset=["pair_accuracy"])
    pairs = float(rounds["n_pairs"].sum())
    accuracy = float((rounds["pair_accuracy"] * rounds["n_pairs"]).sum() / pairs) if pairs else float("nan")
    return {"run": str(train_log.parent), "task": config["task"], "reference": config["d3po"]["reference"],
            "lr": config["d3po"]["lr"], "rounds": len(rounds), "pairs": int(pairs), "accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_logs", type=Path, nargs="+", help="D3PO runs' train_log.csv files")
    parser.add_argument("--from-round", type=int, default=3,
                        help="first round counted (default 3: the rounds after the weights have moved)")
    args = parser.parse_args()
    if args.from_round < 1:
        parser.error(f"--from-round must be >= 1, got {args.from_round}")
    runs = pd.DataFrame([run_accuracy(path, args.from_round) for path in args.train_logs])
    runs = runs.dropna(subset=["accuracy"])
    if runs.empty:
        raise SystemExit(f"no run has a round >= {args.from_round} with pairs")
    print(f"Pair accuracy over rounds >= {args.from_round}, weighted by pairs; per reference mode, mean over runs [95% t interval]\n")
    print("| reference | runs | mean | 95% t interval | min | max |")
    print("|---|---|---|---|---|---|")
    for reference, group in runs.groupby("reference"):
        ci = mean_t_ci(group["accuracy"].to_numpy())
        print(f"| {reference} | {len(group)} | {ci.estimate:.3f} | [{ci.low:.3f}, {ci.high:.3f}] | "
              f"{group['accuracy'].min():.3f} | {group['accuracy'].max():.3f} |")
    print("\n| run | task | reference | lr | rounds | pairs | accuracy |")
    print("|---|---|---|---|---|---|---|")
    for row in runs.sort_values(["reference", "task", "run"]).itertuples():
        print(f"| {row.run} | {row.task} | {row.reference} | {row.lr:g} | {row.rounds} | {row.pairs} | {row.accuracy:.3f} |")


if __name__ == "__main__":
    main()
