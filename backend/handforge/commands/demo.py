"""handforge demo: the main job, on the embedded defaults (no licensed files, no weights)."""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from pathlib import Path

from handforge.arguments import output_folder

NAME = "demo"
HELP = ("run every step, with no licensed files: two open hands in named poses and a two-hand clasp (glTF "
        "meshes, a JSON of labels), a small labelled export, a sampled interaction and an in-betweened motion (by the "
        "interaction.checkpoint and motion.checkpoint settings' checkpoints: the shipped ones unless configured), "
        "a generated image (when Stable Diffusion weights and a guidance module or ControlNets are configured) and "
        "the Blender part (when bpy is installed)")
DEMO_ENGINES = ("interaction", "motion", "image")  # each engine's demo step: engines/<name>/demo.py
ELSEWHERE = "choose another --out"  # (after a full disk or a chmod'ed file it said "choose another folder")
ON_FILE_ERROR = ("the files written so far stay in --out, a demo's folder, which the same command run again "
                 "refreshes")
ON_INTERRUPT = ON_FILE_ERROR  # (Ctrl-C said only "interrupted", over a half-written folder)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_folder, default="handforge_out/demo", help="output folder: new, empty, or an earlier demo's, which it refreshes (default: %(default)s)")
    parser.add_argument("--no-blender", action="store_true", help="skip the Blender part (hands, keys, .blend, render)")


def run(args: argparse.Namespace) -> int:
    from handforge.demo import check_folder

    from handforge_shared.files import FolderBusy, folder_lock

    try:
        check_folder(args.out)
    except ValueError as exc:
        print(f"handforge demo: {exc}", file=sys.stderr)
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(args.out):  # two demos into one folder: the second wrote beside the first, then crashed
            return _run(args)
    except FolderBusy:
        print(f"handforge demo: another handforge command is writing into {args.out}: wait for it, or choose "
              "another --out", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import logging

    from handforge.demo import run_demo

    if not getattr(args, "verbose", False):  # the engines' steps load models as a server would: not news here
        logging.getLogger("handforge.server.model_cache").setLevel(logging.WARNING)

    report = run_demo(args.out)
    print(f"HandForge demo: {len(report['scenes'])} scenes of two open hands")
    for name, scene in report["scenes"].items():
        print(f"  {name:8s} {scene['mesh']:14s} {scene['description']}")
    print(f"meshes (glTF binary) and labels written to {args.out}/ ; parameters and 21 keypoints per hand "
          f"in {report['json']}")
    if not _labelled_part(Path(args.out) / "labelled"):
        return 2
    for engine in DEMO_ENGINES:
        importlib.import_module(f"handforge.engines.{engine}.demo").demo(Path(args.out))
    if not args.no_blender:
        from handforge_shared import pose_library

        # the presets are applied in Blender by name; the other scenes (interactions) are pasted
        interactions = {name: {side: hand["params"] for side, hand in scene["hands"].items()}
                        for name, scene in report["scenes"].items() if name not in pose_library.names()}
        return _blender_part(Path(args.out) / "blender", interactions)
    if (Path(args.out) / "blender").exists():  # (a rerun with --no-blender left an earlier demo's, unsaid)
        print(f"Blender part: skipped (--no-blender); {Path(args.out) / 'blender'} holds an earlier demo's, not made "
              "by this run")
    return 0


def _labelled_part(out: Path) -> bool:
    """The demo's labelled export; False when its folder is taken (said on stderr). An earlier demo's export
    of another spec or hand model (a new HandForge, a re-baked open hand) is made again, not refused."""
    from handforge.demo import MARK, export_labelled
    from handforge.export.folder import DATASET_ENTRIES, SPEC_RECORD, FolderTaken
    from handforge.export.room import ExportTooLarge

    try:
        labelled = export_labelled(out)
    except ExportTooLarge as exc:  # (a disk with too little room was a traceback; its fixes are the export's own)
        fixes = "free space, or choose another --out" if exc.lacking == "disk" else "free memory"
        print(f"handforge demo: no room for its labelled export: {exc.need}: {fixes} ({ON_FILE_ERROR})",
              file=sys.stderr)
        return False
    except FolderTaken as exc:
        if not ((out.parent / MARK).is_file() and (out / SPEC_RECORD).is_file()):  # other files: not the demo's
            print(f"handforge demo: {exc}", file=sys.stderr)
            return False
        yours = sorted(p.name for p in out.iterdir() if p.name not in DATASET_ENTRIES and not p.name.startswith("."))
        if yours:  # the earlier export is replaced, not files put beside it
            print(f"handforge demo: {out} holds the earlier demo's labelled export, to be made again, and files not "
                  f"of it ({', '.join(yours[:5])}): move them out, or choose another --out", file=sys.stderr)
            return False
        print("labelled export: the earlier demo's was made with other settings or another hand model: made again")
        shutil.rmtree(out)
        labelled = export_labelled(out)
    if "unavailable" in labelled:
        print(f"labelled export skipped: {labelled['unavailable']}")
        return True
    kept = labelled["finished"] - labelled["written"]
    made = f"{labelled['written']} made in {labelled['seconds']:.1f} s" + (
        f", {kept} kept from an earlier run" if kept else "")
    print(f"labelled export: {labelled['finished']} samples (mesh images, masks, 2D/3D keypoints; COCO and "
          f"InterHand2.6M-style files) in {out}/ ({made}); keypoints drawn over the images in "
          f"{labelled['contact_sheet']}")
    return True


def _blender_part(out: Path, interactions: dict) -> int:
    from handforge.blender_demo import BlenderDemoError, run_blender_demo, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"Blender part skipped: {reason}")
        return 0
    try:
        report = run_blender_demo(out, pasted=interactions)
    except BlenderDemoError as exc:
        print(f"handforge demo: Blender part failed: {exc}", file=sys.stderr)
        return 1
    renders = [k["render"] for k in report["keyed"] if "render" in k]
    print(f"Blender {report['blender']} (bpy, headless): both hands added with the HandForge add-on, "
          f"{len(report['keyed'])} poses keyed ({', '.join(k['preset'] for k in report['keyed'])})")
    print(f"  {out / report['blend']} and Workbench renders {', '.join(renders)}; Blender's keypoints agree with "
          f"the backend within {report['max_keypoint_deviation_mm']:.4f} mm ({report['seconds']:.0f} s)")
    return 0
