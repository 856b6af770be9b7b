"""A finished run's training labels split by training prompt, round by round.

    python scripts/prompt_labels.py RUN_DIR [RUN_DIR ...] [--every K]

A task with several training prompts (counting's "two blue squares" and "three red triangles",
relation's two pairs) is learned prompt by prompt, and a method can gain on one while it loses the
other; the run's train log and its evaluation only give the mixture. The ledger holds every label
but not the prompt, which the run drew from its (seed, epoch, "prompts") stream
(``hero_bench.algorithms.base.training_prompt_indices``, the function the run itself used; D3PO
draws one prompt per group), so it is recomputed here from the run's config.yaml and the task's
definition: a run made under another version of the task (``Task.version``; DONE.json or eval.csv
say which) is refused.

For each run: per round (or per block of ``--every`` rounds), the share of the round's images of
each prompt that the oracle judged a success (``oracle_success`` in the ledger: the truth, before
any simulated label noise). For HERO, the prompt of the image its best pick stands on, and from
which round (HERO rewards every image by its similarity to that one image, whatever its prompt).
Markdown to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from hero_bench.algorithms.base import training_prompt_indices
from hero_bench.algorithms.d3po import group_layout
from hero_bench.feedback import D3PO_SUCCESS, DDPO_REWARD, HERO_BEST, HERO_GOOD
from hero_bench.ledger import FeedbackLedger
from hero_bench.run_config import load_config_file
from hero_bench.run_records import CONFIG_FILE, LEDGER_FILE, recorded_task_version
from hero_bench.tasks import get_task

LABEL_KINDS = {"hero": HERO_GOOD, "ddpo": DDPO_REWARD, "d3po": D3PO_SUCCESS}


def _image_index(image_id: str) -> int:
    """``e0003-i0017`` -> 17 (the image's place in its round's batch)."""
    return int(image_id.rsplit("-i", 1)[1])


def prompt_labels(run_dir: Path) -> dict:
    """``{"prompts": [text, ...], "images": {epoch: [prompt index of each image]},
    "rounds": {epoch: {prompt index: (successes, images)}}, "best": [(epoch chosen, prompt
    index), ...] (HERO; each best in turn)}`` of one run."""
    cfg = load_config_file(run_dir / CONFIG_FILE, what=str(run_dir))
    if cfg.method not in LABEL_KINDS:
        raise SystemExit(f"{run_dir}: method {cfg.method!r} labels nothing; accepted: {', '.join(LABEL_KINDS)}")
    if not (run_dir / LEDGER_FILE).is_file():
        raise SystemExit(f"{run_dir}: no {LEDGER_FILE} (published copies keep none; a run folder does)")
    # the project's reader: the hash chain is checked and a crash's torn tail left out
    ledger = FeedbackLedger(run_dir / LEDGER_FILE, cfg.budget, cfg.run_id)
    task, made_under = get_task(cfg.task), recorded_task_version(run_dir)
    if made_under != task.version:
        # the prompts are recomputed from today's definition; another version's may differ
        raise SystemExit(f"{run_dir}: made under version {made_under} of task {task.name!r}; "
                         f"this code defines version {task.version}, whose training prompts may differ: run "
                         "this script from a commit of that version")
    prompts = [p.text for p in task.train_prompts]
    labels: dict[int, dict[int, bool]] = defaultdict(dict)
    for rec in ledger.records(kind=LABEL_KINDS[cfg.method]):
        if rec["type"] == "label":
            labels[rec["epoch"]][_image_index(rec["image_id"])] = bool(rec["oracle_success"])
    best_ids = [rec["value"]["best"]["image_id"] for rec in ledger.records(kind=HERO_BEST)
                if rec["value"]["best_index"] is not None]
    which: dict[int, list[int]] = {}
    for epoch, by_image in labels.items():
        n = max(by_image) + 1
        if cfg.method == "d3po":  # one prompt per group of images sharing z_T
            groups = group_layout(n, cfg.d3po.group_size)
            drawn = training_prompt_indices(cfg.seed, epoch, len(prompts), groups[-1] + 1)
            which[epoch] = [int(drawn[g]) for g in groups]
        else:
            which[epoch] = [int(i) for i in training_prompt_indices(cfg.seed, epoch, len(prompts), n)]
    rounds = {}
    for epoch in sorted(labels):
        counts = {p: [0, 0] for p in range(len(prompts))}
        for i, ok in labels[epoch].items():
            counts[which[epoch][i]][0] += ok
            counts[which[epoch][i]][1] += 1
        rounds[epoch] = {p: tuple(c) for p, c in counts.items()}
    best = []
    for image_id in best_ids:
        epoch = int(image_id.split("-")[0][1:])
        best.append((epoch, which[epoch][_image_index(image_id)]))
    return {"prompts": prompts, "images": which, "rounds": rounds, "best": best}


def render(run_dir: Path, result: dict, every: int) -> str:
    prompts, rounds = result["prompts"], result["rounds"]
    lines = [f"### {run_dir}", ""]
    if result["best"]:
        lines.append("HERO's best image: " + "; ".join(
            f"from round {e}, an image of \"{prompts[p]}\"" for e, p in result["best"]))
        lines.append("")
    lines.append("| rounds | " + " | ".join(f"\"{p}\": successes / images" for p in prompts) + " |")
    lines.append("|---|" + "---|" * len(prompts))
    epochs = sorted(rounds)
    for start in range(0, len(epochs), every):
        block = epochs[start:start + every]
        cells = []
        for p in range(len(prompts)):
            ok = sum(rounds[e][p][0] for e in block)
            n = sum(rounds[e][p][1] for e in block)
            cells.append(f"{ok}/{n} ({ok / n:.2f})" if n else "—")
        span = f"{block[0]}" if len(block) == 1 else f"{block[0]}-{block[-1]}"
        lines.append(f"| {span} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folder(s) with config.yaml and ledger.jsonl")
    parser.add_argument("--every", type=int, default=1, metavar="K", help="rounds per row (default 1)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be a positive number of rounds, got {args.every}")
    for run in args.runs:
        print(render(run, prompt_labels(run), args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
