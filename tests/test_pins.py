"""The environment is the one pyproject.toml pins: a resolver that quietly picked another version (pip
upgrading numpy for a newer SLURM plugin, say, which breaks mediapipe; docs/stack.md) shows here as
the pin it broke, not later as an import error or a number that moved."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def exact_pins(path: Path = PYPROJECT) -> dict[str, str]:
    """name -> version of every ``==`` requirement (dependencies and the optional extras); a
    ``9.2.*`` pin keeps its wildcard."""
    project = tomllib.loads(path.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;,]+)\s*", req)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def matches(installed: str, pin: str) -> bool:
    return installed.startswith(pin[:-1]) if pin.endswith("*") else installed == pin


def test_the_pins_are_read():
    pins = exact_pins()
    # the pins docs/stack.md explains; a parser that found none would pass every check below
    for name in ("torch", "torchvision", "numpy", "mediapipe", "protobuf", "jax", "jaxlib", "snakemake"):
        assert name in pins, name


@pytest.mark.parametrize("name,pin", sorted(exact_pins().items()))
def test_the_installed_version_is_the_pinned_one(name, pin):
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is pinned to {pin} in pyproject.toml but not installed")
    assert matches(installed, pin), f"{name} {installed} is installed; pyproject.toml pins {pin}"


def test_a_wildcard_pin_matches_its_series_only():
    assert matches("9.2.0", "9.2.*") and matches("9.2.13", "9.2.*")
    assert not matches("9.20.1", "9.2.*") and not matches("1.26.3", "1.26.4")
