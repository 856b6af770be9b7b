"""hero-bench regime-comparison: HERO against DDPO and D3PO per noise-influence regime, on hand-made
eval.csv files and noise-influence JSON files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hero_bench.cli import main
from hero_bench.regime_comparison import (RegimeComparisonError, compare, gains, method_noise_table, parse_variants,
                                          person_table, ratios, read_curves, read_icc, read_method_noise)

VARIANTS = {"initial-noise": "zT", "step-noise": "step"}


def _run(root, method, variant, seed, curve, task="safety", step=128):
    path = root / "toy" / task / method / variant / f"seed{seed}" / "eval.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": range(len(curve)), "feedback_used": [step * i for i in range(len(curve))],
                  "success_rate": curve}).to_csv(path, index=False)
    return path


def _icc(root, task, regime, icc, ci=(0.1, 0.9)):
    path = root / f"{task}_{regime}.json"
    path.write_text(json.dumps({"task": task, "regime": regime, "icc_success": icc, "icc_success_ci95": list(ci),
                                "n_noises": 32, "repeats": 8}))
    return path


@pytest.fixture
def sweep(tmp_path):
    """safety in two regimes: where z_T decides, HERO reaches 0.6 at 256 labels and D3PO 0.6 only at 512;
    where it does not, HERO stays below D3PO's final 0.5."""
    paths = []
    for seed, shift in enumerate([0.0, 0.02, -0.02]):
        def add(method, variant, curve):
            paths.append(_run(tmp_path, method, variant, seed, [round(c + shift, 4) for c in curve]))
        add("hero", "zT", [0.3, 0.5, 0.6, 0.6, 0.7])
        add("hero", "zT_no_guidance", [0.3, 0.3, 0.4, 0.4, 0.4])
        add("ddpo", "zT", [0.3, 0.3, 0.4, 0.4, 0.4])
        add("d3po", "zT", [0.3, 0.4, 0.5, 0.5, 0.6])
        add("hero", "step", [0.3, 0.3, 0.3, 0.4, 0.4])
        add("ddpo", "step", [0.3, 0.4, 0.4, 0.4, 0.4])
        add("d3po", "step", [0.3, 0.4, 0.4, 0.5, 0.5])
    icc = [_icc(tmp_path, "safety", "initial-noise", 0.6, (0.45, 0.73)),
           _icc(tmp_path, "safety", "step-noise", -0.03, (-0.07, 0.0))]
    return paths, icc


def test_hero_against_each_method_paired_by_seed(sweep):
    paths, icc = sweep
    table = compare(read_curves(paths), read_icc(icc), VARIANTS, budget=512).set_index(["regime", "other"])
    row = table.loc[("initial-noise", "ddpo")]
    # every seed's difference is exactly 0.3, so the paired interval has no width
    assert row["diff"] == pytest.approx(0.3) and row.diff_low == pytest.approx(0.3) and row.diff_high == pytest.approx(0.3)
    assert row.icc == pytest.approx(0.6) and (row.icc_low, row.icc_high) == (0.45, 0.73) and row.n_seeds == 3
    assert table.loc[("initial-noise", "d3po"), "diff"] == pytest.approx(0.1)
    assert table.loc[("step-noise", "ddpo"), "diff"] == pytest.approx(0.0)
    assert table.loc[("step-noise", "d3po"), "diff"] == pytest.approx(-0.1)
    # at 256 labels (the last evaluation at or below it): HERO 0.6, D3PO 0.5
    early = compare(read_curves(paths), read_icc(icc), VARIANTS, budget=300).set_index(["regime", "other"])
    assert early.loc[("initial-noise", "d3po"), "diff"] == pytest.approx(0.1)
    assert early.loc[("step-noise", "d3po"), "diff"] == pytest.approx(-0.1)


def test_feedback_hero_needs_to_reach_d3po_final(sweep):
    paths, _ = sweep
    table = ratios(read_curves(paths), VARIANTS, 512, reps=200).set_index("regime")
    zt = table.loc["initial-noise"]
    # D3PO's final 0.6 after 512 labels; HERO's IQM reaches it at 256: twice as feedback-efficient
    assert zt.d3po_final == pytest.approx(0.6) and zt.d3po_feedback == 512
    assert zt.reached and zt.hero_feedback == 256 and zt.ratio == pytest.approx(2.0)
    assert zt.ratio_low <= 2.0 <= zt.ratio_high
    step = table.loc["step-noise"]
    # HERO never reaches D3PO's final 0.5 here: censored at its last evaluation, the ratio an upper bound
    assert not step.reached and step.hero_feedback == 512 and step.censored_share > 0.5
    # runs trained further count as stopped at the budget: at 384 labels D3PO's final is its 0.5 there,
    # which HERO reaches at 128: a ratio of 3
    early = ratios(read_curves(paths), VARIANTS, 384, reps=50).set_index("regime").loc["initial-noise"]
    assert early.d3po_final == pytest.approx(0.5) and early.d3po_feedback == 384
    assert early.hero_feedback == 128 and early.ratio == pytest.approx(3.0)


