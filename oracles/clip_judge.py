"""Paper tier, CLIP judge: zero-shot caption comparisons with open_clip for the counting,
attribute, reasoning and personal-preference tasks.

Each task asks one or more *questions*. A question is a positive caption (what success looks
like) against negative captions (the usual ways the pretrained model misses). For an image the
judge computes CLIP's softmax over ``[positive, *negatives]`` (image-text cosine similarities
times the model's learned logit scale) and the question's **margin** ``p(positive) - max
p(negative)`` in [-1, 1]. An image succeeds when every question's margin exceeds
``margin_threshold`` (default 0: the positive caption is CLIP's first choice in every question);
its score is the smallest margin, so every success scores above every failure.

The captions are our own reading of each prompt (the paper's human criteria are NOT FOUND):

==============  ==============================================================================
task            questions (positive vs negatives)
==============  ==============================================================================
blue_rose       colour: a blue rose vs red / pink / white / yellow / purple rose;
                count: a single rose in a vase vs two roses / a bouquet / a rose without a vase
black_cat       colour: a black cat vs white / orange / grey / tabby cat;
                relation: a cat inside a cardboard box vs next to / on top of a box / no box
narcissus       subject: narcissus (daffodil) flowers vs a young man / tulips / roses / no flowers;
                reflection: flowers reflected in the water vs flowers with no water / water
                without a reflection
mountain        preference: green (grassy, forested) mountains vs snowy mountains, or the
                reverse when ``preference="snowy"`` (the evaluator's hidden preference)
==============  ==============================================================================

The model is loaded by ``clip_model.py`` (shared with ``nsfw.py``; its names stay importable from
here): from local files or the Hugging Face cache only, never the network at run time, with a
``ModelNotFoundError`` that says how to provide missing weights. Training and evaluation call the
factory bare; they take settings from the ``clip_judge`` section of ``$HERO_BENCH_ORACLE_SETTINGS``
(see ``docs/paper_tier.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from hero_bench.tasks import Prompt, Task, register_task
from oracles.base import OracleResult, task_factory
# the model and its weights (importable from here as before)
from oracles.clip_model import (CHECKPOINT_NAMES, ClipBundle, ClipModelSettings, load_clip,  # noqa: F401
                                resolve_clip_weights)
from oracles.paper_prompts import (
    BLACK_CAT_PROMPT,
    BLUE_ROSE_PROMPT,
    HIKER_PROMPT,
    MOUNTAIN_PROMPT,
    NARCISSUS_PROMPT,
    TRAIN_PROMPT_EVAL_NOTE,
    settings_from,
    validate_batch,
)

ORACLE_NAME = "clip_judge"
ORACLE_VERSION = "1"


@dataclass(frozen=True)
class ClipJudgeSettings(ClipModelSettings):
    """Settings of the CLIP judge tasks (blue_rose, black_cat, narcissus, mountain)."""

    margin_threshold: float = 0.0
    """A question passes when p(positive) - max p(negative) exceeds this (in [-1, 1))."""
    preference: Literal["green", "snowy"] = "green"
    """mountain only: the evaluator's hidden preference."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 <= self.margin_threshold < 1.0:
            raise ValueError(f"margin_threshold must lie in [-1, 1), got {self.margin_threshold}")


@dataclass(frozen=True)
class ClipQuestion:
    """One zero-shot comparison: does CLIP prefer ``positive`` over every negative caption?"""

    name: str
    """Short label used in ``details`` (e.g. ``colour``)."""
    positive: str
    """Caption of what success looks like."""
    negatives: tuple[str, ...]
    """Captions of the failure modes it competes against (at least one)."""

    def __post_init__(self) -> None:
        if not self.negatives:
            raise ValueError(f"question {self.name!r} needs at least one negative caption")


ROSE_COLOURS = ("red", "pink", "white", "yellow", "purple")
CAT_COLOURS = ("white", "orange", "grey", "tabby")

TASK_QUESTIONS: Mapping[str, tuple[ClipQuestion, ...]] = {
    "blue_rose": (
        ClipQuestion("colour", "a photo of a blue rose", tuple(f"a photo of a {c} rose" for c in ROSE_COLOURS)),
        ClipQuestion(
            "count",
            "a photo of a single rose in a vase",
            (
                "a photo of two roses in a vase",
                "a photo of a bouquet of many roses",
                "a photo of a rose without a vase",
            ),
        ),
    ),
    "black_cat": (
        ClipQuestion("colour", "a photo of a black cat", tuple(f"a photo of a {c} cat" for c in CAT_COLOURS)),
        ClipQuestion(
            "relation",
            "a photo of a cat sitting inside a cardboard box",
            (
                "a photo of a cat sitting next to a cardboard box",
                "a photo of a cat sitting on top of a cardboard box",
                "a photo of a cat and no box",
            ),
        ),
    ),
    "narcissus": (
        ClipQuestion(
            "subject",
            "a photo of narcissus flowers, daffodils",
            ("a photo of a young man", "a photo of tulips", "a photo of roses", "a landscape with no flowers"),
        ),
        ClipQuestion(
            "reflection",
            "flowers reflected in the still water of a spring",
            ("flowers on dry ground with no water", "a spring of water with no reflection of flowers"),
        ),
    ),
}

MOUNTAIN_CAPTIONS = {
    "green": "a photo of green mountains covered in grass and forest",
    "snowy": "a photo of snowy mountains covered in snow and ice",
}


