"""How well images match their hand labels, per sample and over a folder in the export layout
(``samples/*/labels.json`` + ``rgb.png``: ``handforge export`` and generated images alike), and a
filter that keeps the aligned samples (``handforge eval image``; dataset runs call ``passing``).

Measured with the detector of ``handforge.evaluation.landmarks``: per labelled hand whether it was
found, its confidence, whether the detector's handedness agrees, and the 2D keypoint errors
(normalised by the label's whole-hand box ``bbox_projected``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from handforge.evaluation.landmarks import PCK_THRESHOLD, detect, keypoint_errors, match
from handforge.export.folder import finished_indices, sample_dir, unfinished_names
from handforge.export.samples import LabelsError, read_labels, size_problem

PCK_KEY = f"pck@{PCK_THRESHOLD:g}"


def sample_folders(root: str | Path) -> list[Path]:
    """The sample folders of an export-layout folder, in order; a clear error when there are none. Only
    the folders the export names as finished samples: not ``.partial-NNNNNN`` (an export killed mid-write,
    its labels maybe cut short) nor a copy such as "000003 copy" (the same sample twice)."""
    root = Path(root).expanduser()  # as open_corpus: "~/renders" quoted, or after "=", reaches here unexpanded
    if not root.is_dir():  # (a typo was said as an export with no samples)
        what = f"{root} is a file, not a folder" if root.exists() else f"{root}: no such folder"
        raise ValueError(f"{what}; give a folder written by `handforge export` (or generated images in its layout)")
    folders = [sample_dir(root, index) for index in finished_indices(root, count=sys.maxsize)]
    if not folders:
        raise ValueError(f"no samples/*/labels.json under {root}: give a folder written by `handforge export` "
                         "(or generated images in its layout)")
    return folders


def evaluate_image(image: np.ndarray, labels: dict, min_confidence: float = 0.5) -> dict:
    """One image against its ``labels.json`` content: per labelled hand in view, the detection and
    its errors (``None`` when undetected), and how many detections matched no label."""
    labelled = {side: np.asarray(hand["keypoints_2d"], np.float64) for side, hand in labels["hands"].items()
                if hand.get("bbox_projected") is not None}  # a hand wholly outside the image cannot be found
    detected = detect(image, min_confidence)
    matched = match(detected, labelled)
    hands = {}
    for side, keypoints in labelled.items():
        found = matched.get(side)
        if found is None:
            hands[side] = {"detected": False}
            continue
        errors = keypoint_errors(found.keypoints, keypoints, labels["hands"][side]["bbox_projected"])
        hands[side] = {"detected": True, "confidence": found.score, "handedness_agrees": found.side == side,
                       **errors.as_dict()}
    return {"hands": hands, "detections": len(detected), "unmatched_detections": len(detected) - len(matched)}


def evaluate_sample(folder: str | Path, min_confidence: float = 0.5) -> dict:
    from PIL import Image

    folder = Path(folder)
    try:
        labels = read_labels(folder)
    except LabelsError as exc:  # (one labels check with the export's: a hand's edited box was a KeyError)
        raise ValueError(f"{exc}: give a sample as `handforge export` writes it") from None
    named = labels["files"].get("rgb")
    image_name = named or "rgb.png"
    if not (folder / image_name).is_file():
        if named:  # made, and gone since: not the engine's fault (its advice was to export with one)
            raise ValueError(f"{folder} has lost its {image_name}, which its labels.json names: delete the sample's "
                             "folder and run the same export again, which makes it anew")
        raise ValueError(f"{folder} has no {image_name}: export with \"rgb\" in the spec's outputs and an RGB "
                         "engine (workbench, cycles or generate), not --engine none")
    try:
        with Image.open(folder / image_name) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as exc:  # (a header claiming 400 million pixels: the latter)
        raise ValueError(f"cannot read {folder / image_name} as an image: {exc}") from exc
    problem = size_problem(folder / image_name, (rgb.shape[1], rgb.shape[0]), labels)
    if problem:  # (measured as it was, a resized image's scale came out as keypoint error)
        raise ValueError(f"{problem}: evaluate the image at the size it was labelled at")
    return {"sample": folder.name, **evaluate_image(rgb, labels, min_confidence)}


def passes(result: dict, keep_below_px: float, allow_missing: bool = False) -> bool:
    """Whether a sample's labels fit its image: every labelled hand in view detected (or, with
    ``allow_missing``, at least one) and each detected hand's mean keypoint error below the bound."""
    hands = result["hands"].values()
    found = [h for h in hands if h["detected"]]
    if not found or (not allow_missing and len(found) < len(hands)):
        return False
    return all(h["mean_px"] < keep_below_px for h in found)


def summarise(results: list[dict]) -> dict:
    hands = [h for r in results for h in r["hands"].values()]
    found = [h for h in hands if h["detected"]]

    def mean(key):
        return float(np.mean([h[key] for h in found])) if found else None

    return {"samples": len(results), "labelled_hands": len(hands), "detected_hands": len(found),
            "detection_rate": len(found) / len(hands) if hands else None,
            "confidence": mean("confidence"), "handedness_agreement": mean("handedness_agrees"),
            "mean_px": mean("mean_px"), "mean_normalised": mean("mean_normalised"), "mse_2d": mean("mse_2d"),
            PCK_KEY: mean(PCK_KEY), "unmatched_detections": sum(r["unmatched_detections"] for r in results)}


def evaluate_folder(root: str | Path, min_confidence: float = 0.5) -> dict:
    """``{"samples": [per-sample results], "summary": {...}}`` for an export-layout folder."""
    results = [evaluate_sample(folder, min_confidence) for folder in sample_folders(root)]
    # the sample folders left out for want of labels: said, not skipped silently
    return {"samples": results, "summary": summarise(results),
            "without_labels": unfinished_names(Path(root).expanduser())}


def passing(root: str | Path, keep_below_px: float, allow_missing: bool = False,
            min_confidence: float = 0.5) -> list[str]:
    """The names of the samples under ``root`` whose labels fit their images (see ``passes``)."""
    return [r["sample"] for r in evaluate_folder(root, min_confidence)["samples"]
            if passes(r, keep_below_px, allow_missing)]
