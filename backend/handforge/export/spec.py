"""The batch specification of ``handforge export SPEC`` (a JSON or TOML file), checked on load.

Every field has a default; unknown keys are errors (a typo would otherwise be ignored silently), and so
are the keys of a pose source or of background images that the spec does not use. Paths
are taken as written: a relative one from the folder the command runs in (it is recorded so). The
example below, every key at its default, is what ``handforge export --example-spec`` prints::

    seed = 0
    samples = 100
    hand_model = "open"                  # or "mano" (your MANO files; non-commercial licence)
    width = 256
    height = 256
    outputs = ["rgb", "mesh", "masks", "skeleton", "depth", "normals"]
    lighting = ["studio", "soft", "rim", "top"]   # presets drawn from (top level: before any [table])

    [poses]
    source = "library"                   # "library" (pairs of named poses), "files" or "corpus"
    names = []                           # library: the poses to draw from (empty: all 46)
    files = []                           # files: motion clips (.npz)
    corpus = ""                          # corpus: a `handforge corpus` folder
    split = "test"

    [camera]
    preset = "third_person"              # or "egocentric": the ranges below (uncomment one to set it)
    # distance = [0.4, 0.8]              # metres from the hands' centre        (egocentric: [0.3, 0.5])
    # elevation = [0, 45]                # degrees above the hands              (egocentric: [35, 65])
    # azimuth = [120, 240]               # degrees about the vertical; 0 = from the person's side (egocentric: [-25, 25])
    # focal = [35, 70]                   # mm on a 36 mm (full-frame) sensor    (egocentric: [16, 24])
    # roll = [-10, 10]                   # degrees, + turns the image anticlockwise (egocentric: [-15, 15])

    [render]
    engine = "workbench"                 # "workbench", "cycles", "generate" (the image engines, see
                                         # [generate]) or "none" (no RGB, no Blender)
    samples = 16                         # Cycles samples per pixel
    antialiasing = "8"                   # Workbench's anti-aliasing: "OFF", "FXAA", or "5", "8", "11", "16",
                                         # "32" samples per pixel (an export at 256² here: ~12 samples/s at
                                         # "8", ~32 at "OFF", its edges stair-stepped)
    forearm = "skin"                     # "skin", "sleeve" or "none": a forearm in the RGB renders only
                                         # (never in the masks, labels or mesh image: those are the hand's)

    [background]
    kinds = ["solid", "gradient"]        # and/or "images"
    folder = ""                          # images: a folder of .png/.jpg

    [hands]
    shape_sigma = 1.0                    # betas ~ N(0, sigma²), clipped to ±3 (one person: both hands)
    skin_tones = []                      # sRGB hex colours (empty: the 10 Monk Skin Tone scale colours)

    [generate]                           # render.engine = "generate": the RGB is a generated image
    engine = "controlnet"                # or "attentionhand" (image.sd_model + image.controlnets / image.guidance)
    prompts = ["a photo of two hands"]   # one drawn per sample from the sample's generator (one given twice: twice as often)
    negative_prompt = ""
    steps = 20                           # DDIM steps
    guidance_scale = 7.5
    control_scale = 1.0
    controls = []                        # controlnet: ControlNet folders "name" or "name:kind" (empty: all
                                         # whose names say their render, e.g. *_depth; the others are warned of)
    tas = true                           # AttentionHand's text attention stage on hand words
    seed = 0                             # added to each sample's noise seed
    keep_below_px = 0                    # > 0: record per sample whether MediaPipe's keypoints lie within
                                         # this mean error of the labels (handforge.evaluation.image_alignment)
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import sys
import tomllib
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

from handforge.arguments import repeated
from handforge.render.blender import ANTIALIASING
from handforge_shared import pose_library
from handforge_shared.files import (FileTooLarge, NestedTooDeeply, NumberTooLong, file_kind, not_utf8, parse_json,
                                    parse_toml, read_user_text)
from handforge_shared.protocol import unique_keys

OUTPUTS = ("rgb", "mesh", "masks", "skeleton", "depth", "normals")
FOREARMS = ("skin", "sleeve", "none")  # handforge_shared.forearm's styles, or none
POSE_SOURCES = ("library", "files", "corpus")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # background images
ENGINES = ("workbench", "cycles", "generate", "none")
IMAGE_ENGINES = ("controlnet", "attentionhand")
LIGHTING_PRESETS = ("studio", "soft", "rim", "top")
BACKGROUNDS = ("solid", "gradient", "images")
BLENDER_MIN_SIDE = 4  # pixels: Blender's smallest render
# how many frames of pixels a background image may take once scaled to cover the frame (its shape kept): a
# 165-byte 1×20000 PNG became 64×1,280,000 at 64² (0.75 GB more memory and 3.5 s for one sample; 1×2,000,000:
# 75 GB); a 10:1 panorama behind a square frame takes 10
BACKGROUND_MAX_COVER = 16
# The Monk Skin Tone scale (Monk, 2019; https://skintone.google/), sRGB
MONK_SKIN_TONES = ("f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a",
                   "292420")
CAMERA_PRESETS = {
    # in front of the person, looking back at their hands
    "third_person": {"distance": [0.4, 0.8], "elevation": [0.0, 45.0], "azimuth": [120.0, 240.0],
                     "focal": [35.0, 70.0], "roll": [-10.0, 10.0]},
    # from the person's eyes: behind and above the hands, wide lens
    "egocentric": {"distance": [0.3, 0.5], "elevation": [35.0, 65.0], "azimuth": [-25.0, 25.0],
                   "focal": [16.0, 24.0], "roll": [-15.0, 15.0]},
}


class SpecError(ValueError):
    """The specification is invalid; the message names the field and what is allowed."""


@dataclass(frozen=True)
class PoseSource:
    source: str = "library"
    names: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    corpus: str = ""
    split: str = "test"


@dataclass(frozen=True)
class CameraRanges:
    preset: str = "third_person"
    distance: tuple[float, float] = (0.4, 0.8)
    elevation: tuple[float, float] = (0.0, 45.0)
    azimuth: tuple[float, float] = (120.0, 240.0)
    focal: tuple[float, float] = (35.0, 70.0)
    roll: tuple[float, float] = (-10.0, 10.0)


@dataclass(frozen=True)
class RenderSettings:
    engine: str = "workbench"
    samples: int = 16
    forearm: str = "skin"
    antialiasing: str = "8"


@dataclass(frozen=True)
class Background:
    kinds: tuple[str, ...] = ("solid", "gradient")
    folder: str = ""


@dataclass(frozen=True)
class HandSettings:
    shape_sigma: float = 1.0
    skin_tones: tuple[str, ...] = MONK_SKIN_TONES


@dataclass(frozen=True)
class GenerateSettings:
    engine: str = "controlnet"
    prompts: tuple[str, ...] = ("a photo of two hands",)
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 7.5
    control_scale: float = 1.0
    controls: tuple[str, ...] = ()
    tas: bool = True
    seed: int = 0
    keep_below_px: float = 0.0


@dataclass(frozen=True)
class ExportSpec:
    seed: int = 0
    samples: int = 100
    hand_model: str = "open"
    width: int = 256
    height: int = 256
    outputs: tuple[str, ...] = OUTPUTS
    poses: PoseSource = PoseSource()
    camera: CameraRanges = CameraRanges()
    render: RenderSettings = RenderSettings()
    lighting: tuple[str, ...] = LIGHTING_PRESETS
    background: Background = Background()
    hands: HandSettings = HandSettings()
    generate: GenerateSettings = GenerateSettings()

    def to_dict(self) -> dict[str, Any]:
        data = json.loads(json.dumps(asdict(self)))
        if self.render.engine != "generate":  # the cards of rendered datasets stay as they were
            del data["generate"]
        return data


def _choices(values: Any, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    values = _strings(values, where, f"one of {', '.join(allowed)}, or a list of them")
    if not values:  # (it said "nothing is not allowed")
        raise SpecError(f"{where}: the list is empty; give at least one of {', '.join(allowed)}, or leave {where} out "
                        "for its default")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise SpecError(f"{where}: {bad} is not allowed; choose from {', '.join(allowed)}")
    return _once(values, where)


def _once(values: tuple[str, ...], where: str) -> tuple[str, ...]:
    """``values`` when none repeats. (A pose or skin tone given twice was drawn twice as often, unsaid; and
    recorded as given, the same export written with each once was then another spec on resume.)"""
    twice = repeated(values)
    if twice:
        raise SpecError(f"{where}: {', '.join(twice)} given more than once; give each once")
    return values


def _choice(value: Any, allowed: tuple[str, ...], where: str) -> str:
    """One of ``allowed`` (a list is refused: it would have been read as its first item)."""
    if not isinstance(value, str):
        raise SpecError(f"{where}: expected one of {', '.join(allowed)}, got {value!r}")
    if value not in allowed:
        raise SpecError(f"{where}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
    return value


def _antialiasing(value: Any) -> str:
    """Workbench's anti-aliasing as Blender names it: the sample counts may be written as numbers (``= 8``, as
    TOML invites), "off" and "fxaa" in any case; recorded as Blender's name, so each setting is one spec."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.upper() in ANTIALIASING:
        return value.upper()
    raise SpecError(f"render.antialiasing: {value!r} is not one of Workbench's anti-aliasing settings; choose one of "
                    f"{', '.join(repr(v) for v in ANTIALIASING)} (\"OFF\": none, \"FXAA\": one filtering pass, a "
                    "number: samples per pixel; the default \"8\")")


