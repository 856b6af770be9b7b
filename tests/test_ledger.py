"""The feedback ledger (hero_bench.ledger): append-only JSONL, budget, reload, torn tails, transactions,
and the hash chain of ledger format 2 (edits, swaps and removals refused on reload; format 1 read and
continued without a chain)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hero_bench.errors import BudgetExceededError, ConfigError
from hero_bench.ledger import GENESIS, FeedbackLedger, LedgerError, chain_hash, image_id


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
    assert {k: v for k, v in recs[1].items() if k != "hash"} == {
        "type": "label", "run_id": "r1", "epoch": 0, "kind": "hero_good", "image_id": "e0000-i0001",
        "value": False, "evaluator_seed": 42, "oracle_success": True, "oracle_score": 0.5,
        "seq": 1, "txn": 0, "txn_size": 4,
    }
    # the chain: each hash covers the previous hash and the record without its own hash
    assert recs[0]["hash"] == chain_hash(GENESIS, recs[0])
    assert all(recs[i]["hash"] == chain_hash(recs[i - 1]["hash"], recs[i]) for i in range(1, 5))
    assert led.head == recs[4]["hash"] and led.head_at(0) == GENESIS and led.head_at(2) == recs[1]["hash"]

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


def test_more_labels_than_the_budget_are_refused_on_reopen(tmp_path):
    # the ledger checks the budget before every label, so a file holding more was extended by hand
    # (or belongs to a run of a larger budget): refused, naming the first label beyond the budget
    path = tmp_path / "ledger.jsonl"
    led = FeedbackLedger(path, budget=10, run_id="r")
    label(led, 0, 3)
    led.record_query(0, "hero_best", "e0000", 0, 42)
    label(led, 1, 3)
    assert FeedbackLedger(path, budget=6, run_id="r").remaining == 0  # exactly the budget: fine
    with pytest.raises(LedgerError, match=r"holds 6 labels, more than the budget of 4 \(line 6 is label 5\)"):
        FeedbackLedger(path, budget=4, run_id="r")


# ------------------------------------------------------------------------------ the hash chain
def chained_ledger(path, epochs=3, n=3):
    led = FeedbackLedger(path, budget=100, run_id="r")
    for e in range(epochs):
        label(led, e, n)
        led.record_query(e, "hero_best", f"e{e:04d}", 0, 42)
    return path.read_bytes().splitlines(keepends=True)


def edit_value(line: bytes) -> bytes:
    rec = json.loads(line)
    rec["value"] = not rec["value"]
    return json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("tamper, bad_line", [
    (lambda rows: rows[:4] + [edit_value(rows[4])] + rows[5:], 5),        # a label edited
    (lambda rows: [edit_value(rows[0])] + rows[1:], 1),                    # the first record edited
    (lambda rows: rows[:2] + [rows[3], rows[2]] + rows[4:], 3),            # two records swapped
    (lambda rows: rows[:5] + rows[6:], 6),                                 # a middle record removed
    (lambda rows: rows[1:], 1),                                            # the first record removed
    (lambda rows: rows[:-1] + [edit_value(rows[-1])], 12),  # the last line edited: complete, so not a torn write
], ids=["edit", "edit-first", "swap", "remove-middle", "remove-first", "edit-last"])
def test_broken_chain_is_refused_naming_file_and_first_bad_line(tmp_path, tamper, bad_line):
    path = tmp_path / "ledger.jsonl"
    rows = chained_ledger(path)
    path.write_bytes(b"".join(tamper(rows)))
    with pytest.raises(LedgerError, match=rf"ledger {path} line {bad_line}: hash chain broken"):
        FeedbackLedger(path, budget=100, run_id="r")


def test_stripped_or_mixed_hashes_are_refused(tmp_path):
    path = tmp_path / "ledger.jsonl"
    rows = chained_ledger(path)
    stripped = [json.loads(r) for r in rows]
    stripped[3].pop("hash")
    path.write_bytes(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in stripped))
    with pytest.raises(LedgerError, match=rf"ledger {path} line 4 has no hash in a hash-chained ledger"):
        FeedbackLedger(path, budget=100, run_id="r")
    for r in stripped:
        r.pop("hash", None)
    stripped[5]["hash"] = GENESIS
    path.write_bytes(b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in stripped))
    with pytest.raises(LedgerError, match=rf"ledger {path} line 6 has a hash but line 1 has none"):
        FeedbackLedger(path, budget=100, run_id="r")


def test_a_cut_at_a_record_boundary_keeps_a_valid_chain_and_head_at_tells(tmp_path):
    # the chain cannot see a lost tail: the checkpoint's (length, head) can (hero_bench.integrity)
    path = tmp_path / "ledger.jsonl"
    rows = chained_ledger(path)
    full = FeedbackLedger(path, budget=100, run_id="r")
    recorded = (len(full), full.head)
    path.write_bytes(b"".join(rows[:8]))
    cut = FeedbackLedger(path, budget=100, run_id="r")
    assert len(cut) == 8 < recorded[0] and cut.head == full.head_at(8) != recorded[1]


def test_torn_last_line_of_a_chained_ledger_still_recovers(tmp_path):
    path = tmp_path / "ledger.jsonl"
    rows = chained_ledger(path)
    path.write_bytes(b"".join(rows) + rows[0][:40])  # a crash mid-write of the next record
    led = FeedbackLedger(path, budget=100, run_id="r")
    assert len(led) == 12 and led.recovered_bytes == 40
    label(led, 3, 2)  # continues the chain after the torn piece is cut
    again = FeedbackLedger(path, budget=100, run_id="r")
    assert len(again) == 14 and again.head == chain_hash(again.head_at(13), lines(path)[13])


def test_format_1_ledger_is_read_and_continued_without_a_chain(tmp_path, caplog):
    # a ledger written before format 2: its records have no hash; it stays that way
    path = tmp_path / "ledger.jsonl"
    old = [{k: v for k, v in json.loads(r).items() if k != "hash"} for r in chained_ledger(path, epochs=1)]
    path.write_bytes(b"".join(json.dumps(r, sort_keys=True, separators=(",", ":")).encode() + b"\n" for r in old))
    with caplog.at_level("WARNING", logger="hero_bench.ledger"):
        led = FeedbackLedger(path, budget=100, run_id="r")
    assert "no hash chain (written before ledger format 2)" in caplog.text
    assert (led.chained, led.head, led.head_at(2), led.feedback_used) == (False, None, None, 3)
    label(led, 1, 2)
    assert all("hash" not in r for r in lines(path))
    assert FeedbackLedger(path, budget=100, run_id="r").feedback_used == 5
    assert FeedbackLedger(tmp_path / "new.jsonl", budget=1, run_id="r").head == GENESIS  # a new ledger is chained


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="budget"):
        FeedbackLedger(tmp_path / "l.jsonl", budget=-1, run_id="r")
    led = FeedbackLedger(tmp_path / "l.jsonl", budget=10, run_id="r")
    with pytest.raises(ValueError, match="2 values for 3"):
        led.record_labels(0, ["a", "b", "c"], "k", [1, 2], 0)
    with pytest.raises(ValueError, match="finite"):
        led.record_labels(0, ["a"], "k", [float("nan")], 0)
    assert led.feedback_used == 0
