"""RunConfig's own checks: inputs that would give an undefined or empty run are refused up front."""

from __future__ import annotations

import pytest

from hero_bench.errors import ConfigError
from hero_bench.presets import build_run_config


@pytest.mark.parametrize("method", ["hero", "ddpo", "d3po"])
def test_a_training_method_refuses_deterministic_sampling(method):
    with pytest.raises(ConfigError, match=r"sampler.eta=0 cannot train method .*accepted: sampler.eta > 0"):
        build_run_config("smoke", "sanity", method, overrides=["sampler.eta=0"])
    # any positive eta trains (the DDIM step keeps a variance)
    assert build_run_config("smoke", "sanity", method, overrides=["sampler.eta=0.5"]).sampler.eta == 0.5


def test_the_base_model_may_be_evaluated_deterministically():
    assert build_run_config("smoke", "sanity", "base", overrides=["sampler.eta=0"]).sampler.eta == 0.0
