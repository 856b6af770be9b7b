"""The feedback ledger: every label of a run, durable before it is used.

The ledger is an append-only JSONL file (``RUN_DIR/ledger.jsonl``).  It is the single source of
the ``feedback_used`` figure (one feedback = one image labelled) and of ``queries`` (HERO's best
pick, D3PO's pair comparisons), holds the one budget check (``check_budget``), and is fsync'ed
before any label is handed back to the caller.  Records of one evaluator call are written as one
transaction; a crash while writing leaves at most a torn tail, which is ignored on reload and
truncated before the next append.

Ledger format 2 chains the records: each carries ``hash`` = sha256 of the previous record's hash
and its own canonical JSON (``chain_hash``), so a record edited, removed or moved anywhere but a
torn last line is refused on reload, naming the file and the first bad line.  A cut at a record
boundary leaves a valid chain; the checkpoint and DONE.json record the ledger's length and head
hash (``head``) to catch that (``hero_bench.integrity``).  A ledger written before format 2 (no
``hash`` in its first record) is read and continued without a chain.  The lines, the chain and
the checks of a file read back are ``hero_bench.ledger_format``'s; ``GENESIS``, ``chain_hash`` and
``LedgerError`` are importable from here too.

What the records mean (label kinds, query keys) is the evaluator's business
(``hero_bench.feedback``); the ledger only stores, counts and replays them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hero_bench.errors import BudgetExceededError, ConfigError
from hero_bench.io import fsync_dir
from hero_bench.ledger_format import (GENESIS, LedgerError, ParsedLine, canonical, chain_hash, check_chain,
                                      complete_lines, complete_transactions, jsonable, parse_records)

log = logging.getLogger(__name__)

LEDGER_FILENAME = "ledger.jsonl"


def image_id(epoch: int, index: int) -> str:
    """Deterministic id of the ``index``-th image of ``epoch``'s batch (the ledger key)."""
    return f"e{epoch:04d}-i{index:04d}"


