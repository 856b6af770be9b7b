"""`hero-bench report`: feedback-efficiency tables and figures from a gathered runs table."""

from __future__ import annotations

import argparse
from pathlib import Path

from hero_bench.io import atomic_write_text

HELP = "summary tables (IQM, bootstrap CIs, feedback to threshold and to gain) and figures from runs.csv"
DESCRIPTION = """\
Summarise a runs table written by `hero-bench gather` into feedback-efficiency results:
success at each feedback budget (IQM over seeds with a 95% stratified bootstrap CI), normalised
area under the success-feedback curve, censored feedback to reach a success threshold and to
gain a margin over the base model's success, probability that HERO
improves on each baseline, and the HERO-vs-D3PO feedback ratio (see docs/metrics.md).

A run's success at budget B is that of its last checkpoint with feedback_used <= B (step
function, never interpolated).

writes (fixed names, under --out-dir):
  summary/summary.csv              one tidy row per tier, task, method, metric and budget
  tables/summary.md                Markdown tables with captions and provenance
  figures/success_vs_feedback.png  IQM curves with CI bands, one panel per task
  figures/final_success.png        final-budget IQM with CI per task and method

example:
  hero-bench report --runs results/summary/runs.csv --out-dir results --budgets 128,256,384,512
"""

SUMMARY_CSV = Path("summary") / "summary.csv"
SUMMARY_MD = Path("tables") / "summary.md"
CURVES_PNG = Path("figures") / "success_vs_feedback.png"
FINAL_PNG = Path("figures") / "final_success.png"


def _budgets(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated positive integers, e.g. 128,256,384,512"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated positive integers, e.g. 128,256,384,512")
    return sorted(set(values))


# the defaults of hero_bench.report.summarise, repeated so that `--help` does not import pandas
DEFAULT_THRESHOLD = 0.5
DEFAULT_GAIN = 0.15
DEFAULT_REPS = 2000
DEFAULT_SEED = 0


def add_arguments(parser) -> None:
    parser.add_argument("--runs", required=True, metavar="CSV", help="runs table from `hero-bench gather`")
    parser.add_argument("--out-dir", required=True, metavar="DIR", help="results folder (e.g. results)")
    parser.add_argument(
        "--budgets", type=_budgets, default=None, metavar="B1,B2,...",
        help="shared checkpoint grid of feedback budgets; the last is the final budget "
        "(default: the distinct non-zero feedback_used values of the HERO runs, else of all trained runs)",
    )
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD,
        help=f"success rate for feedback-to-threshold (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--gain", type=float, default=DEFAULT_GAIN,
        help="success gain over each run's own base success (its checkpoint at 0 feedback) for "
        f"feedback-to-gain, in (0, 1] (default {DEFAULT_GAIN})",
    )
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help=f"bootstrap resamples (default {DEFAULT_REPS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"bootstrap seed (default {DEFAULT_SEED})")


def run(args) -> int:
    # deferred: pandas, matplotlib, through plots and report (hero-bench --help must not import them)
    from hero_bench import plots
    from hero_bench.report import gather, render_markdown, summarise

    df = gather([args.runs])
    summary = summarise(df, budgets=args.budgets, threshold=args.threshold, gain=args.gain, reps=args.reps,
                        seed=args.seed)
    out = Path(args.out_dir)
    atomic_write_text(out / SUMMARY_CSV, summary.to_csv(index=False))
    atomic_write_text(out / SUMMARY_MD, render_markdown(summary))
    plots.plot_curves(summary, out / CURVES_PNG)
    plots.plot_final(summary, out / FINAL_PNG)
    for p in (SUMMARY_CSV, SUMMARY_MD, CURVES_PNG, FINAL_PNG):
        print(out / p)
    return 0
