"""Named single-hand poses: gestures, counting and grasps of the Feix taxonomy.

The one library behind the Blender add-on's preset menu, the corpus generator and the engines'
tests. Poses are written in anatomical angles (degrees; see ``anatomy``) so they mean the same on
any rig, and converted to the shared pose space (``hand_pose``: 15 world-aligned axis-angles) with
the joint frames of a rig — by default the open hand's. Poses are right-handed; the left hand gets
the mirror image (``HandPose.mirrored()``). ``global_orient``, ``betas`` and ``transl`` are zero:
a preset poses the fingers and leaves the wrist where it is.

    names()                       every pose name, in menu order (optionally of one category)
    categories()                  the categories, in menu order
    describe(name)                a one-line description (tooltips)
    get(name, side, rig)          a ``HandPose``
    anatomical(name)              (15, 3) anatomical angles in radians

Thumb postures that must touch something (pinches, OK, tripod, fist, counting 4) were found by
fitting the thumb's angles, within the joint limits, to the contact on the open hand (thumb tip to
the target), then rounded; other rigs get the same anatomical angles, so the contact is approximate
there.
Then every pose was relaxed, never tightened, until no part sinks more than 1.75 mm into a part that
is not its neighbour on the open hand (``handforge.evaluation.self_intersection``, ``max_part_depth``;
the thumb's MCP and IP flexion first, then the little finger's PIP/DIP): linear blend skinning
thickens a bent thumb, so a thumb laid over curled fingers at anatomical angles passes through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .anatomy import anatomical_from_degrees, anatomical_to_hand_pose
from .poses import HandPose
from .skeleton import NUM_BETAS, Side, check_side

if TYPE_CHECKING:  # pragma: no cover
    from .rig import HandRig

Angles = tuple[float, float, float]  # (flex, abd, twist) in degrees
Finger = tuple[Angles, Angles, Angles]  # proximal, middle, distal joint


@dataclass(frozen=True)
class PoseSpec:
    name: str
    category: str
    description: str
    joints: Mapping[str, Angles]  # joint name → (flex, abd, twist) degrees; missing = 0
    feix: int | None = None       # number in Feix et al., "The GRASP taxonomy" (2016), for grasps


# ---------------------------------------------------------------------- building blocks
def finger(mcp: float, pip: float, dip: float | None = None, abd: float = 0.0, twist: float = 0.0) -> Finger:
    """A long finger from its flexions (DIP defaults to 2/3 of PIP, the natural coupling)."""
    return ((mcp, abd, twist), (pip, 0.0, 0.0), (round(2.0 * pip / 3.0) if dip is None else dip, 0.0, 0.0))


STRAIGHT = finger(0, 0, 0)
CURLED = finger(78, 92, 50)           # into the palm, as in a fist (tighter sinks the skin into
                                      # itself under linear blend skinning)
HOOKED = finger(0, 90, 60)

# Thumb postures: (CMC, MCP, IP), each (flex, abd, twist).
T_REST: Finger = ((0, 0, 0), (0, 0, 0), (0, 0, 0))
T_ALONG: Finger = ((0, -25, 5), (5, 0, 0), (5, 0, 0))                 # pressed to the index's side
T_OVER_FIST: Finger = ((5, -10, 30), (39, -5, 5), (44, 0, 0))         # over index/middle phalanges
T_UP: Finger = ((0, -15, 15), (-5, 0, 0), (-10, 0, 0))                # extended beside a fist
T_ACROSS: Finger = ((61, -24, 43), (18, -8, 8), (24, -4, 0))          # folded to the ring base
T_PINCH: Finger = ((51, -18, 29), (13, -5, 5), (-1, -2, 0))           # tip to a half-bent index tip
T_OK: Finger = ((32, -9, 22), (23, -4, 4), (30, -2, 0))               # tip to a curled index tip
T_TRIPOD: Finger = ((57, -20, 26), (19, -4, 5), (1, -1, 0))           # to index + middle tips
T_LATERAL: Finger = ((-14, -12, 24), (50, -5, 3), (70, -2, 0))        # pad on the index's side
T_OPPOSED: Finger = ((45, -5, 35), (15, 0, 5), (10, 0, 0))            # facing the finger pads
T_WIDE: Finger = ((35, 20, 30), (10, 0, 0), (5, 0, 0))                # opposed, spread wide
T_SPHERE: Finger = ((50, -5, 40), (20, 0, 5), (15, 0, 0))              # opposed around a ball


def _pose(name: str, category: str, description: str, thumb: Finger = T_REST,
          index: Finger = STRAIGHT, middle: Finger = STRAIGHT, ring: Finger = STRAIGHT,
          pinky: Finger = STRAIGHT, feix: int | None = None) -> PoseSpec:
    joints: dict[str, Angles] = {}
    for fname, f in (("thumb", thumb), ("index", index), ("middle", middle), ("ring", ring), ("pinky", pinky)):
        for level, angles in enumerate(f, start=1):
            if any(angles):
                joints[f"{fname}{level}"] = tuple(float(a) for a in angles)  # type: ignore[assignment]
    return PoseSpec(name, category, description, joints, feix)


GESTURE, COUNTING = "gesture", "counting"
POWER, INTERMEDIATE, PRECISION = "grasp: power", "grasp: intermediate", "grasp: precision"

_SPECS: tuple[PoseSpec, ...] = (
    # ------------------------------------------------------------------ gestures
    _pose("flat", GESTURE, "flat open hand, the zero pose"),
    _pose("relaxed", GESTURE, "relaxed hand at rest, fingers gently curved, more towards the little finger",
          thumb=((10, -5, 15), (10, 0, 0), (10, 0, 0)), index=finger(15, 20, 10, abd=3),
          middle=finger(18, 28, 15), ring=finger(22, 32, 18, abd=-3), pinky=finger(26, 36, 20, abd=-6)),
    _pose("fist", GESTURE, "closed fist, thumb over the index and middle fingers",
          thumb=T_OVER_FIST, index=CURLED, middle=CURLED, ring=CURLED, pinky=CURLED),
    _pose("point", GESTURE, "index finger pointing, the others curled, thumb over the middle finger",
          thumb=T_OVER_FIST, index=STRAIGHT, middle=CURLED, ring=CURLED, pinky=CURLED),
    _pose("ok", GESTURE, "OK sign: thumb and index tips touch in a ring, the other fingers extended",
          thumb=T_OK, index=finger(40, 60, 35), middle=finger(8, 5, 0),
          ring=finger(8, 5, 0, abd=-5), pinky=finger(8, 5, 0, abd=-12)),
    _pose("thumbs_up", GESTURE, "thumbs up: fist with the thumb extended",
          thumb=T_UP, index=CURLED, middle=CURLED, ring=CURLED, pinky=CURLED),
    _pose("victory", GESTURE, "V sign: index and middle spread apart, the others curled under the thumb",
          thumb=T_ACROSS, index=finger(0, 0, 0, abd=12), middle=finger(0, 0, 0, abd=-12),
          ring=CURLED, pinky=CURLED),
    _pose("spread", GESTURE, "all five fingers spread wide",
          thumb=((-5, 30, 0), (0, 0, 0), (0, 0, 0)), index=finger(-5, 0, 0, abd=18),
          middle=finger(-5, 0, 0, abd=5), ring=finger(-5, 0, 0, abd=-12), pinky=finger(-5, 0, 0, abd=-20)),
    _pose("claw", GESTURE, "claw: fingers spread, middle and end joints bent",
          thumb=((40, 10, 25), (20, 0, 0), (40, 0, 0)), index=finger(15, 70, 60, abd=15),
          middle=finger(15, 70, 60, abd=4), ring=finger(15, 70, 60, abd=-10), pinky=finger(15, 70, 60, abd=-18)),
    _pose("pinch", GESTURE, "pinch: thumb and index tips together, the other fingers relaxed",
          thumb=T_PINCH, index=finger(35, 45, 25), middle=finger(25, 35, 20),
          ring=finger(28, 38, 22, abd=-3), pinky=finger(32, 40, 25, abd=-6)),
    _pose("rock", GESTURE, "horns: index and little finger extended, thumb over the middle and ring",
          thumb=T_OVER_FIST, index=finger(0, 0, 0, abd=8), middle=CURLED, ring=CURLED,
          pinky=finger(0, 0, 0, abd=-12)),
    _pose("call_me", GESTURE, "call me / shaka: thumb and little finger extended, the rest curled",
          thumb=((-5, 25, 10), (0, 0, 0), (0, 0, 0)), index=CURLED, middle=CURLED, ring=CURLED,
          pinky=finger(0, 0, 0, abd=-15)),
    _pose("love_you", GESTURE, "'I love you' sign: thumb, index and little finger extended",
          thumb=((-5, 25, 10), (0, 0, 0), (0, 0, 0)), index=finger(0, 0, 0, abd=8),
          middle=CURLED, ring=CURLED, pinky=finger(0, 0, 0, abd=-12)),
    _pose("finger_gun", GESTURE, "finger gun: index extended, thumb up, the rest curled",
          thumb=((-5, 20, 10), (-5, 0, 0), (0, 0, 0)), index=STRAIGHT, middle=CURLED, ring=CURLED,
          pinky=CURLED),
    _pose("blade", GESTURE, "flat hand with the fingers and thumb held together (karate chop, salute)",
          thumb=T_ALONG, index=finger(0, 0, 0, abd=-8), middle=finger(0, 0, 0, abd=-2),
          ring=finger(0, 0, 0, abd=3), pinky=finger(0, 0, 0, abd=10)),
    _pose("cupped", GESTURE, "cupped hand, as if holding water",
          thumb=((25, -15, 30), (10, 0, 0), (10, 0, 0)), index=finger(30, 20, 10, abd=-6),
          middle=finger(30, 20, 10, abd=-2), ring=finger(30, 20, 10, abd=3), pinky=finger(32, 22, 10, abd=9)),
    _pose("tabletop", GESTURE, "fingers bent 90° at the knuckles, straight otherwise",
          thumb=T_OPPOSED, index=finger(88, 0, 0), middle=finger(88, 0, 0), ring=finger(88, 0, 0),
          pinky=finger(88, 0, 0)),
    _pose("beckon", GESTURE, "come here: index hooked, the others curled",
          thumb=T_OVER_FIST, index=finger(20, 80, 50), middle=CURLED, ring=CURLED, pinky=CURLED),
    _pose("snap_ready", GESTURE, "ready to snap: middle finger pad pressed on the thumb pad",
          thumb=((45, -10, 30), (15, 0, 5), (5, 0, 0)), index=finger(35, 45, 25),
          middle=finger(40, 50, 20), ring=CURLED, pinky=CURLED),
    # ------------------------------------------------------------------ counting (American style)
    _pose("count_1", COUNTING, "one: index up, the thumb holds the others down",
          thumb=T_OVER_FIST, index=STRAIGHT, middle=CURLED, ring=CURLED, pinky=CURLED),
    _pose("count_2", COUNTING, "two: index and middle up",
          thumb=T_ACROSS, index=finger(0, 0, 0, abd=6), middle=finger(0, 0, 0, abd=-6),
          ring=CURLED, pinky=CURLED),
    _pose("count_3", COUNTING, "three: index, middle and ring up, the thumb holds the little finger",
          thumb=T_ACROSS, index=finger(0, 0, 0, abd=6), middle=STRAIGHT, ring=finger(0, 0, 0, abd=-6),
          pinky=CURLED),
    _pose("count_4", COUNTING, "four: four fingers up, the thumb folded across the palm",
          thumb=T_ACROSS, index=finger(0, 0, 0, abd=6), middle=STRAIGHT, ring=finger(0, 0, 0, abd=-5),
          pinky=finger(0, 0, 0, abd=-10)),
    _pose("count_5", COUNTING, "five: all fingers and the thumb up, spread",
          thumb=((-5, 20, 0), (0, 0, 0), (0, 0, 0)), index=finger(0, 0, 0, abd=10),
          middle=STRAIGHT, ring=finger(0, 0, 0, abd=-8), pinky=finger(0, 0, 0, abd=-15)),
    # ------------------------------------------------------------------ Feix grasps: power
    _pose("large_diameter", POWER, "large diameter: wraps a thick cylinder (bottle), thumb opposed",
          thumb=((45, -10, 35), (10, 0, 5), (10, 0, 0)), index=finger(35, 45, 30), middle=finger(38, 45, 30),
          ring=finger(40, 48, 30), pinky=finger(45, 50, 32), feix=1),
    _pose("small_diameter", POWER, "small diameter: wraps a thin cylinder (broom handle), thumb over the fingers",
          thumb=((15, -15, 35), (23, -5, 5), (26, 0, 0)), index=finger(70, 85, 50), middle=finger(72, 88, 50),
          ring=finger(75, 90, 52), pinky=finger(80, 89, 52), feix=2),
    _pose("medium_wrap", POWER, "medium wrap: wraps a mid-size cylinder, thumb adducted over it",
          thumb=((25, -18, 30), (13, -5, 5), (13, 0, 0)), index=finger(55, 65, 40), middle=finger(57, 68, 42),
          ring=finger(60, 70, 44), pinky=finger(65, 72, 45), feix=3),
    _pose("adducted_thumb", POWER, "adducted thumb: cylinder wrap with the thumb pressed alongside",
          thumb=T_ALONG, index=finger(55, 65, 40), middle=finger(57, 68, 42), ring=finger(60, 70, 44),
          pinky=finger(65, 72, 45), feix=4),
    _pose("light_tool", POWER, "light tool: small wrap with a looser index (hammer, handle)",
          thumb=((15, -15, 35), (22, -5, 5), (25, 0, 0)), index=finger(60, 70, 40), middle=finger(72, 88, 50),
          ring=finger(75, 90, 52), pinky=finger(80, 88, 52), feix=5),
    _pose("power_disk", POWER, "power disk: palm and spread fingers around a lid",
          thumb=T_WIDE, index=finger(30, 45, 30, abd=12), middle=finger(30, 45, 30, abd=2),
          ring=finger(32, 45, 30, abd=-8), pinky=finger(35, 45, 30, abd=-14), feix=10),
    _pose("power_sphere", POWER, "power sphere: palm and fingers around a ball",
          thumb=T_SPHERE, index=finger(40, 50, 35, abd=10),
          middle=finger(42, 52, 35, abd=1), ring=finger(45, 55, 35, abd=-8), pinky=finger(50, 55, 35, abd=-12),
          feix=11),
    _pose("index_extension", POWER, "index finger extension: wrap with the index along the tool (knife)",
          thumb=((15, -15, 35), (40, -5, 5), (40, 0, 0)), index=finger(25, 10, 5), middle=finger(72, 88, 50),
          ring=finger(75, 90, 52), pinky=finger(80, 89, 53), feix=17),
    _pose("fixed_hook", POWER, "hook: fingers hooked at the middle and end joints (bag handle)",
          thumb=T_ALONG, index=HOOKED, middle=HOOKED, ring=HOOKED, pinky=HOOKED, feix=15),
    _pose("extension_type", POWER, "extension type: flat object between the thumb and the extended fingers",
          thumb=((40, -5, 30), (5, 0, 0), (0, 0, 0)), index=finger(30, 5, 0), middle=finger(30, 5, 0),
          ring=finger(30, 5, 0), pinky=finger(30, 5, 0), feix=18),
    # ------------------------------------------------------------------ Feix grasps: intermediate
    _pose("lateral_pinch", INTERMEDIATE, "lateral pinch (key grip): thumb pad on the side of the bent index",
          thumb=T_LATERAL, index=finger(75, 95, 60), middle=CURLED, ring=CURLED, pinky=CURLED, feix=16),
    _pose("writing_tripod", INTERMEDIATE, "writing tripod: pen between thumb, index pad and the middle's side",
          thumb=T_TRIPOD, index=finger(40, 35, 10), middle=finger(45, 50, 30), ring=finger(60, 80, 50),
          pinky=finger(65, 85, 50), feix=20),
    _pose("ring", INTERMEDIATE, "ring: thumb and index encircle a cylinder, the others relaxed",
          thumb=((35, -5, 25), (20, 0, 5), (25, 0, 0)), index=finger(35, 50, 30), middle=finger(30, 40, 25),
          ring=finger(30, 40, 25), pinky=finger(35, 40, 25), feix=33),
    # ------------------------------------------------------------------ Feix grasps: precision
    _pose("prismatic_4_finger", PRECISION, "prismatic 4 finger: thumb pad against four finger pads",
          thumb=T_OPPOSED, index=finger(45, 20, 10), middle=finger(45, 20, 10),
          ring=finger(45, 20, 10), pinky=finger(45, 20, 10), feix=6),
    _pose("prismatic_2_finger", PRECISION, "prismatic 2 finger: thumb against index and middle pads",
          thumb=T_OPPOSED, index=finger(45, 20, 10), middle=finger(45, 20, 10), ring=CURLED, pinky=CURLED, feix=8),
    _pose("palmar_pinch", PRECISION, "palmar pinch: thumb pad to index pad, the others extended",
          thumb=T_PINCH, index=finger(35, 45, 25), middle=finger(15, 10, 5), ring=finger(15, 10, 5),
          pinky=finger(15, 10, 5), feix=9),
    _pose("tip_pinch", PRECISION, "tip pinch: thumb tip to index tip (needle), the others curled",
          thumb=T_OK, index=finger(40, 60, 35), middle=CURLED, ring=CURLED, pinky=CURLED, feix=24),
    _pose("precision_disk", PRECISION, "precision disk: fingertips spread around a lid, thumb opposite",
          thumb=T_WIDE, index=finger(35, 30, 20, abd=14), middle=finger(35, 30, 20, abd=3),
          ring=finger(35, 30, 20, abd=-10), pinky=finger(38, 30, 20, abd=-14), feix=12),
    _pose("precision_sphere", PRECISION, "precision sphere: fingertips around a ball",
          thumb=T_SPHERE, index=finger(30, 45, 30, abd=12),
          middle=finger(30, 45, 30, abd=2), ring=finger(32, 45, 30, abd=-8), pinky=finger(35, 45, 30, abd=-14),
          feix=13),
    _pose("tripod", PRECISION, "tripod: thumb, index and middle tips together",
          thumb=T_TRIPOD, index=finger(45, 40, 20), middle=finger(50, 45, 25, abd=-5),
          ring=finger(60, 80, 50, abd=-5), pinky=finger(65, 85, 50, abd=-5), feix=14),
    _pose("quadpod", PRECISION, "quadpod: thumb, index, middle and ring tips around a small object",
          thumb=T_TRIPOD, index=finger(45, 40, 20, abd=3), middle=finger(50, 45, 25, abd=-3),
          ring=finger(55, 50, 30, abd=-8), pinky=finger(65, 85, 50, abd=-10), feix=19),
    _pose("parallel_extension", PRECISION, "parallel extension: straight fingers and thumb hold a card",
          thumb=((40, -10, 30), (0, 0, 0), (0, 0, 0)), index=finger(50, 0, 0), middle=finger(50, 0, 0),
          ring=finger(50, 0, 0), pinky=finger(50, 0, 0), feix=22),
)

_BY_NAME: dict[str, PoseSpec] = {s.name: s for s in _SPECS}
if len(_BY_NAME) != len(_SPECS):  # pragma: no cover - a typo in the table above
    raise RuntimeError("duplicate pose names in the pose library")


# ---------------------------------------------------------------------- API
def categories() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for s in _SPECS:
        seen.setdefault(s.category, None)
    return tuple(seen)


def names(category: str | None = None) -> tuple[str, ...]:
    if category is not None and category not in categories():
        raise KeyError(f"unknown pose category {category!r}: use one of {', '.join(categories())}")
    return tuple(s.name for s in _SPECS if category is None or s.category == category)


def spec(name: str) -> PoseSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown pose {name!r}; the library has: {', '.join(_BY_NAME)}") from None


def describe(name: str) -> str:
    return spec(name).description


def anatomical(name: str) -> np.ndarray:
    """(15, 3) anatomical angles (flex, abd, twist) in radians, right-hand convention."""
    return anatomical_from_degrees(spec(name).joints)


@lru_cache(maxsize=1)
def _open_hand_frames() -> np.ndarray:
    from .rig import load_open_hand_rig

    frames = load_open_hand_rig("right").joint_frames()
    frames.setflags(write=False)
    return frames


def right_frames(rig: "HandRig | None" = None) -> np.ndarray:
    """(16, 3, 3) joint frames of the right hand of ``rig`` (default: the open hand)."""
    if rig is None:
        return _open_hand_frames()
    return (rig if rig.side == "right" else rig.mirrored()).joint_frames()


def get(name: str, side: Side = "right", rig: "HandRig | None" = None) -> HandPose:
    """The pose ``name`` as a ``HandPose`` for ``side`` on ``rig``'s joint frames (any side of the
    rig is accepted: its right-hand version defines the frames, the left pose is the mirror)."""
    check_side(side)
    hand_pose = anatomical_to_hand_pose(anatomical(name), right_frames(rig), "right")
    pose = HandPose(global_orient=np.zeros(3), hand_pose=hand_pose, betas=np.zeros(NUM_BETAS),
                    transl=np.zeros(3))
    return pose if side == "right" else pose.mirrored()

