"""The simulated evaluator's settings (``EvaluatorConfig``): how it deviates from a perfect person.

The ``evaluator`` section of a run's config (``RunConfig.evaluator``): label flips, the softmax
temperature of HERO's best choice, a fixed score offset, DDPO's reward kind, the noise seed and
D3PO's tie break.  These settings change labels, so they are part of the config hash, unlike the
``OracleCallPolicy`` of ``hero_bench.oracle_calls``.  How each one acts on a label is the
evaluator's business (``hero_bench.feedback``, ``docs/feedback.md``); this module only declares and
validates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hero_bench.errors import ConfigError

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