class FeedbackLedger:
    """Append-only JSONL at RUN_DIR/ledger.jsonl; every record flushed+fsync'ed before the label is returned.

    ``path`` is the ledger file (a directory means ``<dir>/ledger.jsonl``). Reopening an existing
    ledger reloads its records, so a resumed run can replay labels with :meth:`lookup` instead of
    asking again. Each record carries ``seq`` (0, 1, 2, ... without gaps), ``txn``/``txn_size``
    (the records written together by one call), ``type`` ("label" or "query"), ``run_id``,
    ``epoch``, ``kind``, ``image_id`` (labels) or ``key`` (queries), ``value``, ``evaluator_seed``,
    audit fields (``oracle_success``, ``oracle_score``, ``extra``) and ``hash`` (the chain,
    ``chain_hash``; absent in a ledger written before format 2, which stays without one).

    Reopening refuses (``LedgerError``) a ledger whose chain is broken, or that holds more labels
    than ``budget``: only a torn last line or transaction, left by a crash, is tolerated.
    """

    def __init__(self, path: str | os.PathLike, budget: int, run_id: str):
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ConfigError(f"feedback budget must be a non-negative integer, got {budget!r}")
        if not isinstance(run_id, str) or not run_id:
            raise ConfigError(f"ledger run_id must be a non-empty string, got {run_id!r}")
        path = Path(path)
        if path.is_dir():
            path = path / LEDGER_FILENAME
        self.path = path
        self.run_id = run_id
        self._budget = int(budget)
        self._records: list[dict] = []
        self._index: dict[tuple[str, str], dict] = {}
        self._labels = 0
        self._queries = 0
        self._per_epoch: dict[tuple[str, int], int] = {}
        self._hashes: list[str] = []  # _hashes[i] = hash of record i (format 2)
        self._chained = True  # False: a ledger written before format 2, continued without hashes
        self._valid_end = 0  # byte offset after the last complete, accepted record
        self._file_size = 0
        self._pending: list[dict] | None = None
        self._pending_labels = 0
        self.recovered_bytes = 0
        """Bytes of a torn tail found on load (ignored, truncated before the next append)."""
        if path.exists():
            self._load()

    # -- properties -------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        """Maximum number of image labels this run may ask for."""
        return self._budget

    @property
    def feedback_used(self) -> int:
        """Image labels recorded (one feedback = one image labelled)."""
        return self._labels

    @property
    def queries(self) -> int:
        """Best picks and pair comparisons recorded (reported next to, not inside, feedback_used)."""
        return self._queries

    @property
    def remaining(self) -> int:
        """Labels still allowed by the budget (never negative)."""
        return max(0, self._budget - self._labels - self._pending_labels)

    @property
    def chained(self) -> bool:
        """Whether the records carry the hash chain (ledger format 2); False for an older ledger."""
        return self._chained

    @property
    def head(self) -> str | None:
        """Hash of the last record (``GENESIS`` when empty); None for a ledger without a chain."""
        return self.head_at(len(self._records))

    def head_at(self, n: int) -> str | None:
        """Hash of the first ``n`` records, as ``head`` was when the ledger had ``n`` records
        (what a checkpoint records); None for a ledger without a chain."""
        if not 0 <= n <= len(self._records):
            raise ValueError(f"head_at({n}): the ledger has {len(self._records)} records")
        if not self._chained:
            return None
        return self._hashes[n - 1] if n else GENESIS

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return (f"FeedbackLedger({str(self.path)!r}, budget={self._budget}, feedback_used={self._labels}, "
                f"queries={self._queries}, run_id={self.run_id!r})")

    # -- reading ----------------------------------------------------------------------------
    def lookup(self, kind: str, key: str) -> dict | None:
        """The record of label ``(kind, image_id)`` or query ``(kind, key)``, or None (a copy)."""
        rec = self._index.get((kind, key))
        return None if rec is None else json.loads(json.dumps(rec))

    def count(self, kind: str, epoch: int | None = None) -> int:
        """Number of records of ``kind`` (in ``epoch``, if given)."""
        if epoch is None:
            return sum(n for (k, _), n in self._per_epoch.items() if k == kind)
        return self._per_epoch.get((kind, int(epoch)), 0)

    def used_before(self, epoch: int) -> int:
        """Labels recorded in epochs < ``epoch``.

        A resumed run must size a replayed epoch's batch with ``budget - used_before(epoch)``:
        ``remaining`` already counts the labels of the epoch being replayed."""
        return sum(1 for r in self._records if r["type"] == "label" and r["epoch"] < epoch)

    def records(self, kind: str | None = None, epoch: int | None = None) -> Iterator[dict]:
        """All records in write order (copies), optionally filtered by kind and epoch."""
        for rec in self._records:
            if (kind is None or rec["kind"] == kind) and (epoch is None or rec["epoch"] == epoch):
                yield json.loads(json.dumps(rec))

    # -- loading ----------------------------------------------------------------------------
    def _load(self) -> None:
        data = self.path.read_bytes()
        self._file_size = len(data)
        parsed = parse_records(self.path, complete_lines(data))
        self._chained = check_chain(self.path, parsed)
        accepted = complete_transactions(self.path, self.run_id, parsed)
        for _, _, rec in accepted:
            self._add(rec)
        self._check_budget_on_load(accepted)
        self._valid_end = accepted[-1][1] if accepted else 0
        self.recovered_bytes = self._file_size - self._valid_end
        if accepted and not self._chained:
            log.warning(
                "ledger %s has no hash chain (written before ledger format 2): its records are used as they "
                "are and new ones are appended without hashes, so edits to it cannot be detected", self.path,
            )
        if self.recovered_bytes:
            log.warning(
                "ledger %s: ignoring a torn tail of %d bytes (%d incomplete records) left by a crash; "
                "it will be truncated before the next append",
                self.path, self.recovered_bytes, len(parsed) - len(accepted),
            )

    def _check_budget_on_load(self, accepted: list[ParsedLine]) -> None:
        """A ledger never holds more labels than its budget (``check_budget`` runs before every
        write), so more on reload means labels were added by hand or by a run of a larger budget."""
        if self._labels <= self._budget:
            return
        labels = [j for j, (_, _, rec) in enumerate(accepted) if rec["type"] == "label"]
        raise LedgerError(
            f"ledger {self.path} holds {self._labels} labels, more than the budget of {self._budget} "
            f"(line {labels[self._budget] + 1} is label {self._budget + 1}); accepted: at most the run's budget, "
            "which the ledger enforces before every label, so the extra lines were not written by this run"
        )

    def _add(self, rec: dict) -> None:
        key = rec["image_id"] if rec["type"] == "label" else rec["key"]
        self._records.append(rec)
        if self._chained:
            self._hashes.append(rec["hash"])
        self._index[(rec["kind"], key)] = rec
        pe = (rec["kind"], rec["epoch"])
        self._per_epoch[pe] = self._per_epoch.get(pe, 0) + 1
        if rec["type"] == "label":
            self._labels += 1
        else:
            self._queries += 1

    # -- writing ----------------------------------------------------------------------------
    def check_budget(self, n: int) -> None:
        """Raise BudgetExceededError if ``n`` more labels (besides those of an open transaction)
        would exceed the budget.  The one budget check: ``record_labels`` runs it before recording
        anything, and the evaluator before it even asks the oracle."""
        used = self._labels + self._pending_labels
        if used + n > self._budget:
            raise BudgetExceededError(
                f"feedback budget exceeded: budget {self._budget}, used {used}, requested {n} "
                f"(remaining {max(0, self._budget - used)}); size the batch with ledger.remaining"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator["FeedbackLedger"]:
        """Group the records of one evaluator call: written and fsync'ed together on exit, or not
        at all if the block raises (and, after a crash mid-write, dropped whole on reload)."""
        if self._pending is not None:
            raise RuntimeError("ledger transactions do not nest")
        self._pending = []
        self._pending_labels = 0
        try:
            yield self
            pending = self._pending
        finally:
            self._pending = None
            self._pending_labels = 0
        self._commit(pending)

    def record_labels(self, epoch: int, image_ids: Sequence[str], kind: str, values: Sequence[Any],
                      evaluator_seed: int, *, oracle_successes: Sequence[bool] | None = None,
                      oracle_scores: Sequence[float] | None = None,
                      extra: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Append one label per image (each counts as one feedback).

        Raises BudgetExceededError, before recording anything, if the labels would exceed the
        budget; LedgerError if an image already has a ``kind`` label (replay it instead)."""
        image_ids = list(image_ids)
        values = list(values)
        n = len(image_ids)
        for name, seq in (("values", values), ("oracle_successes", oracle_successes),
                          ("oracle_scores", oracle_scores), ("extra", extra)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"record_labels: {len(seq)} {name} for {n} image ids")
        self.check_budget(n)
        pending_ids = {r["image_id"] for r in (self._pending or []) if r["type"] == "label" and r["kind"] == kind}
        if len(set(image_ids)) != n:
            raise LedgerError(f"record_labels: duplicate image ids in one call for kind {kind!r}")
        for iid in image_ids:
            if (kind, iid) in self._index or iid in pending_ids:
                raise LedgerError(
                    f"image {iid} already has a {kind!r} label in {self.path}; replay it with lookup() "
                    "instead of labelling it again"
                )
        recs = []
        for i, iid in enumerate(image_ids):
            rec = {"type": "label", "run_id": self.run_id, "epoch": int(epoch), "kind": kind,
                   "image_id": iid, "value": jsonable(values[i]), "evaluator_seed": int(evaluator_seed)}
            if oracle_successes is not None:
                rec["oracle_success"] = bool(oracle_successes[i])
            if oracle_scores is not None:
                rec["oracle_score"] = float(oracle_scores[i])
            if extra is not None:
                rec["extra"] = jsonable(dict(extra[i]))
            recs.append(rec)
        self._stage(recs, labels=n)

    def record_query(self, epoch: int, kind: str, key: str, value: Any, evaluator_seed: int, *,
                     extra: Mapping[str, Any] | None = None) -> None:
        """Append one query (a best pick or a pair comparison); counts toward ``queries``."""
        if (kind, key) in self._index or any(
            r["type"] == "query" and r["kind"] == kind and r["key"] == key for r in (self._pending or [])
        ):
            raise LedgerError(f"query {kind}:{key} is already in {self.path}; replay it with lookup()")
        rec = {"type": "query", "run_id": self.run_id, "epoch": int(epoch), "kind": kind, "key": key,
               "value": jsonable(value), "evaluator_seed": int(evaluator_seed)}
        if extra is not None:
            rec["extra"] = jsonable(dict(extra))
        self._stage([rec], labels=0)

    def _stage(self, recs: list[dict], labels: int) -> None:
        if self._pending is not None:
            self._pending.extend(recs)
            self._pending_labels += labels
        else:
            self._commit(recs)

    def _commit(self, recs: list[dict]) -> None:
        if not recs:
            return
        seq0 = len(self._records)
        previous = self.head
        lines = []
        for k, rec in enumerate(recs):
            rec = dict(rec, seq=seq0 + k, txn=seq0, txn_size=len(recs))
            try:
                if self._chained:
                    rec["hash"] = previous = chain_hash(previous, rec)
                lines.append(canonical(rec))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"ledger record {rec.get('kind')}:{rec.get('image_id', rec.get('key'))} "
                                 f"is not finite JSON: {exc}") from None
            recs[k] = rec
        blob = ("\n".join(lines) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._append(blob)
        if created:
            fsync_dir(self.path.parent)
        self._valid_end += len(blob)
        self._file_size = self._valid_end
        for rec in recs:
            self._add(rec)

    def _append(self, blob: bytes) -> None:
        """Write ``blob`` after the last complete record and fsync it; on failure cut off whatever
        reached the file, so nothing of this transaction counts."""
        fd = os.open(str(self.path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if self._file_size != self._valid_end:
                # Drop a torn tail (or a failed earlier write) so the new records follow complete lines.
                os.ftruncate(fd, self._valid_end)
                self._file_size = self._valid_end
            try:
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except BaseException:
                # Cut what reached the file so it cannot be mistaken for data (a reload would drop
                # the incomplete transaction anyway).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._valid_end)
                    os.fsync(fd)
                raise
        finally:
            os.close(fd)