def test_gains_over_the_pretrained_model_per_variant(sweep):
    paths, _ = sweep
    table = gains(read_curves(paths), 512).set_index(["method", "variant"])
    assert table.loc[("hero", "zT"), "gain"] == pytest.approx(0.4)
    assert table.loc[("hero", "zT_no_guidance"), "gain"] == pytest.approx(0.1)
    assert table.loc[("d3po", "step"), "n_seeds"] == 3


def test_cli_writes_tables_and_figure(sweep, tmp_path, capsys):
    paths, icc = sweep
    out = tmp_path / "out"
    args = ["regime-comparison", "--variant", "initial-noise=zT", "--variant", "step-noise=step",
            "--icc", *map(str, icc), "--out-dir", str(out), "--bootstrap-reps", "100", *map(str, paths)]
    assert main(args) == 0
    md = (out / "regime_comparison.md").read_text()
    assert "| safety | initial-noise (zT) | 0.60 [0.45, 0.73] | DDPO | 3 |" in md
    assert "> 512" in md  # the censored step-noise ratio
    assert (out / "hero_gain_vs_icc.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(out / "regime_comparison.csv")) == 4
    assert "HERO - ddpo at 512 labels +0.300" in capsys.readouterr().out


def test_bad_input_is_named(sweep, tmp_path, capsys):
    paths, icc = sweep
    no_regime = tmp_path / "old.json"
    no_regime.write_text(json.dumps({"task": "safety", "icc_success": 0.1, "icc_success_ci95": [0, 0.2],
                                     "n_noises": 32, "repeats": 8}))
    with pytest.raises(RegimeComparisonError, match="records no regime"):
        read_icc([no_regime])
    older = tmp_path / "older.json"  # from before the interval was recorded: computed from the per-noise rates
    older.write_text(json.dumps({"task": "safety", "regime": "step-noise", "icc_success": 0.5, "n_noises": 4,
                                 "repeats": 2, "seed": 0, "success_per_noise": [1.0, 1.0, 0.0, 0.0]}))
    assert (read_icc([older])[("safety", "step-noise")].low, read_icc([older])[("safety", "step-noise")].high) == (1.0, 1.0)
    older.write_text(json.dumps({"task": "safety", "regime": "step-noise", "icc_success": 0.5, "n_noises": 4,
                                 "repeats": 2}))
    with pytest.raises(RegimeComparisonError, match="records neither icc_success_ci95 nor success_per_noise"):
        read_icc([older])
    with pytest.raises(RegimeComparisonError, match="no noise-influence file for task 'safety' in regime 'step-noise'"):
        compare(read_curves(paths), read_icc(icc[:1]), VARIANTS, 512)
    with pytest.raises(RegimeComparisonError, match="expected REGIME=VARIANT"):
        parse_variants(["zT"])
    with pytest.raises(RegimeComparisonError, match="no .task, regime. has runs"):
        compare(read_curves(paths), read_icc(icc), {"initial-noise": "missing"}, 512)
    args = ["regime-comparison", "--variant", "initial-noise", "--icc", str(icc[0]), "--out-dir", str(tmp_path / "o"),
            *map(str, paths)]
    assert main(args) == 2
    assert "expected REGIME=VARIANT" in capsys.readouterr().err


def test_an_unpaired_seed_is_not_compared(tmp_path):
    """A seed that only one method has run drops out of that comparison (pairs need both)."""
    paths = [_run(tmp_path, "hero", "zT", 0, [0.3, 0.6]), _run(tmp_path, "ddpo", "zT", 0, [0.3, 0.4]),
             _run(tmp_path, "hero", "zT", 1, [0.3, 0.9])]
    icc = [_icc(tmp_path, "safety", "initial-noise", 0.5)]
    row = compare(read_curves(paths), read_icc(icc), {"initial-noise": "zT"}, 128).iloc[0]
    assert row.n_seeds == 1 and row["diff"] == pytest.approx(0.2)
    assert np.isinf(row.diff_low)  # one pair: no interval


def _method_noise(root, variant, seed, gaussian, method, task="safety"):
    """A HERO run's eval_method_noise.csv in a sweep (variant) or, with variant "", the main grid's layout."""
    path = root / "toy" / task / "hero" / variant / f"seed{seed}" / "eval_method_noise.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"task": task, "method": "hero", "seed": seed, "feedback_used": 512,
                  "success_rate": [gaussian, method], "initial_noise": ["gaussian", "method"]}).to_csv(path, index=False)
    return path


