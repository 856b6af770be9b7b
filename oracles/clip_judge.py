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

Weights never come from the network at run time. ``pretrained`` is a local checkpoint file, a
local folder (an ``open_clip_config.json`` folder, or any folder holding one checkpoint), or an
open_clip pretrained tag for ``model_name`` that is looked up in the local Hugging Face cache only
(``HF_HOME``/``HF_HUB_CACHE`` or ``hf_cache_dir``). Missing weights raise ``ModelNotFoundError``
naming the model, where it was looked for and how to provide it. ``nsfw.py`` reuses the loader.
Training and evaluation call the factory bare; they take settings from the ``clip_judge`` section
of ``$HERO_BENCH_ORACLE_SETTINGS`` (see ``docs/paper_tier.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from oracles.base import task_factory
from oracles.paper_prompts import (
    BLACK_CAT_PROMPT,
    BLUE_ROSE_PROMPT,
    HIKER_PROMPT,
    MOUNTAIN_PROMPT,
    NARCISSUS_PROMPT,
    TRAIN_PROMPT_EVAL_NOTE,
    resolve_device,
    settings_from,
    validate_batch,
)

ORACLE_NAME = "clip_judge"
ORACLE_VERSION = "1"
CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
"""File names open_clip uses inside a model folder / Hugging Face repo, preferred first."""


@dataclass(frozen=True)
class ClipModelSettings:
    """Which open_clip model to load and where its weights are (shared by the CLIP and NSFW judges)."""

    model_name: str = "ViT-B-32"
    """open_clip architecture name (``open_clip.list_models()``), or one defined by a JSON file in
    ``model_config_dir``. Ignored when ``pretrained`` is a folder with an ``open_clip_config.json``."""
    pretrained: str = "laion2b_s34b_b79k"
    """Weights: a checkpoint file, a model folder, or an open_clip tag of ``model_name`` that must
    already be in the local Hugging Face cache (nothing is downloaded)."""
    model_config_dir: str = ""
    """Optional folder of extra open_clip model-config JSON files (custom or tiny architectures)."""
    hf_cache_dir: str = ""
    """Hugging Face hub cache to search for tagged weights; empty = the default (``HF_HUB_CACHE``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Model precision on GPU; CPU always runs fp32."""
    batch_size: int = 32
    """Images encoded per forward pass."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.model_name.strip():
            raise ValueError("model_name is empty; name an open_clip architecture, e.g. ViT-B-32")
        if self.model_name.startswith("hf-hub:"):
            raise ValueError(
                f"model_name {self.model_name!r}: hub schemas download at run time; download the "
                "repository once and set pretrained to its local folder instead"
            )


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


# -- loading ------------------------------------------------------------------------------------
@dataclass
class ClipBundle:
    """A loaded open_clip model with its eval preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    source: str
    """What was loaded, for oracle versions and error messages (``model_name@weights``)."""

    def encode_text(self, captions: Sequence[str]):
        """L2-normalised text embeddings ``[len(captions), D]`` (float32, on the model's device)."""
        import torch

        with torch.no_grad():
            tokens = self.tokenizer(list(captions)).to(self.device)
            feats = self.model.encode_text(tokens).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_images(self, images: np.ndarray, batch_size: int):
        """L2-normalised image embeddings ``[N, D]`` of uint8 ``[N, H, W, 3]`` images."""
        import torch
        from PIL import Image

        dtype = next(self.model.parameters()).dtype
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                pixels = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im))) for im in chunk])
                feats = self.model.encode_image(pixels.to(self.device, dtype)).float()
                out.append(feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        return torch.cat(out) if out else torch.zeros((0, 0))

    def logit_scale(self) -> float:
        """The model's learned temperature (exp of ``logit_scale``, capped at 100 as in training)."""
        import torch

        with torch.no_grad():
            return float(min(float(self.model.logit_scale.exp()), 100.0))


def _not_found(settings: ClipModelSettings, looked: str, repo: str = "<repo>") -> Exception:
    from hero_bench.errors import ModelNotFoundError

    return ModelNotFoundError(
        f"open_clip weights for model {settings.model_name!r} (pretrained={settings.pretrained!r}) not found: "
        f"{looked}. Nothing is downloaded at run time. Provide them by setting 'pretrained' (in the "
        "clip_judge or nsfw_judge section of $HERO_BENCH_ORACLE_SETTINGS, or the factory's settings) to a "
        "local checkpoint file or model folder, or by putting the tagged weights in the "
        f"Hugging Face cache beforehand (on a machine with network: `huggingface-cli download {repo}`, "
        "then copy the cache or point HF_HOME/HF_HUB_CACHE or "
        "'hf_cache_dir' at it)."
    )


def _checkpoint_in_dir(folder: Path) -> Path | None:
    for name in CHECKPOINT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for ext in ("*.safetensors", "*.pt", "*.pth", "*.bin") for p in folder.glob(ext))
    return found[0] if len(found) == 1 else None


