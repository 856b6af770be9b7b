"""A candidate configuration against a reference on the same (task, seed) runs of a sweep, with a
non-inferiority margin: the decision rule of workflows/config/tune-warmup8.yaml (and, with
``--collapse-below``, of tune-stable-ddpo.yaml).

    python scripts/paired_variants.py RESULTS_TUNE_DIR [RESULTS_TUNE_DIR ...] --reference METHOD=VARIANT ... \\
        --candidate METHOD=VARIANT ... [--margin 0.05] [--tasks TASK ...] [--collapse-below X] \\
        [--fall-by Y] [--superior-adopts] [--require-gain] [--same-unless COLUMN]

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
change meant to steady a learner rather than to calm its first round: a lower rate, say). With
``--fall-by Y`` a run that falls back also counts against its variant: one whose last evaluation
lies more than Y below its own best evaluation (over a long curve, a run can rise and lose it
again without ever collapsing); the condition is then that fewer candidate runs are unstable
(collapsed or fallen). With ``--superior-adopts`` a candidate whose AUC difference has its lower end
above 0 is adopted whatever its stability (better over the whole curve, where a fall already costs
AUC). With ``--require-gain`` the second condition is a mean difference above 0 instead of a calmer
or steadier candidate (the rule of tune-prompt-pull-*.yaml, with ``--superior-adopts``).

``--same-unless COLUMN`` is for a candidate that changes training only in rounds whose train-log
COLUMN is non-zero (``ddpo.pull_scope: prompt`` and ``no_success_pull``): a candidate run without a
reference run of its (task, seed) whose COLUMN is 0 (or empty) in every round of its train log is
the reference's run bit for bit, so it stands in for that reference run (difference 0). The pairs
cell counts them. A candidate run that did act needs its reference run. A Markdown table goes to
stdout.

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

import pandas as pd

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


def never_acted(run_dir: Path, column: str) -> bool:
    """Whether ``column`` of the run's train log is 0 or empty in every round (a train log without
    the column never acted either; a missing train log is an error)."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        raise SystemExit(f"{run_dir}: no train_log.csv to tell whether {column} ever acted")
    with open(path, newline="") as fh:
        return all(float(row.get(column) or 0) == 0 for row in csv.DictReader(fh))


def standing_in(runs: pd.DataFrame, reference: str, candidate: str, column: str) -> pd.DataFrame:
    """The candidate's runs that never acted (``never_acted``) on a (task, seed) the reference did
    not run, relabelled as the reference's runs (``runs`` has each run's ``folder``)."""
    have_reference = {(r.task, r.seed) for r in runs.itertuples() if r.variant == reference}
    keep = [r.Index for r in runs.itertuples() if r.variant == candidate
            and (r.task, r.seed) not in have_reference and never_acted(r.folder, column)]
    return runs.loc[keep].assign(variant=reference)


def compare(roots: Path | list[Path], method: str, reference: str, candidate: str, margin: float,
            tasks: list[str] | None = None, collapse_below: float | None = None,
            fall_by: float | None = None, superior_adopts: bool = False, require_gain: bool = False,
            same_unless: str | None = None) -> dict:
    """One method's row: pairs (``stand_ins`` of them by ``same_unless``), AUC difference with its
    interval, first-round kl medians, collapsed runs (with ``collapse_below``), fallen runs (with
    ``fall_by``), verdict."""
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
    runs = read_runs(paths).assign(folder=[p.parent for p in paths])  # one row per path, in order
    stand_ins = 0
    if same_unless is not None:
        extra = standing_in(runs, reference, candidate, same_unless)
        # a stand-in's first round is the reference's too, so it joins the kl median below
        runs, stand_ins = pd.concat([runs, extra], ignore_index=True), len(extra)
    missing = sorted({reference, candidate} - set(runs.variant))
    if missing:
        raise SystemExit(f"{root}: no finished run of {method} variant(s) {', '.join(missing)}")
    paired = paired_aucs(runs, reference, candidate)
    ci = mean_t_ci((paired[candidate] - paired[reference]).to_numpy())
    kl = {}
    for variant in (reference, candidate):
        values = [k for folder in runs.folder[runs.variant == variant] if (k := first_round_kl(folder)) is not None]
        kl[variant] = statistics.median(values) if values else None
    collapsed = fallen = unstable = {reference: None, candidate: None}
    if require_gain:
        steadier = bool(ci.estimate > 0)
    elif collapse_below is None and fall_by is None:
        steadier = kl[reference] is None or kl[candidate] is None or kl[candidate] < kl[reference]
    else:  # counted on the paired runs only, the ones the AUC difference compares
        def per_pair(column: str):
            return runs.pivot_table(index=["task", "seed"], columns="variant", values=column,
                                    aggfunc="mean").loc[paired.index]
        final, best = per_pair("final"), per_pair("best")
        variants = (reference, candidate)
        never = pd.Series(False, index=paired.index)  # a criterion not asked for marks no run
        is_collapsed = {v: final[v] < collapse_below if collapse_below is not None else never for v in variants}
        is_fallen = {v: best[v] - final[v] > fall_by if fall_by is not None else never for v in variants}
        if collapse_below is not None:
            collapsed = {v: int(is_collapsed[v].sum()) for v in variants}
        if fall_by is not None:
            fallen = {v: int(is_fallen[v].sum()) for v in variants}
        unstable = {v: int((is_collapsed[v] | is_fallen[v]).sum()) for v in variants}
        steadier = unstable[candidate] < unstable[reference]
    adopted = (bool(ci.low > -margin) and steadier) or (superior_adopts and bool(ci.low > 0))
    return {"method": method, "reference": reference, "candidate": candidate, "pairs": len(paired),
            "stand_ins": stand_ins, "require_gain": require_gain,
            "auc_reference": float(paired[reference].mean()), "auc_candidate": float(paired[candidate].mean()),
            "diff": ci.estimate, "low": ci.low, "high": ci.high,
            "kl_reference": kl[reference], "kl_candidate": kl[candidate],
            "collapse_below": collapse_below, "collapsed_reference": collapsed[reference],
            "collapsed_candidate": collapsed[candidate], "fall_by": fall_by,
            "fallen_reference": fallen[reference], "fallen_candidate": fallen[candidate],
            "unstable_reference": unstable[reference], "unstable_candidate": unstable[candidate],
            "superior_adopts": superior_adopts, "adopted": adopted}


