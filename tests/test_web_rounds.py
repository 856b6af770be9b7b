"""A person's submission against its round and the method's protocol (hero_bench.web_rounds), and
the saved round that the page and `hero-bench agreement` read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hero_bench.web_rounds import ROUND_FILE, SubmissionError, check_submission, round_dir, save_round


def make_round(tmp_path, method="ddpo", n=4, epoch=3, current_best=None, groups=None):
    images = np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    return save_round(tmp_path, method, "anomaly", epoch, images, ["a red circle"] * n, [{"objects": []}] * n,
                      groups, current_best, 8, 32), images


def labels(rnd, good=()):
    return {i: ("good" if k in good else "bad") for k, i in enumerate(rnd.ids)}


def test_a_saved_round_holds_the_exact_pixels_and_its_description(tmp_path):
    rnd, images = make_round(tmp_path, groups=[0, 0, 1, 1], method="d3po")
    assert rnd.folder == round_dir(tmp_path, 3) == tmp_path / "web" / "e0003"
    for i, img in zip(rnd.ids, images):
        assert np.array_equal(np.asarray(Image.open(rnd.folder / f"{i}.png").convert("RGB")), img)
    saved = json.loads((rnd.folder / ROUND_FILE).read_text())
    assert saved == rnd.to_json()
    assert [im["group"] for im in saved["images"]] == [0, 0, 1, 1] and saved["budget"] == 32


def test_ddpo_and_d3po_take_one_good_or_bad_label_per_image(tmp_path):
    rnd, _ = make_round(tmp_path)
    sub = check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={1, 3})})
    assert sub.good.tolist() == [False, True, False, True] and sub.best is None
    assert check_submission(rnd, {"epoch": 3, "labels": labels(rnd)}).good.sum() == 0  # all bad is an answer


@pytest.mark.parametrize("payload, message", [
    ([], "must be a JSON object"),
    ({"epoch": 3}, "'labels' must map"),
    ({"epoch": 2, "labels": {}}, "round's epoch 3"),
    ({"epoch": True, "labels": {}}, "round's epoch 3"),
    ({"epoch": 3, "labels": {"e0003-i0000": "good"}}, "unlabelled"),
    ({"epoch": 3, "labels": "good"}, "'labels' must map"),
    ({"epoch": 3, "best": "e0003-i0000"}, "unknown field"),  # no best pick in DDPO's protocol
])
def test_malformed_submissions_are_refused_naming_what_is_wrong(tmp_path, payload, message):
    rnd, _ = make_round(tmp_path)
    with pytest.raises(SubmissionError, match=message):
        check_submission(rnd, payload)


def test_foreign_ids_and_unknown_values_are_refused(tmp_path):
    rnd, _ = make_round(tmp_path)
    foreign = {**labels(rnd), "e0002-i0000": "good"}
    with pytest.raises(SubmissionError, match=r"not in the round: \['e0002-i0000'\]"):
        check_submission(rnd, {"epoch": 3, "labels": foreign})
    with pytest.raises(SubmissionError, match="'good' or 'bad', got 'maybe'"):
        check_submission(rnd, {"epoch": 3, "labels": {**labels(rnd), rnd.ids[0]: "maybe"}})


def test_hero_first_round_needs_a_best_which_counts_as_good(tmp_path):
    rnd, _ = make_round(tmp_path, method="hero")
    sub = check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={0}), "best": rnd.ids[2]})
    assert sub.best == rnd.ids[2] and sub.good.tolist() == [True, False, True, False]
    with pytest.raises(SubmissionError, match="first round needs 'best'"):
        check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={0}), "best": None})
    with pytest.raises(SubmissionError, match="one marked bad"):
        check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={0, 1, 2, 3}), "best": rnd.ids[0]})


def test_hero_later_rounds_pick_among_the_good_images_or_keep_the_current_best(tmp_path):
    best = {"id": "e0002-i0001", "file": "e0002-i0001.png", "epoch": 2}
    rnd, _ = make_round(tmp_path, method="hero", current_best=best)
    assert check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={1}), "best": None}).best is None
    assert check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={1}), "best": rnd.ids[1]}).best == rnd.ids[1]
    with pytest.raises(SubmissionError, match="one of the images marked good"):
        check_submission(rnd, {"epoch": 3, "labels": labels(rnd, good={1}), "best": rnd.ids[0]})
    with pytest.raises(SubmissionError, match="at least one image marked good"):
        check_submission(rnd, {"epoch": 3, "labels": labels(rnd), "best": None})


def test_only_the_rounds_own_images_and_the_current_best_name_files(tmp_path):
    best = {"id": "e0002-i0001", "file": "e0002-i0001.png", "epoch": 2}
    rnd, _ = make_round(tmp_path, method="hero", current_best=best)
    assert rnd.image_file("e0003-i0002") == rnd.folder / "e0003-i0002.png"
    assert rnd.image_file("e0002-i0001") == tmp_path / "web" / "e0002" / "e0002-i0001.png"
    for wanted in ("e0002-i0000", "e0003-i0009", "../config", "..%2Fconfig.yaml", "e0003-i0002.png/../x", ""):
        assert rnd.image_file(wanted) is None, wanted
