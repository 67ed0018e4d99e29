"""The export loop: sample a scene, pose the hands, render (GL + optional Blender RGB), label, write.

Resumable: finished samples (a ``labels.json`` in their folder) are skipped, half-written ones
removed; the aggregate files (COCO, InterHand2.6M-style, the card) are rebuilt from the finished
samples at the end, so an interrupted and resumed run gives the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from handforge.export.card import CardFigures, write_card
from handforge.export.coco import coco_writer
from handforge.export.folder import CONTACT_SHEET, GENERATE_WEIGHTS, HAND_MODEL, INPUTS, LABELS, SAMPLES, InputWatch, claimed_folder, file_identities, finished_indices, recorded_inputs, sample_dir
from handforge.export.interhand_format import interhand_writer
from handforge.export.room import pending_that_fit
from handforge.export.samples import SampleWriter, finished_image, sample_labels
from handforge.export.labels import hand_labels, hand_type, union_box
from handforge.hands.registry import entry as hand_model_entry
from handforge.export.sampler import background_image, sample_camera, sample_look, sample_scene
from handforge.export.spec import ExportSpec, HandSettings, RenderSettings, background_files, check_decoding, input_files
from handforge.hands import load_hand_model
from handforge.hands.posed import posed_hand
from handforge.runtime import torch_threads
from handforge_shared.files import atomic_file
from handforge_shared.forearm import ForearmSpec, forearm_mesh
from handforge.render.camera import to_blender
from handforge.render.gl import renderer
from handforge.render.overlay import label_keypoints, skeleton_image
from handforge_shared.skeleton import KEYPOINT_NAMES, MODEL_FRAME_DESCRIPTION, MODEL_TO_BLENDER, SIDES

FORMAT = "handforge.labelled_render"
VERSION = 1
CONVENTIONS = {
    "world": MODEL_FRAME_DESCRIPTION + "; the hand parameters' frame",
    "camera": "OpenCV: x_cam = R x_world + t (metres), x right, y down, z forward; pixel = K x_cam / z",
    "pixels": "(0, 0) is the top-left image corner; pixel (i, j) has its centre at (i + 0.5, j + 0.5)",
    "boxes": "[x, y, width, height] in pixels; bbox: visible mask pixels; bbox_projected: the whole hand",
    "keypoints": list(KEYPOINT_NAMES),
    "visible": "1 when the keypoint is in the image and the nearest surface at its pixel is its own hand, "
               "at most 20 mm in front of it (depth buffer)",
    "depth": "depth.npy: float32 camera z in metres, 0 on the background",
    "normals": "normals.npy: float32 unit face normals in the camera frame",
}

log = logging.getLogger("handforge.export")


# The hand model's forward for one sample (two hands of ~1,600 vertices) on one torch thread: the
# skinning's matrix product split over two threads waited for a second core that Blender, the writer
# thread or another job holds (2-core machine: 19-26 ms a sample on two threads, 1 ms on one). The
# results are the same bits on any count (checked on 30 sampled scenes).
HAND_THREADS = 1


def _hands(model, scene) -> dict[str, dict[str, Any]]:
    with torch_threads(HAND_THREADS):
        return {side: posed_hand(model, side, scene.hands.hand(side)) for side in SIDES
                if scene.hands.hand(side) is not None}


def make_sample(spec: ExportSpec, index: int, model, gl, rgb: Callable | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One sampled scene's labels and image files (name → array)."""
    return begin_sample(spec, index, model, gl, rgb)()


def begin_sample(spec: ExportSpec, index: int, model, gl, rgb: Callable | None) -> Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """``make_sample`` in two halves (``begin_label_scene``): the scene sampled, posed and sent to Blender
    now; the returned call makes its labels and files. ``SampleWriter`` begins the next sample before
    it finishes this one, so Blender renders without waiting for the next scene."""
    scene = sample_scene(spec, index)
    hands = _hands(model, scene)
    centre = np.concatenate([h["keypoints"] for h in hands.values()]).mean(axis=0)
    camera, scene.camera_params = sample_camera(spec, scene.rng, centre)
    sample_look(spec, scene)
    return begin_label_scene(spec, scene, hands, camera, gl, rgb)


def renders_looks(spec: ExportSpec) -> bool:
    """Whether an image shows the lighting, background and skin tone drawn for each sample: Blender's RGB (GL
    images are flat grey, and a generated image is conditioned on the hands alone)."""
    return "rgb" in spec.outputs and spec.render.engine in ("workbench", "cycles")


