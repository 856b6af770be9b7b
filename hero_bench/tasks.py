"""The task registry: a task bundles a prompt family (train and held-out eval prompts, each with the
ground truth its oracle needs) with the oracle that judges images made from it.

Tasks register themselves from the oracle family files in the ``oracles`` package
(``oracles/shapes.py`` registers the toy tasks). The first lookup imports every module of that
package, so adding a task is adding one file there: see docs/adding_a_task.md.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hero_bench.errors import ConfigError, HeroBenchError, UnknownTaskError

TIERS: tuple[str, ...] = ("toy", "paper")
"""The tiers a task can belong to. The smoke tier runs the toy tasks (on a tiny random model)."""
TASK_TIER_OF_RUN_TIER: dict[str, str] = {"smoke": "toy", "toy": "toy", "paper": "paper"}
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
ORACLES_PACKAGE = "oracles"


class TaskDefinitionError(HeroBenchError, ValueError):
    """A task is malformed or its name is already taken (a bug in an oracles/ file)."""


class TaskDiscoveryError(HeroBenchError, ImportError):
    """A module of the oracles package failed to import while looking for tasks."""


@dataclass(frozen=True)
class Prompt:
    text: str
    """What the diffusion model is conditioned on."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Ground truth the oracle needs to judge an image made from ``text`` (never shown to the model)."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise TaskDefinitionError(f"a prompt's text must be a non-empty string, got {self.text!r}")
        if not isinstance(self.metadata, Mapping):
            raise TaskDefinitionError(
                f"prompt {self.text!r}: metadata must be a mapping, got {type(self.metadata).__name__}")
        # a private copy, so that editing the dict a task was built from cannot change the task
        object.__setattr__(self, "metadata", dict(self.metadata))


@dataclass(frozen=True)
class Task:
    name: str
    """Registry key, e.g. ``counting``: lowercase letters, digits, ``-`` and ``_``."""
    tier: str
    """``toy`` or ``paper``: the backbone family whose images the oracle can judge."""
    category: str
    """The paper's task family this mirrors (anomaly, counting, reasoning, personalization, safety)."""
    description: str
    """One line: what success means."""
    train_prompts: tuple[Prompt, ...]
    """Prompts sampled during finetuning (the evaluator labels images of these)."""
    eval_prompts: tuple[Prompt, ...]
    """Held-out prompts of the same family for evaluation."""
    oracle_factory: Callable[[], Any]
    """Builds the oracle (loading any model it needs) once per process: ``oracle_factory()``."""
    oracle_name: str
    """Name of the oracle the factory builds (shown without building it)."""
    version: int = 1
    """The definition's version: raised whenever a change to the prompts or the criterion makes
    success rates measured before it a different quantity. Every eval.csv row records it
    (``task_version``), and ``hero-bench compare`` holds results of two versions apart."""
    eval_note: str = ""
    """Why the eval prompts repeat (or only reword) train prompts, when they do; the registry
    contract asks for held-out eval prompts or this note (the paper evaluates some tasks on
    their training prompt)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name):
            raise TaskDefinitionError(
                f"task name {self.name!r} is not accepted: use lowercase letters, digits, '-' and '_', "
                f"starting with a letter")
        if self.tier not in TIERS:
            raise TaskDefinitionError(f"task {self.name!r}: tier {self.tier!r} is not one of {list(TIERS)}")
        for split in ("train_prompts", "eval_prompts"):
            prompts = tuple(getattr(self, split))
            if not prompts:
                raise TaskDefinitionError(f"task {self.name!r}: {split} is empty; give at least one Prompt")
            bad = [p for p in prompts if not isinstance(p, Prompt)]
            if bad:
                raise TaskDefinitionError(f"task {self.name!r}: {split} must hold Prompt objects, got {bad[0]!r}")
            object.__setattr__(self, split, prompts)
        if not callable(self.oracle_factory):
            raise TaskDefinitionError(f"task {self.name!r}: oracle_factory must be callable")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise TaskDefinitionError(f"task {self.name!r}: version must be an integer >= 1, got {self.version!r}")
        if not isinstance(self.eval_note, str):
            raise TaskDefinitionError(f"task {self.name!r}: eval_note must be a string")
        for attr in ("category", "description", "oracle_name"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                raise TaskDefinitionError(f"task {self.name!r}: {attr} must be a non-empty string")

    @property
    def eval_overlaps_train(self) -> bool:
        """Whether some eval prompt text is also a train prompt text."""
        return bool({p.text for p in self.eval_prompts} & {p.text for p in self.train_prompts})

    def prompts(self, split: str) -> tuple[Prompt, ...]:
        """The ``train`` or ``eval`` prompts."""
        if split == "train":
            return self.train_prompts
        if split == "eval":
            return self.eval_prompts
        raise ConfigError(f"prompt split {split!r} is not one of ['train', 'eval']")


_REGISTRY: dict[str, Task] = {}
_discovered = False
_lock = threading.RLock()


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry and return it. A second task with the same name is an error."""
    if not isinstance(task, Task):
        raise TaskDefinitionError(f"register_task expects a hero_bench.tasks.Task, got {type(task).__name__}")
    with _lock:
        existing = _REGISTRY.get(task.name)
        if existing is not None and existing is not task:
            raise TaskDefinitionError(
                f"task name {task.name!r} is registered twice (oracles {existing.oracle_name!r} and "
                f"{task.oracle_name!r}); task names must be unique")
        _REGISTRY[task.name] = task
    return task


def discover_tasks() -> None:
    """Import every module of the ``oracles`` package once, so that each registers its tasks.

    Modules whose name starts with ``_`` are skipped. An import failure is reported with the
    module's name rather than skipped, so a broken task file never silently disappears.
    """
    global _discovered
    with _lock:
        if _discovered:
            return
        package = importlib.import_module(ORACLES_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = f"{ORACLES_PACKAGE}.{info.name}"
            try:
                importlib.import_module(module)
            except HeroBenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the module named
                raise TaskDiscoveryError(f"cannot import task module {module}: {type(exc).__name__}: {exc}") from exc
        _discovered = True


def get_task(name: str) -> Task:
    """The registered task called ``name``; UnknownTaskError lists the known names."""
    discover_tasks()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {known} (see `hero-bench tasks`; to add one, "
            f"see docs/adding_a_task.md)") from None


def list_tasks(tier: str | None = None) -> list[Task]:
    """All registered tasks sorted by name, optionally of one tier (``smoke`` means the toy tasks)."""
    discover_tasks()
    if tier is not None and tier not in TASK_TIER_OF_RUN_TIER:
        raise ConfigError(f"tier {tier!r} is not one of {list(TASK_TIER_OF_RUN_TIER)}")
    wanted = TASK_TIER_OF_RUN_TIER.get(tier) if tier is not None else None
    return [t for _, t in sorted(_REGISTRY.items()) if wanted is None or t.tier == wanted]


def get_task_of_tier(name: str, run_tier: str) -> Task:
    """The task called ``name`` if a run of ``run_tier`` can run it; the error lists that tier's tasks only.

    A run of the toy tier cannot judge Stable Diffusion's hands and the reverse, so the other tiers'
    names would only mislead.
    """
    runnable = list_tasks(run_tier)
    names = ", ".join(t.name for t in runnable)
    discover_tasks()
    task = _REGISTRY.get(name)
    if task is None:
        raise UnknownTaskError(f"unknown task {name!r}; tier {run_tier} runs: {names} (see `hero-bench tasks`)")
    if task not in runnable:
        raise ConfigError(f"task {name!r} belongs to the {task.tier} tier; tier {run_tier} runs: {names}")
    return task