def resolve_clip_weights(settings: ClipModelSettings) -> tuple[str, str | None, dict]:
    """Where the weights are, without touching the network.

    Returns ``(model_name, checkpoint_path, tag_config)``: ``model_name`` becomes
    ``local-dir:<folder>`` for an open_clip config folder (checkpoint_path is then None), and
    ``tag_config`` is open_clip's pretrained config for a tag (preprocessing, quick_gelu) or ``{}``.
    """
    import open_clip

    pretrained = settings.pretrained.strip()
    if not pretrained:
        raise _not_found(settings, "'pretrained' is empty")
    path = Path(pretrained).expanduser()
    if path.is_file():
        return settings.model_name, str(path), {}
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return f"local-dir:{path}", None, {}
        ckpt = _checkpoint_in_dir(path)
        if ckpt is None:
            raise _not_found(
                settings, f"folder {path} holds neither open_clip_config.json nor exactly one checkpoint "
                f"({', '.join(CHECKPOINT_NAMES)}, *.safetensors, *.pt, *.bin)"
            )
        return settings.model_name, str(ckpt), {}
    if os.sep in pretrained or pretrained.startswith((".", "~")) or pretrained.endswith(
        (".safetensors", ".pt", ".pth", ".bin")
    ):
        raise _not_found(settings, f"no file or folder at {path}")
    tag_cfg = open_clip.get_pretrained_cfg(settings.model_name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(settings.model_name)
        raise _not_found(
            settings,
            f"{pretrained!r} is neither an existing path nor a known open_clip tag of {settings.model_name!r} "
            f"(known tags: {', '.join(tags) if tags else 'none'})",
        )
    looked = []
    repo_id = "<repo>"
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import constants, try_to_load_from_cache

        # open_clip's convention: "org/repo/filename", or "org/repo/" for the default file names
        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else []
        if filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, os.path.splitext(filename)[0] + ".safetensors")
        names += [n for n in CHECKPOINT_NAMES if n not in names]
        cache_dir = settings.hf_cache_dir or constants.HF_HUB_CACHE
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return settings.model_name, hit, dict(tag_cfg)
        looked.append(f"Hugging Face cache {cache_dir} has no {repo_id}/{{{', '.join(names)}}}")
    url = tag_cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if local.is_file():
            return settings.model_name, str(local), dict(tag_cfg)
        looked.append(f"no {local}")
    raise _not_found(settings, "; ".join(looked) or "the tag names no source", repo=repo_id)


def load_clip(settings: ClipModelSettings) -> ClipBundle:
    """Load an open_clip model, its eval preprocessing and tokenizer once, offline."""
    import open_clip

    from hero_bench.errors import ConfigError, ModelNotFoundError

    if settings.model_config_dir:
        folder = Path(settings.model_config_dir).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"model_config_dir {folder} is not a folder")
        if settings.model_name not in open_clip.list_models():
            open_clip.add_model_config(folder)
    if settings.model_name not in open_clip.list_models() and not Path(settings.pretrained).expanduser().is_dir():
        raise ConfigError(
            f"unknown open_clip model_name {settings.model_name!r}; use one of open_clip.list_models() "
            f"(e.g. ViT-B-32, ViT-L-14) or define it with a JSON file in model_config_dir"
        )
    model_name, checkpoint, tag_cfg = resolve_clip_weights(settings)
    device = resolve_device(settings.device)
    precision = settings.precision if device.startswith("cuda") else "fp32"
    kwargs: dict[str, Any] = {}
    if tag_cfg:
        kwargs.update(
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
        )
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=checkpoint, precision=precision, device=device, **kwargs
        )
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint or architecture mismatch
        raise ModelNotFoundError(
            f"could not load open_clip model {model_name!r} from {checkpoint or settings.pretrained!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(model_name)
    if model_name.startswith("local-dir:"):
        source = Path(model_name[len("local-dir:"):]).name
    else:
        source = f"{settings.model_name}@{Path(settings.pretrained).name or settings.pretrained}"
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device, source=source)


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
        import torch

        feats = self.bundle.encode_images(images, self.settings.batch_size)
        out = []
        for text in self._text:
            logits = self._scale * feats @ text.T
            out.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
        return out

    def __call__(self, images: np.ndarray, prompts: Sequence[str], metadata: Sequence[Mapping] | None = None):
        from oracles.base import OracleResult

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
    from hero_bench.tasks import Prompt, Task, register_task

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
