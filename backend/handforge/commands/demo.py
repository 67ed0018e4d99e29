"""handforge demo: the main job, on the embedded defaults (no licensed files, no weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = ("build two open hands in named poses and a two-hand clasp; write glTF meshes, a JSON of labels "
        "and a small labelled export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="handforge_out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--no-blender", action="store_true", help="skip the Blender part (hands, keys, .blend, render)")


def run(args: argparse.Namespace) -> int:
    from handforge.demo import run_demo

    report = run_demo(args.out)
    print(f"HandForge demo: {len(report['scenes'])} scenes of two open hands")
    for name, scene in report["scenes"].items():
        print(f"  {name:8s} {scene['mesh']:14s} {scene['description']}")
    print(f"meshes (glTF binary) and labels written to {args.out}/ ; parameters and 21 keypoints per hand "
          f"in {report['json']}")
    _labelled_part(Path(args.out) / "labelled")
    _interaction_part(Path(args.out))
    _motion_part(Path(args.out))
    _image_part(Path(args.out))
    if not args.no_blender:
        from handforge_shared import pose_library

        # the presets are applied in Blender by name; the other scenes (interactions) are pasted
        interactions = {name: {side: hand["params"] for side, hand in scene["hands"].items()}
                        for name, scene in report["scenes"].items() if name not in pose_library.names()}
        return _blender_part(Path(args.out) / "blender", interactions)
    return 0


def _labelled_part(out: Path) -> None:
    from handforge.demo import export_labelled

    labelled = export_labelled(out)
    if "unavailable" in labelled:
        print(f"labelled export skipped: {labelled['unavailable']}")
        return
    kept = labelled["finished"] - labelled["written"]
    made = f"{labelled['written']} made in {labelled['seconds']:.1f} s" + (
        f", {kept} kept from an earlier run" if kept else "")
    print(f"labelled export: {labelled['finished']} samples (mesh images, masks, 2D/3D keypoints; COCO and "
          f"InterHand2.6M-style files) in {out}/ ({made}); keypoints drawn over the images in "
          f"{labelled['contact_sheet']}")


def _blender_part(out: Path, interactions: dict) -> int:
    from handforge.blender_demo import BlenderDemoError, run_blender_demo, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"Blender part skipped: {reason}")
        return 0
    try:
        report = run_blender_demo(out, pasted=interactions)
    except BlenderDemoError as exc:
        print(f"Blender part failed: {exc}")
        return 1
    renders = [k["render"] for k in report["keyed"] if "render" in k]
    print(f"Blender {report['blender']} (bpy, headless): both hands added with the HandForge add-on, "
          f"{len(report['keyed'])} poses keyed ({', '.join(k['preset'] for k in report['keyed'])})")
    print(f"  {out / report['blend']} and Workbench renders {', '.join(renders)}; Blender's keypoints agree with "
          f"the backend within {report['max_keypoint_deviation_mm']:.4f} mm ({report['seconds']:.0f} s)")
    return 0


INTERACTION_ANCHOR, INTERACTION_COUNT = "cupped", 4


def _interaction_part(out: Path) -> None:
    """The right hand sampled around a posed left hand, as the add-on's Sample Interaction does (job
    ``interaction.sample``'s default engine, the templates: no weights); the candidates, best first,
    in ``interaction.npz`` (the job's result arrays)."""
    import io
    import time

    import numpy as np

    from handforge.demo import _write_atomic
    from handforge.engines.interaction.pipeline import SampleSettings
    from handforge.engines.interaction.templates import TemplateSampler
    from handforge.hands import load_hand_model
    from handforge_shared import pose_library

    started = time.perf_counter()
    pose = pose_library.get(INTERACTION_ANCHOR, side="left")
    anchor = {"side": "left", **{name: np.asarray(getattr(pose, name), np.float32)
                                 for name in ("global_orient", "hand_pose", "betas", "transl")}}
    found = TemplateSampler(load_hand_model("open"))(SampleSettings(count=INTERACTION_COUNT, seed=0), anchor)
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    np.savez(buffer, **found.arrays())
    _write_atomic(out / "interaction.npz", buffer.getvalue())
    print(f"interaction: {len(found.score)} candidates for the right hand around a left hand posed "
          f"'{INTERACTION_ANCHOR}' in {seconds:.1f} s; best score {found.score[0]:.3f} (template "
          f"{found.extra['templates'][0]}, max depth {found.max_depth[0] * 1000:.1f} mm, gap "
          f"{found.gap[0] * 1000:.1f} mm); all, best first, in {out / 'interaction.npz'}")


def _motion_part(out: Path) -> None:
    from handforge.demo_motion import KEYED, inbetween_keyed_poses

    motion = inbetween_keyed_poses(out)
    engine = (f"the {motion['engine']} engine (fell back: {motion['warning']})" if motion["warning"] else
              f"the {motion['engine']} engine (shipped checkpoint, {motion['steps']} DDIM steps)")
    loading = f" ({motion['seconds']:.1f} s with the first call's imports and model loading)" if motion["loaded"] else ""
    kept = "bit for bit" if motion["key_error"] == 0 else f"to {motion['key_error']:.1g}"
    print(f"motion: two keyed poses ({' → '.join(KEYED)}, both hands) in-betweened over {motion['frames']} frames "
          f"by {engine} in {motion['generation_seconds']:.2f} s{loading}; keys kept {kept}; {motion['path']}")


def _image_part(out: Path) -> None:
    """One labelled generated image (the export's ``generate`` engine) when Stable Diffusion weights are
    configured; otherwise one line saying what to configure. Nothing is downloaded."""
    import time

    from handforge import config
    from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_MODEL
    from handforge.export.run import export
    from handforge.export.spec import parse_spec

    if config.value(SD_MODEL.key) is None or (config.value(GUIDANCE.key) is None
                                              and config.value(CONTROLNETS.key) is None):
        print(f"image generation: skipped (no weights configured): set {SD_MODEL.key} ({SD_MODEL.env}) and "
              f"{GUIDANCE.key} ({GUIDANCE.env}) or {CONTROLNETS.key} ({CONTROLNETS.env}); `handforge models` "
              "imports weights you have, and the demo then generates a labelled image")
        return
    engine = "attentionhand" if config.value(GUIDANCE.key) is not None else "controlnet"
    spec = parse_spec({"seed": 0, "samples": 1, "width": 512, "height": 512, "render": {"engine": "generate"},
                       "generate": {"engine": engine, "prompts": ["two hands, studio photo, soft light"]}})
    started = time.perf_counter()
    export(spec, out / "generated", command="handforge demo", progress=False)
    print(f"image generation: one {engine} image with its labels in {out / 'generated'} "
          f"({time.perf_counter() - started:.0f} s)")
