"""A candidate configuration against a reference on the same (task, seed) runs of a sweep, with a
non-inferiority margin: the decision rule of workflows/config/tune-warmup8.yaml (and, with
``--collapse-below``, of tune-stable-ddpo.yaml).

    python scripts/paired_variants.py RESULTS_TUNE_DIR [RESULTS_TUNE_DIR ...] --reference METHOD=VARIANT ... \\
        --candidate METHOD=VARIANT ... [--margin 0.05] [--tasks TASK ...] [--collapse-below X]

Each ``RESULTS_TUNE_DIR`` holds ``<tier>/<task>/<method>/<variant>/seed<k>/`` run folders (a sweep's
``results/tune`` or its published copy's ``runs``); several folders pool their runs, e.g. a sweep
and its extension on more tuning seeds (a (task, seed) run of a variant found in two folders is an
error). ``--tasks`` keeps the named tasks only, e.g. the config's when a folder holds runs of
others. Runs without DONE.json (still training) are left out and named on stderr. For each method
given both a reference and a candidate: the number of (task, seed) pairs both ran, the mean of
AUC(candidate) − AUC(reference) (normalised area under success vs feedback, ``hero_bench.sweep``)
with its 95% Student t interval, and the median first-round approx_kl of each (HERO and DDPO log
it; D3PO does not). The candidate is **adopted** when the interval's lower end lies above −margin
(it costs at most ``margin`` of AUC) and, where approx_kl is logged, its median first-round
approx_kl is below the reference's; otherwise the reference stays. With ``--collapse-below X``
the second condition is instead that fewer of the candidate's paired runs than of the
reference's collapse, a collapse being success below X at the run's last evaluation (for a
change meant to steady a learner rather than to calm its first round: a lower rate, say). A
Markdown table goes to stdout.

This is a non-inferiority rule, meant for a change that fixes a failure (a warmup against the
first round's jump) rather than for ranking rates: ``hero-bench sweep-table`` ranks those, and a
tie there keeps the preset.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from hero_bench.run_records import DONE_FILE
from hero_bench.stats import mean_t_ci
from hero_bench.sweep import paired_aucs, read_runs


def method_variants(items: list[str], flag: str, parser) -> dict[str, str]:
    out = {}
    for item in items:
        method, sep, variant = item.partition("=")
        if not sep or not method or not variant:
            parser.error(f"{flag} {item!r}: expected METHOD=VARIANT, e.g. ddpo=late10_lr1e-2")
        out[method] = variant
    return out


def first_round_kl(run_dir: Path) -> float | None:
    """The first logged round's approx_kl of one run folder, or None when it logs none."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not rows[0].get("approx_kl"):
        return None
    return float(rows[0]["approx_kl"])


def compare(roots: Path | list[Path], method: str, reference: str, candidate: str, margin: float,
            tasks: list[str] | None = None, collapse_below: float | None = None) -> dict:
    """One method's row: pairs, AUC difference with its interval, first-round kl medians, collapsed
    runs (with ``collapse_below``), verdict."""
    roots = [roots] if isinstance(roots, Path) else list(roots)
    root = ", ".join(str(r) for r in roots)
    paths = sorted(p for r in roots for p in r.glob(f"*/*/{method}/*/seed*/eval.csv"))
    paths = [p for p in paths if p.parent.parent.name in (reference, candidate)
             and (tasks is None or p.parents[3].name in tasks)]
    unfinished = [p.parent for p in paths if not (p.parent / DONE_FILE).is_file()]
    for run in unfinished:  # still training (or stopped): its curve does not reach the budget yet
        print(f"{run}: no {DONE_FILE}, left out", file=sys.stderr)
    paths = [p for p in paths if p.parent not in unfinished]
    if not paths:
        raise SystemExit(f"{root}: no finished runs of {method} variants {reference} or {candidate}")
    seen: dict[tuple, Path] = {}
    for p in paths:
        key = tuple(p.parts[-6:-1])  # tier, task, method, variant, seed
        if key in seen:
            raise SystemExit(f"the same run is in two folders: {seen[key].parent} and {p.parent}; "
                             "give each (task, variant, seed) once")
        seen[key] = p
    runs = read_runs(paths)
    missing = sorted({reference, candidate} - set(runs.variant))
    if missing:
        raise SystemExit(f"{root}: no finished run of {method} variant(s) {', '.join(missing)}")
    paired = paired_aucs(runs, reference, candidate)
    ci = mean_t_ci((paired[candidate] - paired[reference]).to_numpy())
    kl = {}
    for variant in (reference, candidate):
        values = [k for p in paths if p.parent.parent.name == variant
                  if (k := first_round_kl(p.parent)) is not None]
        kl[variant] = statistics.median(values) if values else None
    collapsed = {reference: None, candidate: None}
    if collapse_below is None:
        steadier = kl[reference] is None or kl[candidate] is None or kl[candidate] < kl[reference]
    else:  # counted on the paired runs only, the ones the AUC difference compares
        final = runs.pivot_table(index=["task", "seed"], columns="variant", values="final",
                                 aggfunc="mean").loc[paired.index]
        collapsed = {v: int((final[v] < collapse_below).sum()) for v in (reference, candidate)}
        steadier = collapsed[candidate] < collapsed[reference]
    adopted = bool(ci.low > -margin) and steadier
    return {"method": method, "reference": reference, "candidate": candidate, "pairs": len(paired),
            "auc_reference": float(paired[reference].mean()), "auc_candidate": float(paired[candidate].mean()),
            "diff": ci.estimate, "low": ci.low, "high": ci.high,
            "kl_reference": kl[reference], "kl_candidate": kl[candidate],
            "collapse_below": collapse_below, "collapsed_reference": collapsed[reference],
            "collapsed_candidate": collapsed[candidate], "adopted": adopted}


