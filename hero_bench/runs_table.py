"""The runs table: per-run ``eval.csv`` files read, validated and concatenated (``gather``).

Every value is checked on the way in, so that a bad file fails here, naming the file, column and
line, instead of turning into a wrong number in a summary (``hero_bench.summary``).  The run folder
each eval.csv sits in is verified too (``hero_bench.integrity``, what ``hero-bench verify``
checks): a run that fails is refused, naming the run and its first problem.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from hero_bench.errors import HeroBenchError
from hero_bench.integrity import IntegrityError, is_run_folder, verify_run
from hero_bench.results import EVAL_COLUMNS, LATER_COLUMNS, TRANSFER_COLUMNS

log = logging.getLogger(__name__)

# columns of eval.csv by how they are parsed
_TEXT_REQUIRED = ("tier", "task", "method")
_TEXT_OPTIONAL = ("oracle", "oracle_version", "task_version", "label_noise", "backbone", "config_hash", "git_sha")
_INT_REQUIRED = ("seed", "epoch", "feedback_used")
_INT_OPTIONAL = ("queries", "images_generated", "n_eval", "transfer_n_eval")
_FLOAT_REQUIRED = ("success_rate",)
_FLOAT_OPTIONAL = ("mean_score", "diversity", "transfer_success_rate", "transfer_mean_score")
_RATES = ("success_rate", "transfer_success_rate")
RUN_KEY = ["tier", "task", "method", "seed"]
"""The columns that identify one run."""
_SORT_KEY = ["tier", "task", "method", "seed", "feedback_used", "epoch"]


class ResultsFormatError(HeroBenchError, ValueError):
    """An eval.csv / runs.csv file is missing, unreadable or has a bad column or value."""


def _read_text(path: str) -> pd.DataFrame:
    """The file's EVAL_COLUMNS as stripped strings; the file must be an eval.csv."""
    if not os.path.isfile(path):
        raise ResultsFormatError(f"{path}: no such file (expected a per-run eval.csv)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ResultsFormatError(f"{path}: empty file; expected a CSV header with columns {', '.join(EVAL_COLUMNS)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ResultsFormatError(f"{path}: not a readable CSV ({exc})") from None
    for c in (*TRANSFER_COLUMNS, *LATER_COLUMNS):
        if c not in raw.columns:  # an eval.csv written before the column existed: the value is unknown
            raw[c] = ""
    missing = [c for c in EVAL_COLUMNS if c not in raw.columns]
    if missing:
        raise ResultsFormatError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)}; "
            f"an eval.csv needs the columns {', '.join(EVAL_COLUMNS)} (hero_bench.results.EVAL_COLUMNS)"
        )
    if "prompt_set" in raw.columns:
        # `hero-bench evaluate --prompts train|eval` rows: one prompt list only, in the success_rate
        # column; mixing them with eval.csv rows would put two different metrics in one column
        sets = sorted({v.strip() for v in raw["prompt_set"]})
        which = " and ".join({"train": "the training prompts", "eval": "the held-out prompts"}.get(v, repr(v))
                             for v in sets)
        raise ResultsFormatError(
            f"{path}: a single-split file, rows evaluated on {which} only (prompt_set {sets}, written by "
            "`hero-bench evaluate --prompts`); gather and report read eval.csv rows only (primary success "
            "on the task's own prompts, plus transfer)"
        )
    return raw[list(EVAL_COLUMNS)].apply(lambda col: col.str.strip())


