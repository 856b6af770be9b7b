"""The tidy result tables: one row per (run, checkpoint).  Every writer and reader uses these names."""

from __future__ import annotations

# held-out evaluation rows, RUN_DIR/eval.csv
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
    "oracle",
    "oracle_version",
    "label_noise",
    "backbone",
    "config_hash",
    "git_sha",
)
