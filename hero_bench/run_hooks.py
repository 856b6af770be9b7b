"""Callbacks of the training loop: what a run shows on the console, and where a test crashes it.

The loop (``hero_bench.runner``) computes and writes; everything else that happens while it runs
is a ``RunHooks`` callback, installed by whoever starts the run:

* ``ConsoleProgress``: the progress bar and one line per epoch on stderr (``train(progress=True)``);
* ``CrashAt``: a crash at a named point of the loop, for the resume tests.  In-process tests
  install ``CrashAt(point)``, which raises ``InjectedCrash``; a command line is crashed from the
  environment: ``HERO_BENCH_CRASH_AT=<point>`` ends the process with ``os._exit(CRASH_EXIT_CODE)``
  (no cleanup, like a kill), or with ``HERO_BENCH_CRASH_MODE=raise`` raises ``InjectedCrash``.

``TraceTo`` (``HERO_BENCH_TRACE=<file>``) only records when each point is reached.

Points: "start.after_checkpoint", "epoch<E>.<phase>" with phase in ``CRASH_PHASES``,
"end.before_done"; HERO also passes "epoch<E>.after_embedding" between its embedding-network and
policy updates (``RunContext.reached``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Sequence

from tqdm.auto import tqdm

from hero_bench.run_config import DONE_FILE

if TYPE_CHECKING:  # annotations only: the runner imports this module
    from hero_bench.runner import Run, RunState

CRASH_ENV = "HERO_BENCH_CRASH_AT"
CRASH_MODE_ENV = "HERO_BENCH_CRASH_MODE"
CRASH_EXIT_CODE = 75
TRACE_ENV = "HERO_BENCH_TRACE"
CRASH_PHASES = ("after_sampling", "after_feedback", "after_update", "after_eval", "after_checkpoint")


class RunHooks:
    """The callbacks of one run, in the order the loop calls them; each does nothing here."""

    def already_complete(self, run: Run) -> None:
        """The run directory holds a finished run (DONE.json); the loop does nothing."""

    def planned(self, run: Run, sizes: list[int]) -> None:
        """Set up; ``sizes`` are the batch sizes of the epochs until the budget is spent."""

    def resumed(self, run: Run, state: RunState) -> None:
        """Continuing from the checkpoint of epoch ``state.epoch``."""

    def evaluated_pretrained(self, run: Run, row: dict, seconds: float) -> None:
        """A fresh run evaluated the pretrained model (epoch 0); ``row`` is its eval.csv row."""

    def reached(self, point: str) -> None:
        """The loop reached a crash point (see the module docstring); its work so far is on disk
        as far as the point's name says."""

    def training(self, run: Run, state: RunState) -> None:
        """The epochs begin (after a resume: continue) from ``state``."""

    def epoch_done(self, run: Run, state: RunState, row: dict) -> None:
        """Epoch ``state.epoch`` is checkpointed and written; ``row`` is its train_log.csv row."""

    def closed(self, run: Run) -> None:
        """The epochs ended, normally or by an exception: release what the hook holds."""


class HookList(RunHooks):
    """Several hooks as one: each callback goes to every hook, in order."""

    def __init__(self, hooks: Sequence[RunHooks] = ()):
        self.hooks = list(hooks)

    def already_complete(self, run):
        for h in self.hooks:
            h.already_complete(run)

    def planned(self, run, sizes):
        for h in self.hooks:
            h.planned(run, sizes)

    def resumed(self, run, state):
        for h in self.hooks:
            h.resumed(run, state)

    def evaluated_pretrained(self, run, row, seconds):
        for h in self.hooks:
            h.evaluated_pretrained(run, row, seconds)

    def reached(self, point):
        for h in self.hooks:
            h.reached(point)

    def training(self, run, state):
        for h in self.hooks:
            h.training(run, state)

    def epoch_done(self, run, state, row):
        for h in self.hooks:
            h.epoch_done(run, state, row)

    def closed(self, run):
        for h in self.hooks:
            h.closed(run)


# -- crash injection ------------------------------------------------------------------------------
class InjectedCrash(RuntimeError):
    """Raised at a crash point by ``CrashAt(point)`` (in-process tests)."""


class CrashAt(RunHooks):
    """Crash when the loop reaches ``point``: raise InjectedCrash, or with ``exit_process`` end the
    process at once with CRASH_EXIT_CODE (no cleanup, no finally blocks: like a kill)."""

    def __init__(self, point: str, exit_process: bool = False):
        self.point = point
        self.exit_process = exit_process

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        if not self.exit_process:
            raise InjectedCrash(point)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)


