"""Scene samplers: each sample's hands, camera, lighting, background and skin tone from (seed, index).

Every sample draws from its own generator ``np.random.default_rng([seed, index])``, so a sample is
the same whatever else is exported, in any order, resumed or not.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import cachetools
import numpy as np

from handforge.export.spec import ExportSpec, background_files, cover_size
from handforge.render.camera import Camera, look_at
from handforge_shared import pose_library
from handforge_shared.poses import HandPose, MotionClip, TwoHandPose, side_by_side
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handforge_shared.skeleton import NUM_BETAS

WORLD_UP = np.array([0.0, 1.0, 0.0])  # the model frame's up (Blender's +Z)
SENSOR_MM = 36.0  # focal lengths are full-frame equivalents


@dataclass
class Scene:
    index: int
    hands: TwoHandPose
    origin: str                       # where the pose came from
    rng: np.random.Generator = field(repr=False)
    camera: Camera | None = None
    camera_params: dict[str, float] = field(default_factory=dict)
    lighting: dict[str, Any] = field(default_factory=dict)
    background: dict[str, Any] = field(default_factory=dict)
    skin_tone: str = ""


def _tilted(pose: HandPose, rng: np.random.Generator, sigma: float = 0.3) -> HandPose:
    turn = axis_angle_to_matrix(rng.normal(0.0, sigma, 3))
    return pose.replace(global_orient=matrix_to_axis_angle(turn @ axis_angle_to_matrix(pose.global_orient)))


def library_pair(spec: ExportSpec, rng: np.random.Generator) -> tuple[TwoHandPose, str]:
    """Two named poses, placed side by side with random spacing, height and wrist tilts."""
    names = spec.poses.names or pose_library.names()
    right_name, left_name = (str(names[i]) for i in rng.integers(len(names), size=2))  # (as rng.choice(names, 2))
    base = side_by_side(separation=float(rng.uniform(0.1, 0.3)))
    sigma = spec.hands.shape_sigma
    betas = np.clip(rng.normal(0.0, sigma, NUM_BETAS), -3, 3) if sigma else np.zeros(NUM_BETAS)
    hands = {}
    for side, name in (("right", right_name), ("left", left_name)):
        placed = base.hand(side)
        pose = pose_library.get(name, side=side).replace(
            global_orient=placed.global_orient, betas=betas,
            transl=placed.transl + np.array([0.0, rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.04)]))
        hands[side] = _tilted(pose, rng)
    return TwoHandPose(**hands), f"library:{right_name}+{left_name}"


@lru_cache(maxsize=8)
def _clip(path: str) -> MotionClip:
    return MotionClip.load(path)


@lru_cache(maxsize=8)
def _too_far(path: str) -> str:
    """Why a corpus clip's hands cannot be posed, too far from the origin ('' when they can), once per clip
    drawn (motion files are checked when the spec is read; a corpus has thousands of clips, not read up front).
    A hand at 1e30 m failed its samples as "look_at: eye and target coincide"."""
    from handforge.datasets import clip_arrays, reach_problem

    return reach_problem(clip_arrays(_clip(path)), [0], [repr(path)])


@lru_cache(maxsize=2)
def _corpus(folder: str, split: str):
    from handforge.datasets import open_corpus

    return open_corpus(folder, split=split)


# clip and frame draws for one sample before a frame with a hand is given up (a corpus split of hand-less clips)
MAX_FRAME_DRAWS = 1_000_000


def clip_frame(spec: ExportSpec, rng: np.random.Generator) -> tuple[TwoHandPose, str]:
    """A random frame of a random clip (motion files or the corpus), with the clip's own shapes. A frame
    without hands is drawn again, clip and frame, from the same stream (still deterministic), in a loop:
    drawn again by recursion, a clip with a hand in one frame of thousands failed samples with a RecursionError."""
    for _ in range(MAX_FRAME_DRAWS):
        if spec.poses.source == "files":
            path = spec.poses.files[int(rng.integers(len(spec.poses.files)))]
            # (expanded as the spec's check reads it: "~/clips/a.npz" passed it, then failed every sample)
            clip, name = _clip(str(Path(path).expanduser())), Path(path).name
        else:
            files = _corpus(spec.poses.corpus, spec.poses.split)
            if len(files) == 0:
                raise ValueError(f"{spec.poses.corpus}: no clips in split {spec.poses.split!r}")
            index = int(rng.integers(len(files)))
            clip, name = _clip(str(files.paths[index])), files.paths[index].name
            far = _too_far(str(files.paths[index]))
            if far:
                raise ValueError(f"poses.corpus: {far}")
        frame = int(rng.integers(clip.num_frames))
        hands = {s: p[frame] for s, p in clip.hands.items() if clip.present[s][frame]}
        if hands:
            return TwoHandPose(**hands), f"{spec.poses.source}:{name}#{frame}"
    raise ValueError(f"poses: no frame with a hand in {MAX_FRAME_DRAWS:,} draws of the spec's clips: give clips whose "
                     "frames mostly show a hand")


def sample_scene(spec: ExportSpec, index: int) -> Scene:
    rng = np.random.default_rng([spec.seed, index])
    hands, origin = library_pair(spec, rng) if spec.poses.source == "library" else clip_frame(spec, rng)
    return Scene(index=index, hands=hands, origin=origin, rng=rng)


def sample_camera(spec: ExportSpec, rng: np.random.Generator, centre: np.ndarray) -> tuple[Camera, dict[str, float]]:
    """A camera on a sphere about ``centre``: azimuth 0 is the person's side (+Z of the model frame,
    where the side-by-side hands' wrists point), elevation above the hands, roll about the view axis."""
    c = spec.camera
    params = {k: float(rng.uniform(*getattr(c, k))) for k in ("distance", "elevation", "azimuth", "focal", "roll")}
    el, az = np.radians(params["elevation"]), np.radians(params["azimuth"])
    direction = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    R, t = look_at(centre + params["distance"] * direction, centre, up=WORLD_UP, roll=np.radians(params["roll"]))
    focal_px = params["focal"] / SENSOR_MM * max(spec.width, spec.height)
    return Camera.from_fov(R, t, spec.width, spec.height, focal_px), params


