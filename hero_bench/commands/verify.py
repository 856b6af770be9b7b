"""`hero-bench verify`: check that run folders are intact (hero_bench.integrity)."""

from __future__ import annotations

from hero_bench.integrity import verify_run

HELP = "check run folders' integrity: ledger hash chain, counts, budget, adapter and checkpoint checksums, config hash"
DESCRIPTION = """\
Check that each run folder's files still agree with each other and with what was recorded when
they were written, and say what is wrong, one line per problem:

  ledger      the hash chain of ledger.jsonl (an edited, swapped or removed record), and its
              length and head hash against those the checkpoint and DONE.json recorded (a tail
              cut off at a record boundary); no more labels than the budget of config.yaml
  counts      feedback_used and queries of every eval.csv and train_log.csv row (and n_images),
              of the checkpoint and of DONE.json against the labels the ledger holds; none
              above the budget
  checksums   sha256 of every lora/epoch_XXXX.safetensors and of checkpoint.pt against those
              recorded when they were saved (in the checkpoint, and in DONE.json)
  config      config.yaml against the config_hash of eval.csv, DONE.json and the checkpoint

A warning is said but does not fail a run: a finished run kept without its ledger, checkpoint or
adapters (as results/published/ keeps them), a ledger or DONE.json written before ledger format 2
(no hash chain, no checksums), a run still in progress, a torn last ledger line left by a crash.
gather runs the same checks and refuses a run that fails them.

Prints one summary line per run (OK or FAILED), its problems and warnings indented below, and a
total. Exit status 0 when every run passes, 1 when any fails.

examples:
  hero-bench verify results/runs/toy/anomaly/hero/seed0
  hero-bench verify --quiet results/runs/toy/*/*/seed*
"""


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by `hero-bench train`")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the runs that fail (and the total), without warnings")


def run(args) -> int:
    failed = 0
    for run_dir in args.run_dirs:
        result = verify_run(run_dir)
        failed += not result.ok
        if args.quiet and result.ok:
            continue
        print(result.summary())
        for problem in result.problems:
            print(f"  problem: {problem}")
        for warning in [] if args.quiet else result.warnings:
            print(f"  warning: {warning}")
    n = len(args.run_dirs)
    print(f"verified {n} run{'' if n == 1 else 's'}: {n - failed} OK, {failed} FAILED")
    return 1 if failed else 0
