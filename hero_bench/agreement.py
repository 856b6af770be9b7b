"""How well a task's scripted oracle stands in for a person: the labels a person gave on the web
labelling page against the oracle's verdicts on the very same images.

The benchmark's numbers rest on the oracle playing the human; this module measures that premise
where a person did label. It reads what the web evaluator saved of each round it showed
(``RUN_DIR/web/eNNNN/round.json`` and the round's lossless PNGs, the exact pixels the model drew),
pairs every image with the person's label in the run's ledger (``ledger.jsonl``, key = image id),
asks the task's oracle about the saved pixels, and reports Cohen's kappa, the 2x2 confusion table
(rows = person, columns = oracle, order [bad, good]), raw agreement and n, pooled and per method.

Kappa and the table come from scikit-learn, not from a formula of our own. Images that cannot be
paired are not guessed at but counted: ledger labels of an epoch without a saved round (labelled by
the oracle, or before the page existed) and images of a round the person never submitted.

The run's settings (task, method, budget, run id) are the caller's to read from config.yaml: this
module does not import the run config, so it stays below the methods (torch) in the layers.
"""

from __future__ import annotations

import functools
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from hero_bench.errors import HeroBenchError
from hero_bench.feedback import D3PO_SUCCESS, DDPO_REWARD, HERO_GOOD
from hero_bench.ledger import FeedbackLedger
from hero_bench.methods import get_method
from hero_bench.oracle_calls import OracleCallPolicy, ask_once, ask_until_valid
from hero_bench.tasks import get_task
from hero_bench.web_rounds import IMAGE_ID, ROUND_FILE, ROUND_FORMAT, WEB_DIR

ROUND_DIR = re.compile(r"e(\d{4})")
IMAGE_FILE = re.compile(IMAGE_ID.pattern + r"\.png")
"""A round's PNG is named after its image id; any other name (a path, ``..``) is refused."""
LABEL_KINDS = {"hero": HERO_GOOD, "ddpo": DDPO_REWARD, "d3po": D3PO_SUCCESS}
"""The ledger kind of a person's good/bad label under each method's protocol (docs/feedback.md)."""
CLASSES = (False, True)
"""Order of the confusion table's rows and columns: bad, good."""
NO_ROUNDS = ("holds no rounds labelled on the web page (web/eNNNN/round.json); agreement compares a "
             "web-labelled run with its oracle")


class AgreementError(HeroBenchError):
    """A run folder cannot be compared: no saved rounds, or a round or label that cannot be read."""


# -- one round as saved by the web evaluator ----------------------------------------------------
@dataclass(frozen=True)
class HumanRound:
    """One round the web page showed: its images, the prompts and ground truth the oracle needs."""

    path: Path
    """The round.json it was read from (named in errors)."""
    epoch: int
    method: str
    task: str
    ids: tuple[str, ...]
    images: np.ndarray
    """uint8 [N, H, W, 3], the saved pixels."""
    prompts: tuple[str, ...]
    metadata: tuple[Mapping[str, Any], ...]


def round_paths(run_dir: str | Path) -> list[Path]:
    """Every ``web/eNNNN/round.json`` of ``run_dir`` by epoch; AgreementError when there is none,
    since then there is nothing a person labelled to compare."""
    run_dir = Path(run_dir)
    web = run_dir / WEB_DIR
    paths = sorted(p / ROUND_FILE for p in web.iterdir() if ROUND_DIR.fullmatch(p.name)) if web.is_dir() else []
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise AgreementError(f"{run_dir} {NO_ROUNDS}")
    return paths


def read_round(path: str | Path) -> HumanRound:
    """The round saved at ``path`` (a round.json) with its PNGs; AgreementError in one line naming
    the file and what is accepted when it is not a round of format 1 or an image cannot be read."""
    path = Path(path)
    data = _round_json(path)
    entries = data["images"]
    pixels = [_read_png(path.parent, e["file"], path) for e in entries]
    if len({im.shape for im in pixels}) > 1:
        raise AgreementError(f"{path}: the round's images differ in size; accepted: one size for every image "
                             "of a round")
    images = np.stack(pixels) if pixels else np.zeros((0, 1, 1, 3), dtype=np.uint8)
    return HumanRound(path, data["epoch"], data["method"], data["task"], tuple(e["id"] for e in entries), images,
                      tuple(e["prompt"] for e in entries), tuple(dict(e["metadata"]) for e in entries))


