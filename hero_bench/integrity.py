"""Integrity of a run folder: what a run records about its own files, and the checks of
``hero-bench verify`` (which ``gather`` runs on every run folder it reads).

The files of a run folder (``hero_bench.run_config``) are written at different moments; these
checks say whether they still agree with each other and with what was recorded when they were
written, one line per problem:

- **ledger**: its hash chain (``hero_bench.ledger``, format 2) catches an edited, swapped or
  removed record; a tail cut at a record boundary leaves a valid chain, so the checkpoint (and
  DONE.json, for a finished run) records the ledger's length and head hash, and a shorter ledger
  or another head is a problem.  Labels beyond the budget of config.yaml are refused.
- **counts**: ``feedback_used`` and ``queries`` of every eval.csv and train_log.csv row (and
  train_log's ``n_images``), of the checkpoint and of DONE.json equal the labels and queries the
  ledger holds up to that epoch, and none exceeds the budget.
- **checksums**: the sha256 of every saved adapter (``lora/epoch_XXXX.safetensors``) is recorded
  in the checkpoint when it is saved, and with the checkpoint's own sha256 in DONE.json when the
  run finishes; a file that no longer matches is a problem.
- **config**: config.yaml hashes (``hero_bench.provenance.run_config_hash``) to the
  ``config_hash`` of every eval.csv row, of DONE.json and of the checkpoint.

A run folder may legitimately lack some files: a finished run copied without its ledger,
checkpoint and adapters (``results/published/`` keeps config.yaml, eval.csv, train_log.csv and
DONE.json only), a ledger written before format 2, a DONE.json written before the checksums, a
run still in progress.  Those are **warnings**: said, not failed.

The runner records (``adapter checksums``, ``ledger_state``, ``done_record``) and checks a resumed
run against its checkpoint (``check_resume``).  This module imports neither torch nor the run code
(``hero_bench.run_config`` imports the methods, hence torch), so that ``gather`` stays light; only
the checkpoint of an unfinished run is read with torch, imported then.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from hero_bench.config import config_hash
from hero_bench.errors import HeroBenchError
from hero_bench.ledger import LEDGER_FILENAME, FeedbackLedger, LedgerError
from hero_bench.provenance import METHOD_SECTIONS

# The run folder's file names, as hero_bench.run_config declares them (tests/test_verify.py checks
# that they agree): run_config itself is not imported, because it imports torch.
CONFIG_FILE = "config.yaml"
LEDGER_FILE = LEDGER_FILENAME
CHECKPOINT_FILE = "checkpoint.pt"
EVAL_FILE = "eval.csv"
TRAIN_LOG_FILE = "train_log.csv"
DONE_FILE = "DONE.json"
LORA_DIR = "lora"

DONE_KEY = "integrity"
"""DONE.json's key for ``done_record``: the ledger's length and head, the checkpoint's and the
adapters' sha256, as they were when the run finished."""

_ADAPTER = re.compile(r"^epoch_(\d{4,})\.safetensors$")


class IntegrityError(HeroBenchError):
    """A run folder's files disagree with each other or with the checksums recorded when they were
    written (the message names the file and what it should have been)."""


# --------------------------------------------------------------------------------------------
# What a run records
# --------------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in chunks: checkpoints of the paper tier are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_name(epoch: int) -> str:
    """The adapter file of ``epoch``, relative to the run folder (the key of the recorded checksums)."""
    return f"{LORA_DIR}/epoch_{epoch:04d}.safetensors"


def ledger_state(ledger: FeedbackLedger) -> dict[str, Any]:
    """The ledger's length and head hash, for a checkpoint or DONE.json to record (the head is None
    for a ledger written before format 2)."""
    return {"entries": len(ledger), "head": ledger.head}


def done_record(run_dir: str | Path, ledger: FeedbackLedger, adapters: Mapping[str, str]) -> dict[str, Any]:
    """DONE.json's ``integrity``: the final ledger state and the sha256 of the checkpoint and of
    every adapter, written after the last checkpoint, so nothing of the run changes after it."""
    return {
        "ledger": ledger_state(ledger),
        "checkpoint_sha256": file_sha256(Path(run_dir) / CHECKPOINT_FILE),
        "adapters": dict(sorted(adapters.items())),
    }


