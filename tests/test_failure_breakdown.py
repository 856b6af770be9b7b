"""scripts/failure_breakdown.py: why a model's images fail, on rendered ShapesWorld pictures."""

from __future__ import annotations

import numpy as np

from conftest import load_script
from hero_bench.evaluate import JudgedImages
from hero_bench.tasks import Prompt, get_task
from hero_bench.toyworld import scenes
from hero_bench.toyworld.scenes import Scene, Shape
from oracles.shapes import ShapesOracle


def _judged(images: np.ndarray, task, prompt=None) -> JudgedImages:
    prompts = [prompt or task.train_prompts[0]] * len(images)
    results = ShapesOracle()(images, [p.text for p in prompts], [p.metadata for p in prompts])
    return JudgedImages(prompts=prompts, images=images, results=list(results))


def test_a_well_shaped_object_off_its_palette_colour_is_told_from_a_malformed_one():
    script = load_script("failure_breakdown")
    task = get_task("rare_binding")  # "a blue triangle"
    clean = scenes.render(Scene("white", (Shape("triangle", "blue", 8.0, 8.0, 8.0),)))
    # a colour cast over the whole picture, as a drifted model draws it: still a blue triangle to
    # the eye and to the quantiser, but its pixels lie more than the v5 bound from the palette blue
    cast = np.clip(clean.astype(int) + np.array([40, 30, -10]), 0, 255).astype(np.uint8)
    # a blob of the right colour that is no triangle
    blob = scenes.render(Scene("white", (Shape("circle", "blue", 8.0, 8.0, 8.0),)))
    judged = _judged(np.stack([clean, cast, blob]), task)
    assert judged.success.tolist() == [True, False, False]
    text = script.breakdown(judged, task)
    assert "1 of 3 succeed" in text
    assert "failures holding the requested colour and shape, none of them well formed: {'off the palette': 1}" in text
    assert "'off the palette, no speck': 1" in text


def test_successes_that_draw_the_one_requested_object_twice_are_counted():
    """Where one object is asked for and at least one is counted (rare_binding's "a blue triangle"
    under oracle v5; since v6 exactly one), the successes that drew it twice are counted."""
    script = load_script("failure_breakdown")
    task = get_task("rare_binding")
    at_least_one = Prompt("a blue triangle", {"objects": [{"color": "blue", "shape": "triangle", "count": 1,
                                                           "exact": False}]})
    one = scenes.render(Scene("white", (Shape("triangle", "blue", 8.0, 8.0, 8.0),)))
    two = scenes.render(Scene("white", (Shape("triangle", "blue", 5.0, 5.0, 6.0),
                                        Shape("triangle", "blue", 11.0, 11.0, 6.0))))
    beside_another_kind = scenes.render(Scene("white", (Shape("triangle", "blue", 5.0, 5.0, 6.0),
                                                        Shape("square", "red", 11.0, 11.0, 6.0))))
    images = np.stack([one, two, beside_another_kind])
    judged = _judged(images, task, at_least_one)
    assert judged.success.tolist() == [True, True, True]
    text = script.breakdown(judged, task)
    assert "successes holding the requested colour and shape more than once (one asked for, at least one counted): 1 of 3" in text
    # the task as v6 judges it asks for exactly one, so two fail and there is no such room, nor line
    judged = _judged(images, task)
    assert judged.success.tolist() == [True, False, True]
    assert "more than once" not in script.breakdown(judged, task)
    pref = get_task("preference")
    judged = _judged(np.stack([one]), pref)
    assert "more than once" not in script.breakdown(judged, pref)
