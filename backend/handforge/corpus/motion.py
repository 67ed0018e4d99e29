"""Motion building blocks: hand states, minimum-jerk transitions, periodic overlays, wrist paths.

A hand's motion is held as three tracks over frames: anatomical finger angles (T, 15, 3) radians,
the palm's rotation (T, 3, 3) and the palm centre (T, 3) in the scene frame (``placement``).
Working on the palm rather than on ``global_orient``/``transl`` makes rotations of the hand turn
it about its middle, as people do; ``to_pose`` converts to the shared pose parameters at the end.

Transitions have the bell-shaped velocity of a minimum-jerk profile (10τ³ − 15τ⁴ + 6τ⁵, zero
velocity and acceleration at both ends, so chained segments are smooth; Flash & Hogan, "The
coordination of arm movements: an experimentally confirmed mathematical model", J Neurosci 5(7),
1985). Our own choices: fingers start at slightly different times (per-finger phase offsets), a
single gesture takes a few tenths of a second, tapping stays at 2–6 Hz. Overlays (tapping, waving, wrist paths) fade
in and out with the same profile so that they add no jerk at their ends. Finger angles are
clamped to the joint limits after everything is added.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from handforge.corpus.placement import PalmFrame, rest_palm
from handforge_shared.anatomy import anatomical_to_hand_pose, clamp_to_limits
from handforge_shared.rig import HandRig
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle, slerp_matrix
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS, NUM_FINGER_JOINTS

FPS = 30.0
MIN_FRAMES, MAX_FRAMES = 60, 300

# Rows of the (15, 3) angle array that belong to each finger.
FINGER_ROWS = {f: [j - 1 for j in FINGER_JOINTS[f]] for f in FINGERS}


def minimum_jerk(tau: np.ndarray) -> np.ndarray:
    """Position profile of a minimum-jerk movement from 0 to 1 for τ in [0, 1] (clipped outside)."""
    t = np.clip(tau, 0.0, 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


def fade(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """Envelope: 0 before ``start``, rises to 1 over ``ramp`` s, falls back to 0 at ``end``."""
    ramp = max(min(ramp, (end - start) / 2.0), 1e-6)
    return minimum_jerk((t - start) / ramp) * minimum_jerk((end - t) / ramp)


@dataclass(frozen=True)
class HandState:
    """One hand at one instant: finger angles (15, 3) rad, palm rotation (3, 3), palm centre (3,)."""

    angles: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray

    def moved(self, rotation: np.ndarray | None = None, shift: np.ndarray | None = None,
              pivot: np.ndarray | None = None) -> "HandState":
        """Rigidly moved: rotated by ``rotation`` about ``pivot`` (default the palm centre), then shifted."""
        rot = np.eye(3) if rotation is None else rotation
        pivot = self.centre if pivot is None else pivot
        centre = rot @ (self.centre - pivot) + pivot + (0.0 if shift is None else shift)
        return HandState(self.angles, rot @ self.rotation, centre)

    def with_angles(self, angles: np.ndarray) -> "HandState":
        return replace(self, angles=angles)


@dataclass
class HandTrack:
    """A hand's motion over ``T`` frames (arrays owned by the track, written in place by overlays)."""

    angles: np.ndarray    # (T, 15, 3)
    rotation: np.ndarray  # (T, 3, 3)
    centre: np.ndarray    # (T, 3)

    @property
    def num_frames(self) -> int:
        return self.angles.shape[0]

    @classmethod
    def still(cls, state: HandState, frames: int) -> "HandTrack":
        return cls(np.repeat(state.angles[None], frames, 0), np.repeat(state.rotation[None], frames, 0),
                   np.repeat(state.centre[None], frames, 0))


def finger_delays(rng: np.random.Generator, spread: float) -> np.ndarray:
    """Per-joint-row start delays as fractions of a transition (0 … spread): each finger its own."""
    per_finger = rng.uniform(0.0, spread, size=len(FINGERS))
    delays = np.zeros(NUM_FINGER_JOINTS)
    for i, f in enumerate(FINGERS):
        delays[FINGER_ROWS[f]] = per_finger[i]
    return delays


