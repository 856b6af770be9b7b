"""The run's configuration (``RunConfig``), the tiers, and the names of the files in a run folder.

RUN_DIR layout (docs/architecture.md, "Runs and results"):

    config.yaml                  the resolved RunConfig (written first; a resume must match it)
    ledger.jsonl                 every label, fsync'ed before use (hero_bench.feedback)
    checkpoint.pt                the latest epoch's complete state (atomic)
    lora/epoch_XXXX.safetensors  adapter weights of every evaluated epoch (0 = pretrained)
    train_log.csv                per-epoch losses, diagnostics, counters and timings
    eval.csv                     evaluation rows: success on the task's own prompts from fresh eval noise
                                 (primary) + transfer to its held-out prompts (hero_bench.results.EVAL_COLUMNS)
    DONE.json                    written last: the run is complete

``hero_bench.runner`` trains a run folder, ``hero_bench.reevaluate`` re-evaluates one, and
``hero_bench.presets`` builds the RunConfig of every (tier, method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hero_bench.algorithms import get_algorithm
from hero_bench.algorithms.d3po import D3POConfig
from hero_bench.algorithms.ddpo import DDPOConfig
from hero_bench.algorithms.hero import HeroConfig
from hero_bench.config import from_dict, to_dict
from hero_bench.diffusion.lora import LoraConfig
from hero_bench.diffusion.sampler import SamplerConfig
from hero_bench.errors import ConfigError
from hero_bench.evaluate import EvalConfig
from hero_bench.feedback import EvaluatorConfig

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
LEDGER_FILE = "ledger.jsonl"
EVAL_FILE = "eval.csv"
TRAIN_LOG_FILE = "train_log.csv"
DONE_FILE = "DONE.json"


TIERS = ("smoke", "toy", "paper")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run, composed of the components' own configs.

    Built by ``hero_bench.presets.build_run_config`` from the tier+method preset, then ``--set``
    overrides (unknown keys are errors).  Only the selected method's section (``hero``, ``ddpo`` or
    ``d3po``: its row of hero_bench/methods.py says which) is used (and hashed); the others are kept
    so a resolved config.yaml is complete.
    """

    tier: Literal["smoke", "toy", "paper"] = "toy"
    """Which preset family the run belongs to (recorded in every result row)."""
    task: str = "anomaly"
    """Task name (``hero-bench tasks`` lists them)."""
    method: str = "hero"
    """A name of the method table, hero_bench/methods.py: hero, ddpo, d3po, base, ..."""
    seed: int = 0
    """Run seed: every training draw (prompts, noise, shuffles, network init) derives from it."""
    budget: int = 512
    """Feedback budget: images the evaluator may label (one feedback = one image)."""
    backbone: str = ""
    """Diffusers folder or hub id of the pretrained model; ``hero_bench:REL`` = a folder inside the
    installed package (the shipped ShapesWorld model), so the config does not depend on where the
    checkout lives."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:N, mps."""
    dtype: str = "float32"
    """Weights dtype of the frozen backbone: float32, float16, bfloat16 (LoRA stays float32)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """Sampling (DDIM steps, η, CFG) for training batches and evaluation."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """The trained LoRA adapter on the UNet."""
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    """The simulated human evaluator's noise models."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation schedule and size."""
    hero: HeroConfig = field(default_factory=HeroConfig)
    """HERO's settings (used when method = hero)."""
    ddpo: DDPOConfig = field(default_factory=DDPOConfig)
    """DDPO's settings (used when method = ddpo)."""
    d3po: D3POConfig = field(default_factory=D3POConfig)
    """D3PO's settings (used when method = d3po)."""

    def __post_init__(self) -> None:
        algorithm = get_algorithm(self.method)  # an unknown name: ConfigError naming the accepted ones
        if self.tier not in TIERS:
            raise ConfigError(f"unknown tier {self.tier!r}; accepted: {', '.join(TIERS)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}")
        if self.budget < 0:
            raise ConfigError(f"budget must be a non-negative integer, got {self.budget}")
        if not self.backbone:
            raise ConfigError("backbone must name a diffusers folder or hub id")
        # a budget below the smallest batch the protocol accepts would give a "finished" run of zero
        # epochs: nothing trained, nothing to compare
        if algorithm.trains and self.budget < algorithm.min_batch:
            raise ConfigError(
                f"budget {self.budget} cannot buy one round of {self.method} feedback; accepted: a budget of at "
                f"least {algorithm.min_batch} label(s) for {self.method} (0 only for the base model)"
            )
        # every training method scores its samples by the Gaussian log-density of the DDIM steps,
        # which is undefined (NaN) when eta = 0 makes each step deterministic
        if algorithm.trains and self.sampler.eta == 0:
            raise ConfigError(
                f"sampler.eta=0 cannot train method {self.method!r}: deterministic DDIM steps have no "
                "log-probability; accepted: sampler.eta > 0 (the methods use 1.0)"
            )

    @property
    def run_id(self) -> str:
        return f"{self.tier}/{self.task}/{self.method}/seed{self.seed}"


def load_config_file(path: str | Path, what: str = "config") -> RunConfig:
    """A run's saved, resolved settings (RUN_DIR/config.yaml); a missing, unreadable or malformed
    file is a ConfigError that names ``what`` (e.g. "--config") and the path."""
    path = Path(path)
    accepted = f"accepted: a run's config.yaml (RUN_DIR/{CONFIG_FILE})"
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file; {accepted}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{what} {path}: not valid YAML{at}; {accepted}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: holds {type(data).__name__}, not a mapping of settings; {accepted}")
    return from_dict(RunConfig, data)


def config_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