def test_the_method_noise_section_pairs_each_runs_two_evaluations(sweep, tmp_path):
    paths, icc = sweep
    files = [_method_noise(tmp_path, "zT", s, g, m) for s, g, m in ((0, 0.4, 0.6), (1, 0.5, 0.8), (2, 0.45, 0.55))]
    table = method_noise_table(read_method_noise(files)).iloc[0]
    assert table.variant == "zT" and table.n_seeds == 3
    main_grid = _method_noise(tmp_path / "runs", "", 0, 0.4, 0.6)
    assert read_method_noise([main_grid, files[0]]).variant.tolist() == ["", "zT"]
    assert table.gaussian == pytest.approx(0.45) and table.method == pytest.approx(0.65)
    assert table["diff"] == pytest.approx(0.2) and table.diff_low < 0.2 < table.diff_high
    out = tmp_path / "out"
    assert main(["regime-comparison", "--variant", "initial-noise=zT", "--icc", str(icc[0]), "--method-noise",
                 *map(str, files), "--out-dir", str(out), "--bootstrap-reps", "50", *map(str, paths)]) == 0
    md = (out / "regime_comparison.md").read_text()
    assert "| safety | zT | 3 | 512 | 0.450 | 0.650 | +0.200 [" in md
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"task": ["safety"], "initial_noise": ["gaussian"]}).to_csv(bad, index=False)
    with pytest.raises(RegimeComparisonError, match="expected the rows initial_noise = gaussian and method"):
        read_method_noise([bad])


PERSON = {"oracle": "zT", "flip0.2": "zT_flip0.2"}


def test_an_imperfect_person_erodes_each_method_paired_by_seed(sweep, tmp_path):
    """With labels flipped, HERO falls 0.2 below its oracle-labelled runs on every seed and D3PO 0.1:
    the paired change and HERO's lead have no spread; DDPO has no flipped runs and no row, and a task
    with the oracle's runs only (preference) has no rows at all."""
    paths, icc = sweep
    for seed, shift in enumerate([0.0, 0.02, -0.02]):
        paths.append(_run(tmp_path, "hero", "zT_flip0.2", seed, [round(c + shift, 4) for c in [0.3, 0.4, 0.4, 0.4, 0.5]]))
        paths.append(_run(tmp_path, "d3po", "zT_flip0.2", seed, [round(c + shift, 4) for c in [0.3, 0.4, 0.4, 0.5, 0.5]]))
        for method in ("hero", "ddpo", "d3po"):
            paths.append(_run(tmp_path, method, "zT", seed, [0.2, 0.2, 0.3, 0.3, 0.3], task="preference"))
    table = person_table(read_curves(paths), PERSON, budget=512)
    assert set(table.task) == {"safety"}
    table = table.set_index(["person", "method"])
    assert list(table.index) == [("oracle", "hero"), ("oracle", "ddpo"), ("oracle", "d3po"),
                                 ("flip0.2", "hero"), ("flip0.2", "d3po")]
    hero = table.loc[("flip0.2", "hero")]
    assert hero.n_seeds == 3 and hero.success == pytest.approx(0.5) and hero.gain == pytest.approx(0.2)
    assert (hero.change, hero.change_low, hero.change_high) == pytest.approx((-0.2, -0.2, -0.2))
    assert np.isnan(hero.hero_minus)
    d3po = table.loc[("flip0.2", "d3po")]
    assert d3po.change == pytest.approx(-0.1) and d3po.hero_minus == pytest.approx(0.0, abs=1e-12)
    oracle = table.loc[("oracle", "d3po")]  # the reference: no change of its own; HERO leads by 0.1
    assert np.isnan(oracle.change) and oracle.hero_minus == pytest.approx(0.1)
    with pytest.raises(RegimeComparisonError, match="no task has runs of the person variants"):
        person_table(read_curves(paths), {"oracle": "missing"}, 512)


def test_cli_writes_the_person_section_and_figure(sweep, tmp_path):
    paths, icc = sweep
    for seed in range(3):
        paths.append(_run(tmp_path, "hero", "zT_flip0.2", seed, [0.3, 0.4, 0.4, 0.4, 0.5]))
    out = tmp_path / "out"
    assert main(["regime-comparison", "--variant", "initial-noise=zT", "--icc", str(icc[0]), "--person", "oracle=zT",
                 "--person", "flip0.2=zT_flip0.2", "--out-dir", str(out), "--bootstrap-reps", "20",
                 *map(str, paths)]) == 0
    md = (out / "regime_comparison.md").read_text()
    assert "## An imperfect person" in md and "| safety | flip0.2 (zT_flip0.2) | HERO | 3 | 0.500 |" in md
    assert len(pd.read_csv(out / "regime_person.csv")) == 4
    assert (out / "person_erosion.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RegimeComparisonError, match="'oracle' is named twice"):
        parse_variants(["oracle=zT", "oracle=zT_flip0.1"], "--person", "LABEL", "oracle=zT")
