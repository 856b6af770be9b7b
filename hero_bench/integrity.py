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

The runner records (``adapter checksums``, ``ledger_state``, ``done_record``:
``hero_bench.run_records``) and checks a resumed run against its checkpoint (``check_resume``).
The checks themselves, one function per thing checked, are ``hero_bench.integrity_checks``; this
module runs them on a run folder and decides what is a problem and what a warning.  The names of
both modules that the runner and the tests use are importable from here too.  This module imports
neither torch nor the run code (``hero_bench.run_config`` imports the methods, hence torch), so
that ``gather`` stays light; only the checkpoint of an unfinished run is read with torch, imported
then.
"""

from __future__ import annotations

import csv
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from hero_bench.errors import HeroBenchError
from hero_bench.integrity_checks import (adapter_problems, config_hash_problems, count_problems, int_cell,
                                         ledger_problems, plural)
from hero_bench.ledger import FeedbackLedger
from hero_bench.run_records import (ADAPTER_FILE, CHECKPOINT_FILE, CONFIG_FILE, DONE_FILE, DONE_KEY, EVAL_FILE,
                                    LEDGER_FILE, LORA_DIR, TRAIN_LOG_FILE, adapter_name, config_file_hash,
                                    done_record, file_sha256, ledger_state, recorded_adapters, run_id_of)

# This module's names, and those of integrity_checks and run_records that the runner and the tests
# import from here.
__all__ = [
    "IntegrityError", "RunVerification", "check_resume", "is_run_folder", "verify_run",
    "adapter_problems", "ledger_problems",
    "CHECKPOINT_FILE", "CONFIG_FILE", "DONE_FILE", "DONE_KEY", "EVAL_FILE", "LEDGER_FILE", "LORA_DIR",
    "TRAIN_LOG_FILE", "adapter_name", "config_file_hash", "done_record", "file_sha256", "ledger_state",
    "recorded_adapters", "run_id_of",
]


class IntegrityError(HeroBenchError):
    """A run folder's files disagree with each other or with the checksums recorded when they were
    written (the message names the file and what it should have been)."""


# --------------------------------------------------------------------------------------------
# resume
# --------------------------------------------------------------------------------------------


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
            return f"{self.run_dir}: OK" + (f" ({plural(len(self.warnings), 'warning')})" if self.warnings else "")
        return f"{self.run_dir}: FAILED ({plural(len(self.problems), 'problem')}, {plural(len(self.warnings), 'warning')})"

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
            counts += [v for _, r in rows or [] if (v := int_cell(r.get("feedback_used"))) is not None]
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
        if self.config is not None:
            for message in config_hash_problems(self.config, self.eval_rows, self.done, self.checkpoint):
                self.problem(message)

    def check_counts(self) -> None:
        budget = self.config["budget"] if self.config else None
        for message in count_problems(self.ledger, budget, self.eval_rows, self.train_rows, self.done, self.checkpoint):
            self.problem(message)

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
                if name in adapters or not (m := ADAPTER_FILE.match(path.name)):
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
