"""Paper tier, VLM judge: yes/no questions to a vision-language model, one per success criterion.

For the reasoning and counting prompts a CLIP comparison is a weak test of relations ("inside
the box", "its reflection in the water") and counts ("one rose"). This judge asks a transformers
image-text-to-text model (``AutoModelForImageTextToText`` + ``AutoProcessor``; default
``llava-hf/llava-1.5-7b-hf``) each question of the task with the image, reads the logits of the
first answer token, and takes

    p_yes = sum(exp(logit[yes tokens])) / (sum(exp(logit[yes tokens])) + sum(exp(logit[no tokens])))

where the yes/no tokens are every vocabulary entry that decodes to "yes"/"no" in any case (with or
without a leading space). ``success`` = ``p_yes > yes_threshold`` (0.5) for **every** question;
``score`` = the smallest ``p_yes``, so every success scores above every failure. A prompt's
``metadata["questions"]`` (a list of strings) overrides the task's questions.

The questions are our reading of each prompt (the paper's human criteria are NOT FOUND):

- ``blue_rose_vlm``: exactly one rose? is it blue? is it in a vase?
- ``black_cat_vlm``: is there a cat? is it black? is it inside a cardboard box?
- ``narcissus_vlm``: are there narcissus (daffodil) flowers? is there water? is their reflection
  visible in the water?

Weights never come from the network at run time: ``model`` is a local folder or a hub id that must
already be in the Hugging Face cache (``local_files_only``); otherwise ``ModelNotFoundError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from hero_bench.errors import ModelNotFoundError
from hero_bench.tasks import Prompt, Task, register_task
from oracles.base import OracleResult, task_factory
from oracles.paper_prompts import (
    BLACK_CAT_PROMPT,
    BLUE_ROSE_PROMPT,
    NARCISSUS_PROMPT,
    TRAIN_PROMPT_EVAL_NOTE,
    resolve_device,
    settings_from,
    validate_batch,
)

ORACLE_NAME = "vlm_judge"
ORACLE_VERSION = "1"

TASK_QUESTIONS: Mapping[str, tuple[str, ...]] = {
    "blue_rose_vlm": (
        "Is there exactly one rose in this image?",
        "Is the rose blue?",
        "Is the rose in a vase?",
    ),
    "black_cat_vlm": (
        "Is there a cat in this image?",
        "Is the cat black?",
        "Is the cat sitting inside a cardboard box?",
    ),
    "narcissus_vlm": (
        "Are there narcissus flowers (daffodils) in this image?",
        "Is there water in this image?",
        "Is the reflection of the flowers visible in the water?",
    ),
}


@dataclass(frozen=True)
class VlmJudgeSettings:
    """Settings of the VLM yes/no judge."""

    model: str = "llava-hf/llava-1.5-7b-hf"
    """A local model folder (transformers format, with its processor) or a hub id already in the
    Hugging Face cache; nothing is downloaded."""
    hf_cache_dir: str = ""
    """Hugging Face hub cache to search for a hub id; empty = the default (``HF_HUB_CACHE``)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """Weights dtype; ``auto`` = bfloat16 on GPU, float32 on CPU."""
    batch_size: int = 8
    """Images per forward pass (one question at a time)."""
    yes_threshold: float = 0.5
    """A question passes when ``p_yes`` exceeds this."""
    answer_instruction: str = "Answer with yes or no."
    """Appended to every question."""
    prompt_template: str = "USER: <image>\n{question} ASSISTANT:"
    """Used only when the processor has no chat template; ``{question}`` is filled in."""

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError("model is empty; give a local folder or a cached hub id")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.yes_threshold < 1.0:
            raise ValueError(f"yes_threshold must lie in [0, 1), got {self.yes_threshold}")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{question}'")


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """Vocabulary ids whose token decodes to ``word`` (any case, with or without a leading space)."""
    ids = set()
    for variant in {word.lower(), word.capitalize(), word.upper()}:
        for text in (variant, " " + variant):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            for tid in encoded[:2]:
                if tokenizer.decode([tid]).strip().lower() == word.lower():
                    ids.add(int(tid))
    return sorted(ids)


