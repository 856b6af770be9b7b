"""Learning regression test: every method must climb on the sanity task (`pytest -m learning`).

The toy tier's `sanity` task has one global, easily seen criterion (every object drawn is red or
yellow; the prompts name no colour), and the shipped model meets it about a third of the time.
A correct HERO, DDPO or D3PO with the toy preset's calibrated settings (workflows/config/tune.yaml,
then tune-curve.yaml) raises that success by at least MIN_GAIN within LEARNING_BUDGET labels; a
broken one (advantage sign or preference order flipped, labels shuffled, optimizer step skipped)
does not (scripts/learning_mutations.py). The three runs are real `hero-bench
train` processes on the shipped model, one thread each, started together; success is judged on
N_EVAL images from the evaluation noise (seeded by eval.seed only, never by a training batch) at
feedback 0 (the base model) and at the end. About 6-10 minutes on 2 cores, so it is not part of the
default `pytest` run; `.ci/run` runs it as its own stage.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.learning

METHODS = ("hero", "ddpo", "d3po")
SEED = 0
LEARNING_BUDGET = 192
"""6 rounds of 32 labels (D3PO: 5 groups of 7 = 35 per round, 5 rounds = 175)."""
N_EVAL = 128
MIN_GAIN = 0.25
SIZES = {
    "hero": ["hero.images_per_epoch=32"],
    "ddpo": ["ddpo.images_per_epoch=32"],
    "d3po": ["d3po.groups_per_epoch=5"],
}


def _train_command(method: str, out: Path) -> list[str]:
    sets = [f"eval.n_images={N_EVAL}", f"eval.every_epochs={LEARNING_BUDGET}", *SIZES[method]]
    return [sys.executable, "-m", "hero_bench.cli", "train", "--tier", "toy", "--task", "sanity",
            "--method", method, "--seed", str(SEED), "--budget", str(LEARNING_BUDGET), "--threads", "1",
            "--quiet", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    """method -> [(feedback_used, success_rate), ...] of its run (all three run concurrently)."""
    root = tmp_path_factory.mktemp("learning")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    procs, started = {}, time.monotonic()
    for method in METHODS:
        log = open(root / f"{method}.log", "w")
        procs[method] = (subprocess.Popen(_train_command(method, root / method), stdout=log,
                                          stderr=subprocess.STDOUT, env=env), log)
    out = {}
    for method, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        assert rc == 0, f"{method} failed:\n" + (root / f"{method}.log").read_text()[-3000:]
        with open(root / method / "eval.csv", newline="") as fh:
            out[method] = [(int(r["feedback_used"]), float(r["success_rate"])) for r in csv.DictReader(fh)]
        with open(root / method / "train_log.csv", newline="") as fh:
            batches = [f"{float(r['train_success']):.2f}" for r in csv.DictReader(fh)]
        print(f"  {method}: training-batch success per round {', '.join(batches)}")
    print(f"\nlearning runs: {time.monotonic() - started:.0f} s for {', '.join(METHODS)}")
    for method, curve in out.items():
        print(f"  {method}: " + ", ".join(f"{f} labels {s:.3f}" for f, s in curve))
    return out


def test_base_model_leaves_headroom(curves):
    # the same evaluation noise for every method: one base value, in the sanity task's 10-40% band
    bases = {curve[0] for curve in curves.values()}
    assert len(bases) == 1 and bases.pop()[0] == 0
    base = curves["ddpo"][0][1]
    assert 0.10 <= base <= 0.40, f"sanity base success {base:.3f} is outside 10-40%: the task lost its headroom"


@pytest.mark.parametrize("method", METHODS)
def test_method_climbs_on_the_sanity_task(curves, method):
    (f0, base), (f1, final) = curves[method][0], curves[method][-1]
    assert f1 >= LEARNING_BUDGET - 32, f"{method} stopped at {f1} labels"
    assert final - base >= MIN_GAIN, (
        f"{method}: sanity success {base:.3f} -> {final:.3f} after {f1} labels; a correct method gains "
        f">= {MIN_GAIN} (n = {N_EVAL} evaluation images)")
