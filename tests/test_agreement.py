"""`hero-bench agreement`: a person's web labels against the oracle's verdicts on the same pixels.

Run folders are built by hand in the web evaluator's format (config.yaml, ledger.jsonl,
web/eNNNN/round.json and lossless PNGs). The images are ShapesWorld scenes for the anomaly task
whose verdict is known by construction (the asked-for object alone on a day background: good; the
same shape in another colour: bad), so the "person" can agree with the oracle exactly or disagree
on a chosen subset, and the expected kappa is worked out here from the counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hero_bench.agreement import agreement
from hero_bench.cli import main
from hero_bench.io import atomic_write_json
from hero_bench.ledger import FeedbackLedger, image_id
from hero_bench.presets import build_run_config
from hero_bench.run_config import config_yaml
from hero_bench.tasks import get_task
from hero_bench.toyworld import scenes
from hero_bench.toyworld.scenes import Scene, Shape

KINDS = {"hero": "hero_good", "ddpo": "ddpo_reward", "d3po": "d3po_success"}
PER_ROUND = 6
# the verdict the oracle must give each image of a round, by construction: 3 good then 3 bad
TRUTH = [True, True, True, False, False, False]


def scene_for(meta: dict, good: bool, k: int) -> Scene:
    """The prompt's object alone on a day background (good) or in another colour (bad)."""
    obj = meta["objects"][0]
    color = obj["color"] if good else next(c for c in scenes.COLORS if c != obj["color"])
    return Scene(scenes.DAY, (Shape(obj["shape"], color, 8.0, 8.0, float(scenes.SIZES[k % 2])),))


def write_round(run_dir: Path, method: str, epoch: int) -> list[str]:
    """web/eNNNN/ as the web evaluator saves it; returns the image ids."""
    prompts = get_task("anomaly").train_prompts
    folder = run_dir / "web" / f"e{epoch:04d}"
    folder.mkdir(parents=True)
    entries = []
    for k, good in enumerate(TRUTH):
        prompt = prompts[(epoch + k) % len(prompts)]
        iid = image_id(epoch, k)
        Image.fromarray(scenes.render(scene_for(dict(prompt.metadata), good, k))).save(folder / f"{iid}.png")
        entries.append({"id": iid, "file": f"{iid}.png", "prompt": prompt.text, "metadata": dict(prompt.metadata),
                        "group": k // 2 if method == "d3po" else None})
    atomic_write_json(folder / "round.json", {
        "format": 1, "epoch": epoch, "method": method, "task": "anomaly", "images": entries,
        "current_best": None, "feedback_used": epoch * PER_ROUND, "budget": 64,
    })
    return [e["id"] for e in entries]


def label(ledger: FeedbackLedger, method: str, epoch: int, good: list[bool]) -> None:
    ids = [image_id(epoch, k) for k in range(len(good))]
    values = [float(g) for g in good] if method == "ddpo" else list(good)
    ledger.record_labels(epoch, ids, KINDS[method], values, evaluator_seed=0)


def make_run(root: Path, method: str, person: dict[int, list[bool]], rounds=(1, 2), oracle_epochs=()) -> Path:
    """A run folder: rounds saved for ``rounds``, the person's labels of ``person[epoch]``, and
    labels of ``oracle_epochs`` (the oracle's, no round saved)."""
    cfg = build_run_config("smoke", "anomaly", method, budget=64)
    run_dir = root / method
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config_yaml(cfg))
    for epoch in rounds:
        write_round(run_dir, method, epoch)
    ledger = FeedbackLedger(run_dir / "ledger.jsonl", cfg.budget, cfg.run_id)
    for epoch in sorted(set(person) | set(oracle_epochs)):
        label(ledger, method, epoch, person.get(epoch, TRUTH))
    return run_dir


def agreement_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["agreement", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_json(capsys, tmp_path, *run_dirs) -> dict:
    path = tmp_path / "agreement.json"
    code, out, err = agreement_cli(capsys, *run_dirs, "--json", path)
    assert code == 0, err
    return json.loads(path.read_text())


# -- the scenes judge as constructed -----------------------------------------------------------------
def test_the_oracle_judges_the_constructed_scenes_as_built(tmp_path):
    run_dir = tmp_path / "r"
    ids = write_round(run_dir, "ddpo", 1)
    prompts = {p.text: p for p in get_task("anomaly").train_prompts}
    meta = json.loads((run_dir / "web/e0001/round.json").read_text())["images"]
    images = np.stack([np.asarray(Image.open(run_dir / "web/e0001" / f"{i}.png")) for i in ids])
    results = get_task("anomaly").oracle_factory()(images, [m["prompt"] for m in meta],
                                                   [prompts[m["prompt"]].metadata for m in meta])
    assert [r.success for r in results] == TRUTH


# -- the numbers -------------------------------------------------------------------------------------
def test_labels_equal_to_the_oracle_give_kappa_one_and_a_diagonal_table(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    result = read_json(capsys, tmp_path, run_dir)
    assert result["n"] == 12
    assert result["kappa"] == 1.0
    assert result["agreement"] == 1.0
    assert result["confusion"] == [[6, 0], [0, 6]]
    assert result["skipped_no_round"] == result["skipped_unlabelled"] == 0


def test_flipped_labels_give_the_kappa_of_their_confusion(tmp_path, capsys):
    # round 1: two good images called bad; round 2: one bad image called good
    person = {1: [False, False, True, False, False, False], 2: [True, True, True, True, False, False]}
    run_dir = make_run(tmp_path, "ddpo", person)
    result = read_json(capsys, tmp_path, run_dir)
    # rows = person, columns = oracle, [bad, good]
    bb, bg, gb, gg = 5, 2, 1, 4
    assert result["confusion"] == [[bb, bg], [gb, gg]]
    n = bb + bg + gb + gg
    p_observed = (bb + gg) / n
    p_chance = ((bb + bg) / n) * ((bb + gb) / n) + ((gb + gg) / n) * ((bg + gg) / n)
    expected = (p_observed - p_chance) / (1 - p_chance)
    assert expected == pytest.approx(0.5)
    assert result["kappa"] == pytest.approx(expected, abs=1e-12)
    assert result["agreement"] == pytest.approx(p_observed)
    assert result["n"] == n


def test_unpaired_images_are_skipped_and_counted(tmp_path, capsys):
    # epoch 0 labelled by the oracle (no round saved), round 3 shown but never submitted
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH}, rounds=(1, 2, 3), oracle_epochs=(0,))
    code, out, err = agreement_cli(capsys, run_dir)
    assert code == 0, err
    assert "on 12 web-labelled images" in out
    assert "6 labels had no saved round and were skipped" in out
    assert "6 images shown on the web page but never labelled were skipped" in out
    result = read_json(capsys, tmp_path, run_dir)
    assert (result["n"], result["skipped_no_round"], result["skipped_unlabelled"]) == (12, 6, 6)


def test_one_line_per_method_and_pooled_over_runs(tmp_path, capsys):
    hero = make_run(tmp_path, "hero", {1: TRUTH, 2: TRUTH})
    d3po = make_run(tmp_path, "d3po", {1: [not t for t in TRUTH]})  # always wrong: kappa -1
    code, out, err = agreement_cli(capsys, hero, d3po)
    assert code == 0, err
    assert "| HERO | 12 | 1.000 | 1.000 |" in out
    assert "| D3PO | 6 | 0.000 | -1.000 |" in out
    assert "| DDPO |" not in out
    assert "person vs oracle on 18 web-labelled images (2 runs)" in out
    result = read_json(capsys, tmp_path, hero, d3po)
    assert result["confusion"] == [[6, 3], [3, 6]]
    assert set(result["methods"]) == {"hero", "d3po"}
    assert [r["method"] for r in result["runs"]] == ["hero", "d3po"]


def test_kappa_of_a_single_shared_class_is_undefined():
    result = agreement([True, True], [True, True])
    assert np.isnan(result.kappa) and result.agreement == 1.0
    assert result.to_json()["kappa"] is None


# -- refusals: one line each, exit 2 -----------------------------------------------------------------
def refuse(capsys, *argv) -> str:
    code, out, err = agreement_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hero-bench agreement: error: ")
    return lines[0]


def test_a_missing_run_folder_is_refused(tmp_path, capsys):
    line = refuse(capsys, tmp_path / "nowhere")
    assert "nowhere is not a folder" in line


def test_a_run_without_web_rounds_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {0: TRUTH}, rounds=())
    line = refuse(capsys, run_dir)
    assert line.endswith(f"{run_dir} holds no rounds labelled on the web page (web/eNNNN/round.json); "
                         "agreement compares a web-labelled run with its oracle")


