"""Calling a task's oracle on a feedback batch: a time limit, retries, back-off, and only valid answers.

The simulated evaluator (``hero_bench.feedback``) asks the oracle about every batch it labels.  An
oracle may fail: it raises, runs past the time limit, or returns the wrong number of results, a
malformed result or a non-finite score.  Such an answer is never used.  The evaluator asks again
under an ``OracleCallPolicy`` and, when no attempt gives a valid answer, raises
``OracleFailedError`` in one line naming the task, the oracle, the batch and why each attempt
failed (``docs/feedback.md``, "Oracle failures").

This module knows nothing of labels, noise or the ledger: it hands back the oracle's
``(success, score)`` per image, and the evaluator draws its noise and writes the ledger only after
that, so an answer obtained at the third attempt labels exactly like one obtained at the first.
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hero_bench.errors import ConfigError, OracleFailedError

Answer = tuple[np.ndarray, np.ndarray]
"""The oracle's answer on one batch: success (bool [N]) and score (float64 [N], all finite)."""


@dataclass(frozen=True)
class OracleCallPolicy:
    """How the evaluator calls a task's oracle on a batch: a time limit, retries and back-off.

    Operational settings, not experiment settings: an answer is used only once it is valid, and the
    evaluator draws its noise from that answer alone, so a run whose oracle needed retries labels
    exactly like one whose oracle never failed.  That is why they are not part of ``RunConfig``
    (whose hash names the results) but flags of ``hero-bench train`` (``--oracle-timeout``,
    ``--oracle-retries``, ``--oracle-backoff``)."""

    timeout_s: float | None = 600.0
    """Seconds to wait for one call of the oracle on one batch; None = wait as long as it takes.
    With a limit the call runs in a worker thread; a thread cannot be stopped, so a call past the
    limit is abandoned (left to finish in the background, its answer discarded) and counts as a
    failed attempt."""

    retries: int = 2
    """Further attempts after a failed one (0 = fail at the first fault); a batch is given up after
    ``retries + 1`` failed attempts."""

    backoff_s: float = 2.0
    """Seconds to wait before the first retry, doubled before each further one (2, 4, 8, ...);
    0 = retry at once."""

    def __post_init__(self) -> None:
        t = self.timeout_s
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
                              or t <= 0):
            raise ConfigError("oracle timeout (--oracle-timeout) must be a number of seconds > 0, or None for "
                              f"no limit (--oracle-timeout 0), got {t!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"oracle retries (--oracle-retries) must be an integer >= 0, got {self.retries!r}")
        b = self.backoff_s
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
            raise ConfigError(f"oracle back-off (--oracle-backoff) must be a number of seconds >= 0, got {b!r}")

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
        return self.backoff_s * 2 ** (retry - 1)


_sleep = time.sleep  # the back-off's wait (a test replaces it to record the delays)


class _BadAnswer(Exception):
    """One attempt at asking the oracle gave no valid answer; the message says why, in a few words."""


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line and short: it becomes part of a one-line error."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _call_with_timeout(call, timeout_s: float | None):
    """``call()``, waiting at most ``timeout_s`` seconds for it (None: as long as it takes).

    With a limit the call runs in a daemon thread.  Python cannot stop a thread, so a call past the
    limit is abandoned: it is left to finish in the background and its answer is discarded (nobody
    reads ``outcome`` any more).  Being a daemon thread, it does not keep a process that has given
    up on it from exiting.  Per-thread state such as torch's grad mode is the thread's default, so
    an oracle sets what it needs itself (the shipped ones run their models under torch.no_grad)."""
    if timeout_s is None:
        return call()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread, which decides
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="hero-bench-oracle", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise _BadAnswer(f"gave no answer within {timeout_s:g} s (the call was abandoned and may still be "
                         "running in the background)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def ask_once(oracle, images, prompts, metadata, timeout_s: float | None) -> Answer:
    """One attempt: the oracle's (success, score) per image, or ``_BadAnswer`` saying why the
    answer cannot be used (the oracle raised, ran past the time limit, or returned the wrong
    number of results, a malformed result or a non-finite score)."""
    n = len(images)
    try:
        results = list(_call_with_timeout(lambda: oracle(images, prompts, metadata), timeout_s))
    except _BadAnswer:
        raise
    except Exception as exc:  # noqa: BLE001 - any fault of the oracle is a failed attempt, to retry
        raise _BadAnswer(f"raised {_one_line(exc)}") from exc
    if len(results) != n:
        raise _BadAnswer(f"returned {len(results)} results for {n} images")
    success = np.zeros(n, dtype=bool)
    score = np.zeros(n, dtype=np.float64)
    for i, r in enumerate(results):
        ok, x = getattr(r, "success", None), getattr(r, "score", None)
        # bool is an int, hence a numbers.Real: a true/false score is refused explicitly
        if not isinstance(ok, (bool, np.bool_)) or isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise _BadAnswer(f"returned a malformed result for image {i} (not an OracleResult with a "
                             f"true/false success and a numeric score: {type(r).__name__})")
        success[i], score[i] = bool(ok), float(x)
    bad = np.flatnonzero(~np.isfinite(score))
    if bad.size:
        raise _BadAnswer(f"returned the non-finite score {score[bad[0]]} for image(s) {bad.tolist()}")
    return success, score


def ask_until_valid(attempt: Callable[[], Answer], policy: OracleCallPolicy, *, oracle, task: str | None,
                    method: str, epoch: int, n: int) -> Answer:
    """The first valid answer of ``attempt()`` (one ``ask_once``), trying up to ``policy.retries + 1``
    times with back-off; ``OracleFailedError`` when no attempt gives one.

    ``attempt`` is the caller's, so that the evaluator counts its oracle calls and reads its
    ``oracle`` attribute afresh at each attempt (the profiler swaps in a timed oracle there).
    ``oracle``, ``task``, ``method``, ``epoch`` and ``n`` (the batch's images) only name the batch
    in the error."""
    faults: list[_BadAnswer] = []
    for k in range(policy.retries + 1):
        if k:
            _sleep(policy.delay_before(k))
        try:
            return attempt()
        except _BadAnswer as fault:
            faults.append(fault)
    raise OracleFailedError(_failure_line(oracle, task, policy, method, epoch, n, [str(f) for f in faults])) \
        from faults[-1]


def _failure_line(oracle, task: str | None, policy: OracleCallPolicy, method: str, epoch: int, n: int,
                  faults: list[str]) -> str:
    """One line: the task, the oracle, the batch, why each attempt failed, and what to do."""
    name = getattr(oracle, "name", type(oracle).__name__)
    version = getattr(oracle, "version", None)
    who = f"oracle {name}" + (f" (version {version})" if version else "")
    where = f"task {task}, {who}" if task else who
    if len(set(faults)) == 1:
        why = f"each time it {faults[0]}"
    else:
        why = "; ".join(f"attempt {i} {f}" for i, f in enumerate(faults, 1))
    return (f"{where}: no valid answer for the {method} batch of epoch {epoch} ({n} images) in {len(faults)} "
            f"attempt(s) ({policy.retries} retries): {why}. Nothing of this batch was recorded or counted "
            "as feedback; fix the oracle and rerun the same command to resume the run")
