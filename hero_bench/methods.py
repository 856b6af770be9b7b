"""The method set: every method the benchmark compares, with its label, its settings and its code.

This table is the one place that lists the methods.  Everything else derives from it:
``hero-bench train --method`` and the run config's check (``hero_bench.algorithms.get_algorithm``),
which config section a run's hash keeps (``hero_bench.provenance``, ``hero_bench.integrity``), the
order and labels of the result tables and figures (``hero_bench.summary``), the paths a sweep
reads (``hero_bench.sweep``), profiling and the scripts.  The workflow's schema cannot import it;
tests/test_workflow.py checks that the schema's method names are these.

A row names its class as ``"module:Class"`` instead of importing it: the classes import torch, and
the result tables, the workflow and ``hero-bench --help`` read the method set without it.
``get_algorithm`` imports the class on first use.

Adding a method = its file under ``hero_bench/algorithms/`` plus one row below
(docs/methods.md, "Adding a method").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hero_bench.errors import ConfigError

_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class MethodSpec:
    """One method of the benchmark."""

    name: str
    """Its name in configs, on the command line, in run folders (``<tier>/<task>/<method>/seed<k>``)
    and in eval.csv: a lowercase letter, then lowercase letters, digits or ``_``."""
    label: str
    """How the result tables and figures name it."""
    section: str | None
    """The RunConfig section holding its settings (``hero``, ``ddpo`` or ``d3po``); None for a
    method without settings, which is one that does not train (``base``).  A run's config hash
    keeps only this section.  A new method reuses an existing section: a new RunConfig field
    would change the config.yaml, and so the resume check, of every existing run."""
    implementation: str
    """``module:Class`` of its ``hero_bench.algorithms.base.Method`` subclass."""

    @property
    def trains(self) -> bool:
        """Whether it asks for feedback and trains (every method with settings does)."""
        return self.section is not None


METHODS: dict[str, MethodSpec] = {}
"""Name -> spec, in the order the report lists the methods (registration order)."""


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` after the methods already registered and return it.

    The shipped methods are the rows at the end of this module; a method defined elsewhere (a test,
    an experiment) registers itself before its first run.  A name already taken, or one that cannot
    be a folder name and workflow wildcard, is a ConfigError.
    """
    if not _NAME.fullmatch(spec.name):
        raise ConfigError(f"method name {spec.name!r} is not accepted; accepted: a lowercase letter, then "
                          "lowercase letters, digits or '_'")
    if spec.name in METHODS:
        raise ConfigError(f"method {spec.name!r} is registered twice ({METHODS[spec.name].implementation} and "
                          f"{spec.implementation}); method names must be unique")
    METHODS[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``; ConfigError naming the accepted names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; accepted: {', '.join(accepted_names())}") from None


def method_names() -> list[str]:
    """Every method's name, in report order."""
    return list(METHODS)


def trained_method_names() -> list[str]:
    """The methods that train, in report order (a sweep's and profiling's methods)."""
    return [spec.name for spec in METHODS.values() if spec.trains]


def accepted_names() -> list[str]:
    """The names as the command line lists them: the methods that train first, then those that
    only evaluate (``base``), as `hero-bench train --help` describes them."""
    return trained_method_names() + [spec.name for spec in METHODS.values() if not spec.trains]


def method_sections() -> tuple[str, ...]:
    """The RunConfig sections that hold a method's settings, each once, in report order."""
    return tuple(dict.fromkeys(spec.section for spec in METHODS.values() if spec.section is not None))


def settings_section(method: str) -> str | None:
    """The section of ``method``'s settings.  A name not registered here (a run folder written by
    another checkout) keeps the section of its own name, as every shipped method names its own."""
    spec = METHODS.get(method)
    return spec.section if spec is not None else method


# The methods, in report order. Adding one: one row (and its file under hero_bench/algorithms/).
for _spec in (
    MethodSpec("base", label="base", section=None, implementation="hero_bench.algorithms.base:Base"),
    MethodSpec("hero", label="HERO", section="hero", implementation="hero_bench.algorithms.hero:Hero"),
    MethodSpec("ddpo", label="DDPO", section="ddpo", implementation="hero_bench.algorithms.ddpo:DDPO"),
    MethodSpec("d3po", label="D3PO", section="d3po", implementation="hero_bench.algorithms.d3po:D3PO"),
):
    register_method(_spec)
