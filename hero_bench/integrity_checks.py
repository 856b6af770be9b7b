"""The checks of a run folder's integrity, one function per thing checked, each returning one line
per problem found (``hero_bench.integrity`` runs them for a resume and for ``hero-bench verify``):

- ``ledger_problems``: the ledger against the length and head hash a checkpoint or DONE.json
  recorded (its own hash chain is checked when it is opened, ``hero_bench.ledger_format``);
- ``adapter_problems``: the saved adapters against their recorded sha256;
- ``config_hash_problems``: config.yaml against the ``config_hash`` of eval.csv, DONE.json and the
  checkpoint;
- ``count_problems``: the ``feedback_used`` / ``queries`` / ``n_images`` of every record against
  the ledger and the budget.

They only read what they are given and the files they check, and report; what is missing and
what counts as a warning is decided by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hero_bench.ledger import FeedbackLedger
from hero_bench.run_records import (CHECKPOINT_FILE, CONFIG_FILE, DONE_FILE, EVAL_FILE, LEDGER_FILE, TRAIN_LOG_FILE,
                                    config_file_hash, file_sha256)

Rows = list[tuple[int, dict]]
"""A CSV file's rows as the verifier reads them: (line number, row)."""


def plural(k: int, what: str) -> str:
    return f"{k} {what}{'' if k == 1 else 's'}"


