"""Tables of a toy acceptance grid that `hero-bench report` does not make.

    snakemake --cores 2 --configfile workflows/config/toy-acceptance.yaml
    python scripts/acceptance_tables.py results > results/tables/acceptance.md

ROOT is the folder holding runs/toy/ and summary/runs.csv: the workflow's `results`, or a
published grid such as results/published/acceptance-512.

1. Success at the final budget per task and method, on the task's own prompts (eval.csv
   `success_rate`, the primary metric): mean and the per-seed values (the report's IQM tables are
   next to this file; gains over the base with intervals: scripts/gain_table.py). In grids made
   before the primary metric moved to the training prompts (acceptance-512), that column holds
   held-out success.
2. Success on the *training* prompts, i.e. the share of each feedback round's images the evaluator
   judged successful (train_log.csv `train_success`), first round vs last two rounds: the
   in-distribution signal the held-out evaluation does not see.
3. Wall time per epoch (sampling, update, whole epoch without evaluation), mean over epochs and seeds.
4. HERO's reward diagnostics: how well the similarity reward ranks good over bad images (AUROC),
   with this round's representation and with the one learned from earlier rounds.
5. When the workflow ran with train_prompt_eval: true (rule evaluate_train_prompts): each run's
   last adapter on the training prompts with the fixed eval noise (eval_train.csv), next to the
   pretrained model on the same images. Since the primary metric is itself success on the
   training prompts, this matters only for grids whose eval.csv predates it (acceptance-512).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from hero_bench.methods import method_names

METHODS = method_names()  # the report's order (hero_bench/methods.py)


def _train_logs(root: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(root.glob("runs/toy/*/*/seed*/train_log.csv")):
        task, method, seed = path.parts[-4], path.parts[-3], int(path.parts[-2].removeprefix("seed"))
        log = pd.read_csv(path)
        if len(log):  # base runs train nothing: a header only
            frames.append(log.assign(task=task, method=method, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def final_success(runs: pd.DataFrame) -> str:
    last = runs.sort_values("feedback_used").groupby(["task", "method", "seed"]).tail(1)
    order = {m: i for i, m in enumerate(METHODS)}
    lines = ["| task | method | seeds | final feedback | success, mean | per seed |", "|---|---|---|---|---|---|"]
    groups = sorted(last.groupby(["task", "method"]), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99)))
    for (task, method), g in groups:
        per_seed = ", ".join(f"{v:.3f}" for v in g.sort_values("seed").success_rate)
        lines.append(f"| {task} | {method} | {len(g)} | {int(g.feedback_used.max())} | {g.success_rate.mean():.3f} "
                     f"| {per_seed} |")
    return "\n".join(lines)


def train_prompt_success(logs: pd.DataFrame) -> str:
    lines = ["| task | method | first round | last two rounds | rounds |", "|---|---|---|---|---|"]
    for (task, method), g in logs.groupby(["task", "method"]):
        first = g[g.epoch == 1].train_success.mean()
        last_epochs = sorted(g.epoch.unique())[-2:]
        last = g[g.epoch.isin(last_epochs)].train_success.mean()
        lines.append(f"| {task} | {method} | {first:.3f} | {last:.3f} | {int(g.epoch.max())} |")
    return "\n".join(lines)


def wall_times(logs: pd.DataFrame) -> str:
    logs = logs.assign(train_s=logs.epoch_s - logs.eval_s)
    lines = ["| method | sampling s | update s | epoch s (without eval) | eval s (when evaluated) |", "|---|---|---|---|---|"]
    for method, g in logs.groupby("method"):
        ev = g[g.eval_s > 0].eval_s
        lines.append(f"| {method} | {g.sample_s.mean():.1f} | {g.update_s.mean():.1f} | {g.train_s.mean():.1f} | "
                     f"{ev.mean():.1f} |")
    return "\n".join(lines)


def hero_reward(logs: pd.DataFrame) -> str:
    hero = logs[logs.method == "hero"]
    if "reward_auc" not in hero:
        return "(the runs predate the reward_auc columns)"
    lines = ["| task | reward AUROC (this round) | with earlier rounds' representation |", "|---|---|---|"]
    for task, g in hero.groupby("task"):
        lines.append(f"| {task} | {g.reward_auc.mean():.3f} | {g.reward_auc_prior.mean():.3f} |")
    return "\n".join(lines)


def _train_prompt_rows(root: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(root.glob("runs/toy/*/*/seed*/eval_train.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def train_prompt_eval(rows: pd.DataFrame) -> str:
    if rows.empty:
        return ("(no eval_train.csv yet: run the workflow again with --config train_prompt_eval=true, "
                "which retrains nothing)")
    last = rows.sort_values("epoch").groupby(["task", "method", "seed"]).tail(1)
    cols = [m for m in METHODS if m in set(last.method)]
    lines = ["| task | " + " | ".join(cols) + " | images per run |", "|---" * (len(cols) + 2) + "|"]
    for task, g in last.groupby("task"):
        cells = []
        for m in cols:
            v = g[g.method == m].sort_values("seed").success_rate
            cells.append(f"{v.mean():.3f} ({', '.join(f'{x:.3f}' for x in v)})" if len(v) else "—")
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {int(g.n_eval.max())} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    runs_csv = root / "summary" / "runs.csv"
    if not runs_csv.is_file():
        print(f"acceptance_tables: {runs_csv} not found; run `hero-bench gather` first", file=sys.stderr)
        return 2
    runs = pd.read_csv(runs_csv)
    logs = _train_logs(root)
    print(f"# Toy acceptance grid: {root}\n")
    print("## Success on the task's own prompts at the final budget\n")
    print(final_success(runs) + "\n")
    print("## Success on the training prompts (the evaluator's own labels per round)\n")
    print(train_prompt_success(logs) + "\n")
    print("## Wall time per epoch (mean over epochs and seeds)\n")
    print(wall_times(logs) + "\n")
    print("## HERO's similarity reward against the evaluator's labels\n")
    print(hero_reward(logs) + "\n")
    print("## Success on the training prompts, fixed eval noise (last adapter; mean and per seed)\n")
    print(train_prompt_eval(_train_prompt_rows(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
