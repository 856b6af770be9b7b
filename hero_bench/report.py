"""Gather per-run ``eval.csv`` files and summarise them into feedback-efficiency tables.

The report is three steps, each in its own module; this module is their one import point (the
``gather`` and ``report`` commands, the tests):

* ``gather`` (``hero_bench.runs_table``) validates and concatenates the tidy per-run tables;
* ``summarise`` (``hero_bench.summary``) turns them into one tidy summary table (one row per tier,
  task, method, metric and budget or baseline, ``SUMMARY_COLUMNS``);
* ``render_markdown`` (``hero_bench.summary_tables``) formats that summary as Markdown tables with
  captions.

Plots live in ``hero_bench.plots``.  Every metric is defined in ``docs/metrics.md``.
"""

from __future__ import annotations

from hero_bench.runs_table import ResultsFormatError, gather
from hero_bench.summary import (
    AGGREGATE_TASK,
    DEFAULT_ALPHA,
    DEFAULT_GAIN,
    DEFAULT_REPS,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    SUMMARY_COLUMNS,
    default_budgets,
    summarise,
)
from hero_bench.summary_tables import render_markdown

__all__ = [
    "AGGREGATE_TASK", "DEFAULT_ALPHA", "DEFAULT_GAIN", "DEFAULT_REPS", "DEFAULT_SEED", "DEFAULT_THRESHOLD", "SUMMARY_COLUMNS",
    "ResultsFormatError", "default_budgets", "gather", "render_markdown", "summarise",
]