class Timeline:
    """Builds one hand's track from keyframed states joined by minimum-jerk transitions."""

    def __init__(self, start: HandState) -> None:
        self.states = [start]
        self.segments: list[tuple[float, float, np.ndarray | None, np.ndarray | None]] = []
        # (start time, duration, per-row finger delays or None for a hold, via point or None)
        self.time = 0.0

    def hold(self, seconds: float) -> "Timeline":
        self.segments.append((self.time, seconds, None, None))
        self.states.append(self.states[-1])
        self.time += seconds
        return self

    def move(self, state: HandState, seconds: float, delays: np.ndarray | None = None,
             via: np.ndarray | None = None) -> "Timeline":
        """Go to ``state`` in ``seconds``; ``delays`` (15,) fractions of the duration by which each
        joint row starts late (it still arrives on time); ``via`` bends the palm's path through an
        offset (3,) at mid-transition (e.g. lift a hand over the other)."""
        self.segments.append((self.time, seconds, np.zeros(NUM_FINGER_JOINTS) if delays is None else delays, via))
        self.states.append(state)
        self.time += seconds
        return self

    @property
    def last(self) -> HandState:
        return self.states[-1]

    def render(self, frames: int, fps: float = FPS) -> HandTrack:
        """Sample the timeline at ``frames`` frames (the last state is held past the end)."""
        t = np.arange(frames) / fps
        track = HandTrack.still(self.states[0], frames)
        for k, (t0, dur, delays, via) in enumerate(self.segments):
            a, b = self.states[k], self.states[k + 1]
            sel = t >= t0
            if not sel.any():
                break
            ts = t[sel]
            if delays is None:
                track.angles[sel], track.rotation[sel], track.centre[sel] = a.angles, a.rotation, a.centre
                continue
            tau = (ts - t0) / dur
            span = 1.0 - delays.max(initial=0.0)
            s_rows = minimum_jerk((tau[:, None] - delays[None]) / max(span, 1e-6))  # (n, 15)
            track.angles[sel] = a.angles + s_rows[..., None] * (b.angles - a.angles)
            s = minimum_jerk(tau)
            track.centre[sel] = a.centre + s[:, None] * (b.centre - a.centre)
            if via is not None:
                track.centre[sel] += (4.0 * s * (1.0 - s))[:, None] * via
            track.rotation[sel] = slerp_matrix(a.rotation, b.rotation, s)
        return track


class PairTimeline:
    """Both hands' timelines in lockstep: every move or hold takes the same time for both, so the
    hands arrive at an interaction together."""

    def __init__(self, start: dict[str, HandState]) -> None:
        self.hands = {side: Timeline(state) for side, state in start.items()}

    @property
    def time(self) -> float:
        return next(iter(self.hands.values())).time

    @property
    def last(self) -> dict[str, HandState]:
        return {side: tl.last for side, tl in self.hands.items()}

    def hold(self, seconds: float) -> "PairTimeline":
        for tl in self.hands.values():
            tl.hold(seconds)
        return self

    def move(self, states: dict[str, HandState], seconds: float, delays: dict[str, np.ndarray] | None = None,
             via: dict[str, np.ndarray] | None = None) -> "PairTimeline":
        for side, tl in self.hands.items():
            tl.move(states.get(side, tl.last), seconds, None if delays is None else delays.get(side),
                    None if via is None else via.get(side))
        return self

    def render(self, frames: int, fps: float = FPS) -> dict[str, HandTrack]:
        return {side: tl.render(frames, fps) for side, tl in self.hands.items()}


# ---------------------------------------------------------------------- overlays
def add_tapping(track: HandTrack, rng: np.random.Generator, fingers: tuple[str, ...], start: float, end: float,
                fps: float = FPS) -> dict:
    """Fingers tapping: MCP/PIP flexion pulses at 2–6 Hz, each finger phase-shifted (drumming)."""
    t = np.arange(track.num_frames) / fps
    freq = rng.uniform(2.0, 6.0)
    amp = np.radians(rng.uniform(12.0, 30.0))
    env = fade(t, start, end, 0.25)
    order = rng.permutation(len(fingers))
    for k, finger in enumerate(fingers):
        phase = 2 * np.pi * order[k] / max(len(fingers), 1) * rng.uniform(0.0, 1.0)
        pulse = 0.5 * (1.0 - np.cos(2 * np.pi * freq * t + phase))  # 0 … 1, smooth
        rows = FINGER_ROWS[finger]
        share = (0.7, 0.5, 0.3) if finger != "thumb" else (0.3, 0.5, 0.4)
        for row, sh in zip(rows, share):
            track.angles[:, row, 0] += env * amp * sh * pulse
    return {"overlay": "tapping", "fingers": list(fingers), "hz": round(float(freq), 2)}


def add_waving(track: HandTrack, rng: np.random.Generator, start: float, end: float, rest: PalmFrame,
               fps: float = FPS) -> dict:
    """Waving: the hand swings side to side (about its palm normal, pivoting near the wrist) at
    1.5–3.5 Hz. ``rest`` is the hand's rest palm frame (to find its current palm axes)."""
    t = np.arange(track.num_frames) / fps
    freq = rng.uniform(1.5, 3.5)
    amp = np.radians(rng.uniform(12.0, 35.0))
    angle = fade(t, start, end, 0.3) * amp * np.sin(2 * np.pi * freq * t)
    basis = track.rotation @ rest.basis()  # (T, 3, 3) current forward, normal, side
    turn = axis_angle_to_matrix(basis[:, :, 1] * angle[:, None])
    pivot = track.centre - 0.07 * basis[:, :, 0]  # about 7 cm behind the palm centre: the wrist
    track.centre[:] = np.einsum("tij,tj->ti", turn, track.centre - pivot) + pivot
    track.rotation[:] = turn @ track.rotation
    return {"overlay": "waving", "hz": round(float(freq), 2)}


