"""scripts/acceptance_tables.py on a hand-made grid: final success per seed, train-prompt success, timings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import load_script
from hero_bench.results import EVAL_COLUMNS


@pytest.fixture(scope="module")
def tables():
    return load_script("acceptance_tables")


def _eval_rows(method, seed, points):
    base = {c: "" for c in EVAL_COLUMNS}
    return [base | {"tier": "toy", "task": "anomaly", "method": method, "seed": seed, "epoch": e,
                    "feedback_used": fb, "success_rate": s} for e, fb, s in points]


def _grid(root: Path) -> None:
    rows = _eval_rows("base", 0, [(0, 0, 0.25)])
    for seed, final in ((0, 0.5), (1, 0.75)):
        rows += _eval_rows("hero", seed, [(0, 0, 0.25), (1, 64, 0.3), (2, 128, final)])
        d = root / "runs" / "toy" / "anomaly" / "hero" / f"seed{seed}"
        d.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2, 3], "train_success": [0.1, 0.2, 0.4 + seed / 10],
                      "sample_s": [2.0, 4.0, 6.0], "update_s": [1.0, 1.0, 1.0],
                      "eval_s": [0.0, 3.0, 5.0], "epoch_s": [3.0, 8.0, 12.0],
                      "reward_auc": [0.5, 0.75, 1.0], "reward_auc_prior": [float("nan"), 0.5, 0.5]}).to_csv(
            d / "train_log.csv", index=False)
    base_dir = root / "runs" / "toy" / "anomaly" / "base" / "seed0"
    base_dir.mkdir(parents=True)
    (base_dir / "train_log.csv").write_text("epoch,train_success,sample_s,update_s,eval_s,epoch_s\n")
    (root / "summary").mkdir()
    pd.DataFrame(rows).to_csv(root / "summary" / "runs.csv", index=False)


def test_tables_of_a_hand_made_grid(tables, tmp_path, capsys):
    _grid(tmp_path)
    assert tables.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # final checkpoint per seed, mean over seeds; base first
    assert "| anomaly | base | 1 | 0 | 0.250 | 0.250 |" in out
    assert "| anomaly | hero | 2 | 128 | 0.625 | 0.500, 0.750 |" in out
    assert out.index("| anomaly | base |") < out.index("| anomaly | hero | 2 |")
    # train-prompt success: round 1 vs the mean of the last two rounds (0.2, 0.4; 0.2, 0.5)
    assert "| anomaly | hero | 0.100 | 0.325 | 3 |" in out
    # per-epoch times without evaluation: (3 + 5 + 7) / 3 = 5.0; eval only where it ran: 4.0
    assert "| hero | 4.0 | 1.0 | 5.0 | 4.0 |" in out
    assert "| anomaly | 0.750 | 0.500 |" in out
    assert "no eval_train.csv yet" in out


def test_train_prompt_table_takes_each_runs_last_epoch(tables, tmp_path, capsys):
    _grid(tmp_path)
    for method, seed, points in (("base", 0, [(0, 0, 0.2)]), ("hero", 0, [(0, 0, 0.2), (2, 128, 0.3)]),
                                 ("hero", 1, [(2, 128, 0.5)])):
        rows = [r | {"n_eval": 64, "prompt_set": "train"} for r in _eval_rows(method, seed, points)]
        pd.DataFrame(rows).to_csv(tmp_path / "runs" / "toy" / "anomaly" / method / f"seed{seed}" / "eval_train.csv",
                                  index=False)
    assert tables.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| task | base | hero | images per run |" in out
    assert "| anomaly | 0.200 (0.200) | 0.400 (0.300, 0.500) | 64 |" in out


def test_missing_runs_table_is_a_clear_error(tables, tmp_path, capsys):
    assert tables.main([str(tmp_path)]) == 2
    assert "hero-bench gather" in capsys.readouterr().err
