"""Named regimes (hero_bench/regimes.py): ``regime=NAME`` stands for the regime's settings, in place."""

from __future__ import annotations

import pytest
import yaml

from hero_bench.cli import main
from hero_bench.config import from_dict
from hero_bench.errors import ConfigError
from hero_bench.presets import build_run_config
from hero_bench.regimes import REGIMES, expand_regimes
from hero_bench.run_config import RunConfig


def test_step_noise_is_the_toy_preset_itself():
    assert build_run_config("toy", overrides=["regime=step-noise"]) == build_run_config("toy")


def test_initial_noise_samples_below_eta_one_with_the_noise_prediction_re_derived():
    preset = build_run_config("toy", method="ddpo")
    cfg = build_run_config("toy", method="ddpo", overrides=["regime=initial-noise"])
    assert cfg.sampler.eta < 1.0 == preset.sampler.eta
    assert cfg.sampler.use_clipped_model_output and not preset.sampler.use_clipped_model_output
    # nothing else changes: the regime is a sampler setting, the learning settings stay the preset's
    assert cfg.ddpo == preset.ddpo and cfg.sampler.steps == preset.sampler.steps


def test_items_after_a_regime_override_it_and_items_before_it_are_overridden():
    after = build_run_config("toy", overrides=["regime=initial-noise", "sampler.eta=0.3"])
    before = build_run_config("toy", overrides=["sampler.eta=0.3", "regime=initial-noise"])
    assert after.sampler.eta == 0.3 and after.sampler.use_clipped_model_output
    assert before.sampler.eta == build_run_config("toy", overrides=["regime=initial-noise"]).sampler.eta


def test_expand_regimes_keeps_other_items_in_order():
    items = expand_regimes("toy", ["seed=3", "regime=initial-noise", "hero.best_ratio=0"])
    assert items == ["seed=3", *REGIMES["toy"]["initial-noise"], "hero.best_ratio=0"]


def test_an_unknown_regime_names_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"unknown regime 'deterministic' for the toy tier; accepted: step-noise, "
                                          r"initial-noise$"):
        build_run_config("toy", overrides=["regime=deterministic"])
    with pytest.raises(ConfigError, match=r"accepted: none \(the smoke tier has no named regimes\)"):
        build_run_config("smoke", overrides=["regime=initial-noise"])


def test_train_regime_flag_comes_before_set(capsys):
    assert main(["train", "--tier", "toy", "--out", "unused", "--print-config", "--regime", "initial-noise",
                 "--set", "sampler.steps=10"]) == 0
    cfg = from_dict(RunConfig, yaml.safe_load(capsys.readouterr().out))
    assert cfg == build_run_config("toy", overrides=["regime=initial-noise", "sampler.steps=10"])
    assert main(["train", "--tier", "toy", "--out", "unused", "--print-config", "--regime", "initial-noise",
                 "--set", "sampler.eta=0.5"]) == 0
    assert from_dict(RunConfig, yaml.safe_load(capsys.readouterr().out)).sampler.eta == 0.5