def _round_json(path: Path) -> dict:
    """round.json parsed and checked against format 1 (the fields this module uses)."""
    accepted = (f"accepted: a JSON object of format {ROUND_FORMAT} with 'epoch' (the folder's), 'method' "
                f"({', '.join(LABEL_KINDS)}), 'task' and 'images' (each with 'id', 'file', 'prompt', 'metadata')")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AgreementError(f"{path} cannot be read ({type(exc).__name__}: {_first_line(exc)}); "
                             f"{accepted}") from None
    if not isinstance(data, dict):
        raise AgreementError(f"{path} holds a JSON {type(data).__name__}, not an object; {accepted}")
    if data.get("format") != ROUND_FORMAT:
        raise AgreementError(f"{path} is a round of format {data.get('format')!r}; {accepted}")
    epoch, images = data.get("epoch"), data.get("images")
    folder = ROUND_DIR.fullmatch(path.parent.name)
    ok = (folder is not None and not isinstance(epoch, bool) and epoch == int(folder.group(1))
          and data.get("method") in LABEL_KINDS and isinstance(data.get("task"), str) and isinstance(images, list)
          and all(_image_entry_ok(e) for e in images))
    if not ok:
        raise AgreementError(f"{path} does not hold a round of format {ROUND_FORMAT} as expected; {accepted}")
    return data


def _image_entry_ok(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("prompt"), str)
            and isinstance(entry.get("metadata"), dict) and isinstance(entry.get("file"), str)
            and IMAGE_FILE.fullmatch(entry["file"]) is not None)


def _read_png(folder: Path, name: str, round_path: Path) -> np.ndarray:
    """The pixels of ``folder/name``; the web page saved them as 8-bit RGB PNG, and anything else
    is not what the model drew, so it is refused rather than converted."""
    path = folder / name
    accepted = f"accepted: the 8-bit RGB PNG the web page saved for {round_path}"
    try:
        with Image.open(path) as im:
            im.load()
            if im.format != "PNG" or im.mode != "RGB":
                raise AgreementError(f"{path} is a {im.format} image of mode {im.mode}; {accepted}")
            return np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise AgreementError(f"{path} is missing; {accepted}") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:  # PIL raises these for damaged files
        raise AgreementError(f"{path} cannot be read ({type(exc).__name__}: {_first_line(exc)}); "
                             f"{accepted}") from None


# -- pairing a run's rounds with the person's labels --------------------------------------------
@dataclass(frozen=True)
class HumanLabels:
    """The images of one run that a person labelled on the web page, with those labels."""

    run_dir: Path
    method: str
    task: str
    rounds: tuple[HumanRound, ...]
    """Only the labelled images of each round are kept (a round never submitted is left out)."""
    human: tuple[bool, ...]
    """The person's label of each kept image, in round order (True = good)."""
    no_round: int
    """Ledger labels of an epoch without a saved round (or of an image its round does not show): skipped."""
    unlabelled: int
    """Images of a saved round without a ledger label (shown, never submitted): skipped."""


