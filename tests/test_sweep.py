"""hero-bench sweep-table: per-method selection by normalised AUC, on hand-made eval.csv files."""

from __future__ import annotations

import pandas as pd
import pytest

from hero_bench.cli import main
from hero_bench.sweep import SweepError, read_runs, selection_margins, summarise


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


def test_a_selection_within_the_runner_up_s_interval_is_a_tie(tmp_path):
    # hero: "b" beats "a" on every shared (task, seed) by 0.05 AUC (0.1 on the second half of the
    # curve): decided. ddpo: "x" beats "y" on seed 0 by 0.15 and loses on seed 1 by 0.1: a tie.
    paths = [
        _run(tmp_path, "hero", "a", 0, [0.2, 0.2, 0.2]), _run(tmp_path, "hero", "b", 0, [0.2, 0.3, 0.3]),
        _run(tmp_path, "hero", "a", 1, [0.2, 0.3, 0.3]), _run(tmp_path, "hero", "b", 1, [0.2, 0.4, 0.4]),
        _run(tmp_path, "hero", "a", 2, [0.1, 0.1, 0.1]), _run(tmp_path, "hero", "b", 2, [0.1, 0.2, 0.2]),
        _run(tmp_path, "ddpo", "x", 0, [0.2, 0.6, 0.6]), _run(tmp_path, "ddpo", "y", 0, [0.2, 0.3, 0.3]),
        _run(tmp_path, "ddpo", "x", 1, [0.2, 0.2, 0.2]), _run(tmp_path, "ddpo", "y", 1, [0.2, 0.4, 0.4]),
        # a seed only "x" ran: not paired, so it cannot carry the difference
        _run(tmp_path, "ddpo", "x", 2, [0.9, 0.9, 0.9]),
    ]
    runs = read_runs(paths)
    margins = selection_margins(runs).set_index("method")
    hero, ddpo = margins.loc["hero"], margins.loc["ddpo"]
    assert (hero.selected, hero.runner_up, hero.n_pairs) == ("b", "a", 3)
    assert hero.diff_mean == pytest.approx(0.05) and hero.decided
    assert (ddpo.selected, ddpo.runner_up, ddpo.n_pairs) == ("x", "y", 2)
    assert ddpo.diff_mean == pytest.approx(0.025) and ddpo.diff_low < 0 < ddpo.diff_high and not ddpo.decided
    assert main(["sweep-table", "--out-dir", str(tmp_path / "out"), *map(str, paths)]) == 0
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "| hero | b | a | 3 | +0.050" in md and "| decided |" in md
    assert "| ddpo | x | y | 2 | +0.025" in md and "**tie**" in md
    tidy = pd.read_csv(tmp_path / "out" / "sweep_selection.csv")
    assert list(tidy.columns) == ["method", "selected", "runner_up", "n_pairs", "diff_mean", "diff_low",
                                  "diff_high", "decided"]


def test_a_method_with_one_configuration_has_no_runner_up(tmp_path):
    runs = read_runs([_run(tmp_path, "d3po", "only", 0, [0.2, 0.3])])
    row = selection_margins(runs).iloc[0]
    assert row.selected == "only" and row.runner_up is None and not row.decided
