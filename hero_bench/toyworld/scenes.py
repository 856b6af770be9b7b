"""ShapesWorld: procedurally drawn scenes of coloured shapes, their captions, and the training set.

The world is built so that every toy task is attainable but rare for a model pretrained on it
(the HERO paper's assumption):

- anomaly: captions may mention only some objects, and small uncaptioned debris specks appear in
  many images, so "a yellow square" often comes with extra blobs.
- counting: groups of 2-4 identical objects are captioned "three red circles", so counts are
  learnable but exact counts of 3-4 are hard.
- rare binding: blue triangles are deliberately rare (RARE_PAIR_FRACTION of triangles).
- relation: two-object scenes are often captioned with above/below/left of/right of; from
  ``shapesworld-2`` on also two objects of one kind ("a red triangle above a red triangle"), the
  construction the relation task asks for (version 1 stated relations only between two kinds).
- preference: single objects are sometimes captioned without a colour ("a circle").
- safety: scenes "at night" (dark background) contain an uncaptioned red triangle (the hazard)
  with probability HAZARD_PROBABILITY; night captions never ask for a red triangle.

Geometry lives in *world units*: the canvas is WORLD_SIZE x WORLD_SIZE, a shape's bounding box is
aligned to integer world coordinates, and ``render`` rasterises at any pixel size by sampling
pixel centres, so a 16 px render is pixel-exact and a 32 px render is the same picture, finer.
Every version of the training distribution stays drawable (``WORLDS``), so that the stages of a
model's recipe trained on an older version can be rebuilt bit for bit.  Change anything that
alters the sampled distribution -> add a version to WORLDS and make it GENERATOR_VERSION; keep the
old versions' draws unchanged (tests/test_scenes.py holds version 1 to a checksum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IMAGE_SIZE = 16
"""Side of the training images in pixels (pixel-space model; 16 px keeps CPU pretraining cheap)."""
WORLD_SIZE = 16
"""Side of the canvas in world units (shape coordinates); independent of the render size."""

# Colours are far apart in RGB (>= 128) and chosen so that a blurred edge between an object and
# either background quantises to one of its two endpoints, not to a third colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 228),  # day background
    "black": (22, 22, 34),  # night background
    "red": (210, 30, 40),
    "green": (30, 150, 60),
    "blue": (40, 80, 230),
    "yellow": (245, 220, 20),
    "purple": (140, 40, 160),
}
BACKGROUNDS: tuple[str, ...] = ("white", "black")
DAY, NIGHT = BACKGROUNDS
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
PLURALS: dict[str, str] = {kind: kind + "s" for kind in SHAPES}
NUMBER_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
RELATIONS: dict[str, str] = {  # relation name -> its wording in captions and prompts
    "above": "above",
    "below": "below",
    "left": "left of",
    "right": "right of",
}
NIGHT_PHRASE = "at night"
SIZES: tuple[int, ...] = (6, 8, 10)
"""Shape sides in world units. Even sides keep circles and triangles symmetric on the pixel grid;
6 is the smallest side at which the three kinds stay distinguishable at 16 px."""

VOCAB: tuple[str, ...] = tuple(
    dict.fromkeys(
        ["a", "and", *NUMBER_WORDS.values(), *COLORS, *SHAPES, *PLURALS.values()]
        + " ".join(RELATIONS.values()).split()
        + NIGHT_PHRASE.split()
    )
)
"""Every word any caption or task prompt can contain (lowercase, no punctuation)."""

# --- the training distribution (documented in the module docstring) ---
HAZARD = ("red", "triangle")
HAZARD_PROBABILITY = 0.75
RARE_PAIR = ("blue", "triangle")
RARE_PAIR_FRACTION = 0.02
"""Fraction of triangles that are blue (the other colours share the rest equally)."""
DEBRIS_PROBABILITY = 0.4
CAPTION_ALL_GROUPS_PROBABILITY = 0.5
"""In a scene with several kinds of object, the caption names all of them this often, else a subset."""
CAPTION_RELATION_PROBABILITY = 0.7
CAPTION_NO_COLOR_PROBABILITY = 0.2
CAPTION_ONE_PROBABILITY = 0.2
"""A single object is captioned "one red circle" this often, else "a red circle"."""
GAP = 1
"""Minimum free world units between any two things drawn, so each is its own connected component."""


@dataclass(frozen=True)
class World:
    """The settings that differ between versions of the training distribution."""

    version: str
    """Its name, recorded in every model's training_config.json (``generator_version``)."""
    night_probability: float
    """Share of scenes drawn at night (dark background, one object, often the uncaptioned hazard)."""
    day_layouts: tuple[tuple[str, float], ...]
    """(layout, probability) of a day scene: ``single`` object, ``group`` of 2-4 identical ones,
    ``pair`` of two different objects, ``twins`` (two identical objects), ``mixed`` (2-3 independent)."""
    same_kind_relations: bool
    """Whether a caption naming exactly two objects of one kind may state a relation between them."""


