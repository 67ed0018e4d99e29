"""Hand anatomy: joint limits and the one conversion between anatomical angles and pose parameters.

numpy only (the Blender add-on uses it for Limit Rotation constraints and finger sliders); every
function that takes angles or axis-angles also accepts torch tensors (through ``rotations``) and
stays differentiable, so engines can use the violation amounts as a loss.

Anatomical angles
-----------------
Each of the 15 finger joints (MANO order 1..15, ``skeleton.JOINT_NAMES[1:]``) has three angles,
in radians, relative to the rig's rest (flat) pose, in the joint's anatomical frame F
(``rig.anatomical_frames`` / ``HandRig.joint_frames()``; columns = flexion axis, bone direction,
abduction axis):

    flex   rotation about the flexion axis; positive curls the bone towards the palm
    abd    rotation about the abduction axis; positive moves the bone towards the thumb side
           (radial) on both hands. For the thumb: positive moves it away from the index finger
           within the palm plane (radial abduction).
    twist  rotation about the bone's own axis; positive turns the palmar side of the bone towards
           the little-finger side on both hands (for the thumb: turns its pulp towards the
           fingers, i.e. pronation, as in opposition)

Decomposition: R_anat = Rx(flex) · Rz(e_abd) · Ry(e_twist) in the frame's axes (x = flexion axis,
y = bone, z = abduction axis), and the world-aligned joint rotation is R = F · R_anat · Fᵀ. This is
the joint coordinate system the ISB recommends for finger joints (flexion about the proximal
segment, abduction about the floating axis, axial rotation about the distal segment), and it is
exactly Blender's Euler rotation mode **'YZX'** in bone-local space (Blender composes 'YZX' as
Rx · Rz · Ry; bone Y = bone direction, local X = flexion axis, local Z = X × Y). Its gimbal lock is
at |abd| = 90°, far outside every joint's range, whereas flexion (up to 110°) never degenerates.
The Blender Euler angles are (x, y, z) = (flex, s·twist, s·abd) with s = -1 on the right hand
and +1 on the left (``SIDE_SIGN``): the left rig is the mirror image of the right, and a mirror
keeps rotations about the flexion axis but reverses those about the other two.

Joint limits
------------
``JOINT_LIMITS`` (degrees) hold active ranges of motion for an adult hand, from clinical
goniometry (individual ranges vary by about ±10°):
- flexion/extension of the finger MCP (90°/45°), PIP (100°/0°) and DIP (90°/10°), the thumb MCP
  (50°) and IP (80°/20°): American Academy of Orthopaedic Surgeons, "Joint Motion: Method of
  Measuring and Recording" (1965). Ours differ within the ±10° of individual variation: 30° of
  MCP hyperextension (the rest pose is already slightly extended), 110° of PIP flexion, 60° of
  thumb MCP flexion, 15° of thumb IP hyperextension;
- the thumb CMC's arcs (about 53° flexion–extension and 42° abduction–adduction, with axial
  rotation in opposition): Cooney et al., "The kinesiology of the thumb trapeziometacarpal
  joint", J Bone Joint Surg Am 63(9), 1981;
- MCP flexion growing from the index towards the little finger, and the collateral ligaments
  that tighten as the MCP flexes so that bent fingers can hardly be spread: I. A. Kapandji,
  "The Physiology of the Joints", vol. 1, The Upper Limb.
The MCP abduction magnitudes (±20° index and little finger, ±15° middle and ring), the little
finger's 95° of MCP flexion, the share of abduction lost in flexion (``MCP_ABD_COUPLING``) and the
tolerances on hinge joints are our own approximations within these descriptions, not figures
from one published table. Everyday use needs far less than these maxima (Hume et al.,
"Functional range of motion of the joints of the hand", J Hand Surg Am 15(2), 1990).
The ranges are measured from the anatomical neutral; our zero is the rig's flat rest pose, which
on the open hand and MANO is close to it.
Where the textbook says "none" (hinge joints) we still allow a few degrees: the rig's hinge axes
are estimated from joint positions, not measured, and real phalanges have a little passive play.
Finger MCP abduction shrinks as the MCP flexes (collateral ligaments tighten): the allowed
abduction range is scaled by ``1 - MCP_ABD_COUPLING * clip(flex / 90°, 0, 1)``. Blender's Limit
Rotation constraint cannot couple axes, so it gets the static box (``blender_rotation_limits``);
``limit_violation`` applies the coupling.

The wrist (joint 0, ``global_orient``) is the hand's orientation in the world: the hand models
have no forearm, so there is nothing to measure a wrist angle against and it is not limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .rotations import (
    array_ops,
    axis_angle_to_matrix,
    euler_to_matrix,
    is_torch,
    matrix_to_axis_angle,
    matrix_to_euler,
)
from .skeleton import FINGER_JOINTS, FINGERS, JOINT_NAMES, NUM_FINGER_JOINTS, Side, check_side

# Euler mode of the anatomical decomposition, as Blender names it (see the module docstring).
BLENDER_EULER_MODE = "YZX"
ANGLE_NAMES = ("flex", "abd", "twist")
FINGER_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[1:]

# Blender Euler (x, y, z) = (flex, SIDE_SIGN·twist, SIDE_SIGN·abd). On the right rig a positive
# rotation about the abduction axis (≈ the palm normal) moves a finger towards the little finger,
# so the sign is flipped there to give "positive = towards the thumb" on both hands.
SIDE_SIGN: dict[str, float] = {"right": -1.0, "left": 1.0}

# Share of the MCP abduction range that is lost at 90° MCP flexion: the collateral ligaments
# tighten in flexion and bent fingers can barely be spread (Kapandji, above), so most of it goes.
# The share itself is our estimate.
MCP_ABD_COUPLING = 0.6


@dataclass(frozen=True)
class JointLimit:
    """Active range of one joint, degrees: (min, max) for flex, abd, twist."""

    flex: tuple[float, float]
    abd: tuple[float, float]
    twist: tuple[float, float]
    why: str

    def as_array(self) -> np.ndarray:
        return np.array([self.flex, self.abd, self.twist], dtype=np.float64)


def _finger(mcp_flex_max: float, mcp_abd: float) -> dict[str, JointLimit]:
    return {
        "1": JointLimit(
            (-30.0, mcp_flex_max), (-mcp_abd, mcp_abd), (-10.0, 10.0),
            "MCP: 0–90° flexion (pinky ~95°), 30–45° active hyperextension (30° kept: the rest pose "
            "is already slightly extended); abduction ±20° index/pinky, ±15° middle/ring, coupled "
            "to flexion; ±10° axial play",
        ),
        "2": JointLimit(
            (-5.0, 110.0), (-5.0, 5.0), (-5.0, 5.0),
            "PIP: 0–100/110° flexion, ~0° extension; a hinge (±5° tolerance for the estimated axis)",
        ),
        "3": JointLimit(
            (-10.0, 90.0), (-5.0, 5.0), (-5.0, 5.0),
            "DIP: 0–80/90° flexion, 0–10° hyperextension; a hinge (±5° tolerance)",
        ),
    }


def _build_limits() -> dict[str, JointLimit]:
    limits: dict[str, JointLimit] = {}
    for finger, flex_max, abd in (("index", 90.0, 20.0), ("middle", 90.0, 15.0),
                                  ("ring", 90.0, 15.0), ("pinky", 95.0, 20.0)):
        for level, lim in _finger(flex_max, abd).items():
            limits[finger + level] = lim
    # The thumb's frames come from the rig: the CMC flexion axis is tilted so that flexion moves the
    # thumb towards the palm *and* across it (opposition direction), abduction moves it in the palm
    # plane. Ranges are the textbook ones, widened where this frame mixes motions: the CMC flexion
    # arc (~50°) plus palmar abduction (45–60°) both load onto our flexion axis.
    limits["thumb1"] = JointLimit(
        (-20.0, 75.0), (-30.0, 35.0), (-20.0, 50.0),
        "CMC: ~53° flexion/extension arc plus palmar abduction (Cooney et al. 1981), both along the tilted "
        "flexion axis (on the open hand, full opposition to the little-finger base needs ~66°); "
        "~42° abduction arc (the rest thumb already lies abducted in the palm plane, so "
        "-30..+35°); axial rotation up to ~45° accompanies opposition (+ = pronation)",
    )
    limits["thumb2"] = JointLimit(
        (-10.0, 60.0), (-10.0, 10.0), (-10.0, 10.0),
        "MCP: 0–50/60° flexion, little hyperextension; small abduction and rotation",
    )
    limits["thumb3"] = JointLimit(
        (-15.0, 80.0), (-5.0, 5.0), (-5.0, 5.0),
        "IP: 0–80° flexion, 10–20° hyperextension; a hinge (±5° tolerance)",
    )
    return {name: limits[name] for name in FINGER_JOINT_NAMES}


JOINT_LIMITS: dict[str, JointLimit] = _build_limits()
# (15, 3, 2): per joint, per angle (flex, abd, twist), (min, max) — degrees and radians.
LIMITS_DEG = np.stack([JOINT_LIMITS[n].as_array() for n in FINGER_JOINT_NAMES])
LIMITS_RAD = np.radians(LIMITS_DEG)
for _arr in (LIMITS_DEG, LIMITS_RAD):
    _arr.setflags(write=False)

# Rows (0..14) of the finger MCPs whose abduction range is coupled to flexion.
MCP_ROWS: tuple[int, ...] = tuple(FINGER_JOINTS[f][0] - 1 for f in FINGERS if f != "thumb")
_MCP_COUPLING = np.array([MCP_ABD_COUPLING if r in MCP_ROWS else 0.0 for r in range(NUM_FINGER_JOINTS)])
_ABD_COLUMN = np.array([0.0, 1.0, 0.0])


# ---------------------------------------------------------------------- array helpers
# numpy/torch dispatch comes from ``rotations.array_ops`` (one home); these few helpers add what
# it lacks without importing torch (``new_tensor`` puts constants on the input's device/dtype).
def _as_input(x: Any) -> Any:
    return x if isinstance(x, np.ndarray) or is_torch(x) else np.asarray(x, dtype=np.float64)


def _host(value: Any) -> Any:
    """A torch tensor's values in host memory (numpy cannot read a GPU tensor); anything else as given."""
    return value.detach().cpu().numpy() if is_torch(value) else value


