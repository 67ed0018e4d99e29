"""COCO keypoints of a dataset (21 keypoints per hand, skeleton, boxes, RLE masks), rebuilt from its
finished samples; pycocotools reads it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from handforge.export.folder import COCO_FILE, SAMPLES, sample_dir
from handforge.export.samples import files_problem, finished_image, sample_labels
from handforge.export.streamed_json import JsonArray, streamed_json
from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS


COCO_CATEGORIES = {"right": 1, "left": 2}

# Per-keypoint OKS falloffs for pycocotools' keypoint AP, in our keypoint order: COCOeval assumes COCO's 17
# body keypoints ("operands could not be broadcast together with shapes (21,) (17,)" on ours) unless
# given ``E.params.kpt_oks_sigmas = HAND_OKS_SIGMAS``. COCO-WholeBody's hand values (Jin et al., "Whole-Body
# Human Pose Estimation in the Wild", ECCV 2020, https://arxiv.org/abs/2007.11858), each finger base → tip:
_WHOLEBODY_HAND = {"wrist": (0.029,), "thumb": (0.022, 0.035, 0.037, 0.047), "index": (0.026, 0.025, 0.024, 0.035),
                   "middle": (0.018, 0.024, 0.022, 0.026), "ring": (0.017, 0.021, 0.021, 0.032),
                   "pinky": (0.02, 0.019, 0.022, 0.031)}
HAND_OKS_SIGMAS = np.array([_WHOLEBODY_HAND[name.rstrip("1234")][int(name[-1]) - 1 if name != "wrist" else 0]
                            for name in KEYPOINT_NAMES])  # (our names: "thumb4" the tip, "thumb1" the base)


def coco_keypoints(hand: dict[str, Any], width: int, height: int) -> tuple[list[float], int]:
    """COCO's flat [x, y, v] × 21: v = 2 visible, 1 in the image but hidden, 0 outside or behind the
    camera (x = y = 0; a point behind it projects to a mirrored pixel that can lie in the image)."""
    flat, labelled = [], 0
    depths = [xyz[2] for xyz in hand["keypoints_camera"]]
    for (x, y), visible, z in zip(hand["keypoints_2d"], hand["visible"], depths):
        inside = z > 0 and 0 <= x < width and 0 <= y < height
        v = 2 if visible else (1 if inside else 0)
        flat += [round(x, 3), round(y, 3), v] if v else [0, 0, 0]
        labelled += v > 0
    return flat, labelled


def image_name(sample: dict[str, Any]) -> str:
    """The sample's image as the aggregate files name it: its RGB, else its mesh image."""
    return f"{SAMPLES}/{sample['index']:06d}/{sample['files'].get('rgb', sample['files'].get('mesh'))}"


def coco_image(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's entry in COCO's images (id: its index + 1)."""
    return {"id": sample["index"] + 1, "file_name": image_name(sample),
            "width": sample["camera"]["width"], "height": sample["camera"]["height"]}


def coco_annotations(out: Path, sample: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The sample's entries in COCO's annotations: one per hand with a box, its RLE mask read from
    the sample's ``mask_<side>.png``."""
    from pycocotools import mask as mask_utils

    image_id = sample["index"] + 1
    width, height = sample["camera"]["width"], sample["camera"]["height"]
    for side, hand in sorted(sample["hands"].items()):
        if hand["bbox"] is None:
            continue
        mask = _mask(sample_dir(out, sample["index"]) / sample["files"][f"mask_{side}"])
        rle = mask_utils.encode(np.asfortranarray(mask))
        keypoints, labelled = coco_keypoints(hand, width, height)
        yield {"id": image_id * 2 + (side == "right"), "image_id": image_id, "category_id": COCO_CATEGORIES[side],
               "iscrowd": 0, "bbox": hand["bbox"], "area": float(mask_utils.area(rle)),
               "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
               "keypoints": keypoints, "num_keypoints": labelled}


def _mask(path: Path) -> np.ndarray:
    """A finished sample's mask image as booleans."""
    return np.asarray(finished_image(path)) > 127


@contextlib.contextmanager
def coco_writer(out: Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``coco.json``, written when the block ends, of the samples given to the function it yields (in that
    order). A sample with a file missing or cut short is left out and named: the block's end raises naming
    every one of them (found in one pass: a rerun per damaged sample was needed to find the next), and
    nothing is written."""
    skeleton = [[k + 1, p + 1] for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0]
    images, annotations = JsonArray(), JsonArray()
    damaged = []

    def add(sample: dict[str, Any]) -> None:
        problem = files_problem(sample_dir(out, sample["index"]), sample)
        if problem:
            damaged.append(problem)
            return
        images.append(coco_image(sample))
        annotations.extend(coco_annotations(out, sample))

    with streamed_json(out / COCO_FILE, {
            "info": {"description": "HandForge labelled renders", "keypoint_convention":
                     "pixel coordinates with (0, 0) the top-left image corner; pixel centres at i + 0.5"},
            "categories": [{"id": cid, "name": f"{side}_hand", "supercategory": "hand",
                            "keypoints": list(KEYPOINT_NAMES), "skeleton": skeleton}
                           for side, cid in COCO_CATEGORIES.items()],
            "images": images, "annotations": annotations}):
        yield add
        if len(damaged) == 1:
            raise ValueError(f"{damaged[0]}: delete its sample folder and run again to write it anew")
        if damaged:
            raise ValueError(f"{len(damaged)} finished samples have a file missing or cut short ({'; '.join(damaged[:3])}"
                             f"{' …' if len(damaged) > 3 else ''}): delete their sample folders and run again to "
                             "write them anew")


def write_coco(out: Path, indices: list[int]) -> Path:
    """``coco.json`` of samples ``indices`` (images and annotations in their order)."""
    with coco_writer(out) as add:
        for sample in sample_labels(out, indices):
            add(sample)
    return out / COCO_FILE
