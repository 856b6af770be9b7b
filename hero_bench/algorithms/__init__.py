"""The finetuning methods compared by the benchmark, by name.

Each module reads top to bottom (sample → label → update) and trains through the shared kernels in
``kernels.py``.  ``docs/methods.md`` describes every method and config field.
"""

from __future__ import annotations

from hero_bench.algorithms.base import Base, Method
from hero_bench.algorithms.d3po import D3PO, D3POConfig
from hero_bench.algorithms.ddpo import DDPO, DDPOConfig
from hero_bench.algorithms.hero import Hero, HeroConfig
from hero_bench.algorithms.kernels import PPOConfig
from hero_bench.errors import ConfigError

ALGORITHMS: dict[str, type[Method]] = {"hero": Hero, "ddpo": DDPO, "d3po": D3PO, "base": Base}


def get_algorithm(name: str) -> type[Method]:
    """The method class called ``name``; ConfigError naming the accepted names otherwise."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; accepted: {', '.join(ALGORITHMS)}") from None


__all__ = ["ALGORITHMS", "Base", "D3PO", "D3POConfig", "DDPO", "DDPOConfig", "Hero", "HeroConfig", "Method",
           "PPOConfig", "get_algorithm"]