def _kl(value: float | None) -> str:
    return "not logged" if value is None else f"{value:.3f}"


def render(rows: list[dict], margin: float, collapse_below: float | None = None,
           fall_by: float | None = None, superior_adopts: bool = False, require_gain: bool = False) -> str:
    extra_heads, extra_keys = [], []
    if collapse_below is not None:
        extra_heads.append(f"collapsed (last success < {collapse_below:g}), reference → candidate")
        extra_keys.append("collapsed")
    if fall_by is not None:
        extra_heads.append(f"fallen (last success > {fall_by:g} below the run's best), reference → candidate")
        extra_keys.append("fallen")
        if collapse_below is not None:
            extra_heads.append("unstable (either), reference → candidate")
            extra_keys.append("unstable")
    if require_gain:
        stability = "mean above 0"
    elif fall_by is not None:
        stability = "fewer unstable"
    else:
        stability = "fewer collapsed" if collapse_below is not None else "calmer first round"
    rule = f"lower end > −{margin:g}, {stability}" + ("; or lower end > 0" if superior_adopts else "")
    lines = [f"| method | reference | candidate | pairs | AUC reference | AUC candidate | candidate − reference [95% t] "
             f"| first-round approx_kl (median), reference → candidate |"
             + "".join(f" {h} |" for h in extra_heads) + f" adopted ({rule}) |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(extra_keys) + "---|"]
    for r in rows:
        extra = "".join(f" {r[k + '_reference']} → {r[k + '_candidate']} of {r['pairs']} |" for k in extra_keys)
        pairs = f"{r['pairs']}" + (f" ({r['stand_ins']} stand-ins)" if r.get("stand_ins") else "")
        lines.append(f"| {r['method']} | {r['reference']} | {r['candidate']} | {pairs} | {r['auc_reference']:.3f} "
                     f"| {r['auc_candidate']:.3f} | {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] "
                     f"| {_kl(r['kl_reference'])} → {_kl(r['kl_candidate'])} |{extra} "
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
    parser.add_argument("--fall-by", type=float, default=None, metavar="Y",
                        help="also count as unstable a run whose last evaluation lies more than Y "
                             "(in [0, 1]) below its best; stability is then fewer unstable runs")
    parser.add_argument("--superior-adopts", action="store_true",
                        help="adopt a candidate whose AUC difference has its lower end above 0, "
                             "whatever its stability")
    parser.add_argument("--require-gain", action="store_true",
                        help="the second condition is a mean AUC difference above 0, not a calmer or "
                             "steadier candidate")
    parser.add_argument("--same-unless", default=None, metavar="COLUMN",
                        help="a candidate run without its reference run whose train-log COLUMN is 0 in "
                             "every round is the reference's run and stands in for it (e.g. no_success_pull)")
    args = parser.parse_args(argv)
    if args.margin < 0:
        parser.error(f"--margin must be >= 0, got {args.margin}")
    if args.collapse_below is not None and not 0 <= args.collapse_below <= 1:
        parser.error(f"--collapse-below must be a success rate in [0, 1], got {args.collapse_below}")
    if args.fall_by is not None and not 0 <= args.fall_by <= 1:
        parser.error(f"--fall-by must be a difference of success rates in [0, 1], got {args.fall_by}")
    references = method_variants(args.reference, "--reference", parser)
    candidates = method_variants(args.candidate, "--candidate", parser)
    unmatched = sorted(set(references) ^ set(candidates))
    if unmatched:
        parser.error(f"methods given only a reference or only a candidate: {', '.join(unmatched)}")
    rows = [compare(args.roots, m, references[m], candidates[m], args.margin, args.tasks, args.collapse_below,
                    args.fall_by, args.superior_adopts, args.require_gain, args.same_unless)
            for m in sorted(references)]
    print(render(rows, args.margin, args.collapse_below, args.fall_by, args.superior_adopts, args.require_gain),
          end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
