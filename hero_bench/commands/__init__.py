"""The subcommands of ``hero-bench`` (one module each, listed in ``hero_bench.cli.COMMANDS``) and
what they share."""

from __future__ import annotations

from hero_bench.errors import ConfigError
from hero_bench.regimes import REGIMES


def set_threads(threads: int | None) -> None:
    """Apply a command's ``--threads``: torch's CPU thread count for this process (None = torch's
    choice).  One place, so every command refuses a bad count with the same message."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch  # deferred: `hero-bench --help` and the light commands must not import torch

    torch.set_num_threads(threads)


CLIPPED_MODEL_OUTPUT_HELP = (
    "re-derive the noise prediction from the clipped x0 in every DDIM step (diffusers' "
    "use_clipped_model_output=True); sampling below eta 1 needs it with a scheduler that clips x0, as the "
    "shipped ShapesWorld model's does")
"""Help of ``--use-clipped-model-output``, which base-rates and noise-influence share."""


def add_regime_argument(parser, tier_word: str = "the tier's") -> None:
    """``--regime NAME``: a named regime's settings on top of the preset (hero_bench/regimes.py)."""
    names = sorted({name for regimes in REGIMES.values() for name in regimes})
    parser.add_argument("--regime", default=None, metavar="NAME",
                        help=f"take a named regime's settings on top of {tier_word} preset (toy: {', '.join(names)}; "
                             "step-noise is the preset itself, initial-noise samples near-deterministically so "
                             "that the initial noise decides most outcomes; docs/methods.md, \"Noise-influence "
                             "regimes\"); the same as --set regime=NAME first")
