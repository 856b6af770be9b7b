"""User-facing errors: the CLI prints their message (which names what is wrong and what is accepted)
without a traceback."""

from __future__ import annotations


class HeroBenchError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""


class BackboneNotFoundError(HeroBenchError):
    """A diffusion backbone (local folder or hub id) cannot be found or loaded offline."""


class UnsupportedBackboneError(HeroBenchError):
    """A backbone loads, but a setting of it makes the methods' quantities undefined."""


class ModelNotFoundError(HeroBenchError):
    """An oracle's model weights are missing."""


class UnknownTaskError(HeroBenchError, KeyError):
    """A task name is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BudgetExceededError(HeroBenchError):
    """The feedback ledger refused a label because it would exceed the run's budget."""


class ConfigError(HeroBenchError, ValueError):
    """A config key or value is invalid; the message names the key and what is accepted."""


class OracleFailedError(HeroBenchError):
    """A task's oracle gave no valid answer for a batch of images (it raised, returned a non-finite
    score or the wrong number of results, or ran past its time limit) on every attempt; nothing of
    that batch was recorded or counted as feedback, so rerunning the command resumes the run."""