def _const(value: Any, like: Any) -> Any:
    """A constant (numpy, or a tensor on any device) as an array of the same kind (and torch
    dtype/device) as ``like``."""
    if isinstance(like, np.ndarray):
        return np.asarray(_host(value), dtype=np.float64)
    if is_torch(value):  # (a tensor already: no trip through the host)
        return value.detach().to(device=like.device, dtype=like.dtype)
    return like.new_tensor(np.array(value))


def _swap(m: Any) -> Any:
    return np.swapaxes(m, -1, -2) if isinstance(m, np.ndarray) else m.transpose(-1, -2)


def _clip(x: Any, lo: Any, hi: Any) -> Any:
    xp = array_ops(x)
    return xp.where(x < lo, lo, xp.where(x > hi, hi, x))


def _check_angles(angles: Any) -> None:
    if tuple(angles.shape[-2:]) != (NUM_FINGER_JOINTS, 3):
        raise ValueError(f"anatomical angles must have shape (..., 15, 3), got {tuple(angles.shape)}")


def _finger_frames(frames: Any) -> np.ndarray:
    """The 15 finger joints' frames from (..., 16, 3, 3) or (..., 15, 3, 3) (batched frames, e.g.
    one rig per hand shape, broadcast against the angles' batch shape)."""
    f = np.asarray(_host(frames), dtype=np.float64)
    if f.shape[-3:] == (16, 3, 3):
        f = f[..., 1:, :, :]
    if f.shape[-3:] != (NUM_FINGER_JOINTS, 3, 3):
        raise ValueError(f"joint frames must have shape (..., 16, 3, 3) or (..., 15, 3, 3), got {f.shape}")
    return f


