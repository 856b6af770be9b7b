"""`hero-bench agreement`: how well a task's oracle stands in for a person (hero_bench.agreement)."""

from __future__ import annotations

from pathlib import Path

from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.io import atomic_write_json
from hero_bench.ledger import FeedbackLedger

HELP = "compare the labels a person gave on the web page with the task oracle's verdicts (Cohen's kappa)"
DESCRIPTION = """\
The benchmark lets a scripted oracle play the human. For runs labelled by a person on the web
labelling page, this command measures how well it does: it reads every round the page showed
(RUN_DIR/web/eNNNN/round.json and its PNGs, the exact pixels the model drew), takes the person's
good/bad label of each image from the run's ledger (ledger.jsonl), asks the task's oracle about
the same pixels, and prints:

  the overall line   n, raw agreement and Cohen's kappa (scikit-learn's)
  the 2x2 table      rows = the person, columns = the oracle, order bad, good
  one line a method  n, agreement and kappa of the HERO, DDPO and D3PO runs given

Ledger labels of an epoch without a saved round (labelled by the oracle) and images of a round
the person never submitted are skipped and counted. Kappa is "undefined" when person and oracle
gave one and the same class to every image.

examples:
  hero-bench agreement runs/toy/anomaly/hero/seed0
  hero-bench agreement runs/toy/anomaly/*/seed0 --json agreement.json
"""


class RunFolderError(HeroBenchError):
    """A RUN_DIR that is not a run folder this command can read."""


def add_arguments(parser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders labelled on the web page (`hero-bench train` with the web evaluator)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the numbers as JSON (atomically)")


def run(args) -> int:
    # deferred: scikit-learn (scipy), PIL, the oracles and the run config (torch) are heavy, and
    # `hero-bench agreement --help` or a mistyped flag must not load them
    from hero_bench.agreement import compare_run, markdown, read_human_rounds, round_paths, to_json

    runs = []
    for run_dir in map(Path, args.run_dirs):
        if not run_dir.is_dir():
            raise RunFolderError(f"{run_dir} is not a folder; accepted: a run folder written by `hero-bench train`")
        round_paths(run_dir)  # no saved rounds: say so before reading anything else
        task, method, ledger = _open_run(run_dir)
        runs.append(compare_run(read_human_rounds(run_dir, ledger, task, method)))
    print(markdown(runs))
    if args.json:
        atomic_write_json(args.json, to_json(runs))
    return 0


def _open_run(run_dir: Path):
    """(task, method, ledger) of ``run_dir``, from its config.yaml (budget, run id) and ledger.jsonl."""
    # deferred: the run config imports the methods, hence torch
    from hero_bench.run_config import CONFIG_FILE, LEDGER_FILE, load_config_file

    config_path, ledger_path = run_dir / CONFIG_FILE, run_dir / LEDGER_FILE
    if not config_path.is_file():
        raise RunFolderError(f"{config_path} is missing; accepted: a run folder with the config.yaml "
                             "`hero-bench train` wrote (it names the task whose oracle judges the images)")
    if not ledger_path.is_file():
        raise RunFolderError(f"{ledger_path} is missing; accepted: a run folder with its ledger, where the person's "
                             "labels are recorded")
    try:
        cfg = load_config_file(config_path)
    except (ConfigError, TypeError, AttributeError) as exc:
        why = (str(exc).splitlines() or [""])[0]
        raise RunFolderError(f"{config_path} cannot be read ({type(exc).__name__}: {why}); "
                             "accepted: the config.yaml `hero-bench train` wrote") from None
    return cfg.task, cfg.method, FeedbackLedger(ledger_path, cfg.budget, cfg.run_id)