def draws_forearms(spec: ExportSpec) -> bool:
    """Whether the RGB shows forearms: rendered RGB (not generated: it is conditioned on the hands
    alone) with a forearm style."""
    return "rgb" in spec.outputs and spec.render.engine in ("workbench", "cycles") and spec.render.forearm != "none"


def forearms(hands: dict[str, dict[str, Any]], style: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each hand's capped forearm (``handforge_shared.forearm``): (vertices, faces) per side."""
    spec = ForearmSpec(style=style)
    return {side: forearm_mesh(hand["rig"], hand["vertices"], hand["joints"], spec) for side, hand in hands.items()}


def with_forearms(hands: dict[str, dict[str, Any]], style: str,
                  arms: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, dict[str, Any]]:
    """The hands as the RGB renderer draws them: each mesh continued by a capped forearm unless
    ``style`` is "none" (``arms``: ``forearms(hands, style)`` if made already). A 2D hand detector
    misses arm-less hands in egocentric views."""
    if style == "none":
        return hands
    out = {}
    for side, (arm_vertices, arm_faces) in (arms if arms is not None else forearms(hands, style)).items():
        hand = hands[side]
        out[side] = {**hand, "vertices": np.concatenate([hand["vertices"], arm_vertices]),
                     "faces": np.concatenate([hand["faces"], arm_faces + len(hand["vertices"])])}
    return out


def label_scene(spec: ExportSpec, scene, hands: dict[str, dict[str, np.ndarray]], camera, gl,
                rgb: Callable | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The labels and image files of a scene whose hands are posed (``_hands``' form, world frame) and
    whose camera and look are chosen: every export (sampled or from a Blender scene) ends here."""
    return begin_label_scene(spec, scene, hands, camera, gl, rgb)()


def begin_label_scene(spec: ExportSpec, scene, hands: dict[str, dict[str, np.ndarray]], camera, gl,
                      rgb: Callable | None) -> Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """``label_scene`` in two halves: Blender's render is sent now; the returned call makes the GL pass
    and labels while Blender renders, then collects the image."""
    # the RGB's forearms hide what they cover: drawn as occluders, the masks, depth, mesh image and
    # visibility are the hands as the RGB shows them (a forearm crossing the other hand hides it)
    arms = forearms(hands, spec.render.forearm) if draws_forearms(spec) else {}
    shown = with_forearms(hands, spec.render.forearm, arms) if arms else hands  # the RGB's meshes
    collect = None
    submit = getattr(rgb, "submit_sample", None)
    if "rgb" in spec.outputs and submit is not None:  # Blender renders while the GL pass and labels are made
        collect = submit(scene, camera, shown)
    return lambda: _finish_label_scene(spec, scene, hands, camera, gl, rgb, list(arms.values()), shown, collect)


def _finish_label_scene(spec: ExportSpec, scene, hands: dict[str, dict[str, np.ndarray]], camera, gl,
                        rgb: Callable | None, arms: list, shown: dict[str, dict[str, Any]],
                        collect: Callable | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    index = scene.index
    sides = list(hands)
    images = gl.render(camera, [(hands[s]["vertices"], hands[s]["faces"]) for s in sides] + arms,
                       normals="normals" in spec.outputs).first(len(sides))
    labels = {s: hand_labels(s, k, hands[s]["pose"], hands[s]["keypoints"], hands[s]["root"], hands[s]["vertices"],
                             camera, images) for k, s in enumerate(sides)}
    files: dict[str, np.ndarray] = {}
    drawn: dict[str, np.ndarray] = {}  # the label images: made while Blender renders, after rgb.png in ``files``
    if "mesh" in spec.outputs:
        drawn["mesh.png"] = images.mesh
    for k, s in enumerate(sides):  # the masks are always written: COCO's RLE masks come from them
        drawn[f"mask_{s}.png"] = images.mask(k)
    if "skeleton" in spec.outputs:
        drawn["skeleton.png"] = skeleton_image(camera.width, camera.height, label_keypoints(labels))
    if "depth" in spec.outputs:
        drawn["depth.npy"] = images.depth
    if "normals" in spec.outputs:
        drawn["normals.npy"] = images.normals
    if "rgb" in spec.outputs and rgb is not None:
        background = background_image(scene.background, camera.width, camera.height)
        if collect is None:
            collect = lambda: rgb(scene, camera, shown)  # noqa: E731
        rgba = collect()  # (H, W, 4), straight alpha
        alpha = rgba[..., 3:4]
        files["rgb.png"] = np.round((rgba[..., :3] * alpha + background * (1 - alpha)) * 255).astype(np.uint8)
    files.update(drawn)
    record = {
        "format": FORMAT, "version": VERSION, "index": index, "seed": spec.seed, "origin": scene.origin,
        "hand_model": spec.hand_model, "hand_model_licence": hand_model_entry(spec.hand_model).licence,
        "camera": {**camera.to_dict(), "blender": to_blender(camera, world_to_blender=MODEL_TO_BLENDER).to_dict()},
        "camera_params": scene.camera_params, "lighting": scene.lighting, "background": scene.background,
        "skin_tone": scene.skin_tone, "hands": labels, "hand_type": hand_type(labels),
        "bbox": union_box([h["bbox"] for h in labels.values()]),
        "files": {Path(n).stem: n for n in sorted(files)}, "conventions": CONVENTIONS,
    }
    describe = getattr(rgb, "describe_sample", None)
    if "rgb.png" in files and describe is not None:  # a generated image's prompt, seed (and alignment)
        record["generated"] = describe(files["rgb.png"], record)
    return record, files


CONTACT_SHEET_SAMPLES = 12


def contact_sheet(out: Path, samples: list[dict[str, Any]], columns: int = 4, tile: int = 256) -> Path:
    """``contact_sheet.png``: the first samples' RGB (else mesh) images with their keypoints drawn over."""
    from PIL import Image

    from handforge.render.overlay import draw_skeletons

    rows = -(-len(samples) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile))
    for k, sample in enumerate(samples):
        name = sample["files"].get("rgb") or sample["files"].get("mesh")
        folder = out / SAMPLES / f"{sample['index']:06d}"
        image = finished_image(folder / name).convert("RGB") if name else Image.new("RGB", (sample["camera"]["width"],
                                                                                         sample["camera"]["height"]))
        # fitted into its tile, centred: a tall image overlapped the next row, a very wide one became 0 px high
        scale = tile / max(image.width, image.height)
        fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        # the skeletons drawn on the fitted image, at the tile's scale: drawn before, at the image's, a 32²
        # image's 1 px bones became 8 px wide on the sheet (a 1024² one's 8 px: 2)
        stretch = np.array([fitted.width / image.width, fitted.height / image.height])
        draw_skeletons(fitted, {side: (points * stretch, visible)
                                for side, (points, visible) in label_keypoints(sample["hands"]).items()},
                       width=max(1.0, tile / 128))
        image = fitted
        sheet.paste(image, ((k % columns) * tile + (tile - image.width) // 2,
                            (k // columns) * tile + (tile - image.height) // 2))
    path = out / CONTACT_SHEET
    with atomic_file(path, "wb") as fh:
        sheet.save(fh, format="PNG")
    return path


def export(spec: ExportSpec, out: str | Path, command: str = "", progress: bool = True,
           limit: int | None = None, rgb: Callable | None = None,
           blender_timeout: float | None = None,
           slow_hint: str = "allow them more time (export's blender_timeout=SECONDS)") -> dict[str, Any]:
    """Export ``spec`` into ``out``; ``limit`` stops after that many new samples (the aggregate files
    are then written for what is finished); ``rgb``: a running ``BlenderRGB`` to reuse (else one is
    started when the spec wants RGB, with ``blender_timeout`` and ``slow_hint``: see ``rgb_source``). Returns
    a summary."""
    return write_dataset(spec, out, lambda index, model, gl, rgb: begin_sample(spec, index, model, gl, rgb),
                         command=command or "handforge.export.run.export", progress=progress, limit=limit, rgb=rgb,
                         blender_timeout=blender_timeout, slow_hint=slow_hint)


def write_dataset(spec: ExportSpec, out: str | Path, make: Callable, command: str, progress: bool | Callable = True,
                  limit: int | None = None, rgb: Callable | None = None, model=None,
                  settings: dict[str, Any] | None = None, record: dict[str, Any] | None = None,
                  record_of: str = "spec", blender_timeout: float | None = None,
                  slow_hint: str | None = None) -> dict[str, Any]:
    """The resumable loop every export runs: ``make(index, model, gl, rgb) -> (record, files)`` (or a call
    returning them: ``begin_sample``, see ``SampleWriter``) for each of the ``spec.samples`` indices not
    finished yet, then the aggregate files. ``progress``:
    a tqdm bar (True), nothing (False), or ``progress(done, total)`` called after each sample (it may
    raise to stop: finished samples stay). ``settings``: extra fields of the dataset card. One run
    per folder at a time, and the folder must be new, empty or this export's (``claimed_folder``
    with ``record``, ``folder_record(spec, out, model)`` unless given, and ``record_of`` naming what it
    records in the refusal). ``blender_timeout``, ``slow_hint``: see ``rgb_source``."""
    check_rgb_source(spec)
    out = Path(out)
    model = model if model is not None else load_hand_model(spec.hand_model)  # the record names it
    watch = InputWatch(lambda: input_files(spec))
    record = folder_record(spec, out, model) if record is None else record
    with claimed_folder(out, record, record_of) as removed:
        pending, skipped = pending_that_fit(spec, out, limit)
        with watch.on_stop(out, record, pending):
            summary = _write_pending(spec, out, make, progress, rgb, model, blender_timeout, slow_hint, pending)
        watch.after(out, record, pending)
        finished = finalise(spec, out, command, summary["gl_renderer"], settings, model)
        return {"written": summary["written"], "skipped": skipped, "removed_partial": removed, "finished": finished,
                "seconds": summary["seconds"], "failed": summary["failed"]}


def _write_pending(spec: ExportSpec, out: Path, make: Callable, progress: bool | Callable, rgb: Callable | None,
                   model, blender_timeout: float | None, slow_hint: str | None, pending: list[int]) -> dict[str, Any]:
    """Make and write the ``pending`` samples; the summary of what was made."""
    gl = renderer()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(gl.release_large)  # (a cancel too) a large image size's buffers do not outlive the export
        if rgb is None and "rgb" in spec.outputs and spec.render.engine != "none" and pending:
            from handforge.engines.image.generated_rgb import rgb_source

            rgb = stack.enter_context(rgb_source(spec, blender_timeout, slow_hint))
        if progress is True and pending:  # (none left: an empty "export: 0sample [00:00, ?sample/s]" said nothing)
            from tqdm import tqdm

            # counts the samples made, as a progress call does: iterating the indices through it counted the
            # sample begun (its render sent), so a Ctrl-C at "49/300" left 48
            bar = stack.enter_context(tqdm(total=len(pending), desc="export", unit="sample"))  # the rate and ETA

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

        # each sample's files are written while the next one is made, and a sample begun (its render sent)
        # is finished after the next one is begun (``SampleWriter``)
        writer = stack.enter_context(SampleWriter(out))
        reported = 0

        def report() -> None:  # each sample made since, once
            nonlocal reported
            while callable(progress) and reported < writer.made:
                reported += 1
                progress(reported, len(pending))

        for index in pending:
            writer.write_or_fail(index, lambda: make(index, model, gl, rgb))
            report()
        writer.finish_begun()
        report()
    failed = dict(sorted(writer.errors.items()))
    return {"written": len(pending) - len(failed), "seconds": time.perf_counter() - start, "failed": failed,
            "gl_renderer": gl.renderer_name}


def folder_record(spec: ExportSpec, out: Path, model, device: str | None = None) -> dict[str, Any]:
    """What dataset folder ``out`` records of the spec that made it: the spec, the identity of its input
    files (a resume after one changed would mix two datasets; none for a spec without such files), the
    hashes of files unchanged since ``out`` recorded them reused, and the loaded hand ``model``'s."""
    files, known = input_files(spec), recorded_inputs(out)
    inputs = file_identities(files, known)
    if "images" in spec.background.kinds:  # decoded once a run, those recorded unchanged (checked then) not again
        images = set(background_files(spec.background.folder))
        check_decoding([path for name, path in files.items() if path in images and known.get(name) != inputs[name]])
    record = {**spec.to_dict(), **({INPUTS: inputs} if inputs else {}),
              HAND_MODEL: hand_model_identity(model)}
    if spec.render.engine == "generate" and "rgb" in spec.outputs:
        from handforge.engines.image.generated_rgb import weights_identity

        record[GENERATE_WEIGHTS] = weights_identity(spec.generate, device)
    return record


def hand_model_identity(model) -> dict[str, str]:
    """Which hand model poses the samples: its name and a BLAKE2b of both sides' rig arrays as loaded
    (names, dtypes, shapes, bytes). Not its files' bytes: MANO's .pkl converted to .npz
    (``handforge convert-mano``) is the same model; other MANO files, or another open hand rig, are not."""
    digest = hashlib.blake2b(digest_size=16)
    for side in SIDES:
        rig = model.rig(side)
        for field in dataclasses.fields(rig):
            array = getattr(rig, field.name)
            if isinstance(array, np.ndarray):
                array = np.ascontiguousarray(array)
                digest.update(f"{side}.{field.name}:{array.dtype.str}:{array.shape}".encode())
                digest.update(array.tobytes())
    return {"name": model.name, "blake2b": digest.hexdigest()}


def hand_model_files(name: str) -> dict[str, dict[str, Any]]:
    """The files hand model ``name`` is loaded from here (the open hand's rig, the MANO files of the
    ``mano.model_dir`` setting), each one's file name, size and BLAKE2b hash (``file_identities``
    less the modification time: a copied file is the same model): which hand model made a dataset.
    The name, not the path: a shared dataset's card carried its maker's folders (a home folder, the
    install's), which identify no model; the folder's record compares the model itself on resume."""
    files = hand_model_entry(name).files()
    return {key: {"file": files[key].name, "bytes": found["bytes"], "blake2b": found["blake2b"]}
            for key, found in file_identities(files).items()}


def draws_workbench(spec: ExportSpec) -> bool:
    """Whether ``spec``'s samples have a Workbench RGB render (which its anti-aliasing smooths)."""
    return "rgb" in spec.outputs and spec.render.engine == "workbench"


def render_description(spec: ExportSpec) -> str:
    """The card's render settings: the engine and what sets its images' quality (a generated RGB's: ``finalise``)."""
    if spec.render.engine == "cycles":
        return f"cycles ({spec.render.samples} samples)"
    if draws_workbench(spec):
        aa = spec.render.antialiasing
        return "workbench (" + {"OFF": "no anti-aliasing", "FXAA": "FXAA anti-aliasing"}.get(
            aa, f"{aa}-sample anti-aliasing") + ")"
    return spec.render.engine


def unread_render_settings(spec: ExportSpec) -> list[str]:
    """The render settings given other than their defaults that this spec's images do not use: accepted
    (a rerun with them changed resumes the same dataset, ``spec.without_unused``), but said, as a forearm
    style under engine "none" otherwise made no forearm without a word."""
    said = []
    if spec.render.forearm != RenderSettings.forearm and not draws_forearms(spec):
        said.append(f"render.forearm = {spec.render.forearm!r} has no effect: forearms are drawn in the RGB of "
                    f"engines 'workbench' and 'cycles' only (this spec: engine {spec.render.engine!r}"
                    f"{', no rgb output' if spec.render.engine in ('workbench', 'cycles') else ''}), never in the "
                    "masks or GL images")
    looks = [name for name, given, default in (("lighting", spec.lighting, ExportSpec.lighting),
                                               ("background", spec.background, ExportSpec.background),
                                               ("hands.skin_tones", spec.hands.skin_tones, HandSettings.skin_tones))
             if given != default]
    if looks and not renders_looks(spec):
        said.append(f"{', '.join(looks)} {'has' if len(looks) == 1 else 'have'} no effect on the images: each "
                    "sample's is drawn and recorded in its labels, and shown in the RGB of engines 'workbench' and "
                    f"'cycles' only (this spec: engine {spec.render.engine!r}"
                    f"{', no rgb output' if spec.render.engine in ('workbench', 'cycles') else ''})")
    if spec.render.samples != RenderSettings.samples and spec.render.engine != "cycles":
        said.append(f"render.samples = {spec.render.samples} has no effect: it is Cycles' samples per pixel "
                    f"(this spec: engine {spec.render.engine!r})")
    if spec.render.antialiasing != RenderSettings.antialiasing and not draws_workbench(spec):
        said.append(f"render.antialiasing = {spec.render.antialiasing!r} has no effect: it is Workbench's "
                    f"anti-aliasing (this spec: engine {spec.render.engine!r}"
                    f"{', no rgb output' if spec.render.engine == 'workbench' else ''})")
    return said


def check_rgb_source(spec: ExportSpec) -> None:
    """Refuse, before anything is written, a generated-RGB spec whose weights are not configured; warn
    (once, before the workers start) of prompts longer than the text encoder reads, of ControlNets
    that empty controls leave out, and of render settings the images do not use."""
    for warning in unread_render_settings(spec):
        log.warning(warning)
    if spec.render.engine == "generate" and "rgb" in spec.outputs:
        from handforge.engines.image.generated_rgb import engine_weights, prompt_warnings

        engine_weights(spec.generate)
        for warning in prompt_warnings(spec.generate):
            log.warning(warning)
        if spec.generate.engine == "controlnet":  # (image.generate's result says so; the export left them out unsaid)
            from handforge.engines.image.controls import controls_left_out

            for warning in controls_left_out(list(spec.generate.controls)):
                log.warning(f"generate.controls is empty: {warning}")


def not_this_exports(labels: dict[str, Any], spec: ExportSpec) -> str:
    """What in a finished sample's labels says another spec made it ('' when nothing): its seed, image size or
    hand model. A sample folder copied in from another export was taken as finished and went into the aggregate
    files: a COCO file of 64² and 128² images under a card saying 64×64."""
    camera = labels["camera"]
    for name, theirs, ours in (("seed", labels.get("seed"), spec.seed),
                               ("hand_model", labels.get("hand_model"), spec.hand_model),
                               ("image size", (camera["width"], camera["height"]), (spec.width, spec.height))):
        if theirs != ours:
            return f"its {name} is {theirs!r}, this export's {ours!r}"
    return ""


def finalise(spec: ExportSpec, out: Path, command: str, gl_renderer: str, settings: dict[str, Any] | None = None,
             model=None, indices: list[int] | None = None) -> int:
    """The aggregate files (COCO, InterHand2.6M-style, card, contact sheet), rebuilt from the finished
    samples in index order: the same bytes whoever wrote the samples and in what order. One pass reads
    and checks each sample's labels once (``sample_labels``, one sample at a time) and hands it to every
    file; returns how many samples are finished. ``indices``: the finished samples as listed by the caller."""
    if indices is None:  # one list: every file describes the same samples
        indices = finished_indices(out, spec.samples)
    if spec.hand_model == "mano":  # the release's poses are mean-relative; the open hand's mean is zero
        model = model if model is not None else load_hand_model(spec.hand_model)
    hands_mean = model.hands_mean_arrays() if spec.hand_model == "mano" else None
    card = {"command": command, "spec": spec.to_dict(),
            "hand_model": spec.hand_model, "hand_model_licence": hand_model_entry(spec.hand_model).licence,
            "hand_model_files": hand_model_files(spec.hand_model),
            "render": render_description(spec),
            "width": spec.width, "height": spec.height, "gl_renderer": gl_renderer,
            "looks_rendered": renders_looks(spec), **(settings or {})}
    figures, first = CardFigures(), []
    with contextlib.ExitStack() as files:
        to_interhand = files.enter_context(interhand_writer(out, hands_mean, spec.hand_model))
        # entered last, so left first: its refusal of samples with a file missing stops every file being written
        to_coco = files.enter_context(coco_writer(out))

        def each_sample():  # each sample to every file, as whoever iterates this reads it
            for sample in sample_labels(out, indices):
                foreign = not_this_exports(sample, spec)
                if foreign:
                    raise ValueError(f"{sample_dir(out, sample['index']) / LABELS} is another export's sample "
                                     f"({foreign}): delete its sample folder and run again to write it anew")
                to_coco(sample)
                to_interhand(sample)
                figures.add(sample)
                if len(first) < CONTACT_SHEET_SAMPLES:
                    first.append(sample)
                yield sample

        samples = each_sample()
        # (as check_rgb_source: without "rgb" nothing is generated, and no weights are needed: the card needed
        # them, failing an export whose samples were all written, and named prompts and weights that made nothing)
        if spec.render.engine == "generate" and "rgb" in spec.outputs:
            from handforge.engines.image.generated_rgb import card_fields

            card["render"] = f"generate ({spec.generate.engine}, {spec.generate.steps} steps)"
            card.update(card_fields(spec.generate, samples))  # (reads the samples, or none: the pass goes on below)
        collections.deque(samples, maxlen=0)  # the rest of the pass
    write_card(out, figures.figures(), card)
    if indices:
        contact_sheet(out, first)
    return len(indices)