def _range(value: Any, where: str, low: float, high: float) -> tuple[float, float]:
    # two numbers in a list: a string's characters (distance = "12" → [1, 2]), a table's keys or true/false
    # were read as numbers, the dataset's camera silently another than the spec's
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise SpecError(f"{where}: expected [min, max], two numbers, got {value!r}")
    # compared as given: an integer of hundreds of digits (JSON and TOML read it whole) is past any float, and
    # float() of it raised an OverflowError traceback
    if not (low <= value[0] <= value[1] <= high):
        shown = ", ".join(str(float(v)) if isinstance(v, float) or abs(v) <= 10**300 else f"a {len(str(abs(v)))}-digit "
                          "number" for v in value)
        raise SpecError(f"{where}: [{shown}] must satisfy {low} <= min <= max <= {high}")
    return float(value[0]), float(value[1])


def _section(cls, data: Any, where: str, defaults: Mapping[str, Any] | None = None):
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a table/object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}; known: {sorted(names)}{_misplaced(unknown, where, names)}")
    return {**(defaults or {}), **data}


def _misplaced(keys: list[str], where: str, names: set[str]) -> str:
    """Where unknown ``keys`` of ``where`` belong, if elsewhere: in TOML a top-level key written below a
    [table] is that table's (``width = 512`` after ``[camera]`` was refused as an unknown camera key, unsaid why);
    else the known key of ``names`` each one is likely a misspelling of (``widht``: the user compared a dozen)."""
    tables = {f.name: {g.name for g in fields(f.default)} for f in fields(ExportSpec) if is_dataclass(f.default)}
    top = [k for k in keys if k in {f.name for f in fields(ExportSpec)} and where != "spec"]
    hints = [f"{', '.join(top)}: top-level key(s), which in TOML go above the first [table]"] if top else []
    hints += [f"{k}: a key of [{', '.join(t for t, known in tables.items() if k in known)}]" for k in keys
              if k not in top and any(k in known for t, known in tables.items() if t != where)]
    placed = {h.split(":")[0] for h in hints} | set(top)
    hints += [f"{k}: did you mean {near[0]}?" for k in keys
              if k not in placed and (near := difflib.get_close_matches(k, sorted(names), n=1, cutoff=0.7))]
    return f" ({'; '.join(hints)})" if hints else ""


