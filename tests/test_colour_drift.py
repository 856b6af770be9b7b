"""scripts/colour_drift.py's summary on rendered and drifted pictures."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_script
from hero_bench.toyworld import scenes
from hero_bench.toyworld.scenes import Scene, Shape


def _square(color=None) -> np.ndarray:
    image = scenes.render(Scene(background="white", shapes=(Shape("square", "yellow", 8.0, 8.0, 8),)))
    if color is not None:
        image[np.all(image == scenes.PALETTE["yellow"], axis=-1)] = color
    return image


def test_drifted_successes_are_measured_and_left_out_of_the_on_palette_rate():
    drift = load_script("colour_drift")
    olive = (196, 176, 16)  # yellow × 0.8: still quantised to yellow, 55 RGB units off it
    images = np.stack([_square(), _square(olive), _square(), _square(olive)])
    success = np.array([True, True, False, True])
    s = drift.drift_stats(images, success, tolerance=20.0)
    far = float(np.linalg.norm(np.subtract(scenes.PALETTE["yellow"], olive)))
    assert s["success"] == pytest.approx(0.75)
    assert s["success_on_palette"] == pytest.approx(0.25)  # the clean square only
    assert s["object_median"] == pytest.approx(far, rel=1e-6)  # median of (0, far, far)
    assert s["object_max"] == pytest.approx(far, rel=1e-6)
    assert s["background_median"] == 0.0
    loose = drift.drift_stats(images, success, tolerance=far + 1)
    assert loose["success_on_palette"] == pytest.approx(0.75)


def test_object_drifts_lists_every_well_shaped_object_whatever_its_colour():
    drift = load_script("colour_drift")
    olive = (196, 176, 16)
    far = float(np.linalg.norm(np.subtract(scenes.PALETTE["yellow"], olive)))
    bar = scenes.render(Scene(background="white", shapes=()))
    bar[6:9, 2:14] = scenes.PALETTE["yellow"]  # a 3 x 12 bar: an object, but not a well-shaped one
    d = drift.object_drifts(np.stack([_square(), _square(olive), bar]))
    np.testing.assert_allclose(sorted(d), [0.0, far], rtol=1e-6)
    assert drift.object_drifts(bar[None]).size == 0
