"""`hero-bench train --config RUN/config.yaml`: a run made again from its own saved settings.

Published runs keep their resolved settings in config.yaml; a later change of a preset changes what
the same command line (or a sweep variant that does not name the changed field) trains, but not what
--config trains.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from conftest import finished_micro_run, micro_train_args
from hero_bench import presets
from hero_bench.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def preset_args(backbone, out):
    """A micro smoke-tier DDPO run from the preset and flags: two epochs of 4 images, 2 sampling steps."""
    return micro_train_args(backbone, out, method="ddpo", budget=8)


@pytest.fixture
def finished(tmp_path, tiny_backbone_dir):
    """A finished micro run in tmp_path/run, made from the preset and flags."""
    return finished_micro_run(tmp_path / "run", tiny_backbone_dir, method="ddpo", budget=8)


def printed_config(args, capsys) -> dict:
    capsys.readouterr()
    assert main(args + ["--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_run_trained_again_from_its_config_gives_the_same_results(finished, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(finished / "config.yaml"), "--out", str(again), "--quiet"]) == 0
    assert (again / "config.yaml").read_text() == (finished / "config.yaml").read_text()
    # one thread, one machine: the code guarantees bitwise equal runs for equal configs
    assert (again / "eval.csv").read_bytes() == (finished / "eval.csv").read_bytes()
    last = sorted(p.name for p in (finished / "lora").iterdir())[-1]
    assert (again / "lora" / last).read_bytes() == (finished / "lora" / last).read_bytes()


def test_a_preset_changed_since_does_not_change_what_the_config_trains(finished, tiny_backbone_dir, tmp_path,
                                                                        monkeypatch, capsys):
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    smoke = presets.PRESETS["smoke"]

    def changed_preset(method, task):  # a later preset: another DDPO learning rate
        cfg = smoke(method, task)
        return replace(cfg, ddpo=replace(cfg.ddpo, ppo=replace(cfg.ddpo.ppo, lr=cfg.ddpo.ppo.lr * 10)))

    monkeypatch.setitem(presets.PRESETS, "smoke", changed_preset)
    from_flags = printed_config(preset_args(tiny_backbone_dir, tmp_path / "x"), capsys)
    assert from_flags["ddpo"]["ppo"]["lr"] == pytest.approx(saved["ddpo"]["ppo"]["lr"] * 10)
    from_file = printed_config(["train", "--config", str(finished / "config.yaml"), "--out", "unused"], capsys)
    assert from_file == saved


def test_set_applies_on_top_of_the_file(finished, capsys):
    saved = yaml.safe_load((finished / "config.yaml").read_text())
    got = printed_config(["train", "--config", str(finished / "config.yaml"), "--out", "unused",
                          "--set", "seed=3", "--set", "ddpo.ppo.lr=0.5"], capsys)
    assert got["seed"] == 3 and got["ddpo"]["ppo"]["lr"] == 0.5
    got["seed"], got["ddpo"]["ppo"]["lr"] = saved["seed"], saved["ddpo"]["ppo"]["lr"]
    assert got == saved  # nothing else moved


@pytest.mark.parametrize("flag", [["--seed", "1"], ["--tier", "toy"], ["--method", "hero"], ["--task", "anomaly"],
                                  ["--budget", "16"], ["--device", "cpu"]])
def test_flags_that_choose_settings_cannot_be_given_with_config(finished, tmp_path, flag, capsys):
    out = tmp_path / "not_trained"
    assert main(["train", "--config", str(finished / "config.yaml"), "--out", str(out), *flag]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} cannot be given with it" in err and "--set KEY=VALUE" in err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("tier: toy\n  task: [\n", "not valid YAML"),
    ("- a list\n", "holds list, not a mapping of settings"),
    ("tier: toy\nlearning_rate: 1\n", "unknown config key(s) learning_rate"),
])
def test_a_file_that_is_not_a_run_config_is_a_one_line_error(tmp_path, content, message, capsys):
    path = tmp_path / "config.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_config_naming_a_task_of_another_tier_is_an_error(finished, tmp_path, capsys):
    data = yaml.safe_load((finished / "config.yaml").read_text())
    data["task"] = "hand"  # a paper-tier task in a smoke run
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "hand" in capsys.readouterr().err
