"""`hero-bench sweep-table`: rank a sweep's configurations per method by normalised AUC."""

from __future__ import annotations

import shlex
from pathlib import Path

from hero_bench.io import atomic_write_text

HELP = "rank the configurations of a hyper-parameter sweep (tune.yaml) by the area under their success curves"
DESCRIPTION = """\
Read the eval.csv of every run of a sweep (layout .../<task>/<method>/<variant>/seed<k>/eval.csv,
as the workflow's tune rules write it), score each run by its normalised area under the
success-vs-feedback step curve from 0 to its budget, and write per (task, method, variant) the
mean AUC and final success over seeds with their range, marking each method's selected variant
(highest mean AUC over all its runs). Each selection is then set against the runner-up on the
runs both have (same task and seed): the mean AUC difference with its 95% t interval, "decided"
when the interval lies above 0 and a tie otherwise (keep the preset's value on a tie). The
selected values go into the toy preset by hand, with a comment pointing to the committed table.

writes (under --out-dir): sweep.csv and sweep_selection.csv (tidy), sweep.md (Markdown)

example:
  hero-bench sweep-table --out-dir results/tune results/tune/toy/*/*/*/seed*/eval.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("eval_csv", nargs="+", metavar="EVAL_CSV", help="the sweep runs' eval.csv files")
    parser.add_argument("--out-dir", required=True, metavar="DIR", help="where sweep.csv and sweep.md go")


def run(args) -> int:
    # deferred: pandas, scipy, through sweep (hero-bench --help must not import them)
    from hero_bench.sweep import read_runs, render_markdown, selection_margins, summarise

    runs = read_runs(args.eval_csv)
    table = summarise(runs)
    out = Path(args.out_dir)
    command = "hero-bench sweep-table --out-dir " + shlex.quote(args.out_dir) + " <the sweep's eval.csv files>"
    margins = selection_margins(runs)
    atomic_write_text(out / "sweep.csv", table.to_csv(index=False))
    atomic_write_text(out / "sweep_selection.csv", margins.to_csv(index=False))
    atomic_write_text(out / "sweep.md", render_markdown(table, runs, command, margins))
    for r in margins.itertuples():
        if r.runner_up is None:
            print(f"{r.method}: selected {r.selected} (its only configuration)")
        else:
            verdict = "decided" if r.decided else "a tie: keep the preset's value"
            print(f"{r.method}: selected {r.selected}, {r.diff_mean:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}] "
                  f"AUC over {r.runner_up} on {r.n_pairs} paired runs ({verdict})")
    print(f"{len(runs)} runs, {len(table)} (task, method, variant) cells -> {out / 'sweep.md'}")
    return 0
