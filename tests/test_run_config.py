"""RunConfig's own checks and the CLI's first errors: inputs that would give an undefined or
empty run are refused before anything is loaded or written."""

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


@pytest.mark.parametrize("method, smallest", [("hero", 2), ("ddpo", 1), ("d3po", 2)])
def test_a_budget_that_cannot_buy_one_round_is_an_error(method, smallest):
    with pytest.raises(ConfigError, match=rf"budget {smallest - 1} cannot buy one round of {method} feedback; "
                                          rf"accepted: a budget of at least {smallest} label"):
        build_run_config("smoke", "sanity", method, budget=smallest - 1)
    assert build_run_config("smoke", "sanity", method, budget=smallest).budget == smallest


def test_the_cli_refuses_budget_1_for_hero_in_one_line(capsys, tmp_path):
    from hero_bench.cli import main

    assert main(["train", "--tier", "smoke", "--task", "sanity", "--method", "hero", "--budget", "1",
                 "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "budget 1 cannot buy one round of hero feedback" in err


def test_evaluate_says_a_missing_run_folder_does_not_exist(tmp_path, capsys):
    from hero_bench.cli import main

    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "missing is not a run directory: it does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "empty is not a run directory: config.yaml is missing" in capsys.readouterr().err