def wrist_path(rng: np.random.Generator, frames: int, amplitude: float, fps: float = FPS) -> np.ndarray:
    """A smooth random path (T, 3) in metres: a few slow sinusoids per axis, starting and ending at
    rest (faded), peak offset about ``amplitude``."""
    t = np.arange(frames) / fps
    path = np.zeros((frames, 3))
    for axis in range(3):
        for _ in range(2):
            freq = rng.uniform(0.15, 0.8)
            path[:, axis] += rng.normal(0.0, 0.5) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    duration = (frames - 1) / fps  # the last frame's time: the path is back at rest there
    path *= fade(t, 0.0, duration, min(0.6, duration / 4))[:, None]
    peak = np.abs(path).max()
    return path * (amplitude / peak if peak > 0 else 0.0)


def sway(rng: np.random.Generator, frames: int, degrees: float, fps: float = FPS) -> np.ndarray:
    """A smooth random rotation per frame (T, 3, 3) up to about ``degrees``, faded in and out."""
    t = np.arange(frames) / fps
    aa = np.zeros((frames, 3))
    for axis in range(3):
        freq = rng.uniform(0.1, 0.5)
        aa[:, axis] = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) * rng.normal(0.0, 1.0)
    duration = (frames - 1) / fps
    aa *= fade(t, 0.0, duration, min(0.6, duration / 4))[:, None]
    peak = np.linalg.norm(aa, axis=1).max()
    aa *= np.radians(degrees) / peak if peak > 0 else 0.0
    return axis_angle_to_matrix(aa)


def move_pair(tracks: dict[str, HandTrack], rotations: np.ndarray, shifts: np.ndarray, pivot: np.ndarray) -> None:
    """Move every hand rigidly together per frame (keeps their contact): rotate about ``pivot``, shift."""
    for track in tracks.values():
        track.centre[:] = np.einsum("tij,tj->ti", rotations, track.centre - pivot) + pivot + shifts
        track.rotation[:] = rotations @ track.rotation


# ---------------------------------------------------------------------- to pose parameters
@dataclass(frozen=True)
class ShapedHand:
    """What converting a track needs about one hand of a given shape: joint frames, rest palm, wrist."""

    side: str
    betas: np.ndarray
    frames: np.ndarray      # (16, 3, 3) joint frames of the rig at rest (betas = 0): the anatomical
                            # angles mean the same on every hand shape, and the evaluation's
                            # joint-limit check reads poses on these frames
    palm: PalmFrame         # rest palm frame of the shaped hand
    wrist: np.ndarray       # (3,) rest wrist joint of the shaped hand

    @classmethod
    def from_rig(cls, rig: HandRig, betas: np.ndarray, frames: np.ndarray | None = None) -> "ShapedHand":
        joints = rig.shaped(betas)[1]
        frames = rig.joint_frames() if frames is None else frames
        return cls(rig.side, np.asarray(betas, dtype=np.float64), frames, rest_palm(joints, frames), joints[0])

    def state(self, angles: np.ndarray, palm: PalmFrame) -> HandState:
        """The state that puts this hand's palm on ``palm`` with these finger angles."""
        return HandState(np.asarray(angles, dtype=np.float64), palm.basis() @ self.palm.basis().T,
                         np.asarray(palm.centre, dtype=np.float64))

    def state_from_pose(self, angles: np.ndarray, global_orient: np.ndarray, transl: np.ndarray) -> HandState:
        """The state of a hand given as pose parameters (e.g. a resolved interaction)."""
        rot = axis_angle_to_matrix(np.asarray(global_orient, dtype=np.float64))
        centre = rot @ (self.palm.centre - self.wrist) + self.wrist + transl
        return HandState(np.asarray(angles, dtype=np.float64), rot, centre)

    def to_pose(self, track: HandTrack) -> dict[str, np.ndarray]:
        """global_orient (T, 3), hand_pose (T, 45), betas (T, 10), transl (T, 3) for a track."""
        angles = clamp_to_limits(track.angles)
        rot = track.rotation
        transl = track.centre - np.einsum("tij,j->ti", rot, self.palm.centre - self.wrist) - self.wrist
        frames = track.num_frames
        return {
            "global_orient": matrix_to_axis_angle(rot),
            "hand_pose": anatomical_to_hand_pose(angles, self.frames, self.side),
            "betas": np.repeat(self.betas[None], frames, 0),
            "transl": transl,
        }
