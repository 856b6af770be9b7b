"""scripts/extra_objects.py counts what else a success draws, on rendered pictures."""

from __future__ import annotations

import numpy as np

from conftest import load_script
from hero_bench.toyworld import scenes
from hero_bench.toyworld.scenes import Scene, Shape


def _picture(*shapes: Shape) -> np.ndarray:
    return scenes.render(Scene(background="white", shapes=shapes))


def test_second_square_and_second_purple_object_are_counted_among_successes_only():
    extra = load_script("extra_objects")
    one = _picture(Shape("square", "purple", 5.0, 5.0, 6))
    two_squares = _picture(Shape("square", "purple", 4.0, 4.0, 5), Shape("square", "red", 12.0, 12.0, 5))
    bar = _picture(Shape("square", "purple", 5.0, 5.0, 6))
    bar[12:14, 3:14] = scenes.PALETTE["purple"]  # a 2 x 11 purple bar: an object, not a square
    images = np.stack([one, two_squares, bar, two_squares])
    success = np.array([True, True, True, False])  # the last is a failure: not counted
    k, second_square, second_purple = extra.extra_counts({"_images": images, "_success": success},
                                                         "square", "purple")
    assert (k, second_square, second_purple) == (3, 1, 1)
