"""Labelled renders of a Blender scene: its hands over a frame range, seen by its cameras.

The add-on's *Export Labelled Renders* sends, per exported frame, each hand's pose parameters as the
rig holds them (the armature's own space, model axes), each armature's ``matrix_world`` and each
camera's Blender settings. Here the cameras become ``Camera``s through
``handforge.render.camera.from_blender`` (the one camera model), each hand is moved by its armature's
transform into the Blender world (in model axes: x = Mᵀ·x_blender), and
``handforge.export.run.write_dataset`` writes the dataset. Sample ``f·C + c`` is the f-th exported
frame seen by camera c. Lighting, background and skin tone of the RGB images are drawn per sample
from (seed, index), as in ``handforge export``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from handforge.export.folder import DIGEST, HAND_MODEL, SETTINGS, FolderTaken, claim_folder
from handforge.export.labels import moved_pose
from handforge.export.run import HAND_THREADS, begin_label_scene, hand_model_identity, write_dataset
from handforge.runtime import torch_threads
from handforge.hands.posed import posed_hand
from handforge.export.sampler import SENSOR_MM, Scene, sample_look
from handforge.export.spec import ExportSpec, parse_spec
from handforge.render.camera import BlenderCamera, Camera, from_blender, not_rigid
from handforge_shared.files import existing_ancestor, refused_new_files
from handforge_shared.poses import POSE_FIELDS, HandPose, TwoHandPose, hand_array_name
from handforge_shared.skeleton import MODEL_TO_BLENDER, SIDES

RECORD_OF = "scene, frame range or settings"  # what a folder's record names in a refusal (``claim_folder``)
CAMERA_ARRAYS = ("matrix_world", "lens", "sensor", "shift")
# a Blender render stopped as hung: the add-on has no timeout to raise (handforge export's --sample-timeout is not its)
SLOW_HINT = "render them faster: with Workbench, or fewer Cycles Samples in Export Labelled Renders"


class BlenderExportError(ValueError):
    """The request or the output folder cannot be used; the message says what to change."""


@dataclass(frozen=True)
class CameraTrack:
    """One Blender camera over the exported frames: ``matrix_world`` (T, 4, 4), ``lens`` (T,) mm,
    ``sensor`` (T, 2) width, height mm, ``shift`` (T, 2)."""

    name: str
    sensor_fit: str
    matrix_world: np.ndarray
    lens: np.ndarray
    sensor: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class BlenderExport:
    frames: list[int]
    poses: dict[str, HandPose]              # side → (T,) poses in the armature's space
    object_matrices: dict[str, np.ndarray]  # side → (T, 4, 4) armature matrix_world
    cameras: list[CameraTrack]
    spec: ExportSpec
    pixel_aspect: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def from_request(cls, params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> BlenderExport:
        frames = [int(f) for f in arrays["frames"]]
        T = len(frames)
        poses, matrices = {}, {}
        for side in SIDES:
            if hand_array_name(side, "global_orient") not in arrays:
                continue
            fields = {f: np.asarray(arrays.get(hand_array_name(side, f), np.zeros((T, n))), np.float64)
                      for f, n in POSE_FIELDS.items()}
            poses[side] = HandPose(**fields)
            matrices[side] = _rigid(np.asarray(arrays[hand_array_name(side, "matrix_world")], np.float64),
                                    f"the {side} hand's armature")
        if not poses:
            raise BlenderExportError("no hand in the request: send <side>.global_orient and <side>.hand_pose")
        cameras = []
        for c, info in enumerate(params["cameras"]):
            cameras.append(CameraTrack(info["name"], info["sensor_fit"],
                                       *(np.asarray(arrays[f"camera.{a}"][c], np.float64) for a in CAMERA_ARRAYS)))
        engine = params["engine"]
        spec = parse_spec({"seed": params["seed"], "samples": T * len(cameras), "hand_model": params["model"],
                           "width": params["width"], "height": params["height"],
                           "render": {"engine": engine, "samples": params["samples"]}})
        aspect = tuple(float(a) for a in params.get("pixel_aspect", (1.0, 1.0)))
        return cls(frames, poses, matrices, cameras, spec, aspect)

    def camera(self, frame: int, camera: int) -> Camera:
        """Camera ``camera`` at the ``frame``-th exported frame, in the model-axes world."""
        track, (px, py) = self.cameras[camera], self.pixel_aspect
        settings = BlenderCamera(matrix_world=track.matrix_world[frame], lens=float(track.lens[frame]),
                                 sensor_width=float(track.sensor[frame, 0]), sensor_height=float(track.sensor[frame, 1]),
                                 sensor_fit=track.sensor_fit, shift_x=float(track.shift[frame, 0]),
                                 shift_y=float(track.shift[frame, 1]), resolution_x=self.spec.width,
                                 resolution_y=self.spec.height, pixel_aspect_x=px, pixel_aspect_y=py)
        return from_blender(settings, world_to_blender=MODEL_TO_BLENDER)


def _rigid(matrices: np.ndarray, what: str) -> np.ndarray:
    if not_rigid(matrices).any():
        scale = np.linalg.norm(matrices[:, :3, :3], axis=1)
        raise BlenderExportError(f"{what} is scaled ({scale.max():.4g}×): clear its scale (Alt-S)")
    return matrices


def posed_hands(model, poses: Mapping[str, HandPose], object_matrices: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """``handforge.hands.posed``'s form in the world: each hand from its model-space pose, moved by its
    armature's transform A as x → Mᵀ·A·M·x (vertices, keypoints, joints, wrist and the pose alike)."""
    M = MODEL_TO_BLENDER
    out = {}
    for side, pose in poses.items():
        A = object_matrices[side]
        rotation, translation = M.T @ A[:3, :3] @ M, M.T @ A[:3, 3]
        hand = posed_hand(model, side, pose)
        out[side] = {**hand, "pose": moved_pose(pose, hand["root"] - pose.transl, rotation, translation),
                     **{key: hand[key] @ rotation.T + translation for key in ("vertices", "keypoints", "joints")},
                     "root": rotation @ hand["root"] + translation}
    return out


