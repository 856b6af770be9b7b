"""The oracle contract: what every judge (toy image analysis, hand keypoints, CLIP, VLM, NSFW)
returns for each image, and the call signature the simulated evaluator relies on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class OracleResult:
    """The verdict on one image."""

    success: bool
    """Whether the image meets the task's success criterion (what a person would call "good")."""
    score: float
    """How close the image is to success; higher is better. HERO's best-image pick and tie breaks
    use it, so every success must score above every near miss of the same prompt."""
    details: dict[str, Any] = field(default_factory=dict)
    """What the oracle found (objects, measurements), JSON-serialisable, for logs and debugging."""


@runtime_checkable
class Oracle(Protocol):
    """Judges a batch of images. ``metadata[i]`` is the ground truth of ``prompts[i]`` (the
    ``Prompt.metadata`` of the task prompt the image was generated from)."""

    name: str
    version: str

    def __call__(self, images: np.ndarray, prompts: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[OracleResult]:
        ...


def task_factory(make: Callable[..., Any], task: str) -> Callable[..., Any]:
    """``Task.oracle_factory`` of one task of a judge family: ``make(task, settings, **overrides)``
    with the task bound, named after it so registries and tracebacks say which task it serves."""

    def factory(settings: Any = None, **overrides: Any) -> Any:
        return make(task, settings, **overrides)

    factory.__name__ = f"{make.__name__}_for_{task}"
    factory.__doc__ = f"Oracle factory of the task {task!r}: see ``{make.__module__}.{make.__name__}``."
    return factory
