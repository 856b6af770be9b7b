"""scripts/prompt_coverage.py, and the fact about the world that docs/methods.md ("Why relation does
not learn") draws from it: no caption of version 1 of the world (the shipped model's) states a
relation between two objects of one kind; version 2 states the relation task's prompts."""

from __future__ import annotations

import numpy as np
from conftest import load_script

from hero_bench.toyworld import scenes

coverage = load_script("prompt_coverage")


def test_pattern_abstracts_colours_and_shape_words_only():
    assert coverage.pattern("two blue squares") == "two C S"
    assert coverage.pattern("a red triangle left of a red triangle at night") == "a C S left of a C S at night"
    assert coverage.pattern("a square") == "a S"


def test_table_counts_word_for_word_and_by_pattern():
    table = coverage.coverage_table(["a red circle", "a red circle", "a blue square", "two blue squares"])
    row = next(line for line in table.splitlines() if "| anomaly | train | a red circle |" in line)
    assert row.split("|")[4:6] == [" 2 ", " 3 "]  # 2 verbatim; 3 of pattern "a C S"
    assert "| relation | train | a red triangle above a red triangle | 0 | 0 |" in table


def test_version_1_never_captions_a_relation_between_two_objects_of_one_kind():
    _, captions = scenes.training_batch(np.random.default_rng(0), 4000, scenes.world("shapesworld-1"))
    relations = [c for c in captions if any(f" {w} " in c for w in scenes.RELATIONS.values())]
    assert len(relations) > 100  # the world does caption relations, between two kinds
    for c in relations:
        word = next(w for w in scenes.RELATIONS.values() if f" {w} " in c)
        left, right = c.removesuffix(" " + scenes.NIGHT_PHRASE).split(f" {word} ")
        assert left != right, c


def test_version_2_captions_every_prompt_of_the_relation_task():
    """What version 2 changed: a model trained on it sees captions that repeat the relation task's
    prompts, training and held-out, word for word."""
    import oracles  # noqa: F401  (registers the toy tasks)
    from hero_bench.tasks import get_task

    task = get_task("relation")
    _, captions = scenes.training_batch(np.random.default_rng(0), 20000, scenes.world("shapesworld-2"))
    for prompt in (*task.train_prompts, *task.eval_prompts):
        assert captions.count(prompt.text) >= 5, (prompt.text, captions.count(prompt.text))
