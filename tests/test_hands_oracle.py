"""The paper tier's hand-normalcy oracle: geometry checks on hand-built landmarks, and the real
mediapipe path on hands the test draws (a shaded "fan hand" that mediapipe detects, a crude hand
it does not), blanks and noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from oracles import hands as H  # noqa: E402
from conftest import F64_EPS, arccos_tol  # noqa: E402


# -- drawn images ---------------------------------------------------------------------------------
SKIN = (205, 160, 130)
BACKGROUND = (235, 235, 240)


def draw_fan_hand(size=256, angle=0.0, scale=1.0, skin=SKIN, center_x=0.5, canvas=None):
    """An open right-hand-like 'fan hand': palm, four spread rounded fingers with knuckle creases
    and nails, a thumb, a forearm, distance-shaded skin and a dark outline, about 45 % of the
    frame height from wrist to middle fingertip (the recipe of docs/stack.md)."""
    img = np.full((size, size, 3), BACKGROUND, np.uint8) if canvas is None else canvas
    width = img.shape[1]
    mask = np.zeros(img.shape[:2], np.uint8)
    h = 0.45 * size * scale
    cx, cy = width * center_x, size * 0.5 + 0.275 * h
    pr = 0.22 * h
    w = 0.20 * h
    arm = np.array([[cx - w, cy + 0.05 * h], [cx + w, cy + 0.05 * h],
                    [cx + 1.15 * w, size + 5], [cx - 1.15 * w, size + 5]])
    cv2.fillPoly(mask, [arm.astype(np.int32)], 255)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(1.05 * pr), int(1.25 * pr)), 0, 0, 360, 255, -1)
    pivot = (cx, cy + 0.35 * h)
    fingers = []
    for length, radius, deg in zip((0.50, 0.56, 0.53, 0.44), (0.070, 0.075, 0.070, 0.060), (-15, -5, 5, 15)):
        th = math.radians(deg)
        d0 = 0.35 * h + 0.9 * pr
        bx, by = pivot[0] + math.sin(th) * d0, pivot[1] - math.cos(th) * d0
        tx, ty = bx + math.sin(th) * length * h, by - math.cos(th) * length * h
        r = max(1, int(radius * h))
        cv2.line(mask, (int(bx), int(by)), (int(tx), int(ty)), 255, 2 * r)
        cv2.circle(mask, (int(tx), int(ty)), r, 255, -1)
        fingers.append((bx, by, tx, ty, r))
    th = math.radians(-55)
    bx, by = cx - 0.7 * pr, cy + 0.35 * pr
    tx, ty = bx + math.sin(th) * 0.42 * h, by - math.cos(th) * 0.42 * h
    r = int(0.085 * h)
    cv2.line(mask, (int(bx), int(by)), (int(tx), int(ty)), 255, 2 * r)
    cv2.circle(mask, (int(tx), int(ty)), r, 255, -1)
    shade = np.clip(cv2.distanceTransform(mask, cv2.DIST_L2, 5) / (0.06 * h), 0, 1)
    colour = np.asarray(skin, np.float32)[None, None] * (0.72 + 0.28 * shade[..., None])
    inside = mask > 0
    img[inside] = colour[inside].astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, (110, 70, 50), max(1, size // 128))
    for bx, by, tx, ty, r in fingers:  # knuckle creases and nails make the fingers read as extended
        dx, dy = tx - bx, ty - by
        norm = math.hypot(dx, dy)
        ux, uy = dx / norm, dy / norm
        for f in (0.33, 0.62):
            px, py = bx + dx * f, by + dy * f
            cv2.line(img, (int(px - uy * r * 0.6), int(py + ux * r * 0.6)),
                     (int(px + uy * r * 0.6), int(py - ux * r * 0.6)), (150, 105, 80), max(1, size // 256))
        cv2.ellipse(img, (int(tx - ux * r * 0.2), int(ty - uy * r * 0.2)), (int(r * 0.75), int(r * 0.5)),
                    math.degrees(math.atan2(uy, ux)), 0, 360, (230, 200, 190), -1)
    if angle:
        rot = cv2.getRotationMatrix2D((width / 2, size / 2), angle, 1.0)
        img = cv2.warpAffine(img, rot, (width, size), borderValue=BACKGROUND)
    return img


def draw_crude_hand(size=256):
    """A flat palm ellipse with five finger rectangles: not a hand to mediapipe (docs/stack.md)."""
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, int(size * 0.62)), (size // 8, size // 7), 0, 0, 360, SKIN, -1)
    k = size / 256
    for i, dx in enumerate((-44, -22, 0, 22, 44)):
        x, top = int(c + dx * k), int(size * 0.25 + (10 * k if i in (0, 4) else 0))
        cv2.rectangle(img, (x - int(7 * k), top), (x + int(7 * k), int(size * 0.55)), SKIN, -1)
    return img


@pytest.fixture(scope="module")
def oracle():
    o = H.make_hands_oracle()
    yield o
    o.close()


# -- geometry on hand-built landmarks ------------------------------------------------------------
def open_hand_landmarks() -> np.ndarray:
    """A flat, open hand in the z = 0 plane with the reference bone proportions (palm length 0.09 m)."""
    ref = np.asarray(H.REFERENCE_BONE_RATIOS)
    world = np.zeros((21, 3))
    directions = [(-0.8, 0.6), (-0.25, 1.0), (0.0, 1.0), (0.2, 1.0), (0.4, 1.0)]  # thumb .. little
    for f, (dx, dy) in enumerate(directions):
        d = np.array([dx, dy, 0.0]) / math.hypot(dx, dy)
        point = world[0].copy()
        for b, idx in enumerate(H.FINGERS[f]):
            point = point + d * ref[f, b] * 0.09
            world[idx] = point
    return world


def test_open_hand_passes_every_geometric_check():
    result = H.assess_hand(open_hand_landmarks())
    assert result["checks"] == {"bone_ratios": True, "joint_angles": True, "finger_order": True, "no_crossing": True}
    assert result["normalcy"] == 1.0
    # straight fingers: cos = a·b/(|a||b|) = 1 up to ~8 float64 roundings (3-term dot, two norms, a
    # product, a division; BLAS kernels differ between CPUs), and arccos(1 - d) = sqrt(2d): about
    # 3.4e-6 degrees (measured 0 here, 1.2e-6 on another CPU); a joint bent by 1e-4 degrees fails
    assert result["max_joint_angle"] == pytest.approx(0.0, abs=math.degrees(arccos_tol(8 * F64_EPS)))


def test_mirrored_and_rotated_hand_still_passes():
    world = open_hand_landmarks() * np.array([-1.0, 1.0, 1.0])  # the other hand
    theta = 0.7
    rot = np.array([[1, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]])
    assert all(H.assess_hand(world @ rot.T)["checks"].values())


def test_curled_fist_passes_but_a_finger_folded_back_fails():
    world = open_hand_landmarks()
    normal = np.array([0.0, 0.0, 1.0])

    def bend(world, finger, degrees_per_joint):
        out = world.copy()
        mcp, pip, dip, tip = H.FINGERS[finger]
        chain = [mcp, pip, dip, tip]
        direction = out[pip] - out[mcp]
        direction /= np.linalg.norm(direction)
        for k in range(1, 4):
            a = math.radians(degrees_per_joint * k)
            # rotate the base direction towards the palm normal (flexion)
            d = direction * math.cos(a) + normal * math.sin(a)
            length = np.linalg.norm(world[chain[k]] - world[chain[k - 1]])
            out[chain[k]] = out[chain[k - 1]] + d * length
        return out

    fist = world
    for f in range(1, 5):
        fist = bend(fist, f, 85)
    assert all(H.assess_hand(fist)["checks"].values())
    broken = bend(world, 2, 140)
    result = H.assess_hand(broken)
    assert result["checks"]["joint_angles"] is False
    assert any(name.startswith("middle") for name in result["bad_joints"])


def test_each_distortion_fails_its_own_check():
    world = open_hand_landmarks()
    long_finger = world.copy()
    long_finger[8] = world[7] + (world[8] - world[7]) * 4.0  # index fingertip segment 4x too long
    r = H.assess_hand(long_finger)
    assert r["checks"]["bone_ratios"] is False and r["bad_bones"] == ["index[3]"]

    collapsed = world.copy()
    collapsed[11] = collapsed[10]  # middle phalanx of the middle finger has zero length
    collapsed[12] = collapsed[10] + (world[12] - world[11])
    assert H.assess_hand(collapsed)["checks"]["bone_ratios"] is False

    swapped = world.copy()
    swapped[[5, 6, 7, 8]], swapped[[17, 18, 19, 20]] = world[[17, 18, 19, 20]], world[[5, 6, 7, 8]]
    assert H.assess_hand(swapped)["checks"]["finger_order"] is False

    crossed = world.copy()
    # the index finger sweeps over to the ring side: its chain crosses the middle finger's
    crossed[7] = world[14] + np.array([0.0, 0.01, 0.0])
    crossed[8] = world[15] + np.array([0.0, 0.01, 0.0])
    r = H.assess_hand(crossed)
    assert r["checks"]["no_crossing"] is False and ["index", "middle"] in [list(p) for p in r["crossing_fingers"]]


def test_judge_detections_scores_put_successes_above_failures():
    good = open_hand_landmarks()
    bad = good.copy()
    bad[8] = good[7] + (good[8] - good[7]) * 4.0
    s = H.HandsSettings()
    ok, score_ok, _ = H.judge_detections([(0.55, "Right", good)], s)
    no, score_bad, details = H.judge_detections([(1.0, "Right", bad)], s)
    two, score_two, details_two = H.judge_detections([(0.9, "Right", good), (0.8, "Left", good)], s)
    none, score_none, _ = H.judge_detections([], s)
    low, score_low, _ = H.judge_detections([(0.3, "Right", good)], s)
    assert ok and not no and not two and not none and not low
    assert score_ok > max(score_bad, score_two, score_none, score_low)
    assert score_none == 0.0 and score_two < score_ok
    assert details["checks"]["bone_ratios"] is False and "bone_ratios" in details["reason"]
    assert details_two["checks"]["one_hand"] is False and details_two["n_hands"] == 2


def test_settings_are_validated():
    with pytest.raises(ValueError, match="max_num_hands"):
        H.HandsSettings(max_num_hands=1)
    with pytest.raises(ValueError, match="bone_factor"):
        H.HandsSettings(min_bone_factor=1.5)


# -- mediapipe on drawn images -------------------------------------------------------------------
def test_drawn_fan_hands_are_detected_and_normal(oracle):
    variants = [draw_fan_hand(), draw_fan_hand(angle=8, scale=0.9), draw_fan_hand(size=384, angle=-8, scale=1.1)]
    results = []
    for img in variants:  # sizes differ, so one call each
        (res,) = oracle(img[None], ["1 hand"], [{}])
        results.append(res)
    n_ok = sum(r.success for r in results)
    assert n_ok >= 2, [r.details for r in results]
    for r in results:
        if r.success:
            assert r.details["n_hands"] == 1 and r.details["confidence"] >= 0.5
            assert 0.75 <= r.score <= 1.0


def test_blank_noise_and_crude_hand_fail(oracle):
    rng = np.random.default_rng(0)
    images = np.stack(
        [
            np.full((256, 256, 3), 255, np.uint8),
            rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            draw_crude_hand(),
        ]
    )
    results = oracle(images, ["1 hand"] * 3, [{}] * 3)
    assert [r.success for r in results] == [False, False, False]
    assert [r.score for r in results] == [0.0, 0.0, 0.0]
    assert all(r.details["n_hands"] == 0 for r in results)


def test_two_hands_in_one_image_fail(oracle):
    canvas = np.full((256, 512, 3), BACKGROUND, np.uint8)
    img = draw_fan_hand(canvas=canvas, center_x=0.25)
    img = draw_fan_hand(canvas=img, center_x=0.75)
    (res,) = oracle(img[None], ["1 hand"], [{}])
    (single,) = oracle(draw_fan_hand()[None], ["1 hand"], [{}])
    if res.details["n_hands"] < 2:
        pytest.skip("mediapipe found fewer than two of the drawn hands")
    assert res.success is False and res.details["checks"]["one_hand"] is False
    assert res.score < 0.5 < single.score


def test_deterministic_and_validates_input(oracle):
    img = draw_fan_hand()[None]
    a, b = oracle(img, ["1 hand"], [{}]), oracle(img, ["1 hand"], [{}])
    assert a == b
    with pytest.raises(ValueError, match="uint8"):
        oracle(img.astype(np.float32), ["1 hand"], [{}])
    with pytest.raises(ValueError, match="prompts"):
        oracle(img, ["1 hand", "1 hand"], [{}])
    assert oracle.name == "hands" and "mediapipe0.10.21" in oracle.version


def test_include_landmarks_setting():
    o = H.make_hands_oracle({"include_landmarks": True})
    try:
        (res,) = o(draw_fan_hand()[None], ["1 hand"], [{}])
    finally:
        o.close()
    if res.details["n_hands"]:
        lms = np.asarray(res.details["landmarks"])
        assert lms.shape == (21, 3) and np.all((lms[:, :2] > 0) & (lms[:, :2] < 1))


def test_hand_task_is_registered():
    from hero_bench.tasks import get_task

    task = get_task("hand")
    assert task.tier == "paper" and task.category == "anomaly" and task.oracle_name == "hands"
    assert [p.text for p in task.train_prompts] == ["1 hand"] == [p.text for p in task.eval_prompts]
