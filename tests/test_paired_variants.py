"""scripts/paired_variants.py: a candidate against a reference on paired sweep runs, with a margin."""

from __future__ import annotations

import pytest

from conftest import load_script


def _run(root, task, method, variant, seed, successes, first_kl=None):
    """A run whose success is ``successes`` at 0, 64, 128 labels (AUC: the step curve over 0-128,
    so only the first two values count, each for half)."""
    folder = root / "toy" / task / method / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    rows = "".join(f"{i},{i * 64},{s}\n" for i, s in enumerate(successes))
    (folder / "eval.csv").write_text("epoch,feedback_used,success_rate\n" + rows)
    (folder / "DONE.json").write_text("{}")
    if first_kl is not None:
        (folder / "train_log.csv").write_text(f"epoch,approx_kl\n1,{first_kl}\n2,0.01\n")


def _grid(root, candidate_shift, candidate_kl=0.01):
    """Three (task, seed) pairs of ddpo: the candidate's curve moved by ``candidate_shift`` (plus a
    little noise, so the interval is finite), the reference jumping in its first round."""
    for i, (task, seed) in enumerate([("a", 1), ("a", 2), ("b", 1)]):
        base = 0.2 + 0.1 * i
        _run(root, task, "ddpo", "ref", seed, [base, base + 0.1, base + 0.2], first_kl=2.0)
        jitter = (-0.01, 0.0, 0.01)[i]
        _run(root, task, "ddpo", "cand", seed, [base, base + 0.1 + candidate_shift + jitter,
                                                base + 0.2 + candidate_shift + jitter], first_kl=candidate_kl)


def test_a_candidate_within_the_margin_and_calmer_is_adopted(tmp_path, capsys):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01)
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)
    assert row["pairs"] == 3 and row["diff"] == pytest.approx(-0.005, abs=1e-9)
    assert -0.05 < row["low"] < row["diff"] < row["high"]
    assert (row["kl_reference"], row["kl_candidate"]) == (2.0, 0.01) and row["adopted"]
    assert script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand"]) == 0
    assert "**yes**" in capsys.readouterr().out


def test_a_candidate_that_may_cost_more_than_the_margin_is_not(tmp_path):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.2)
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)
    assert row["low"] < -0.05 and not row["adopted"]


def test_a_candidate_that_is_not_calmer_is_not_adopted(tmp_path):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=0.1, candidate_kl=3.0)
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)
    assert row["low"] > 0 and not row["adopted"]


def test_unpaired_runs_stay_out_of_the_difference(tmp_path):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01)
    _run(tmp_path, "c", "ddpo", "cand", 9, [0.0, 0.9, 0.9], first_kl=0.01)  # no reference run beside it
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)["pairs"] == 3


def test_tasks_outside_the_list_are_left_out(tmp_path):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01)  # tasks a (2 pairs) and b (1)
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05, tasks=["a"])["pairs"] == 2
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)["pairs"] == 3


def test_bad_arguments_name_what_is_expected(tmp_path, capsys):
    script = load_script("paired_variants")
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--reference", "ddpo", "--candidate", "ddpo=cand"])
    assert "expected METHOD=VARIANT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "hero=cand"])
    assert "only a reference or only a candidate" in capsys.readouterr().err


def test_several_folders_pool_their_pairs_and_a_run_in_two_is_refused(tmp_path):
    script = load_script("paired_variants")
    first, second = tmp_path / "first", tmp_path / "second"
    _grid(first, candidate_shift=-0.01)  # 3 pairs
    _run(second, "a", "ddpo", "ref", 7, [0.1, 0.2, 0.3], first_kl=2.0)
    _run(second, "a", "ddpo", "cand", 7, [0.1, 0.4, 0.5], first_kl=0.01)
    assert script.compare([first, second], "ddpo", "ref", "cand", margin=0.05)["pairs"] == 4
    _run(second, "a", "ddpo", "ref", 1, [0.1, 0.2, 0.3], first_kl=2.0)  # also in `first`
    with pytest.raises(SystemExit, match="the same run is in two folders"):
        script.compare([first, second], "ddpo", "ref", "cand", margin=0.05)