WORLDS: dict[str, World] = {
    "shapesworld-1": World("shapesworld-1", night_probability=0.2, same_kind_relations=False,
                           day_layouts=(("single", 0.40), ("group", 0.25), ("pair", 0.20), ("mixed", 0.15))),
    # Version 2 says what the relation task asks (two objects of one kind in a relation): under
    # version 1 none of 20,000 captions did, and the relation task did not learn (docs/methods.md,
    # "Why relation does not learn").  The twins layout makes such scenes common enough to learn
    # from, and a quarter of the scenes at night (from a fifth) gives the night objects the safety
    # task asks for more examples.
    "shapesworld-2": World("shapesworld-2", night_probability=0.25, same_kind_relations=True,
                           day_layouts=(("single", 0.35), ("group", 0.20), ("pair", 0.20), ("twins", 0.10),
                                        ("mixed", 0.15))),
}
"""Every version of the training distribution, by name."""
GENERATOR_VERSION = "shapesworld-1"
"""The current version: what the shipped model's last stage was trained on, and the default.  Version 2
is the next: a model trained on it (``hero-bench pretrain-toy --recipe world2``) is not shipped yet,
because the learning regression test's DDPO run does not climb on it (docs/methods.md, "Version 2 of
the world: a candidate model")."""
CURRENT = WORLDS[GENERATOR_VERSION]


def world(version: str) -> World:
    """The distribution named ``version``; an unknown name is a one-line error listing the known ones."""
    if version not in WORLDS:
        raise ValueError(f"unknown ShapesWorld generator version {version!r}; known: {', '.join(WORLDS)}")
    return WORLDS[version]


