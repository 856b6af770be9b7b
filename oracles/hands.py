"""Paper tier, hand anomaly correction: is there exactly one anatomically plausible hand?

The judge is mediapipe 0.10.21's legacy hand solution (``mediapipe.solutions.hands.Hands`` with
``static_image_mode=True``), whose palm-detection and hand-landmark models ship inside the wheel,
so it runs offline and needs nothing configured. For every image it returns up to
``max_num_hands`` hands, each with a handedness score (used here as the detection confidence),
21 image landmarks and 21 metric "world" landmarks (3-D, metres, centred on the hand).

Success predicate (our own; the paper's human criterion "an anatomically normal hand" is not
published as a rule), evaluated on the world landmarks of the most confident hand:

1. ``one_hand``: exactly one hand is detected.
2. ``confidence``: its handedness score is at least ``min_confidence``.
3. ``bone_ratios``: each of the 20 bones (wrist->finger base, then the three finger segments of
   each of the five fingers) has a length, relative to the palm length (wrist -> middle-finger
   MCP), within ``[min_bone_factor, max_bone_factor]`` times the anthropometric reference
   ratio in ``REFERENCE_BONE_RATIOS``. The range is wide on purpose: mediapipe's landmarks are
   joint-centre estimates, so the check catches gross distortion (a bone collapsed to a point,
   a finger three times too long), not subtle proportions.
4. ``joint_angles``: at each of the 15 finger joints (MCP, PIP, DIP; the thumb's MCP, IP and its
   CMC-MCP bend) the angle between consecutive bones is at most ``max_joint_angle_deg``; a
   clenched fist bends about 90-110 degrees, more means a finger folded back on itself.
5. ``finger_order``: along the index -> little-finger knuckle axis the knuckles come in anatomical
   order (index, middle, ring, little) and the thumb's base lies on the index side of the middle
   knuckle. Independent of handedness and viewpoint.
6. ``no_crossing``: projected onto the palm plane, the chains MCP->PIP->DIP->tip of two different
   non-thumb fingers never cross (the thumb is exempt: it folds over the palm in a normal fist;
   deliberately crossed fingers fail, a rare pose accepted as a false negative).

``success`` = all six hold. Each geometric check also has a soft value in [0, 1] (fraction of
bones / joints / order relations / finger pairs that pass); ``normalcy`` is their mean. The
continuous score lies in [0, 1] and puts every success above every failure, as the oracle
contract requires: a success scores ``0.5 + 0.5 * confidence``; a failure scores
``0.5 * confidence * normalcy / n_hands`` (0 with no hand), which stays below 0.5.

Why not "monotone joint chains": a clenched fist is a normal hand whose fingertips curl back
towards the palm, so the chain check is a bend limit per joint instead. Limits: mediapipe always
returns five fingers, so an extra or missing finger is seen only through failed detection, low
confidence or distorted geometry; the predicate says nothing about skin, nails or texture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hero_bench.errors import ModelNotFoundError
from hero_bench.tasks import Prompt, Task, register_task
from oracles.base import OracleResult
from oracles.paper_prompts import HAND_PROMPT, TRAIN_PROMPT_EVAL_NOTE, settings_from, validate_batch

ORACLE_NAME = "hands"
ORACLE_VERSION = "1"

# Landmark indices of mediapipe's hand model: 0 wrist, then four per finger from the base.
WRIST = 0
FINGERS: tuple[tuple[int, int, int, int], ...] = (
    (1, 2, 3, 4),  # thumb: CMC, MCP, IP, tip
    (5, 6, 7, 8),  # index: MCP, PIP, DIP, tip
    (9, 10, 11, 12),  # middle
    (13, 14, 15, 16),  # ring
    (17, 18, 19, 20),  # little
)
FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")

REFERENCE_BONE_RATIOS: tuple[tuple[float, float, float, float], ...] = (
    (0.40, 0.45, 0.35, 0.28),  # thumb: wrist->CMC, metacarpal, proximal, distal
    (0.95, 0.45, 0.27, 0.22),  # index: wrist->MCP, proximal, middle, distal phalanx
    (1.00, 0.50, 0.31, 0.23),  # middle (wrist->MCP is the unit)
    (0.93, 0.47, 0.30, 0.23),  # ring
    (0.87, 0.37, 0.22, 0.20),  # little
)
"""Bone length / palm length (wrist -> middle MCP) of an adult hand, from average metacarpal and
phalanx lengths (about 88 mm wrist crease to middle knuckle; phalanges 18-50 mm)."""


@dataclass(frozen=True)
class HandsSettings:
    """Settings of the mediapipe hand-normalcy oracle."""

    max_num_hands: int = 2
    """Hands mediapipe may return per image; at least 2 so that two hands can be told from one."""
    model_complexity: int = 1
    """Mediapipe landmark model: 0 = lite, 1 = full (both bundled with mediapipe 0.10.21)."""
    min_detection_confidence: float = 0.5
    """Palm-detector threshold inside mediapipe; weaker detections count as no hand."""
    min_confidence: float = 0.5
    """A detected hand counts as confident (check 2) when its handedness score reaches this."""
    min_bone_factor: float = 0.4
    """Lowest accepted bone ratio, as a multiple of the reference ratio (check 3)."""
    max_bone_factor: float = 2.5
    """Highest accepted bone ratio, as a multiple of the reference ratio (check 3)."""
    max_joint_angle_deg: float = 120.0
    """Largest accepted bend between consecutive bones of a finger, in degrees (check 4)."""
    include_landmarks: bool = False
    """Copy the chosen hand's 21 image landmarks (x, y in [0, 1], relative z) into ``details``."""

    def __post_init__(self) -> None:
        if self.max_num_hands < 2:
            raise ValueError(f"max_num_hands must be >= 2 to tell one hand from several, got {self.max_num_hands}")
        if self.model_complexity not in (0, 1):
            raise ValueError(f"model_complexity must be 0 or 1, got {self.model_complexity}")
        if not 0.0 < self.min_bone_factor < 1.0 < self.max_bone_factor:
            raise ValueError(
                f"need 0 < min_bone_factor < 1 < max_bone_factor, got {self.min_bone_factor}, {self.max_bone_factor}"
            )
        if not 0.0 < self.max_joint_angle_deg <= 180.0:
            raise ValueError(f"max_joint_angle_deg must lie in (0, 180], got {self.max_joint_angle_deg}")