def _settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The request's settings that decide the dataset's content (see ``request_record``)."""
    return {k: v for k, v in params.items() if k not in ("out", "command")
            and not (k == "samples" and params.get("engine") != "cycles")}


def request_record(params: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What a dataset folder records of the request (a rerun of the same one resumes): a sha256 of
    everything that decides the dataset's content — not the output folder, the command the card records
    (it names the .blend file and Blender's version: saving the scene under a name blocked the resume) or
    Cycles' samples when Cycles does not render — and, for a refusal to name what differs, the settings
    and frames it covers."""
    settings = _settings(params)
    frames = [int(f) for f in np.asarray(arrays["frames"]).ravel()]
    return {DIGEST: _digest(settings, arrays), SETTINGS: {
        **settings, "frames": f"{frames[0]} to {frames[-1]}, {len(frames)} frame(s)" if frames else "none"}}


def _digest(settings: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        if arr.dtype.kind in "iu":  # frame numbers: the same whether sent as int32 or int64
            arr = arr.astype(np.int64)
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def check_folder(out: str, record: dict[str, Any]) -> Path:
    """The output folder, if it can take this export: new, empty, or holding the same request's
    (unfinished) export, which is then resumed. Checked before the job is queued and again at its start."""
    try:
        path = Path(out).expanduser()
        if "\0" in out:
            raise ValueError("it holds a NUL character")
        if not path.is_absolute():
            raise BlenderExportError(f"the output folder {out!r} is not an absolute path: choose a folder "
                                     "(in Blender, save the .blend first to use // relative paths)")
        if path.exists() and not path.is_dir():
            raise BlenderExportError(f"{path} is a file: choose a folder for the dataset")
        path.resolve()  # a loop of links: exists() says False, and the job failed at its start (claimed_folder)
        existing = existing_ancestor(path)
    except BlenderExportError:
        raise
    # ~nosuchuser, a name too long for the file system, NUL, a loop of links (RuntimeError before Python 3.13)
    except (RuntimeError, OSError, ValueError) as exc:
        raise BlenderExportError(f"the output folder {out[:200]!r} cannot be used: {exc}; choose another "
                                 "folder") from None
    if not existing.is_dir():  # (it said "cannot write into" the file)
        raise BlenderExportError(f"{existing} is a file, not a folder: choose an output folder that is not inside it")
    if not _writable(existing):
        raise BlenderExportError(f"cannot write into {existing}: choose a folder you can write to")
    refused = refused_new_files(existing) if existing != path else ""  # (the job makes the folder)
    if refused:
        raise BlenderExportError(f"cannot write into {existing}: it refuses new files ({refused}); choose a folder "
                                 "you can write to")
    if path.is_dir():
        try:
            claim_folder(path, folder_record(record), RECORD_OF, write=False)
        except FolderTaken as exc:
            raise BlenderExportError(str(exc)) from None
    return path


def folder_record(request: dict[str, Any], model=None) -> dict[str, Any]:
    """What the dataset folder records of the request that made it (``request_record``), and of the hand
    ``model`` that poses its samples (none in the check before the job is queued: the hand model is
    compared when the job starts)."""
    identity = {HAND_MODEL: hand_model_identity(model)} if model is not None else {}
    return {**request, **identity}


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def export_blender_scene(request: BlenderExport, out: Path, record: dict[str, Any], model, command: str,
                         progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Write the dataset (resumable: a rerun of the same request skips finished samples).
    ``progress(done, total, eta_seconds)`` after each sample; it may raise to stop."""
    cache: dict[int, dict] = {}  # the posed hands of the current frame, shared by its cameras
    spec, count = request.spec, len(request.cameras)

    def make(index: int, model, gl, rgb):
        f, c = divmod(index, count)
        if f not in cache:
            cache.clear()
            with torch_threads(HAND_THREADS):  # one sample's hands: see run.HAND_THREADS
                cache[f] = posed_hands(model, {s: p[f] for s, p in request.poses.items()},
                                       {s: m[f] for s, m in request.object_matrices.items()})
        hands = cache[f]
        camera = request.camera(f, c)
        centre = np.concatenate([h["keypoints"] for h in hands.values()]).mean(axis=0)
        scene = Scene(index=index, hands=TwoHandPose(**{s: h["pose"] for s, h in hands.items()}),
                      origin=f"blender:{request.cameras[c].name}#{request.frames[f]}",
                      rng=np.random.default_rng([spec.seed, index]))
        scene.camera_params = {"blender_camera": request.cameras[c].name, "frame": request.frames[f],
                               "distance": float(np.linalg.norm(camera.position - centre)),
                               "focal": float(camera.K[0, 0] * SENSOR_MM / max(camera.width, camera.height))}
        sample_look(spec, scene)
        return begin_label_scene(spec, scene, hands, camera, gl, rgb)  # (finished after the next is begun)

    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress(done, total, elapsed / done * (total - done))

    try:
        return write_dataset(spec, out, make, command=command, progress=report, model=model,
                             settings={"source": "a Blender scene's hands and cameras",
                                       "frames": [request.frames[0], request.frames[-1]],
                                       "cameras": [c.name for c in request.cameras]},
                             record=folder_record(record, model), record_of=RECORD_OF, slow_hint=SLOW_HINT)
    except FolderTaken as exc:  # taken since the check, or a folder that cannot be made
        raise BlenderExportError(str(exc)) from None