def int_cell(text: Any) -> int | None:
    """An integer cell (``3`` or ``3.0``), None when it is not one."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


# -- the ledger and the checksums (a resume checks these too) --------------------------------


def ledger_problems(ledger: FeedbackLedger, recorded: Mapping[str, Any], source: str, *,
                    finished: bool = False) -> list[str]:
    """The ledger against the length and head ``source`` recorded (``ledger_state``).

    The ledger may be longer than a checkpoint says (labels of an epoch not checkpointed yet,
    replayed on resume), never shorter; it must start with the same records (the head of its
    first ``entries`` records); after a finished run (``finished``) it must not have grown."""
    entries, head = recorded.get("entries"), recorded.get("head")
    if entries is None:  # recorded before ledger format 2: nothing to compare
        return []
    n = len(ledger)
    if n < entries:
        return [f"ledger {ledger.path} has {n} records but {source} was written after {entries}: "
                f"{entries - n} were cut off its end; accepted: the ledger as it was, restored from a backup"]
    problems = []
    actual = ledger.head_at(entries)
    if head is not None and actual is None:
        problems.append(f"ledger {ledger.path} has no hash chain but {source} recorded its head {head[:12]}: "
                        "the hashes were removed")
    elif head is None and actual is not None:
        problems.append(f"ledger {ledger.path} has a hash chain but {source} recorded a ledger without one: "
                        "the ledger was rewritten")
    elif head != actual:
        problems.append(f"ledger {ledger.path}: its first {entries} records hash to {actual[:12]}, not to the head "
                        f"{head[:12]} {source} recorded: they were rewritten (hashes recomputed)")
    if finished and n > entries:
        problems.append(f"ledger {ledger.path} has {n} records, {n - entries} more than {source} recorded when the "
                        "run finished: records were appended afterwards")
    return problems


def adapter_problems(run_dir: Path, adapters: Mapping[str, str], source: str) -> list[str]:
    """Every adapter ``source`` recorded exists with the recorded sha256."""
    problems = []
    for name, recorded in sorted(adapters.items()):
        path = run_dir / name
        if not path.is_file():
            problems.append(f"{name} is missing ({source} recorded it, sha256 {recorded[:12]})")
        elif (actual := file_sha256(path)) != recorded:
            problems.append(f"{name} has sha256 {actual[:12]} but {source} recorded {recorded[:12]} when it was "
                            "saved: the file was modified")
    return problems


# -- the config hash --------------------------------------------------------------------------


def config_hash_problems(config: Mapping[str, Any], eval_rows: Rows | None, done: Mapping | None,
                         checkpoint: Mapping | None) -> list[str]:
    """config.yaml (``config``) hashes to the ``config_hash`` of every eval.csv row, of DONE.json and
    of the checkpoint (those that record one)."""
    problems = []
    expected = config_file_hash(config)
    if eval_rows:
        bad = [(line, r.get("config_hash")) for line, r in eval_rows if r.get("config_hash") != expected]
        if bad:
            line, value = bad[0]
            others = f" (and {plural(len(bad) - 1, 'more row')})" if len(bad) > 1 else ""
            problems.append(f"{EVAL_FILE} line {line}: config_hash {value} but {CONFIG_FILE} hashes to {expected}"
                            f"{others}: {CONFIG_FILE} was edited after the run, or {EVAL_FILE} was rewritten with "
                            "other settings (`hero-bench evaluate --set` without --out)")
    for name, record in ((DONE_FILE, done), (CHECKPOINT_FILE, checkpoint)):
        if record and record.get("config_hash") not in (None, expected):
            problems.append(f"{name} records config_hash {record.get('config_hash')} but {CONFIG_FILE} hashes to "
                            f"{expected}: {CONFIG_FILE} was edited after the run")
    return problems


# -- the counts -------------------------------------------------------------------------------


def count_problems(ledger: FeedbackLedger | None, budget: int | None, eval_rows: Rows | None,
                   train_rows: Rows | None, done: Mapping | None, checkpoint: Mapping | None) -> list[str]:
    """feedback_used / queries / n_images of every record against the ledger (when there is one)
    and the budget (when config.yaml gives it).  A cell that is not an integer ends the check: the
    rows after it cannot be compared."""
    problems = []
    tallies = _EpochTallies(ledger) if ledger is not None else None
    columns = {EVAL_FILE: ("feedback_used", "queries"), TRAIN_LOG_FILE: ("feedback_used", "queries", "n_images")}
    for name, rows in ((EVAL_FILE, eval_rows), (TRAIN_LOG_FILE, train_rows)):
        if not rows:
            continue
        mismatches: dict[str, list[str]] = {}
        over: list[str] = []
        for line, row in rows:
            epoch = int_cell(row.get("epoch"))
            if epoch is None:
                problems.append(f"{name} line {line}: epoch {row.get('epoch')!r} is not an integer")
                return problems
            for column in columns[name]:
                value = int_cell(row.get(column))
                if column == "queries" and (row.get(column) or "") == "":
                    continue  # an optional column left empty (eval.csv written before it existed)
                if value is None:
                    problems.append(f"{name} line {line}: {column} {row.get(column)!r} is not an integer")
                    return problems
                if column == "feedback_used" and budget is not None and value > budget:
                    over.append(f"{name} line {line}: feedback_used {value} exceeds the budget {budget} of {CONFIG_FILE}")
                if tallies is not None and value != (held := tallies.get(column, epoch)):
                    mismatches.setdefault(column, []).append(
                        f"{name} line {line} (epoch {epoch}): {column} {value} but {LEDGER_FILE} holds "
                        f"{tallies.what(column, held)}")
        # one line per kind of disagreement and file: a cut ledger makes every later row disagree
        for messages in [over, *mismatches.values()]:
            if messages:
                problems.append(messages[0] + (f" (and {plural(len(messages) - 1, 'more row')})" if len(messages) > 1 else ""))
    done = done or {}
    if "feedback_used" in done:
        if budget is not None and done["feedback_used"] > budget:
            problems.append(f"{DONE_FILE}: feedback_used {done['feedback_used']} exceeds the budget {budget} of {CONFIG_FILE}")
        if ledger is not None:
            for key, held in (("feedback_used", ledger.feedback_used), ("queries", ledger.queries)):
                if key in done and done[key] != held:
                    problems.append(f"{DONE_FILE}: {key} {done[key]} but {LEDGER_FILE} holds {held}")
        elif train_rows:
            last = int_cell(train_rows[-1][1].get("feedback_used"))
            if last is not None and last != done["feedback_used"]:
                problems.append(f"{DONE_FILE}: feedback_used {done['feedback_used']} but the last row of "
                                f"{TRAIN_LOG_FILE} says {last}")
    if checkpoint and ledger is not None and "epoch" in checkpoint:
        held = ledger.used_before(checkpoint["epoch"] + 1)
        if held != checkpoint.get("feedback_used"):
            problems.append(f"{CHECKPOINT_FILE} (epoch {checkpoint['epoch']}) counts "
                            f"{checkpoint.get('feedback_used')} labels but {LEDGER_FILE} holds {held} up to that epoch")
    return problems


class _EpochTallies:
    """What the ledger holds up to (or in) each epoch, the way the runner counts it."""

    def __init__(self, ledger: FeedbackLedger):
        self.labels: dict[int, int] = {}
        self.queries: dict[int, int] = {}
        for rec in ledger.records():
            tally = self.labels if rec["type"] == "label" else self.queries
            tally[rec["epoch"]] = tally.get(rec["epoch"], 0) + 1

    def get(self, column: str, epoch: int) -> int:
        if column == "n_images":  # the epoch's batch: one label per image
            return self.labels.get(epoch, 0)
        tally = self.labels if column == "feedback_used" else self.queries
        return sum(n for e, n in tally.items() if e <= epoch)

    @staticmethod
    def what(column: str, n: int) -> str:
        noun = ("query" if n == 1 else "queries") if column == "queries" else ("label" if n == 1 else "labels")
        return f"{n} {noun} {'in' if column == 'n_images' else 'up to'} that epoch"
