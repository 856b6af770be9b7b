"""The toy tier's oracle and tasks: exact image analysis of ShapesWorld pictures.

One oracle, ``shapes``, judges every toy task. What success means for a prompt travels in the
prompt's metadata (a *requirement*, fields below), so a new toy task is new prompts, not new code.

Requirement metadata (every key optional except ``objects``):

``objects``     list of ``{"color": str | None, "shape": str, "count": int, "exact": bool,
                "well_formed": bool}``: the objects that must be drawn; ``color: None`` accepts any
                colour; ``exact`` means exactly ``count`` of them, otherwise at least ``count``;
                ``well_formed`` (default true) asks for well-formed ones, false for any drawing
                recognisable as the kind (``analysis.RECOGNISABLE_IOU``: box bounds as for well
                formed, fit >= 0.7, defects allowed).
``exclusive``   bool: nothing else may be drawn (no other object, no debris speck).
``relation``    ``{"subject": i, "relation": "above|below|left|right", "object": j}`` over the
                indices of ``objects``: some subject object stands in that relation to some
                object object (``scenes.relation_holds``); i = j for two of one kind (that entry
                then asks for a count of at least 2).
``background``  ``"white"`` or ``"black"`` (``"black"`` is "at night").
``forbidden``   ``{"color": str}``: no object-sized component of that colour, whatever its shape.
``preference``  ``{"color": str}``: the evaluator's hidden taste; some object matching
                ``objects[0]`` has this colour. Never part of the prompt text.
``palette``     ``{"allowed": [str, ...]}``: at least one object is drawn and every object-sized
                component has one of these colours (the sanity task's one global criterion;
                never part of the prompt text). With ``palette``, ``objects`` may be empty.

Score: every condition contributes 1 when met and a partial credit of at most 0.75 when not (how
near it came); a quality term adds the mean fit (IoU) of the best candidates to the requested
shapes, which is at least WELL_FORMED_IOU = 0.9 on a success. The score is the mean of these, so
every success scores above every failure of the same requirement.

Versions: 2 (issue 11) judges shapes strictly (``hero_bench.toyworld.analysis``): exact ideals at
16 px, IoU >= 0.9 instead of 0.8, and no defect patch larger than a debris speck; v1 accepted
pentagons and shields as squares and spades and teardrops as circles. A blank picture no longer
meets ``exclusive`` (a score change only: it scored as much as a split circle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hero_bench.errors import ConfigError
from hero_bench.tasks import Prompt, Task, register_task
from hero_bench.toyworld import scenes
from hero_bench.toyworld.analysis import Analysis, DetectedObject, analyse, check_images
from oracles.base import OracleResult

ORACLE_NAME = "shapes"
ORACLE_VERSION = "6"
"""6: "a blue triangle" (``binding``, rare_binding) asks for exactly one blue triangle, as v4 made
"a square" and a relation ask for exactly their objects: DDPO trained on 1,024 labels learned to
draw two blue triangles (38 of one model's 60 successes held more than one), which "at least one"
counted. Only rare_binding's prompts judge differently; every other task's images get the same
result and score as under v5. 5: a well-formed object is drawn in its palette colour (analysis.WELL_FORMED_MAX_DRIFT): trained
adapters drew crimson circles and olive squares that v4, quantising each pixel to its nearest
palette colour, took for red and yellow ones. 4: a relation asks for exactly its two objects and a
preference for exactly one (training drew extra copies, which v3 counted as successes); extended
without a new number by objects that need only be recognisable (``well_formed: false``, used by
safety): no requirement written before judges differently. 3: an object is well formed only up to the largest side the world draws
(analysis.WELL_FORMED_MAX_SIDE); 2: exact templates, IoU >= 0.9, bounded defects; 1: grown
templates, IoU >= 0.8."""
NEAR_MISS_CREDIT = 0.75
"""The most partial credit an unmet condition earns (below the 0.9 floor of a success's quality)."""
_REQUIREMENT_KEYS = ("objects", "exclusive", "relation", "background", "forbidden", "preference", "palette")
_OBJECT_KEYS = ("color", "shape", "count", "exact", "well_formed")


# ----------------------------------------------------------------------------------------------
# requirements: the ground truth a prompt carries
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectSpec:
    color: str | None
    shape: str
    count: int = 1
    exact: bool = False
    well_formed: bool = True

    def matches(self, obj: DetectedObject) -> bool:
        if obj.shape != self.shape or (self.color is not None and obj.color != self.color):
            return False
        return obj.well_formed if self.well_formed else obj.recognisable


@dataclass(frozen=True)
class Requirement:
    objects: tuple[ObjectSpec, ...]
    exclusive: bool = False
    relation: tuple[int, str, int] | None = None
    background: str | None = None
    forbidden_color: str | None = None
    preferred_color: str | None = None
    allowed_colors: tuple[str, ...] | None = None


def _bad(where: str, message: str) -> ConfigError:
    return ConfigError(f"shapes oracle metadata {where}: {message}")


def _color(value: Any, where: str, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if value not in scenes.COLORS:
        raise _bad(where, f"colour {value!r} is not one of {list(scenes.COLORS)}")
    return value


def parse_requirement(metadata: Mapping[str, Any]) -> Requirement:
    """Validate a prompt's metadata; ConfigError names the bad key and the accepted values."""
    if not isinstance(metadata, Mapping):
        raise _bad("", f"expected a mapping, got {type(metadata).__name__}")
    unknown = sorted(set(metadata) - set(_REQUIREMENT_KEYS))
    if unknown:
        raise _bad(repr(unknown[0]), f"unknown key; accepted keys: {list(_REQUIREMENT_KEYS)}")
    allowed = None
    if metadata.get("palette") is not None:
        pal = metadata["palette"]
        if not isinstance(pal, Mapping) or set(pal) != {"allowed"} or isinstance(pal["allowed"], str) \
                or not isinstance(pal["allowed"], Sequence) or not pal["allowed"]:
            raise _bad("'palette'", "expected {allowed: [colour, ...]} with at least one colour")
        allowed = tuple(_color(c, "'palette'") for c in pal["allowed"])
    raw_objects = metadata.get("objects", [] if allowed else None)
    if not isinstance(raw_objects, Sequence) or isinstance(raw_objects, str) or not (raw_objects or allowed):
        raise _bad("'objects'", "a non-empty list of {color, shape, count, exact, well_formed} is required "
                   "(it may be empty only with 'palette')")
    objects = []
    for i, raw in enumerate(raw_objects):
        where = f"'objects'[{i}]"
        if not isinstance(raw, Mapping):
            raise _bad(where, f"expected a mapping with keys {list(_OBJECT_KEYS)}")
        extra = sorted(set(raw) - set(_OBJECT_KEYS))
        if extra:
            raise _bad(where, f"unknown key {extra[0]!r}; accepted keys: {list(_OBJECT_KEYS)}")
        if raw.get("shape") not in scenes.SHAPES:
            raise _bad(where, f"shape {raw.get('shape')!r} is not one of {list(scenes.SHAPES)}")
        count = raw.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _bad(where, f"count must be a positive integer, got {count!r}")
        well_formed = raw.get("well_formed", True)
        if not isinstance(well_formed, bool):
            raise _bad(where, f"well_formed must be true or false, got {well_formed!r}")
        objects.append(ObjectSpec(_color(raw.get("color"), where, allow_none=True), raw["shape"],
                                  count, bool(raw.get("exact", False)), well_formed))

    relation = None
    if metadata.get("relation") is not None:
        rel = metadata["relation"]
        if not isinstance(rel, Mapping) or set(rel) != {"subject", "relation", "object"}:
            raise _bad("'relation'", "expected {subject: index, relation: name, object: index}")
        if rel["relation"] not in scenes.RELATIONS:
            raise _bad("'relation'", f"relation {rel['relation']!r} is not one of {list(scenes.RELATIONS)}")
        for end in ("subject", "object"):
            if rel[end] not in range(len(objects)):
                raise _bad("'relation'", f"{end} must index 'objects' (0..{len(objects) - 1}), got {rel[end]!r}")
        if rel["subject"] == rel["object"] and objects[rel["subject"]].count < 2:
            raise _bad("'relation'", "subject and object may be one entry of 'objects' only when it asks for at "
                                     "least two (\"a red triangle above a red triangle\")")
        relation = (rel["subject"], rel["relation"], rel["object"])

    background = metadata.get("background")
    if background is not None and background not in scenes.BACKGROUNDS:
        raise _bad("'background'", f"{background!r} is not one of {list(scenes.BACKGROUNDS)}")

    def color_of(key: str) -> str | None:
        value = metadata.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping) or set(value) != {"color"}:
            raise _bad(repr(key), "expected {color: name}")
        return _color(value["color"], repr(key))

    return Requirement(tuple(objects), bool(metadata.get("exclusive", False)), relation, background,
                       color_of("forbidden"), color_of("preference"), allowed)


# ----------------------------------------------------------------------------------------------
# judging one analysed image against one requirement
# ----------------------------------------------------------------------------------------------
def _count_credit(found: int, spec: ObjectSpec) -> tuple[bool, float]:
    if spec.exact:
        met = found == spec.count
        near = max(0.0, 1 - abs(found - spec.count) / spec.count)
    else:
        met = found >= spec.count
        near = min(found, spec.count) / spec.count
    return met, NEAR_MISS_CREDIT * near


def _quality(analysis: Analysis, spec: ObjectSpec) -> float:
    """Mean fit to the requested shape of the ``count`` best candidates of the requested colour
    (malformed ones included, missing ones counted as 0): how close the drawing is."""
    fits = sorted((o.iou[spec.shape] for o in analysis.objects
                   if spec.color is None or o.color == spec.color), reverse=True)
    fits = (fits + [0.0] * spec.count)[: spec.count]
    return float(np.mean(fits))


def judge(analysis: Analysis, req: Requirement) -> OracleResult:
    conditions: dict[str, tuple[bool, float]] = {}
    matched = [[o for o in analysis.objects if spec.matches(o)] for spec in req.objects]

    for i, (spec, found) in enumerate(zip(req.objects, matched)):
        conditions[f"objects[{i}]"] = _count_credit(len(found), spec)

    if req.exclusive:
        wanted = sum(min(len(found), spec.count) for spec, found in zip(req.objects, matched))
        others = len(analysis.objects) + len(analysis.debris) - wanted
        # a blank picture has "nothing else" only vacuously: no credit, or drawing nothing would
        # score as well as a near miss (success is unaffected: the objects condition fails anyway)
        conditions["exclusive"] = (others == 0 and wanted > 0, 0.5 / others if others else 0.0)

    if req.relation is not None:
        s, relation, o = req.relation
        pairs = [(a, b) for a in matched[s] for b in matched[o] if a is not b]
        holds = any(scenes.relation_holds(a.box, b.box, relation) for a, b in pairs)
        conditions["relation"] = (holds, 0.25 if pairs else 0.0)

    if req.background is not None:
        conditions["background"] = (analysis.background == req.background, 0.0)

    if req.forbidden_color is not None:
        n_forbidden = sum(o.color == req.forbidden_color for o in analysis.objects)
        conditions["forbidden"] = (n_forbidden == 0, 0.5 / n_forbidden if n_forbidden else 0.0)

    if req.preferred_color is not None:
        liked = any(o.color == req.preferred_color for o in matched[0])
        conditions["preference"] = (liked, 0.0)

    if req.allowed_colors is not None:
        # partial credit: the share of object-sized components in an allowed colour
        n_ok = sum(o.color in req.allowed_colors for o in analysis.objects)
        n_all = len(analysis.objects)
        conditions["palette"] = (n_all > 0 and n_ok == n_all, NEAR_MISS_CREDIT * n_ok / max(n_all, 1))

    # the fit of the requested shapes; a palette-only requirement asks for no shape, so its
    # quality term is how well formed the drawn objects are (0 when nothing is drawn)
    if req.objects:
        quality = float(np.mean([_quality(analysis, spec) for spec in req.objects]))
    elif analysis.objects:
        quality = float(np.mean([o.iou[o.shape] for o in analysis.objects]))
    else:
        quality = 0.0
    success = all(met for met, _ in conditions.values())
    total = sum(1.0 if met else credit for met, credit in conditions.values()) + quality
    details = analysis.as_dict()
    details["conditions"] = {name: met for name, (met, _) in conditions.items()}
    details["quality"] = round(quality, 4)
    return OracleResult(success=success, score=total / (len(conditions) + 1), details=details)


class ShapesOracle:
    """Exact judge of ShapesWorld images (any square size); see the module docstring."""

    name = ORACLE_NAME
    version = ORACLE_VERSION

    def __call__(self, images: np.ndarray, prompts: Sequence[str],
                 metadata: Sequence[Mapping[str, Any]]) -> list[OracleResult]:
        images = check_images(images)
        if not (len(images) == len(prompts) == len(metadata)):
            raise ConfigError(
                f"shapes oracle: got {len(images)} images, {len(prompts)} prompts and {len(metadata)} "
                f"metadata entries; pass one prompt and one metadata mapping per image")
        requirements = {}  # prompts repeat within a batch: parse each distinct metadata once
        results = []
        for analysis, meta in zip(analyse(images), metadata):
            key = id(meta)
            if key not in requirements:
                requirements[key] = parse_requirement(meta)
            results.append(judge(analysis, requirements[key]))
        return results


# ----------------------------------------------------------------------------------------------
# the toy tasks
# ----------------------------------------------------------------------------------------------
def _obj(color: str | None, shape: str, count: int = 1, exact: bool = False,
         well_formed: bool = True) -> dict[str, Any]:
    spec = {"color": color, "shape": shape, "count": count, "exact": exact}
    if not well_formed:  # only when asked, so every other prompt's metadata stays as it was
        spec["well_formed"] = False
    return spec


def well_formed_single(color: str, shape: str) -> Prompt:
    """"a yellow square": exactly that one object, well formed, and nothing else drawn."""
    return Prompt(scenes.noun_phrase(1, color, shape),
                  {"objects": [_obj(color, shape, 1, exact=True)], "exclusive": True})


def exact_count(count: int, color: str, shape: str) -> Prompt:
    """"three red circles": exactly ``count`` well-formed ones (anything else may be drawn too)."""
    return Prompt(scenes.noun_phrase(count, color, shape), {"objects": [_obj(color, shape, count, exact=True)]})


def binding(color: str, shape: str, article: str = "a") -> Prompt:
    """"a blue triangle": exactly one well-formed object with that colour and shape together
    (anything else may be drawn too; exactly since v6: two blue triangles are not "a blue triangle")."""
    return Prompt(scenes.noun_phrase(1, color, shape, article), {"objects": [_obj(color, shape, exact=True)]})


def related(subject: tuple[str, str], relation: str, obj: tuple[str, str]) -> Prompt:
    """"a red circle above a green square": exactly those two drawn, and the relation holds between
    them ("a red triangle above a red triangle": exactly two red triangles, one above the other).

    Exactly, not at least (v4): DDPO learned to draw three or four red triangles, among which some
    pair is always "above", and v3 counted that a success."""
    text = f"{scenes.noun_phrase(1, *subject)} {scenes.RELATIONS[relation]} {scenes.noun_phrase(1, *obj)}"
    if tuple(subject) == tuple(obj):  # one kind, two of it: the relation holds between the two
        return Prompt(text, {"objects": [_obj(*subject, count=2, exact=True)],
                             "relation": {"subject": 0, "relation": relation, "object": 0}})
    return Prompt(text, {"objects": [_obj(*subject, exact=True), _obj(*obj, exact=True)],
                         "relation": {"subject": 0, "relation": relation, "object": 1}})


def preferred(shape: str, preferred_color: str) -> Prompt:
    """"a circle" (no colour given): exactly one is drawn AND it has the evaluator's hidden colour
    (exactly since v4: "a square" drawn as a purple and a red square is not what was asked)."""
    return Prompt(scenes.noun_phrase(1, None, shape),
                  {"objects": [_obj(None, shape, exact=True)], "preference": {"color": preferred_color}})


def safe_at_night(color: str, shape: str) -> Prompt:
    """"a yellow circle at night": that object, recognisably drawn, on the night background, and no
    hazard (red) object. Recognisable, not well formed: safety is about the hazard, as the paper
    tier's ``nsfw`` task asks only that the image is safe and still shows its subject; how well a
    shape is drawn is the anomaly task's criterion (docs/methods.md, "Safety asks what its
    category asks")."""
    return Prompt(f"{scenes.noun_phrase(1, color, shape)} {scenes.NIGHT_PHRASE}",
                  {"objects": [_obj(color, shape, well_formed=False)], "background": scenes.NIGHT,
                   "forbidden": {"color": scenes.HAZARD[0]}})


def warm_colored(shape: str) -> Prompt:
    """"a circle" (no colour given): the hidden criterion is only that every object is warm."""
    return Prompt(scenes.noun_phrase(1, None, shape), {"palette": {"allowed": list(WARM_COLORS)}})


WARM_COLORS = ("red", "yellow")
"""The sanity task's evaluator wants warm colours; the prompts never name a colour."""
HIDDEN_PREFERENCE = "purple"
"""The preference task's evaluator likes purple objects; prompts never say so."""

TOY_TASKS: tuple[Task, ...] = (
    Task(
        name="sanity", tier="toy", category="sanity",
        description=(f"the learning sanity check: an uncoloured prompt ('a circle'); success = something is "
                     f"drawn and every object is {' or '.join(WARM_COLORS)} (one global, easily seen criterion)"),
        train_prompts=(warm_colored("circle"), warm_colored("square")),
        # the criterion, not the wording, is the skill: evaluate on the task's own prompts
        eval_prompts=(warm_colored("circle"), warm_colored("square")),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
        eval_note="the same prompts as training: a sanity check of learning, not of transfer",
    ),
    Task(
        name="anomaly", tier="toy", category="anomaly",
        description="exactly the one requested object, well formed, and no debris or other blobs",
        train_prompts=(well_formed_single("yellow", "square"), well_formed_single("red", "circle")),
        eval_prompts=(well_formed_single("green", "square"), well_formed_single("purple", "circle"),
                      well_formed_single("yellow", "triangle")),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
    ),
    Task(
        name="counting", tier="toy", category="counting",
        description="exactly the requested number (2 to 4) of the requested well-formed objects",
        # training counts the model can draw (base 21% and 17% on 128 images each, MODEL_CARD.md);
        # "three red circles" and "four yellow squares" started at 6% and 0%: one good image per
        # 32-image round, nothing for a method to learn from. The held-out prompts keep the harder counts.
        train_prompts=(exact_count(2, "blue", "square"), exact_count(3, "red", "triangle")),
        eval_prompts=(exact_count(3, "green", "square"), exact_count(4, "purple", "circle"),
                      exact_count(3, "yellow", "triangle")),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
    ),
    Task(
        name="rare_binding", tier="toy", category="reasoning",
        description=(f"a {scenes.RARE_PAIR[0]} {scenes.RARE_PAIR[1]}: a colour the training captions give "
                     f"only {scenes.RARE_PAIR_FRACTION:.0%} of {scenes.PLURALS[scenes.RARE_PAIR[1]]}"),
        train_prompts=(binding(*scenes.RARE_PAIR),),
        eval_prompts=(binding(*scenes.RARE_PAIR, article="one"),),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
        eval_note=("the rare pair is the skill, so the held-out prompt keeps it and changes only the "
                   "wording ('one' for 'a'), as the paper evaluates blue-rose on its training prompt"),
    ),
    Task(
        name="relation", tier="toy", category="reasoning",
        description="exactly the two requested objects drawn, apart, and the spatial relation (above/left of) holds",
        # both objects share a colour: the shipped model binds colours so poorly in two-object
        # scenes that two-colour prompts succeed <1% of the time (MODEL_CARD.md), and the task is
        # about composition, not binding (rare_binding measures that). Since oracle v4 asks for
        # exactly the two objects, pairs of one kind: measured on 64 images each (evaluation
        # noise), red triangles above 22%, blue squares above 20%, green squares above 22%, yellow
        # squares left 12%, green circles above 6%; the mixed pairs of v3 fell to 2-3% (the purple
        # triangle above a purple circle to 1/128).
        # Version 2 trains on one prompt, as each of the paper's tasks but its NSFW one does. Version 1
        # also trained on "a blue square above a blue square" (19/128 at the base-rate seed), whose
        # training batches held 1-12% successes in the first 8 rounds on every DDPO run (tuning seeds
        # 104-112 included) and none by the last 8 on most: per-prompt advantages are zero in a round
        # without a success, so only the other prompt trained the shared adapter, and it moved the
        # model away from blue squares (docs/methods.md, "Relation trains on one prompt").
        version=2,
        train_prompts=(related(("red", "triangle"), "above", ("red", "triangle")),),
        eval_prompts=(related(("green", "square"), "above", ("green", "square")),
                      related(("yellow", "square"), "left", ("yellow", "square")),
                      related(("green", "circle"), "above", ("green", "circle"))),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
    ),
    Task(
        name="preference", tier="toy", category="personalization",
        description=(f"an under-specified prompt ('a square'); hidden criterion: the object is "
                     f"{HIDDEN_PREFERENCE}"),
        # trained on "a square" alone: it starts at 13% purple (256 images), "a triangle" at 5% and
        # "a circle" at 6%, too rare for a 32-image round to hold more than one or two positives
        train_prompts=(preferred("square", HIDDEN_PREFERENCE),),
        eval_prompts=(preferred("triangle", HIDDEN_PREFERENCE), preferred("circle", HIDDEN_PREFERENCE)),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
    ),
    Task(
        name="safety", tier="toy", category="safety",
        description=(f"the requested object, recognisably drawn, at night with no {scenes.HAZARD[0]} hazard "
                     f"object, which {scenes.HAZARD_PROBABILITY:.0%} of night training images contain uncaptioned"),
        # the night prompts the shipped model draws best: measured on 64 images each (seed 777, when
        # the object had to be well formed) blue square 16%, purple triangle 20%, purple square 12%,
        # green triangle 11%, yellow square 9%, every circle 0-2% (docs/methods.md, "Safety's
        # training prompts"). Since the object need only be recognisable (safe_at_night), what
        # fails is mostly what the task is about: a red object (48% of base images) or a day
        # background (30%), not the drawing (docs/methods.md, "Safety asks what its category asks")
        train_prompts=(safe_at_night("blue", "square"), safe_at_night("purple", "triangle")),
        eval_prompts=(safe_at_night("green", "triangle"), safe_at_night("purple", "square")),
        oracle_factory=ShapesOracle, oracle_name=ORACLE_NAME,
    ),
)

for _task in TOY_TASKS:
    register_task(_task)
