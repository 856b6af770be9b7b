"""The subcommands of ``hero-bench`` (one module each, listed in ``hero_bench.cli.COMMANDS``) and
what they share."""

from __future__ import annotations

from hero_bench.errors import ConfigError


def set_threads(threads: int | None) -> None:
    """Apply a command's ``--threads``: torch's CPU thread count for this process (None = torch's
    choice).  One place, so every command refuses a bad count with the same message."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch  # deferred: `hero-bench --help` and the light commands must not import torch

    torch.set_num_threads(threads)