def read_human_rounds(run_dir: str | Path, ledger: FeedbackLedger, task: str, method: str) -> HumanLabels:
    """The web-labelled images of ``run_dir`` paired with the person's labels in ``ledger``.

    ``task`` and ``method`` are the run's (config.yaml); a round saved for another task or
    method is refused, since its labels would be compared with the wrong oracle or ledger kind."""
    run_dir = Path(run_dir)
    if method not in LABEL_KINDS:
        raise AgreementError(f"{run_dir}: method {method!r} takes no labels from a person; accepted: "
                             f"{', '.join(LABEL_KINDS)}")
    kind = LABEL_KINDS[method]
    labels = {r["image_id"]: r for r in ledger.records(kind=kind) if r["type"] == "label"}
    rounds, human, shown, unlabelled = [], [], set(), 0
    for path in round_paths(run_dir):
        rnd = read_round(path)
        if (rnd.task, rnd.method) != (task, method):
            raise AgreementError(f"{path} is a round of task {rnd.task}, method {rnd.method}, but config.yaml "
                                 f"runs task {task}, method {method}; accepted: the run's own rounds")
        shown.update(rnd.ids)
        keep = [k for k, i in enumerate(rnd.ids) if i in labels]
        unlabelled += len(rnd.ids) - len(keep)
        if keep:
            rounds.append(_subset(rnd, keep))
            human += [_yes_no(labels[rnd.ids[k]], ledger.path) for k in keep]
    no_round = sum(1 for i in labels if i not in shown)
    return HumanLabels(run_dir, method, task, tuple(rounds), tuple(human), no_round, unlabelled)


def _subset(rnd: HumanRound, keep: Sequence[int]) -> HumanRound:
    return HumanRound(rnd.path, rnd.epoch, rnd.method, rnd.task, tuple(rnd.ids[k] for k in keep), rnd.images[keep],
                      tuple(rnd.prompts[k] for k in keep), tuple(rnd.metadata[k] for k in keep))


def _yes_no(record: Mapping[str, Any], ledger_path: Path) -> bool:
    """A person's label as good (True) / bad (False). DDPO records it as a 0/1 reward; a reward of
    any other value (the "score" reward of a scripted run) is no person's yes/no, so it is refused."""
    value = record["value"]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise AgreementError(f"ledger {ledger_path}: label {record['kind']} of {record['image_id']} is {value!r}; "
                         "accepted: a person's yes/no (true/false, or a 0/1 reward)")


def oracle_verdicts(labels: HumanLabels, policy: OracleCallPolicy | None = None) -> tuple[bool, ...]:
    """The task oracle's ``success`` on every image of ``labels``, one call per round (the batch the
    person saw), under the evaluator's checks of a valid answer (``hero_bench.oracle_calls``)."""
    if not labels.rounds:
        return ()
    policy = policy or OracleCallPolicy()
    oracle = _oracle(labels.task)
    verdicts: list[bool] = []
    for rnd in labels.rounds:
        def attempt(rnd: HumanRound = rnd):
            return ask_once(oracle, rnd.images, list(rnd.prompts), list(rnd.metadata), policy.timeout_s)
        success, _ = ask_until_valid(attempt, policy, oracle=oracle, task=labels.task, method=rnd.method,
                                     epoch=rnd.epoch, n=len(rnd.ids))
        verdicts += [bool(s) for s in success]
    return tuple(verdicts)


@functools.lru_cache(maxsize=None)
def _oracle(task: str):
    """The task's oracle, built once per process (a paper-tier judge loads a model) for every run
    of that task compared."""
    return get_task(task).oracle_factory()


# -- the numbers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """Person against oracle on n images."""

    n: int
    agreement: float
    """Share of images where both said the same (nan when n = 0)."""
    kappa: float
    """Cohen's kappa; nan when undefined (both always said the same single class, or n = 0)."""
    confusion: tuple[tuple[int, int], tuple[int, int]]
    """Rows = person, columns = oracle, order [bad, good]."""

    def to_json(self) -> dict:
        return {"n": self.n, "agreement": _number(self.agreement), "kappa": _number(self.kappa),
                "confusion": [list(row) for row in self.confusion]}