def _side_signs(side: Side) -> np.ndarray:
    """Multiplies (flex, abd, twist) to get the Blender Euler angles (x, z, y) of this side."""
    s = SIDE_SIGN[check_side(side)]
    return np.array([1.0, s, s])


# ---------------------------------------------------------------------- the conversion
def anatomical_to_matrix(angles: Any, frames: Any, side: Side) -> Any:
    """(..., 15, 3) anatomical angles (radians) → (..., 15, 3, 3) world-aligned joint rotations."""
    a = _as_input(angles)
    _check_angles(a)
    e = a * _const(_side_signs(side), a)
    xp = array_ops(a)
    r_anat = euler_to_matrix(xp.stack([e[..., 0], e[..., 2], e[..., 1]], -1), BLENDER_EULER_MODE)
    f = _const(_finger_frames(frames), a)
    return f @ r_anat @ _swap(f)


def matrix_to_anatomical(matrices: Any, frames: Any, side: Side) -> Any:
    """(..., 15, 3, 3) world-aligned joint rotations → (..., 15, 3) anatomical angles (radians)."""
    m = _as_input(matrices)
    if tuple(m.shape[-3:]) != (NUM_FINGER_JOINTS, 3, 3):
        raise ValueError(f"joint rotations must have shape (..., 15, 3, 3), got {tuple(m.shape)}")
    f = _const(_finger_frames(frames), m)
    e = matrix_to_euler(_swap(f) @ m @ f, BLENDER_EULER_MODE)  # |abd| <= 90°: one solution
    return array_ops(m).stack([e[..., 0], e[..., 2], e[..., 1]], -1) * _const(_side_signs(side), m)


