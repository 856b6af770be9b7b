"""hero-bench compare: a fresh summary against published 95% CIs, on hand-made summaries."""

from __future__ import annotations

import pandas as pd
import pytest

from hero_bench.cli import main
from hero_bench.reproduction import ReproductionError, compare, eval_resolution

COLS = ["tier", "task", "method", "metric", "budget", "estimate", "ci_low", "ci_high"]


def _summary(path, rows):
    pd.DataFrame(rows, columns=COLS).to_csv(path, index=False)
    return path


@pytest.fixture
def published(tmp_path):
    return _summary(tmp_path / "published.csv", [
        ("toy", "anomaly", "base", "success", 0, 0.30, 0.30, 0.30),  # zero-width: same eval noise
        ("toy", "anomaly", "ddpo", "success", 128, 0.50, 0.40, 0.60),
        ("toy", "anomaly", "ddpo", "auc", None, 0.45, 0.40, 0.50),
        ("toy", "anomaly", "ddpo", "prob_improvement", None, 0.9, 0.8, 1.0),  # not compared
    ])


def test_inside_outside_and_slack(tmp_path, published):
    fresh = _summary(tmp_path / "fresh.csv", [
        ("toy", "anomaly", "base", "success", 0, 0.33, 0.33, 0.33),
        ("toy", "anomaly", "ddpo", "success", 128, 0.61, 0.5, 0.7),
        ("toy", "anomaly", "ddpo", "auc", None, 0.45, 0.42, 0.48),
        ("toy", "anomaly", "ddpo", "prob_improvement", None, 0.1, 0.0, 0.2),
    ])
    strict = compare(fresh, published, slack=0.0).set_index(["method", "metric"])
    assert list(strict.inside) == [False, True, False]  # base 0.33 vs [0.30]; ddpo 0.61 vs [0.40, 0.60]
    assert len(strict) == 3  # prob_improvement is not a reproduction cell
    # one image of 32 (0.03125) on each side: 0.33 is within 0.30 + 0.03125, 0.61 within 0.60 + 0.03125
    assert compare(fresh, published, slack=1 / 32).inside.all()
    assert not compare(fresh, published, slack=0.005).inside.all()


def test_cli_exit_status_and_markdown(tmp_path, published, capsys):
    fresh = _summary(tmp_path / "fresh.csv", [("toy", "anomaly", "ddpo", "success", 128, 0.9, 0.8, 1.0)])
    out = tmp_path / "reproduction.md"
    assert main(["compare", str(fresh), str(published), "--slack", "0", "--out", str(out)]) == 1
    assert "outside: anomaly/ddpo success@128" in capsys.readouterr().out
    assert "1 of 1 cells fall outside" in out.read_text()
    assert main(["compare", str(fresh), str(published), "--slack", "0", "--exit-zero"]) == 0
    assert main(["compare", str(published), str(published)]) == 0


def test_results_folders_and_default_slack_from_runs(tmp_path, published):
    folder = tmp_path / "results"
    (folder / "summary").mkdir(parents=True)
    _summary(folder / "summary" / "summary.csv", [("toy", "anomaly", "base", "success", 0, 0.3125, 0.3125, 0.3125)])
    pd.DataFrame({"n_eval": [32, 64]}).to_csv(folder / "summary" / "runs.csv", index=False)
    assert eval_resolution(folder / "summary" / "runs.csv") == 1 / 32
    assert main(["compare", str(folder), str(published)]) == 0  # 0.3125 within 0.30 + 1/32


