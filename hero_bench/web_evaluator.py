"""The evaluator with a person in the loop: the web labelling page takes the oracle's place.

``WebEvaluator`` is ``SimulatedEvaluator`` with its three ``_*_answer`` steps replaced: the checks
of a batch, the replay of a round the ledger holds and the budget check are the scripted
evaluator's own code, and the feedback objects are the same, so the methods, the ledger, the
budget, checkpoints, resume and evaluation run the code path of a scripted run. The only
difference is where a fresh answer comes from: a round not yet in the ledger is saved (``hero_bench.web_rounds``), shown on the page
(``hero_bench.web_server``), and its submission is written to the ledger in one transaction
before the page is told it was accepted. A round the ledger already holds is replayed exactly as
the scripted evaluator replays it, so rerunning the command after a crash, a kill or a closed
browser resumes at the first round nobody labelled.

Each person's label carries ``labeller: "web"`` in the ledger; ``oracle_success`` and
``oracle_score`` stay empty (no oracle was asked: ``hero-bench agreement`` asks it afterwards, on
the saved images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hero_bench.errors import ConfigError
from hero_bench.evaluator_config import EvaluatorConfig
from hero_bench.feedback import (
    D3PO_PAIR, D3PO_SUCCESS, DDPO_REWARD, HERO_BEST, HERO_GOOD, BestImage, D3POFeedback, HeroFeedback,
    SimulatedEvaluator, _best_key, _pair_key,
)
from hero_bench.ledger import FeedbackLedger
from hero_bench.web_rounds import Round, save_round
from hero_bench.web_server import LabellingServer

LABELLER = "web"


def check_web_evaluator_config(config: EvaluatorConfig) -> None:
    """A person labels: the scripted person's noise models and the oracle-score reward do not apply."""
    simulated = {"flip_prob": 0.0, "best_temperature": 0.0, "bias": 0.0, "ddpo_reward": "success",
                 "d3po_tie_break_by_score": False}
    changed = [f"evaluator.{k}={getattr(config, k)!r}" for k, v in simulated.items() if getattr(config, k) != v]
    if changed:
        raise ConfigError(f"{', '.join(changed)} simulate(s) an imperfect or score-reading person; with the web "
                          f"evaluator a real person labels; accepted: the defaults ({', '.join(f'{k}={v!r}' for k, v in simulated.items())})")


class WebEvaluator(SimulatedEvaluator):
    """Asks a person through ``server`` for every round the ledger does not hold yet."""

    def __init__(self, oracle, config: EvaluatorConfig, ledger: FeedbackLedger, seed: int, *,
                 server: LabellingServer, run_dir: str | Path, task: str, **kwargs):
        check_web_evaluator_config(config)
        # the oracle is kept for the evaluation protocol's success metric; labels never ask it
        super().__init__(oracle, config, ledger, seed, task=task, **kwargs)
        self.server = server
        self.run_dir = Path(run_dir)

    def _show(self, method: str, epoch: int, images, prompts, metadata, groups=None,
              current_best: BestImage | None = None):
        """Save the round, wait for the person's valid submission; returns (round, submission)."""
        best = None
        if current_best is not None:
            best = {"id": current_best.image_id, "file": f"{current_best.image_id}.png", "epoch": current_best.epoch}
        rnd = save_round(self.run_dir, method, self.task or "", epoch, images, prompts, metadata, groups, best,
                         self.ledger.feedback_used, self.ledger.budget)
        return rnd, self.server.ask(rnd)

    def _record(self, rnd: Round, write) -> None:
        """``write`` the round's records in one ledger transaction, then release the page."""
        try:
            with self.ledger.transaction():
                write()
        except Exception as exc:
            self.server.refused(rnd, str(exc))
            raise
        self.server.done(rnd)

    def _extra(self, n: int, **per_image) -> list[dict]:
        extra = self._audit(n, None, **per_image)
        for d in extra:
            d["labeller"] = LABELLER
        return extra

    # -- HERO -------------------------------------------------------------------------------
    def _hero_answer(self, images, prompts, metadata, epoch: int, current_best: BestImage | None,
                     ids: list[str]) -> HeroFeedback:
        rnd, answer = self._show("hero", epoch, images, prompts, metadata, current_best=current_best)
        good = answer.good
        if answer.best is None:
            best_index, best = None, current_best
        else:
            best_index = ids.index(answer.best)
            # a person gives no score; 0 marks the field as unused (the scripted evaluator's
            # softmax pick is the only reader, and it never runs in a web run)
            best = BestImage(answer.best, int(epoch), 0.0)

        def write():
            self.ledger.record_labels(epoch, ids, HERO_GOOD, good.tolist(), self.evaluator_seed,
                                      extra=self._extra(len(ids)))
            self.ledger.record_query(
                epoch, HERO_BEST, _best_key(epoch),
                {"best_index": best_index, "best": best.to_dict(), "fallback": None,
                 "previous_best": None if current_best is None else current_best.to_dict()},
                self.evaluator_seed,
                extra={"labeller": LABELLER, "evaluator_config": self.config_hash},
            )
        self._record(rnd, write)
        return HeroFeedback(good=good, best_index=best_index, best=best, fallback=None)

    # -- D3PO -------------------------------------------------------------------------------
    def _d3po_answer(self, images, prompts, metadata, groups: list[int], epoch: int, ids: list[str],
                     all_pairs: list[tuple[int, int]]) -> D3POFeedback:
        rnd, answer = self._show("d3po", epoch, images, prompts, metadata, groups=groups)
        success = answer.good
        # the pairs follow from the classes within each group, as in the scripted protocol
        pairs = [(a, b) if success[a] else (b, a) for a, b in all_pairs if success[a] != success[b]]

        def write():
            self.ledger.record_labels(epoch, ids, D3PO_SUCCESS, success.tolist(), self.evaluator_seed,
                                      extra=self._extra(len(ids), group=groups))
            for p, o in pairs:
                self.ledger.record_query(epoch, D3PO_PAIR, _pair_key(epoch, min(p, o), max(p, o)),
                                         {"preferred": p, "other": o, "by": "class"}, self.evaluator_seed)
        self._record(rnd, write)
        return D3POFeedback(success=success, pairs=pairs)

    # -- DDPO -------------------------------------------------------------------------------
    def _ddpo_answer(self, images, prompts, metadata, epoch: int, ids: list[str]) -> np.ndarray:
        rnd, answer = self._show("ddpo", epoch, images, prompts, metadata)
        rewards = answer.good.astype(np.float64)
        self._record(rnd, lambda: self.ledger.record_labels(epoch, ids, DDPO_REWARD, rewards.tolist(),
                                                            self.evaluator_seed, extra=self._extra(len(ids))))
        return rewards