def _typed(raw: pd.DataFrame, path: str) -> pd.DataFrame:
    """``raw``'s columns parsed to their types; the first bad value is a ResultsFormatError."""
    out = pd.DataFrame(index=raw.index)

    def bad(column: str, mask: pd.Series, what: str) -> None:
        i = int(np.flatnonzero(mask.to_numpy())[0])
        value = raw[column].iloc[i]
        raise ResultsFormatError(
            f"{path}: column {column!r}, line {i + 2}: {value!r} is not {what}"
        )

    for c in _TEXT_REQUIRED:
        empty = raw[c] == ""
        if empty.any():
            bad(c, empty, "a non-empty name")
        out[c] = raw[c]
    for c in _TEXT_OPTIONAL:
        out[c] = raw[c]
    for c in _INT_REQUIRED + _INT_OPTIONAL:
        num = pd.to_numeric(raw[c], errors="coerce")
        required = c in _INT_REQUIRED
        invalid = (num.isna() & ((raw[c] != "") | required)) | np.isinf(num)
        invalid |= num.notna() & ~invalid & (num != num.round())
        if invalid.any():
            bad(c, invalid, "an integer" + ("" if required else " (or empty)"))
        negative = num < 0
        if c != "seed" and negative.any():
            bad(c, negative, "a non-negative integer")
        out[c] = num.astype("int64") if required else num.astype("Int64")
    for c in _FLOAT_REQUIRED + _FLOAT_OPTIONAL:
        num = pd.to_numeric(raw[c], errors="coerce")
        required = c in _FLOAT_REQUIRED
        invalid = (num.isna() & ((raw[c] != "") | required)) | np.isinf(num)
        if invalid.any():
            bad(c, invalid, "a finite number" + ("" if required else " (or empty)"))
        out[c] = num.astype(float)
    for c in _RATES:
        out_of_range = (out[c] < 0) | (out[c] > 1)
        if out_of_range.any():
            bad(c, out_of_range, "a success rate in [0, 1]")
    return out


def read_eval_csv(path: str | os.PathLike) -> pd.DataFrame:
    """One run's eval.csv, validated and typed: columns ``EVAL_COLUMNS`` plus ``_source`` (the path)."""
    path = os.fspath(path)
    out = _typed(_read_text(path), path)
    out["_source"] = path
    return out[list(EVAL_COLUMNS) + ["_source"]]


def verify_run_folders(csv_paths: list[str]) -> None:
    """Verify the run folder of every eval.csv; raise IntegrityError for the first that fails.

    Warnings (a finished run kept without its ledger, a ledger written before format 2, ...) are
    logged once per distinct message with the number of runs it concerns, so that gathering the
    published grids says so in a few lines.  An eval.csv outside a run folder (no config.yaml,
    ledger.jsonl, checkpoint.pt or DONE.json beside it: a table made by hand) cannot be verified;
    that is logged too."""
    folders = list(dict.fromkeys(Path(p).parent for p in csv_paths))
    outside = [f for f in folders if not is_run_folder(f)]
    warnings: Counter[str] = Counter()
    for folder in folders:
        if folder in outside:
            continue
        result = verify_run(folder)
        if not result.ok:
            raise IntegrityError(result.refusal("gather"))
        warnings.update(dict.fromkeys(result.warnings, 1))
    n_runs = len(folders) - len(outside)
    for message, count in warnings.items():
        log.warning("gather: %d of %d runs verified with a warning: %s", count, n_runs, message)
    if outside:
        log.warning("gather: %d folder(s) hold an eval.csv but no run files (config.yaml, ledger.jsonl, checkpoint.pt, "
                    "DONE.json), so were not verified, e.g. %s", len(outside), outside[0])


def gather(csv_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Validate and concatenate per-run ``eval.csv`` files into one tidy table.

    Columns are exactly ``EVAL_COLUMNS`` (extra columns are dropped); rows are sorted by tier,
    task, method, seed, feedback_used, epoch.  Raises ``ResultsFormatError`` naming the file,
    column and line of the first bad value, or both files when a checkpoint appears twice, and
    ``IntegrityError`` naming a run whose folder fails verification (``verify_run_folders``).
    """
    paths = [os.fspath(p) for p in csv_paths]
    if not paths:
        raise ResultsFormatError("no eval.csv files given")
    frames = [read_eval_csv(p) for p in paths]
    verify_run_folders(paths)
    df = pd.concat(frames, ignore_index=True)
    if df.empty:
        raise ResultsFormatError(f"no result rows in {', '.join(paths)}")
    key = RUN_KEY + ["epoch", "feedback_used"]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        rows = df[dup].sort_values(key)
        first = rows.iloc[0]
        same = rows[(rows[key] == first[key]).all(axis=1)]
        files = sorted(set(same["_source"]))
        where = " and ".join(files) if len(files) > 1 else f"{files[0]} (twice)"
        raise ResultsFormatError(
            "the same checkpoint appears more than once: tier={tier} task={task} method={method} "
            "seed={seed} epoch={epoch} feedback_used={feedback_used} in {where}; gather each run's "
            "eval.csv once".format(where=where, **{k: first[k] for k in key})
        )
    df = df.drop(columns="_source").sort_values(_SORT_KEY, kind="stable").reset_index(drop=True)
    return df
