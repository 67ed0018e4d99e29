"""The pose browser's contents: the built-in pose library with its thumbnails, and the artist's
own poses in a user library.

Built-in poses come from ``handforge_shared.pose_library``; their thumbnails (``thumbnails/<name>.png``,
rendered by ``scripts/pose_thumbnails.py``) are loaded once into a ``bpy.utils.previews`` collection.

The user library is one JSON file in Blender's user config folder
(``bpy.utils.user_resource('CONFIG', path="handforge")/user_poses.json``), never inside the add-on,
so it survives add-on updates and reinstalls. A pose is kept as anatomical angles in degrees
(``handforge_shared.anatomy``): the same numbers pose a left or a right hand, on any rig.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import bpy
import bpy.utils.previews
import numpy as np

from . import pose as pose_conv
from handforge_shared import anatomy, pose_library
from handforge_shared.files import atomic_file, parse_json

THUMBNAILS = Path(__file__).resolve().parent / "thumbnails"
USER_FORMAT = "handforge.user_poses"
USER_VERSION = 1
MAX_NAME = 64

_previews = None


# ---------------------------------------------------------------------- built-in poses and thumbnails
def thumbnail(name: str):
    """The ``ImagePreview`` of a built-in pose's thumbnail, loaded once (None where there is none)."""
    global _previews
    if _previews is None:
        _previews = bpy.utils.previews.new()
    if name not in _previews:
        path = THUMBNAILS / f"{name}.png"
        if not path.is_file():
            return None
        _previews.load(name, str(path), "IMAGE")
    return _previews[name]


def thumbnail_icon(name: str) -> int:
    """The icon id of a built-in pose's thumbnail for ``template_icon`` (0: none, or no UI)."""
    preview = thumbnail(name)
    return preview.icon_id if preview is not None else 0


def matches(search: str, *texts: str) -> bool:
    """Whether every word of ``search`` occurs in one of ``texts`` (case and '_' ignored)."""
    haystack = " ".join(texts).replace("_", " ").lower()
    return all(word in haystack for word in search.replace("_", " ").lower().split())


def builtin_names(search: str = "") -> list[str]:
    """Built-in pose names, in menu order, whose name, category or description match ``search``."""
    return [n for n in pose_library.names()
            if matches(search, n, pose_library.spec(n).category, pose_library.describe(n))]


# ---------------------------------------------------------------------- the user library
def user_library_path(create: bool = False) -> Path:
    folder = bpy.utils.user_resource("CONFIG", path="handforge", create=create)
    if not folder:  # Blender's "" where it cannot make the folder: the library went to the working folder, unsaid
        where = Path(bpy.utils.user_resource("CONFIG")) / "handforge"
        raise ValueError(f"the user pose library's folder {where} cannot be made (a file of that name is there?): "
                         "move that away, then save again")
    return Path(folder) / "user_poses.json"


_cache: tuple[tuple, dict[str, np.ndarray]] | None = None  # (file identity, poses): the panel redraws often


def load_user_poses() -> dict[str, np.ndarray]:
    """The artist's poses, name → (15, 3) anatomical angles in radians ({} when none saved yet)."""
    global _cache
    path = user_library_path()
    if not path.is_file():
        return {}
    stat = path.stat()
    identity = (str(path), stat.st_mtime_ns, stat.st_size)
    if _cache is not None and _cache[0] == identity:
        return dict(_cache[1])
    fix = f"fix or move away {path} (HandForge then starts a new user library)"
    try:
        data = parse_json(path.read_text(encoding="utf-8"))  # nested too deeply: a ValueError, not RecursionError
    except (OSError, ValueError) as exc:  # (UnicodeDecodeError, JSONDecodeError, NestedTooDeeply)
        raise ValueError(f"the user pose library cannot be read ({exc}): {fix}") from None
    if (not isinstance(data, dict) or data.get("format") != USER_FORMAT or not isinstance(data.get("poses"), dict)
            or not isinstance(data.get("version", 0), int)):
        raise ValueError(f"{path} is not a HandForge user pose library: {fix}")
    if data.get("version", 0) > USER_VERSION:
        raise ValueError(f"{path} was written by a newer HandForge (version {data['version']}): update the add-on")
    poses = {}
    for name, degrees in data["poses"].items():
        try:
            arr = np.asarray(degrees, dtype=np.float64) if isinstance(degrees, list) else np.empty(0)
        except (TypeError, ValueError):  # hand-edited: a string or a nested list among the numbers
            arr = np.empty(0)
        if arr.shape != (anatomy.NUM_FINGER_JOINTS, 3) or not np.all(np.isfinite(arr)):
            raise ValueError(f"pose {name!r} in {path} is not 15 × 3 finite angles in degrees: {fix}")
        # saved poses hold a joint's angles, within ±180° (±360°: room for a hand-edited turn the other way round);
        # far beyond, hand-edited, it posed wrapped, meaningless rotations
        if np.abs(arr).max() > 360.0:
            raise ValueError(f"pose {name!r} in {path} has an angle beyond ±360° ({np.abs(arr).max():g}°): {fix}")
        poses[name] = np.radians(arr)
    _cache = (identity, poses)
    return dict(poses)


