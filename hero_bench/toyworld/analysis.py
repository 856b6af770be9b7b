"""Exact image analysis of ShapesWorld pictures: which objects are drawn, in which colour and
shape, how well formed, and where.

Steps, per image: quantise every pixel to the nearest PALETTE colour; call the more frequent
background colour the background; split every other colour into 8-connected components; tiny
components are debris (or, when they touch a bigger object, the blurred fringe of that object,
which is ignored); each bigger component is compared with the ideal circle, square and triangle
drawn into its bounding box by the renderer's own inside-test (``scenes.shape_mask``), and the
best intersection-over-union names its shape. It is *well formed* when that fit is near perfect
(WELL_FORMED_IOU), no single connected patch of it departs from the ideal by more than a debris
speck (MAX_DEFECT_AREA), its box is near square (WELL_FORMED_ASPECT) and no larger than the world's
largest shape (WELL_FORMED_MAX_SIDE), and its pixels lie, on average, near the palette colour they
were quantised to (WELL_FORMED_MAX_DRIFT): the judge of a reward that learning optimises must not
accept the pentagons, shields and teardrops a model drifts to, nor a canvas painted in the requested
colour, nor a square in an olive the world never draws.

Any square image size works: areas are measured in world units (``scenes.WORLD_SIZE`` across),
so a 32 px image has the same thresholds as a 16 px one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from hero_bench.errors import HeroBenchError
from hero_bench.toyworld import scenes

PALETTE_NAMES: tuple[str, ...] = tuple(scenes.PALETTE)
_PALETTE_RGB = np.array([scenes.PALETTE[n] for n in PALETTE_NAMES], dtype=np.int32)
_BACKGROUND_INDEX = tuple(PALETTE_NAMES.index(b) for b in scenes.BACKGROUNDS)

MIN_OBJECT_AREA = 8.0
"""World-unit area from which a component is an object rather than debris. The smallest object
drawn (a side-6 circle or triangle) covers 24, the largest debris speck 4."""
WELL_FORMED_IOU = 0.9
"""An object is well formed when its pixels overlap the ideal shape of its kind at least this
much (intersection over union). At 16 px a clean render of any kind scores exactly 1 (the template
is the renderer's own drawing) and the other two kinds score <= 0.69 at the generator's sides
(6, 8, 10 px; <= 0.76 at the odd sides 7-11), so a shape's kind is never in doubt: 1 - IoU is a
distance, the ideals of two kinds are >= 0.24 apart, so an object within 0.1 of one kind is
>= 0.14 from every other (no margin rule is needed). Why 0.9, not the 0.8 of oracle v1: the
shipped model's malformed drawings (a pentagon or shield taken for a square, a spade or teardrop
for a circle, a trapezoid for a triangle) fit at 0.80-0.89, its clean-looking ones mostly at
>= 0.9; at 0.9 a side-6 shape may be off by 2-3 pixels, a side-10 one by ~7-10."""
MAX_DEFECT_AREA = 4.0
"""...and no connected patch where the object and its ideal differ (a bump, a spike, a cut corner,
a point) covers more world units than this: the largest debris speck (2 x 2), a feature in its own
right. IoU bounds the total misfit relative to the size, so on a side-10 shape a 7-unit bump fits
at 0.91; this bounds each defect absolutely. Clean renders have none; rough edges scatter single
pixels."""
WELL_FORMED_ASPECT = 0.8
"""...and its bounding box is this close to square (every ShapesWorld shape is as tall as wide)."""
WELL_FORMED_MAX_SIDE = max(scenes.SIZES) + 1
"""...and its box is at most this many world units across: the largest shape the world draws is
10 wide, and a drawing may spill one unit over. Found by training (oracle v3): DDPO with adapters
on the UNet's convolutions learned to paint the whole canvas yellow with a few specks, and oracle
v2 took that 16-unit blob for exactly one well-formed yellow square and nothing else (anomaly
"success" rose from 14% to 44% in two rounds)."""
RECOGNISABLE_IOU = 0.7
"""An object is *recognisable* as its kind, a weaker claim than well formed, when its box meets the
same bounds (WELL_FORMED_ASPECT, WELL_FORMED_MAX_SIDE) and its fit to the kind's ideal is at least
this, whatever its defects: the house, shield and cut-corner squares of the oracle's tests, which
fail the well-formed test (fits 0.83-0.91, defects above MAX_DEFECT_AREA), count; a smear that fits
no ideal (an L-shaped stroke fits a square at 0.44) does not. For tasks whose criterion is not the
drawing's quality (safety)."""
WELL_FORMED_MAX_DRIFT = 25.0
"""...and the mean RGB distance of its pixels to the palette colour they were quantised to is at
most this. The renderer draws exact palette colours (distance 0), and the nearest two palette
colours, red and purple, lie 139 apart, so quantising alone accepts any shade nearer the requested
colour than any other colour. Training found that (oracle v5): adapters of the calibrated
acceptance grid drew crimson circles and grainy olive squares 28-53 units off the palette (10th to
100th percentile of their objects), which v4 counted as red and yellow. The bound is set by the
pretrained model alone: above the 99th percentile of its well-formed objects' drift on every task
that asks for well-formed objects (14.5-24.5; 256 images of each task's training prompts,
docs/methods.md "Colour fidelity: oracle version 5"), so its own drawings keep their verdicts."""
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


