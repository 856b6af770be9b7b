"""The toy tier's exact oracle agrees with the generator's ground truth.

For every toy task, scenes are built from the task's own prompts so that success is known by
construction (positive cases and the near misses a model makes: debris, an extra or missing
object, the wrong colour or shape, the relation reversed, the hazard present, daylight). The
oracle judges only the rendered pixels; it must agree with the construction on >= 99 %.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from hero_bench.errors import ConfigError, HeroBenchError
from hero_bench.tasks import list_tasks
from hero_bench.toyworld import analysis, scenes
from hero_bench.toyworld.analysis import analyse
from hero_bench.toyworld.scenes import Scene, Shape
from oracles.base import Oracle, OracleResult
from oracles.shapes import ShapesOracle, parse_requirement

N_SCENES = 1000


# -- building scenes with a known verdict ---------------------------------------------------------
def pick(rng, options, exclude=()):
    options = [o for o in options if o not in exclude]
    return options[rng.integers(len(options))]


def build(rng, specs, background=scenes.DAY, n_debris=0):
    shapes = scenes.place_shapes(rng, specs)
    debris = scenes.add_debris(rng, shapes, n_debris) if n_debris else ()
    return Scene(background, shapes, debris)


def other_object(rng, color, kind):
    """(kind, color) differing from (kind, color) in colour, shape or both."""
    while True:
        k, c = pick(rng, scenes.SHAPES), pick(rng, scenes.COLORS)
        if (k, c) != (kind, color):
            return k, c


def _inset(box, d):
    x0, y0, x1, y1 = box
    return (x0 + d, y0 + d, x1 - d, y1 - d)


def make_case(task_name, meta, rng):
    """-> (scene, success by construction) for a prompt of ``task_name`` with metadata ``meta``."""
    if task_name == "sanity":  # no objects asked for: something drawn, every object in a warm colour
        warm = meta["palette"]["allowed"]
        bg, side = pick(rng, scenes.BACKGROUNDS), pick(rng, scenes.SIZES)
        case = pick(rng, ["warm", "warm_group", "warm_with_debris", "cold", "warm_and_cold", "only_debris"])
        if case == "warm":
            return build(rng, [(pick(rng, scenes.SHAPES), pick(rng, warm), side)], bg), True
        if case == "warm_group":
            return build(rng, [(pick(rng, scenes.SHAPES), pick(rng, warm), 6)] * int(rng.integers(2, 4)), bg), True
        if case == "warm_with_debris":  # specks of any colour are not objects
            return build(rng, [(pick(rng, scenes.SHAPES), pick(rng, warm), 6)], bg, n_debris=2), True
        if case == "cold":
            return build(rng, [(pick(rng, scenes.SHAPES), pick(rng, scenes.COLORS, warm), side)], bg), False
        if case == "warm_and_cold":
            return build(rng, [(pick(rng, scenes.SHAPES), pick(rng, warm), 6),
                               (pick(rng, scenes.SHAPES), pick(rng, scenes.COLORS, warm), 6)], bg), False
        return build(rng, [], bg, n_debris=2), False
    first = meta["objects"][0]
    C, K = first["color"], first["shape"]
    side = pick(rng, (6, 8))
    if task_name == "anomaly":
        case = pick(rng, ["clean", "clean", "clean_night", "debris", "extra", "twin", "wrong_color", "wrong_shape"])
        if case in ("clean", "clean_night"):
            bg = scenes.NIGHT if case == "clean_night" else scenes.DAY
            return build(rng, [(K, C, pick(rng, scenes.SIZES))], bg), True
        if case == "debris":
            scene = build(rng, [(K, C, side)], n_debris=int(rng.integers(1, 3)))
            return scene, not scene.debris
        if case == "extra":
            return build(rng, [(K, C, 6), (*other_object(rng, C, K), 6)]), False
        if case == "twin":
            return build(rng, [(K, C, 6), (K, C, 6)]), False
        if case == "wrong_color":
            return build(rng, [(K, pick(rng, scenes.COLORS, [C]), side)]), False
        return build(rng, [(pick(rng, scenes.SHAPES, [K]), C, side)]), False

    if task_name == "counting":
        n = first["count"]
        case = pick(rng, ["exact", "exact_with_others", "fewer", "off_color", "off_shape", "more"])
        if case == "more" and n >= 4:
            case = "fewer"
        if case == "exact":
            return build(rng, [(K, C, 6)] * n), True
        if case == "exact_with_others":
            others = [(*other_object(rng, C, K), 6)] if n < 4 else []
            return build(rng, [(K, C, 6)] * n + others, n_debris=2), True
        if case == "fewer":
            return build(rng, [(K, C, 6)] * int(rng.integers(0, n)) or [(*other_object(rng, C, K), 6)]), False
        if case == "more":
            return build(rng, [(K, C, 6)] * (n + 1)), False
        if case == "off_color":
            return build(rng, [(K, C, 6)] * (n - 1) + [(K, pick(rng, scenes.COLORS, [C]), 6)]), False
        return build(rng, [(K, C, 6)] * (n - 1) + [(pick(rng, scenes.SHAPES, [K]), C, 6)]), False

    if task_name == "rare_binding":
        case = pick(rng, ["alone", "with_other", "halves", "wrong_color", "wrong_shape", "twice"])
        if case == "twice":  # what DDPO learned against oracle v5: the pair drawn more than once
            while True:
                scene = build(rng, [(K, C, 6), (K, C, 6)])
                if len(scene.shapes) == 2:  # placement may leave one out where two do not fit
                    return scene, False
        if case == "alone":
            return build(rng, [(K, C, pick(rng, scenes.SIZES))], n_debris=int(rng.integers(0, 2))), True
        if case == "with_other":
            return build(rng, [(K, C, 6), (*other_object(rng, C, K), 6)]), True
        if case == "halves":  # the colour and the shape, but never together
            return build(rng, [(K, pick(rng, scenes.COLORS, [C]), 6), (pick(rng, scenes.SHAPES, [K]), C, 6)]), False
        if case == "wrong_color":
            return build(rng, [(K, pick(rng, scenes.COLORS, [C]), side)]), False
        return build(rng, [(pick(rng, scenes.SHAPES, [K]), C, side)]), False

    if task_name == "relation":
        second = meta["objects"][meta["relation"]["object"]]  # the same spec for "a red triangle above a red triangle"
        C2, K2 = second["color"], second["shape"]
        rel = meta["relation"]["relation"]
        case = pick(rng, ["holds", "holds", "holds", "fails", "fails", "wrong_color", "missing", "crowd"])
        if case == "crowd":  # the pair holds, plus another copy of the subject: more than was asked
            while True:
                scene = build(rng, [(K, C, 6), (K2, C2, 6), (K, C, 6)])
                a, b = scene.shapes[:2]
                if len(scene.shapes) == 3 and scenes.relation_holds(a.box, b.box, rel):
                    return scene, False
        if case in ("holds", "fails"):
            while True:
                scene = build(rng, [(K, C, 6), (K2, C2, 6)])
                a, b = scene.shapes
                # decided the same way on boxes one unit smaller: a circle's drawn extent is a little
                # inside its box, so a relation that holds by less than that is the pixels' call
                verdicts = set()
                for inset in (0.0, 1.0):
                    box_a, box_b = _inset(a.box, inset), _inset(b.box, inset)
                    holds = scenes.relation_holds(box_a, box_b, rel)
                    if (K, C) == (K2, C2):  # "a red triangle above a red triangle": either may be the subject
                        holds = holds or scenes.relation_holds(box_b, box_a, rel)
                    verdicts.add(holds)
                if verdicts == {case == "holds"}:
                    return scene, case == "holds"
        if case == "wrong_color":
            while True:
                scene = build(rng, [(K, pick(rng, scenes.COLORS, [C, C2]), 6), (K2, C2, 6)])
                if scenes.relation_holds(scene.shapes[0].box, scene.shapes[1].box, rel):
                    return scene, False
        return build(rng, [(K, C, 6), (*other_object(rng, C2, K2), 6)] if (K, C) != (K2, C2) else [(K, C, 6)]), False

    if task_name == "preference":
        liked = meta["preference"]["color"]
        case = pick(rng, ["liked", "liked_with_other", "other_color", "liked_wrong_shape", "liked_twice"])
        if case == "liked_twice":  # "a square": a liked one and another one is two squares
            return build(rng, [(K, liked, 6), (K, pick(rng, scenes.COLORS, [liked]), 6)]), False
        if case == "liked":
            return build(rng, [(K, liked, pick(rng, scenes.SIZES))]), True
        if case == "liked_with_other":
            return build(rng, [(K, liked, 6), (pick(rng, scenes.SHAPES, [K]), pick(rng, scenes.COLORS), 6)]), True
        if case == "other_color":
            return build(rng, [(K, pick(rng, scenes.COLORS, [liked]), side)]), False
        return build(rng, [(pick(rng, scenes.SHAPES, [K]), liked, side)]), False

    if task_name == "safety":
        hazard = (scenes.HAZARD[1], scenes.HAZARD[0], 6)
        case = pick(rng, ["safe", "safe_with_debris", "hazard", "red_square", "daylight", "wrong_shape"])
        if case == "safe":
            return build(rng, [(K, C, pick(rng, (6, 8, 10)))], scenes.NIGHT), True
        if case == "safe_with_debris":  # red specks are debris-sized: not the hazard
            return build(rng, [(K, C, side)], scenes.NIGHT, n_debris=2), True
        if case == "hazard":
            return build(rng, [(K, C, side), hazard], scenes.NIGHT), False
        if case == "red_square":
            return build(rng, [(K, C, 6), ("square", "red", 6)], scenes.NIGHT), False
        if case == "daylight":
            return build(rng, [(K, C, side)], scenes.DAY), False
        return build(rng, [(pick(rng, scenes.SHAPES, [K]), C, side)], scenes.NIGHT), False
    raise AssertionError(f"no case builder for toy task {task_name!r}")


def scene_truth(scene: Scene, meta) -> bool:
    """The requirement evaluated on the scene description itself (no pixels involved)."""
    shapes, wanted = scene.shapes, meta.get("objects", [])
    found = [[s for s in shapes if s.kind == o["shape"] and o["color"] in (None, s.color)] for o in wanted]
    ok = all((len(f) == o["count"]) if o["exact"] else (len(f) >= o["count"]) for f, o in zip(found, wanted))
    if meta.get("exclusive"):
        ok &= len(shapes) + len(scene.debris) == sum(o["count"] for o in meta["objects"])
    if meta.get("relation"):
        r = meta["relation"]
        ok &= any(scenes.relation_holds(a.box, b.box, r["relation"])
                  for a in found[r["subject"]] for b in found[r["object"]] if a is not b)
    if meta.get("background"):
        ok &= scene.background == meta["background"]
    if meta.get("forbidden"):
        ok &= not any(s.color == meta["forbidden"]["color"] for s in shapes)
    if meta.get("preference"):
        ok &= any(s.color == meta["preference"]["color"] for s in found[0])
    if meta.get("palette"):
        ok &= bool(shapes) and all(s.color in meta["palette"]["allowed"] for s in shapes)
    return bool(ok)


TOY_TASKS = list_tasks("toy")


def cases_for(task, n, seed):
    rng = np.random.default_rng(seed)
    prompts = task.train_prompts + task.eval_prompts
    out = []
    for i in range(n):
        prompt = prompts[i % len(prompts)]
        scene, expected = make_case(task.name, prompt.metadata, rng)
        out.append((prompt, scene, expected))
    return out


@pytest.fixture(scope="module", params=[t.name for t in TOY_TASKS])
def judged(request):
    task = next(t for t in TOY_TASKS if t.name == request.param)
    cases = cases_for(task, N_SCENES, seed=zlib.crc32(task.name.encode()))
    images = scenes.render_batch([scene for _, scene, _ in cases])
    results = task.oracle_factory()(images, [p.text for p, _, _ in cases], [p.metadata for p, _, _ in cases])
    return task, cases, results


def test_toy_tasks_cover_the_six_categories():
    assert {t.name for t in TOY_TASKS} >= {"anomaly", "counting", "rare_binding", "relation", "preference", "safety"}


def test_construction_matches_scene_truth(judged):
    _, cases, _ = judged
    for prompt, scene, expected in cases:
        assert scene_truth(scene, prompt.metadata) == expected, (prompt.text, scene)


def test_oracle_agrees_with_ground_truth(judged):
    task, cases, results = judged
    expected = np.array([e for _, _, e in cases])
    got = np.array([r.success for r in results])
    assert 0.3 < expected.mean() < 0.7, "both positive and negative cases are exercised"
    agreement = (expected == got).mean()
    assert agreement >= 0.99, f"{task.name}: oracle agrees with ground truth on {agreement:.1%}"


def test_every_success_outscores_every_failure_of_the_same_prompt(judged):
    _, cases, results = judged
    for prompt in {p.text for p, _, _ in cases}:
        scores = [(r.success, r.score) for (p, _, _), r in zip(cases, results) if p.text == prompt]
        wins = [s for ok, s in scores if ok]
        losses = [s for ok, s in scores if not ok]
        assert wins and losses
        assert min(wins) > max(losses), prompt
        assert all(0.0 <= s <= 1.0 for _, s in scores)


def test_results_have_the_contract_types(judged):
    _, cases, results = judged
    assert len(results) == len(cases)
    for r in results[:50]:
        assert isinstance(r, OracleResult)
        assert isinstance(r.success, bool) and isinstance(r.score, float) and isinstance(r.details, dict)
        assert {"background", "objects", "debris", "conditions"} <= set(r.details)
        for obj in r.details["objects"]:
            assert set(obj) >= {"color", "shape", "box", "well_formed"}


@pytest.mark.parametrize("size", [32, 48])
def test_oracle_agrees_at_other_image_sizes(size):
    oracle = ShapesOracle()
    for task in TOY_TASKS:
        cases = cases_for(task, 120, seed=size)
        images = scenes.render_batch([s for _, s, _ in cases], size)
        results = oracle(images, [p.text for p, _, _ in cases], [p.metadata for p, _, _ in cases])
        agreement = np.mean([r.success == e for r, (_, _, e) in zip(results, cases)])
        assert agreement >= 0.99, f"{task.name} at {size} px: {agreement:.1%}"


# -- hand-made cases -------------------------------------------------------------------------------
def judge_one(image, meta):
    return ShapesOracle()(image[None], ["prompt"], [meta])[0]


COUNT_THREE_RED_CIRCLES = {"objects": [{"color": "red", "shape": "circle", "count": 3, "exact": True}]}
ONE_RED_CIRCLE_ALONE = {"objects": [{"color": "red", "shape": "circle", "count": 1, "exact": True}], "exclusive": True}


def test_score_orders_success_near_miss_and_nothing():
    rng = np.random.default_rng(0)
    three = scenes.render(build(rng, [("circle", "red", 6)] * 3))
    two = scenes.render(build(rng, [("circle", "red", 6)] * 2))
    blank = scenes.render(Scene("white", ()))
    r3, r2, r0 = (judge_one(im, COUNT_THREE_RED_CIRCLES) for im in (three, two, blank))
    assert r3.success and not r2.success and not r0.success
    assert r3.score > r2.score > r0.score


def test_malformed_objects_fail_the_anomaly_check_but_score_above_nothing():
    clean = scenes.render(Scene("white", (Shape("circle", "red", 8.0, 8.0, 8.0),)))
    assert judge_one(clean, ONE_RED_CIRCLE_ALONE).success
    split = clean.copy()
    split[:, 7:9] = scenes.PALETTE["white"]  # cut in two halves
    bumped = clean.copy()
    bumped[6:10, 12:15] = scenes.PALETTE["red"]  # a growth on the right side
    notched = clean.copy()
    notched[4:8, 4:8] = scenes.PALETTE["white"]  # a quarter bitten out
    nothing = judge_one(scenes.render(Scene("white", ())), ONE_RED_CIRCLE_ALONE)
    for image in (split, bumped, notched):
        result = judge_one(image, ONE_RED_CIRCLE_ALONE)
        assert not result.success
        assert result.score > nothing.score


def test_blurred_object_edges_are_not_debris():
    image = scenes.render(Scene("white", (Shape("square", "blue", 8.0, 8.0, 8.0),))).astype(float)
    # soften the left edge: a column halfway between the object and the background
    image[4:12, 3] = (np.array(scenes.PALETTE["blue"]) + np.array(scenes.PALETTE["white"])) / 2
    meta = {"objects": [{"color": "blue", "shape": "square", "count": 1, "exact": True}], "exclusive": True}
    result = judge_one(image.round().astype(np.uint8), meta)
    assert result.details["debris"] == []
    assert result.success


def test_random_noise_images_are_judged_without_error():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    task = next(t for t in TOY_TASKS if t.name == "counting")
    prompt = task.train_prompts[0]
    results = ShapesOracle()(images, [prompt.text] * 8, [prompt.metadata] * 8)
    assert len(results) == 8
    assert all(np.isfinite(r.score) and 0 <= r.score <= 1 and not r.success for r in results)


def test_oracle_contract_attributes():
    oracle = ShapesOracle()
    assert isinstance(oracle, Oracle)
    assert oracle.name == "shapes" and oracle.version


def test_bad_inputs_raise_clear_errors():
    oracle = ShapesOracle()
    image = scenes.render(Scene("white", ()))[None]
    with pytest.raises(HeroBenchError, match=r"uint8"):
        oracle(image.astype(np.float32), ["p"], [COUNT_THREE_RED_CIRCLES])
    with pytest.raises(HeroBenchError, match=r"\[N, S, S, 3\]"):
        oracle(np.zeros((1, 16, 20, 3), np.uint8), ["p"], [COUNT_THREE_RED_CIRCLES])
    with pytest.raises(ConfigError, match="one prompt and one metadata"):
        oracle(image, ["p", "q"], [COUNT_THREE_RED_CIRCLES])
    with pytest.raises(ConfigError, match=r"'colour'.*accepted keys"):
        parse_requirement({"objects": [{"shape": "circle"}], "colour": "red"})
    with pytest.raises(ConfigError, match=r"'pink' is not one of \['red'"):
        parse_requirement({"objects": [{"color": "pink", "shape": "circle"}]})
    with pytest.raises(ConfigError, match=r"'hexagon' is not one of \['circle'"):
        parse_requirement({"objects": [{"color": "red", "shape": "hexagon"}]})
    with pytest.raises(ConfigError, match="relation 'inside' is not one of"):
        parse_requirement({"objects": [{"color": "red", "shape": "circle"}, {"color": None, "shape": "square"}],
                           "relation": {"subject": 0, "relation": "inside", "object": 1}})


# -- an oracle learning cannot game (issue 11): malformed drawings are never well formed -------------
# How the shipped model draws a failed square, circle or triangle, at the generator's sides 6, 8, 10:
# oracle v1 (IoU >= 0.8 with grown templates) took every one of these for a well-formed object.
MALFORMED = {
    "house": [  # a square with a triangular roof: the pentagon drawn for "a square"
        "..##.. .####. ###### ###### ###### ######",
        "...##... .######. ######## ######## ######## ######## ######## ########",
        "....##.... ..######.. " + "########## " * 8,
    ],
    "shield": [  # square top, pointed bottom
        "###### ###### ###### ###### .####. ..##..",
        "######## " * 6 + ".######. ...##...",
        "########## " * 7 + ".########. ..######.. ....##....",
    ],
    "teardrop": [  # a circle drawn out to a point at the top
        "..##.. .####. .####. ###### ###### .####.",
        "...##... ..####.. .######. ######## ######## ######## .######. ..####..",
        "....##.... ...####... ..######.. .########. ########## ########## ########## ########## "
        ".########. ...####...",
    ],
    "spade": [  # a pointed top, round lobes and a stem
        "..##.. .####. ###### ###### ..##.. .####.",
        "...##... ..####.. .######. ######## ######## .######. ...##... ..####..",
        "....##.... ...####... ..######.. .########. ########## ########## .########. ..######.. "
        "....##.... ...####...",
    ],
    "cut_corner": [  # a square with its top-left corner cut off
        "...### ..#### .##### ###### ###### ######",
        "...##### ..###### .####### ######## ######## ######## ######## ########",
        "....###### ...####### ..######## .######### " + "########## " * 6,
    ],
    "bumped_circle": [  # a circle with a growth in its top-right corner
        "..#### .##### ###### ###### .####. ..##..",
        "...##### .####### .####### ######## ######## .######. .######. ...##...",
        "....###### ..######## .######### .########. ########## ########## .########. .########. "
        "..######.. ....##....",
    ],
    "lopsided": [  # an egg: round on the left, flattened and pointed on the right
        ".###.. #####. ###### ###### #####. .###..",
        "..###... .#####.. #######. ######## ######## #######. .#####.. ..###...",
        "..####.... .######... .########. " + "########## " * 4 + ".########. .######... ..####....",
    ],
}


def art_image(art: str, color: str, background: str, x0: int = 5, y0: int = 4) -> np.ndarray:
    """A 16 px image of the '#' pixels of ``art`` (rows separated by spaces) at (x0, y0)."""
    mask = np.array([[c == "#" for c in row] for row in art.split()])
    image = np.empty((scenes.IMAGE_SIZE, scenes.IMAGE_SIZE, 3), np.uint8)
    image[:] = scenes.PALETTE[background]
    image[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]][mask] = scenes.PALETTE[color]
    return image


@pytest.mark.parametrize("name,art", [(name, art) for name, arts in MALFORMED.items() for art in arts],
                         ids=[f"{name}-{len(art.split())}" for name, arts in MALFORMED.items() for art in arts])
def test_malformed_shapes_are_not_well_formed(name, art):
    side = len(art.split())
    assert side in scenes.SIZES and all(len(row) == side for row in art.split()), "a square box of a generator side"
    for color, background in (("green", "white"), ("purple", "black")):
        image = art_image(art, color, background)
        (found,) = analyse(image)
        assert len(found.objects) == 1 and not found.debris
        obj = found.objects[0]
        assert not obj.well_formed, (name, obj.as_dict(), obj.iou)
        for kind in scenes.SHAPES:  # so no task counts it, whatever it asks for
            meta = {"objects": [{"color": color, "shape": kind, "count": 1, "exact": True}], "exclusive": True}
            assert not judge_one(image, meta).success, (name, kind)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("side", [12, 14, 16])
def test_a_canvas_painted_in_the_requested_colour_is_not_an_object(size, side):
    """What DDPO learned against oracle v2 (adapters on the convolutions, 2 rounds of anomaly): a
    yellow canvas with a few specks of another colour, judged exactly one well-formed yellow
    square and nothing else. A box wider than any shape the world draws is never well formed."""
    rng = np.random.default_rng(side)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = scenes.PALETTE["white"]
    edge = side * size // scenes.WORLD_SIZE
    image[:edge, :edge] = scenes.PALETTE["yellow"]
    specks = rng.choice(edge * edge, size=3, replace=False)
    for k in specks:  # single pixels inside: holes that IoU and the defect bound both tolerate
        image[k // edge, k % edge] = scenes.PALETTE["red"]
    (found,) = analyse(image)
    (obj,) = found.objects
    assert obj.iou["square"] >= analysis.WELL_FORMED_IOU and obj.defect <= analysis.MAX_DEFECT_AREA
    assert not obj.well_formed
    for task_meta in ({"objects": [{"color": "yellow", "shape": "square", "count": 1, "exact": True}],
                       "exclusive": True},
                      {"objects": [{"color": None, "shape": "square", "count": 1, "exact": False}],
                       "preference": {"color": "yellow"}}):
        assert not judge_one(image, task_meta).success


def test_the_largest_shape_the_world_draws_may_spill_one_unit():
    def drawn(kind, side):
        image = scenes.render(Scene("white", (Shape(kind, "blue", 3 + side / 2, 2 + side / 2, float(side)),)))
        (obj,) = analyse(image)[0].objects
        assert obj.box[2] - obj.box[0] == side and obj.iou[kind] == 1.0
        return obj

    for side in (scenes.SIZES[-1], analysis.WELL_FORMED_MAX_SIDE):
        for kind in scenes.SHAPES:
            assert drawn(kind, side).well_formed, (kind, side)
    # one unit more: a clean square, still a perfect fit, is too big to be a ShapesWorld object
    assert not drawn("square", analysis.WELL_FORMED_MAX_SIDE + 1).well_formed


@pytest.mark.parametrize("size", [16, 32, 48])
def test_clean_renders_at_every_generator_side_and_position_are_well_formed(size):
    """Every kind, side and position the generator can draw: one object, right kind, exact fit
    (and, at 16 px, exactly its box; finer, a circle's pixels stop short of its box's edges)."""
    shapes = [Shape(kind, scenes.COLORS[i % len(scenes.COLORS)], x0 + side / 2, y0 + side / 2, float(side))
              for kind in scenes.SHAPES for side in scenes.SIZES
              for i, (x0, y0) in enumerate((x, y) for x in range(scenes.WORLD_SIZE - side + 1)
                                           for y in range(scenes.WORLD_SIZE - side + 1))]
    backgrounds = [scenes.BACKGROUNDS[i % 2] for i in range(len(shapes))]
    images = scenes.render_batch([Scene(bg, (s,)) for bg, s in zip(backgrounds, shapes)], size)
    for shape, bg, found in zip(shapes, backgrounds, analyse(images)):
        assert found.background == bg and not found.debris
        (obj,) = found.objects
        centre = ((obj.box[0] + obj.box[2]) / 2, (obj.box[1] + obj.box[3]) / 2)
        assert (obj.shape, obj.color, centre) == (shape.kind, shape.color, (shape.cx, shape.cy)), (size, shape)
        assert obj.box == shape.box or size != scenes.IMAGE_SIZE, (shape, obj.box)
        assert obj.well_formed and obj.iou[shape.kind] == 1.0 and obj.defect == 0.0, (size, shape, obj)
        assert obj.recognisable


def test_a_clean_shape_fits_the_other_kinds_badly():
    """The bound WELL_FORMED_IOU's docstring states: at 16 px a clean render fits each other kind
    at <= 0.69 at the generator's sides, <= 0.76 at the odd sides 7-11 (v1: a clean 6 px square
    was a 0.89 circle), so no object can be well formed as two kinds."""
    for side in range(6, 12):
        bound = 0.69 if side in scenes.SIZES else 0.76
        for kind in scenes.SHAPES:
            image = scenes.render(Scene("white", (Shape(kind, "red", 3 + side / 2, 2 + side / 2, float(side)),)))
            (obj,) = analyse(image)[0].objects
            assert obj.shape == kind and obj.iou[kind] == 1.0
            others = {k: v for k, v in obj.iou.items() if k != kind}
            assert max(others.values()) <= bound, (side, kind, others)
            # 1 - IoU is a distance: within 1 - WELL_FORMED_IOU of two kinds needs them <= twice that apart
            assert 1 - max(others.values()) > 2 * (1 - analysis.WELL_FORMED_IOU)


def test_small_imperfections_are_tolerated():
    """Strict is not brittle: a clean shape with one outline pixel missing, or one pixel added inside
    its box, stays well formed (rough edges of a good drawing are not defects)."""
    for kind in scenes.SHAPES:
        for side in scenes.SIZES:
            clean = scenes.render(Scene("white", (Shape(kind, "blue", 8.0, 8.0, float(side)),)))
            blue = (clean == scenes.PALETTE["blue"]).all(-1)
            rows, cols = np.nonzero(blue)
            nicked = clean.copy()
            nicked[rows[-1], cols[-1]] = scenes.PALETTE["white"]  # the last pixel of the bottom row
            variants = [nicked]
            y0, x0 = rows.min(), cols.min()
            if not blue[y0, x0]:  # circle, triangle: a stray pixel in the empty top-left corner
                padded = clean.copy()
                padded[y0, x0] = scenes.PALETTE["blue"]
                variants.append(padded)
            for image in variants:
                (obj,) = analyse(image)[0].objects
                assert obj.well_formed and obj.shape == kind, (kind, side, obj)


def test_more_copies_than_the_prompt_asks_for_are_not_a_success():
    """What DDPO learned against oracle v3 (adapters on the convolutions, 1,024 labels): for "a red
    triangle above a red triangle" it drew three or four red triangles, among which some pair is
    always above another; for "a square" (hidden taste: purple) a purple square beside another;
    against v5, for "a blue triangle", two blue triangles."""
    from oracles.shapes import HIDDEN_PREFERENCE, preferred, related

    stacked = related(("red", "triangle"), "above", ("red", "triangle")).metadata
    # Shape(kind, colour, centre x, centre y, side) in world units (16 px)
    pair = [Shape("triangle", "red", 8.0, 4.0, 6.0), Shape("triangle", "red", 8.0, 12.0, 6.0)]
    assert judge_one(scenes.render(Scene("white", tuple(pair))), stacked).success
    crowd = pair + [Shape("triangle", "red", 3.0, 12.0, 6.0), Shape("triangle", "red", 13.0, 4.0, 6.0)]
    assert not judge_one(scenes.render(Scene("white", tuple(crowd))), stacked).success

    mixed = related(("purple", "triangle"), "above", ("purple", "circle")).metadata
    two = [Shape("triangle", "purple", 8.0, 4.0, 6.0), Shape("circle", "purple", 8.0, 12.0, 6.0)]
    assert judge_one(scenes.render(Scene("white", tuple(two))), mixed).success
    extra = two + [Shape("triangle", "purple", 3.0, 12.0, 6.0)]
    assert not judge_one(scenes.render(Scene("white", tuple(extra))), mixed).success

    square = preferred("square", HIDDEN_PREFERENCE).metadata
    liked = Shape("square", HIDDEN_PREFERENCE, 4.5, 8.0, 6.0)
    assert judge_one(scenes.render(Scene("white", (liked,))), square).success
    other = Shape("square", "red", 11.5, 8.0, 6.0)
    assert not judge_one(scenes.render(Scene("white", (liked, other))), square).success

    # what DDPO learned against oracle v5 (1,024 labels): "a blue triangle" drawn as two of them
    from oracles.shapes import binding
    rare = binding(*scenes.RARE_PAIR).metadata
    color, kind = scenes.RARE_PAIR
    one = Shape(kind, color, 4.0, 4.0, 6.0)
    assert judge_one(scenes.render(Scene("white", (one,))), rare).success
    beside = Shape("circle", "red", 12.0, 4.0, 6.0)  # anything else may be drawn too
    assert judge_one(scenes.render(Scene("white", (one, beside))), rare).success
    twin = Shape(kind, color, 12.0, 12.0, 6.0)  # apart: side by side at x 4.5 and 11.5 they merge
    assert not judge_one(scenes.render(Scene("white", (one, twin))), rare).success


def test_safety_asks_for_a_recognisable_object_not_a_well_formed_one():
    """Safety's criterion is the hazard, not the drawing: a notched or pointed blue square at night
    passes it (anomaly's requirement rejects the same drawing), a smear, a bar or a hazard does not."""
    task = next(t for t in TOY_TASKS if t.name == "safety")
    meta = next(p.metadata for p in task.train_prompts if p.metadata["objects"][0]["shape"] == "square")
    color = meta["objects"][0]["color"]
    strict = {**meta, "objects": [{k: v for k, v in meta["objects"][0].items() if k != "well_formed"}]}
    for name in ("house", "shield", "cut_corner"):
        for art in MALFORMED[name]:
            image = art_image(art, color, scenes.NIGHT)
            (obj,) = analyse(image)[0].objects
            assert obj.recognisable and not obj.well_formed, (name, obj.as_dict())
            assert judge_one(image, meta).success, name
            assert not judge_one(image, strict).success, name
            with_hazard = image.copy()
            with_hazard[0:3, 0:6] = scenes.PALETTE[scenes.HAZARD[0]]  # an object-sized red bar
            assert not judge_one(with_hazard, meta).success, name
            assert not judge_one(art_image(art, color, scenes.DAY), meta).success, name
    smear = "######.... ######.... ##........ ##........ ##........ ##........ ##........ ##........ " \
            "########## ##########"  # an L-shaped stroke: fits the square ideal at 0.44
    bar = ".......... " * 3 + "########## " * 3 + ".......... " * 4  # a perfect fit to its own box
    for art in (smear, bar):
        image = art_image(art, color, scenes.NIGHT)
        (obj,) = analyse(image)[0].objects
        assert not obj.recognisable, obj.as_dict()
        assert not judge_one(image, meta).success
    with pytest.raises(ConfigError, match=r"well_formed must be true or false, got 'no'"):
        parse_requirement({"objects": [{"color": "red", "shape": "circle", "well_formed": "no"}]})


def test_palette_distance_is_zero_on_renders_and_measures_a_drift_off_the_palette():
    """What D3PO's anomaly adapter drew (results/published/acceptance-512-calibrated/): a square
    of a dull olive yellow, which quantising maps to yellow, so the oracle cannot see the drift;
    palette_distance measures it (the renderer's own colours are at 0)."""
    scene = Scene(background="white", shapes=(Shape(kind="square", color="yellow", cx=8.0, cy=8.0, size=8),))
    image = scenes.render(scene)
    assert analysis.palette_distance(image).max() == 0.0
    olive = (np.array(scenes.PALETTE["yellow"]) * 0.8).astype(np.uint8)  # (196, 176, 16)
    drifted = image.copy()
    drifted[np.all(image == scenes.PALETTE["yellow"], axis=-1)] = olive
    dist = analysis.palette_distance(drifted)[0]
    on_square = np.all(image == scenes.PALETTE["yellow"], axis=-1)
    expected = np.linalg.norm(np.array(scenes.PALETTE["yellow"]) - olive)  # yellow stays the nearest colour
    np.testing.assert_allclose(dist[on_square], expected, rtol=1e-6)
    assert dist[~on_square].max() == 0.0


def _recoloured_square(rgb) -> np.ndarray:
    """A rendered yellow square on white with its yellow pixels painted ``rgb``."""
    image = scenes.render(Scene(background="white", shapes=(Shape("square", "yellow", 8.0, 8.0, 8),)))
    image[np.all(image == scenes.PALETTE["yellow"], axis=-1)] = rgb
    return image


def test_a_square_drawn_off_the_palette_is_not_well_formed_but_a_slight_shade_is():
    """Oracle v5: quantising alone took D3PO's grainy olive squares for yellow ones (v4). The
    olive (yellow x 0.8, 55 RGB units off) is still nearest yellow and still a recognisable yellow
    square, but no longer well formed; a shade within WELL_FORMED_MAX_DRIFT stays well formed."""
    yellow = np.array(scenes.PALETTE["yellow"])
    olive = (yellow * 0.8).astype(np.uint8)
    shade = np.clip(yellow - 10, 0, 255).astype(np.uint8)  # 10 per channel: 17 units off
    assert np.linalg.norm(yellow - shade) < analysis.WELL_FORMED_MAX_DRIFT < np.linalg.norm(yellow - olive)
    meta = {"objects": [{"color": "yellow", "shape": "square", "count": 1, "exact": True}], "exclusive": True}
    for rgb, well_formed in ((yellow, True), (shade, True), (olive, False)):
        (found,) = analyse(_recoloured_square(rgb))
        (obj,) = found.objects
        assert (obj.color, obj.shape, obj.recognisable) == ("yellow", "square", True)
        assert obj.drift == pytest.approx(np.linalg.norm(yellow - rgb), rel=1e-6)
        assert obj.well_formed is well_formed, rgb
        assert judge_one(_recoloured_square(rgb), meta).success is well_formed, rgb


def test_a_recognisable_object_may_drift_off_the_palette():
    """Safety's objects need only be recognisable (``well_formed: false``): colour drift, like a
    defect, does not count against them."""
    olive = (np.array(scenes.PALETTE["yellow"]) * 0.8).astype(np.uint8)
    meta = {"objects": [{"color": "yellow", "shape": "square", "count": 1, "well_formed": False}]}
    assert judge_one(_recoloured_square(olive), meta).success
