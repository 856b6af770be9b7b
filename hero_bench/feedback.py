"""The simulated evaluator: the label protocols of HERO, DDPO and D3PO.

The evaluator turns an oracle's per-image ``(success, score)`` into exactly what each method's
protocol asks of a human (``docs/feedback.md``; ``docs/algorithms.md`` §2, §3.2, §4.2):

* HERO: good/bad labels for every image plus a best image (first batch: best of the batch; later:
  best among this batch's good images and the current best, which may stay);
* D3PO: a per-image class, and a preference for every pair inside a group (shared z_T and prompt)
  whose classes differ; ties are skipped;
* DDPO: a scalar reward per image.

Optional noise models (label flips, a softmax best choice, a fixed score offset; their settings
are ``EvaluatorConfig``, ``hero_bench.evaluator_config``) make the evaluator behave like an
imperfect person.  All noise comes from a numpy Generator derived from
``(noise_seed, run seed, epoch, method, purpose)``, never from a running stream, so a resumed run
that replays an epoch from the ledger draws exactly what a fresh run draws afterwards.

Every answer is written to the run's ledger (``hero_bench.ledger``: storage, crash safety, the
budget) before it is handed back.

A faulty oracle (it raises, returns a non-finite score or the wrong number of results, or hangs) is
asked again under an ``OracleCallPolicy`` (``hero_bench.oracle_calls``: time limit, retries,
back-off); only a valid answer is used, so a batch that never gets one raises ``OracleFailedError``
with nothing recorded.

The evaluator's callers build its config, its ledger and its oracle policy, so ``EvaluatorConfig``,
``OracleCallPolicy``, ``FeedbackLedger``, ``LedgerError`` and ``image_id`` are importable from here
too.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hero_bench.config import config_hash
from hero_bench.errors import ConfigError
from hero_bench.evaluator_config import EvaluatorConfig
from hero_bench.ledger import FeedbackLedger, LedgerError, image_id
from hero_bench.oracle_calls import OracleCallPolicy, ask_once, ask_until_valid

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
        """One attempt at the oracle's answer (``oracle_calls.ask_once``), counted in ``oracle_calls``.

        ``self.oracle`` is read at each attempt, so a wrapper set on the evaluator (the profiler's
        timed oracle) sees every call."""
        self.oracle_calls += 1
        return ask_once(self.oracle, images, prompts, metadata, self.policy.timeout_s)

    def _ask_until_valid(self, images, prompts, metadata, method: str, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The oracle's valid answer for one batch, asking up to ``policy.retries + 1`` times with
        back-off; ``OracleFailedError`` when no attempt gives one.

        Nothing is recorded and no noise is drawn before the answer is valid (the protocols draw
        from fresh per-epoch generators after this returns), so a batch answered at the third
        attempt labels exactly like one answered at the first, and a batch that fails leaves the
        ledger as it was."""
        return ask_until_valid(lambda: self._ask(images, prompts, metadata), self.policy, oracle=self.oracle,
                               task=self.task, method=method, epoch=epoch, n=len(images))

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
        return self._hero_answer(images, prompts, metadata, epoch, current_best, ids)

    def _hero_answer(self, images, prompts, metadata, epoch: int, current_best: BestImage | None,
                     ids: list[str]) -> HeroFeedback:
        """A fresh answer for a batch the ledger does not hold, recorded before it is returned
        (the web evaluator overrides the ``_*_answer`` steps: a person answers instead)."""
        n = len(ids)
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
        return self._d3po_answer(images, prompts, metadata, groups, epoch, ids, all_pairs)

    def _d3po_answer(self, images, prompts, metadata, groups: list[int], epoch: int, ids: list[str],
                     all_pairs: list[tuple[int, int]]) -> D3POFeedback:
        """A fresh answer: classes, and a preference for every pair of ``all_pairs`` (the pairs
        within a group) whose classes differ; recorded before it is returned."""
        n = len(ids)
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
        return self._ddpo_answer(images, prompts, metadata, epoch, ids)

    def _ddpo_answer(self, images, prompts, metadata, epoch: int, ids: list[str]) -> np.ndarray:
        """A fresh answer (one reward per image), recorded before it is returned."""
        n = len(ids)
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
