"""Adding a method = one file plus one row of the method table (docs/methods.md, "Adding a method").

A throw-away method, registered here at test time, goes through the commands the shipped methods
go through: ``hero-bench train`` (smoke tier, the tiny backbone), ``gather`` and ``report``; the
tables name it by its label, after the shipped methods.  It labels like DDPO, whose settings
section it reuses, and makes no update, so its weights never leave the pretrained model's.

The rest checks what a new row relies on: each shipped row and its class agree, and the hash of a
run keeps exactly the section its method's row names.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from hero_bench.algorithms import DDPO, get_algorithm
from hero_bench.algorithms.base import Method
from hero_bench.cli import main
from hero_bench.errors import ConfigError
from hero_bench.methods import METHODS, MethodSpec, method_names, method_sections, register_method
from hero_bench.presets import build_run_config
from hero_bench.provenance import run_config_hash
from hero_bench.run_config import RunConfig
from hero_bench.sweep import read_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Frozen(DDPO):
    """The throw-away method (its "one file"): DDPO's sampling and labels, and no update."""

    name = "frozen"

    def update(self, epoch, batch, feedback):
        return {}


FROZEN = MethodSpec("frozen", label="Frozen-DDPO", section="ddpo", implementation=f"{__name__}:Frozen")

# a run small enough for a test: 4 images per epoch, 2 sampling steps, 4 eval images
MICRO = ["sampler.steps=2", "eval.n_images=4", "eval.batch_size=4", "ddpo.images_per_epoch=4"]


@pytest.fixture
def frozen():
    """The method table with the throw-away method's row (removed again after the test)."""
    register_method(FROZEN)  # the "one registry line"
    yield FROZEN
    METHODS.pop(FROZEN.name, None)


def _train(backbone_dir, method: str, seed: int, runs: Path) -> Path:
    out = runs / "smoke" / "anomaly" / method / f"seed{seed}"
    argv = ["train", "--tier", "smoke", "--task", "anomaly", "--method", method, "--seed", str(seed),
            "--budget", "8", "--backbone", str(backbone_dir), "--out", str(out), "--quiet"]
    assert main(argv + [arg for item in MICRO for arg in ("--set", item)]) == 0
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_registered_method_trains_gathers_and_reports_under_its_label(frozen, tiny_backbone_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    base = _train(tiny_backbone_dir, "base", 0, runs)
    frozen_runs = [_train(tiny_backbone_dir, "frozen", seed, runs) for seed in (0, 1)]

    # it ran as itself: labels were asked (DDPO's protocol) and the weights never changed, so every
    # checkpoint scores what the pretrained model scores on the same evaluation noise
    base_success = _rows(base / "eval.csv")[0]["success_rate"]
    for run in frozen_runs:
        rows = _rows(run / "eval.csv")
        assert [r["method"] for r in rows] == ["frozen"] * len(rows)
        assert [int(r["feedback_used"]) for r in rows] == [0, 4, 8]
        assert {r["success_rate"] for r in rows} == {base_success}

    runs_csv = tmp_path / "results" / "summary" / "runs.csv"
    eval_csvs = [str(run / "eval.csv") for run in (base, *frozen_runs)]
    assert main(["gather", "--out", str(runs_csv), *eval_csvs]) == 0  # also checks each run's config hash
    out = tmp_path / "results"
    assert main(["report", "--runs", str(runs_csv), "--out-dir", str(out), "--reps", "50"]) == 0

    summary = _rows(out / "summary" / "summary.csv")
    assert {r["method"] for r in summary} == {"base", "frozen"}
    table = (out / "tables" / "summary.md").read_text()
    lines = table.splitlines()
    labelled = [i for i, line in enumerate(lines) if "| Frozen-DDPO |" in line]
    assert labelled, table
    # in the method table's order: the shipped methods first
    assert next(i for i, line in enumerate(lines) if "| base |" in line) < labelled[0]

    # the command line lists it, and a sweep of it is read like any other
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "{hero,ddpo,d3po,frozen,base}" in capsys.readouterr().out
    sweep_csv = tmp_path / "tune" / "anomaly" / "frozen" / "v1" / "seed0" / "eval.csv"
    sweep_csv.parent.mkdir(parents=True)
    sweep_csv.write_bytes((frozen_runs[0] / "eval.csv").read_bytes())
    assert list(read_runs([sweep_csv]).method) == ["frozen"]


def test_a_registered_method_hashes_the_section_it_reuses(frozen):
    def hash_with(*overrides):
        return run_config_hash(build_run_config("smoke", "anomaly", "frozen", overrides=list(overrides)))

    assert hash_with("ddpo.images_per_epoch=4") != hash_with()  # its own settings count
    assert hash_with("hero.images_per_epoch=4") == hash_with()  # another method's do not


def test_registering_a_taken_or_malformed_name_is_an_error(frozen):
    with pytest.raises(ConfigError, match="method 'frozen' is registered twice"):
        register_method(dataclasses.replace(FROZEN, label="again"))
    with pytest.raises(ConfigError, match="method name 'Frozen 2' is not accepted"):
        register_method(dataclasses.replace(FROZEN, name="Frozen 2"))
    assert method_names()[-1] == "frozen"  # after the shipped methods: report order = registration order


# -- the shipped rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", method_names())
def test_each_row_names_a_method_class_that_agrees_with_it(name):
    spec, cls = METHODS[name], get_algorithm(name)
    assert issubclass(cls, Method) and cls.name == name
    assert cls.trains == spec.trains, f"{name}: a method trains exactly when its row names a settings section"


def test_the_sections_are_the_run_configs_method_settings():
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    assert method_sections() == ("hero", "ddpo", "d3po")
    for section in method_sections():
        assert section in fields and dataclasses.is_dataclass(fields[section].default_factory())


def test_an_unknown_method_names_the_accepted_ones():
    with pytest.raises(ConfigError, match="unknown method 'ppo'; accepted: hero, ddpo, d3po, base"):
        get_algorithm("ppo")
