"""`hero-bench compare`: does a rerun fall inside the published 95% CIs?"""

from __future__ import annotations

from hero_bench.io import atomic_write_text

HELP = "check a rerun's summary against published results (exit 1 when a cell falls outside its CI)"
DESCRIPTION = """\
Compare a fresh summary (written by `hero-bench report`) with a published one, cell by cell
(task, method, metric, budget; success at every budget and the normalised AUC). A cell reproduces
when the fresh estimate lies inside the published 95% CI, widened on each side by one evaluation
image (1 / n_eval, read from the fresh runs table; --slack overrides it). Runs are bitwise
reproducible on one machine, not across CPUs, so this is the check that a rerun elsewhere is the
same result (docs/metrics.md, "Reproducing the published results").

NEW and PUBLISHED are summary.csv files or results folders holding summary/summary.csv.
Exit status: 0 when every shared cell reproduces, 1 when one does not, 2 on bad input.

examples:
  hero-bench compare results results/published/toy
  hero-bench compare results/summary/summary.csv results/published/toy/summary/summary.csv \\
      --out results/tables/reproduction.md
"""


def add_arguments(parser) -> None:
    parser.add_argument("new", metavar="NEW", help="fresh summary.csv (or its results folder)")
    parser.add_argument("published", metavar="PUBLISHED", help="published summary.csv (or its results folder)")
    parser.add_argument("--slack", type=float, default=None, metavar="S",
                        help="widen each published CI by S on each side (default: one evaluation image, "
                        "1 / n_eval of the fresh runs table; 0 when that table is not found)")
    parser.add_argument("--out", default=None, metavar="MD",
                        help="also write the verdict as a Markdown table (atomically), e.g. for the report")
    parser.add_argument("--csv", default=None, metavar="CSV", help="also write every compared cell as CSV")
    parser.add_argument("--exit-zero", action="store_true",
                        help="exit 0 even when cells fall outside (the workflow records the verdict instead)")


def run(args) -> int:
    # deferred: pandas, through reproduction (0.25 s; hero-bench --help must not import it)
    from hero_bench.reproduction import compare, eval_resolution, outside, render_markdown, summary_file

    slack = args.slack
    if slack is None:
        # the results folder's summary/runs.csv (the workflow's gather output, beside summary.csv)
        runs = summary_file(args.new).parent.parent / "summary" / "runs.csv"
        slack = eval_resolution(runs) if runs.is_file() else 0.0
    table = compare(args.new, args.published, slack=slack)
    if args.out:
        atomic_write_text(args.out, render_markdown(table, args.new, args.published))
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
    bad = outside(table)
    for line in bad:
        print(f"outside: {line}")
    n_incomparable = int((table.mismatch != "").sum())
    print(f"{len(table) - len(bad)} of {len(table)} cells inside the published 95% CIs "
          f"(slack {slack:.4f} on each side)"
          + (f"; {n_incomparable} not comparable (another design)" if n_incomparable else ""))
    return 0 if (not bad or args.exit_zero) else 1