def anatomical_to_hand_pose(angles: Any, frames: Any, side: Side) -> Any:
    """(..., 15, 3) anatomical angles (radians) → (..., 45) ``hand_pose`` axis-angles."""
    mats = anatomical_to_matrix(angles, frames, side)
    aa = matrix_to_axis_angle(mats)
    return aa.reshape(*aa.shape[:-2], 3 * NUM_FINGER_JOINTS)


def hand_pose_to_anatomical(hand_pose: Any, frames: Any, side: Side) -> Any:
    """(..., 45) ``hand_pose`` axis-angles → (..., 15, 3) anatomical angles (radians)."""
    hp = _as_input(hand_pose)
    if hp.shape[-1] != 3 * NUM_FINGER_JOINTS:
        raise ValueError(f"hand_pose must have shape (..., 45), got {tuple(hp.shape)}")
    aa = hp.reshape(*hp.shape[:-1], NUM_FINGER_JOINTS, 3)
    return matrix_to_anatomical(axis_angle_to_matrix(aa), frames, side)


# ---------------------------------------------------------------------- limits and plausibility
def limit_bounds(angles: Any) -> tuple[Any, Any]:
    """Per-angle (lower, upper) bounds (..., 15, 3) in radians for these angles: the static box,
    with the MCP abduction range narrowed according to each MCP's flexion."""
    a = _as_input(angles)
    _check_angles(a)
    bent = _clip(a[..., 0] / (np.pi / 2), _const(np.zeros(()), a), _const(np.ones(()), a))
    factor = 1.0 - _const(_MCP_COUPLING, a) * bent  # (..., 15)
    full = 1.0 + (factor[..., None] - 1.0) * _const(_ABD_COLUMN, a)  # scales only the abd column
    return _const(LIMITS_RAD[..., 0], a) * full, _const(LIMITS_RAD[..., 1], a) * full


def limit_violation(angles: Any) -> Any:
    """(..., 15, 3) non-negative amounts (radians) by which each angle lies outside its range.

    Works on numpy and torch (differentiable: usable as a loss, e.g. ``violation.square().sum()``).
    """
    a = _as_input(angles)
    lo, hi = limit_bounds(a)
    xp = array_ops(a)
    return xp.clamp_min(lo - a, 0.0) + xp.clamp_min(a - hi, 0.0)


def clamp_to_limits(angles: Any) -> Any:
    """The nearest angles inside the limits (per angle; coupling uses the clamped flexion)."""
    a = _as_input(angles)
    _check_angles(a)
    lo = _const(LIMITS_RAD[..., 0], a)
    hi = _const(LIMITS_RAD[..., 1], a)
    a = _clip(a, lo, hi)  # flexion first, so the coupled abduction range is final
    lo, hi = limit_bounds(a)
    return _clip(a, lo, hi)


