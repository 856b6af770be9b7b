"""`hero-bench regime-comparison`: where HERO wins, by noise-influence regime."""

from __future__ import annotations

import shlex
from pathlib import Path

from hero_bench.io import atomic_write_text

HELP = "HERO against DDPO and D3PO at equal feedback in each noise-influence regime, against the regime's ICC"
DESCRIPTION = """\
Read the eval.csv of an ablation sweep's runs (layout .../<task>/<method>/<variant>/seed<k>/eval.csv,
as the workflow's tune rules write them; workflows/config/toy-ablations.yaml) and the JSON files of
`hero-bench noise-influence --regime NAME --json FILE`, and write, per task and regime:

  - HERO's success minus DDPO's and D3PO's at the budget, paired by seed (all runs of a seed share
    the evaluation noise), mean with its 95% t interval, beside the regime's ICC(1) of success over
    initial noises with its bootstrap interval;
  - the feedback HERO needs to reach D3PO's final success and D3PO's feedback over it (the paper's
    "HERO needs N times less feedback than D3PO"), with a 95% interval from resampling seeds;
  - every variant's gain over the pretrained model at the budget (the ablations, the imperfect
    person);
  - with --method-noise, HERO's final model from N(0, I) against from its own pi_HERO;
  - with --person, an imperfect person: each method's success, gain, change from the reference
    person and HERO's lead over it, per person, paired by seed, and its figure;
  - the figure: HERO's gain over each method against the ICC, one marker per regime.

--variant REGIME=VARIANT names, per regime, the variant that is every method's plain run in it.
--person LABEL=VARIANT names, per person, the variant every method runs with that person's labels;
the first is the reference (the oracle's own labels), e.g. --person oracle=zT --person flip0.1=zT_flip0.1.

writes (under --out-dir): regime_comparison.csv, regime_ratio.csv, regime_gains.csv (tidy),
regime_comparison.md (Markdown), hero_gain_vs_icc.png; with --person also regime_person.csv and
person_erosion.png

example:
  hero-bench regime-comparison --variant initial-noise=zT --variant step-noise=step \\
      --icc results/tune/toy/noise_influence/*.json --out-dir results/tune \\
      results/tune/toy/*/*/*/seed*/eval.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("eval_csv", nargs="+", metavar="EVAL_CSV", help="the sweep runs' eval.csv files")
    parser.add_argument("--icc", nargs="+", required=True, metavar="JSON",
                        help="noise-influence JSON files, one per (task, regime), each made with --regime")
    parser.add_argument("--variant", action="append", required=True, metavar="REGIME=VARIANT",
                        help="the variant that is every method's plain run in REGIME (repeat per regime)")
    parser.add_argument("--method-noise", nargs="+", default=(), metavar="CSV",
                        help="HERO runs' eval_method_noise.csv (hero-bench evaluate RUN --method-noise): adds the "
                        "final model from N(0, I) against from its own pi_HERO")
    parser.add_argument("--person", action="append", default=[], metavar="LABEL=VARIANT",
                        help="the variant every method runs with this person's labels (repeat per person; the "
                        "first is the reference, e.g. oracle=zT)")
    parser.add_argument("--budget", type=int, default=None,
                        help="compare at this many labels (default: the largest every run reached)")
    parser.add_argument("--bootstrap-reps", type=int, default=2000, help="resamples of the feedback ratio's interval")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of those resamples")
    parser.add_argument("--out-dir", required=True, metavar="DIR", help="where the tables and the figure go")


def run(args) -> int:
    # deferred: pandas, scipy, matplotlib (hero-bench --help must not import them)
    from hero_bench import regime_comparison as rc

    variants = rc.parse_variants(args.variant)
    person_variants = rc.parse_variants(args.person, "--person", "LABEL", "oracle=zT") if args.person else None
    curves = rc.read_curves(args.eval_csv)
    icc = rc.read_icc(args.icc)
    budget = args.budget if args.budget is not None else rc.common_budget(curves)
    if budget <= 0:
        raise rc.RegimeComparisonError(f"--budget must be > 0 labels, got {budget}")
    if args.bootstrap_reps < 1:
        raise rc.RegimeComparisonError(f"--bootstrap-reps must be >= 1, got {args.bootstrap_reps}")
    comparison = rc.compare(curves, icc, variants, budget)
    ratio = rc.ratios(curves, variants, budget, reps=args.bootstrap_reps, seed=args.bootstrap_seed)
    gain = rc.gains(curves, budget)
    method_noise = rc.method_noise_table(rc.read_method_noise(args.method_noise)) if args.method_noise else None
    person = rc.person_table(curves, person_variants, budget) if person_variants else None
    out = Path(args.out_dir)
    command = ("hero-bench regime-comparison " + " ".join(f"--variant {shlex.quote(v)}" for v in args.variant)
               + f" --budget {budget} --icc <noise-influence JSON files>"
               + (" --method-noise <HERO runs' eval_method_noise.csv>" if args.method_noise else "")
               + "".join(f" --person {shlex.quote(p)}" for p in args.person)
               + f" --out-dir {shlex.quote(args.out_dir)}"
               " <the sweep's eval.csv files>")
    atomic_write_text(out / "regime_comparison.csv", comparison.to_csv(index=False))
    atomic_write_text(out / "regime_ratio.csv", ratio.to_csv(index=False))
    atomic_write_text(out / "regime_gains.csv", gain.to_csv(index=False))
    atomic_write_text(out / "regime_comparison.md",
                      rc.render_markdown(comparison, ratio, gain, command, method_noise, person))
    rc.plot(comparison, out / "hero_gain_vs_icc.png")
    if person is not None:
        atomic_write_text(out / "regime_person.csv", person.to_csv(index=False))
        rc.plot_person(person, out / "person_erosion.png")
    for r in comparison.itertuples():
        print(f"{r.task}, {r.regime} (ICC {r.icc:.2f}): HERO - {r.other} at {budget} labels "
              f"{r.diff:+.3f} [{r.diff_low:+.3f}, {r.diff_high:+.3f}] (n = {r.n_seeds})")
    print(f"{len(comparison)} comparisons -> {out / 'regime_comparison.md'}, {out / 'hero_gain_vs_icc.png'}")
    return 0
