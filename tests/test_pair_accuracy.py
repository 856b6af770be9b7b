"""scripts/pair_accuracy.py: D3PO's logged pair accuracy per run and per reference mode."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import load_script


def _run(folder, reference: str, rounds: list[tuple[int, int, float]]):
    """A D3PO run folder with a config.yaml and a train_log.csv of (epoch, n_pairs, pair_accuracy)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"task": "anomaly", "method": "d3po", "d3po": {"reference": reference, "lr": 5e-4}}))
    pd.DataFrame(rounds, columns=["epoch", "n_pairs", "pair_accuracy"]).to_csv(folder / "train_log.csv", index=False)
    return folder / "train_log.csv"


def test_accuracy_is_weighted_by_pairs_and_skips_early_and_empty_rounds(tmp_path):
    script = load_script("pair_accuracy")
    log = _run(tmp_path / "seed0", "pretrained",
               [(1, 50, 0.0), (2, 50, 0.0), (3, 30, 0.2), (4, 10, 0.6), (5, 0, float("nan"))])
    row = script.run_accuracy(log, from_round=3)
    assert row["reference"] == "pretrained"
    assert row["rounds"] == 2 and row["pairs"] == 40
    assert row["accuracy"] == pytest.approx((30 * 0.2 + 10 * 0.6) / 40)
    # counting from the first round takes the two rounds of 0 in
    assert script.run_accuracy(log, from_round=1)["accuracy"] == pytest.approx(12.0 / 140)


def test_a_log_without_pair_accuracy_is_refused_by_name(tmp_path):
    script = load_script("pair_accuracy")
    folder = tmp_path / "ddpo"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": "anomaly", "d3po": {"reference": "previous", "lr": 1}}))
    pd.DataFrame({"epoch": [1], "n_pairs": [3]}).to_csv(folder / "train_log.csv", index=False)
    with pytest.raises(SystemExit, match="pair_accuracy"):
        script.run_accuracy(folder / "train_log.csv", from_round=1)


def test_the_table_groups_runs_by_reference_mode(tmp_path, capsys, monkeypatch):
    script = load_script("pair_accuracy")
    logs = [_run(tmp_path / f"pre{k}", "pretrained", [(3, 10, acc)]) for k, acc in enumerate([0.4, 0.5])]
    logs.append(_run(tmp_path / "prev", "previous", [(3, 10, 0.7)]))
    monkeypatch.setattr("sys.argv", ["pair_accuracy.py", *map(str, logs)])
    script.main()
    out = capsys.readouterr().out
    assert "| pretrained | 2 | 0.450 |" in out
    assert "| previous | 1 | 0.700 | [-inf, inf] |" in out