def config_file_hash(config: Mapping[str, Any]) -> str:
    """The hash of config.yaml's settings as eval.csv's ``config_hash`` records it
    (``provenance.run_config_hash``: the sections of the methods the run does not use left out)."""
    return config_hash({k: v for k, v in config.items() if k not in METHOD_SECTIONS or k == config.get("method")})


def run_id_of(config: Mapping[str, Any]) -> str:
    """``RunConfig.run_id`` of config.yaml's settings (the ledger's ``run_id``)."""
    return f"{config['tier']}/{config['task']}/{config['method']}/seed{config['seed']}"


# --------------------------------------------------------------------------------------------
# Checks shared by resume and verify
# --------------------------------------------------------------------------------------------


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


def recorded_adapters(run_dir: str | Path, checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """The adapter checksums a resumed run continues from: those the checkpoint recorded, or, for a
    checkpoint written before the checksums, those of the adapter files of its epochs as they are
    now (taken on trust, so that the finished run's DONE.json lists every adapter)."""
    if "adapters" in checkpoint:
        return dict(checkpoint["adapters"])
    run_dir = Path(run_dir)
    adapters = {}
    for path in sorted((run_dir / LORA_DIR).glob("epoch_*.safetensors")):
        m = _ADAPTER.match(path.name)
        if m and int(m.group(1)) <= checkpoint.get("epoch", -1):
            adapters[adapter_name(int(m.group(1)))] = file_sha256(path)
    return adapters


def check_resume(run_dir: str | Path, ledger: FeedbackLedger, checkpoint: Mapping[str, Any]) -> None:
    """Before a run resumes from ``checkpoint``: the ledger still holds (at least) the records the
    checkpoint was written after, and the adapters it recorded are unchanged.  Raises
    IntegrityError naming the first problem."""
    run_dir = Path(run_dir)
    source = f"checkpoint {run_dir / CHECKPOINT_FILE}"
    problems = (ledger_problems(ledger, checkpoint.get("ledger", {}), source)
                + adapter_problems(run_dir, checkpoint.get("adapters", {}), source))
    if problems:
        more = f" (and {len(problems) - 1} more; `hero-bench verify {run_dir}` lists them)" if len(problems) > 1 else ""
        raise IntegrityError(f"run folder {run_dir} cannot resume: {problems[0]}{more}")


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


@dataclass
class RunVerification:
    """What ``verify_run`` found in one run folder: problems (it fails) and warnings (said only)."""

    run_dir: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: the run folder and the verdict."""
        if self.ok:
            return f"{self.run_dir}: OK" + (f" ({_plural(len(self.warnings), 'warning')})" if self.warnings else "")
        return f"{self.run_dir}: FAILED ({_plural(len(self.problems), 'problem')}, {_plural(len(self.warnings), 'warning')})"

    def refusal(self, who: str) -> str:
        """One line for a command that refuses the run: the run folder and its first problem."""
        more = (f" (and {len(self.problems) - 1} more; `hero-bench verify {self.run_dir}` lists them)"
                if len(self.problems) > 1 else "")
        return f"run {self.run_dir} fails verification: {self.problems[0]}{more}; {who} accepts verified runs only"


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` holds any file only a run folder has (an eval.csv alone, e.g. a table made
    by hand, is not one)."""
    path = Path(path)
    return any((path / name).exists() for name in (CONFIG_FILE, LEDGER_FILE, CHECKPOINT_FILE, DONE_FILE))


def verify_run(run_dir: str | Path) -> RunVerification:
    """Check one run folder (module docstring); never raises for what it finds."""
    return _Verifier(Path(run_dir)).run()


@contextmanager
def _quiet_ledger() -> Iterator[None]:
    """The ledger logs a torn tail or a missing chain when opened; verify reports both itself."""
    logger = logging.getLogger("hero_bench.ledger")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _plural(k: int, what: str) -> str:
    return f"{k} {what}{'' if k == 1 else 's'}"


class _Verifier:
    """The checks of ``verify_run``, in the order they are reported."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.result = RunVerification(run_dir)
        self.problem = self.result.problems.append
        self.warn = self.result.warnings.append

    def run(self) -> RunVerification:
        if not self.dir.is_dir():
            self.problem("no such run folder")
            return self.result
        self.config = self.read_config()
        self.done = self.read_done()
        self.finished = self.done is not None
        self.record = (self.done or {}).get(DONE_KEY)
        self.eval_rows = self.read_rows(EVAL_FILE)
        self.train_rows = self.read_rows(TRAIN_LOG_FILE)
        self.checkpoint = None if self.finished else self.read_checkpoint()
        self.ledger = self.open_ledger()
        # causes before consequences: a cut ledger also makes every later row's count disagree,
        # and gather names the first problem only
        self.check_missing()
        self.check_recorded()
        self.check_config_hash()
        self.check_counts()
        return self.result

    # -- reading --------------------------------------------------------------------------------
    def read_config(self) -> dict | None:
        path = self.dir / CONFIG_FILE
        if not path.is_file():
            self.problem(f"{CONFIG_FILE} is missing: the run's settings, its budget and config hash are unknown")
            return None
        try:
            data = yaml.safe_load(path.read_text())
            if not isinstance(data, dict) or not {"tier", "task", "method", "seed", "budget"} <= set(data):
                raise ValueError("not a run config (tier, task, method, seed, budget)")
        except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
            self.problem(f"{CONFIG_FILE} cannot be read: {str(exc).splitlines()[0]}")
            return None
        return data

    def read_done(self) -> dict | None:
        path = self.dir / DONE_FILE
        if not path.is_file():
            self.warn(f"the run has not finished (no {DONE_FILE}): checked against its checkpoint")
            return None
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self.problem(f"{DONE_FILE} cannot be read: {exc}")
            return {}
        return data

    def read_rows(self, name: str) -> list[tuple[int, dict]] | None:
        """(line number, row) of a CSV file, None when it is absent."""
        path = self.dir / name
        if not path.is_file():
            if self.finished:
                self.problem(f"{name} is missing")
            elif (self.dir / CHECKPOINT_FILE).exists():
                self.warn(f"{name} is not written yet")
            return None
        try:
            with open(path, newline="") as fh:
                return [(i + 2, row) for i, row in enumerate(csv.DictReader(fh))]
        except (csv.Error, UnicodeDecodeError) as exc:
            self.problem(f"{name} cannot be read: {exc}")
            return None

    def read_checkpoint(self) -> dict | None:
        path = self.dir / CHECKPOINT_FILE
        if not path.is_file():
            return None
        import torch  # deferred: only an unfinished run's checkpoint needs it (gather stays light)

        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict):
                raise ValueError("not a checkpoint dictionary")
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the checkpoint is unusable
            self.problem(f"{CHECKPOINT_FILE} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            return None
        return ckpt

    def open_ledger(self) -> FeedbackLedger | None:
        path = self.dir / LEDGER_FILE
        if not path.is_file():
            return None
        if self.config is not None:
            run_id, budget = run_id_of(self.config), self.config["budget"]
        else:  # the chain can still be checked: the run id from the ledger itself, no budget
            run_id, budget = self.first_run_id(path), 2**62
        try:
            with _quiet_ledger():
                ledger = FeedbackLedger(path, budget, run_id)
        except HeroBenchError as exc:  # LedgerError (chain, budget, run id), ConfigError (budget)
            self.problem(str(exc))
            return None
        if not ledger.chained:
            self.warn(f"{LEDGER_FILE} has no hash chain (written before ledger format 2): edits to it cannot be detected")
        if ledger.recovered_bytes:
            self.warn(f"{LEDGER_FILE} ends in a torn write of {ledger.recovered_bytes} bytes (a crash while labelling; "
                      "resuming the run truncates it)")
        return ledger

    @staticmethod
    def first_run_id(path: Path) -> str:
        try:
            with open(path, "rb") as fh:
                return str(json.loads(fh.readline()).get("run_id") or "?")
        except (ValueError, UnicodeDecodeError, AttributeError):
            return "?"

    # -- checks ---------------------------------------------------------------------------------
    def labels_expected(self) -> int:
        """Labels the run's records say it obtained (0 when none says so)."""
        counts = [int((self.checkpoint or {}).get("feedback_used") or 0), int((self.done or {}).get("feedback_used") or 0)]
        for rows in (self.train_rows, self.eval_rows):
            counts += [v for _, r in rows or [] if (v := _int(r.get("feedback_used"))) is not None]
        return max(counts)

    def check_missing(self) -> None:
        """A ledger, checkpoint or adapters the records say exist but that are not there."""
        has_lora = (self.dir / LORA_DIR).is_dir()
        if self.finished:
            # a finished run may be kept without them (results/published/): said, not failed
            not_kept = [name for name, there, needed in (
                (LEDGER_FILE, self.ledger is not None or (self.dir / LEDGER_FILE).exists(), self.labels_expected() > 0),
                (CHECKPOINT_FILE, (self.dir / CHECKPOINT_FILE).exists(), True),
                (f"{LORA_DIR}/", has_lora, bool(self.eval_rows)),
            ) if needed and not there]
            if not_kept:
                self.warn(f"not kept: {', '.join(not_kept)} (a finished run copied without them, as results/published/ "
                          "keeps its runs): what they hold is not checked")
            if self.done and DONE_KEY not in self.done:
                self.warn(f"{DONE_FILE} records no ledger head or checksums (written before ledger format 2): a cut-off "
                          "ledger tail, adapters and checkpoint are not checked against it")
            return
        if self.checkpoint is None and not (self.dir / CHECKPOINT_FILE).exists():
            if (self.dir / LEDGER_FILE).exists():
                self.problem(f"{CHECKPOINT_FILE} is missing but {LEDGER_FILE} exists: a run writes its checkpoint "
                             "before it asks for any label")
            else:
                self.warn(f"no {CHECKPOINT_FILE} yet: the run has not evaluated its starting point")
        elif not (self.dir / LEDGER_FILE).exists() and self.labels_expected() > 0:
            self.problem(f"{LEDGER_FILE} is missing but the run's records count {self.labels_expected()} labels")

    def check_config_hash(self) -> None:
        if self.config is None:
            return
        expected = config_file_hash(self.config)
        if self.eval_rows:
            bad = [(line, r.get("config_hash")) for line, r in self.eval_rows if r.get("config_hash") != expected]
            if bad:
                line, value = bad[0]
                others = f" (and {_plural(len(bad) - 1, 'more row')})" if len(bad) > 1 else ""
                self.problem(f"{EVAL_FILE} line {line}: config_hash {value} but {CONFIG_FILE} hashes to {expected}"
                             f"{others}: {CONFIG_FILE} was edited after the run, or {EVAL_FILE} was rewritten with "
                             "other settings (`hero-bench evaluate --set` without --out)")
        for name, record in ((DONE_FILE, self.done), (CHECKPOINT_FILE, self.checkpoint)):
            if record and record.get("config_hash") not in (None, expected):
                self.problem(f"{name} records config_hash {record.get('config_hash')} but {CONFIG_FILE} hashes to "
                             f"{expected}: {CONFIG_FILE} was edited after the run")

    def check_counts(self) -> None:
        """feedback_used / queries / n_images of every record against the ledger and the budget."""
        budget = self.config["budget"] if self.config else None
        tallies = _EpochTallies(self.ledger) if self.ledger is not None else None
        columns = {EVAL_FILE: ("feedback_used", "queries"), TRAIN_LOG_FILE: ("feedback_used", "queries", "n_images")}
        for name, rows in ((EVAL_FILE, self.eval_rows), (TRAIN_LOG_FILE, self.train_rows)):
            if not rows:
                continue
            mismatches: dict[str, list[str]] = {}
            over: list[str] = []
            for line, row in rows:
                epoch = _int(row.get("epoch"))
                if epoch is None:
                    self.problem(f"{name} line {line}: epoch {row.get('epoch')!r} is not an integer")
                    return
                for column in columns[name]:
                    value = _int(row.get(column))
                    if column == "queries" and (row.get(column) or "") == "":
                        continue  # an optional column left empty (eval.csv written before it existed)
                    if value is None:
                        self.problem(f"{name} line {line}: {column} {row.get(column)!r} is not an integer")
                        return
                    if column == "feedback_used" and budget is not None and value > budget:
                        over.append(f"{name} line {line}: feedback_used {value} exceeds the budget {budget} of {CONFIG_FILE}")
                    if tallies is not None and value != (held := tallies.get(column, epoch)):
                        mismatches.setdefault(column, []).append(
                            f"{name} line {line} (epoch {epoch}): {column} {value} but {LEDGER_FILE} holds "
                            f"{tallies.what(column, held)}")
            for messages in [over, *mismatches.values()]:
                if messages:
                    self.problem(messages[0] + (f" (and {_plural(len(messages) - 1, 'more row')})" if len(messages) > 1 else ""))
        done = self.done or {}
        if "feedback_used" in done:
            if budget is not None and done["feedback_used"] > budget:
                self.problem(f"{DONE_FILE}: feedback_used {done['feedback_used']} exceeds the budget {budget} of {CONFIG_FILE}")
            if self.ledger is not None:
                for key, held in (("feedback_used", self.ledger.feedback_used), ("queries", self.ledger.queries)):
                    if key in done and done[key] != held:
                        self.problem(f"{DONE_FILE}: {key} {done[key]} but {LEDGER_FILE} holds {held}")
            elif self.train_rows:
                last = _int(self.train_rows[-1][1].get("feedback_used"))
                if last is not None and last != done["feedback_used"]:
                    self.problem(f"{DONE_FILE}: feedback_used {done['feedback_used']} but the last row of "
                                 f"{TRAIN_LOG_FILE} says {last}")
        if self.checkpoint and self.ledger is not None and "epoch" in self.checkpoint:
            held = self.ledger.used_before(self.checkpoint["epoch"] + 1)
            if held != self.checkpoint.get("feedback_used"):
                self.problem(f"{CHECKPOINT_FILE} (epoch {self.checkpoint['epoch']}) counts "
                             f"{self.checkpoint.get('feedback_used')} labels but {LEDGER_FILE} holds {held} up to that epoch")

    def check_recorded(self) -> None:
        """The ledger's length and head, the adapters' and the checkpoint's sha256 against what the
        checkpoint (unfinished run) or DONE.json (finished run) recorded."""
        if self.finished:
            record, source = self.record, DONE_FILE
        else:
            record, source = self.checkpoint, CHECKPOINT_FILE
        if not isinstance(record, Mapping):
            return
        if self.ledger is not None:
            for message in ledger_problems(self.ledger, record.get("ledger") or {}, source, finished=self.finished):
                self.problem(message)
        lora = self.dir / LORA_DIR
        adapters = record.get("adapters")
        if adapters is None:  # a checkpoint written before the checksums
            return
        if lora.is_dir() or not self.finished:
            for message in adapter_problems(self.dir, adapters, source):
                self.problem(message)
            last_epoch = None if self.finished else self.checkpoint.get("epoch")
            for path in sorted(lora.glob("epoch_*.safetensors")) if lora.is_dir() else []:
                name = f"{LORA_DIR}/{path.name}"
                if name in adapters or not (m := _ADAPTER.match(path.name)):
                    continue
                if last_epoch is not None and int(m.group(1)) > last_epoch:
                    self.warn(f"{name} was saved after the last checkpoint (a crash before it; resuming the run "
                              "saves it again)")
                else:
                    self.problem(f"{name} is not among the adapters {source} recorded: it was added afterwards")
        if self.finished and "checkpoint_sha256" in record and (self.dir / CHECKPOINT_FILE).is_file():
            actual = file_sha256(self.dir / CHECKPOINT_FILE)
            if actual != record["checkpoint_sha256"]:
                self.problem(f"{CHECKPOINT_FILE} has sha256 {actual[:12]} but {DONE_FILE} recorded "
                             f"{record['checkpoint_sha256'][:12]} when the run finished: the file was modified")


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


def _int(text: Any) -> int | None:
    """An integer cell (``3`` or ``3.0``), None when it is not one."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None
