"""The tidy result tables: one row per (run, checkpoint).  Every writer and reader uses these names."""

from __future__ import annotations

# evaluation rows, RUN_DIR/eval.csv (docs/metrics.md): success_rate, mean_score, n_eval and
# diversity are the PRIMARY metric, on the task's own (training) prompts from fresh evaluation
# noise; the transfer_* columns are the same judge on the task's held-out eval prompts (empty when
# eval.transfer_images = 0, and in eval.csv files written before they existed)
EVAL_COLUMNS: tuple[str, ...] = (
    "tier",
    "task",
    "method",
    "seed",
    "epoch",
    "feedback_used",
    "queries",
    "images_generated",
    "success_rate",
    "mean_score",
    "n_eval",
    "diversity",
    "transfer_success_rate",
    "transfer_mean_score",
    "transfer_n_eval",
    "oracle",
    "oracle_version",
    "task_version",
    "label_noise",
    "backbone",
    "config_hash",
    "git_sha",
)

LATER_COLUMNS: tuple[str, ...] = ("task_version",)
"""EVAL_COLUMNS added after results were published without them (the task definition's version,
``hero_bench.tasks.Task.version``); an older eval.csv still gathers, with them empty."""

TRANSFER_COLUMNS: tuple[str, ...] = ("transfer_success_rate", "transfer_mean_score", "transfer_n_eval")
"""The EVAL_COLUMNS added with the transfer evaluation; an older eval.csv without them still
gathers, with these columns empty."""
