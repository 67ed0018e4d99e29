"""Two-hand interaction templates: how the hands are shaped and placed, and which regions touch.

A template is a recipe: ``arrange(rng)`` draws one *instance* — finger angles of both hands
(anatomical, radians; see ``handforge_shared.anatomy``) varied around the template's poses, and
a rough placement of each palm in the scene frame (``placement``). The placement only needs to
be roughly right: the penetration resolver (``resolver``) then moves the right hand and adjusts
the fingers of both until the intended ``contacts`` (pairs of ``regions``: left region, right
region; "a+b" names the union of two regions) touch and the hands do not inter-penetrate.

``grip`` names the hands whose fingers close around the other hand (clasping, holding): the
resolver closes them gradually, and motions close them after the hands meet; the other hands are
shaped first and then approach (touching, clapping). ``approach`` is the direction (scene frame) along which the right hand
leaves the left one; None = from the left palm centre towards the right one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from handforge.corpus.placement import BACK, FORWARD, RIGHT, UP, PalmFrame, rotate, unit
from handforge_shared import pose_library
from handforge_shared.anatomy import anatomical_from_degrees, clamp_to_limits
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS

DOWN, LEFT = -UP, -RIGHT


@dataclass(frozen=True)
class Arrangement:
    """One drawn instance of a template, before penetration resolution."""

    angles: Mapping[str, np.ndarray]     # side → (15, 3) anatomical angles, radians
    palms: Mapping[str, PalmFrame]       # side → target palm frame, scene frame


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    contacts: tuple[tuple[str, str], ...]   # (left region, right region) pairs that must touch
    arrange: Callable[[np.random.Generator], Arrangement]
    grip: tuple[str, ...] = ()   # the sides whose fingers close around the other hand
    approach: tuple[float, float, float] | None = None


# ---------------------------------------------------------------------- variation helpers
def pose(name: str) -> np.ndarray:
    return pose_library.anatomical(name)


def vary(angles: np.ndarray, rng: np.random.Generator, sigma_deg: float = 4.0) -> np.ndarray:
    """Natural variation: per-joint noise, correlated along each finger, kept within limits."""
    noise = rng.normal(0.0, np.radians(sigma_deg), size=angles.shape)
    noise[:, 1:] *= 0.4  # abduction and twist vary less than flexion
    finger_shift = rng.normal(0.0, np.radians(sigma_deg), size=len(FINGERS))
    for i, finger in enumerate(FINGERS):
        for j in FINGER_JOINTS[finger]:
            noise[j - 1, 0] += finger_shift[i]
    return clamp_to_limits(angles + noise)


def fingers(mcp: float, pip: float, dip: float | None = None, spread: float = 0.0,
            thumb: tuple = ((0, 0, 0), (0, 0, 0), (0, 0, 0))) -> np.ndarray:
    """All four long fingers bent alike (degrees), spread apart by ``spread`` degrees, and a thumb."""
    table = {}
    dip = 2.0 * pip / 3.0 if dip is None else dip
    for finger, s in zip(("index", "middle", "ring", "pinky"), (1.0, 0.3, -0.5, -1.0)):
        table[f"{finger}1"] = (mcp, s * spread, 0.0)
        table[f"{finger}2"] = (pip, 0.0, 0.0)
        table[f"{finger}3"] = (dip, 0.0, 0.0)
    for level, angles in enumerate(thumb, start=1):
        table[f"thumb{level}"] = angles
    return clamp_to_limits(anatomical_from_degrees(table))


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (1.0 - t) * a + t * b


def palm(centre, forward, normal) -> PalmFrame:
    return PalmFrame(np.asarray(centre, dtype=np.float64), unit(forward), unit(normal))


def both(left: np.ndarray, right: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> dict:
    return {"left": vary(left, rng, sigma), "right": vary(right, rng, sigma)}


# ---------------------------------------------------------------------- the templates
def _prayer(rng):
    flat = blend(pose("blade"), pose("relaxed"), rng.uniform(0.0, 0.3))
    return Arrangement(both(flat, flat, rng, 3.0),
                       {"left": palm((-0.02, 0, 0), UP, RIGHT), "right": palm((0.02, 0, 0), UP, LEFT)})


def _clap(rng):
    shape = blend(pose("flat"), pose("cupped"), rng.uniform(0.0, 0.6))
    cross = rng.uniform(15.0, 55.0)
    return Arrangement(both(shape, shape, rng),
                       {"left": palm((-0.025, 0, 0), rotate(UP, RIGHT, 10.0), RIGHT),
                        "right": palm((0.025, -0.01, 0), rotate(UP, RIGHT, -cross), LEFT)})


def _back_to_back(rng):
    shape = blend(pose("flat"), pose("relaxed"), rng.uniform(0.0, 0.5))
    return Arrangement(both(shape, shape, rng),
                       {"left": palm((-0.022, 0, 0), DOWN, RIGHT * -1), "right": palm((0.022, 0, 0), DOWN, RIGHT)})


def _steeple(rng):
    lean = rng.uniform(10.0, 25.0)
    shape = fingers(rng.uniform(5, 20), rng.uniform(5, 20), spread=rng.uniform(0, 8), thumb=((10, 5, 10), (5, 0, 0), (5, 0, 0)))
    return Arrangement(both(shape, shape, rng, 3.0),
                       {"left": palm((-0.055, 0, 0), rotate(UP, BACK, -lean), rotate(RIGHT, BACK, -lean)),
                        "right": palm((0.055, 0, 0), rotate(UP, BACK, lean), rotate(LEFT, BACK, lean))})


def _interlocked(rng):
    # Palms facing, the right hand shifted half a finger towards the thumbs so that the proximal
    # phalanges alternate (right index outermost), fingers bent over the other hand's back.
    shape = fingers(rng.uniform(35, 45), rng.uniform(55, 75), spread=rng.uniform(16, 22),
                    thumb=((20, -5, 15), (15, 0, 0), (10, 0, 0)))
    return Arrangement(both(shape, shape, rng, 2.0),
                       {"left": palm((-0.02, 0, -0.0065), UP, RIGHT), "right": palm((0.02, 0, 0.0065), UP, LEFT)})


def _hold_fingers(rng):
    # The left hand palm down; the right hand, palm up underneath, wraps the left's fingers around
    # their little-finger edge like a handle.
    left = blend(pose("blade"), pose("relaxed"), rng.uniform(0.0, 0.4))
    right = fingers(rng.uniform(45, 60), rng.uniform(60, 80), thumb=((30, -10, 20), (10, 0, 0), (10, 0, 0)))
    return Arrangement(both(left, right, rng),
                       {"left": palm((0, 0, 0), FORWARD, DOWN), "right": palm((0.0, -0.028, -0.07), LEFT, UP)})


def _wrist_hold(rng):
    left = vary(pose(rng.choice(["relaxed", "fist", "flat"])), rng)
    right = fingers(rng.uniform(20, 35), rng.uniform(40, 60), thumb=((30, -10, 20), (15, 0, 0), (15, 0, 0)))
    return Arrangement({"left": left, "right": vary(right, rng)},
                       {"left": palm((0, 0, 0), FORWARD, DOWN), "right": palm((0.03, 0.03, 0.06), LEFT, DOWN)})


def _palm_on_back(rng):
    yaw = rng.uniform(-30.0, 30.0)
    left = blend(pose("flat"), pose("relaxed"), rng.uniform(0.0, 0.6))
    right = blend(pose("flat"), pose("relaxed"), rng.uniform(0.2, 0.8))
    return Arrangement(both(left, right, rng),
                       {"left": palm((0, 0, 0), FORWARD, DOWN),
                        "right": palm((0.0, 0.035, 0.01), rotate(FORWARD, UP, yaw), DOWN)})


def _fist_cupped(rng):
    left = fingers(rng.uniform(20, 40), rng.uniform(20, 40), thumb=((10, -20, 10), (5, 0, 0), (5, 0, 0)))
    return Arrangement({"left": vary(left, rng), "right": vary(pose("fist"), rng, 3.0)},
                       {"left": palm((-0.03, 0.0, 0), UP, RIGHT), "right": palm((0.045, 0.0, 0), LEFT, DOWN)})


def _count_on_fingers(finger: str):
    def arrange(rng):
        left = vary(pose("count_5"), rng, 3.0)
        right = vary(pose(rng.choice(["point", "count_1"])), rng, 3.0)
        height = {"thumb": -0.02, "index": 0.07, "middle": 0.08, "ring": 0.07, "pinky": 0.05}[finger]
        across = {"thumb": -0.06, "index": -0.03, "middle": -0.005, "ring": 0.015, "pinky": 0.035}[finger]
        return Arrangement({"left": left, "right": right},
                           {"left": palm((0, 0, 0), UP, BACK),
                            "right": palm((across + 0.01, height - 0.03, 0.1), FORWARD, DOWN)})
    return arrange


def _cupped_bowl(rng):
    shape = blend(pose("cupped"), pose("relaxed"), rng.uniform(0.0, 0.4))
    return Arrangement(both(shape, shape, rng),
                       {"left": palm((-0.045, 0, 0), FORWARD, UP), "right": palm((0.045, 0, 0), FORWARD, UP)})


def _index_tips(rng):
    return Arrangement(both(pose("point"), pose("point"), rng, 3.0),
                       {"left": palm((-0.115, 0, 0), RIGHT, DOWN), "right": palm((0.115, 0, 0), LEFT, DOWN)})


def _frame(rng):
    shape = fingers(0, 0, thumb=((-5, 30, 10), (0, 0, 0), (0, 0, 0)))
    for finger in ("middle", "ring", "pinky"):
        for j in FINGER_JOINTS[finger]:
            shape[j - 1] = pose("fist")[j - 1]
    return Arrangement(both(shape, shape, rng, 3.0),
                       {"left": palm((-0.05, -0.04, 0), UP, FORWARD), "right": palm((0.05, 0.04, 0), DOWN, BACK)})


def _heart(rng):
    shape = fingers(rng.uniform(30, 45), rng.uniform(80, 100), thumb=((10, 10, 10), (0, 0, 0), (0, 0, 0)))
    return Arrangement(both(shape, shape, rng, 3.0),
                       {"left": palm((-0.05, 0, 0), UP + 0.5 * RIGHT, FORWARD),
                        "right": palm((0.05, 0, 0), UP - 0.5 * RIGHT, FORWARD)})


def _fist_bump(rng):
    return Arrangement(both(pose("fist"), pose("fist"), rng, 3.0),
                       {"left": palm((-0.065, 0, 0), RIGHT, DOWN), "right": palm((0.065, 0, 0), LEFT, DOWN)})


def _index_on_palm(rng):
    left = blend(pose("flat"), pose("cupped"), rng.uniform(0.0, 0.5))
    return Arrangement({"left": vary(left, rng), "right": vary(pose("point"), rng, 3.0)},
                       {"left": palm((0, 0, 0), FORWARD, UP),
                        "right": palm((rng.uniform(-0.02, 0.04), 0.075, 0.08), rotate(FORWARD, RIGHT, -45.0), DOWN)})


_PROXIMALS = "+".join(f"{f}_proximal" for f in ("index", "middle", "ring", "pinky"))
_DISTALS = "+".join(f"{f}_{part}" for f in ("index", "middle", "ring", "pinky") for part in ("middle", "distal"))

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("prayer", "palms pressed together, fingers up", (("palm", "palm"), ("middle_pad", "middle_pad")),
             _prayer),
    Template("clap", "palms meeting at an angle, as in a clap", (("palm", "palm"),), _clap),
    Template("back_to_back", "backs of the hands pressed together, fingers down", (("back", "back"),),
             _back_to_back),
    Template("steeple", "fingertips touching, palms apart (steepled fingers)",
             tuple((f"{f}_tip", f"{f}_tip") for f in FINGERS), _steeple),
    Template("interlocked", "fingers interlaced, palms facing",
             ((_PROXIMALS, _PROXIMALS), (_DISTALS, "back"), ("back", _DISTALS)), _interlocked,
             grip=("left", "right")),
    Template("hold_fingers", "the right hand holds the left hand's fingers",
             (("middle_middle", "palm"),
              ("ring_proximal+ring_middle+pinky_proximal+pinky_middle", "middle_middle+middle_distal")),
             _hold_fingers, grip=("right",), approach=(0.0, -1.0, 0.0)),  # from below
    Template("wrist_hold", "the right hand holds the left wrist from above",
             (("back", "palm"), ("wrist", "middle_middle")), _wrist_hold, grip=("right",), approach=(0.0, 1.0, 0.0)),
    Template("palm_on_back", "the right palm rests on the back of the left hand", (("back", "palm"),),
             _palm_on_back, approach=(0.0, 1.0, 0.0)),
    Template("fist_cupped", "the left hand cups the right fist", (("palm", "middle_middle"),), _fist_cupped,
             grip=("left",)),
    *(Template(f"count_on_{f}", f"the right index touches the left {f}'s fingertip, as in counting",
               ((f"{f}_pad", "index_tip"),), _count_on_fingers(f), approach=(0.0, 0.0, 1.0))
      for f in FINGERS),
    Template("cupped_bowl", "both hands cupped side by side, little-finger edges touching",
             (("ulnar_edge", "ulnar_edge"),), _cupped_bowl),
    Template("index_tips", "index fingertips touching, pointing at each other", (("index_tip", "index_tip"),),
             _index_tips),
    Template("frame", "a picture frame: each thumb tip touches the other hand's index tip",
             (("thumb_tip", "index_tip"), ("index_tip", "thumb_tip")), _frame),
    Template("heart", "a heart shape: index tips touch above, thumb tips below",
             (("index_nail", "index_nail"), ("thumb_tip", "thumb_tip")), _heart),
    Template("fist_bump", "two fists touching knuckle to knuckle",
             (("middle_proximal", "middle_proximal"), ("index_proximal", "index_proximal")), _fist_bump),
    Template("index_on_palm", "the right index fingertip touches the left palm", (("palm", "index_tip"),),
             _index_on_palm, approach=(0.0, 1.0, 0.0)),
)}


def template_names() -> tuple[str, ...]:
    return tuple(TEMPLATES)


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown interaction template {name!r}; known: {', '.join(TEMPLATES)}") from None


__all__ = ["Arrangement", "Template", "TEMPLATES", "draw", "template_names", "get_template"]


def draw(template: Template, rng: np.random.Generator, jitter_deg: float = 5.0, jitter_m: float = 0.005) -> Arrangement:
    """One instance of ``template``: its own variation plus a random nudge of the right hand's
    placement (rotation about its palm centre, shift), which the resolver then settles."""
    arrangement = template.arrange(rng)
    right = arrangement.palms["right"]
    axis = unit(rng.normal(size=3))
    angle = rng.normal(0.0, jitter_deg)
    nudged = PalmFrame(right.centre + rng.normal(0.0, jitter_m, size=3),
                       rotate(right.forward, axis, angle), rotate(right.normal, axis, angle))
    return Arrangement(arrangement.angles, {"left": arrangement.palms["left"], "right": nudged})
