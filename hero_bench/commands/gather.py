"""`hero-bench gather`: validate and concatenate per-run eval.csv files into one tidy runs table."""

from __future__ import annotations

from hero_bench.io import atomic_write_text

HELP = "concatenate per-run eval.csv files into one validated runs table"
DESCRIPTION = """\
Validate and concatenate per-run eval.csv files (one row per run and checkpoint, the columns of
hero_bench.results.EVAL_COLUMNS) into one tidy CSV, sorted by tier, task, method, seed,
feedback_used, epoch. A missing column, a non-numeric value or a checkpoint gathered twice is an
error naming the file, column and line.

example:
  hero-bench gather --out results/summary/runs.csv results/runs/toy/*/*/seed*/eval.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("eval_csv", nargs="+", metavar="EVAL_CSV", help="per-run eval.csv files")
    parser.add_argument("--out", required=True, metavar="CSV", help="where to write the runs table (written atomically)")


def run(args) -> int:
    # deferred: pandas, through report (0.25 s; hero-bench --help must not import it)
    from hero_bench.report import gather

    df = gather(args.eval_csv)
    atomic_write_text(args.out, df.to_csv(index=False))
    n_runs = len(df.groupby(["tier", "task", "method", "seed"]))
    print(f"gathered {len(df)} checkpoints of {n_runs} runs from {len(args.eval_csv)} files -> {args.out}")
    return 0
