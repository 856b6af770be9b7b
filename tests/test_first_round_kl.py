"""scripts/first_round_kl.py reads a PPO run's first-round jump from its train log."""

from __future__ import annotations

import pytest
import yaml

from conftest import load_script


def _run(folder, method, warmup, kls, success):
    folder.mkdir(parents=True)
    section = {"ppo": {"warmup_steps": warmup}} if method != "d3po" else {"warmup_steps": warmup}
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": method, "task": "preference", "seed": 7,
                                                        method: section}))
    header = "epoch,approx_kl,train_success\n" if method != "d3po" else "epoch,pair_accuracy,train_success\n"
    rows = [f"{i + 1},{k},{s}\n" for i, (k, s) in enumerate(zip(kls, success))]
    (folder / "train_log.csv").write_text(header + "".join(rows))
    return folder


def test_first_round_and_emptied_rounds(tmp_path, capsys):
    script = load_script("first_round_kl")
    jump = _run(tmp_path / "a", "ddpo", 0, [27.1, 1.5, 0.01, 0.0], [0.12, 0.0, 0.05, 0.0])
    calm = _run(tmp_path / "b", "ddpo", 16, [0.01, 0.002, 0.003], [0.12, 0.16, 0.2])
    row = script.read_run(jump, rounds=3)
    assert (row["kl_first"], row["kl_later_max"], row["warmup"]) == (27.1, 1.5, 0)
    assert row["success"] == [0.12, 0.0, 0.05] and row["emptied"]
    assert not script.read_run(calm, rounds=3)["emptied"]
    # a round with no positive after round 3 is outside the window asked for
    late = _run(tmp_path / "c", "hero", 0, [0.3, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.0])
    assert not script.read_run(late, rounds=3)["emptied"]
    assert script.main([str(jump), str(calm), "--rounds", "3"]) == 0
    out = capsys.readouterr().out
    assert "ddpo warmup 0: 1 runs, first-round kl median 27.100" in out
    assert "a round with no positive by round 3: 1 of 1" in out
    assert "ddpo warmup 16: 1 runs, first-round kl median 0.010" in out


def test_d3po_runs_are_skipped_and_a_missing_log_is_an_error(tmp_path, capsys):
    script = load_script("first_round_kl")
    d3po = _run(tmp_path / "d", "d3po", 0, [0.5], [0.3])
    assert script.read_run(d3po, rounds=3) is None
    assert script.main([str(d3po)]) == 1
    assert "no approx_kl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "nothing")])
