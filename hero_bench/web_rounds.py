"""A round of labelling by a person: what the web page shows, and what it may send back.

The web evaluator (``hero_bench.web_evaluator``) asks a person instead of the oracle. Each round
is saved before it is shown, as ``RUN_DIR/web/eNNNN/``: the images as PNG files (the exact pixels
the model drew; the page upscales them) and ``round.json`` (the prompts, the ground truth the
oracle would use, D3PO's groups, HERO's current best, the budget). ``hero-bench agreement`` reads
the same files to compare the person's labels with the oracle's verdicts on those images.

A submission is checked here, against the round and the method's protocol (docs/feedback.md,
"A person in the loop"), before anything is recorded:

* every method: one good/bad label for each image of the round, and nothing else;
* HERO: at least one good and one bad image (the method needs both), and a best pick: in the
  first round any image of the batch (it becomes good), later one of the good images or the
  current best (``best: null`` keeps it);
* DDPO and D3PO: good/bad only (D3PO's pairs follow from the classes within each group, as the
  scripted protocol derives them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hero_bench.errors import HeroBenchError
from hero_bench.io import atomic_path, atomic_write_json
from hero_bench.ledger import image_id

ROUND_FORMAT = 1
WEB_DIR = "web"
ROUND_FILE = "round.json"
IMAGE_ID = re.compile(r"e\d{4}-i\d{4}")
"""What an image id looks like (``hero_bench.ledger.image_id``); anything else names no file."""


class SubmissionError(HeroBenchError):
    """A submission that does not fit its round or the method's protocol; nothing was recorded."""