def test_a_run_still_training_is_left_out(tmp_path, capsys):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01)
    _run(tmp_path, "c", "ddpo", "ref", 4, [0.1, 0.2, 0.3], first_kl=2.0)
    _run(tmp_path, "c", "ddpo", "cand", 4, [0.1], first_kl=0.01)  # only its epoch-0 row so far
    (tmp_path / "toy" / "c" / "ddpo" / "cand" / "seed4" / "DONE.json").unlink()
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)["pairs"] == 3
    assert "seed4: no DONE.json, left out" in capsys.readouterr().err


def test_with_collapse_below_stability_means_fewer_collapsed_runs(tmp_path, capsys):
    script = load_script("paired_variants")
    # the candidate is calmer in its first round but collapses as often: approx_kl alone adopts it
    _grid(tmp_path, candidate_shift=-0.01)
    for variant, seed, kl in (("ref", 5, 2.0), ("cand", 5, 0.01)):
        _run(tmp_path, "b", "ddpo", variant, seed, [0.2, 0.3, 0.0], first_kl=kl)
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2)["adopted"]
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05)
    assert (row["collapsed_reference"], row["collapsed_candidate"]) == (1, 1) and not row["adopted"]
    # one more pair where only the reference ends at 0: now the candidate is the steadier one
    _run(tmp_path, "b", "ddpo", "ref", 6, [0.2, 0.1, 0.0], first_kl=2.0)
    _run(tmp_path, "b", "ddpo", "cand", 6, [0.2, 0.3, 0.3], first_kl=3.0)  # not calmer: kl higher
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05)
    assert (row["collapsed_reference"], row["collapsed_candidate"], row["pairs"]) == (2, 1, 5) and row["adopted"]
    # a collapsed run without a partner does not count
    _run(tmp_path, "z", "ddpo", "ref", 1, [0.2, 0.0, 0.0], first_kl=2.0)
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05)["collapsed_reference"] == 2
    assert script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand", "--margin", "0.2",
                        "--collapse-below", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "| 2 → 1 of 5 |" in out and "fewer collapsed" in out and "**yes**" in out
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand", "--collapse-below", "5"])
    assert "--collapse-below must be a success rate in [0, 1]" in capsys.readouterr().err


def test_with_fall_by_a_run_that_rises_and_loses_it_counts_as_unstable(tmp_path, capsys):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01)  # 3 pairs, every run ends at its best
    # the reference rises to 0.6 and falls back to 0.3; the candidate climbs steadily to 0.4
    _run(tmp_path, "b", "ddpo", "ref", 5, [0.2, 0.6, 0.3], first_kl=2.0)
    _run(tmp_path, "b", "ddpo", "cand", 5, [0.2, 0.35, 0.4], first_kl=3.0)
    # neither collapses, so collapses alone keep the reference
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05)
    assert (row["collapsed_reference"], row["collapsed_candidate"]) == (0, 0) and not row["adopted"]
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05, fall_by=0.2)
    assert (row["fallen_reference"], row["fallen_candidate"]) == (1, 0)
    assert (row["unstable_reference"], row["unstable_candidate"]) == (1, 0) and row["adopted"]
    # a fall of exactly the threshold does not count (more than Y below the best)
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, fall_by=0.3)
    assert (row["fallen_reference"], row["unstable_reference"]) == (0, 0) and not row["adopted"]
    # a run both collapsed and fallen is one unstable run
    _run(tmp_path, "b", "ddpo", "ref", 6, [0.2, 0.5, 0.0], first_kl=2.0)
    _run(tmp_path, "b", "ddpo", "cand", 6, [0.2, 0.3, 0.3], first_kl=3.0)
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.2, collapse_below=0.05, fall_by=0.2)
    assert (row["collapsed_reference"], row["fallen_reference"], row["unstable_reference"]) == (1, 2, 2)
    assert script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand", "--margin", "0.2",
                        "--collapse-below", "0.05", "--fall-by", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "| 1 → 0 of 5 | 2 → 0 of 5 | 2 → 0 of 5 |" in out and "fewer unstable" in out and "**yes**" in out
    with pytest.raises(SystemExit):
        script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand", "--fall-by", "-0.1"])
    assert "--fall-by must be a difference of success rates in [0, 1]" in capsys.readouterr().err


