"""Where a result came from: the code version (git sha) and the run's config hash.

Both go into every eval.csv row, so a table can always be traced to the code and settings that
produced it.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hero_bench.config import config_hash, to_dict
from hero_bench.methods import method_sections, settings_section

_REPO = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_S = 60
"""How long one git call may take before the commit is recorded as unknown."""


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The checkout's commit (``+dirty`` when tracked files differ from it, ``+dirty?`` when that
    could not be told), or "unknown".

    ``HERO_BENCH_GIT_SHA`` overrides it (for installs without a .git folder, e.g. a wheel in a
    container built from a known commit).
    """
    if os.environ.get("HERO_BENCH_GIT_SHA"):
        return os.environ["HERO_BENCH_GIT_SHA"]
    # two runs of a grid that started together on a loaded machine (six processes on two cores)
    # recorded "unknown" with a 10 s limit per call; git status must also not write the index
    # (an optional lock) while other runs of the same checkout read it
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=True, env=env).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not sha:
        return "unknown"
    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return sha + "+dirty?"  # the commit is known; whether tracked files differ from it is not
    return sha + ("+dirty" if dirty else "")


def relevant_config(cfg) -> dict[str, Any]:
    """The run config as a dict without the sections of the methods the run does not use."""
    return without_unused_sections(to_dict(cfg))


def without_unused_sections(config: dict[str, Any]) -> dict[str, Any]:
    """A run config's dict (or config.yaml's) without the method sections other than the run's
    method's own (hero_bench/methods.py): settings the run never reads do not change its hash."""
    unused = set(method_sections()) - {settings_section(config.get("method"))}
    return {key: value for key, value in config.items() if key not in unused}


def run_config_hash(cfg) -> str:
    """Hash of the settings that can change this run's results (unused methods' sections excluded)."""
    return config_hash(relevant_config(cfg))


CPUINFO = Path("/proc/cpuinfo")
"""Where Linux names the processor (``cpu_model``)."""


def cpu_model(cpuinfo: Path | None = None) -> str:
    """The processor's model name ("AMD EPYC 9B14", "Intel(R) Xeon(R) Processor"), or
    ``platform.processor()``'s answer where there is no ``/proc/cpuinfo``, or "unknown"."""
    try:
        for line in (cpuinfo or CPUINFO).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model Name") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, str]:
    """Versions of the pieces that determine the numbers, and the processor they ran on.

    The processor is part of it because runs are bitwise only on one CPU: torch picks its kernels
    by the instruction set it finds (``cpu_capability``: "AVX2", "AVX512", ...), and kernels that
    sum in another order round differently; over a thousand labels of training that moves a success
    rate by several images (docs/methods.md, the paragraph "Runs are not bitwise across CPUs")."""
    # deferred: diffusers, peft, torch (gather imports this module, through run_records, without them)
    import diffusers
    import peft
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