def test_bad_input_names_the_problem(tmp_path, published):
    with pytest.raises(ReproductionError, match="does not exist"):
        compare(tmp_path / "nope.csv", published)
    pd.DataFrame({"task": ["a"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ReproductionError, match="lacks the columns"):
        compare(tmp_path / "bad.csv", published)
    other = _summary(tmp_path / "other.csv", [("toy", "counting", "hero", "success", 64, 0.2, 0.1, 0.3)])
    with pytest.raises(ReproductionError, match="share no"):
        compare(other, published)
    assert main(["compare", str(tmp_path / "nope.csv"), str(published)]) == 2


def test_a_different_design_is_not_a_reproduction(tmp_path):
    cols = COLS + ["n_seeds", "oracle_version"]
    pd.DataFrame([("toy", "anomaly", "base", "success", 0, 0.3, 0.3, 0.3, 5, 1)], columns=cols).to_csv(
        tmp_path / "published.csv", index=False)
    pd.DataFrame([("toy", "anomaly", "base", "success", 0, 0.3, 0.3, 0.3, 3, 2)], columns=cols).to_csv(
        tmp_path / "fresh.csv", index=False)
    row = compare(tmp_path / "fresh.csv", tmp_path / "published.csv").iloc[0]
    assert not row.inside and row.mismatch == "n_seeds 3 vs 5; oracle_version 2 vs 1"
    out = tmp_path / "reproduction.md"
    assert main(["compare", str(tmp_path / "fresh.csv"), str(tmp_path / "published.csv"), "--out", str(out)]) == 1
    # the headline says why, and does not call a cell of another design an irreproducible number
    text = out.read_text()
    assert "**1 of 1 cells are not comparable**: they come from another design (n_seeds 3 vs 5; " \
           "oracle_version 2 vs 1)" in text
    assert "fall outside" not in text


def test_another_task_definition_is_not_a_reproduction(tmp_path):
    """A task whose prompts changed (``Task.version``) measures another success rate, even when the
    numbers happen to agree."""
    cols = COLS + ["task_version"]
    pd.DataFrame([("toy", "relation", "ddpo", "success", 512, 0.3, 0.2, 0.4, 1)], columns=cols).to_csv(
        tmp_path / "published.csv", index=False)
    pd.DataFrame([("toy", "relation", "ddpo", "success", 512, 0.3, 0.2, 0.4, 2)], columns=cols).to_csv(
        tmp_path / "fresh.csv", index=False)
    row = compare(tmp_path / "fresh.csv", tmp_path / "published.csv").iloc[0]
    assert not row.inside and row.mismatch == "task_version 2 vs 1"


def test_the_headline_counts_outside_and_not_comparable_cells_apart(tmp_path):
    from hero_bench.reproduction import headline

    def table(inside, mismatch):
        return pd.DataFrame({"inside": inside, "mismatch": mismatch})

    assert headline(table([True, True], ["", ""])) == "**All 2 cells reproduce.**"
    both = headline(table([True, False, False, False], ["", "", "oracle_version 6 vs 5", "oracle_version 6 vs 5"]))
    assert both.startswith("**1 of 4 cells fall outside the published intervals** (marked ✗ below). "
                           "**2 of 4 cells are not comparable**: they come from another design "
                           "(oracle_version 6 vs 5)")


def test_an_aggregate_over_other_tasks_is_not_a_reproduction(tmp_path):
    """The 'all-tasks' cell of a run whose second task changed (same n_tasks) compares nothing."""
    def rows(second):
        return [("toy", "sanity", "ddpo", "success", 64, 0.5, 0.4, 0.6),
                ("toy", second, "ddpo", "success", 64, 0.3, 0.2, 0.4),
                ("toy", "all-tasks", "ddpo", "success", 64, 0.4, 0.3, 0.5)]
    published = _summary(tmp_path / "published.csv", rows("anomaly"))
    same = compare(_summary(tmp_path / "same.csv", rows("anomaly")), published).set_index("task")
    assert same.inside.all() and (same.mismatch == "").all()
    other = compare(_summary(tmp_path / "other.csv", rows("preference")), published).set_index("task")
    assert other.loc["all-tasks", "mismatch"] == "tasks preference,sanity vs anomaly,sanity"
    assert not other.loc["all-tasks", "inside"] and other.loc["sanity", "inside"]
