"""What a run records about its own files, for the integrity checks (``hero_bench.integrity``).

The runner records, as it writes them, the sha256 of every saved adapter and the ledger's length
and head hash (in the checkpoint), and when the run finishes, the same with the checkpoint's own
sha256 (``done_record``, DONE.json's ``integrity``).  ``hero-bench verify`` and a resume later
compare the files with these records.

The run folder's file names are repeated here from ``hero_bench.run_config`` (tests/test_verify.py
checks that they agree) and so is ``RunConfig.run_id`` (``run_id_of``): run_config imports the
methods, hence torch, and the integrity checks must stay light enough for ``gather``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

from hero_bench.config import config_hash
from hero_bench.ledger import LEDGER_FILENAME, FeedbackLedger
from hero_bench.provenance import without_unused_sections

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

ADAPTER_FILE = re.compile(r"^epoch_(\d{4,})\.safetensors$")
"""The name of an adapter file in ``LORA_DIR``; group 1 is its epoch."""


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


def recorded_adapters(run_dir: str | Path, checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """The adapter checksums a resumed run continues from: those the checkpoint recorded, or, for a
    checkpoint written before the checksums, those of the adapter files of its epochs as they are
    now (taken on trust, so that the finished run's DONE.json lists every adapter)."""
    if "adapters" in checkpoint:
        return dict(checkpoint["adapters"])
    run_dir = Path(run_dir)
    adapters = {}
    for path in sorted((run_dir / LORA_DIR).glob("epoch_*.safetensors")):
        m = ADAPTER_FILE.match(path.name)
        if m and int(m.group(1)) <= checkpoint.get("epoch", -1):
            adapters[adapter_name(int(m.group(1)))] = file_sha256(path)
    return adapters


def config_file_hash(config: Mapping[str, Any]) -> str:
    """The hash of config.yaml's settings as eval.csv's ``config_hash`` records it
    (``provenance.run_config_hash``: the sections of the methods the run does not use left out)."""
    return config_hash(without_unused_sections(dict(config)))


def run_id_of(config: Mapping[str, Any]) -> str:
    """``RunConfig.run_id`` of config.yaml's settings (the ledger's ``run_id``)."""
    return f"{config['tier']}/{config['task']}/{config['method']}/seed{config['seed']}"


def recorded_task_version(run_dir: str | Path) -> int:
    """The version of its task's definition a run was made under (``hero_bench.tasks.Task.version``):
    DONE.json's ``task_version``, else the first ``task_version`` in eval.csv, else 1, the version of
    every task before runs recorded it."""
    run_dir = Path(run_dir)
    done = run_dir / DONE_FILE
    if done.is_file():
        version = json.loads(done.read_text()).get("task_version")
        if version is not None:
            return int(version)
    evals = run_dir / EVAL_FILE
    if evals.is_file():
        with open(evals, newline="") as fh:
            for row in csv.DictReader(fh):
                if (row.get("task_version") or "").strip():
                    return int(row["task_version"])
    return 1
