"""hero-bench sweep-table: per-method selection by normalised AUC, on hand-made eval.csv files."""

from __future__ import annotations

import pandas as pd
import pytest

from hero_bench.cli import main
from hero_bench.sweep import SweepError, read_runs, summarise


def _run(root, method, variant, seed, curve, task="sanity"):
    path = root / "toy" / task / method / variant / f"seed{seed}" / "eval.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": range(len(curve)), "feedback_used": [64 * i for i in range(len(curve))],
                  "success_rate": curve}).to_csv(path, index=False)
    return path


def test_selects_the_whole_curve_not_the_peak(tmp_path):
    paths = [
        # climbs to the highest peak, then falls back: AUC (0.2 + 0.8 + 0.2) / 3 = 0.4
        _run(tmp_path, "ddpo", "spiky", 0, [0.2, 0.2, 0.8, 0.2]),
        _run(tmp_path, "ddpo", "spiky", 1, [0.2, 0.2, 0.8, 0.2]),
        # climbs and holds: AUC (0.2 + 0.5 + 0.6) / 3 = 0.433
        _run(tmp_path, "ddpo", "steady", 0, [0.2, 0.5, 0.6, 0.6]),
        _run(tmp_path, "ddpo", "steady", 1, [0.2, 0.5, 0.6, 0.7]),
        _run(tmp_path, "hero", "a", 0, [0.2, 0.2, 0.2, 0.2]),
        _run(tmp_path, "hero", "b", 0, [0.2, 0.3, 0.3, 0.3]),
    ]
    runs = read_runs(paths)
    assert runs.set_index(["variant", "seed"]).loc[("spiky", 0), "auc"] == pytest.approx(0.4)
    table = summarise(runs)
    assert set(table[table.selected].variant) == {"steady", "b"}
    row = table.set_index("variant").loc["steady"]
    assert row.n_seeds == 2 and row.final_mean == pytest.approx(0.65)
    assert main(["sweep-table", "--out-dir", str(tmp_path / "out"), *map(str, paths)]) == 0
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "**steady**" in md and "ddpo 2, hero 2" in md


def test_rejects_paths_outside_the_sweep_layout(tmp_path):
    path = tmp_path / "runs" / "toy" / "sanity" / "ddpo" / "seed0" / "eval.csv"
    path.parent.mkdir(parents=True)
    path.write_text("epoch,feedback_used,success_rate\n0,0,0.2\n")
    with pytest.raises(SweepError, match="not a sweep run"):
        read_runs([path])
