"""Per task: how much does training raise success over the pretrained model, mean over seeds?

Reads runs' ``eval.csv`` files (a run folder's first row is its evaluation at 0 labels, i.e. of the
pretrained model on the same evaluation noise; runs evaluated only there, such as ``base``, are left
out) and prints a Markdown table: per task (and per folder variant, when runs of several variants
are given), the pretrained model's success, each
seed's success at the given budgets (the last evaluation at or below the budget), and the mean
gain over seeds with a Student t interval (``hero_bench.stats.mean_t_ci``). A task "clears" a
target when its mean gain is at least the target and the interval's lower end is above 0: the
"every toy task learnable" criterion of docs/methods.md.

    python scripts/gain_table.py results/tune/toy/*/ddpo/lr5e-3/seed*/eval.csv --budgets 512 1024
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from hero_bench.methods import method_names
from hero_bench.stats import mean_t_ci, success_at


def _variant(path: Path) -> str:
    """The folder between the method and the seed (a sweep variant), or '' for a plain run."""
    run = path.parent  # .../<task>/<method>[/<variant>]/seed<k>
    return run.parent.name if run.parent.name not in method_names() else ""


def gain_rows(paths: list[Path], budgets: list[int], target: float) -> list[dict]:
    runs = []
    for path in paths:
        ev = pd.read_csv(path).sort_values("feedback_used")
        if ev.empty or ev["feedback_used"].iloc[0] != 0:
            raise SystemExit(f"{path}: the first evaluation must be at 0 labels (the pretrained model)")
        if ev["feedback_used"].iloc[-1] == 0:  # a `base` run: its success is every row's base column
            print(f"{path}: evaluated at 0 labels only (no training), left out", file=sys.stderr)
            continue
        runs.append({"task": ev["task"].iloc[0], "method": ev["method"].iloc[0], "variant": _variant(path),
                     "seed": int(ev["seed"].iloc[0]), "base": float(ev["success_rate"].iloc[0]),
                     "at": success_at(ev["feedback_used"], ev["success_rate"], budgets),
                     "last": int(ev["feedback_used"].iloc[-1])})
    rows = []
    for key in sorted({(r["task"], r["method"], r["variant"]) for r in runs}):
        group = sorted((r for r in runs if (r["task"], r["method"], r["variant"]) == key), key=lambda r: r["seed"])
        row = {"task": key[0], "method": key[1], "variant": key[2], "n": len(group),
               "base": ", ".join(sorted({f"{r['base']:.3f}" for r in group}))}
        for i, b in enumerate(budgets):
            if any(r["last"] < b for r in group):
                row[f"at {b}"] = "not reached by every seed"
                row[f"gain {b}"] = ""
                continue
            row[f"at {b}"] = ", ".join(f"seed{r['seed']}: {r['at'][i]:.3f}" for r in group)
            ci = mean_t_ci([r["at"][i] - r["base"] for r in group])
            clears = ci.estimate >= target and ci.low > 0
            row[f"gain {b}"] = f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]" + (" ✓" if clears else "")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("eval_csv", nargs="+", type=Path, help="runs' eval.csv files")
    parser.add_argument("--budgets", nargs="+", type=int, default=[512, 1024], metavar="LABELS",
                        help="feedback budgets to report (default: 512 1024)")
    parser.add_argument("--target", type=float, default=0.15,
                        help="mean gain a task must reach, with its interval above 0, to be marked ✓ (default 0.15)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.eval_csv if not p.is_file()]
    if missing:
        parser.error(f"no such eval.csv: {', '.join(missing)}")
    rows = gain_rows(args.eval_csv, args.budgets, args.target)
    if not rows:
        parser.error("no run was trained (every eval.csv holds only its evaluation at 0 labels)")
    columns = [c for c in rows[0] if c != "variant" or any(r["variant"] for r in rows)]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(f"\nGain = success at the budget minus the same run's success at 0 labels; mean over seeds "
          f"[95% t interval, n − 1 degrees of freedom]; ✓ = mean gain ≥ {args.target} and interval above 0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