def yes_probability(last_logits, yes_ids: Sequence[int], no_ids: Sequence[int]) -> np.ndarray:
    """``p_yes`` per row of next-token logits ``[B, V]``, renormalised over the yes and no tokens."""
    # deferred: torch (the oracle modules import without it)
    import torch

    logits = torch.as_tensor(last_logits).double()
    yes = torch.logsumexp(logits[:, list(yes_ids)], dim=-1)
    no = torch.logsumexp(logits[:, list(no_ids)], dim=-1)
    return torch.sigmoid(yes - no).cpu().numpy()


def last_token_index(attention_mask) -> Any:
    """Index of the last real token per row, for left or right padding."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).long().argmax(dim=1)


def _torch_dtype(name: str, device: str):
    # deferred: torch (the oracle modules import without it)
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def load_vlm(settings: VlmJudgeSettings):
    """``(processor, model, device)`` loaded offline; ``ModelNotFoundError`` when absent."""
    # deferred: transformers (imports torch; the oracle modules import without it)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = settings.model.strip()
    local = Path(source).expanduser()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if local.exists():
        if not local.is_dir():
            raise ModelNotFoundError(
                f"VLM model path {local} is a file; give the model folder (config.json, weights, processor files)"
            )
        source = str(local)
    elif settings.hf_cache_dir:
        kwargs["cache_dir"] = settings.hf_cache_dir
    device = resolve_device(settings.device)
    try:
        processor = AutoProcessor.from_pretrained(source, **kwargs)
        dtype = _torch_dtype(settings.dtype, device)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(".")
        where = (
            f"folder {local}" if local.exists()
            else f"no local folder {local} and not in the Hugging Face cache"
            + (f" {settings.hf_cache_dir}" if settings.hf_cache_dir else " (HF_HOME/HF_HUB_CACHE)")
        )
        raise ModelNotFoundError(
            f"VLM judge model {settings.model!r} could not be loaded offline ({where}): {reason}. "
            "Nothing is downloaded at run time. Provide it by setting 'model' (in the vlm_judge section of "
            "$HERO_BENCH_ORACLE_SETTINGS, or the factory's settings) to a local folder saved with "
            "save_pretrained (model + processor), or by putting the hub repository in the "
            "Hugging Face cache beforehand (on a machine with network: `huggingface-cli download "
            f"{settings.model}`, then copy the cache or point HF_HOME/HF_HUB_CACHE or 'hf_cache_dir' at it)."
        ) from None
    model.to(device).eval().requires_grad_(False)
    return processor, model, device


class VlmJudge:
    """Yes/no VLM judge over a task's questions; built by ``make_vlm_judge``."""

    name = ORACLE_NAME

    def __init__(self, processor, model, device: str, questions: Sequence[str], settings: VlmJudgeSettings,
                 task: str) -> None:
        self.processor, self.model, self.device = processor, model, device
        self.questions = tuple(questions)
        self.settings = settings
        self.task = task
        self.tokenizer = getattr(processor, "tokenizer", processor)
        if getattr(self.tokenizer, "pad_token_id", None) is None and getattr(self.tokenizer, "eos_token", None):
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.yes_ids = answer_token_ids(self.tokenizer, "yes")
        self.no_ids = answer_token_ids(self.tokenizer, "no")
        if not self.yes_ids or not self.no_ids:
            raise ModelNotFoundError(
                f"VLM judge model {settings.model!r}: its tokenizer has no single token for "
                f"{'yes' if not self.yes_ids else 'no'}; choose a model whose vocabulary answers yes/no"
            )
        self.version = f"{ORACLE_VERSION}+{Path(settings.model).name or settings.model}"

    def render(self, question: str) -> str:
        """The text prompt for one question (the processor's chat template when it has one)."""
        text = f"{question} {self.settings.answer_instruction}".strip()
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.settings.prompt_template.format(question=text)

    def ask(self, images: np.ndarray, question: str) -> np.ndarray:
        """``p_yes`` of ``question`` for each image."""
        # deferred: torch, PIL (the oracle modules import without it)
        import torch
        from PIL import Image

        text = self.render(question)
        out = []
        dtype = next(self.model.parameters()).dtype
        for start in range(0, len(images), self.settings.batch_size):
            stop = start + self.settings.batch_size
            chunk = [Image.fromarray(np.ascontiguousarray(im)) for im in images[start:stop]]
            inputs = self.processor(images=chunk, text=[text] * len(chunk), return_tensors="pt", padding=True)
            inputs = {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                      for k, v in inputs.items()}
            with torch.no_grad():
                logits = self.model(**inputs).logits
            idx = last_token_index(inputs["attention_mask"])
            last = logits[torch.arange(len(chunk), device=logits.device), idx.to(logits.device)].float()
            out.append(yes_probability(last, self.yes_ids, self.no_ids))
        return np.concatenate(out)

    def __call__(self, images: np.ndarray, prompts: Sequence[str], metadata: Sequence[Mapping] | None = None):
        metadata = validate_batch(images, prompts, metadata, f"{self.name}/{self.task}")
        per_image = [tuple(m.get("questions") or self.questions) for m in metadata]
        p_yes: list[dict[str, float]] = [{} for _ in range(len(images))]
        for question in dict.fromkeys(q for qs in per_image for q in qs):  # stable order, no repeats
            rows = [i for i, qs in enumerate(per_image) if question in qs]
            for i, p in zip(rows, self.ask(images[rows], question)):
                p_yes[i][question] = float(p)
        results = []
        for i, qs in enumerate(per_image):
            probs = [p_yes[i][q] for q in qs]
            passed = [p > self.settings.yes_threshold for p in probs]
            details = {"task": self.task, "p_yes": {q: round(p, 6) for q, p in zip(qs, probs)},
                       "passed": dict(zip(qs, passed))}
            results.append(OracleResult(success=all(passed), score=float(min(probs)), details=details))
        return results


