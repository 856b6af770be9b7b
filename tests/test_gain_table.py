"""scripts/gain_table.py on hand-made runs: per-seed success at a budget, mean gain, the ✓ mark."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import load_script
from hero_bench.results import EVAL_COLUMNS


@pytest.fixture(scope="module")
def gain_table():
    return load_script("gain_table")


def _run(root: Path, task: str, seed: int, points) -> Path:
    path = root / "toy" / task / "ddpo" / "lr5e-3" / f"seed{seed}" / "eval.csv"
    path.parent.mkdir(parents=True)
    base = {c: "" for c in EVAL_COLUMNS}
    pd.DataFrame([base | {"tier": "toy", "task": task, "method": "ddpo", "seed": seed, "epoch": i,
                          "feedback_used": fb, "success_rate": s} for i, (fb, s) in enumerate(points)]
                 ).to_csv(path, index=False)
    return path


def test_gains_per_task_and_the_mark(tmp_path, gain_table):
    paths = [_run(tmp_path, "anomaly", seed, [(0, 0.4), (512, 0.5 + d), (1024, 0.6 + d)])
             for seed, d in enumerate([0.0, 0.02, 0.04])]
    paths += [_run(tmp_path, "relation", seed, [(0, 0.2), (512, 0.2), (1024, 0.2 + d)])
              for seed, d in enumerate([0.3, -0.1, 0.1])]
    rows = {r["task"]: r for r in gain_table.gain_rows(paths, [512, 1024], target=0.15)}
    anomaly, relation = rows["anomaly"], rows["relation"]
    assert anomaly["n"] == 3 and anomaly["base"] == "0.400" and anomaly["variant"] == "lr5e-3"
    assert anomaly["at 1024"] == "seed0: 0.600, seed1: 0.620, seed2: 0.640"
    # gains 0.20, 0.22, 0.24: mean 0.22, sd 0.02, half width 4.3027 * 0.02 / sqrt(3) = 0.0497
    assert anomaly["gain 1024"] == "+0.220 [+0.170, +0.270] ✓"
    assert anomaly["gain 512"].startswith("+0.120") and "✓" not in anomaly["gain 512"]  # below the target
    assert "✓" not in relation["gain 1024"]  # mean +0.10 and an interval that reaches below 0


def test_a_run_short_of_the_budget_is_not_counted(tmp_path, gain_table):
    paths = [_run(tmp_path, "counting", 0, [(0, 0.4), (1024, 0.8)]), _run(tmp_path, "counting", 1, [(0, 0.4), (512, 0.5)])]
    (row,) = gain_table.gain_rows(paths, [1024], target=0.15)
    assert row["at 1024"] == "not reached by every seed" and row["gain 1024"] == ""


def test_runs_evaluated_only_at_zero_labels_are_left_out(tmp_path, gain_table, capsys):
    trained = [_run(tmp_path, "anomaly", seed, [(0, 0.4), (512, 0.6)]) for seed in (0, 1)]
    base = _run(tmp_path, "anomaly", 2, [(0, 0.4)])  # a `base` run: nothing to gain
    rows = gain_table.gain_rows(trained + [base], [512], target=0.15)
    assert len(rows) == 1 and rows[0]["n"] == 2 and rows[0]["at 512"] == "seed0: 0.600, seed1: 0.600"
    assert "evaluated at 0 labels only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gain_table.main([str(base), "--budgets", "512"])
    assert "no run was trained" in capsys.readouterr().err
