"""The simulated evaluator: the label protocols of HERO, DDPO and D3PO.

The evaluator turns an oracle's per-image ``(success, score)`` into exactly what each method's
protocol asks of a human (``docs/feedback.md``; ``docs/algorithms.md`` §2, §3.2, §4.2):

* HERO: good/bad labels for every image plus a best image (first batch: best of the batch; later:
  best among this batch's good images and the current best, which may stay);
* D3PO: a per-image class, and a preference for every pair inside a group (shared z_T and prompt)
  whose classes differ; ties are skipped;
* DDPO: a scalar reward per image.

Optional noise models (label flips, a softmax best choice, a fixed score offset) make the
evaluator behave like an imperfect person.  All noise comes from a numpy Generator derived from
``(noise_seed, run seed, epoch, method, purpose)``, never from a running stream, so a resumed run
that replays an epoch from the ledger draws exactly what a fresh run draws afterwards.

Every answer is written to the run's ledger (``hero_bench.ledger``: storage, crash safety, the
budget) before it is handed back; ``FeedbackLedger``, ``LedgerError`` and ``image_id`` are
importable from here too, as the evaluator's callers build the ledger it writes to.

A faulty oracle (it raises, returns a non-finite score or the wrong number of results, or hangs) is
asked again under an ``OracleCallPolicy`` (time limit, retries, back-off); only a valid answer is
used, so a batch that never gets one raises ``OracleFailedError`` with nothing recorded.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from hero_bench.config import config_hash
from hero_bench.errors import ConfigError, OracleFailedError
from hero_bench.ledger import FeedbackLedger, LedgerError, image_id

# Label kinds (one record per image, counted as feedback) and query kinds (counted as queries).
HERO_GOOD = "hero_good"
HERO_BEST = "hero_best"
D3PO_SUCCESS = "d3po_success"
D3PO_PAIR = "d3po_pair"
DDPO_REWARD = "ddpo_reward"

FALLBACK_NO_GOOD = "no_good"
FALLBACK_ALL_GOOD = "all_good"


def _pair_key(epoch: int, a: int, b: int) -> str:
    return f"{image_id(epoch, a)}/{image_id(epoch, b)}"


def _best_key(epoch: int) -> str:
    return f"e{epoch:04d}"


# -- Config ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluatorConfig:
    """How the scripted evaluator deviates from a perfect one (all defaults: perfect)."""

    flip_prob: float = 0.0
    """Probability, independently per image, that the evaluator's binary label is the opposite of
    the oracle's success: HERO good/bad, D3PO class, DDPO 0/1 reward (not the "score" reward).
    0 = never, 1 = always."""

    best_temperature: float = 0.0
    """How HERO's best image is chosen among the candidates. 0 = argmax of the (biased) oracle
    score, ties to the current best, then to the lowest batch index; T > 0 = a random choice with
    probabilities softmax(score / T)."""

    bias: float = 0.0
    """Constant added to every oracle score the evaluator sees, before any choice. It shifts the
    recorded scores, ``BestImage.score`` and the DDPO "score" reward by exactly ``bias``. Choices
    within one evaluator are shift-invariant (argmax, softmax, pairwise comparisons), so it only
    changes a choice when a score seen under a different bias is compared, i.e. a HERO current best
    handed in from another evaluator or from a run before the bias changed."""

    ddpo_reward: Literal["success", "score"] = "success"
    """DDPO's reward: "success" = the evaluator's 0/1 label (a human-feasible signal, with flip
    noise); "score" = the continuous oracle score plus bias. "score" is NOT something a human can
    give per image at scale; it is the reward-model upper bound, not a human-feedback baseline."""

    noise_seed: int = 0
    """Mixed with the run seed to seed the evaluator's own random draws (non-negative)."""

    d3po_tie_break_by_score: bool = False
    """D3PO: when two images of a group have the same class, prefer the higher oracle score
    instead of skipping the pair (equal scores are still skipped). Default False = the paper's
    protocol, where same-class pairs are ties and form no preference."""

    def __post_init__(self) -> None:
        if not (isinstance(self.flip_prob, (int, float)) and 0.0 <= self.flip_prob <= 1.0):
            raise ConfigError(f"evaluator.flip_prob must be a probability in [0, 1], got {self.flip_prob!r}")
        if not (isinstance(self.best_temperature, (int, float)) and math.isfinite(self.best_temperature)
                and self.best_temperature >= 0.0):
            raise ConfigError(
                f"evaluator.best_temperature must be a finite number >= 0 (0 = argmax), got {self.best_temperature!r}"
            )
        if not (isinstance(self.bias, (int, float)) and math.isfinite(self.bias)):
            raise ConfigError(f"evaluator.bias must be a finite number, got {self.bias!r}")
        if self.ddpo_reward not in ("success", "score"):
            raise ConfigError(
                f"evaluator.ddpo_reward {self.ddpo_reward!r} is not one of the accepted values ['success', 'score']"
            )
        if isinstance(self.noise_seed, bool) or not isinstance(self.noise_seed, int) or self.noise_seed < 0:
            raise ConfigError(f"evaluator.noise_seed must be a non-negative integer, got {self.noise_seed!r}")
        if not isinstance(self.d3po_tie_break_by_score, bool):
            raise ConfigError(
                f"evaluator.d3po_tie_break_by_score must be true or false, got {self.d3po_tie_break_by_score!r}"
            )


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