def _positive_int(value: Any, where: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise SpecError(f"{where}: expected a whole number from 1 to {high}, got {value!r}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SpecError(f"{where}: expected a number from {low} to {high}, got {value!r}")
    return float(value)


def _strings(value: Any, where: str, expected: str = "a list of strings") -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: expected {expected}, got {value!r}")
    return tuple(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{where}: expected a string, got {value!r}")
    return value


def _path(value: Any, where: str) -> str:
    """A path of the spec, refused in words where no file can be named by it: a "~user" with no home folder (a
    traceback, before) or a name longer than the file system takes (said without the key, and the whole path)."""
    text = _text(value, where)
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise SpecError(f"{where}: there is no home folder for {Path(text).parts[0]}: give the full path") from None
    try:
        path.stat()
    except OSError as exc:  # (a path that names nothing is said by its key's own check, with what it needs)
        if exc.errno == errno.ENAMETOOLONG:
            shown = text if len(text) <= 80 else f"{text[:40]}…{text[-30:]}"
            raise SpecError(f"{where}: {shown!r}: a name in this path is longer than the file system allows: "
                            "shorten it") from None
    except ValueError:  # (a NUL: said by the key's own check)
        pass
    return text


def _seed(value: Any, name: str) -> int:
    """A seed: a whole number in [0, 2**63) (what TOML holds and torch's generators take)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise SpecError(f"{name}: expected a whole number from 0 to 2**63 - 1, got {value!r}")
    return value


def _generate(data: Any) -> GenerateSettings:
    gen = _section(GenerateSettings, data, "generate")
    engine = _choice(gen.get("engine", "controlnet"), IMAGE_ENGINES, "generate.engine")
    prompts = _strings(gen.get("prompts", GenerateSettings.prompts), "generate.prompts")
    if not prompts or not all(p.strip() for p in prompts):
        raise SpecError("generate.prompts: give at least one non-empty prompt")
    # (a ControlNet named twice was refused only as the generator started; an empty name is none)
    controls = _once(_strings(gen.get("controls", ()), "generate.controls"), "generate.controls")
    if not all(c.strip() for c in controls):
        raise SpecError(f"generate.controls: {list(controls)!r} holds an empty name: name ControlNet folders, or "
                        "leave controls out for all of them")
    if engine == "attentionhand" and controls:
        raise SpecError("generate.controls: controls choose ControlNets of the controlnet engine; leave them out "
                        "for attentionhand")
    seed = _seed(gen.get("seed", 0), "generate.seed")
    tas = gen.get("tas", True)
    if not isinstance(tas, bool):
        raise SpecError(f"generate.tas: expected true or false, got {tas!r}")
    return GenerateSettings(engine=engine, prompts=prompts,
                            negative_prompt=_text(gen.get("negative_prompt", ""), "generate.negative_prompt"),
                            steps=_positive_int(gen.get("steps", 20), "generate.steps", 200),
                            guidance_scale=_number(gen.get("guidance_scale", 7.5), "generate.guidance_scale", 1.0, 30.0),
                            control_scale=_number(gen.get("control_scale", 1.0), "generate.control_scale", 0.0, 3.0),
                            controls=controls, tas=tas, seed=seed,
                            keep_below_px=_number(gen.get("keep_below_px", 0.0), "generate.keep_below_px", 0.0, 1e4))


POSE_KEY_SOURCE = {"names": "library", "files": "files", "corpus": "corpus", "split": "corpus"}  # key → its source


def without_unused(record: Mapping[str, Any]) -> dict[str, Any]:
    """A spec's record (``to_dict``, as a dataset folder holds it) with the keys its pose source,
    backgrounds and render engine do not use at their defaults, and its outputs in ``OUTPUTS``' order: a
    folder recorded before such keys were refused (they were accepted, unread) resumes from the same spec
    without them, one exported with ``engine = "none"`` resumes whatever Cycles' samples (or Workbench's
    anti-aliasing) say, one recorded before ``render.antialiasing`` was resumes at its default, and one
    whose spec lists the same outputs in another order resumes."""
    out = dict(record)
    if isinstance(out.get("outputs"), list):  # their order changes no file (``--engine`` puts rgb first)
        out["outputs"] = sorted(out["outputs"], key=lambda o: OUTPUTS.index(o) if o in OUTPUTS else len(OUTPUTS))
    poses, background = out.get("poses"), out.get("background")
    if isinstance(poses, dict):
        defaults = asdict(PoseSource())
        out["poses"] = {**poses, **{k: defaults[k] for k, used_by in POSE_KEY_SOURCE.items()
                                    if k in poses and poses.get("source") != used_by}}
    if isinstance(background, dict) and "images" not in (background.get("kinds") or ()) and "folder" in background:
        out["background"] = {**background, "folder": ""}
    render = out.get("render")
    if isinstance(render, dict):  # Cycles' samples under another engine, a forearm in no Blender render: unread
        engine, rgb = render.get("engine"), "rgb" in (out.get("outputs") or ())
        # (a folder recorded before render.antialiasing was rendered at Blender's 8 samples: its default)
        out["render"] = {"antialiasing": RenderSettings.antialiasing, **render,
                         **({"samples": RenderSettings.samples} if engine != "cycles" else {}),
                         **({"forearm": RenderSettings.forearm}
                            if not (rgb and engine in ("workbench", "cycles")) else {}),
                         **({"antialiasing": RenderSettings.antialiasing}
                            if not (rgb and engine == "workbench") else {})}
    return json.loads(json.dumps(out))


def parse_spec(data: Mapping[str, Any]) -> ExportSpec:
    top = _section(ExportSpec, data, "spec")
    seed = _seed(top.get("seed", 0), "seed")
    hand_model = _choice(top.get("hand_model", "open"), ("open", "mano"), "hand_model")

    poses = _section(PoseSource, top.get("poses", {}), "poses")
    source = _choice(poses.get("source", "library"), POSE_SOURCES, "poses.source")
    if source == "files" and not poses.get("files"):
        raise SpecError("poses.files: give at least one motion clip (.npz) for source = 'files'")
    if source == "corpus" and not poses.get("corpus"):
        raise SpecError("poses.corpus: give the folder `handforge corpus --out` wrote for source = 'corpus'")
    names = _once(_strings(poses.get("names", ()), "poses.names", "a list of pose names"), "poses.names")
    unknown = sorted(set(names) - set(pose_library.names()))
    if unknown:
        raise SpecError(f"poses.names: unknown poses {unknown}; known: {', '.join(pose_library.names())}")
    files = _once(_strings(poses.get("files", ()), "poses.files", "a list of motion clip paths"), "poses.files")
    pose_source = PoseSource(source=source, names=names, files=tuple(_path(f, "poses.files") for f in files),
                             corpus=_path(poses.get("corpus", ""), "poses.corpus"),
                             split=_text(poses.get("split", "test"), "poses.split"))
    # a key of another source is an error, as an unknown key is: with source left at 'library', clips given
    # in files were never read (nor checked) and the card listed them as if they had been used
    for key, used_by in POSE_KEY_SOURCE.items():
        if getattr(pose_source, key) != getattr(PoseSource, key) and source != used_by:
            raise SpecError(f"poses.{key} is given but poses.source is {source!r}: set source = {used_by!r} to "
                            f"use it, or remove {key}")
    # checked here, before the output folder is made: a mistyped path would leave a folder of this
    # spec that the corrected spec is then refused to write into
    if source == "files":
        for path in pose_source.files:
            _check_clip(path, hand_model)
    if source == "corpus":
        _check_corpus(pose_source.corpus, pose_source.split, hand_model)

    cam_in = top.get("camera", {})
    preset = _choice(cam_in.get("preset", "third_person") if isinstance(cam_in, Mapping) else "third_person",
                     tuple(CAMERA_PRESETS), "camera.preset")
    cam = _section(CameraRanges, cam_in, "camera", CAMERA_PRESETS[preset])
    camera = CameraRanges(preset=preset, distance=_range(cam["distance"], "camera.distance", 0.05, 100.0),
                          elevation=_range(cam["elevation"], "camera.elevation", -90.0, 90.0),
                          azimuth=_range(cam["azimuth"], "camera.azimuth", -360.0, 360.0),
                          focal=_range(cam["focal"], "camera.focal", 4.0, 500.0),
                          roll=_range(cam["roll"], "camera.roll", -180.0, 180.0))

    ren = _section(RenderSettings, top.get("render", {}), "render")
    render = RenderSettings(engine=_choice(ren.get("engine", "workbench"), ENGINES, "render.engine"),
                            samples=_positive_int(ren.get("samples", 16), "render.samples", 4096),
                            forearm=_choice(ren.get("forearm", "skin"), FOREARMS, "render.forearm"),
                            # accepted under another engine, as Cycles' samples are under Workbench: one spec
                            # switched between engines keeps both settings; unused, it is said (run.py's
                            # unread_render_settings) and a resume ignores it (without_unused)
                            antialiasing=_antialiasing(ren.get("antialiasing", RenderSettings.antialiasing)))
    if "samples" in ren and "samples" not in top and render.engine != "cycles":
        # read as the dataset's size (the README's example spec has one under [render]), it made the default 100
        raise SpecError(f"render.samples = {render.samples} is Cycles' samples per pixel (unused with engine "
                        f"{render.engine!r}), not the dataset's size, which the top-level samples sets (none given: "
                        f"{ExportSpec.samples}): for {render.samples} samples write samples = {render.samples} above "
                        "the first [table]; keep render.samples only beside a top-level samples")
    outputs = _choices(top.get("outputs", OUTPUTS), OUTPUTS, "outputs")
    if render.engine == "none" and "rgb" in outputs:  # (GL images only: `handforge export --engine none`)
        outputs = tuple(o for o in outputs if o != "rgb")
    if not {"rgb", "mesh"} & set(outputs):  # the COCO and InterHand2.6M files name an image per sample ('None')
        raise SpecError("outputs: give 'rgb' or 'mesh' (or both): the labels are of an image, and the dataset files "
                        "name it" + (" (render.engine 'none' draws no RGB)" if render.engine == "none" else ""))

    bg = _section(Background, top.get("background", {}), "background")
    background = Background(kinds=_choices(bg.get("kinds", ("solid", "gradient")), BACKGROUNDS, "background.kinds"),
                            folder=_path(bg.get("folder", ""), "background.folder"))
    if background.folder and "images" not in background.kinds:  # (its images were never drawn, unsaid)
        raise SpecError("background.folder is given but background.kinds has no 'images': add 'images' to kinds "
                        "to draw from it, or remove folder")
    if "images" in background.kinds:
        folder = Path(background.folder).expanduser()
        if not background.folder:  # (it said "'' is not a folder", which reads as a path problem)
            raise SpecError("background.folder: not given; background.kinds has 'images', which draws from a "
                            "folder of .png/.jpg images: set folder = \"path/to/images\", or remove 'images' from kinds")
        if not folder.is_dir():
            raise SpecError(f"background.folder: {background.folder!r}{_resolved(background.folder)} is not a folder "
                            "(needed for 'images')")
        if not background_files(background.folder):
            raise SpecError(f"background.folder: {background.folder!r} has no .png or .jpg images")  # (per sample)
    hands_in = _section(HandSettings, top.get("hands", {}), "hands")
    sigma = _number(hands_in.get("shape_sigma", 1.0), "hands.shape_sigma", 0.0, 3.0)
    # (an empty list is the default, as documented above; 0 or false meant it too, unsaid: now type errors)
    tones = tuple(t.removeprefix("#").lower() for t in _strings(hands_in.get("skin_tones", MONK_SKIN_TONES),
                                                          "hands.skin_tones", "a list of sRGB hex colours")
                  or MONK_SKIN_TONES)
    for tone in tones:
        if len(tone) != 6 or any(c not in "0123456789abcdef" for c in tone):
            raise SpecError(f"hands.skin_tones: {tone!r} is not an sRGB hex colour like 'a07e56'")
    _once(tones, "hands.skin_tones (as colours, '#' and case aside)")
    width = _positive_int(top.get("width", 256), "width", 8192)
    height = _positive_int(top.get("height", 256), "height", 8192)
    if "images" in background.kinds:
        _check_background_images(background.folder, width, height)
    # checked whole whatever the engine, as the other unused sections are: a wrong value is said now, not
    # when the engine is switched to generate (only its keys were checked when unused)
    generate = _generate(top.get("generate", {}))
    if render.engine == "generate" and (width % 8 or height % 8):  # SD's VAE halves the image three times
        raise SpecError(f"width, height: {width}×{height}; render.engine = 'generate' needs multiples of 8")
    if render.engine in ("workbench", "cycles") and min(width, height) < BLENDER_MIN_SIDE and "rgb" in outputs:
        # (Blender made a 4×4 image for labels of 1×1, and failed every sample of 2×300)
        raise SpecError(f"width, height: {width}×{height}; Blender renders images of at least {BLENDER_MIN_SIDE}×"
                        f"{BLENDER_MIN_SIDE} pixels: make them larger, or set render.engine = 'none' (GL images only)")
    return ExportSpec(seed=seed, samples=_positive_int(top.get("samples", 100), "samples", 10_000_000),
                      hand_model=hand_model, width=width, height=height, outputs=outputs, generate=generate,
                      poses=pose_source, camera=camera, render=render,
                      lighting=_choices(top.get("lighting", LIGHTING_PRESETS), LIGHTING_PRESETS, "lighting"),
                      background=background, hands=HandSettings(shape_sigma=float(sigma), skin_tones=tones))


def background_files(folder: str) -> tuple[Path, ...]:
    """The background images of ``folder``, in name order (not a folder named x.png)."""
    return tuple(sorted(p for p in Path(folder).expanduser().iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))


def _check_background_images(folder: str, width: int, height: int) -> None:
    """Each background image opens (its header: cheap, as every parse of the spec, a worker's too, does it):
    one that does not (a Mac's ``._name.png``, a file not an image, one above PIL's decompression-bomb
    limit) failed every sample that drew it, on every rerun, so that the dataset could never be finished;
    and none is scaled to more than ``BACKGROUND_MAX_COVER`` frames of ``width`` × ``height`` to cover one.
    ``check_decoding`` reads them whole, once per run."""
    for path in background_files(folder):
        problem, size = _read_image(path, decode=False)  # (its size from the same opening: each opened once)
        if problem:
            raise SpecError(f"background.folder: {str(path)!r} is not a readable image ({problem}); "
                            "remove it from the folder or replace it")
        _check_cover(path, size, width, height)


def cover_size(size: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The size an image of ``size`` (width, height) is scaled to, its shape kept, to cover ``width`` × ``height``."""
    scale = max(width / size[0], height / size[1])
    return max(width, round(size[0] * scale)), max(height, round(size[1] * scale))


def _check_cover(path: Path, size: tuple[int, int], width: int, height: int) -> None:
    """The image at ``path``, of ``size``, scaled to cover ``width`` × ``height``, is at most ``BACKGROUND_MAX_COVER``
    frames."""
    cover = cover_size(size, width, height)
    if cover[0] * cover[1] > BACKGROUND_MAX_COVER * width * height:
        raise SpecError(f"background.folder: {str(path)!r} is {size[0]}×{size[1]} pixels, far from the {width}×"
                        f"{height} frame's shape: scaled to cover it, it would be {cover[0]}×{cover[1]} "
                        f"({3 * cover[0] * cover[1] / 1e6:,.1f} MB) for each sample to crop from; crop the image "
                        f"nearer the frame's shape (covering at most {BACKGROUND_MAX_COVER} frames) or remove it")


def check_decoding(images: list[Path]) -> None:
    """Each of ``images`` (background images) decodes: a header is not enough (half a PNG from a download
    cut short has a whole one, and failed every sample that drew it). A JPEG is decoded at an eighth of
    its size (every byte read, 0.12-0.2 s for 12 MP here), a PNG's chunks are checked (0.03 s), anything
    else decoded; on up to 8 threads (PIL releases the GIL). The export driver calls it once, for the
    images its folder has not recorded unchanged (``run.folder_record``)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for path, problem in zip(images, pool.map(_image_problem, images)):
            if problem:
                raise SpecError(f"background.folder: {str(path)!r} is not a readable image ({problem}); "
                                "remove it from the folder or replace it")


def _image_problem(path: Path, decode: bool = True) -> str:
    """Why the image at ``path`` cannot be opened (``decode``: decoded) ('' when it can)."""
    return _read_image(path, decode)[0]


def _read_image(path: Path, decode: bool = True) -> tuple[str, tuple[int, int] | None]:
    """Why the image at ``path`` cannot be opened (``decode``: decoded) ('' when it can), and its size (None when
    it cannot)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            size = image.size
            if not decode:
                pass
            elif image.format == "JPEG":
                image.draft("RGB", (1, 1))  # libjpeg's 1/8 scale: the whole file, a fraction of the work
                image.load()
            elif image.format == "PNG":
                image.verify()  # every chunk and its CRC, to the end
            else:
                image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # (UnidentifiedImageError: OSError)
        return f"{type(exc).__name__}: {exc}", None
    return "", size


def input_files(spec: ExportSpec) -> dict[str, Path]:
    """The files besides the spec that its samples are made from, by the name the spec gives them (a
    corpus: its ``splits.json`` and the clips of the spec's split, edited in place or not)."""
    files: dict[str, Path] = {}
    if "images" in spec.background.kinds:
        files.update((str(Path(spec.background.folder) / p.name), p) for p in background_files(spec.background.folder))
    if spec.poses.source == "files":
        files.update((path, Path(path).expanduser()) for path in spec.poses.files)
    if spec.poses.source == "corpus":
        from handforge.datasets.corpus import clip_path, read_splits

        root = Path(spec.poses.corpus)
        files[str(root / "splits.json")] = root.expanduser() / "splits.json"
        files.update((str(clip_path(root, name)), clip_path(root.expanduser(), name))
                     for name in read_splits(root.expanduser())[spec.poses.split])
    return files


def _resolved(path: str) -> str:
    """For a relative path that names nothing: where it was looked for (the folder the command runs in, not the
    spec's: a resume from another folder read it there, and the refusal named only the path as written)."""
    if not path or Path(path).expanduser().is_absolute():
        return ""
    return f" (read from the folder the command runs in: {Path.cwd() / Path(path).expanduser()})"


def _check_clip(path: str, hand_model: str) -> None:
    """A motion clip the export can pose: it loads, is of the spec's hand model and has a frame with a
    hand (found per sample, after the folder was claimed, a wrong clip kept its fix out of that folder;
    another hand model's clip posed the wrong hands and labelled them, unsaid)."""
    from handforge.datasets import check_clips, clip_arrays, reach_problem, read_clip_info
    from handforge_shared.poses import MotionClip

    if not Path(path).expanduser().is_file():
        raise SpecError(f"poses.files: {path!r}{_resolved(path)} is not a file (a motion clip .npz)")
    try:
        clip = MotionClip.load(Path(path).expanduser())
    except (OSError, ValueError) as exc:  # (PoseFormatError is a ValueError)
        raise SpecError(f"poses.files: {path!r} is not a readable motion clip ({exc})") from None
    try:
        check_clips([read_clip_info(Path(path).expanduser())], hand_model, SPEC_MODEL_FIX)
    except ValueError as exc:  # DatasetError
        raise SpecError(f"poses.files: {path!r}: {exc}") from None
    if not any(present.any() for present in clip.present.values()):
        raise SpecError(f"poses.files: {path!r} has no frame with a hand")
    far = reach_problem(clip_arrays(clip), [0], [repr(path)])
    if far:
        raise SpecError(f"poses.files: {far}")


def _check_corpus(folder: str, split: str, hand_model: str) -> None:
    """The corpus split has clips, of the spec's hand model (their metadata only: the sampler indexes it so)."""
    if not Path(folder).expanduser().is_dir():
        raise SpecError(f"poses.corpus: {folder!r}{_resolved(folder)} is not a folder (the one `handforge corpus "
                        "--out` wrote)")
    from handforge.datasets import check_clips, open_corpus

    try:
        clips = open_corpus(str(Path(folder).expanduser()), split=split)
        if len(clips) == 0:
            raise SpecError(f"{folder!r} has no clips in split {split!r} (poses.split)")
        check_clips(clips.clips, hand_model, SPEC_MODEL_FIX)
    except (OSError, ValueError) as exc:  # (DatasetError and SpecError are ValueErrors)
        raise SpecError(f"poses.corpus: {exc}") from None


SPEC_MODEL_FIX = "set the spec's hand_model = {model!r}"


def example_spec() -> str:
    """This module's example specification (TOML, every key at its default, commented), to start a spec from."""
    import textwrap

    return textwrap.dedent(__doc__.split("::\n\n", 1)[1]).rstrip() + "\n"


def _written_as(text: str, form: str) -> str:
    """A hint where ``text``, refused under its file's suffix, reads as ``form`` ("TOML" or "JSON"): a spec saved
    under the other suffix was said to be invalid, nothing more."""
    try:
        data = parse_toml(text) if form == "TOML" else parse_json(text)
    except (ValueError, NestedTooDeeply):  # (TOMLDecodeError and JSONDecodeError are ValueErrors)
        return ""
    if not isinstance(data, dict):
        return ""
    return f": it is {form}, so name it {'.toml' if form == 'TOML' else '.json'}"


def load_spec(path: str | os.PathLike, record_only: tuple[str, ...] = ()) -> ExportSpec:
    """Read a ``.json`` or ``.toml`` specification. ``record_only``: keys left out of a JSON object before it is
    parsed (a dataset's record is its spec plus what a resume checks besides: ``folder.RECORD_ONLY``)."""
    path = Path(path)
    if path.is_dir():  # (was "no such file")
        raise SpecError(f"{path} is a folder: give the export specification file in it (.toml or .json)")
    if not path.is_file():
        if os.path.lexists(path):  # a device, FIFO or broken link
            raise SpecError(f"{path} is not a regular file ({file_kind(path)}): give the export specification, "
                            ".json or .toml")
        raise SpecError(f"{path}: no such file (the export specification, .json or .toml)")
    try:
        text = read_user_text(path)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: {not_utf8(exc)}") from None
    except FileTooLarge as exc:
        raise SpecError(f"the export specification {exc}") from None
    try:
        # a key twice in JSON: refused, as TOML refuses it (json kept the last one silently)
        data = parse_toml(text) if path.suffix.lower() == ".toml" else parse_json(text, object_pairs_hook=unique_keys)
    except NestedTooDeeply as exc:  # ([[[…]]] thousands deep, TOML or JSON: not the ValueError below's "not valid JSON")
        raise SpecError(f"{path}: {exc}, which no specification is: is it the right file?") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        if path.suffix.lower() not in (".toml", ".json"):  # e.g. a .yaml, called "not valid JSON" alone
            raise SpecError(f"{path}: specifications are read as TOML (.toml) or JSON (any other name), and this is "
                            f"not valid JSON ({exc}): write it as TOML or JSON") from None
        form, other = ("TOML", "JSON") if path.suffix.lower() == ".toml" else ("JSON", "TOML")
        raise SpecError(f"{path}: not valid {form} ({exc}){_written_as(text, other)}") from None
    except ValueError as exc:  # unique_keys': "duplicate key 'samples'"; else e.g. a number of 5,000 digits
        if str(exc).startswith("duplicate key"):
            raise SpecError(f"{path}: {exc}: give each key once") from None
        form = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        if isinstance(exc, NumberTooLong) or "integer string conversion" in str(exc):  # (TOML's: Python's own words)
            raise SpecError(f"{path}: not valid {form}: a number of more than {sys.get_int_max_str_digits():,} digits, "
                            "more than any setting takes") from None
        raise SpecError(f"{path}: not valid {form} ({exc})") from None
    if record_only and isinstance(data, dict):  # (a resume derives and checks those keys again)
        data = {k: v for k, v in data.items() if k not in record_only}
    return parse_spec(data)
