"""hero_bench.report, hero_bench.plots and the `gather` / `report` commands on synthetic eval.csv files.

The synthetic benchmark: 3 tasks x 4 methods (base, hero, ddpo, d3po) x 5 seeds with known curves.
- base: one row at feedback 0, success BASE[task].
- hero: a checkpoint every 64 feedback up to 512; success BASE + 0.075 k + 0.01 (seed - 2) at epoch k > 0.
- ddpo: every 64 up to 512; success BASE + 0.025 k, identical for every seed (zero-width CIs).
- d3po: every 63 (groups of 7) up to 504; success BASE + 0.04 k, plus 0.1 from epoch 7 on for seeds 0
  and 1 only; in task anomaly that makes exactly 2 of 5 seeds reach 0.5.
success_rate is the primary metric (the task's own prompts).  Transfer (held-out prompts): half the
success, on 128 images, for base, hero and ddpo; the d3po files are written in the old format,
without the transfer columns at all.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hero_bench import report
from hero_bench.cli import main
from hero_bench.results import EVAL_COLUMNS, TRANSFER_COLUMNS

TASKS = {"anomaly": 0.1, "counting": 0.2, "relation": 0.3}
SEEDS = range(5)
BUDGETS = [128, 256, 384, 512]
REPS = 200


def hero_success(base, k, seed):
    return base if k == 0 else base + 0.075 * k + 0.01 * (seed - 2)


def ddpo_success(base, k, seed):
    return base + 0.025 * k


def d3po_success(base, k, seed):
    return base + 0.04 * k + (0.1 if seed in (0, 1) and k >= 7 else 0.0)


CURVES = {"hero": (64, 8, hero_success), "ddpo": (64, 8, ddpo_success), "d3po": (63, 8, d3po_success)}
NO_TRANSFER = {"d3po"}  # written as old eval.csv files, without the transfer columns


def run_rows(task, method, seed):
    base = TASKS[task]
    if method == "base":
        points = [(0, base)]
    else:
        step, epochs, fn = CURVES[method]
        points = [(step * k, fn(base, k, seed)) for k in range(epochs + 1)]
    return [
        dict(tier="toy", task=task, method=method, seed=seed, epoch=k, feedback_used=f, queries=k,
             images_generated=64 * k, success_rate=s, mean_score=s - 0.05, n_eval=256, diversity=0.5,
             **({} if method in NO_TRANSFER else
                dict(transfer_success_rate=s / 2, transfer_mean_score=s / 2 - 0.05, transfer_n_eval=128)),
             oracle="shapes", oracle_version="1.0", label_noise=0.0, backbone="shapesworld",
             config_hash=f"{method}-{seed}", git_sha="0123abc")
        for k, (f, s) in enumerate(points)
    ]


@pytest.fixture(scope="module")
def eval_csvs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for task in TASKS:
        for method in ("base", *CURVES):
            for seed in SEEDS:
                p = root / task / method / f"seed{seed}" / "eval.csv"
                p.parent.mkdir(parents=True)
                columns = [c for c in EVAL_COLUMNS if method not in NO_TRANSFER or c not in TRANSFER_COLUMNS]
                pd.DataFrame(run_rows(task, method, seed), columns=columns).to_csv(p, index=False)
                paths.append(p)
    return paths


@pytest.fixture(scope="module")
def runs(eval_csvs):
    return report.gather(eval_csvs)


@pytest.fixture(scope="module")
def summary(runs):
    return report.summarise(runs, budgets=BUDGETS, threshold=0.5, reps=REPS, seed=0)


def pick(summary, **where):
    g = summary
    for k, v in where.items():
        g = g[g[k] == v]
    assert len(g) == 1, f"{where}: {len(g)} rows"
    return g.iloc[0]


# --------------------------------------------------------------------------------------- gather
def test_gather_concatenates_sorted_tidy(eval_csvs, runs):
    n_rows = sum(len(run_rows(t, m, s)) for t in TASKS for m in ("base", *CURVES) for s in SEEDS)
    assert list(runs.columns) == list(EVAL_COLUMNS)
    assert len(runs) == n_rows
    again = report.gather(list(reversed(eval_csvs)))
    pd.testing.assert_frame_equal(runs, again)  # order of the files does not matter
    keys = runs[["tier", "task", "method", "seed", "feedback_used", "epoch"]].apply(tuple, axis=1).tolist()
    assert keys == sorted(keys)
    assert runs["git_sha"].iloc[0] == "0123abc" and runs["seed"].dtype.kind == "i"


def test_gather_reports_missing_column_with_file_and_column(tmp_path):
    p = tmp_path / "eval.csv"
    pd.DataFrame(run_rows("anomaly", "hero", 0)).drop(columns=["oracle_version"]).to_csv(p, index=False)
    with pytest.raises(report.ResultsFormatError, match=r"eval\.csv: missing column 'oracle_version'"):
        report.gather([p])


def test_gather_reports_bad_values_duplicates_and_missing_files(tmp_path, eval_csvs):
    rows = pd.DataFrame(run_rows("anomaly", "hero", 0))
    rows.loc[3, "success_rate"] = "high"
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    with pytest.raises(report.ResultsFormatError, match=r"bad\.csv: column 'success_rate', line 5: 'high'"):
        report.gather([bad])
    rows.loc[3, "success_rate"] = 1.5
    rows.to_csv(bad, index=False)
    with pytest.raises(report.ResultsFormatError, match=r"in \[0, 1\]"):
        report.gather([bad])
    with pytest.raises(report.ResultsFormatError, match="same checkpoint appears more than once"):
        report.gather([eval_csvs[0], eval_csvs[0]])
    with pytest.raises(report.ResultsFormatError, match="no such file"):
        report.gather([tmp_path / "absent.csv"])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(report.ResultsFormatError, match="empty file"):
        report.gather([tmp_path / "empty.csv"])


def test_gather_reads_transfer_columns_and_old_files_without_them(runs, tmp_path):
    hero = runs[(runs.task == "counting") & (runs.method == "hero") & (runs.seed == 1)]
    assert hero.transfer_success_rate.tolist() == pytest.approx((hero.success_rate / 2).tolist())
    assert set(hero.transfer_n_eval) == {128} and hero.transfer_n_eval.dtype == "Int64"
    # d3po's files predate the transfer columns: they gather, with the columns empty
    d3po = runs[runs.method == "d3po"]
    assert len(d3po) and d3po[list(TRANSFER_COLUMNS)].isna().all().all()
    # an empty transfer cell is allowed in a file that has the columns; a bad value is not
    rows = pd.DataFrame(run_rows("anomaly", "hero", 0))
    rows.loc[2, "transfer_success_rate"] = None
    rows.to_csv(tmp_path / "some.csv", index=False)
    assert report.gather([tmp_path / "some.csv"]).transfer_success_rate.isna().tolist() == [False] * 2 + [True] + [False] * 6
    rows.loc[4, "transfer_success_rate"] = 1.5
    rows.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(report.ResultsFormatError, match=r"column 'transfer_success_rate', line 6: '1\.5' is not a success rate"):
        report.gather([tmp_path / "bad.csv"])


@pytest.mark.parametrize("prompt_set, which", [("train", "the training prompts"), ("eval", "the held-out prompts")])
def test_gather_refuses_single_split_files(tmp_path, prompt_set, which):
    p = tmp_path / "eval_single.csv"
    pd.DataFrame([r | {"prompt_set": prompt_set} for r in run_rows("anomaly", "hero", 0)]).to_csv(p, index=False)
    with pytest.raises(report.ResultsFormatError, match=f"single-split file, rows evaluated on {which} only"):
        report.gather([p])


# ------------------------------------------------------------------------------------ summarise
def test_success_rows_per_budget(summary):
    succ = summary[summary.metric == "success"]
    for task, base in TASKS.items():
        assert set(succ[(succ.task == task) & (succ.method == "base")].budget) == {0}
        for m in CURVES:
            assert set(succ[(succ.task == task) & (succ.method == m)].budget) == {0, *BUDGETS}
        r = pick(succ, task=task, method="base", budget=0)
        assert r.n_seeds == 5 and r.estimate == pytest.approx(base)
        # ddpo is identical over seeds: zero-width interval at its known value, std 0
        for b in BUDGETS:
            r = pick(succ, task=task, method="ddpo", budget=b)
            assert r.estimate == pytest.approx(ddpo_success(base, b // 64, 0))
            assert r.ci_low == r.ci_high == pytest.approx(r.estimate)
            assert r["std"] == pytest.approx(0.0, abs=1e-12)
        # hero varies over seeds: the IQM and a real interval around it
        vals = [hero_success(base, 8, s) for s in SEEDS]
        r = pick(succ, task=task, method="hero", budget=512)
        assert r.estimate == pytest.approx(sps.trim_mean(vals, 0.25))
        assert r["mean"] == pytest.approx(np.mean(vals)) and r["std"] == pytest.approx(np.std(vals, ddof=1))
        assert min(vals) <= r.ci_low < r.estimate < r.ci_high <= max(vals)


def test_transfer_rows_per_budget_only_where_runs_have_them(summary):
    tr = summary[summary.metric == "transfer"]
    assert set(tr.method) == {"base", "hero", "ddpo"}  # d3po's runs have no transfer values
    for task, base in TASKS.items():
        assert set(tr[(tr.task == task) & (tr.method == "base")].budget) == {0}
        assert set(tr[(tr.task == task) & (tr.method == "hero")].budget) == {0, *BUDGETS}
        r = pick(tr, task=task, method="base", budget=0)
        assert r.n_seeds == 5 and r.estimate == pytest.approx(base / 2)
        vals = [hero_success(base, 8, s) / 2 for s in SEEDS]
        r = pick(tr, task=task, method="hero", budget=512)
        assert r.estimate == pytest.approx(sps.trim_mean(vals, 0.25)) and r.n_seeds == 5 and r.feedback_max == 512
        assert min(vals) <= r.ci_low < r.estimate < r.ci_high <= max(vals)
        # the primary success rows are untouched by the transfer values
        assert pick(summary, metric="success", task=task, method="hero", budget=512).estimate == pytest.approx(
            2 * r.estimate)
    agg = pick(tr, task=report.AGGREGATE_TASK, method="ddpo", budget=256)
    assert agg.n_tasks == 3 and agg.n_seeds == 15
    assert agg.estimate == pytest.approx(sps.trim_mean([ddpo_success(b, 4, 0) / 2 for b in TASKS.values() for _ in SEEDS], 0.25))


def test_no_transfer_rows_without_transfer_values(runs):
    old = runs.copy()
    old[list(TRANSFER_COLUMNS)] = np.nan
    s = report.summarise(old, budgets=BUDGETS, reps=10)
    assert "transfer" not in set(s.metric) and not s[s.metric == "success"].empty
    assert "Transfer" not in report.render_markdown(s)


def test_d3po_is_read_as_a_step_function_at_shared_budgets(summary):
    succ = summary[summary.metric == "success"]
    for task, base in TASKS.items():
        # budget 128 -> its checkpoint at 126 (epoch 2), 384 -> 378 (epoch 6), 512 -> 504 (epoch 8)
        for b, k in [(128, 2), (256, 4), (384, 6)]:
            assert pick(succ, task=task, method="d3po", budget=b).estimate == pytest.approx(base + 0.04 * k)
        final = [d3po_success(base, 8, s) for s in SEEDS]
        assert pick(succ, task=task, method="d3po", budget=512).estimate == pytest.approx(sps.trim_mean(final, 0.25))
        assert pick(succ, task=task, method="d3po", budget=512).feedback_max == 504


def test_auc_and_feedback_to_threshold(summary):
    auc = pick(summary, metric="auc", task="counting", method="ddpo")
    expected = sum(ddpo_success(0.2, k, 0) * 64 for k in range(8)) / 512
    assert auc.estimate == pytest.approx(expected) and auc.ci_low == pytest.approx(auc.ci_high)
    # d3po on anomaly: only seeds 0 and 1 reach 0.5, at 504; the median seed is censored
    ftt = pick(summary, metric="feedback_to_threshold", task="anomaly", method="d3po")
    assert ftt.n_reached == 2 and ftt.n_seeds == 5 and bool(ftt.censored) and ftt.estimate == 512
    assert ftt.threshold == 0.5
    # hero on anomaly: every seed reaches 0.5 at the first epoch k with BASE + 0.075k + 0.01(s-2) >= 0.5
    needed = [64 * next(k for k in range(9) if hero_success(0.1, k, s) >= 0.5) for s in SEEDS]
    ftt = pick(summary, metric="feedback_to_threshold", task="anomaly", method="hero")
    assert ftt.n_reached == 5 and not bool(ftt.censored) and ftt.estimate == np.median(needed)
    assert summary[(summary.metric == "feedback_to_threshold") & (summary.method == "base")].empty


def test_feedback_to_gain_is_measured_from_each_task_s_base(summary, runs):
    # the default gain 0.15 over the run's own feedback-0 success, whatever the task's base rate:
    # DDPO (+0.025 per epoch) needs 6 epochs = 384 on every task, D3PO (+0.04) 4 groups of 63
    for task in TASKS:
        ddpo = pick(summary, metric="feedback_to_gain", task=task, method="ddpo")
        assert ddpo.threshold == report.DEFAULT_GAIN == 0.15
        assert ddpo.estimate == 384 and ddpo.n_reached == 5 and not bool(ddpo.censored)
        assert pick(summary, metric="feedback_to_gain", task=task, method="d3po").estimate == 4 * 63
    # hero gains 0.075 k + 0.01 (seed - 2) at epoch k: seeds 0-1 need 3 epochs, seeds 2-4 need 2
    needed = [64 * next(k for k in range(1, 9) if hero_success(0.1, k, s) - 0.1 >= 0.15 - 1e-9) for s in SEEDS]
    hero = pick(summary, metric="feedback_to_gain", task="anomaly", method="hero")
    assert hero.estimate == np.median(needed) == 128
    # a gain no run reaches within the budget is censored for every seed, never dropped
    s = report.summarise(runs, budgets=BUDGETS, gain=0.5, reps=10)
    ddpo = pick(s, metric="feedback_to_gain", task="relation", method="ddpo")
    assert bool(ddpo.censored) and ddpo.n_reached == 0 and ddpo.estimate == 512
    assert s[(s.metric == "feedback_to_gain") & (s.method == "base")].empty


def test_probability_of_improvement_and_feedback_ratio(summary):
    poi = summary[summary.metric == "prob_improvement"]
    assert set(poi.method) == {"hero"} and set(poi.baseline) == {"base", "ddpo", "d3po"}
    r = pick(poi, task="relation", baseline="ddpo")
    assert r.estimate == 1.0 and r.ci_low == r.ci_high == 1.0 and r.budget == 512
    assert set(poi.task) == {*TASKS, report.AGGREGATE_TASK}
    fr = pick(summary, metric="feedback_ratio", task="anomaly")
    target = sps.trim_mean([d3po_success(0.1, 8, s) for s in SEEDS], 0.25)
    # hero's IQM over seeds at epoch k is BASE + 0.075 k (the seed offsets are symmetric)
    k = next(k for k in range(9) if 0.1 + 0.075 * k >= target)
    assert fr.threshold == pytest.approx(target) and fr.reference_feedback == 504
    assert fr.candidate_feedback == 64 * k and fr.estimate == pytest.approx(504 / (64 * k))
    assert fr.method == "hero" and fr.baseline == "d3po" and not bool(fr.censored)


def test_aggregate_rows_and_provenance(summary):
    agg = pick(summary, metric="success", task=report.AGGREGATE_TASK, method="ddpo", budget=256)
    assert agg.n_tasks == 3 and agg.n_seeds == 15
    assert agg.estimate == pytest.approx(sps.trim_mean([ddpo_success(b, 4, 0) for b in TASKS.values() for _ in SEEDS], 0.25))
    r = pick(summary, metric="success", task="counting", method="hero", budget=128)
    assert (r.oracle, r.oracle_version, r.backbone, r.git_sha) == ("shapes", "1.0", "shapesworld", "0123abc")
    assert r.n_config_hashes == 5 and r.bootstrap_reps == REPS and r.bootstrap_seed == 0
    assert r.ci_level == pytest.approx(0.95)
    assert list(summary.columns) == list(report.SUMMARY_COLUMNS)


def test_summarise_is_deterministic_and_seeded(runs, summary):
    again = report.summarise(runs, budgets=BUDGETS, threshold=0.5, reps=REPS, seed=0)
    pd.testing.assert_frame_equal(summary, again)
    other = report.summarise(runs, budgets=BUDGETS, threshold=0.5, reps=REPS, seed=1)
    assert not np.allclose(summary.ci_low.astype(float).fillna(-1), other.ci_low.astype(float).fillna(-1))


def test_default_budgets_are_heros_checkpoints(runs):
    assert report.default_budgets(runs) == [64 * k for k in range(1, 9)]
    s = report.summarise(runs[runs.task == "counting"], reps=20)
    assert sorted(set(s[s.metric == "success"].budget)) == [0] + [64 * k for k in range(1, 9)]
    assert s[s.task == report.AGGREGATE_TASK].empty  # a single task: no aggregate


def test_summarise_errors(runs):
    no_base = runs[~((runs.method == "hero") & (runs.seed == 3) & (runs.feedback_used == 0))]
    with pytest.raises(report.ResultsFormatError, match="method=hero seed=3 has no feedback_used = 0 row"):
        report.summarise(no_base, budgets=BUDGETS, reps=10)
    with pytest.raises(report.ResultsFormatError, match="threshold"):
        report.summarise(runs, budgets=BUDGETS, threshold=2.0, reps=10)
    for gain in (0.0, -0.1, 1.5):
        with pytest.raises(report.ResultsFormatError, match=r"gain must be a success-rate difference in \(0, 1\]"):
            report.summarise(runs, budgets=BUDGETS, gain=gain, reps=10)
    with pytest.raises(report.ResultsFormatError, match="budgets"):
        report.summarise(runs, budgets=[0, 128], reps=10)


def test_mixed_oracle_versions_warn(runs):
    mixed = runs.copy()
    mixed.loc[(mixed.task == "anomaly") & (mixed.method == "ddpo"), "oracle_version"] = "2.0"
    with pytest.warns(UserWarning, match="anomaly: runs disagree on oracle_version"):
        report.summarise(mixed[mixed.task == "anomaly"], budgets=BUDGETS, reps=10)


def test_runs_of_a_later_task_version_beside_unrecorded_ones_warn(runs):
    """An empty task_version (an eval.csv older than the column) means version 1."""
    anomaly = runs[runs.task == "anomaly"].copy()
    anomaly["task_version"] = ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.summarise(anomaly, budgets=BUDGETS, reps=10)  # all unrecorded: one version
        anomaly.loc[anomaly.method == "ddpo", "task_version"] = "1"
        report.summarise(anomaly, budgets=BUDGETS, reps=10)  # unrecorded beside 1: the same
    anomaly.loc[anomaly.method == "ddpo", "task_version"] = "2"
    with pytest.warns(UserWarning, match=r"anomaly: runs disagree on task_version \(some eval.csv files predate "
                                         r"the column, so version 1; others record 2\)"):
        report.summarise(anomaly, budgets=BUDGETS, reps=10)


# ------------------------------------------------------------------------------------- markdown
def test_markdown_tables(summary):
    md = report.render_markdown(summary)
    assert "| task | method | n | 0 | 128 | 256 | 384 | 512 | norm. AUC 0–512 |" in md
    ddpo = ddpo_success(0.3, 4, 0)
    assert f"| relation | DDPO | 5 | 0.30 [0.30, 0.30] | {ddpo_success(0.3, 2, 0):.2f} [" in md
    assert f"| {ddpo:.2f} [{ddpo:.2f}, {ddpo:.2f}] |" in md
    assert "| relation | base | 5 | 0.30 [0.30, 0.30] | — | — | — | — | — |" in md
    assert "> 512 (2/5 reached)" in md  # d3po on anomaly
    assert "(5/5 reached)" in md
    assert "| P(HERO > base) | P(HERO > DDPO) | P(HERO > D3PO) |" in md
    assert "1.00 [1.00, 1.00]" in md
    assert "95% stratified bootstrap CI of the IQM over seeds (200 resamples, seed 0" in md
    assert "n = 5 seeds per task and method" in md
    assert "one image labelled" in md
    # d3po's runs end at 504: its 512 cells read that checkpoint and are marked
    d3 = pick(summary, metric="success", task="counting", method="d3po", budget=512)
    assert f"| {d3.estimate:.2f} [{d3.ci_low:.2f}, {d3.ci_high:.2f}]† |" in md
    assert "†: some runs stopped before this budget (last checkpoints: D3PO at 504 feedback" in md
    assert md.count("†") == 1 + 4  # the footnote + d3po at 512 in 3 tasks and all tasks
    assert "| anomaly | HERO | shapes | 1.0 | — | 0.0 | shapesworld | 0123abc | 5 |" in md  # no task_version: written before it
    fr = pick(summary, metric="feedback_ratio", task="anomaly")
    assert f"| anomaly | {fr.threshold:.2f} | 504 | {int(fr.candidate_feedback)} | {fr.estimate:.2f}× |" in md


def test_markdown_leads_with_the_primary_metric_then_transfer(summary):
    md = report.render_markdown(summary)
    primary = md.index("### Success rate at fixed feedback budgets")
    transfer = md.index("### Transfer: success on held-out prompts at fixed feedback budgets")
    assert primary < transfer < md.index("### Feedback to reach success")
    assert "success on the task's own prompts (fresh evaluation noise)" in md[primary:transfer]
    assert "held-out evaluation prompts" in md[transfer:]
    section = md[transfer:md.index("### Feedback to reach success")]
    assert "| task | method | n | 0 | 128 | 256 | 384 | 512 |" in section
    assert "| relation | base | 5 | 0.15 [0.15, 0.15] | — | — | — | — |" in section
    assert "| relation | DDPO | 5 | 0.15 [0.15, 0.15] |" in section
    assert "D3PO" not in section.split("*Transfer")[0]  # no transfer values, no row


def test_markdown_shows_censored_ratio(runs):
    # make hero weak on relation so it never reaches d3po's final success
    weak = runs[runs.task == "relation"].copy()
    is_hero = weak.method == "hero"
    weak.loc[is_hero, "success_rate"] = 0.3 + 0.01 * (weak.loc[is_hero, "feedback_used"] > 0)
    s = report.summarise(weak, budgets=BUDGETS, reps=20)
    fr = pick(s, metric="feedback_ratio", task="relation")
    assert bool(fr.censored) and fr.candidate_feedback == 512
    assert f"< {504 / 512:.2f}× (not reached)" in report.render_markdown(s)


# -------------------------------------------------------------------------------------- figures
def test_plots_write_png(summary, tmp_path):
    from hero_bench import plots

    plots.plot_curves(summary, tmp_path / "figs" / "curves.png")
    plots.plot_final(summary, tmp_path / "figs" / "final.png")
    for name in ("curves.png", "final.png"):
        data = (tmp_path / "figs" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["curves.png", "final.png"]  # no temp files


# ------------------------------------------------------------------------------------------ CLI
def test_cli_gather_and_report(eval_csvs, tmp_path, capsys):
    runs_csv = tmp_path / "results" / "summary" / "runs.csv"
    assert main(["gather", "--out", str(runs_csv), *map(str, eval_csvs)]) == 0
    assert len(pd.read_csv(runs_csv)) == sum(len(run_rows(t, m, s)) for t in TASKS for m in ("base", *CURVES) for s in SEEDS)
    out = tmp_path / "results"
    assert main(["report", "--runs", str(runs_csv), "--out-dir", str(out), "--budgets", "512,128,256,384",
                 "--threshold", "0.5", "--gain", "0.3", "--reps", "50", "--seed", "3"]) == 0
    summary = pd.read_csv(out / "summary" / "summary.csv")
    assert set(summary[summary.metric == "success"].budget) == {0, 128, 256, 384, 512}
    assert set(summary.bootstrap_seed) == {3} and set(summary.bootstrap_reps) == {50}
    md = (out / "tables" / "summary.md").read_text()
    assert "> 512 (2/5 reached)" in md
    # --gain reaches the table: D3PO gains 0.3 at its 8th group (0.32) on seeds 0-1 only
    assert "### Feedback to gain +0.3 over the base model" in md
    assert set(summary[summary.metric == "feedback_to_gain"].threshold) == {0.3}
    for png in ("success_vs_feedback.png", "final_success.png"):
        assert (out / "figures" / png).stat().st_size > 0


def test_cli_errors_are_one_line(tmp_path, capsys):
    p = tmp_path / "eval.csv"
    pd.DataFrame(run_rows("anomaly", "hero", 0)).drop(columns=["task"]).to_csv(p, index=False)
    assert main(["gather", "--out", str(tmp_path / "runs.csv"), str(p)]) == 2
    err = capsys.readouterr().err
    assert "missing column 'task'" in err and str(p) in err and "Traceback" not in err
    assert not (tmp_path / "runs.csv").exists()
    with pytest.raises(SystemExit):
        main(["report", "--runs", str(p), "--out-dir", str(tmp_path), "--budgets", "128,abc"])
    assert "comma-separated positive integers" in capsys.readouterr().err


def test_cli_defaults_match_the_library_and_help_stays_light():
    import subprocess
    import sys

    from hero_bench.commands import report as cmd

    assert (cmd.DEFAULT_THRESHOLD, cmd.DEFAULT_GAIN, cmd.DEFAULT_REPS, cmd.DEFAULT_SEED) == (
        report.DEFAULT_THRESHOLD, report.DEFAULT_GAIN, report.DEFAULT_REPS, report.DEFAULT_SEED)
    code = ("import sys; from hero_bench.commands import gather, report; import argparse; "
            "p = argparse.ArgumentParser(); report.add_arguments(p); gather.add_arguments(p.add_subparsers().add_parser('g')); "
            "print('pandas' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
