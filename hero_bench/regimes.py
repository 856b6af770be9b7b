"""Named regimes: sets of settings a run can take by name on top of its tier's preset.

An override item ``regime=NAME`` (``hero-bench train --set regime=NAME`` or ``--regime NAME``, an
item of a workflow config's ``set`` or of a sweep variant) stands for the regime's own items, at its
place in the list, so that items after it override them. ``presets.build_run_config`` expands it;
this module imports no torch, so command lines can list the names in their ``--help``.
"""

from __future__ import annotations

from typing import Sequence

from hero_bench.errors import ConfigError

REGIME_KEY = "regime"
"""An override item ``regime=NAME`` (``--set``, a workflow config's ``set`` or sweep variant, or
``hero-bench train --regime NAME``) stands for the named regime's settings, at its place in the list."""

# Noise-influence regimes: how much an image's initial noise z_T decides whether it succeeds, as
# ICC(1) of success over initial noises (`hero-bench noise-influence`; the table per task and η is
# in docs/methods.md, "Noise-influence regimes"). HERO's noise guidance (docs/algorithms.md §4.5)
# can only help where z_T carries the outcome, so the paper's ablations are run in both.
REGIMES: dict[str, dict[str, tuple[str, ...]]] = {
    "toy": {
        # the toy preset itself (η = 1): the zero-terminal-SNR schedule's first step erases z_T and
        # the per-step noise decides (ICC(1) within ±0.05 of 0 on every task)
        "step-noise": (),
        # near-deterministic DDIM: z_T is carried through the chain and decides much of the outcome
        # (ICC(1) 0.32-0.68, >= 0.3 on all 6 designed tasks; at η 0.1 on 3). The noise prediction is
        # re-derived from the clipped x̂0, without which the shipped model breaks below η = 1
        # (docs/methods.md, "Sampling below η = 1 (the scheduler's clip)"). The learning settings stay
        # the preset's: tune-initial-noise.yaml and tune-initial-noise-final.yaml changed none of them
        # (results/published/tune-initial-noise/)
        "initial-noise": ("sampler.eta=0.05", "sampler.use_clipped_model_output=true"),
    },
}


def regime_items(tier: str, name: str) -> tuple[str, ...]:
    """The override items of the named regime of ``tier``; a ConfigError names the accepted ones."""
    regimes = REGIMES.get(tier, {})
    if name not in regimes:
        accepted = ", ".join(regimes) if regimes else f"none (the {tier} tier has no named regimes)"
        raise ConfigError(f"unknown regime {name!r} for the {tier} tier; accepted: {accepted}")
    return regimes[name]


def expand_regimes(tier: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` with every ``regime=NAME`` item replaced by that regime's items, in place, so
    that items after it (a variant's own settings) override the regime's."""
    out: list[str] = []
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if sep and key.strip() == REGIME_KEY:
            out += regime_items(tier, value.strip())
        else:
            out.append(item)
    return out