def _kl(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.3f}"


def render(rows: list[dict], margin: float, collapse_below: float | None = None) -> str:
    collapse_head, collapse_rule = "", ""
    if collapse_below is not None:
        collapse_head = f" collapsed (last success < {collapse_below:g}), reference → candidate |"
        collapse_rule = "---|"
    stability = "fewer collapsed" if collapse_below is not None else "calmer first round"
    lines = [f"| method | reference | candidate | pairs | AUC reference | AUC candidate | candidate − reference [95% t] "
             f"| first-round approx_kl (median), reference → candidate |{collapse_head} "
             f"adopted (lower end > −{margin:g}, {stability}) |",
             "|---|---|---|---|---|---|---|---|" + collapse_rule + "---|"]
    for r in rows:
        collapse_cell = ""
        if collapse_below is not None:
            collapse_cell = f" {r['collapsed_reference']} → {r['collapsed_candidate']} of {r['pairs']} |"
        lines.append(f"| {r['method']} | {r['reference']} | {r['candidate']} | {r['pairs']} | {r['auc_reference']:.3f} "
                     f"| {r['auc_candidate']:.3f} | {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] "
                     f"| {_kl(r['kl_reference'])} → {_kl(r['kl_candidate'])} |{collapse_cell} "
                     f"{'**yes**' if r['adopted'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", type=Path, nargs="+", metavar="root",
                        help="folder(s) of <tier>/<task>/<method>/<variant>/seed<k>/ run folders, pooled")
    parser.add_argument("--reference", nargs="+", required=True, metavar="METHOD=VARIANT")
    parser.add_argument("--candidate", nargs="+", required=True, metavar="METHOD=VARIANT")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="only these tasks' runs (default: every task in the folder)")
    parser.add_argument("--margin", type=float, default=0.05,
                        help="largest AUC loss the candidate may cost, as the interval's lower end (default 0.05)")
    parser.add_argument("--collapse-below", type=float, default=None, metavar="X",
                        help="judge stability by collapsed runs (last evaluation's success below X, "
                             "in [0, 1]) instead of the first round's approx_kl")
    args = parser.parse_args(argv)
    if args.margin < 0:
        parser.error(f"--margin must be >= 0, got {args.margin}")
    if args.collapse_below is not None and not 0 <= args.collapse_below <= 1:
        parser.error(f"--collapse-below must be a success rate in [0, 1], got {args.collapse_below}")
    references = method_variants(args.reference, "--reference", parser)
    candidates = method_variants(args.candidate, "--candidate", parser)
    unmatched = sorted(set(references) ^ set(candidates))
    if unmatched:
        parser.error(f"methods given only a reference or only a candidate: {', '.join(unmatched)}")
    rows = [compare(args.roots, m, references[m], candidates[m], args.margin, args.tasks, args.collapse_below)
            for m in sorted(references)]
    print(render(rows, args.margin, args.collapse_below), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