def round_dir(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / WEB_DIR / f"e{int(epoch):04d}"


@dataclass(frozen=True)
class Round:
    """One batch waiting for a person's labels."""

    method: str
    """"hero", "ddpo" or "d3po": which protocol the page follows."""
    task: str
    epoch: int
    prompts: tuple[str, ...]
    """One per image."""
    metadata: tuple[Mapping[str, Any], ...]
    """One per image: the task prompt's ground truth (for ``hero-bench agreement``; never shown)."""
    groups: tuple[int, ...] | None
    """D3PO: the group of each image (shared z_T and prompt); None for the other methods."""
    current_best: Mapping[str, Any] | None
    """HERO after its first round: ``{"id", "file", "epoch"}`` of the best so far; else None."""
    feedback_used: int
    budget: int
    folder: Path
    """Where the round's files are (``round_dir``)."""

    @property
    def ids(self) -> list[str]:
        return [image_id(self.epoch, i) for i in range(len(self.prompts))]

    @property
    def n(self) -> int:
        return len(self.prompts)

    def to_json(self) -> dict:
        """round.json, and what the page is sent (the page ignores ``metadata``)."""
        return {
            "format": ROUND_FORMAT, "epoch": self.epoch, "method": self.method, "task": self.task,
            "images": [{"id": i, "file": f"{i}.png", "prompt": p, "metadata": dict(m),
                        "group": None if self.groups is None else self.groups[k]}
                       for k, (i, p, m) in enumerate(zip(self.ids, self.prompts, self.metadata))],
            "current_best": None if self.current_best is None else dict(self.current_best),
            "feedback_used": self.feedback_used, "budget": self.budget,
        }

    def image_file(self, wanted: str) -> Path | None:
        """The PNG of image ``wanted`` if this round shows it (its own images and the current best),
        else None. Only ids of the fixed pattern name files: no path a request sends is ever used."""
        if not IMAGE_ID.fullmatch(wanted):
            return None
        if wanted in self.ids:
            return self.folder / f"{wanted}.png"
        if self.current_best is not None and wanted == self.current_best["id"]:
            return self.folder.parent / f"e{int(self.current_best['epoch']):04d}" / f"{wanted}.png"
        return None


def save_round(run_dir: str | Path, method: str, task: str, epoch: int, images: np.ndarray,
               prompts: Sequence[str], metadata: Sequence[Mapping[str, Any]], groups: Sequence[int] | None,
               current_best: Mapping[str, Any] | None, feedback_used: int, budget: int) -> Round:
    """Write the round's PNGs and round.json (each atomically; round.json last) and return it.

    A round shown before a crash is written again, identically, by the resumed run (the sampler
    redraws the same images), so an existing folder is simply overwritten."""
    from PIL import Image  # deferred: PIL is only needed when a person labels

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(prompts):
        raise ValueError(f"save_round needs uint8 images [N, H, W, 3] for {len(prompts)} prompts, "
                         f"got {images.dtype} {images.shape}")
    folder = round_dir(run_dir, epoch)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = Round(method, task, int(epoch), tuple(prompts), tuple(dict(m) for m in metadata),
                None if groups is None else tuple(int(g) for g in groups),
                None if current_best is None else dict(current_best), int(feedback_used), int(budget), folder)
    for i, img in zip(rnd.ids, images):
        with atomic_path(folder / f"{i}.png") as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    atomic_write_json(folder / ROUND_FILE, rnd.to_json())
    return rnd


@dataclass(frozen=True)
class Submission:
    """A person's answer to one round, checked against it."""

    good: np.ndarray
    """bool [N]: the label of each image of the round, in round order."""
    best: str | None
    """HERO: the id of the best image after this round, or None when the current best stays."""


def check_submission(rnd: Round, payload: Any) -> Submission:
    """The submission in ``payload`` (the page's JSON), or SubmissionError naming what is wrong.

    ``payload``: ``{"epoch": E, "labels": {image_id: "good"|"bad", ...}, "best": image_id|null}``
    (``best`` for HERO only)."""
    if not isinstance(payload, Mapping):
        raise SubmissionError("the body must be a JSON object with 'epoch', 'labels' (and 'best' for HERO)")
    allowed = {"epoch", "labels"} | ({"best"} if rnd.method == "hero" else set())
    extra = sorted(set(payload) - allowed)
    if extra:
        raise SubmissionError(f"unknown field(s) {extra}; accepted for {rnd.method}: {sorted(allowed)}")
    epoch = payload.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch != rnd.epoch:
        raise SubmissionError(f"'epoch' must be the round's epoch {rnd.epoch}, got {epoch!r}")
    labels = payload.get("labels")
    if not isinstance(labels, Mapping):
        raise SubmissionError("'labels' must map each image id of the round to 'good' or 'bad'")
    ids = rnd.ids
    foreign = sorted(set(labels) - set(ids))
    missing = [i for i in ids if i not in labels]
    if foreign or missing:
        raise SubmissionError(f"'labels' must name exactly the round's {rnd.n} images ({ids[0]} .. {ids[-1]}); "
                              f"not in the round: {foreign[:3]}, unlabelled: {missing[:3]}")
    bad_values = sorted({repr(v) for v in labels.values() if v not in ("good", "bad")})
    if bad_values:
        raise SubmissionError(f"a label must be 'good' or 'bad', got {', '.join(bad_values[:3])}")
    good = np.array([labels[i] == "good" for i in ids], dtype=bool)
    best = None
    if rnd.method == "hero":
        best = _check_hero(rnd, good, payload.get("best", "<missing>"))
    return Submission(good=good, best=best)


def _check_hero(rnd: Round, good: np.ndarray, best: Any) -> str | None:
    ids = rnd.ids
    if rnd.current_best is None:  # first round: the best of the whole batch, which counts as good
        if best not in ids:
            raise SubmissionError(f"HERO's first round needs 'best': the id of the best image of the round, got {best!r}")
        good[ids.index(best)] = True
    elif best is not None:
        if best not in ids or not good[ids.index(best)]:
            raise SubmissionError(f"'best' must be one of the images marked good, or null to keep the current best "
                                  f"{rnd.current_best['id']}; got {best!r}")
    if good.all() or not good.any():
        raise SubmissionError("HERO needs at least one image marked good and one marked bad "
                              f"(got {int(good.sum())} good of {rnd.n})")
    return best
