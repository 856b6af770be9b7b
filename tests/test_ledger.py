"""The feedback ledger (hero_bench.ledger): append-only JSONL, budget, reload, torn tails, transactions."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hero_bench.errors import BudgetExceededError, ConfigError
from hero_bench.ledger import FeedbackLedger, LedgerError, image_id


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def label(ledger, epoch, n, kind="hero_good", start=0):
    ids = [image_id(epoch, i) for i in range(start, start + n)]
    ledger.record_labels(epoch, ids, kind, [i % 2 == 0 for i in range(n)], 42,
                         oracle_successes=[True] * n, oracle_scores=[0.5] * n)
    return ids


def test_records_counts_and_reload(tmp_path):
    led = FeedbackLedger(tmp_path, budget=10, run_id="r1")  # a directory -> <dir>/ledger.jsonl
    assert led.path == tmp_path / "ledger.jsonl"
    assert not led.path.exists() and led.feedback_used == 0 and led.remaining == 10
    label(led, 0, 4)
    led.record_query(0, "hero_best", "e0000", {"best_index": 2}, 42)
    assert (led.budget, led.feedback_used, led.queries, led.remaining) == (10, 4, 1, 6)
    recs = lines(led.path)
    assert [r["seq"] for r in recs] == [0, 1, 2, 3, 4]
    assert recs[0]["txn_size"] == 4 and recs[4]["txn"] == 4
    assert recs[1] == {
        "type": "label", "run_id": "r1", "epoch": 0, "kind": "hero_good", "image_id": "e0000-i0001",
        "value": False, "evaluator_seed": 42, "oracle_success": True, "oracle_score": 0.5,
        "seq": 1, "txn": 0, "txn_size": 4,
    }

    again = FeedbackLedger(led.path, budget=10, run_id="r1")
    assert (again.feedback_used, again.queries, again.remaining) == (4, 1, 6)
    assert again.lookup("hero_good", "e0000-i0002")["value"] is True
    assert again.lookup("hero_best", "e0000")["value"] == {"best_index": 2}
    assert again.lookup("hero_good", "e0001-i0000") is None
    assert again.count("hero_good", 0) == 4 and again.count("hero_good") == 4
    label(again, 1, 2)
    assert [r["seq"] for r in lines(led.path)] == list(range(7))
    assert again.used_before(1) == 4 and again.used_before(2) == 6


def test_budget_error_names_budget_used_requested_and_records_nothing(tmp_path):
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=5, run_id="r")
    label(led, 0, 4)
    with pytest.raises(BudgetExceededError, match=r"budget 5, used 4, requested 2"):
        label(led, 1, 2)
    assert led.feedback_used == 4 and len(lines(led.path)) == 4
    label(led, 1, 1)
    assert led.remaining == 0


def test_budget_counts_labels_pending_in_a_transaction(tmp_path):
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=5, run_id="r")
    with pytest.raises(BudgetExceededError):
        with led.transaction():
            label(led, 0, 3)
            label(led, 0, 3, kind="ddpo_reward")
    assert led.feedback_used == 0 and not led.path.exists()


@given(st.integers(0, 30), st.lists(st.integers(0, 12), max_size=10))
@settings(max_examples=50, deadline=None)
def test_budget_property(budget, sizes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ledger.jsonl"
        led = FeedbackLedger(path, budget=budget, run_id="r")
        used = 0
        for epoch, n in enumerate(sizes):
            if used + n > budget:
                with pytest.raises(BudgetExceededError):
                    label(led, epoch, n)
            else:
                label(led, epoch, n)
                used += n
            assert led.feedback_used == used <= budget
        assert FeedbackLedger(path, budget=budget, run_id="r").feedback_used == used
        if used:
            assert len(lines(path)) == used


def test_duplicate_labels_and_queries_are_refused(tmp_path):
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=10, run_id="r")
    label(led, 0, 2)
    with pytest.raises(LedgerError, match="already has"):
        label(led, 0, 1, start=1)
    label(led, 0, 1, start=1, kind="ddpo_reward")  # another kind is another label
    led.record_query(0, "hero_best", "e0000", 1, 42)
    with pytest.raises(LedgerError, match="already"):
        led.record_query(0, "hero_best", "e0000", 1, 42)
    assert (led.feedback_used, led.queries) == (3, 1)


def test_torn_last_line_is_ignored_and_truncated_before_append(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = FeedbackLedger(path, budget=10, run_id="r")
    label(led, 0, 3)
    good_bytes = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"type":"label","run_id":"r","epoch":1,"ki')  # crash mid-write
    again = FeedbackLedger(path, budget=10, run_id="r")
    assert again.feedback_used == 3 and again.recovered_bytes > 0
    assert path.read_bytes().startswith(good_bytes)  # reading alone changes nothing
    label(again, 1, 2)
    recs = lines(path)  # every line parses again: the torn piece is gone
    assert [r["seq"] for r in recs] == list(range(5))
    assert FeedbackLedger(path, budget=10, run_id="r").feedback_used == 5


def test_garbage_final_line_with_newline_is_tolerated(tmp_path):
    # e.g. zero-filled blocks after a power cut
    path = tmp_path / "ledger.jsonl"
    label(FeedbackLedger(path, budget=10, run_id="r"), 0, 2)
    with open(path, "ab") as fh:
        fh.write(b"\x00\x00\x00\n")
    assert FeedbackLedger(path, budget=10, run_id="r").feedback_used == 2


def test_incomplete_last_transaction_is_dropped_whole(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = FeedbackLedger(path, budget=10, run_id="r")
    label(led, 0, 2)
    with led.transaction():
        label(led, 1, 3)
        led.record_query(1, "hero_best", "e0001", 0, 42)
    full = path.read_bytes().splitlines(keepends=True)
    assert len(full) == 6
    # Crash after two of the second call's four records reached the disk.
    path.write_bytes(b"".join(full[:4]))
    again = FeedbackLedger(path, budget=10, run_id="r")
    assert (again.feedback_used, again.queries) == (2, 0)
    assert again.lookup("hero_good", "e0001-i0000") is None
    label(again, 1, 3)  # the epoch can be asked again
    assert [r["seq"] for r in lines(path)] == list(range(5))


def test_transaction_rolls_back_on_error(tmp_path):
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=10, run_id="r")
    with pytest.raises(RuntimeError, match="boom"):
        with led.transaction():
            label(led, 0, 3)
            assert led.remaining == 7 and led.feedback_used == 0
            raise RuntimeError("boom")
    assert led.feedback_used == 0 and led.remaining == 10 and not led.path.exists()


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "ledger.jsonl"
    label(FeedbackLedger(path, budget=10, run_id="r"), 0, 3)
    rows = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(rows[0] + b"not json\n" + rows[2])
    with pytest.raises(LedgerError, match="corrupt at line 2"):
        FeedbackLedger(path, budget=10, run_id="r")


def test_other_run_id_is_refused(tmp_path):
    path = tmp_path / "ledger.jsonl"
    label(FeedbackLedger(path, budget=10, run_id="r"), 0, 1)
    with pytest.raises(LedgerError, match="belongs to run 'r'"):
        FeedbackLedger(path, budget=10, run_id="other")


def test_reopen_with_smaller_budget(tmp_path):
    path = tmp_path / "ledger.jsonl"
    label(FeedbackLedger(path, budget=10, run_id="r"), 0, 6)
    led = FeedbackLedger(path, budget=4, run_id="r")
    assert led.feedback_used == 6 and led.remaining == 0
    with pytest.raises(BudgetExceededError):
        label(led, 1, 1)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="budget"):
        FeedbackLedger(tmp_path / "l.jsonl", budget=-1, run_id="r")
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=10, run_id="r")
    with pytest.raises(ValueError, match="2 values for 3"):
        led.record_labels(0, ["a", "b", "c"], "k", [1, 2], 0)
    with pytest.raises(ValueError, match="finite"):
        led.record_labels(0, ["a"], "k", [float("nan")], 0)
    assert led.feedback_used == 0