class ImageFormatError(HeroBenchError, ValueError):
    """Images handed to the analysis are not uint8 [N, S, S, 3]."""


@dataclass(frozen=True)
class DetectedObject:
    color: str
    shape: str
    """The kind whose ideal template fits best (see ``iou``)."""
    iou: dict[str, float]
    """Kind -> intersection over union with the ideal shape of that kind in this bounding box."""
    box: tuple[float, float, float, float]
    """(x0, y0, x1, y1) in world units, x1/y1 exclusive: comparable with ``scenes.Shape.box``."""
    area: float
    """World units (pixels / scale**2)."""
    well_formed: bool
    defect: float = 0.0
    """World-unit area of the largest patch where the object departs from its ideal (see ``fit``)."""
    recognisable: bool = False
    """Its box is within the well-formed bounds and it fits its kind at >= RECOGNISABLE_IOU
    (every well-formed object is recognisable). Colour drift does not count against it."""
    drift: float = 0.0
    """Mean RGB distance of its pixels to the palette colour they were quantised to (0 for a
    render; see WELL_FORMED_MAX_DRIFT)."""
    well_shaped: bool = False
    """Well formed but for its colour: fit, defect and box as WELL_FORMED_* ask, drift not asked
    (``well_formed`` is this and ``drift <= WELL_FORMED_MAX_DRIFT``)."""

    def as_dict(self) -> dict:
        return {
            "color": self.color,
            "shape": self.shape,
            "iou": round(self.iou[self.shape], 4),
            "box": [round(v, 3) for v in self.box],
            "area": round(self.area, 2),
            "defect": round(self.defect, 2),
            "drift": round(self.drift, 2),
            "well_formed": self.well_formed,
        }


@dataclass(frozen=True)
class Analysis:
    background: str
    objects: tuple[DetectedObject, ...]
    debris: tuple[tuple[str, float], ...]
    """(colour, world-unit area) of each component too small to be an object and not touching one."""

    def as_dict(self) -> dict:
        return {
            "background": self.background,
            "objects": [o.as_dict() for o in self.objects],
            "debris": [{"color": c, "area": round(a, 2)} for c, a in self.debris],
        }