def test_a_folder_without_rounds_is_refused_as_such_before_its_other_files(tmp_path, capsys):
    # no config.yaml and no ledger either (a copy kept without them): the rounds are what is missing
    line = refuse(capsys, tmp_path)
    assert line.endswith(f"{tmp_path} holds no rounds labelled on the web page (web/eNNNN/round.json); "
                         "agreement compares a web-labelled run with its oracle")


def test_a_malformed_config_is_refused_in_one_line(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    config = run_dir / "config.yaml"
    for text, why in (("task: [unclosed\n", "not valid YAML at line 2"),
                      ("- a list\n", "holds list, not a mapping of settings")):
        config.write_text(text)
        line = refuse(capsys, run_dir)
        assert f"{config} cannot be read (ConfigError: " in line and why in line, line
        assert line.endswith("accepted: the config.yaml `hero-bench train` wrote")


def test_a_missing_png_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    png = run_dir / "web/e0002/e0002-i0003.png"
    png.unlink()
    line = refuse(capsys, run_dir)
    assert f"{png} is missing" in line and "accepted: the 8-bit RGB PNG" in line


def test_an_unreadable_png_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    png = run_dir / "web/e0001/e0001-i0000.png"
    png.write_bytes(b"not a png")
    line = refuse(capsys, run_dir)
    assert f"{png} cannot be read" in line and "accepted: the 8-bit RGB PNG" in line


def test_a_png_that_is_not_rgb_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    png = run_dir / "web/e0001/e0001-i0001.png"
    Image.open(png).convert("L").save(png)
    line = refuse(capsys, run_dir)
    assert f"{png} is a PNG image of mode L" in line


def test_a_round_of_another_format_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH, 2: TRUTH})
    path = run_dir / "web/e0002/round.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": 2}))
    line = refuse(capsys, run_dir)
    assert f"{path} is a round of format 2; accepted: a JSON object of format 1" in line


def test_a_missing_ledger_is_refused(tmp_path, capsys):
    run_dir = make_run(tmp_path, "ddpo", {1: TRUTH})
    (run_dir / "ledger.jsonl").unlink()
    line = refuse(capsys, run_dir)
    assert "ledger.jsonl is missing" in line