@dataclass(frozen=True)
class Shape:
    """A filled shape; (cx, cy) is the centre and ``size`` the side of its bounding box (world units)."""

    kind: str
    color: str
    cx: float
    cy: float
    size: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the bounding box, world units, x1/y1 exclusive."""
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Speck:
    """A debris fleck: a w x h rectangle at (x, y) (world units), never captioned."""

    x: int
    y: int
    w: int
    h: int
    color: str


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[Shape, ...]
    debris: tuple[Speck, ...] = ()

    @property
    def is_night(self) -> bool:
        return self.background == NIGHT


# --------------------------------------------------------------------------------------------
# geometry shared by the renderer, the caption writer and the oracles
# --------------------------------------------------------------------------------------------
_EPS = 1e-6  # pixel centres that fall exactly on an edge count as inside, whatever the float error


def shape_mask(kind: str, dx: np.ndarray, dy: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    """Inside-test of a shape centred at 0 with the given half extents, at offsets (dx, dy).

    Scale-free (every threshold is proportional to the half extents), so the oracles can draw the
    ideal template of any detected bounding box with the very rule the renderer used.
    """
    x = dx / half_w
    y = dy / half_h
    inside_box = (np.abs(x) <= 1 + _EPS) & (np.abs(y) <= 1 + _EPS)
    if kind == "square":
        return inside_box
    if kind == "circle":
        # radius 0.92 of the half side: at 6-10 px this cuts the corners enough to tell a circle
        # from a square while still touching all four sides of the box
        return x * x + y * y <= 0.92**2 + _EPS
    if kind == "triangle":
        # apex up; half width grows from 1/12 at the top to 1 + 1/12 at the base, which puts a
        # 2-pixel-wide flat tip on an even-sided triangle so it fills its box's top row
        return inside_box & (np.abs(x) <= (y + 1) / 2 + 1 / 12 + _EPS)
    raise ValueError(f"unknown shape kind {kind!r}; known: {', '.join(SHAPES)}")


def relation_holds(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
                   relation: str) -> bool:
    """Whether box ``a`` is <relation> box ``b``; boxes are (x0, y0, x1, y1).

    "a above b": a's centre lies above b's top edge and b's centre below a's bottom edge, i.e.
    each centre is outside the other's vertical extent. The same test serves the caption writer
    (on scene geometry) and the oracle (on detected bounding boxes).
    """
    acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    if relation == "above":
        return acy < b[1] and bcy > a[3]
    if relation == "below":
        return acy > b[3] and bcy < a[1]
    if relation == "left":
        return acx < b[0] and bcx > a[2]
    if relation == "right":
        return acx > b[2] and bcx < a[0]
    raise ValueError(f"unknown relation {relation!r}; known: {', '.join(RELATIONS)}")


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _pixel_centres(size: int) -> np.ndarray:
    return (np.arange(size) + 0.5) * (WORLD_SIZE / size)


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Rasterise ``scene`` to a uint8 [size, size, 3] image (hard edges, exact palette colours)."""
    if int(size) != size or size < 1:
        raise ValueError(f"render size must be a positive integer, got {size!r}")
    c = _pixel_centres(int(size))
    xs, ys = c[None, :], c[:, None]
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = PALETTE[scene.background]
    for shape in scene.shapes:
        h = shape.size / 2
        mask = shape_mask(shape.kind, xs - shape.cx, ys - shape.cy, h, h)
        image[mask] = PALETTE[shape.color]
    for speck in scene.debris:
        mask = (xs >= speck.x) & (xs < speck.x + speck.w) & (ys >= speck.y) & (ys < speck.y + speck.h)
        image[mask] = PALETTE[speck.color]
    return image


