"""Dataset writers: one folder per sample (written whole or not at all), COCO keypoints, InterHand2.6M-style
annotations and the dataset card, the last three rebuilt from the finished samples' JSON files.

Layout of an export folder::

    samples/000042/labels.json   self-describing labels (see ``handforge.export.labels``)
    samples/000042/rgb.png mesh.png mask_left.png mask_right.png skeleton.png depth.npy normals.npy
    coco.json                    COCO keypoints (21 per hand, skeleton, boxes, RLE masks)
    interhand/annotations/export/InterHand2.6M_export_{MANO_NeuralAnnot,camera,joint_3d,data}.json
    dataset_card.md, dataset_card.json
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from handforge_shared.files import TEMPORARY_SUFFIX, FolderBusy, folder_lock, write_atomic
from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS, NUM_KEYPOINTS, SIDES

SAMPLES = "samples"
LABELS = "labels.json"
SPEC_RECORD = "export_spec.json"  # what the folder's samples were made from: a spec or a Blender request
PARTIAL_PREFIX = ".partial-"
SPLIT = "export"  # the InterHand2.6M-style split name
INTERHAND = "interhand"  # the InterHand2.6M-style files' folder
COCO_CATEGORIES = {"right": 1, "left": 2}
MM_PER_M = 1000.0
# the camera parameters the card gives ranges of (a Blender scene's cameras have distance and focal only)
CAMERA_RANGES = ("distance", "elevation", "azimuth", "focal", "roll")


def dumps(data: Any) -> str:
    """Deterministic JSON (sorted keys) so equal labels are equal bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)



class ExportBusy(RuntimeError):
    """Another driver holds the dataset folder."""


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """One driver per dataset folder at a time (a second one would redo the first one's samples)."""
    try:
        with folder_lock(out):
            yield
    except FolderBusy:
        raise ExportBusy(f"{out}: another handforge export is writing into this folder; wait for it "
                         "or stop it (a rerun afterwards resumes)") from None


class FolderTaken(ValueError):
    """The output folder holds something else than this export's samples."""


def claim_folder(out: Path, record: dict[str, Any], what: str = "spec", write: bool = True) -> None:
    """Make ``out`` the folder of the export ``record`` describes (a spec's ``to_dict()``, or a Blender
    scene's request), or refuse with ``FolderTaken``: a folder holds one export (its ``SPEC_RECORD``),
    which a rerun of the same one resumes. Refused: a folder with other files, one holding another
    export (``what`` names it: its samples would be mixed with this one's, and its card would
    describe neither), or, when the record has ``samples`` (which may grow: a rerun with more extends
    the dataset), more finished samples than that. ``write=False`` only checks (before a job is queued)."""
    path = out / SPEC_RECORD
    wanted = {k: v for k, v in record.items() if k != "samples"}
    if path.is_file():
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = None
        if not isinstance(held, dict) or {k: v for k, v in held.items() if k != "samples"} != wanted:
            differ = sorted(k for k in set(wanted) | set(held or {}) if k != "samples"
                            and (held or {}).get(k) != wanted.get(k)) if isinstance(held, dict) else ["all"]
            raise FolderTaken(f"{out} holds an export of another {what} (differing: {', '.join(differ)}): choose a "
                              f"new or an empty folder, or rerun with that {what.split(',')[0]} to resume it")
        extra = sum(1 for p in (out / SAMPLES).glob(f"*/{LABELS}")
                    if p.parent.name.isdigit() and int(p.parent.name) >= record["samples"]) if "samples" in record else 0
        if extra:
            raise FolderTaken(f"{out} holds {extra} finished sample(s) beyond the {record['samples']} asked for: ask "
                              "for at least as many as are there, or choose another folder")
    elif out.is_dir() and any(out.iterdir()):
        raise FolderTaken(f"{out} is not empty and holds no HandForge export: choose a new or an empty folder")
    if write:
        write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def sample_dir(out: Path, index: int) -> Path:
    return out / SAMPLES / f"{index:06d}"


def is_finished(out: Path, index: int) -> bool:
    return (sample_dir(out, index) / LABELS).is_file()


