"""InterHand2.6M-style annotations of a dataset (MANO parameters, cameras, 3D joints and the data file, with
the release's keys and units), rebuilt from its finished samples: code written for InterHand2.6M reads them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from handforge.datasets.interhand_files import MM_PER_M, params_kind
from handforge.export.coco import image_name
from handforge.export.folder import INTERHAND
from handforge.export.streamed_json import JsonArray, KeyedJsonObject, streamed_json
from handforge_shared.files import write_atomic
from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS, NUM_KEYPOINTS, SIDES


SPLIT = "export"  # the InterHand2.6M-style split name
# The data file's image file_names are relative to the dataset folder, and InterHand2.6M's loaders read
# <root>/images/<split>/<file_name> (https://github.com/facebookresearch/InterHand2.6M): the card gives this
# command, run in the dataset folder, to make interhand/ such a root (a link, so no image is copied).
IMAGES_LINK = f"mkdir -p {INTERHAND}/images && ln -s ../.. {INTERHAND}/images/{SPLIT}"


def interhand_paths(out: Path, hand_model: str = "mano") -> dict[str, Path]:
    """The InterHand2.6M-style files; ``"params"`` is the release's MANO file for MANO hands, and
    for the open hand a file named for it (``params_kind``)."""
    folder = out / INTERHAND / "annotations" / SPLIT
    params = params_kind(hand_model)
    return {kind: folder / f"InterHand2.6M_{SPLIT}_{name}.json"
            for kind, name in (("params", params), ("camera", "camera"), ("joint_3d", "joint_3d"), ("data", "data"))}


def skeleton_path(out: Path) -> Path:
    """``annotations/skeleton.txt`` beside the split folders: InterHand2.6M's loader reads it (the release ships
    one) before any annotation, and stopped there with FileNotFoundError without it."""
    return out / INTERHAND / "annotations" / "skeleton.txt"


def skeleton_text() -> str:
    """The 42 joints of the joint file, one ``name id parent_id`` line each (single spaces: its loader splits on
    them into exactly three fields; ``#`` lines are skipped): right 0–20, then left 21–41, the wrists the roots."""
    lines = ["# joint_name joint_id joint_parent_id"]
    for slot, prefix in ((0, "r_"), (NUM_KEYPOINTS, "l_")):
        lines += [f"{prefix}{name} {slot + k} {parent if parent < 0 else slot + parent}"
                  for k, (name, parent) in enumerate(zip(KEYPOINT_NAMES, KEYPOINT_PARENTS))]
    return "\n".join(lines) + "\n"


def interhand_mano(sample: dict[str, Any], hands_mean: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The sample's frame in the MANO file: each side's pose, shape and translation, or None."""
    frame = {}
    for side in SIDES:
        hand = sample["hands"].get(side)
        if hand is None:
            frame[side] = None
            continue
        p = hand["params_world"]
        pose = np.asarray(p["hand_pose"]) - (hands_mean[side] if hands_mean else 0.0)
        frame[side] = {"pose": [*p["global_orient"], *pose.tolist()], "shape": p["betas"], "trans": p["transl"]}
    return frame


def interhand_camera(sample: dict[str, Any]) -> dict[str, list[float]]:
    """The sample's camera in each table of the camera file."""
    cam = sample["camera"]
    R, t, K = np.asarray(cam["R"]), np.asarray(cam["t"]), np.asarray(cam["K"])
    return {"campos": (-R.T @ t * MM_PER_M).tolist(), "camrot": R.tolist(), "focal": [K[0, 0], K[1, 1]],
            "princpt": [K[0, 2] - 0.5, K[1, 2] - 0.5]}


def _joint_valid(sample: dict[str, Any]) -> np.ndarray:
    """1 for the joints of the hands the sample has that lie in front of the camera (InterHand2.6M: right
    0–20, left 21–41): its loaders project joints with cam2pixel, which gives a joint behind the camera a
    mirrored pixel. A hand in front but with no pixel in view (outside the image, or hidden) keeps its
    joints valid: InterHand2.6M's joint_valid says the joint's 3D and projection are sound, not that it is
    seen (its loaders find truncation from the crop; hand_type says which hands show)."""
    valid = np.zeros(2 * NUM_KEYPOINTS)
    for slot, side in enumerate(("right", "left")):
        hand = sample["hands"].get(side)
        if hand is not None:
            valid[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = np.asarray(hand["keypoints_camera"])[:, 2] > 0
    return valid


def interhand_joints(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's entry in the joint file."""
    world = np.zeros((2 * NUM_KEYPOINTS, 3))
    for slot, side in enumerate(("right", "left")):
        hand = sample["hands"].get(side)
        if hand is not None:
            world[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = np.asarray(hand["keypoints_world"]) * MM_PER_M
    return {"world_coord": world.tolist(), "joint_valid": _joint_valid(sample).tolist(),
            "hand_type": sample["hand_type"], "hand_type_valid": int(sample["hand_type"] != "none")}


def interhand_data(sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The sample's image and annotation in the data file; None for a sample with no hand in view
    (its loaders want a hand type and a box)."""
    if sample["hand_type"] == "none" or sample["bbox"] is None:
        return None
    i = sample["index"]
    image = {"id": i, "file_name": image_name(sample), "width": sample["camera"]["width"],
             "height": sample["camera"]["height"], "capture": 0, "subject": 0, "seq_name": "handforge",
             "camera": str(i), "frame_idx": i}
    # the box moves with the principal point to pixel centres on integers: a loader crops with it and projects
    # with princpt, so both must be in one convention (width and height do not change)
    x, y, w, h = sample["bbox"]
    annotation = {"id": i, "image_id": i, "bbox": [x - 0.5, y - 0.5, w, h],
                  "joint_valid": _joint_valid(sample).tolist(),
                  "hand_type": sample["hand_type"], "hand_type_valid": 1}
    return image, annotation


@contextlib.contextmanager
def interhand_writer(out: Path, hands_mean: dict[str, np.ndarray] | None,
                     hand_model: str = "mano") -> Iterator[Callable[[dict[str, Any]], None]]:
    """The four InterHand2.6M annotation files (Moon et al., ECCV 2020,
    https://github.com/facebookresearch/InterHand2.6M), written when the block ends, of the samples given
    to the function it yields, and then ``skeleton.txt`` (``skeleton_path``): one capture "0", frame
    index = camera id = sample index. MANO poses are mean-relative as in the release (``hands_mean`` taken
    off: loaders add it back; the open hand's mean is zero), translations in metres; joints and camera
    positions in millimetres; the principal point and the data file's box corner move to InterHand2.6M's
    pixel-centres-on-integers convention (−0.5). Samples with no hand in view are in the MANO, camera and
    joint files but not in the data file (its loaders accept only right, left or interacting hands with a
    box). The MANO, camera and joint files are keyed by the sample index as text, in the order ``dumps``
    sorts keys ("10" before "2"); the data file lists the samples in the order given."""
    paths = interhand_paths(out, hand_model)
    mano, joints = KeyedJsonObject(), KeyedJsonObject()
    cameras = {table: KeyedJsonObject() for table in ("campos", "camrot", "focal", "princpt")}
    images, annotations = JsonArray(), JsonArray()

    def add(sample: dict[str, Any]) -> None:
        key = str(sample["index"])  # (one string, kept by each keyed file)
        mano.put(key, interhand_mano(sample, hands_mean))
        for table, value in interhand_camera(sample).items():
            cameras[table].put(key, value)
        joints.put(key, interhand_joints(sample))
        entry = interhand_data(sample)
        if entry is not None:
            images.append(entry[0])
            annotations.append(entry[1])

    with (streamed_json(paths["params"], {"0": mano}), streamed_json(paths["camera"], {"0": cameras}),
          streamed_json(paths["joint_3d"], {"0": joints}),
          streamed_json(paths["data"], {"images": images, "annotations": annotations})):
        yield add
    write_atomic(skeleton_path(out), skeleton_text())