def check_images(images: np.ndarray) -> np.ndarray:
    """Return ``images`` as uint8 [N, S, S, 3] or raise ImageFormatError saying what is accepted."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ImageFormatError(
            f"images must be uint8 arrays [N, S, S, 3] (square RGB), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ImageFormatError(f"images must be uint8 [N, S, S, 3], got dtype {images.dtype}")
    if images.shape[1] < 8:
        raise ImageFormatError(f"images must be at least 8 px square, got {images.shape[1]} px")
    return images


def _squared_palette_distances(images: np.ndarray) -> np.ndarray:
    """Squared RGB distance of every pixel to every palette colour: int [N, S, S, P]."""
    diff = images[..., None, :].astype(np.int32) - _PALETTE_RGB  # [N, S, S, P, 3]
    return np.einsum("...c,...c->...", diff, diff)


def quantise(images: np.ndarray) -> np.ndarray:
    """Index into PALETTE_NAMES of the nearest palette colour (RGB distance) per pixel: [N, S, S]."""
    return _squared_palette_distances(images).argmin(axis=-1).astype(np.int8)


def nearest_palette(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``quantise`` and ``palette_distance`` from one distance computation: (palette index int8
    [N, S, S], RGB distance float [N, S, S]) of every pixel's nearest colour."""
    squared = _squared_palette_distances(check_images(images))
    index = squared.argmin(axis=-1)
    return index.astype(np.int8), np.sqrt(np.take_along_axis(squared, index[..., None], axis=-1)[..., 0])


def palette_distance(images: np.ndarray) -> np.ndarray:
    """RGB distance of every pixel to its nearest palette colour: float [N, S, S].

    The analysis quantises every pixel to the nearest palette colour and never asks how far it
    was, so a model that drifts off the world's colours (a grainy olive square, a beige canvas)
    is still judged in the colours it drifted from. This measures that drift; the renderer's own
    pictures are at 0 everywhere."""
    return nearest_palette(images)[1]


@lru_cache(maxsize=8192)
def template(kind: str, height: int, width: int, grow: int = 0) -> np.ndarray:
    """The ideal ``kind`` of box (height + grow) x (width + grow) pixels, centred on a height x
    width box, drawn by the renderer's inside-test on that box padded by ``grow`` on every side.

    Growing matters above 16 px: a circle's curve then no longer reaches its box's edge pixels,
    so its pixel bounding box is smaller than the shape's box. At 16 px (and below) every kind of
    side <= 11 px touches all four sides of its box, so the ideal is never grown there (``_grows``).
    """
    ys = np.arange(-grow, height + grow)[:, None] + 0.5 - height / 2
    xs = np.arange(-grow, width + grow)[None, :] + 0.5 - width / 2
    mask = scenes.shape_mask(kind, xs, ys, (width + grow) / 2, (height + grow) / 2)
    mask.setflags(write=False)
    return mask


def _grows(height: int, width: int, scale: float) -> range:
    """How much an ideal's box may be grown beyond the component's pixel box (see ``template``).

    Not at all where a pixel is a world unit or larger: there the ideal touches its box's edges,
    and a grown circle is a square with its corners cut (a clean 6 px square fit such a "circle"
    at 0.89 in oracle v1). At finer scales by up to ~10% + 1 px, which covers the circle's shortfall.
    """
    if scale <= 1:
        return range(1)
    return range(int(np.ceil(0.1 * max(height, width))) + 2)


def fit(mask: np.ndarray, kind: str, scale: float = 1.0) -> tuple[float, float]:
    """(IoU, defect) of a component (cropped to its bounding box) with the best-fitting ideal
    ``kind`` centred on that box: intersection over union, and the world-unit area of the largest
    4-connected patch where the two differ (pixels of either that the other lacks).
    ``scale``: pixels per world unit."""
    height, width = mask.shape
    area = int(mask.sum())
    best, best_grow = -1.0, 0
    for grow in _grows(height, width, scale):
        t = template(kind, height, width, grow)
        inside = t[grow: grow + height, grow: grow + width]
        overlap = int(np.count_nonzero(inside & mask))
        iou = overlap / (area + int(t.sum()) - overlap)
        if iou > best:
            best, best_grow = iou, grow
    differ = np.pad(mask, best_grow) ^ template(kind, height, width, best_grow)
    patches, n = ndimage.label(differ)
    largest = int(np.bincount(patches.ravel())[1:].max()) if n else 0
    return best, largest / scale**2


