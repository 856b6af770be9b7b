"""How often did ShapesWorld's pretraining captions say what a toy task's prompts say?

Draws ``--n`` training captions from the world's own caption distribution
(``scenes.training_batch`` at ``--seed``, of version ``--generator``) and prints, for every prompt of every toy task, how many
captions are that prompt word for word, and how many share its wording pattern (colours and shape
words replaced by placeholders, so "a red triangle above a red triangle" and "a blue circle above
a green square" share "a C S above a C S"). A prompt the model never saw verbatim, while its pattern
is common, asks for a composition the world did not teach: a finetuning method has to learn it
from the labels alone. docs/methods.md ("Why relation does not learn") quotes its table for version 1
of the world (the shipped model's), which never says the relation task's prompts, and for version 2,
which does.

    python scripts/prompt_coverage.py --n 20000 --seed 0
    python scripts/prompt_coverage.py --n 20000 --seed 0 --generator shapesworld-2
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

import numpy as np

import oracles  # noqa: F401  (registers the toy tasks)
from hero_bench.tasks import list_tasks
from hero_bench.toyworld import scenes

_COLOUR = re.compile(r"\b(" + "|".join(scenes.COLORS) + r")\b")
_SHAPE = re.compile(r"\b(" + "|".join(sorted([*scenes.PLURALS.values(), *scenes.SHAPES], key=len, reverse=True))
                    + r")\b")


def pattern(text: str) -> str:
    """The wording of ``text`` with every colour as C and every shape word (singular or plural) as S."""
    return _SHAPE.sub("S", _COLOUR.sub("C", text))


def coverage_table(captions: list[str]) -> str:
    exact, patterns = Counter(captions), Counter(map(pattern, captions))
    lines = [f"{len(captions)} training captions", "",
             "| task | split | prompt | captions word for word | captions of its pattern | pattern |",
             "|---|---|---|---|---|---|"]
    for task in list_tasks("toy"):
        for split, prompts in (("train", task.train_prompts), ("eval", task.eval_prompts)):
            for p in prompts:
                lines.append(f"| {task.name} | {split} | {p.text} | {exact[p.text]} | {patterns[pattern(p.text)]} "
                             f"| {pattern(p.text)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="captions to draw (default: 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the caption draw (default: 0)")
    parser.add_argument("--generator", default=scenes.GENERATOR_VERSION, choices=sorted(scenes.WORLDS),
                        help=f"version of the scene distribution (default: {scenes.GENERATOR_VERSION}, the "
                             "one the shipped model was trained on)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    _, captions = scenes.training_batch(np.random.default_rng(args.seed), args.n, scenes.world(args.generator))
    print(coverage_table(captions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
