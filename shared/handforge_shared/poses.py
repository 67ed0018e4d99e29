"""Typed containers for hand poses and two-hand motion clips, and their `.npz` file format.

numpy only (the add-on uses these too). Every container validates on construction: shapes,
finite values, known hand models (a clip: rotations of at most MAX_ROTATION rad); anything else
raises ``PoseFormatError`` with a message that names the field and says what was expected.

Motion file format (``.npz``, version 1), written atomically:
    meta                  0-d unicode array holding a JSON object:
                          {"format": "handforge.motion", "version": 1, "fps", "num_frames",
                           "hand_model", "units": "m", "frame": MODEL_FRAME_DESCRIPTION, "sides", "extra"}
    <side>.global_orient  (T, 3)   float32   for each side present in the clip
    <side>.hand_pose      (T, 45)
    <side>.betas          (T, 10)
    <side>.transl         (T, 3)
    <side>.present        (T,)     bool      False where the hand is missing in that frame
No pickled objects: files load with ``allow_pickle=False``. A motion travels over the wire the
same way: the arrays of ``to_arrays()`` plus ``metadata()`` in the result's ``data["motion"]``.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .files import atomic_file, file_kind, nested_deeper_than, parse_json
from .rotations import mirror_axis_angle, mirror_points
from .skeleton import HAND_POSE_DIM, MODEL_FRAME_DESCRIPTION, NUM_BETAS, SIDES, Side, check_side, other_side

# The one list of hand-model names (motion files, the wire, the add-on's menus: name -> label, description);
# the backend maps each to its loader in handforge.hands.registry. The first is the default: no licence needed.
HAND_MODEL_LABELS = {"open": ("Open Hand", "The open default hand (CC0)"),
                     "mano": ("MANO", "MANO, from the model files configured on the backend")}
HAND_MODELS = tuple(HAND_MODEL_LABELS)
DEFAULT_HAND_MODEL = HAND_MODELS[0]
REAL_KINDS = "iuf"  # numpy dtype kinds that are real numbers (no bool, text, complex, structured, object)
# What read_npz accepts uncompressed, from the zip directory before inflating anything: an hour of
# two-hand motion at 30 fps is about 55 MB, the converted MANO files about 8 MB.
MAX_NPZ_BYTES = 256 << 20
# The 0-d text 'meta' of an .npz, stored as UTF-32: a clip's or MANO file's JSON is a few hundred characters;
# 1 MiB holds 262,144. Checked from its header before it is inflated (a 585 kB file declaring 150 million
# characters took 1.6 GB to index).
MAX_META_BYTES = 1 << 20
# Lists or objects in 'meta' nested deeper than this are refused as it is read: json.dumps writes ~990 deep
# only from a shallow stack (a clip that loaded there raised RecursionError when saved from a deeper one).
MAX_META_DEPTH = 64
# No capture runs faster; the bound keeps a clip's derivatives finite (jerk scales with fps³: a clip
# of 1e308 fps overflowed in handforge measure, a traceback).
MAX_FPS = 10_000.0
# Axis-angle turns beyond this are no rotation anyone meant; far beyond, they are finite numbers that
# pose to NaN (a clip with a 1e30 rad finger failed in handforge measure as "the trajectory contains NaN
# or inf", naming no file). Generous: the jobs' pose limit is 4π, and 1000 rad keeps float32 precise.
MAX_ROTATION = 1e3
ROTATION_FIELDS = ("global_orient", "hand_pose")


def overturned(rotations: np.ndarray) -> tuple[tuple[int, ...], float] | None:
    """The first axis-angle triple of ``rotations`` (..., 3) turning a joint by more than ``MAX_ROTATION``, as (its
    index in ``rotations[..., 0]``, its angle in rad), or None. The one bound of every reader (hypot: a norm of
    1e300 is no overflow to inf)."""
    turns = np.hypot.reduce(np.asarray(rotations, np.float64), axis=-1)
    over = np.argwhere(turns > MAX_ROTATION)
    return (tuple(over[0].tolist()), float(turns[tuple(over[0])])) if len(over) else None


# Metres from the origin a hand may be put: float32 positions (a rig's, a clip file's, the export's labels') keep a
# millimetre up to 10 km. A hand at 1e30 m is finite, so a valid clip, but no placement anyone meant: the readers
# that place hands (the add-on's Paste Pose and Import Motion, training, the export) refuse it.
MAX_REACH_M = 1e4
# Metres a wrist translation sent to a job may be (each coordinate): the jobs' bound, generous but catching unit mistakes
# (millimetres for metres); the add-on checks a wrist path against it before sending
TRANSL_LIMIT = 100.0


def check_rotations(pose: HandPose, side: Side) -> None:
    """Refuse ``pose`` (one, or batched over frames) where it turns a joint by more than ``MAX_ROTATION``: finite,
    such turns still pose to NaN (1e308 rad) or wrap to no angle anyone meant (1e5 rad)."""
    for name in ROTATION_FIELDS:
        found = overturned(getattr(pose, name).reshape(pose.batch_shape + (-1, 3)))
        if found is not None:
            index, angle = found
            where = f" in frame {index[0]}" if pose.batch_shape else ""
            raise PoseFormatError(f"{hand_array_name(side, name)} turns a joint by {angle:g} rad{where} "
                                  f"(at most {MAX_ROTATION:g} rad): rotations are axis-angle radians")


def check_reach(pose: HandPose, side: Side, present: np.ndarray | None = None) -> None:
    """Refuse ``pose`` (one, or batched over frames; ``present``: the frames that count) where it places the hand
    beyond ``MAX_REACH_M`` of the origin."""
    distance = np.hypot.reduce(pose.transl, axis=-1)  # (hypot: 1e300² is no overflow to inf)
    if present is not None:
        distance = np.where(present, distance, 0.0)
    if np.any(distance > MAX_REACH_M):
        worst = np.unravel_index(np.argmax(distance), distance.shape)
        where = f" in frame {worst[0]}" if pose.batch_shape else ""
        raise PoseFormatError(f"{hand_array_name(side, 'transl')} places the hand {distance[worst]:g} m from the "
                              f"origin{where}, beyond {MAX_REACH_M:g} m: translations are metres; move the hand "
                              "nearer the origin")
MOTION_FORMAT = "handforge.motion"
MOTION_VERSION = 1

# |β| beyond this is no hand: a bound the job schemas and Set Shape share (1e9 made a rig no later shape could fix)
BETAS_LIMIT = 20.0

POSE_FIELDS: dict[str, int] = {
    "global_orient": 3,
    "hand_pose": HAND_POSE_DIM,
    "betas": NUM_BETAS,
    "transl": 3,
}
# The motion jobs' key mask, one row per frame and hand: column 0 the wrist rotation, 1-15 the finger
# joints (MANO order), the last the wrist translation; and the most frames one motion job takes.
KEY_PARTS = 1 + HAND_POSE_DIM // 3 + 1
MOTION_MAX_FRAMES = 512


def hand_array_name(side: Side, name: str) -> str:
    """The one naming of per-hand arrays, in motion files and on the wire: ``right.hand_pose``."""
    return f"{check_side(side)}.{name}"


class PoseFormatError(ValueError):
    """A pose, clip or file is malformed; the message says what and how to fix it."""


def check_hand_model(name: str) -> str:
    if name not in HAND_MODELS:
        raise PoseFormatError(f"unknown hand model {name!r}: use one of {', '.join(HAND_MODELS)}")
    return name


def json_flag(value: Any) -> str:
    """Where nested lists read from JSON hold a true or false, and which ('[0][2] is true'; ' is false' for the
    value itself; '' when none). Where numbers are expected it is a mistake numpy hides: [true, 0, 0] becomes
    the integer array [1, 0, 0]."""
    if isinstance(value, (bool, np.bool_)):
        return f" is {'true' if value else 'false'}"
    if isinstance(value, Mapping):  # ('.transl[0] is true')
        return next((f".{key}{found}" for key, item in value.items() for found in [json_flag(item)] if found), "")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = json_flag(item)
            if found:
                return f"[{i}]{found}"
    return ""


def _as_float_array(value: Any, name: str, size: int) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise PoseFormatError(f"{name} must be numbers, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in REAL_KINDS:
        # np.asarray(..., float) would parse text ("0.5") and drop imaginary parts; refuse both.
        raise PoseFormatError(f"{name} must be numbers (integers or floats), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 0 or arr.shape[-1] != size:
        raise PoseFormatError(f"{name} must have shape (..., {size}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise PoseFormatError(f"{name} has a non-finite value (NaN or inf) at index {bad}")
    return arr


@dataclass(frozen=True)
class HandPose:
    """Pose parameters of one hand, optionally batched: every field has the same leading shape.

    ``global_orient`` (..., 3), ``hand_pose`` (..., 45), ``betas`` (..., 10), ``transl`` (..., 3);
    see ``skeleton`` for their meaning. float64 in memory, float32 on disk.
    """

    global_orient: np.ndarray
    hand_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        lead = None
        for name, size in POSE_FIELDS.items():
            arr = _as_float_array(getattr(self, name), name, size)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
            if lead is None:
                lead = arr.shape[:-1]
            elif arr.shape[:-1] != lead:
                raise PoseFormatError(
                    f"{name} has leading shape {arr.shape[:-1]} but global_orient has {lead}: "
                    "every field of a hand pose needs the same batch shape"
                )

    @classmethod
    def zeros(cls, batch_shape: tuple[int, ...] = ()) -> "HandPose":
        """The flat hand at the origin."""
        return cls(**{k: np.zeros(batch_shape + (n,)) for k, n in POSE_FIELDS.items()})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HandPose":
        if not isinstance(data, Mapping):
            raise PoseFormatError(f"a hand pose is a mapping of {', '.join(POSE_FIELDS)}, got {type(data).__name__}")
        missing = [k for k in POSE_FIELDS if k not in data]
        if missing:
            raise PoseFormatError(f"hand pose is missing {', '.join(missing)}")
        unknown = [k for k in data if k not in POSE_FIELDS]
        if unknown:
            raise PoseFormatError(f"hand pose has unknown fields {unknown}; expected {list(POSE_FIELDS)}")
        for k in POSE_FIELDS:  # (a true among numbers was taken as 1)
            flag = json_flag(data[k])
            if flag:
                raise PoseFormatError(f"{k}{flag}, not a number: pose values are numbers")
        return cls(**{k: data[k] for k in POSE_FIELDS})

    @classmethod
    def from_vector(cls, vector: Any) -> "HandPose":
        """From (..., 61) = [global_orient 3 | hand_pose 45 | betas 10 | transl 3]."""
        v = _as_float_array(vector, "pose vector", sum(POSE_FIELDS.values()))
        parts, start = {}, 0
        for k, n in POSE_FIELDS.items():
            parts[k] = v[..., start:start + n]
            start += n
        return cls(**parts)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.global_orient.shape[:-1]

    def to_vector(self) -> np.ndarray:
        return np.concatenate([getattr(self, k) for k in POSE_FIELDS], axis=-1)

    def to_dict(self) -> dict[str, list]:
        """JSON-ready lists."""
        return {k: getattr(self, k).tolist() for k in POSE_FIELDS}

    def mirrored(self) -> "HandPose":
        """The same pose on the other hand: the mirror image through the plane x = 0."""
        return HandPose(
            global_orient=mirror_axis_angle(self.global_orient),
            hand_pose=mirror_axis_angle(self.hand_pose.reshape(self.batch_shape + (-1, 3))).reshape(
                self.hand_pose.shape
            ),
            betas=self.betas,
            transl=mirror_points(self.transl),
        )

    def replace(self, **changes: Any) -> "HandPose":
        return replace(self, **changes)

    def __getitem__(self, index: Any) -> "HandPose":
        if not self.batch_shape:
            raise TypeError("an unbatched HandPose cannot be indexed")
        return HandPose(**{k: getattr(self, k)[index] for k in POSE_FIELDS})


def stack_poses(poses: Iterable[HandPose]) -> HandPose:
    poses = list(poses)
    if not poses:
        raise PoseFormatError("cannot stack an empty list of hand poses")
    return HandPose(**{k: np.stack([getattr(p, k) for p in poses]) for k in POSE_FIELDS})


@dataclass(frozen=True)
class TwoHandPose:
    """One frame of two hands; a side may be absent (None), but not both."""

    left: HandPose | None = None
    right: HandPose | None = None

    def __post_init__(self) -> None:
        if self.left is None and self.right is None:
            raise PoseFormatError("a two-hand pose needs at least one hand")
        shapes = {s: p.batch_shape for s, p in self.hands.items()}
        if len(set(shapes.values())) > 1:
            raise PoseFormatError(f"both hands need the same batch shape, got {shapes}")

    @property
    def hands(self) -> dict[Side, HandPose]:
        return {s: p for s, p in (("left", self.left), ("right", self.right)) if p is not None}

    def hand(self, side: Side) -> HandPose | None:
        return getattr(self, check_side(side))

    def mirrored(self) -> "TwoHandPose":
        """Swap the hands and mirror both: the mirror image of the whole scene."""
        return TwoHandPose(
            left=self.right.mirrored() if self.right is not None else None,
            right=self.left.mirrored() if self.left is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {s: p.to_dict() for s, p in self.hands.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TwoHandPose":
        unknown = [k for k in data if k not in SIDES]
        if unknown:
            raise PoseFormatError(f"two-hand pose has unknown keys {unknown}; use 'left' and/or 'right'")
        return cls(**{s: HandPose.from_dict(data[s]) for s in SIDES if data.get(s) is not None})


SIDE_BY_SIDE_SEPARATION = 0.24  # metres between the hands' translations (open hand: wrist keypoints 20.8 cm apart)


def side_by_side(right_hand: HandPose | None = None, separation: float = SIDE_BY_SIDE_SEPARATION) -> TwoHandPose:
    """The default two-hand placement (Add Hands in Blender, the demo): a right-hand pose and its
    mirror image, palms down, fingers pointing away from the viewer (model -Z, Blender +Y), thumbs
    towards each other, translations ``separation`` apart (the wrist keypoints end up closer: 20.8 cm
    on the open hand at the default 0.24, as the wrist joint is not at the translation's origin).
    Only ``global_orient`` and ``transl`` are set."""
    right = (right_hand or HandPose.zeros()).replace(global_orient=np.array([0.0, -np.pi / 2, 0.0]),
                                                     transl=np.array([separation / 2, 0.0, 0.0]))
    return TwoHandPose(left=right.mirrored(), right=right)


@dataclass(frozen=True)
class MotionClip:
    """A two-hand motion: per side a HandPose batched over frames, and a presence mask.

    ``hands[side]`` has batch shape (T,); ``present[side]`` is (T,) bool. Absent sides are simply
    not in ``hands``. Values of a hand in frames where it is not present are meaningless (zeros).
    """

    hands: Mapping[Side, HandPose]
    fps: float = 30.0
    hand_model: str = DEFAULT_HAND_MODEL
    present: Mapping[Side, np.ndarray] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.hands:
            raise PoseFormatError("a motion clip needs at least one hand")
        for side in self.hands:
            check_side(side)
        check_hand_model(self.hand_model)
        if isinstance(self.fps, (bool, np.bool_)) or not (isinstance(self.fps, (int, float, np.integer, np.floating))
                                                          and 0 < self.fps <= MAX_FPS):
            raise PoseFormatError(f"fps must be a positive number, got {self.fps!r} "
                                  f"(at most {MAX_FPS:g} frames a second)")
        lengths = {s: p.batch_shape for s, p in self.hands.items()}
        for s, shape in lengths.items():
            if len(shape) != 1:
                raise PoseFormatError(f"{s} hand must be batched over frames, shape (T, ...), got batch {shape}")
        if len({shape[0] for shape in lengths.values()}) != 1:
            raise PoseFormatError(f"both hands need the same number of frames, got {lengths}")
        n = self.num_frames
        if n < 1:
            raise PoseFormatError("a motion clip needs at least one frame")
        for s, pose in self.hands.items():
            check_rotations(pose, s)
        present = {}
        for s in self.hands:
            mask = self.present.get(s)
            mask = np.ones(n, dtype=bool) if mask is None else np.array(mask)  # a copy: the caller's stays writable
            if mask.shape != (n,) or mask.dtype != bool:
                raise PoseFormatError(f"{s}_present must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}")
            mask.setflags(write=False)
            present[s] = mask
        unknown = [s for s in self.present if s not in self.hands]
        if unknown:
            raise PoseFormatError(f"presence masks given for hands not in the clip: {unknown}")
        object.__setattr__(self, "present", present)
        object.__setattr__(self, "hands", dict(self.hands))
        object.__setattr__(self, "fps", float(self.fps))
        if not isinstance(self.extra, Mapping):  # (a list said "cannot convert dictionary update sequence ...")
            raise PoseFormatError(f"extra metadata must be a JSON object (names and values), got "
                                  f"{type(self.extra).__name__} {self.extra!r:.60}")
        try:
            extra = dict(self.extra)
            if nested_deeper_than(extra, MAX_META_DEPTH - 1):  # (the file's meta holds it one level down)
                raise ValueError(f"lists or objects inside one another more than {MAX_META_DEPTH - 1} times")
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise PoseFormatError(f"extra metadata must be JSON-serialisable: {exc}") from None

    @property
    def num_frames(self) -> int:
        return next(iter(self.hands.values())).batch_shape[0]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def frame(self, index: int) -> TwoHandPose:
        return TwoHandPose(**{s: p[index] for s, p in self.hands.items() if self.present[s][index]})

    @classmethod
    def from_frames(cls, frames: Iterable[TwoHandPose], **kwargs: Any) -> "MotionClip":
        frames = list(frames)
        if not frames:
            raise PoseFormatError("a motion clip needs at least one frame")
        sides = [s for s in SIDES if any(f.hand(s) is not None for f in frames)]
        hands, present = {}, {}
        for s in sides:
            present[s] = np.array([f.hand(s) is not None for f in frames])
            hands[s] = stack_poses(f.hand(s) or HandPose.zeros() for f in frames)
        return cls(hands=hands, present=present, **kwargs)

    def only(self, *sides: Side) -> "MotionClip":
        """The same clip with ``sides`` alone (e.g. the one hand a motion job was keyed for: it generates the other
        too), their presence with them."""
        missing = [s for s in sides if s not in self.hands]
        if not sides or missing:
            raise PoseFormatError(f"the clip holds the {' and '.join(self.hands)} hand(s), not {missing or 'none'}: "
                                  f"give one or more of {sorted(self.hands)}")
        return replace(self, hands={s: self.hands[s] for s in sides}, present={s: self.present[s] for s in sides})

    def mirrored(self) -> "MotionClip":
        return replace(
            self,
            hands={other_side(s): p.mirrored() for s, p in self.hands.items()},
            present={other_side(s): m for s, m in self.present.items()},
        )

    # ----------------------------------------------------------------- file format
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for s, pose in self.hands.items():
            for k in POSE_FIELDS:
                values = getattr(pose, k)
                with np.errstate(over="ignore"):
                    stored = values.astype(np.float32)
                if not np.all(np.isfinite(stored)):  # (saved as inf: a file its own load refuses)
                    frame = int(np.argwhere(~np.isfinite(stored))[0][0])
                    big = values[frame][~np.isfinite(stored[frame])][0]
                    raise PoseFormatError(f"{hand_array_name(s, k)} holds {big:g} in frame {frame}, beyond float32's "
                                          "range (3.4e38), in which clips are stored")
                arrays[hand_array_name(s, k)] = stored
            arrays[hand_array_name(s, "present")] = np.asarray(self.present[s], dtype=bool)
        return arrays

    def metadata(self) -> dict[str, Any]:
        return {
            "format": MOTION_FORMAT,
            "version": MOTION_VERSION,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "hand_model": self.hand_model,
            "units": "m",
            "frame": MODEL_FRAME_DESCRIPTION,
            "sides": [s for s in SIDES if s in self.hands],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                    strict: bool = True) -> "MotionClip":
        """Rebuild a clip; ``strict`` (files) also refuses arrays that are not part of it."""
        if meta.get("format") != MOTION_FORMAT:
            raise PoseFormatError(f"not a HandForge motion (format {meta.get('format')!r}, expected {MOTION_FORMAT!r})")
        if meta.get("version") != MOTION_VERSION:
            raise PoseFormatError(
                f"motion format version {meta.get('version')!r} is not supported (this HandForge reads "
                f"version {MOTION_VERSION}): upgrade HandForge"
            )
        if meta.get("units", "m") != "m":
            raise PoseFormatError(f"units {meta.get('units')!r} are not supported: HandForge motions are in metres")
        sides = meta.get("sides")
        if not isinstance(sides, list) or not sides:
            raise PoseFormatError("motion metadata has no 'sides' list")
        if not all(isinstance(s, str) and s in SIDES for s in sides) or len(set(sides)) != len(sides):
            raise PoseFormatError(f"motion metadata 'sides' must list 'left' and/or 'right' once each, got {sides!r}")
        expected = {hand_array_name(s, k) for s in sides for k in (*POSE_FIELDS, "present")}
        missing = sorted(expected - set(arrays))
        if missing:
            raise PoseFormatError(f"motion is missing arrays {missing}")
        unknown = sorted(set(arrays) - expected - {"meta"})
        if unknown and strict:
            result = any(name.startswith("samples.") for name in unknown)  # (a job's result, read as a file)
            raise PoseFormatError(f"motion file has unexpected arrays {unknown}" + (
                ": it is a motion job's result of several samples; handforge_shared.client.motion_clips(result) "
                "reads each of them as a clip" if result else ""))
        hands = {s: HandPose(**{k: arrays[hand_array_name(s, k)] for k in POSE_FIELDS}) for s in sides}
        present = {s: np.asarray(arrays[hand_array_name(s, "present")]) for s in sides}
        clip = cls(
            hands=hands,
            present=present,
            fps=meta.get("fps"),
            hand_model=meta.get("hand_model"),
            extra=meta.get("extra", {}),
        )
        frames = meta.get("num_frames")
        if isinstance(frames, bool) or not isinstance(frames, (int, float, type(None))):  # ("233" said "metadata
            # says 233 frames but the arrays hold 233")
            raise PoseFormatError(f"metadata 'num_frames' must be a number of frames, got {frames!r}")
        if frames not in (None, clip.num_frames):
            raise PoseFormatError(f"metadata says {meta['num_frames']} frames but the arrays hold {clip.num_frames}")
        return clip

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a failed write leaves no partial file behind."""
        arrays = self.to_arrays()
        arrays["meta"] = np.array(json.dumps(self.metadata()))
        return write_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MotionClip":
        arrays, meta = read_npz(path)
        try:
            return cls.from_arrays(meta, arrays)
        except (ValueError, TypeError) as exc:  # PoseFormatError, or a check elsewhere (e.g. a side's name)
            raise PoseFormatError(f"{path}: {exc}") from None


def write_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".npz":  # (a capital .NPZ, as some systems name files, is one too)
        raise PoseFormatError(f"{path}: HandForge writes .npz files, give a path ending in .npz")
    # Compressed: motions shrink ~3.6x (a 20,000-clip corpus 1.9 GB → 0.5 GB) for ~2 ms a clip. The archive is
    # written as np.savez_compressed writes it, but closed on a failure too: savez left its ZipFile open on a
    # full disk, whose finaliser later wrote to the closed file ("Exception ignored ... seek of closed file").
    with atomic_file(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return path


def read_npz(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load every array of an `.npz` (never unpickling) and its JSON ``meta`` entry.

    Sizes come from the zip directory and each array's header and are checked before anything is
    inflated; only booleans, integers and floats (and the 0-d text ``meta``) are accepted. Every
    problem, whatever the damaged bytes make zipfile, zlib or numpy raise, is a ``PoseFormatError``
    naming the file.
    """
    arrays = read_npz_arrays(path, max_bytes)
    return arrays, _parsed_meta(Path(path), arrays.pop("meta", None), arrays)


def read_npz_arrays(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """Every array of an `.npz` with ``read_npz``'s checks (a regular file, sizes from the zip directory and
    the headers, numbers only), a ``meta`` entry not needed: a file of arrays a user gives (a job's inputs)."""
    path = _regular_file(path)
    try:
        return _read_npz_arrays(path, max_bytes)
    except PoseFormatError as exc:
        raise PoseFormatError(f"{path}: {exc}") from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, NotImplementedError (compression), EOFError, ...
        raise PoseFormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def read_npz_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON ``meta`` entry of an `.npz` (its arrays stay compressed on disk), read with ``read_npz``'s
    checks: a regular file, sizes from the headers, at most ``MAX_META_BYTES``; a ``PoseFormatError`` naming
    the file otherwise."""
    path = _regular_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [m.filename.removesuffix(".npy") for m in archive.infolist()]
            member = next((m for m in archive.infolist() if m.filename == "meta.npy"), None)
            if member is None:
                meta_array = None
            else:
                with archive.open(member) as fh:
                    meta_array = _read_npy(fh, "meta", member.file_size)
    except PoseFormatError as exc:
        raise PoseFormatError(f"{path}: {exc}") from None
    except Exception as exc:  # as read_npz
        raise PoseFormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return _parsed_meta(path, meta_array, names)


def _regular_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise PoseFormatError(f"{path} is a folder: choose a .npz file inside it")
    if path.exists() and not path.is_file():  # (a FIFO is there, not missing; reading it waits for a writer)
        raise PoseFormatError(f"{path} is not a regular file ({file_kind(path)}): give a .npz file")
    if not path.is_file():
        raise PoseFormatError(f"{path}: no such file")
    return path


# An interaction job's result arrays (the backend's Candidates.arrays, the demo's interaction.npz): no 'meta' entry,
# and no reader of files takes them, so a user who tries them as a motion clip is told what they hold
CANDIDATE_ARRAYS = frozenset({"score", "max_depth", "gap", "limit"})


def _parsed_meta(path: Path, meta_array: np.ndarray | None, names: Iterable[str] = ()) -> dict[str, Any]:
    if meta_array is None:
        names = set(names)
        if CANDIDATE_ARRAYS <= names and any(hand_array_name(side, "hand_pose") in names for side in SIDES):
            raise PoseFormatError(
                f"{path} holds interaction candidates (an interaction job's result, as the demo's interaction.npz), "
                "not a motion clip: HandForge reads candidates from no file (sample them in Blender with Interaction "
                "› Sample Interaction); Import Motion reads motion clips, the .npz files Export Motion, "
                "MotionClip.save and the demo (its inbetween.npz) write")
        raise PoseFormatError(f"{path}: no 'meta' entry; not a HandForge file")
    if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
        raise PoseFormatError(f"{path}: 'meta' must be one JSON text, got {meta_array.dtype} {meta_array.shape}")
    try:
        meta = parse_json(str(meta_array), max_depth=MAX_META_DEPTH)
    except ValueError as exc:
        raise PoseFormatError(f"{path}: 'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise PoseFormatError(f"{path}: 'meta' must be a JSON object")
    return meta


def motion_files(folder: str | os.PathLike) -> list[Path]:
    """The ``*.npz`` files of a folder of motion clips (``.NPZ`` too: a clip so named was skipped, unsaid), in
    name order: the one listing of every command that reads such a folder. An entry so named that is not a
    regular file raises ``PoseFormatError`` naming it, as a damaged clip does (a FIFO, read, waited for a
    writer for ever; a folder was read as a clip that could not be opened)."""
    if not Path(folder).is_dir():
        return []  # (as glob gave)
    paths = sorted(path for path in Path(folder).iterdir() if path.suffix.lower() == ".npz")
    for path in paths:
        if not path.is_file():
            raise PoseFormatError(f"{path} is not a regular file ({file_kind(path)}): a folder of motion clips "
                                  "holds .npz files only; move it out or rename it")
    return paths


def _read_npz_arrays(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        total = sum(member.file_size for member in members)
        if total > max_bytes:
            raise PoseFormatError(f"its arrays take {total:,} bytes uncompressed, more than the {max_bytes:,} "
                                  "HandForge reads from one file")
        arrays: dict[str, np.ndarray] = {}
        for member in members:
            name = member.filename.removesuffix(".npy")
            if name == member.filename or name in arrays:
                raise PoseFormatError(f"holds {member.filename!r}, not one .npy array per name")
            with archive.open(member) as fh:
                arrays[name] = _read_npy(fh, name, member.file_size)
    return arrays


def _read_npy(fh: Any, name: str, stored_size: int) -> np.ndarray:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise PoseFormatError(f"array {name!r} is in .npy format version {version}, HandForge reads 1.0 and 2.0")
    if dtype.hasobject:
        raise PoseFormatError(f"array {name!r} holds pickled objects; HandForge files never do")
    if dtype.kind not in "b" + REAL_KINDS and not (name == "meta" and dtype.kind == "U"):
        raise PoseFormatError(f"array {name!r} has dtype {dtype}; HandForge files hold booleans, integers and floats")
    nbytes = math.prod(shape) * dtype.itemsize
    if name == "meta" and nbytes > MAX_META_BYTES:
        raise PoseFormatError(f"its 'meta' text takes {nbytes:,} bytes, more than the {MAX_META_BYTES:,} of any "
                              "HandForge file's metadata")
    if fh.tell() + nbytes != stored_size:  # the header's shape must account for exactly the stored bytes
        raise PoseFormatError(f"array {name!r} says shape {shape} ({nbytes:,} bytes) but stores "
                              f"{stored_size - fh.tell():,} bytes")
    data = bytearray(nbytes)
    if fh.readinto(data) != nbytes:
        raise PoseFormatError(f"array {name!r} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
