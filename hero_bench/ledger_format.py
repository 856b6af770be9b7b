"""The feedback ledger's file format: one canonical JSON record per line, chained by hashes, and
how a ledger file read back is checked.

``hero_bench.ledger`` (``FeedbackLedger``) keeps a run's labels in memory, enforces the budget and
writes; this module fixes what the lines on disk are and refuses a file that is not what a run
writes.  Format 2 chains the records: each carries ``hash`` = sha256 of the previous record's
hash and its own canonical JSON (``chain_hash``), so a record edited, removed or moved anywhere
but a torn last line is refused, naming the file and the first bad line.  A ledger written before
format 2 (no ``hash`` in its first record) is read without a chain.  A crash while writing leaves
at most a torn last line or transaction, which ``complete_transactions`` drops.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from hero_bench.errors import HeroBenchError

LEDGER_FORMAT = 2
"""Format 2: every record carries ``hash`` (the hash chain); format 1 ledgers have none."""
GENESIS = "0" * 64
"""The "previous hash" of a ledger's first record, and the head of an empty format-2 ledger."""

REQUIRED_FIELDS = frozenset({"seq", "txn", "txn_size", "type", "run_id", "epoch", "kind", "value", "evaluator_seed"})
"""Fields every record has; a label also has ``image_id``, a query ``key``."""

ParsedLine = tuple[int, int, dict]
"""A record read back: (start byte, end byte including the newline, the record)."""


class LedgerError(HeroBenchError):
    """The ledger file is corrupt, belongs to another run, or disagrees with the current call
    (e.g. a resume with a different seed, evaluator config or batch layout)."""


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types (the ledger must not depend on numpy)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def canonical(rec: Mapping[str, Any]) -> str:
    """The one JSON text of a record: how its line is written, and what its hash covers."""
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), allow_nan=False)


def chain_hash(previous: str, rec: Mapping[str, Any]) -> str:
    """The ``hash`` of ``rec``: sha256 over the previous record's hash (``GENESIS`` for the first),
    a newline, and ``rec``'s canonical JSON without its own ``hash`` field.  Chaining makes every
    hash depend on all the records before it, so an edit, a removal or a swap breaks the chain at
    the first line it touches."""
    body = canonical({k: v for k, v in rec.items() if k != "hash"})
    return hashlib.sha256(f"{previous}\n{body}".encode("utf-8")).hexdigest()


def complete_lines(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end including the newline, raw line) of every complete line; a missing final
    newline means the write was cut short, so that line does not count."""
    lines = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        lines.append((pos, nl + 1, data[pos:nl]))
        pos = nl + 1
    return lines


def parse_records(path: Path, lines: list[tuple[int, int, bytes]]) -> list[ParsedLine]:
    """The records of ``lines``; garbage is tolerated in the last line only (a torn write)."""
    parsed: list[ParsedLine] = []
    for i, (start, end, raw) in enumerate(lines):
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict) or not REQUIRED_FIELDS.issubset(rec) or (
                ("image_id" if rec["type"] == "label" else "key") not in rec
            ):
                raise ValueError("not a ledger record")
        except (ValueError, UnicodeDecodeError) as exc:
            if i == len(lines) - 1:
                # A crash can leave garbage (e.g. zero-filled blocks) in the last line only.
                break
            raise LedgerError(
                f"ledger {path} is corrupt at line {i + 1} ({exc}); only a torn final line is "
                "tolerated. Restore it from a backup or start the run in a fresh directory."
            ) from None
        parsed.append((start, end, rec))
    return parsed


def check_chain(path: Path, parsed: list[ParsedLine]) -> bool:
    """Whether the ledger is chained: every record's hash follows from the one before (format 2,
    True), or no record has one (format 1, False; decided by the first record).  Anything else is
    a LedgerError.  ``parsed[j]`` is line j + 1: only the last line may be dropped as torn, so the
    numbering holds."""
    chained = not parsed or "hash" in parsed[0][2]
    previous = GENESIS
    for j, (_, _, rec) in enumerate(parsed):
        if not chained:
            if "hash" in rec:
                raise LedgerError(
                    f"ledger {path} line {j + 1} has a hash but line 1 has none; accepted: a ledger "
                    "whose every record carries the hash chain (format 2) or none does (format 1)"
                )
            continue
        if "hash" not in rec:
            raise LedgerError(
                f"ledger {path} line {j + 1} has no hash in a hash-chained ledger (format 2); "
                "the line was edited. Restore the ledger from a backup or start the run in a fresh directory."
            )
        if rec["hash"] != chain_hash(previous, rec):
            after = "the start of the chain" if j == 0 else f"line {j}'s hash"
            raise LedgerError(
                f"ledger {path} line {j + 1}: hash chain broken (the hash does not follow from the line's "
                f"content and {after}): this line was edited, or a line before it removed or moved. Restore "
                "the ledger from a backup or start the run in a fresh directory."
            )
        previous = rec["hash"]
    return chained


def complete_transactions(path: Path, run_id: str, parsed: list[ParsedLine]) -> list[ParsedLine]:
    """The records of complete transactions: transactions are all-or-nothing, so an incomplete
    trailing one is a torn write (dropped); a gap in ``seq``, a record of another run or a broken
    transaction before the last is a LedgerError.  Run ``check_chain`` first: for a removed or
    moved line it names the line, where the checks here would report only a gap in ``seq``."""
    txn_start = 0
    for j, (start, end, rec) in enumerate(parsed):
        if rec["seq"] != j:
            raise LedgerError(f"ledger {path}: record {j} has sequence number {rec['seq']} (expected {j})")
        if rec.get("run_id") != run_id:
            raise LedgerError(
                f"ledger {path} belongs to run {rec.get('run_id')!r}, not {run_id!r}; "
                "use a fresh run directory or the same run id"
            )
        if rec["txn"] == rec["seq"]:
            if j != txn_start and j - txn_start != parsed[txn_start][2]["txn_size"]:
                raise LedgerError(f"ledger {path}: transaction at record {txn_start} is incomplete")
            txn_start = j
        elif rec["txn"] != txn_start:
            raise LedgerError(f"ledger {path}: record {j} claims transaction {rec['txn']}, open is {txn_start}")
    if not parsed:
        return []
    last_size = parsed[txn_start][2]["txn_size"]
    n_complete = len(parsed) if len(parsed) - txn_start == last_size else txn_start
    return parsed[:n_complete]