def crash_from_env() -> list[RunHooks]:
    """The crash point HERO_BENCH_CRASH_AT asks for (none when it is unset), so that a test can
    kill a command-line run it cannot reach into."""
    point = os.environ.get(CRASH_ENV)
    if not point:
        return []
    return [CrashAt(point, exit_process=os.environ.get(CRASH_MODE_ENV) != "raise")]


class TraceTo(RunHooks):
    """Append ``<point> <unix time>`` to a file at every crash point, flushed at once: an outside
    observer (the kill-anywhere test) learns which phase a process was in when it killed it."""

    def __init__(self, path: str):
        self.path = path

    def planned(self, run, sizes) -> None:
        self.reached("start.planned")

    def resumed(self, run, state) -> None:
        self.reached("start.resumed")

    def reached(self, point: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{point} {time.time():.6f}\n")


def trace_from_env() -> list[RunHooks]:
    """The trace file HERO_BENCH_TRACE names (none when it is unset)."""
    path = os.environ.get(TRACE_ENV)
    return [TraceTo(path)] if path else []


# -- console --------------------------------------------------------------------------------------
def _batches_text(sizes: list[int]) -> str:
    """[64, 64, 64, 20] -> '3×64 + 20'."""
    out: list[str] = []
    i = 0
    while i < len(sizes):
        j = i
        while j < len(sizes) and sizes[j] == sizes[i]:
            j += 1
        out.append(f"{j - i}×{sizes[i]}" if j - i > 1 else str(sizes[i]))
        i = j
    return " + ".join(out) if out else "none"


class ConsoleProgress(RunHooks):
    """A progress bar in feedback and one line per event on stderr."""

    def __init__(self):
        self.bar = None

    @staticmethod
    def say(text: str) -> None:
        tqdm.write(text, file=sys.stderr)  # through tqdm, so that a line never tears the bar

    def already_complete(self, run):
        self.say(f"{run.dir}: run already complete ({DONE_FILE} exists); nothing to do")

    def planned(self, run, sizes):
        cfg, method = run.cfg, run.method
        if not method.trains:
            self.say(f"{cfg.run_id}: no training; evaluating the pretrained model on {cfg.eval.n_images} images")
            return
        left = cfg.budget - sum(sizes)
        self.say(
            f"{cfg.run_id}: {method.images_per_epoch()} images per epoch, {len(sizes)} epoch(s) to the budget of "
            f"{cfg.budget} (batches {_batches_text(sizes)}{f'; {left} label(s) left unspent' if left else ''}), "
            f"{method.optimizer_steps(method.images_per_epoch())} optimizer step(s) per epoch, "
            f"{cfg.sampler.steps} sampling steps; eval of {cfg.eval.n_images} images every "
            f"{cfg.eval.every_epochs} epoch(s) -> {run.dir}"
        )

    def resumed(self, run, state):
        self.say(f"resuming {run.dir} after epoch {state.epoch} (feedback used {state.feedback_used}/{run.cfg.budget})")

    def evaluated_pretrained(self, run, row, seconds):
        transfer = row.get("transfer_success_rate")
        self.say(f"epoch 0 (pretrained): eval success {row['success_rate']:.3f} on the task's prompts"
                 + (f", transfer {transfer:.3f} on held-out prompts" if transfer is not None else "") + " "
                 + (f"({seconds:.1f}s, an identical run's result from the shared cache)"
                    if run.pretrained_eval_reused else f"({seconds:.1f}s)"))

    def training(self, run, state):
        if run.method.trains:
            self.bar = tqdm(total=run.cfg.budget, initial=state.feedback_used, unit="fb", desc=run.cfg.run_id,
                            file=sys.stderr, dynamic_ncols=True, leave=True)

    def epoch_done(self, run, state, row):
        shown = {"success": row.get("train_success"), "loss": row.get("loss"), "kl": row.get("approx_kl"),
                 "triplet": row.get("triplet_loss")}
        post = {k: f"{v:.3g}" for k, v in shown.items() if v is not None}
        if state.eval_rows and state.eval_rows[-1]["epoch"] == state.epoch:
            post["eval"] = f"{state.eval_rows[-1]['success_rate']:.3f}"
        if self.bar is not None:
            self.bar.update(row["n_images"])
            self.bar.set_postfix(post, refresh=True)
        self.say(f"epoch {state.epoch}: feedback {state.feedback_used}/{run.cfg.budget} "
                 + " ".join(f"{k}={v}" for k, v in post.items()) + f" ({row['epoch_s']:.1f}s)")

    def closed(self, run):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