def sample_look(spec: ExportSpec, scene: Scene) -> None:
    """Lighting, background and skin tone, drawn after the camera."""
    rng = scene.rng
    scene.lighting = {"preset": _pick(rng, spec.lighting), "rotation_deg": float(rng.uniform(0, 360))}
    kind = _pick(rng, spec.background.kinds)
    bg: dict[str, Any] = {"kind": kind}
    if kind == "solid":
        bg["colour"] = rng.uniform(0, 1, 3).round(4).tolist()
    elif kind == "gradient":
        bg["colours"] = rng.uniform(0, 1, (2, 3)).round(4).tolist()
        bg["angle_deg"] = float(rng.uniform(0, 360))
    else:
        files = background_images(spec.background.folder)
        # the image as the spec names it (its folder as written, as the record's inputs are): "~/photos"
        # expanded put the maker's home folder into every label of a dataset meant to be shared
        bg["image"] = str(Path(spec.background.folder) / files[int(rng.integers(len(files)))].name)
        bg["crop"] = rng.uniform(0, 1, 2).round(4).tolist()
    scene.background = bg
    scene.skin_tone = _pick(rng, spec.hands.skin_tones)


def _pick(rng: np.random.Generator, names: Sequence[str]) -> str:
    """One of ``names``, drawn by its index: what ``rng.choice(names)`` draws (the same numbers: a dataset begun
    before is finished alike), without NumPy 1.26's string arrays, which lose a Ctrl-C or SIGTERM raised while
    they are made (``handforge.termination``): 99 in 100 in a loop of such draws."""
    return str(names[int(rng.integers(len(names)))])


@lru_cache(maxsize=4)
def background_images(folder: str) -> tuple[Path, ...]:
    files = background_files(folder)
    if not files:
        raise ValueError(f"background.folder {folder}: no .png or .jpg images in it")
    return files


def background_image(background: dict[str, Any], width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], sRGB."""
    kind = background["kind"]
    if kind == "solid":
        return np.broadcast_to(np.float32(background["colour"]), (height, width, 3)).copy()
    if kind == "gradient":
        a = np.radians(background["angle_deg"])
        ys, xs = np.mgrid[0:height, 0:width] + 0.5
        s = ((xs / width - 0.5) * np.cos(a) + (ys / height - 0.5) * np.sin(a)) / np.sqrt(0.5) + 0.5
        c0, c1 = (np.float32(c) for c in background["colours"])
        return (c0 + np.clip(s, 0, 1)[..., None] * (c1 - c0)).astype(np.float32)
    path = str(Path(background["image"]).expanduser())
    stat = os.stat(path)
    cover = _cover(path, (stat.st_size, stat.st_mtime_ns), width, height)
    fx, fy = background["crop"]
    x0, y0 = round(fx * (cover.shape[1] - width)), round(fy * (cover.shape[0] - height))
    return cover[y0:y0 + height, x0:x0 + width].astype(np.float32) / 255.0


# Background images decoded and scaled to cover an image size, by file (and its size and time: an edited
# file is read again), bounded in bytes per process: decoding and scaling a 12 MP photo took 0.3 s a sample
# (256², this machine), more than Blender's render; a sample crops the cached image, the same pixels.
COVER_CACHE_BYTES = 256 * 2**20


@cachetools.cached(cachetools.LRUCache(COVER_CACHE_BYTES, getsizeof=lambda a: a.nbytes), lock=threading.Lock())
def _cover(path: str, stamp: tuple[int, int], width: int, height: int) -> np.ndarray:
    """The image at ``path`` (read-only uint8 (H, W, 3), sRGB) scaled to cover ``width`` x ``height``."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            # a JPEG decoded at the smallest of 1/1-1/8 of its size that still covers the frame: a 12 MP photo's
            # decoding and scaling for 256² took 0.20 s, now 0.08 s (once per file, but a folder of thousands of
            # photos pays it at nearly every sample); 100 MP, 1.1 GB of memory where 2 % of it is needed
            img.draft(img.mode, cover_size(img.size, width, height))
            if img.mode.startswith("I"):  # 16-bit grayscale (PNG): convert("RGB") clips it at 255, a white image
                img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8))
            img = img.convert("RGB")
            img = img.resize(cover_size(img.size, width, height))
            cover = np.asarray(img)
    except (OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:  # changed since the spec was checked: say which file
        raise OSError(f"background image {path}: {exc}: replace it with the image it was") from None
    cover.flags.writeable = False  # shared by every sample that draws it
    return cover