def make_vlm_judge(task: str, settings: VlmJudgeSettings | Mapping[str, Any] | None = None,
                   **overrides: Any) -> VlmJudge:
    """Load the VLM once and return the judge of ``task`` (a key of ``TASK_QUESTIONS``).

    Settings: defaults, then the ``vlm_judge`` section of ``$HERO_BENCH_ORACLE_SETTINGS``, then
    ``settings`` (mapping or ``VlmJudgeSettings``), then keyword overrides."""
    if task not in TASK_QUESTIONS:
        raise ValueError(f"no VLM questions for task {task!r}; known: {', '.join(TASK_QUESTIONS)}")
    cfg = settings_from(VlmJudgeSettings, settings, overrides, section=ORACLE_NAME)
    processor, model, device = load_vlm(cfg)
    return VlmJudge(processor, model, device, TASK_QUESTIONS[task], cfg, task)


def _register() -> None:
    specs = [
        ("blue_rose_vlm", "counting", BLUE_ROSE_PROMPT),
        ("black_cat_vlm", "reasoning", BLACK_CAT_PROMPT),
        ("narcissus_vlm", "reasoning", NARCISSUS_PROMPT),
    ]
    for name, category, text in specs:
        prompt = Prompt(text=text, metadata={"task": name})
        register_task(
            Task(
                name=name,
                tier="paper",
                category=category,
                description=f"'{text}' judged by a VLM: yes (p > 0.5) to every one of: "
                + " / ".join(TASK_QUESTIONS[name]),
                train_prompts=(prompt,),
                eval_prompts=(prompt,),
                oracle_factory=task_factory(make_vlm_judge, name),
                oracle_name=ORACLE_NAME,
                eval_note=TRAIN_PROMPT_EVAL_NOTE,
            )
        )


_register()