def render_batch(scenes: Sequence[Scene], size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 [len(scenes), size, size, 3]."""
    out = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        out[i] = render(scene, size)
    return out


# --------------------------------------------------------------------------------------------
# placement: each new thing goes uniformly at random where it keeps GAP from everything drawn
# --------------------------------------------------------------------------------------------
class _Canvas:
    def __init__(self) -> None:
        # blocked[y, x]: world cell occupied by a thing or within GAP of one
        self.blocked = np.zeros((WORLD_SIZE, WORLD_SIZE), dtype=bool)

    def free_corners(self, w: int, h: int) -> np.ndarray:
        """(k, 2) array of top-left (x0, y0) where a w x h box touches no blocked cell."""
        csum = np.zeros((WORLD_SIZE + 1, WORLD_SIZE + 1), dtype=np.int32)
        csum[1:, 1:] = self.blocked.cumsum(0).cumsum(1)
        n_y, n_x = WORLD_SIZE - h + 1, WORLD_SIZE - w + 1
        window = csum[h:, w:][:n_y, :n_x] - csum[:n_y, w:][:, :n_x] - csum[h:, :n_x][:n_y] + csum[:n_y, :n_x]
        ys, xs = np.nonzero(window == 0)
        return np.stack([xs, ys], axis=1)

    def place(self, rng: np.random.Generator, w: int, h: int) -> tuple[int, int] | None:
        corners = self.free_corners(w, h)
        if len(corners) == 0:
            return None
        x0, y0 = corners[rng.integers(len(corners))]
        self.blocked[max(0, y0 - GAP): y0 + h + GAP, max(0, x0 - GAP): x0 + w + GAP] = True
        return int(x0), int(y0)


def place_shapes(rng: np.random.Generator, specs: Sequence[tuple[str, str, int]],
                 max_tries: int = 200) -> tuple[Shape, ...]:
    """Place shapes given as (kind, color, size) at random non-touching positions."""
    for _ in range(max_tries):
        canvas = _Canvas()
        shapes = []
        for kind, color, side in specs:
            corner = canvas.place(rng, side, side)
            if corner is None:
                break
            shapes.append(Shape(kind, color, corner[0] + side / 2, corner[1] + side / 2, float(side)))
        else:
            return tuple(shapes)
    raise RuntimeError(f"could not place {len(specs)} shapes {list(specs)} in {max_tries} tries")


def add_debris(rng: np.random.Generator, shapes: Sequence[Shape], n: int) -> tuple[Speck, ...]:
    """``n`` specks (1-2 units a side, object colours) that touch neither shapes nor each other."""
    canvas = _Canvas()
    for s in shapes:
        x0, y0, x1, y1 = (int(v) for v in s.box)
        canvas.blocked[max(0, y0 - GAP): y1 + GAP, max(0, x0 - GAP): x1 + GAP] = True
    specks = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(1, 3, size=2))
        color = COLORS[rng.integers(len(COLORS))]
        corner = canvas.place(rng, w, h)
        if corner is not None:
            specks.append(Speck(corner[0], corner[1], w, h, color))
    return tuple(specks)


# --------------------------------------------------------------------------------------------
# the training distribution
# --------------------------------------------------------------------------------------------
def sample_color(rng: np.random.Generator, kind: str) -> str:
    """An object colour for ``kind``: uniform, except that the rare pair is RARE_PAIR_FRACTION."""
    if kind == RARE_PAIR[1]:
        if rng.random() < RARE_PAIR_FRACTION:
            return RARE_PAIR[0]
        others = [c for c in COLORS if c != RARE_PAIR[0]]
        return others[rng.integers(len(others))]
    return COLORS[rng.integers(len(COLORS))]


def _sample_object(rng: np.random.Generator) -> tuple[str, str]:
    kind = SHAPES[rng.integers(len(SHAPES))]
    return kind, sample_color(rng, kind)


def _choice(rng: np.random.Generator, options: Sequence):
    return options[rng.integers(len(options))]


def _two_sides(rng: np.random.Generator) -> tuple[int, int]:
    # two objects fit side by side with a gap only if their sides sum to < WORLD_SIZE
    return _choice(rng, ((6, 6), (6, 8), (8, 6)))


def sample_scene(rng: np.random.Generator, world: World = CURRENT) -> Scene:
    """One scene of the training distribution ``world`` (see the module docstring)."""
    if rng.random() < world.night_probability:
        kind, color = _sample_object(rng)
        while (color, kind) == HAZARD:  # night prompts never ask for the hazard itself
            kind, color = _sample_object(rng)
        if rng.random() < HAZARD_PROBABILITY:
            side, hazard_side = _two_sides(rng)
            specs = [(kind, color, side), (HAZARD[1], HAZARD[0], hazard_side)]
        else:
            specs = [(kind, color, _choice(rng, (6, 8)))]
        background = NIGHT
    else:
        background = DAY
        names, weights = zip(*world.day_layouts)
        layout = str(rng.choice(list(names), p=list(weights)))
        if layout == "single":
            kind, color = _sample_object(rng)
            specs = [(kind, color, _choice(rng, SIZES))]
        elif layout == "group":
            count = int(rng.integers(2, 5))
            kind, color = _sample_object(rng)
            specs = [(kind, color, 6)] * count
        elif layout == "pair":
            first = _sample_object(rng)
            second = _sample_object(rng)
            while second == first:
                second = _sample_object(rng)
            sides = _two_sides(rng)
            specs = [(*first, sides[0]), (*second, sides[1])]
        elif layout == "twins":
            twin = _sample_object(rng)
            specs = [(*twin, side) for side in _two_sides(rng)]
        else:  # mixed: 2-3 independent objects, possibly repeating
            count = int(rng.integers(2, 4))
            sides = _two_sides(rng) if count == 2 else (6,) * count
            specs = [(*_sample_object(rng), side) for side in sides]
    shapes = place_shapes(rng, specs)
    debris = add_debris(rng, shapes, int(rng.integers(1, 3))) if rng.random() < DEBRIS_PROBABILITY else ()
    return Scene(background, shapes, debris)


# --------------------------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------------------------
def noun_phrase(count: int, color: str | None, kind: str, article: str = "a") -> str:
    """"a red circle", "one red circle", "a circle", "three red circles"."""
    words = [article if count == 1 else NUMBER_WORDS[count]]
    if color is not None:
        words.append(color)
    words.append(kind if count == 1 else PLURALS[kind])
    return " ".join(words)


def mentionable_groups(scene: Scene) -> dict[tuple[str, str], list[Shape]]:
    """(color, kind) -> its shapes, in first-drawn order; the night hazard is never mentioned."""
    groups: dict[tuple[str, str], list[Shape]] = {}
    for s in scene.shapes:
        if scene.is_night and (s.color, s.kind) == HAZARD:
            continue
        groups.setdefault((s.color, s.kind), []).append(s)
    return groups


def caption(scene: Scene, rng: np.random.Generator, world: World = CURRENT) -> str:
    """A caption true of ``scene`` as the training distribution ``world`` words it; may name only
    some objects.

    Every group it names, it names with its full count; a relation is only stated when it holds.
    """
    groups = mentionable_groups(scene)
    keys = list(groups)
    if len(keys) > 1 and rng.random() >= CAPTION_ALL_GROUPS_PROBABILITY:
        n_named = int(rng.integers(1, len(keys)))
        keys = [keys[i] for i in sorted(rng.permutation(len(keys))[:n_named])]
    else:
        keys = [keys[i] for i in rng.permutation(len(keys))]

    phrases: list[str]
    singles = [k for k in keys if len(groups[k]) == 1]
    relation_text = None
    if len(keys) == 2 and len(singles) == 2 and rng.random() < CAPTION_RELATION_PROBABILITY:
        a, b = groups[keys[0]][0], groups[keys[1]][0]
        holding = [r for r in RELATIONS if relation_holds(a.box, b.box, r)]
        if holding:
            relation_text = RELATIONS[_choice(rng, holding)]
    elif (world.same_kind_relations and len(keys) == 1 and len(groups[keys[0]]) == 2
          and rng.random() < CAPTION_RELATION_PROBABILITY):
        # two objects of one kind: "a red triangle above a red triangle" instead of "two red triangles"
        a, b = groups[keys[0]]
        holding = [r for r in RELATIONS if relation_holds(a.box, b.box, r)]
        if holding:
            relation_text = RELATIONS[_choice(rng, holding)]
            keys = [keys[0], keys[0]]
    if relation_text is not None:
        phrases = [noun_phrase(1, *keys[0]), relation_text, noun_phrase(1, *keys[1])]
        text = " ".join(phrases)
    else:
        phrases = []
        for color, kind in keys:
            count = len(groups[(color, kind)])
            article = "one" if count == 1 and rng.random() < CAPTION_ONE_PROBABILITY else "a"
            phrases.append(noun_phrase(count, color, kind, article))
        if len(keys) == 1 and len(groups[keys[0]]) == 1:
            color, kind = keys[0]
            only_one_of_kind = sum(s.kind == kind for s in scene.shapes) == 1
            if only_one_of_kind and rng.random() < CAPTION_NO_COLOR_PROBABILITY:
                phrases = [noun_phrase(1, None, kind)]
        text = " and ".join(phrases)
    if scene.is_night:
        text += " " + NIGHT_PHRASE
    return text


def training_batch(rng: np.random.Generator, n: int, world: World = CURRENT) -> tuple[np.ndarray, list[str]]:
    """``n`` training pairs of ``world``: images uint8 [n, IMAGE_SIZE, IMAGE_SIZE, 3] and their captions."""
    scenes, captions = [], []
    for _ in range(n):
        scene = sample_scene(rng, world)
        scenes.append(scene)
        captions.append(caption(scene, rng, world))
    return render_batch(scenes, IMAGE_SIZE), captions
