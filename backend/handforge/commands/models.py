"""handforge models: the weights of the engines on Stable Diffusion (the image engines attentionhand and controlnet,
the pose-transfer engine ihpt) — what is needed and present, checks, import, fetch."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import sys

from handforge.arguments import existing_path
from handforge.engines import PACKAGE, engines_with
from handforge_shared.files import file_error

NAME = "models"
HELP = "list, check, import or (on request) download the weights of the image and pose-transfer engines"



def weight_kinds() -> dict[str, str]:
    """Each kind of weights, and the weights module (NEEDS, SETTINGS, status, check, configured, kind_of,
    import_weights, import_note; optional FOLDER_KINDS: kinds ``configured`` gives to a folder setting that holds
    none of its weights, and the kind ``--kind`` names them by) of the engine that checks and imports it: every engine with a ``weights.py`` declares its kinds in its light
    ``settings.py`` (``WEIGHT_KINDS``), read without the weights module's imports; engines in name order, as
    `models list` shows them. (A new engine with weights adds its own, nothing here.)"""
    kinds = {}
    for engine in engines_with("weights"):
        settings = importlib.import_module(f"{PACKAGE}.{engine}.settings")
        kinds.update(dict.fromkeys(getattr(settings, "WEIGHT_KINDS", {}), f"{PACKAGE}.{engine}.weights"))
    return kinds


KINDS = weight_kinds()
CHECKED = tuple(kind for kind in KINDS if kind != "guidance")  # the guidance module is checked as the ControlNet it is


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = sub.add_parser("list", help="what each engine needs and what is configured (default)")
    # `models list --json` (as `doctor --json`) was refused as an unrecognised argument: the flag was only
    # the parent's. SUPPRESS: without it, the subcommand's default would hide `models --json list`.
    check = sub.add_parser("check", help="check the configured weights (or PATH): shapes and dtypes against configs, "
                                          "then every value for a NaN or infinity (reads the whole files)")
    check.add_argument("path", nargs="?", type=existing_path(folder=None),
                       help="an SD folder, ControlNet folder or target generator folder (default: the configured ones)")
    check.add_argument("--kind", choices=CHECKED,
                       help="what PATH holds (default: sd for a file or a folder with unet/, target_generator for a "
                            "folder whose config.json, or its model/'s, names a TargetGenerator, else controlnet); "
                            "without PATH, check only the configured weights of this kind (controlnet: the "
                            "guidance module and the ControlNets)")
    check.add_argument("--hash", action="store_true", help="also print each weight file's sha256 (slow)")
    imp = sub.add_parser("import", help="copy checked weights (an SD model, a guidance module, a ControlNet or a "
                                        "target generator) into the models folder")
    imp.add_argument("path", type=existing_path(folder=None), help="the weights to copy")
    imp.add_argument("--kind", choices=tuple(KINDS), required=True, help="what PATH holds")
    imp.add_argument("--name", help="folder name there (default: the source's; a training run's model/: the run's)")
    fetch = sub.add_parser("fetch", help="download public weights with huggingface_hub (needs network)")
    fetch.add_argument("name", help="sd15, controlnet-depth, controlnet-normal, controlnet-openpose or a hub repo id")
    fetch.add_argument("--kind", choices=("sd", "guidance", "controlnet"),
                       help="what the hub repo holds (the known names say it themselves)")
    for action in (listing, check, imp, fetch):  # after the action too, as `doctor --json`
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _weights(kind: str):
    """The weights module of the engine whose weights ``kind`` are."""
    return importlib.import_module(KINDS[kind])


def _print_status(as_json: bool) -> int:
    report = {}
    for module in dict.fromkeys(KINDS.values()):
        report.update(importlib.import_module(module).status())
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    for engine, info in report.items():
        print(f"{engine}: {'ready' if info['ready'] else 'not ready: ' + info['reason']}")
        if info["note"]:  # ready with less than it has (a broken ControlNet beside good ones), as welcome says
            print(f"  note: {info['note']}")
        for row in info["needs"]:
            mark = ("ok" if row["present"] else f"incomplete: {row['missing']}" if row["missing"] else
                    "not found" if row["value"] else "not set")
            print(f"  {row['setting']} = {row['value'] or '-'} [{mark}]  {row['help']}")
            if row["missing"]:
                print(f"    see `handforge models check {row['value']}` for what it holds")
            elif not row["present"]:
                print("    " + row["how_to_set"].replace("\n", "\n    "))
    return 0


def _check(args: argparse.Namespace) -> int:
    from handforge import config
    from handforge.engines.checkpoints import saved_class
    from handforge.engines.image.settings import SD_MODEL

    engines = [importlib.import_module(module) for module in dict.fromkeys(KINDS.values())]
    if args.path:
        # each engine's guess in turn (a single file or unet/: SD; a target generator's folder or its run's),
        # else a ControlNet folder (ControlNets are read from folders only)
        kind = args.kind or next(filter(None, (e.kind_of(args.path) for e in engines)), "controlnet")
        targets = [(_weights(kind), kind, args.path)]
        # a guess (an SD folder with no unet/ went unsaid), but not where the folder's config names a ControlNet
        if not args.kind and kind == "controlnet" and not args.json and saved_class(args.path) != "ControlNetModel":
            print(f"checking {args.path} as a ControlNet folder (it has no unet/): --kind sd checks it as an SD model")
    else:
        # `--kind sd` without PATH checked every configured file all the same (ControlNets too: minutes of reading);
        # a folder setting that holds none of its weights is checked as the kind it should hold (FOLDER_KINDS)
        targets = [(engine, k, p) for engine in engines for k, p in engine.configured()
                   if p is not None and args.kind in (None, k, getattr(engine, "FOLDER_KINDS", {}).get(k))]
        if not targets:
            if args.json:  # a reader of --json gets JSON on stdout whatever happens: no file was checked
                print("[]")
            what = {None: "weights are", "sd": "SD model is", "controlnet": "guidance module or ControlNet is",
                    "target_generator": "target generator is"}
            print(f"no {what[args.kind]} configured; see `handforge models list`", file=sys.stderr)
            return 1
    failed, found = False, []
    sd = None if args.path else config.value(SD_MODEL.key)  # the configured ControlNets, target generator must fit it
    for engine, kind, path in targets:
        report = engine.check(kind, path, args.hash, sd)
        found.append({"kind": kind, "path": str(path), "ok": report.ok, "notes": report.notes,
                      "problems": report.problems})
        failed |= not report.ok
        if args.json:
            continue
        print(f"{'ok' if report.ok else 'FAILED'}  {kind}  {path}")
        for line in report.notes:
            print(f"    {line}")
        for line in report.problems:
            print(f"    problem: {line}")
    if args.json:
        print(json.dumps(found, indent=2))
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    action = args.action or "list"
    try:
        if action == "list":
            return _print_status(args.json)
        if action == "check":
            return _check(args)
        if action == "import":
            weights = _weights(args.kind)
            target = weights.import_weights(args.path, args.kind, args.name)
            setting = weights.SETTINGS[args.kind]
            # absolute: a relative path in the config file is read from the file's folder, not from here
            value = os.path.abspath(target if args.kind != "controlnet" else target.parent)
            if args.json:
                print(json.dumps({"imported": str(target), "setting": setting.key, "value": str(value)}))
            else:
                print(f"imported into {target}\nset it in the config file:\n    [{setting.section}]\n    "
                      f"{setting.name} = {json.dumps(str(value), ensure_ascii=False)}")
            note = weights.import_note(args.kind, target, args.path)
            if note:
                print(f"note: {note}", file=sys.stderr)
            return 0
        from handforge.engines.image.weights import fetch  # (the image engines' public weights only)

        target = fetch(args.name, args.kind)
        print(json.dumps({"downloaded": str(target)}) if args.json else f"downloaded into {target}")
        return 0
    except (ValueError, FileExistsError, ConnectionError) as exc:
        print(f"handforge models {action}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled while importing (nothing is left half-copied)
        if action != "import":  # (the others' are not a copy: handforge.cli says them)
            raise
        print(f"handforge models import: could not copy {args.path}: {file_error(_first_copy_error(exc))}; nothing was "
              "left half-copied: run it again", file=sys.stderr)
        return 1


def _first_copy_error(exc: OSError) -> OSError:
    """``exc``, or for shutil.copytree's ``shutil.Error`` (its failures as a list of (source, copy, "[Errno 27] File too
    large: ...") printed raw) the first failure as the OSError it was, naming the file copied."""
    failures = exc.args[0] if isinstance(exc, shutil.Error) and exc.args else None
    if not (isinstance(failures, list) and failures and isinstance(failures[0], tuple) and len(failures[0]) == 3):
        return exc
    source, _, why = failures[0]
    code = re.match(r"\[Errno (\d+)\] ([^:]*)", str(why))
    return OSError(int(code[1]), code[2], str(source)) if code else OSError(None, str(why), str(source))