def clamp_pose(hand_pose: Any, frames: Any, side: Side) -> Any:
    """(..., 45) ``hand_pose`` axis-angles on a rig's ``frames`` moved to the nearest pose inside the
    limits (``clamp_to_limits`` on its anatomical angles); numpy, or torch (computed in float64, returned
    in its own dtype)."""
    hp = _as_input(hand_pose)
    wide = hp if isinstance(hp, np.ndarray) else hp.double()
    rig = _const(frames, wide)
    clamped = anatomical_to_hand_pose(clamp_to_limits(hand_pose_to_anatomical(wide, rig, side)), rig, side)
    return clamped if isinstance(hp, np.ndarray) else clamped.to(hp.dtype)


def pose_violation(hand_pose: Any, frames: Any, side: Side) -> Any:
    """(..., 15, 3) limit violations (radians) of ``hand_pose`` axis-angles on a rig's frames."""
    return limit_violation(hand_pose_to_anatomical(hand_pose, frames, side))


def within_limits(angles: Any, tolerance_deg: float = 0.01) -> Any:
    """(...,) True where every angle is inside its range (up to ``tolerance_deg``)."""
    v = limit_violation(angles)
    worst = v.max(axis=(-2, -1)) if isinstance(v, np.ndarray) else v.amax(dim=(-2, -1))
    return worst <= np.radians(tolerance_deg)


# ---------------------------------------------------------------------- Blender and sliders
def blender_rotation_limits(side: Side) -> dict[str, dict[str, float]]:
    """Per finger joint name, the Limit Rotation constraint fields in radians for a bone whose
    rest frame is the anatomical frame and whose rotation mode is 'YZX' (owner space LOCAL):
    ``{"min_x", "max_x", "min_y", "max_y", "min_z", "max_z"}``. Static box (no coupling)."""
    s = SIDE_SIGN[check_side(side)]
    out = {}
    for name, (flex, abd, twist) in zip(FINGER_JOINT_NAMES, LIMITS_RAD):
        def signed(rng: np.ndarray) -> tuple[float, float]:
            lo, hi = sorted((s * rng[0], s * rng[1]))
            return float(lo), float(hi)

        (ylo, yhi), (zlo, zhi) = signed(twist), signed(abd)
        out[name] = {"min_x": float(flex[0]), "max_x": float(flex[1]),
                     "min_y": ylo, "max_y": yhi, "min_z": zlo, "max_z": zhi}
    return out


def anatomical_to_blender_euler(angles: Any, side: Side) -> np.ndarray:
    """(..., 15, 3) anatomical (flex, abd, twist) → (..., 15, 3) Blender 'YZX' Euler (x, y, z)."""
    a = np.asarray(angles, dtype=np.float64)
    _check_angles(a)
    e = a * _side_signs(side)
    return np.stack([e[..., 0], e[..., 2], e[..., 1]], -1)


def blender_euler_to_anatomical(euler: Any, side: Side) -> np.ndarray:
    e = np.asarray(euler, dtype=np.float64)
    _check_angles(e)
    return np.stack([e[..., 0], e[..., 2], e[..., 1]], -1) * _side_signs(side)


# In natural grasping the DIP flexes about 2/3 as much as the PIP (the coupling Rijpkema & Girard,
# "Computer animation of knowledge-based human grasping", SIGGRAPH 1991, build on). A slider curls
# all three joints of a finger together, each to this share of its own maximum flexion, which
# approximates that synergy.
CURL_SHARE = {"finger": (0.85, 1.0, 0.67), "thumb": (0.45, 0.8, 0.9)}


# Spreading moves a finger away from the middle finger: radial (+) for thumb, index (and the
# middle finger itself), ulnar (−) for ring and pinky.
_SPREAD_DIRECTION = {"thumb": 1.0, "index": 1.0, "middle": 1.0, "ring": -1.0, "pinky": -1.0}


def _finger_rows(finger: str) -> list[int]:
    return [j - 1 for j in FINGER_JOINTS[finger]]