# -- geometry (pure numpy, testable without mediapipe) ----------------------------------------
def _chain(finger: int) -> list[int]:
    return [WRIST, *FINGERS[finger]]


def bone_ratios(world: np.ndarray) -> np.ndarray:
    """[5, 4] bone lengths divided by the palm length (wrist -> middle MCP)."""
    palm = float(np.linalg.norm(world[9] - world[WRIST]))
    out = np.zeros((5, 4))
    for f in range(5):
        idx = _chain(f)
        for b in range(4):
            out[f, b] = np.linalg.norm(world[idx[b + 1]] - world[idx[b]])
    return out / max(palm, 1e-12)


def joint_angles_deg(world: np.ndarray) -> np.ndarray:
    """[5, 3] bend (degrees) between consecutive bones of each finger chain; 0 = straight."""
    out = np.zeros((5, 3))
    for f in range(5):
        pts = world[_chain(f)]
        bones = np.diff(pts, axis=0)
        for j in range(3):
            a, b = bones[j], bones[j + 1]
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            cos = 1.0 if denom < 1e-12 else float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))
            out[f, j] = np.degrees(np.arccos(cos))
    return out


def _palm_frame(world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal in-plane axes of the palm plane (through wrist, index MCP, little MCP)."""
    u = world[17] - world[5]
    u = u / max(np.linalg.norm(u), 1e-12)
    normal = np.cross(world[5] - world[WRIST], world[17] - world[WRIST])
    normal = normal / max(np.linalg.norm(normal), 1e-12)
    v = np.cross(normal, u)
    return u, v


def finger_order_relations(world: np.ndarray) -> np.ndarray:
    """Four booleans: index < middle < ring < little knuckles along the index->little axis, and
    the thumb's MCP on the index side of the middle knuckle."""
    u = world[17] - world[5]
    u = u / max(np.linalg.norm(u), 1e-12)
    t = {i: float(np.dot(world[i] - world[5], u)) for i in (2, 5, 9, 13, 17)}
    return np.array([t[5] < t[9], t[9] < t[13], t[13] < t[17], t[2] < t[9]])


def _segments_cross(p1, p2, q1, q2) -> bool:
    """Proper intersection of 2-D segments p1p2 and q1q2 (touching endpoints do not count)."""

    def orient(a, b, c) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 < 0 and d3 * d4 < 0


def crossing_finger_pairs(world: np.ndarray) -> list[tuple[str, str]]:
    """Pairs of non-thumb fingers whose chains cross when projected onto the palm plane."""
    u, v = _palm_frame(world)
    flat = np.stack([(world - world[WRIST]) @ u, (world - world[WRIST]) @ v], axis=1)
    pairs = []
    for a in range(1, 5):
        for b in range(a + 1, 5):
            ca, cb = FINGERS[a], FINGERS[b]
            hit = any(
                _segments_cross(flat[ca[i]], flat[ca[i + 1]], flat[cb[j]], flat[cb[j + 1]])
                for i in range(3)
                for j in range(3)
            )
            if hit:
                pairs.append((FINGER_NAMES[a], FINGER_NAMES[b]))
    return pairs


def assess_hand(world: np.ndarray, settings: HandsSettings = HandsSettings()) -> dict[str, Any]:
    """The geometric checks 3-6 on one hand's ``[21, 3]`` world landmarks.

    Returns ``{"checks": {name: bool}, "soft": {name: float in [0, 1]}, "normalcy": float, ...}``
    with the offending bones, joints and finger pairs named.
    """
    world = np.asarray(world, dtype=np.float64)
    if world.shape != (21, 3) or not np.all(np.isfinite(world)):
        raise ValueError(f"expected 21 finite 3-D landmarks, got an array of shape {world.shape}")
    ratios = bone_ratios(world)
    ref = np.asarray(REFERENCE_BONE_RATIOS)
    ok_bones = (ratios >= settings.min_bone_factor * ref) & (ratios <= settings.max_bone_factor * ref)
    angles = joint_angles_deg(world)
    ok_angles = angles <= settings.max_joint_angle_deg
    order = finger_order_relations(world)
    crossing = crossing_finger_pairs(world)
    soft = {
        "bone_ratios": float(ok_bones.mean()),
        "joint_angles": float(ok_angles.mean()),
        "finger_order": float(order.mean()),
        "no_crossing": 1.0 - len(crossing) / 6.0,
    }
    checks = {name: value == 1.0 for name, value in soft.items()}
    return {
        "checks": checks,
        "soft": soft,
        "normalcy": float(np.mean(list(soft.values()))),
        "bad_bones": [f"{FINGER_NAMES[f]}[{b}]" for f, b in zip(*np.nonzero(~ok_bones))],
        "bad_joints": [f"{FINGER_NAMES[f]}[{j}]" for f, j in zip(*np.nonzero(~ok_angles))],
        "crossing_fingers": crossing,
        "max_joint_angle": float(angles.max()),
    }


def judge_detections(
    hands: Sequence[tuple[float, str, np.ndarray]], settings: HandsSettings
) -> tuple[bool, float, dict[str, Any]]:
    """Success, score and details from ``(confidence, handedness label, world [21, 3])`` per hand."""
    n = len(hands)
    if n == 0:
        return False, 0.0, {"n_hands": 0, "reason": "no hand detected"}
    best = max(range(n), key=lambda i: hands[i][0])
    confidence, label, world = hands[best]
    geometry = assess_hand(world, settings)
    checks = {"one_hand": n == 1, "confidence": confidence >= settings.min_confidence, **geometry["checks"]}
    success = all(checks.values())
    if success:
        score = 0.5 + 0.5 * float(confidence)
    else:  # < 0.5: reaching 0.5 would need n == 1, confidence 1 and normalcy 1, i.e. a success
        score = 0.5 * float(confidence) * geometry["normalcy"] / n
    details = {
        "n_hands": n,
        "confidence": float(confidence),
        "handedness": label,
        "checks": checks,
        "soft": geometry["soft"],
        "normalcy": geometry["normalcy"],
        "bad_bones": geometry["bad_bones"],
        "bad_joints": geometry["bad_joints"],
        "crossing_fingers": [list(p) for p in geometry["crossing_fingers"]],
        "max_joint_angle": geometry["max_joint_angle"],
    }
    if not success:
        details["reason"] = "failed: " + ", ".join(k for k, v in checks.items() if not v)
    return success, score, details


# -- the oracle --------------------------------------------------------------------------------
class HandsOracle:
    """Hand-normalcy judge over mediapipe's bundled hand models; build it with ``make_hands_oracle``."""

    name = ORACLE_NAME

    def __init__(self, settings: HandsSettings) -> None:
        # deferred: mediapipe (the oracle modules import without it)
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - mediapipe is a pinned dependency
            raise ModelNotFoundError(
                f"the hands oracle needs mediapipe==0.10.21 (bundled hand models); import failed: {exc}"
            ) from None
        if not hasattr(mp, "solutions") or not hasattr(mp.solutions, "hands"):  # pragma: no cover
            raise ModelNotFoundError(
                f"mediapipe {getattr(mp, '__version__', '?')} has no mediapipe.solutions.hands; "
                "install mediapipe==0.10.21, the last release that ships the hand models"
            )
        self.settings = settings
        self.version = f"{ORACLE_VERSION}+mediapipe{getattr(mp, '__version__', '?')}-c{settings.model_complexity}"
        try:
            self._hands = mp.solutions.hands.Hands(
                static_image_mode=True,
                max_num_hands=settings.max_num_hands,
                model_complexity=settings.model_complexity,
                min_detection_confidence=settings.min_detection_confidence,
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a mediapipe build without the bundled .tflite files
            raise ModelNotFoundError(
                f"mediapipe {getattr(mp, '__version__', '?')} could not load its bundled hand models "
                f"({type(exc).__name__}: {exc}); install mediapipe==0.10.21, which ships "
                "hand_landmark_*.tflite and palm_detection_*.tflite"
            ) from None

    def detect(self, image: np.ndarray) -> list[tuple[float, str, np.ndarray, np.ndarray]]:
        """``(confidence, handedness, world [21, 3], image landmarks [21, 3])`` per detected hand."""
        result = self._hands.process(np.ascontiguousarray(image))
        if not result.multi_hand_landmarks:
            return []
        out = []
        for lms, world, handed in zip(
            result.multi_hand_landmarks, result.multi_hand_world_landmarks, result.multi_handedness
        ):
            cls = handed.classification[0]
            out.append(
                (
                    float(cls.score),
                    str(cls.label),
                    np.array([[p.x, p.y, p.z] for p in world.landmark], dtype=np.float64),
                    np.array([[p.x, p.y, p.z] for p in lms.landmark], dtype=np.float64),
                )
            )
        return out

    def __call__(self, images: np.ndarray, prompts: Sequence[str], metadata: Sequence[Mapping] | None = None):
        validate_batch(images, prompts, metadata, self.name)
        results = []
        for image in images:
            hands = self.detect(image)
            success, score, details = judge_detections([(c, l, w) for c, l, w, _ in hands], self.settings)
            if self.settings.include_landmarks and hands:
                best = max(range(len(hands)), key=lambda i: hands[i][0])
                details["landmarks"] = np.round(hands[best][3], 5).tolist()
            results.append(OracleResult(success=bool(success), score=score, details=details))
        return results

    def close(self) -> None:
        """Release mediapipe's graph (also done when the oracle is garbage-collected)."""
        hands, self._hands = getattr(self, "_hands", None), None
        if hands is not None:
            hands.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def make_hands_oracle(settings: HandsSettings | Mapping[str, Any] | None = None, **overrides: Any) -> HandsOracle:
    """Factory of the ``hand`` task: load mediapipe's hand models once and return the oracle.

    Settings: defaults, then the ``hands`` section of ``$HERO_BENCH_ORACLE_SETTINGS``, then
    ``settings`` (a mapping of ``HandsSettings`` fields, strictly checked, or a complete
    ``HandsSettings``), then keyword overrides.
    """
    return HandsOracle(settings_from(HandsSettings, settings, overrides, section=ORACLE_NAME))


def _register() -> None:
    prompt = Prompt(text=HAND_PROMPT, metadata={"task": "hand"})
    register_task(
        Task(
            name="hand",
            tier="paper",
            category="anomaly",
            description=(
                "Body-part anomaly correction: '1 hand' must show exactly one hand whose mediapipe "
                "keypoints are anatomically plausible (bone ratios, joint bends, finger order, no "
                "crossing fingers). Paper budgets: HERO 1,152 vs D3PO 5,000 feedback."
            ),
            train_prompts=(prompt,),
            eval_prompts=(prompt,),
            oracle_factory=make_hands_oracle,
            oracle_name=ORACLE_NAME,
            eval_note=TRAIN_PROMPT_EVAL_NOTE + " (the paper's Hand Normalcy Rate is measured on '1 hand')",
        )
    )


_register()

__all__ = [
    "HandsOracle",
    "HandsSettings",
    "REFERENCE_BONE_RATIOS",
    "assess_hand",
    "judge_detections",
    "make_hands_oracle",
]