def best_iou(mask: np.ndarray, kind: str, scale: float = 1.0) -> float:
    """Intersection over union of a component with the best-fitting ideal ``kind`` (see ``fit``)."""
    return fit(mask, kind, scale)[0]


def _describe(mask: np.ndarray, color: str, y0: int, x0: int, scale: float, drift: float) -> DetectedObject:
    height, width = mask.shape
    fits = {kind: fit(mask, kind, scale) for kind in scenes.SHAPES}
    ious = {kind: iou for kind, (iou, _) in fits.items()}
    shape = max(scenes.SHAPES, key=lambda k: ious[k])
    defect = fits[shape][1]
    aspect = min(height, width) / max(height, width)
    box_ok = aspect >= WELL_FORMED_ASPECT and max(height, width) <= WELL_FORMED_MAX_SIDE * scale
    well_shaped = ious[shape] >= WELL_FORMED_IOU and defect <= MAX_DEFECT_AREA and box_ok
    return DetectedObject(
        color=color,
        shape=shape,
        iou=ious,
        box=(x0 / scale, y0 / scale, (x0 + width) / scale, (y0 + height) / scale),
        area=float(mask.sum()) / scale**2,
        well_formed=well_shaped and drift <= WELL_FORMED_MAX_DRIFT,
        defect=defect,
        recognisable=ious[shape] >= RECOGNISABLE_IOU and box_ok,
        drift=drift,
        well_shaped=well_shaped,
    )


def analyse_quantised(labels: np.ndarray, distances: np.ndarray | None = None) -> Analysis:
    """Analyse one quantised image ([S, S] palette indices); ``distances`` [S, S] are its pixels'
    RGB distances to those colours (None: exact palette colours, as the renderer draws)."""
    if distances is None:
        distances = np.zeros(labels.shape)
    size = labels.shape[0]
    scale = size / scenes.WORLD_SIZE
    counts = np.bincount(labels.ravel(), minlength=len(PALETTE_NAMES))
    background = max(_BACKGROUND_INDEX, key=lambda i: counts[i])
    min_pixels = MIN_OBJECT_AREA * scale**2

    big: list[tuple[np.ndarray, tuple[slice, slice], str]] = []
    small: list[tuple[np.ndarray, tuple[slice, slice], str]] = []
    for index in np.nonzero(counts)[0]:
        if index == background:
            continue
        components, n = ndimage.label(labels == index, structure=_EIGHT_CONNECTED)
        for k, window in enumerate(ndimage.find_objects(components), start=1):
            mask = components[window] == k
            entry = (mask, window, PALETTE_NAMES[index])
            (big if mask.sum() >= min_pixels else small).append(entry)

    objects = tuple(_describe(mask, color, window[0].start, window[1].start, scale,
                              float(distances[window][mask].mean()))
                    for mask, window, color in big)
    big_pixels = np.zeros_like(labels, dtype=bool)
    for mask, window, _ in big:
        big_pixels[window] |= mask
    debris = []
    for mask, window, color in small:
        full = np.zeros_like(big_pixels)
        full[window] = mask
        touches_object = (ndimage.binary_dilation(full, _EIGHT_CONNECTED) & big_pixels).any()
        if not touches_object:  # blurred fringes of an object are not debris
            debris.append((color, float(mask.sum()) / scale**2))
    return Analysis(PALETTE_NAMES[background], objects, tuple(debris))


def analyse(images: np.ndarray) -> list[Analysis]:
    """Analyse a batch of uint8 [N, S, S, 3] images (or one [S, S, 3] image)."""
    labels, distances = nearest_palette(images)
    return [analyse_quantised(lab, dist) for lab, dist in zip(labels, distances)]