def _write_user_poses(poses: dict[str, np.ndarray]) -> Path:
    path = user_library_path(create=True)
    data = {"format": USER_FORMAT, "version": USER_VERSION,
            "poses": {name: np.round(np.degrees(a), 6).tolist() for name, a in sorted(poses.items())}}
    with atomic_file(path) as fh:  # a crash mid-write leaves the old library whole
        json.dump(data, fh, indent=1)
    return path


def check_name(name: str) -> str:
    """A user pose's name as typed → as kept: without surrounding spaces (Save, Apply and Delete alike)."""
    clean = name.strip()
    if not clean:
        raise ValueError("the pose has no name: type one in the Name field")
    if len(clean) > MAX_NAME:
        raise ValueError(f"the name is {len(clean)} characters long: use at most {MAX_NAME}")
    # a line break (a script's name, or one pasted) broke the pose list's rows in two
    unseen = sorted({ascii(c)[1:-1] for c in clean if unicodedata.category(c) in ("Cc", "Zl", "Zp")})
    if unseen:
        raise ValueError(f"the name holds {', '.join(unseen)}, which the pose list cannot show: use letters, digits, "
                         "spaces and punctuation")
    return clean


def save_user_pose(name: str, angles: np.ndarray, overwrite: bool = False) -> Path:
    name = check_name(name)
    poses = load_user_poses()
    if name in poses and not overwrite:
        raise ValueError(f"a user pose named {name!r} exists: choose another name or tick Overwrite")
    poses[name] = np.asarray(angles, dtype=np.float64)
    return _write_user_poses(poses)


def _kept_name(name: str, poses: dict) -> str:
    """The name ``name`` (as typed, or as a browser button passes it) is kept under in ``poses``. One the library
    holds exactly is that one: a hand-edited file's " fist " or an over-long name was listed in the browser, and
    its Apply and Delete buttons said there was no such pose, or that the name was too long."""
    return name if name in poses else check_name(name)


def user_pose(name: str) -> np.ndarray:
    """The saved angles of the user pose ``name`` (as typed)."""
    poses = load_user_poses()
    name = _kept_name(name, poses)
    if name not in poses:
        raise ValueError(f"there is no user pose named {name!r}: save one with Save Pose first")
    return poses[name]


def delete_user_pose(name: str) -> str:
    """Delete the user pose ``name`` (as typed); returns its name as kept."""
    poses = load_user_poses()
    name = _kept_name(name, poses)
    if name not in poses:
        raise ValueError(f"there is no user pose named {name!r}")
    del poses[name]
    _write_user_poses(poses)
    return name


def user_names(search: str = "") -> list[str]:
    return [n for n in sorted(load_user_poses(), key=str.lower) if matches(search, n)]


# ---------------------------------------------------------------------- poses on rigs
def finger_angles(arm_obj) -> np.ndarray:
    """(15, 3) anatomical angles of a rig's finger pose as shown (what a user pose stores). Where a bone constraint
    acts (the joint limits, the artist's IK), the pose shown, as Copy and Mirror read it: from the channels, a
    finger held at its limit was saved as it was dragged beyond it (69° hyperextended where 5° showed)."""
    pose = pose_conv.read_pose(arm_obj)
    return anatomy.hand_pose_to_anatomical(pose.hand_pose, pose_conv.bone_frames(arm_obj), arm_obj.handforge.side)


def hand_pose_of(angles: np.ndarray, arm_obj) -> np.ndarray:
    """(45,) hand_pose of anatomical angles on this rig (its side and its joint frames)."""
    return anatomy.anatomical_to_hand_pose(angles, pose_conv.bone_frames(arm_obj), arm_obj.handforge.side)


def unregister() -> None:
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
