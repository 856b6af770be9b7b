"""`hero-bench tasks`: list the registered tasks, or show one task's prompts and ground truth."""

from __future__ import annotations

import json

from hero_bench.tasks import get_task, list_tasks

HELP = "list the benchmark tasks (or show one task's prompts)"
DESCRIPTION = """\
List every registered task as a table: name, tier, category, oracle, number of train and eval
prompts, and what success means. With a task name, print that task's train and held-out eval
prompts with the ground truth (metadata) each hands to the oracle.

Tasks are registered by the files in the oracles/ package; see docs/adding_a_task.md.

examples:
  hero-bench tasks
  hero-bench tasks --tier toy
  hero-bench tasks counting
"""

COLUMNS = ("name", "tier", "category", "oracle", "train", "eval", "description")


def add_arguments(parser) -> None:
    parser.add_argument("name", nargs="?", help="show this task's prompts instead of the table")
    parser.add_argument("--tier", choices=("smoke", "toy", "paper"),
                        help="only tasks of this tier (smoke runs the toy tasks)")


def format_table(tasks) -> str:
    rows = [COLUMNS] + [
        (t.name, t.tier, t.category, t.oracle_name, str(len(t.train_prompts)), str(len(t.eval_prompts)),
         t.description)
        for t in tasks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_task(task) -> str:
    lines = [f"{task.name} ({task.tier}, {task.category}; oracle {task.oracle_name}; definition version {task.version})",
             f"  {task.description}"]
    for split, prompts in (("train", task.train_prompts), ("eval", task.eval_prompts)):
        lines.append(f"{split} prompts:")
        for p in prompts:
            lines.append(f"  {p.text!r}  {json.dumps(p.metadata, sort_keys=True, default=str)}")
    return "\n".join(lines)


def run(args) -> int:
    if args.name:
        task = get_task(args.name)
        if args.tier is not None and task not in list_tasks(args.tier):
            print(f"note: task {task.name!r} is a {task.tier} task, not {args.tier}")
        print(format_task(task))
        return 0
    tasks = list_tasks(args.tier)
    if not tasks:
        print(f"no tasks registered for tier {args.tier!r}")
        return 0
    print(format_table(tasks))
    return 0