def clean_partial(out: Path) -> int:
    """Remove what an interrupted run left half-written (samples, and ``write_atomic``'s temporary
    files of the aggregate files); returns how many."""
    root = out / SAMPLES
    stale = list(root.glob(PARTIAL_PREFIX + "*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    # the aggregate files: at the top and in the InterHand2.6M-style tree (not among the samples)
    pattern = f".*{TEMPORARY_SUFFIX}"  # write_atomic's files of a run killed while it wrote them
    temporary = [p for p in [*out.glob(pattern), *(out / INTERHAND).rglob(pattern)] if p.is_file()]
    for path in temporary:
        path.unlink(missing_ok=True)
    return len(stale) + len(temporary)


@contextlib.contextmanager
def claimed_folder(out: Path, record: dict[str, Any], record_of: str = "spec") -> Iterator[int]:
    """The dataset folder every export writes through: ``out`` made if needed, locked for this run
    (``run_lock``), claimed for ``record`` (``claim_folder``) and cleared of what interrupted runs left
    half-written (yields how many). A run refused or failed before it wrote a sample leaves the folder
    as it found it (no record, and no folder if it made it); one refused because another run holds the
    folder touches nothing of it."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file system that refuses new folders though access() allows them (/proc)
        raise FolderTaken(f"cannot write into {out}: {exc.strerror or exc}; choose a folder you can "
                          "write to") from None
    with run_lock(out):  # ExportBusy: another run's folder, left alone
        fresh = not (out / SPEC_RECORD).exists()
        try:
            claim_folder(out, record, record_of)
            yield clean_partial(out)
        except BaseException:
            samples = out / SAMPLES
            if fresh and {p.name for p in out.iterdir()} <= {SPEC_RECORD, SAMPLES} and not (
                    samples.is_dir() and any(samples.iterdir())):
                (out / SPEC_RECORD).unlink(missing_ok=True)
                for made in (samples, out) if created else (samples,):
                    with contextlib.suppress(OSError):
                        made.rmdir()
            raise


def write_or_fail(out: Path, index: int, make: Any) -> str | None:
    """Make sample ``index`` (``make() -> (labels, images)``) and write it: None, or why it failed (one
    line: the error and where it was raised). One bad sample (a corrupt background image, a full disk)
    is reported in the run's summary and the others go on, in one process as in the workers; a rerun
    retries it."""
    try:
        labels, images = make()
        write_sample(out, index, labels, images)
        return None
    except Exception as exc:
        import traceback

        last = traceback.extract_tb(exc.__traceback__)[-1]
        first = (str(exc).strip().splitlines() or [""])[0]  # one line: Blender's reasons come with its log's tail
        return f"{type(exc).__name__}: {first} ({Path(last.filename).name}:{last.lineno})"


def write_sample(out: Path, index: int, labels: dict[str, Any], images: dict[str, np.ndarray]) -> Path:
    """Write a sample into a hidden folder, then rename it into place: a sample exists whole or not at all.
    ``images``: file name → array (.png: uint8 or bool image; .npy: raw float32 array)."""
    final = sample_dir(out, index)
    partial = final.parent / f"{PARTIAL_PREFIX}{final.name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name, array in images.items():
            if name.endswith(".npy"):
                np.save(partial / name, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
            else:
                Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1)).save(partial / name)
        (partial / LABELS).write_text(dumps(labels) + "\n", encoding="utf-8")
    except BaseException:  # e.g. the disk is full: nothing half-written stays
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():  # a finished sample is never rewritten; this is a leftover without labels
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def finished_labels(out: Path, count: int | None = None) -> list[dict[str, Any]]:
    """The finished samples' labels, in index order: the dataset's own folders only (six digits, below
    ``count`` when given): a copy such as "000003 copy" was read as one more sample, a duplicate id."""
    root = out / SAMPLES
    if not root.is_dir():
        return []
    folders = sorted(p.parent for p in root.glob(f"*/{LABELS}")
                     if len(p.parent.name) == 6 and p.parent.name.isdigit()
                     and (count is None or int(p.parent.name) < count))
    labels = []
    for folder in folders:
        try:
            labels.append(json.loads((folder / LABELS).read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:  # (it said "Invalid control character", no file named)
            raise ValueError(f"{folder / LABELS} is damaged ({exc}): delete its sample folder and run again to "
                             "write it anew") from None
    return labels


# ------------------------------------------------------------------------------------------- COCO
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


def write_coco(out: Path, samples: list[dict[str, Any]]) -> Path:
    from pycocotools import mask as mask_utils

    skeleton = [[k + 1, p + 1] for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0]
    coco: dict[str, Any] = {
        "info": {"description": "HandForge labelled renders", "keypoint_convention":
                 "pixel coordinates with (0, 0) the top-left image corner; pixel centres at i + 0.5"},
        "categories": [{"id": cid, "name": f"{side}_hand", "supercategory": "hand",
                        "keypoints": list(KEYPOINT_NAMES), "skeleton": skeleton}
                       for side, cid in COCO_CATEGORIES.items()],
        "images": [], "annotations": []}
    for sample in samples:
        image_id = sample["index"] + 1
        width, height = sample["camera"]["width"], sample["camera"]["height"]
        folder = f"{SAMPLES}/{sample['index']:06d}"
        coco["images"].append({"id": image_id, "file_name": f"{folder}/{sample['files'].get('rgb', sample['files'].get('mesh'))}",
                               "width": width, "height": height})
        for side, hand in sorted(sample["hands"].items()):
            if hand["bbox"] is None:
                continue
            mask = np.asarray(Image.open(out / folder / sample["files"][f"mask_{side}"])) > 127
            rle = mask_utils.encode(np.asfortranarray(mask))
            keypoints, labelled = coco_keypoints(hand, width, height)
            coco["annotations"].append({
                "id": image_id * 2 + (side == "right"), "image_id": image_id, "category_id": COCO_CATEGORIES[side],
                "iscrowd": 0, "bbox": hand["bbox"], "area": float(mask_utils.area(rle)),
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "keypoints": keypoints, "num_keypoints": labelled})
    path = out / "coco.json"
    write_atomic(path, dumps(coco))
    return path


# ----------------------------------------------------------------------------- InterHand2.6M style
def interhand_paths(out: Path, hand_model: str = "mano") -> dict[str, Path]:
    """The InterHand2.6M-style files; ``"params"`` is the release's MANO file for MANO hands, and
    for the open hand a file named for it (its parameters are no MANO parameters: code that reads a
    MANO file would pose MANO with them, centimetres off without a word)."""
    folder = out / INTERHAND / "annotations" / SPLIT
    params = "MANO_NeuralAnnot" if hand_model == "mano" else f"HandForge_{hand_model}_hand_params"
    return {kind: folder / f"InterHand2.6M_{SPLIT}_{name}.json"
            for kind, name in (("params", params), ("camera", "camera"), ("joint_3d", "joint_3d"), ("data", "data"))}


def write_interhand(out: Path, samples: list[dict[str, Any]], hands_mean: dict[str, np.ndarray] | None,
                    hand_model: str = "mano") -> dict[str, Path]:
    """The four InterHand2.6M annotation files (Moon et al., ECCV 2020,
    https://github.com/facebookresearch/InterHand2.6M): one capture "0", frame index = camera id =
    sample index. MANO poses are mean-relative as in the release (``hands_mean`` added back; the
    open hand's mean is zero), translations in metres; joints and camera positions in millimetres;
    the principal point moves to InterHand2.6M's pixel-centres-on-integers convention (−0.5). Samples
    with no hand in view are in the MANO, camera and joint files but not in the data file (its loaders
    accept only right, left or interacting hands with a box)."""
    mano: dict[str, Any] = {}
    cameras = {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}}
    joints: dict[str, Any] = {}
    data: dict[str, Any] = {"images": [], "annotations": []}
    for sample in samples:
        i = sample["index"]
        frame = {}
        for side in SIDES:
            hand = sample["hands"].get(side)
            if hand is None:
                frame[side] = None
                continue
            p = hand["params_world"]
            pose = np.asarray(p["hand_pose"]) - (hands_mean[side] if hands_mean else 0.0)
            frame[side] = {"pose": [*p["global_orient"], *pose.tolist()], "shape": p["betas"], "trans": p["transl"]}
        mano[str(i)] = frame
        cam = sample["camera"]
        R, t, K = np.asarray(cam["R"]), np.asarray(cam["t"]), np.asarray(cam["K"])
        key = str(i)
        cameras["campos"][key] = (-R.T @ t * MM_PER_M).tolist()
        cameras["camrot"][key] = R.tolist()
        cameras["focal"][key] = [K[0, 0], K[1, 1]]
        cameras["princpt"][key] = [K[0, 2] - 0.5, K[1, 2] - 0.5]
        world = np.zeros((2 * NUM_KEYPOINTS, 3))
        valid = np.zeros(2 * NUM_KEYPOINTS)
        for slot, side in enumerate(("right", "left")):  # InterHand2.6M: right 0–20, left 21–41
            hand = sample["hands"].get(side)
            if hand is not None:
                world[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = np.asarray(hand["keypoints_world"]) * MM_PER_M
                valid[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = 1
        joints[str(i)] = {"world_coord": world.tolist(), "joint_valid": valid.tolist(),
                          "hand_type": sample["hand_type"], "hand_type_valid": int(sample["hand_type"] != "none")}
        if sample["hand_type"] == "none" or sample["bbox"] is None:
            continue  # no hand in view: left out of the data file, whose loaders want a hand type and a box
        folder = f"{SAMPLES}/{i:06d}"
        data["images"].append({"id": i, "file_name": f"{folder}/{sample['files'].get('rgb', sample['files'].get('mesh'))}",
                               "width": cam["width"], "height": cam["height"], "capture": 0, "subject": 0,
                               "seq_name": "handforge", "camera": key, "frame_idx": i})
        data["annotations"].append({"id": i, "image_id": i, "bbox": sample["bbox"], "joint_valid": valid.tolist(),
                                    "hand_type": sample["hand_type"], "hand_type_valid": 1})
    paths = interhand_paths(out, hand_model)
    write_atomic(paths["params"], dumps({"0": mano}))
    write_atomic(paths["camera"], dumps({"0": cameras}))
    write_atomic(paths["joint_3d"], dumps({"0": joints}))
    write_atomic(paths["data"], dumps(data))
    return paths


# ------------------------------------------------------------------------------------ dataset card
def ranges(values: Iterable[float]) -> list[float] | None:
    values = list(values)
    return [round(min(values), 4), round(max(values), 4)] if values else None


def write_card(out: Path, samples: list[dict[str, Any]], settings: dict[str, Any]) -> Path:
    """``dataset_card.json`` and a readable ``dataset_card.md``: counts, parameter ranges, settings,
    licences, the command."""
    hand_types: dict[str, int] = {}
    for s in samples:
        hand_types[s["hand_type"]] = hand_types.get(s["hand_type"], 0) + 1
    visible = [v for s in samples for h in s["hands"].values() for v in h["visible"]]
    card = {
        "samples": len(samples), "hand_types": dict(sorted(hand_types.items())),
        "visible_keypoint_fraction": round(float(np.mean(visible)), 4) if visible else None,
        "ranges": {k: ranges(s["camera_params"][k] for s in samples if k in s["camera_params"])
                   for k in CAMERA_RANGES if any(k in s["camera_params"] for s in samples)},
        "lighting": sorted({s["lighting"]["preset"] for s in samples}),
        "backgrounds": sorted({s["background"]["kind"] for s in samples}),
        "skin_tones": sorted({s["skin_tone"] for s in samples}),
        **settings}
    write_atomic(out / "dataset_card.json", json.dumps(card, indent=1, sort_keys=True) + "\n")
    lines = ["# HandForge labelled renders", "", f"Made with: `{settings['command']}`", "",
             f"- samples: {card['samples']} ({', '.join(f'{k}: {v}' for k, v in card['hand_types'].items())})",
             f"- visible keypoints: {card['visible_keypoint_fraction']}",
             f"- hand model: {settings['hand_model']} — licence: {settings['hand_model_licence']}",
             f"- render: {settings['render']}", f"- image size: {settings['width']}×{settings['height']}",
             *([f"- generated by: {g['engine']} (SD {g['sd_model']}; ControlNets {', '.join(g['controlnets'])}); "
                f"prompts: {' | '.join(g['prompts'])}"
                + (f"; aligned (MediaPipe mean error < {a['keep_below_px']} px): {a['passed']}/{a['checked']}"
                   if (a := g.get("alignment")) else "")] if (g := settings.get("generate")) else []),
             *(f"- camera {k}: {v}" for k, v in card["ranges"].items()),
             f"- lighting: {', '.join(card['lighting'])}; backgrounds: {', '.join(card['backgrounds'])}",
             f"- skin tones: {', '.join(card['skin_tones'])} (Monk Skin Tone scale, https://skintone.google/)",
             "", "Files: samples/NNNNNN/labels.json (self-describing), coco.json (COCO keypoints, RLE masks), "
             "interhand/annotations/export/ (InterHand2.6M-style). Pixel coordinates: (0, 0) is the top-left image "
             "corner, pixel centres at i + 0.5 (InterHand2.6M-style cameras: principal point − 0.5).", ""]
    write_atomic(out / "dataset_card.md", "\n".join(lines))
    return out / "dataset_card.md"