def _full_curl(finger: str) -> np.ndarray:
    """(3,) flexion (radians) of the finger's three joints at curl = 1."""
    shares = CURL_SHARE["thumb" if finger == "thumb" else "finger"]
    return np.array([share * LIMITS_RAD[row, 0, 1] for row, share in zip(_finger_rows(finger), shares)])


def slider_angles(finger: str, curl: float, spread: float) -> np.ndarray:
    """(15, 3) anatomical angles (radians) that one finger's curl and spread stand for, neither
    clipped nor limited: linear in curl, piecewise linear in spread (its range differs on each
    side of zero). The add-on's sliders move a finger by the difference of two of these, so that
    a slider is an offset on whatever pose the finger has."""
    if finger not in FINGERS:
        raise ValueError(f"unknown finger {finger!r}; use one of {', '.join(FINGERS)}")
    angles = np.zeros((NUM_FINGER_JOINTS, 3))
    rows = _finger_rows(finger)
    angles[rows, 0] = float(curl) * _full_curl(finger)
    lo, hi = LIMITS_RAD[rows[0], 1]
    abd = _SPREAD_DIRECTION[finger] * float(spread)
    angles[rows[0], 1] = abd * (hi if abd > 0 else -lo)
    return angles


def curl_spread_angles(curl: Mapping[str, float] | None = None,
                       spread: Mapping[str, float] | None = None) -> np.ndarray:
    """Anatomical angles (15, 3) radians from per-finger sliders.

    ``curl[finger]`` in [0, 1]: 0 = straight, 1 = fully curled (each joint at its share of its
    maximum flexion, DIP ≈ 2/3 PIP). ``spread[finger]`` in [-1, 1]: MCP abduction (CMC for the
    thumb) as a fraction of its range, positive = away from the middle finger (for the thumb:
    away from the index). Values outside the ranges are clipped; the result is within the limits.
    ``curl_spread_of`` is the inverse.
    """
    angles = sum(slider_angles(finger, np.clip((curl or {}).get(finger, 0.0), 0.0, 1.0),
                               np.clip((spread or {}).get(finger, 0.0), -1.0, 1.0)) for finger in FINGERS)
    return clamp_to_limits(angles)


def curl_spread_of(angles: Any, clip: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """The per-finger sliders (curl, spread) that best describe anatomical angles (15, 3) radians:
    the inverse of ``curl_spread_angles``. Curl is the least-squares fit of the finger's three
    flexions to its curl synergy, spread the MCP (thumb: CMC) abduction as a fraction of the static
    range; both clipped to their slider ranges (``clip`` False: not, for a finger beyond them). Exact
    on ``curl_spread_angles``' output wherever the flexion coupling did not narrow the abduction (a
    straight finger, or no spread)."""
    a = np.asarray(angles, dtype=np.float64)
    if a.shape != (NUM_FINGER_JOINTS, 3):
        raise ValueError(f"anatomical angles must have shape (15, 3), got {a.shape}")
    curl, spread = {}, {}
    for finger in FINGERS:
        rows = _finger_rows(finger)
        full = _full_curl(finger)
        curl[finger] = float(a[rows, 0] @ full / (full @ full))
        lo, hi = LIMITS_RAD[rows[0], 1]
        abd = a[rows[0], 1]
        spread[finger] = float(_SPREAD_DIRECTION[finger] * abd / (hi if abd > 0 else -lo))
        if clip:
            curl[finger] = float(np.clip(curl[finger], 0.0, 1.0))
            spread[finger] = float(np.clip(spread[finger], -1.0, 1.0))
    return curl, spread


def anatomical_from_degrees(table: Mapping[str, tuple[float, float, float]]) -> np.ndarray:
    """(15, 3) radians from {joint name: (flex, abd, twist) degrees}; missing joints are zero."""
    unknown = [k for k in table if k not in FINGER_JOINT_NAMES]
    if unknown:
        raise ValueError(f"unknown finger joints {unknown}; use {', '.join(FINGER_JOINT_NAMES)}")
    out = np.zeros((NUM_FINGER_JOINTS, 3))
    for name, values in table.items():
        out[FINGER_JOINT_NAMES.index(name)] = np.radians(np.asarray(values, dtype=np.float64))
    return out
