"""The finetuning methods compared by the benchmark, by name.

Each module reads top to bottom (sample → label → update) and trains through the shared kernels in
``kernels.py``.  ``docs/methods.md`` describes every method and config field.  Which methods exist,
and which class implements each, is the table of ``hero_bench/methods.py``.
"""

from __future__ import annotations

import importlib

from hero_bench.algorithms.base import Base, Method
from hero_bench.algorithms.d3po import D3PO, D3POConfig
from hero_bench.algorithms.ddpo import DDPO, DDPOConfig
from hero_bench.algorithms.hero import Hero, HeroConfig
from hero_bench.algorithms.kernels import PPOConfig
from hero_bench.methods import get_method


def get_algorithm(name: str) -> type[Method]:
    """The method class called ``name``; ConfigError naming the accepted names otherwise."""
    module, _, cls = get_method(name).implementation.partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["Base", "D3PO", "D3POConfig", "DDPO", "DDPOConfig", "Hero", "HeroConfig", "Method", "PPOConfig",
           "get_algorithm"]