def mountain_questions(preference: str) -> tuple[ClipQuestion, ...]:
    """The mountain task's single question for the evaluator's hidden ``preference``."""
    if preference not in MOUNTAIN_CAPTIONS:
        raise ValueError(f"preference {preference!r} is not one of {sorted(MOUNTAIN_CAPTIONS)}")
    other = next(k for k in MOUNTAIN_CAPTIONS if k != preference)
    return (ClipQuestion("preference", MOUNTAIN_CAPTIONS[preference], (MOUNTAIN_CAPTIONS[other],)),)


# -- judging ------------------------------------------------------------------------------------
def question_margins(probs: np.ndarray) -> np.ndarray:
    """``p(positive) - max p(negative)`` per row of softmax probabilities ``[N, 1 + n_negatives]``."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs[:, 0] - probs[:, 1:].max(axis=1)


class ClipJudge:
    """Zero-shot CLIP judge over a fixed list of questions; built by the task factories."""

    def __init__(self, bundle: ClipBundle, questions: Sequence[ClipQuestion], settings: ClipJudgeSettings,
                 task: str) -> None:
        if not questions:
            raise ValueError("a CLIP judge needs at least one question")
        self.bundle = bundle
        self.questions = tuple(questions)
        self.settings = settings
        self.task = task
        self.name = ORACLE_NAME
        self.version = f"{ORACLE_VERSION}+{bundle.source}"
        self._text = [bundle.encode_text([q.positive, *q.negatives]) for q in self.questions]
        self._scale = bundle.logit_scale()

    def probabilities(self, images: np.ndarray) -> list[np.ndarray]:
        """Per question, softmax probabilities ``[N, 1 + n_negatives]`` (positive first)."""
        # deferred: torch (the oracle modules import without it)
        import torch

        feats = self.bundle.encode_images(images, self.settings.batch_size)
        out = []
        for text in self._text:
            logits = self._scale * feats @ text.T
            out.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
        return out

    def __call__(self, images: np.ndarray, prompts: Sequence[str], metadata: Sequence[Mapping] | None = None):
        validate_batch(images, prompts, metadata, f"{self.name}/{self.task}")
        if len(images) == 0:
            return []
        probs = self.probabilities(images)
        margins = np.stack([question_margins(p) for p in probs], axis=1)  # [N, Q]
        results = []
        for i in range(len(images)):
            passed = margins[i] > self.settings.margin_threshold
            details = {
                "task": self.task,
                "margins": {q.name: round(float(m), 6) for q, m in zip(self.questions, margins[i])},
                "passed": {q.name: bool(p) for q, p in zip(self.questions, passed)},
                "p_positive": {q.name: round(float(p[i, 0]), 6) for q, p in zip(self.questions, probs)},
            }
            results.append(OracleResult(success=bool(passed.all()), score=float(margins[i].min()), details=details))
        return results


def make_clip_judge(task: str, settings: ClipJudgeSettings | Mapping[str, Any] | None = None,
                    **overrides: Any) -> ClipJudge:
    """Load the CLIP model once and return the judge of ``task`` (a key of ``TASK_QUESTIONS`` or
    ``mountain``). Settings: defaults, then the ``clip_judge`` section of
    ``$HERO_BENCH_ORACLE_SETTINGS``, then ``settings`` (a mapping of ``ClipJudgeSettings`` fields,
    strictly checked, or a complete ``ClipJudgeSettings``), then keyword overrides."""
    cfg = settings_from(ClipJudgeSettings, settings, overrides, section=ORACLE_NAME)
    if task == "mountain":
        questions = mountain_questions(cfg.preference)
    elif task in TASK_QUESTIONS:
        questions = TASK_QUESTIONS[task]
    else:
        raise ValueError(f"no CLIP questions for task {task!r}; known: {', '.join([*TASK_QUESTIONS, 'mountain'])}")
    return ClipJudge(load_clip(cfg), questions, cfg, task)


def _register() -> None:
    def prompts(*texts: str, task: str) -> tuple[Prompt, ...]:
        return tuple(Prompt(text=t, metadata={"task": task}) for t in texts)

    specs = [
        ("blue_rose", "counting", BLUE_ROSE_PROMPT, (BLUE_ROSE_PROMPT,),
         "exactly one blue rose in a vase: CLIP prefers 'blue rose' over other colours and 'a single rose "
         "in a vase' over two roses, a bouquet or no vase"),
        ("black_cat", "reasoning", BLACK_CAT_PROMPT, (BLACK_CAT_PROMPT,),
         "a black cat inside a cardboard box: CLIP prefers 'black cat' over other cat colours and 'inside "
         "a box' over next to / on top of / no box"),
        ("narcissus", "reasoning", NARCISSUS_PROMPT, (NARCISSUS_PROMPT,),
         "narcissus flowers and their reflection in water: CLIP prefers daffodils over a young man or other "
         "flowers, and 'reflected in the water' over no water / no reflection"),
        ("mountain", "personalization", MOUNTAIN_PROMPT, (HIKER_PROMPT,),
         "the evaluator's hidden preference (setting 'preference', default green): CLIP prefers green "
         "over snowy mountains (or the reverse); evaluated on the unseen hiker prompt"),
    ]
    for name, category, train, evals, description in specs:
        register_task(
            Task(
                name=name,
                tier="paper",
                category=category,
                description=description,
                train_prompts=prompts(train, task=name),
                eval_prompts=prompts(*evals, task=name),
                oracle_factory=task_factory(make_clip_judge, name),
                oracle_name=ORACLE_NAME,
                eval_note="" if set(evals).isdisjoint({train}) else TRAIN_PROMPT_EVAL_NOTE,
            )
        )


_register()
