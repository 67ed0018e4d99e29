"""Training pairs for the target generator: the same hands (shape, skin tone), camera, lighting and
background in two poses, written in the labelled export's sample format, and their dataset.

``write_pairs`` draws each pair's scene with the export's sampler (``export.sampler``) and labels
both images with the export's ``label_scene``: ``<out>/source/samples/NNNNNN`` holds the sampled
pose, ``<out>/target/samples/NNNNNN`` the same scene with every hand's articulation (``hand_pose``)
taken from another sampled scene; wrists, shape and placement stay. RGB comes from the spec's
Blender engine, or (``shading="gl"``) from our GL mesh shading tinted by the scene's skin tone over
its background: cheap, and enough for tests and a first run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from handforge.engines.transfer.model import pose_vector
from handforge.export.samples import finished_image, read_labels, sample_problem
from handforge_shared.files import FolderBusy, folder_lock, parse_json, write_atomic

SOURCE, TARGET = "source", "target"
OTHER_SCENE = 1_000_003  # the target's articulation comes from scene index + this
# a Blender render stopped as hung: pairs have no timeout option (handforge export's --sample-timeout is not theirs)
SLOW_HINT = ("render them faster: fewer render.samples (Cycles) or render.engine = \"workbench\" in the "
             "--write-pairs spec, or --shading gl")
PAIRS_SPEC = "pairs_spec.json"  # the spec (less its sample count) and shading the pairs were written from


def gl_rgb(gl) -> Callable:
    """rgb(scene, camera, hands) → (H, W, 4) float straight alpha: the mesh shading times the skin tone."""

    def render(scene, camera, hands):
        sides = list(hands)
        images = gl.render(camera, [(hands[s]["vertices"], hands[s]["faces"]) for s in sides])
        tone = np.array([int(scene.skin_tone[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0
        rgba = np.zeros((camera.height, camera.width, 4), np.float32)
        rgba[..., :3] = images.mesh / 255.0 * tone
        rgba[..., 3] = images.instance > 0
        return rgba

    return render


def check_pairs_folder(out: str | Path, spec, shading: str, count: int | None = None) -> dict[str, Any]:
    """A ValueError when ``out`` holds pairs of another spec or shading (a rerun resumes the same pairs;
    others would be mixed in silently), anything but pairs (the export's guard, ``refuse_foreign_files``: pairs
    were written beside a user's files or into an export's dataset), or more finished pairs than ``count`` (the
    export's ``refuse_beyond``: training read them all); returns what ``out`` records of the pairs it holds."""
    import dataclasses

    from handforge.export.folder import refuse_beyond, refuse_foreign_files

    if "rgb" not in spec.outputs:  # (as write_pairs makes them)
        spec = dataclasses.replace(spec, outputs=(*spec.outputs, "rgb"))
    # said here, before the SD weights load and the record is written: write_pairs said it after both
    # (a generated spec as "unknown Blender engine"), and the record then refused the corrected command
    if shading != "gl" and spec.render.engine not in ("workbench", "cycles"):
        raise ValueError(f"render.engine is {spec.render.engine!r}: pairs need both poses rendered alike by Blender; "
                         "choose workbench or cycles, or --shading gl (shading='gl')")
    made_by = {"spec": {k: v for k, v in spec.to_dict().items() if k != "samples"}, "shading": shading}
    record = Path(out) / PAIRS_SPEC
    if not record.is_file():  # (empty source/ and target/: a run stopped before its first pair)
        refuse_foreign_files(Path(out), "pose-transfer pairs", empty_folders=(SOURCE, TARGET))
    try:
        recorded = parse_json(record.read_text()) if record.is_file() else made_by
    except ValueError as exc:  # (UnicodeDecodeError and NestedTooDeeply: ValueErrors)
        raise ValueError(f"{record} cannot be read ({exc}): write these pairs into another folder") from None
    if _comparable(recorded) != _comparable(made_by):
        raise ValueError(f"{out} holds pairs written from another spec or shading ({record}): write these into "
                         "another folder")
    if count is not None:
        refuse_beyond(Path(out), Path(out) / SOURCE, count, "pair(s)", "pairs (--pairs)")
    return made_by


def _comparable(record: Any) -> Any:
    """A pairs record with its spec's unused settings at their defaults, and settings added since at theirs
    (``spec.without_unused``): pairs written before render.antialiasing was are resumed."""
    from handforge.export.spec import without_unused

    if isinstance(record, dict) and isinstance(record.get("spec"), dict):
        return {**record, "spec": without_unused(record["spec"])}
    return record


def blender_rgb(spec):
    """The Blender that renders the pairs of a workbench or cycles ``spec`` (not started yet)."""
    from handforge.render.blender import BlenderRGB

    return BlenderRGB(spec.render.engine, spec.render.samples, antialiasing=spec.render.antialiasing,
                      slow_hint=SLOW_HINT)


def write_pairs(spec, out: str | Path, count: int, shading: str = "blender", progress: Callable | None = None) -> Path:
    """``count`` pairs under ``out`` (finished pairs are kept: a rerun resumes; one run at a time)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out):  # two runs into one folder both drew every pair, each replacing the other's
            return _write_pairs(spec, out, count, shading, progress)
    except FolderBusy:
        raise ValueError(f"{out}: another run is writing pairs into this folder; wait for it or stop it (a rerun "
                         "afterwards resumes)") from None


def _write_pairs(spec, out: Path, count: int, shading: str, progress: Callable | None) -> Path:
    import contextlib
    import dataclasses

    from handforge.engines.image.conditioning import posed_meshes
    from handforge.export.folder import is_finished
    from handforge.export.samples import write_sample
    from handforge.export.run import label_scene
    from handforge.export.sampler import sample_camera, sample_look, sample_scene
    from handforge.hands import load_hand_model
    from handforge.render.gl import renderer

    if "rgb" not in spec.outputs:  # pairs are RGB images; label_scene writes rgb.png only when asked
        spec = dataclasses.replace(spec, outputs=(*spec.outputs, "rgb"))
    made_by = check_pairs_folder(out, spec, shading, count)
    if not (out / PAIRS_SPEC).is_file():
        write_atomic(out / PAIRS_SPEC, json.dumps(made_by, indent=1))
    model, gl = load_hand_model(spec.hand_model), renderer()
    with contextlib.ExitStack() as stack:
        if shading == "gl":
            rgb = gl_rgb(gl)
        else:  # (a workbench or cycles spec: check_pairs_folder)
            rgb = stack.enter_context(blender_rgb(spec))
        for index in range(count):
            if is_finished(out / SOURCE, index):
                continue
            scene = sample_scene(spec, index)
            poses = {s: scene.hands.hand(s) for s in ("right", "left") if scene.hands.hand(s) is not None}
            other = sample_scene(spec, index + OTHER_SCENE).hands
            moved = {s: p.replace(hand_pose=(other.hand(s) or p).hand_pose) for s, p in poses.items()}
            hands, moved_hands = posed_meshes(model, poses), posed_meshes(model, moved)
            centre = np.concatenate([h["keypoints"] for h in hands.values()]).mean(axis=0)
            camera, scene.camera_params = sample_camera(spec, scene.rng, centre)
            sample_look(spec, scene)
            for folder, posed in ((TARGET, moved_hands), (SOURCE, hands)):  # source last: it marks the pair done
                record, files = label_scene(spec, scene, posed, camera, gl, rgb)
                write_sample(out / folder, index, record, files)
            if progress is not None:
                progress(index + 1, count)
    return out


class PosePairs(torch.utils.data.Dataset):
    """Items: ``source`` and ``target`` (3, size, size) in [-1, 1], ``source_pose`` / ``target_pose`` vectors."""

    def __init__(self, folder: str | Path, size: int = 512) -> None:
        self.folder, self.size = Path(folder), size
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: no such folder; give the folder of the pairs, or write pairs into it "
                             "with `handforge train transfer --write-pairs SPEC`")
        self.indices = sorted(p.name for p in (self.folder / SOURCE / "samples").glob("[0-9]*")
                              if (p / "labels.json").is_file() and (p / "rgb.png").is_file()
                              and (self.folder / TARGET / "samples" / p.name / "rgb.png").is_file())
        if not self.indices:
            raise ValueError(f"{self.folder}: no pairs (source/samples/N and target/samples/N with rgb.png and "
                             "labels.json); write them with `handforge train transfer --write-pairs SPEC`")
        for name in self.indices:  # before hours of training, not when the damaged one is drawn
            for side in (SOURCE, TARGET):
                problem = sample_problem(self.folder / side / "samples" / name, ("rgb.png",))
                if problem:
                    raise ValueError(f"{problem}: fix or remove that pair (source and target folders {name})")

    def __len__(self) -> int:
        return len(self.indices)

    def fingerprint(self) -> dict[str, object]:
        """What a resume must train on again (the loop's ``data_statistics``): both sides' labels, images' sizes."""
        from handforge.training.fingerprint import files_fingerprint

        samples = [self.folder / side / "samples" / name for name in self.indices for side in (SOURCE, TARGET)]
        return files_fingerprint(self.folder, [s / "labels.json" for s in samples], [s / "rgb.png" for s in samples])

    def _side(self, folder: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        from handforge.export.labels import label_poses

        sample = self.folder / folder / "samples" / name
        labels = read_labels(sample)  # (checked when the pairs were; damaged since: named)
        hands = label_poses(labels)
        rotation = np.asarray(labels["camera"]["R"], np.float64)
        image = finished_image(sample / "rgb.png", f"fix or remove that pair (source and target folders {name})").convert(
            "RGB").resize((self.size, self.size), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()
        return pixels, torch.from_numpy(pose_vector(hands, rotation))

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.indices[index]
        source, source_pose = self._side(SOURCE, name)
        target, target_pose = self._side(TARGET, name)
        return {"source": source, "target": target, "source_pose": source_pose, "target_pose": target_pose}


class InterHandPairs(PosePairs):
    """InterHand2.6M (Moon et al., ECCV 2020; the user's own copy, CC BY-NC 4.0) as pose pairs: two
    annotated frames of one recorded sequence seen by one camera — the same hands, light and
    background in two poses. ``images/<split>/Capture<c>/<sequence>/cam<id>/image<frame>.jpg`` with the
    release's ``annotations/<split>/`` MANO and camera files; each frame is paired with the first one at
    least ``gap`` frames later in its sequence (the last ones wrap round to the first). Hand poses are
    made flat with ``hands_mean`` (MANO's, ``hands.mano``), as HandForge's poses are."""

    def __init__(self, root: str | Path, hands_mean: dict, split: str = "train", size: int = 512, gap: int = 30) -> None:
        import re

        from handforge.datasets.interhand import SPLIT_FOLDERS, annotation_file
        from handforge.datasets.interhand_files import frame_poses, read_cameras

        self.folder, self.size = Path(root).expanduser(), size
        annotations = annotation_file(self.folder, split)
        poses = frame_poses(annotations, hands_mean)
        cameras = read_cameras(annotations.with_name(annotations.name.replace("MANO_NeuralAnnot", "camera")))
        pattern = re.compile(r"Capture(\d+)/([^/]+)/cam(\d+)/image(\d+)\.jpg$")
        groups: dict[tuple[str, str, str], list[tuple[int, Path]]] = {}
        for path in sorted((self.folder / "images" / SPLIT_FOLDERS[split]).glob("Capture*/*/cam*/image*.jpg")):
            found = pattern.search(path.as_posix())
            capture, sequence, cam, frame = found.groups() if found else (None,) * 4
            if found and (capture, int(frame)) in poses and cam in cameras.get(capture, {}):
                groups.setdefault((capture, sequence, cam), []).append((int(frame), path))
        self.items = []
        for (capture, _, cam), frames in groups.items():
            frames.sort()
            for k, (frame, path) in enumerate(frames):
                later = next((j for j in range(k + 1, len(frames)) if frames[j][0] - frame >= gap), None)
                partner = frames[later if later is not None else 0]
                if partner[0] != frame:
                    rotation = cameras[capture][cam].R
                    self.items.append(((path, poses[(capture, frame)], rotation),
                                       (partner[1], poses[(capture, partner[0])], rotation)))
        if not self.items:
            raise ValueError(f"{self.folder}: no InterHand2.6M pairs in split {split!r} (images/{SPLIT_FOLDERS[split]}/"
                             "Capture*/*/cam*/image*.jpg with MANO annotations and cameras)")
        self.indices = list(range(len(self.items)))
        self.annotations = (annotations, annotations.with_name(annotations.name.replace("MANO_NeuralAnnot", "camera")))

    def fingerprint(self) -> dict[str, object]:
        """What a resume must train on again: the split's annotation files and the pairs' images (names and
        sizes), the gap between them in ``settings.json``'s options."""
        from handforge.training.fingerprint import files_fingerprint

        images = sorted({path for pair in self.items for path, _, _ in pair})
        return files_fingerprint(self.folder, self.annotations, images)

    def _load(self, path: Path, pose, rotation) -> tuple[torch.Tensor, torch.Tensor]:
        hands = {s: pose.hand(s) for s in ("left", "right") if pose.hand(s) is not None}
        image = finished_image(path, "restore it from your InterHand2.6M copy").convert("RGB").resize(
            (self.size, self.size), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1.0).permute(2, 0, 1).contiguous()
        return pixels, torch.from_numpy(pose_vector(hands, rotation))

    def __getitem__(self, index: int) -> dict[str, Any]:
        source, target = self.items[index]
        source_image, source_pose = self._load(*source)
        target_image, target_pose = self._load(*target)
        return {"source": source_image, "target": target_image, "source_pose": source_pose, "target_pose": target_pose}


__all__ = ["SOURCE", "TARGET", "InterHandPairs", "PosePairs", "blender_rgb", "check_pairs_folder", "gl_rgb", "write_pairs"]