# -- Feedback results --------------------------------------------------------------------------


@dataclass
class BestImage:
    """The evaluator's current best (may date from an earlier epoch)."""

    image_id: str
    epoch: int
    score: float
    """The oracle score the evaluator saw for it (including ``EvaluatorConfig.bias``)."""

    def to_dict(self) -> dict:
        return {"image_id": self.image_id, "epoch": int(self.epoch), "score": float(self.score)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BestImage":
        return cls(image_id=str(d["image_id"]), epoch=int(d["epoch"]), score=float(d["score"]))


@dataclass
class HeroFeedback:
    good: np.ndarray
    """bool [N]; at least one True and one False (see ``fallback``). Includes the new best."""
    best_index: int | None
    """Batch index of the NEW best, or None when the current best stays."""
    best: BestImage
    """The best after this round."""
    fallback: str | None
    """"no_good" (no image was labelled good; one was forced good), "all_good" (every image was
    good; the lowest-scoring non-best one was labelled bad) or None. For logging."""
    replayed: bool = False
    """True when the labels came from the ledger (resume) instead of the oracle."""


@dataclass
class D3POFeedback:
    success: np.ndarray
    """bool [N], per-image class as the evaluator labelled it."""
    pairs: list[tuple[int, int]] = field(default_factory=list)
    """(preferred, other) batch indices; only within a group; ties skipped."""
    replayed: bool = False
    """True when the labels came from the ledger (resume) instead of the oracle."""


# -- Evaluator ---------------------------------------------------------------------------------


def softmax_choice(scores: Sequence[float], temperature: float, rng: np.random.Generator) -> int:
    """Index chosen from ``scores``: argmax (first maximum) if ``temperature`` is 0, else a draw
    with probabilities softmax(scores / temperature). Always consumes exactly one uniform draw, so
    the stream does not depend on the temperature."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("softmax_choice needs a non-empty 1-D list of scores")
    u = rng.random()
    if temperature == 0:
        return int(np.argmax(s))
    z = np.exp((s - s.max()) / temperature)  # shift by the max: exp never overflows
    cdf = np.cumsum(z)
    # side="right" never lands on an entry whose probability underflowed to exactly zero.
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), s.size - 1))


# -- Calling the oracle ------------------------------------------------------------------------

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


@dataclass
class _HeroChoice:
    best_index: int | None
    best: BestImage
    fallback: str | None
    candidates: list[str]


def _hero_best(good: np.ndarray, seen: np.ndarray, ids: list[str], epoch: int, current_best: BestImage | None,
               temperature: float, rng: np.random.Generator) -> _HeroChoice:
    """HERO's best pick among ``seen`` scores; fixes ``good`` in place so that it holds at least
    one good and one bad image (the fallbacks) and includes a new best."""
    fallback = None
    if current_best is None:
        # First batch: the best of the whole batch, added to the positives if not listed.
        b = softmax_choice(seen, temperature, rng)
        if not good.any():
            fallback = FALLBACK_NO_GOOD
        good[b] = True
        if good.all():
            fallback = FALLBACK_ALL_GOOD
            order = [int(i) for i in np.argsort(seen, kind="stable") if i != b]
            good[order[0]] = False
        return _HeroChoice(int(b), BestImage(ids[b], epoch, float(seen[b])), fallback, list(ids))
    if not good.any():
        fallback = FALLBACK_NO_GOOD
        good[int(np.argmax(seen))] = True
    elif good.all():
        fallback = FALLBACK_ALL_GOOD
        good[int(np.argmin(seen))] = False
    good_idx = np.flatnonzero(good)
    # The current best comes first so that an exact tie keeps it (a new image must be better).
    cand_scores = [float(current_best.score)] + [float(seen[i]) for i in good_idx]
    candidates = [current_best.image_id] + [ids[i] for i in good_idx]
    c = softmax_choice(cand_scores, temperature, rng)
    if c == 0:
        return _HeroChoice(None, current_best, fallback, candidates)
    # Map the candidate index back to a BATCH index (docs/algorithms.md §4.12.1).
    best_index = int(good_idx[c - 1])
    return _HeroChoice(best_index, BestImage(ids[best_index], epoch, float(seen[best_index])), fallback, candidates)


class SimulatedEvaluator:
    """A scripted person: asks ``oracle`` about each image and answers the protocol of each method.

    Every answer goes through ``ledger`` first; a call whose image ids are already in the ledger
    replays the recorded answer without calling the oracle or counting anything."""

    def __init__(self, oracle, config: EvaluatorConfig, ledger: FeedbackLedger, seed: int, *,
                 policy: OracleCallPolicy | None = None, task: str | None = None):
        """``policy``: how the oracle is called (time limit, retries, back-off; default
        ``OracleCallPolicy()``); ``task``: the task's name, for the error of a failed oracle."""
        if not isinstance(config, EvaluatorConfig):
            raise TypeError(f"config must be an EvaluatorConfig, got {type(config).__name__}")
        if policy is not None and not isinstance(policy, OracleCallPolicy):
            raise TypeError(f"policy must be an OracleCallPolicy, got {type(policy).__name__}")
        self.policy = OracleCallPolicy() if policy is None else policy
        self.task = task
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"run seed must be a non-negative integer, got {seed!r}")
        self.oracle = oracle
        self.config = config
        self.ledger = ledger
        self.seed = int(seed)
        # One 64-bit number identifying this evaluator's randomness; recorded with every label.
        self.evaluator_seed = int(
            np.random.SeedSequence([config.noise_seed, self.seed]).generate_state(1, np.uint64)[0]
        )
        self.config_hash = config_hash(config)
        self.oracle_calls = 0

    # -- helpers ----------------------------------------------------------------------------
    def _rng(self, epoch: int, method: str, purpose: str) -> np.random.Generator:
        """Fresh stream per (evaluator seed, epoch, method, purpose): replay needs no stream state,
        and changing one noise model (e.g. the temperature) leaves the other draws unchanged."""
        key = (int(epoch), zlib.crc32(method.encode()), zlib.crc32(purpose.encode()))
        return np.random.default_rng(np.random.SeedSequence(self.evaluator_seed, spawn_key=key))

    @staticmethod
    def _check_batch(images, prompts, metadata, epoch: int, min_n: int, method: str) -> int:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"{method}: epoch must be a non-negative integer, got {epoch!r}")
        n = len(images)
        if len(prompts) != n or len(metadata) != n:
            raise ValueError(f"{method}: {n} images but {len(prompts)} prompts and {len(metadata)} metadata entries")
        if n < min_n:
            raise ValueError(
                f"{method} feedback needs at least {min_n} image(s) per batch, got {n}"
                + ("; HERO must be able to label one good and one bad image" if min_n > 1 else "")
            )
        return n

    def _ask(self, images, prompts, metadata) -> tuple[np.ndarray, np.ndarray]:
        """One attempt: the oracle's (success, score) per image, or ``_BadAnswer`` saying why the
        answer cannot be used (the oracle raised, ran past the time limit, or returned the wrong
        number of results, a malformed result or a non-finite score)."""
        n = len(images)
        self.oracle_calls += 1
        try:
            results = list(_call_with_timeout(lambda: self.oracle(images, prompts, metadata), self.policy.timeout_s))
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
            if not isinstance(ok, (bool, np.bool_)) or isinstance(x, bool) or not isinstance(x, numbers.Real):
                raise _BadAnswer(f"returned a malformed result for image {i} (not an OracleResult with a "
                                 f"true/false success and a numeric score: {type(r).__name__})")
            success[i], score[i] = bool(ok), float(x)
        bad = np.flatnonzero(~np.isfinite(score))
        if bad.size:
            raise _BadAnswer(f"returned the non-finite score {score[bad[0]]} for image(s) {bad.tolist()}")
        return success, score

    def _ask_until_valid(self, images, prompts, metadata, method: str, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The oracle's valid answer for one batch, asking up to ``policy.retries + 1`` times with
        back-off; ``OracleFailedError`` when no attempt gives one.

        Nothing is recorded and no noise is drawn before the answer is valid (the protocols draw
        from fresh per-epoch generators after this returns), so a batch answered at the third
        attempt labels exactly like one answered at the first, and a batch that fails leaves the
        ledger as it was."""
        faults: list[_BadAnswer] = []
        for attempt in range(self.policy.retries + 1):
            if attempt:
                _sleep(self.policy.delay_before(attempt))
            try:
                return self._ask(images, prompts, metadata)
            except _BadAnswer as fault:
                faults.append(fault)
        raise OracleFailedError(self._failure_line(method, epoch, len(images), [str(f) for f in faults])) \
            from faults[-1]

    def _failure_line(self, method: str, epoch: int, n: int, faults: list[str]) -> str:
        """One line: the task, the oracle, the batch, why each attempt failed, and what to do."""
        name = getattr(self.oracle, "name", type(self.oracle).__name__)
        version = getattr(self.oracle, "version", None)
        oracle = f"oracle {name}" + (f" (version {version})" if version else "")
        where = f"task {self.task}, {oracle}" if self.task else oracle
        if len(set(faults)) == 1:
            why = f"each time it {faults[0]}"
        else:
            why = "; ".join(f"attempt {i} {f}" for i, f in enumerate(faults, 1))
        return (f"{where}: no valid answer for the {method} batch of epoch {epoch} ({n} images) in {len(faults)} "
                f"attempt(s) ({self.policy.retries} retries): {why}. Nothing of this batch was recorded or counted "
                "as feedback; fix the oracle and rerun the same command to resume the run")

    def _flips(self, epoch: int, method: str, n: int) -> np.ndarray:
        # Always draw n uniforms: p=0 flips nothing (u < 0 never), p=1 flips everything (u < 1).
        return self._rng(epoch, method, "flip").random(n) < self.config.flip_prob

    def _replay_labels(self, kind: str, epoch: int, ids: list[str]) -> list[dict] | None:
        """The recorded labels of this call, None if it was never asked, LedgerError if the ledger
        holds a different call for this epoch."""
        recs = [self.ledger.lookup(kind, i) for i in ids]
        found = sum(r is not None for r in recs)
        recorded = self.ledger.count(kind, epoch)
        if found == 0 and recorded == 0:
            return None
        if found != len(ids) or recorded != len(ids):
            raise LedgerError(
                f"ledger {self.ledger.path} holds {recorded} {kind!r} labels for epoch {epoch}, but this call "
                f"has {len(ids)} images; a resumed run must rebuild the same batch (size it with "
                "budget - ledger.used_before(epoch))"
            )
        self._check_provenance(recs[0], kind, epoch)
        return recs

    def _check_provenance(self, rec: dict, kind: str, epoch: int) -> None:
        if rec["evaluator_seed"] != self.evaluator_seed or rec.get("extra", {}).get("evaluator_config") not in (
            None, self.config_hash
        ):
            raise LedgerError(
                f"ledger {self.ledger.path}: the {kind!r} labels of epoch {epoch} were given by a different "
                "evaluator (seed or evaluator config changed); resume with the original seed and config"
            )

    def _audit(self, n: int, flips: np.ndarray | None, **per_image) -> list[dict]:
        out = []
        for i in range(n):
            d: dict[str, Any] = {"evaluator_config": self.config_hash}
            if flips is not None:
                d["flipped"] = bool(flips[i])
            for k, v in per_image.items():
                d[k] = v[i]
            out.append(d)
        return out

    # -- HERO -------------------------------------------------------------------------------
    def hero(self, images, prompts, metadata, epoch: int, current_best: BestImage | None) -> HeroFeedback:
        """HERO's positive-and-best feedback (docs/algorithms.md §4.2) for one batch; N labels + one best query."""
        n = self._check_batch(images, prompts, metadata, epoch, 2, "HERO")
        ids = [image_id(epoch, i) for i in range(n)]
        recs = self._replay_labels(HERO_GOOD, epoch, ids)
        if recs is not None:
            return self._hero_replay(recs, epoch, current_best)

        self.ledger.check_budget(n)  # before the oracle is asked
        success, score = self._ask_until_valid(images, prompts, metadata, "HERO", epoch)
        seen = score + self.config.bias
        flips = self._flips(epoch, "hero", n)
        good = success ^ flips
        choice = _hero_best(good, seen, ids, int(epoch), current_best, self.config.best_temperature,
                            self._rng(epoch, "hero", "best"))
        with self.ledger.transaction():
            self.ledger.record_labels(
                epoch, ids, HERO_GOOD, good.tolist(), self.evaluator_seed,
                oracle_successes=success, oracle_scores=score, extra=self._audit(n, flips),
            )
            self.ledger.record_query(
                epoch, HERO_BEST, _best_key(epoch),
                {"best_index": choice.best_index, "best": choice.best.to_dict(), "fallback": choice.fallback,
                 "previous_best": None if current_best is None else current_best.to_dict()},
                self.evaluator_seed,
                extra={"candidates": choice.candidates, "temperature": self.config.best_temperature,
                       "evaluator_config": self.config_hash},
            )
        return HeroFeedback(good=good, best_index=choice.best_index, best=choice.best, fallback=choice.fallback)

    def _hero_replay(self, recs: list[dict], epoch: int, current_best: BestImage | None) -> HeroFeedback:
        """The recorded answer of an epoch, after checking it was given against the same current best."""
        q = self.ledger.lookup(HERO_BEST, _best_key(epoch))
        if q is None:
            raise LedgerError(f"ledger {self.ledger.path} has HERO labels for epoch {epoch} but no best pick")
        v = q["value"]
        prev = v["previous_best"]
        if (prev is None) != (current_best is None) or (
            prev is not None and prev["image_id"] != current_best.image_id
        ):
            raise LedgerError(
                f"epoch {epoch} was labelled with current best {prev and prev['image_id']}, but the resumed "
                f"run passes {current_best and current_best.image_id}; the checkpoint and ledger disagree"
            )
        good = np.array([bool(r["value"]) for r in recs], dtype=bool)
        return HeroFeedback(good=good, best_index=v["best_index"], best=BestImage.from_dict(v["best"]),
                            fallback=v["fallback"], replayed=True)

    # -- D3PO -------------------------------------------------------------------------------
    def d3po(self, images, prompts, metadata, groups: Sequence[int], epoch: int) -> D3POFeedback:
        """D3PO's per-image class and within-group preferences (docs/algorithms.md §3.2); N labels + one query per pair."""
        n = self._check_batch(images, prompts, metadata, epoch, 1, "D3PO")
        if len(groups) != n:
            raise ValueError(f"D3PO: {len(groups)} group ids for {n} images")
        groups = [int(g) for g in groups]
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)  # dict keeps first-appearance order: deterministic pairs
        for g, idx in members.items():
            if any(prompts[i] != prompts[idx[0]] for i in idx):
                raise ValueError(f"D3PO: images of group {g} have different prompts; a group shares z_T and prompt")
        ids = [image_id(epoch, i) for i in range(n)]
        all_pairs = [p for idx in members.values() for p in itertools.combinations(idx, 2)]

        recs = self._replay_labels(D3PO_SUCCESS, epoch, ids)
        if recs is not None:
            if [r.get("extra", {}).get("group") for r in recs] != groups:
                raise LedgerError(f"epoch {epoch} was labelled with a different D3PO group layout")
            success = np.array([bool(r["value"]) for r in recs], dtype=bool)
            pairs = []
            for a, b in all_pairs:
                q = self.ledger.lookup(D3PO_PAIR, _pair_key(epoch, a, b))
                if q is not None:
                    pairs.append((int(q["value"]["preferred"]), int(q["value"]["other"])))
            if len(pairs) != self.ledger.count(D3PO_PAIR, epoch):
                raise LedgerError(f"ledger {self.ledger.path} has D3PO pairs for epoch {epoch} outside this group layout")
            return D3POFeedback(success=success, pairs=pairs, replayed=True)

        self.ledger.check_budget(n)  # before the oracle is asked
        success_oracle, score = self._ask_until_valid(images, prompts, metadata, "D3PO", epoch)
        seen = score + self.config.bias
        flips = self._flips(epoch, "d3po", n)
        success = success_oracle ^ flips
        pairs = []
        how = []
        for a, b in all_pairs:
            if success[a] != success[b]:
                pairs.append((a, b) if success[a] else (b, a))
                how.append("class")
            elif self.config.d3po_tie_break_by_score and seen[a] != seen[b]:
                pairs.append((a, b) if seen[a] > seen[b] else (b, a))
                how.append("score")
        with self.ledger.transaction():
            self.ledger.record_labels(
                epoch, ids, D3PO_SUCCESS, success.tolist(), self.evaluator_seed,
                oracle_successes=success_oracle, oracle_scores=score,
                extra=self._audit(n, flips, group=groups),
            )
            for (p, o), by in zip(pairs, how):
                self.ledger.record_query(
                    epoch, D3PO_PAIR, _pair_key(epoch, min(p, o), max(p, o)),
                    {"preferred": p, "other": o, "by": by}, self.evaluator_seed,
                )
        return D3POFeedback(success=success, pairs=pairs)

    # -- DDPO -------------------------------------------------------------------------------
    def ddpo(self, images, prompts, metadata, epoch: int) -> np.ndarray:
        """DDPO's per-image reward, float [N]: the 0/1 label (with flip noise) or, with
        ``ddpo_reward="score"``, the oracle score plus bias (not a human-feasible signal)."""
        n = self._check_batch(images, prompts, metadata, epoch, 1, "DDPO")
        ids = [image_id(epoch, i) for i in range(n)]
        recs = self._replay_labels(DDPO_REWARD, epoch, ids)
        if recs is not None:
            return np.array([float(r["value"]) for r in recs], dtype=np.float64)

        self.ledger.check_budget(n)  # before the oracle is asked
        success, score = self._ask_until_valid(images, prompts, metadata, "DDPO", epoch)
        if self.config.ddpo_reward == "success":
            flips = self._flips(epoch, "ddpo", n)
            rewards = (success ^ flips).astype(np.float64)
        else:
            flips = None
            rewards = score + self.config.bias
        self.ledger.record_labels(
            epoch, ids, DDPO_REWARD, rewards.tolist(), self.evaluator_seed,
            oracle_successes=success, oracle_scores=score, extra=self._audit(n, flips),
        )
        return rewards