def agreement(human: Sequence[bool], oracle: Sequence[bool]) -> Agreement:
    """Kappa and the confusion table of two raters of the same images (scikit-learn's)."""
    if len(human) != len(oracle):
        raise ValueError(f"agreement needs one oracle verdict per label, got {len(human)} and {len(oracle)}")
    human, oracle = [bool(h) for h in human], [bool(o) for o in oracle]
    n = len(human)
    if n == 0:
        return Agreement(0, math.nan, math.nan, ((0, 0), (0, 0)))
    table = confusion_matrix(human, oracle, labels=list(CLASSES))
    with warnings.catch_warnings():  # a single class on both sides: kappa is undefined, reported as such
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(human, oracle, labels=list(CLASSES), replace_undefined_by=np.nan)
    confusion = tuple(tuple(int(c) for c in row) for row in table)
    return Agreement(n, float(np.trace(table)) / n, float(kappa), confusion)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunAgreement:
    """One run folder compared: its labels, the oracle's verdicts and the skipped counts."""

    labels: HumanLabels
    oracle: tuple[bool, ...]

    @property
    def result(self) -> Agreement:
        return agreement(self.labels.human, self.oracle)


def compare_run(labels: HumanLabels, policy: OracleCallPolicy | None = None) -> RunAgreement:
    return RunAgreement(labels, oracle_verdicts(labels, policy))


def pooled(runs: Iterable[RunAgreement]) -> Agreement:
    runs = list(runs)
    return agreement([h for r in runs for h in r.labels.human], [o for r in runs for o in r.oracle])


def per_method(runs: Sequence[RunAgreement]) -> dict[str, Agreement]:
    """Pooled agreement of each method's runs, in the method table's order."""
    return {m: pooled(r for r in runs if r.labels.method == m)
            for m in LABEL_KINDS if any(r.labels.method == m for r in runs)}


def to_json(runs: Sequence[RunAgreement]) -> dict:
    """The numbers of ``markdown`` for ``--json``; undefined values are null."""
    return {
        "format": 1, "rows": "person", "columns": "oracle", "classes": ["bad", "good"],
        **pooled(runs).to_json(),
        "methods": {m: a.to_json() for m, a in per_method(runs).items()},
        "runs": [{"run_dir": str(r.labels.run_dir), "task": r.labels.task, "method": r.labels.method,
                  **r.result.to_json(), "skipped_no_round": r.labels.no_round,
                  "skipped_unlabelled": r.labels.unlabelled} for r in runs],
        "skipped_no_round": sum(r.labels.no_round for r in runs),
        "skipped_unlabelled": sum(r.labels.unlabelled for r in runs),
    }


def markdown(runs: Sequence[RunAgreement]) -> str:
    """Overall line, the confusion table, one line per method, then what was skipped."""
    total = pooled(runs)
    (bb, bg), (gb, gg) = total.confusion
    n_runs = len(runs)
    lines = [
        f"person vs oracle on {total.n} web-labelled images ({n_runs} run{'' if n_runs == 1 else 's'}): "
        f"agreement {_fmt(total.agreement)}, Cohen's kappa {_fmt(total.kappa)}",
        "",
        "| person \\ oracle | bad | good |",
        "|---|---:|---:|",
        f"| bad | {bb} | {bg} |",
        f"| good | {gb} | {gg} |",
        "",
        "| method | n | agreement | kappa |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {get_method(m).label} | {a.n} | {_fmt(a.agreement)} | {_fmt(a.kappa)} |"
              for m, a in per_method(runs).items()]
    no_round, unlabelled = sum(r.labels.no_round for r in runs), sum(r.labels.unlabelled for r in runs)
    if no_round or unlabelled:
        lines.append("")
    if no_round:
        lines.append(f"{no_round} label{'' if no_round == 1 else 's'} had no saved round and "
                     f"{'was' if no_round == 1 else 'were'} skipped")
    if unlabelled:
        lines.append(f"{unlabelled} image{'' if unlabelled == 1 else 's'} shown on the web page but never labelled "
                     f"{'was' if unlabelled == 1 else 'were'} skipped")
    if math.isnan(total.kappa) and total.n:
        lines.append("kappa is undefined: person and oracle each gave one and the same class to every image")
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def _fmt(x: float) -> str:
    return "undefined" if math.isnan(x) else f"{x:.3f}"