def test_superior_adopts_a_better_candidate_that_is_not_steadier(tmp_path):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=0.1, candidate_kl=3.0)  # better AUC (lower end > 0), not calmer
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)
    assert row["low"] > 0 and not row["adopted"]
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05, superior_adopts=True)["adopted"]
    # a worse one is not adopted by it
    worse = tmp_path / "worse"
    _grid(worse, candidate_shift=-0.2, candidate_kl=0.01)
    assert not script.compare(worse, "ddpo", "ref", "cand", margin=0.05, superior_adopts=True)["adopted"]


def _pull_log(root, task, variant, seed, pulls):
    """The run's train log with a no_success_pull column holding ``pulls`` (one value per round)."""
    folder = root / "toy" / task / "ddpo" / variant / f"seed{seed}"
    rows = "".join(f"{i + 1},0.01,{p}\n" for i, p in enumerate(pulls))
    (folder / "train_log.csv").write_text("epoch,approx_kl,no_success_pull\n" + rows)


def test_a_candidate_run_that_never_acted_stands_in_for_its_reference(tmp_path, capsys):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=0.0)  # 3 pairs, differences -0.005, 0, +0.005
    for task, seed in (("c", 1), ("c", 2)):  # candidate runs without a reference run
        _run(tmp_path, task, "ddpo", "cand", seed, [0.3, 0.5, 0.6])
    _pull_log(tmp_path, "c", "cand", 1, [0, 0, ""])  # never pulled: the reference's run
    _pull_log(tmp_path, "c", "cand", 2, [0, 0.4, 0])  # pulled in round 2: needs its own reference
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)["pairs"] == 3
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05, same_unless="no_success_pull")
    assert (row["pairs"], row["stand_ins"]) == (4, 1)
    assert row["auc_reference"] == pytest.approx(row["auc_candidate"]) and row["diff"] == pytest.approx(0)
    # a reference run of its own wins over a stand-in
    _run(tmp_path, "c", "ddpo", "ref", 1, [0.3, 0.1, 0.1])
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05, same_unless="no_success_pull")
    assert (row["pairs"], row["stand_ins"]) == (4, 0) and row["diff"] == pytest.approx(0.2 / 4)
    assert script.main([str(tmp_path), "--reference", "ddpo=ref", "--candidate", "ddpo=cand",
                        "--same-unless", "no_success_pull"]) == 0
    assert "| 4 |" in capsys.readouterr().out


def test_require_gain_asks_for_a_positive_mean_difference(tmp_path, capsys):
    script = load_script("paired_variants")
    _grid(tmp_path, candidate_shift=-0.01, candidate_kl=0.01)  # within the margin, calmer, a little worse
    assert script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05)["adopted"]
    row = script.compare(tmp_path, "ddpo", "ref", "cand", margin=0.05, require_gain=True)
    assert row["diff"] < 0 and not row["adopted"]
    better = tmp_path / "better"
    _grid(better, candidate_shift=0.01, candidate_kl=3.0)  # a little better, not calmer
    assert script.compare(better, "ddpo", "ref", "cand", margin=0.05, require_gain=True)["adopted"]
    assert script.main([str(better), "--reference", "ddpo=ref", "--candidate", "ddpo=cand", "--require-gain"]) == 0
    assert "mean above 0" in capsys.readouterr().out
