"""Blender properties: per hand object (``Object.handforge``) and per scene (``Scene.handforge``)."""

from __future__ import annotations

import os

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .keys import LAST_FRAME
from handforge_shared.skeleton import FINGERS, NUM_BETAS

# the options of a path field that the add-on reads through bpy.path.abspath: "//" (beside the .blend) is
# accepted there, and Blender 4.5 warns on a relative path in a field without it
BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"}
# an operator option that a call which omits it must not take from the last call (Blender remembers the last
# value of every other option): a path, an object's or a saved pose's name, a value whose default stands for
# the scene's or the panel's ("-1: the scene's start"), so that a button or a script gets what it shows
ONE_SHOT = {"SKIP_SAVE"}
PATH_FIELD = BLEND_RELATIVE | ONE_SHOT  # an operator's file or folder field
# a frame range whose -1 stands for the scene's (IntProperty(**SCENE_FRAME_START); an operator's: ONE_SHOT too),
# read by ``scene_range``; the fields go below -1 so that an earlier frame is refused, not clamped to -1
# a property of a hand rig the artist sets on a library override of it (a rig linked from another .blend): without
# it the value cannot be set there, or is lost at the next open
OVERRIDABLE = {"LIBRARY_OVERRIDABLE"}
SCENE_FRAME_START = dict(name="Start", default=-1, min=-LAST_FRAME, soft_min=-1, max=LAST_FRAME,
                         description="First frame (-1: the scene's start)")
SCENE_FRAME_END = dict(name="End", default=-1, min=-LAST_FRAME, soft_min=-1, max=LAST_FRAME,
                       description="Last frame (-1: the scene's end)")


def scene_range(scene, start: int, end: int) -> tuple[int, int]:
    """The frames of a ``SCENE_FRAME_START``/``SCENE_FRAME_END`` pair: -1 is the scene's start or end. Frames
    before 0 are refused: -1 cannot be one of them (Blender clamped -20 to -1, which became the scene's
    whole range, unsaid), and the scene's own range never starts before 0."""
    for name, frame in (("Start", start), ("End", end)):
        if frame < -1:
            raise ValueError(f"{name} {frame}: frames before 0 cannot be asked for (-1 stands for the scene's "
                             f"{name.lower()}): move the keys to frame 0 or later")
    return scene.frame_start if start < 0 else start, scene.frame_end if end < 0 else end


def pasted(path: str) -> str:
    """``path`` as pasted into a field, unwrapped: spaces around it, quotes around it (a file manager's Copy as
    Path) and a local ``file:`` address (a browser's; ``file:///C:/x`` and the common ``file://C:/x`` too) taken off;
    each had Blender's working folder put in front of it. Refused when nothing is left, or the address names another
    machine (``file://server/share``, ``file:////server/share``: its host was dropped)."""
    text = path.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    if text.lower().startswith("file:"):
        from urllib.parse import unquote

        rest = text[len("file:"):]
        if rest.startswith("//"):
            host, slash, local = rest[2:].partition("/")
            if len(host) == 2 and host[0].isalpha() and host[1] in ":|":  # file://C:/x: a drive, not a host
                rest = f"/{host[0]}:/{local}"
            elif host.lower() not in ("", "localhost") or local.startswith("/"):  # (file:////server: UNC)
                named = host or next((part for part in local.split("/") if part), "?")
                raise ValueError(f"{path!r} is an address on another machine ({named}): "
                                 "mount its folder and give the path there")
            else:
                rest = slash + local
        text = unquote(rest)  # (kept whole: a "#" in a name is no fragment here)
        if len(text) > 2 and text[0] == "/" and text[1].isalpha() and text[2] in ":|":  # /C:/x on Windows
            text = f"{text[1]}:{text[3:]}"
    if path and not text:
        raise ValueError(f"{path!r} holds no path: give a file or folder")
    return text


def absolute_path(path: str, what: str = "path") -> str:
    """``path`` read through bpy.path.abspath, made absolute; a "//" path (beside the .blend) of an unsaved
    .blend is refused: it would name a file in Blender's working folder, wherever that is. "~" is the home
    folder, as Blender's file browser reads it (before: a folder named "~" in the working folder). A plain
    relative path (from a script) is the working folder's, as in Python."""
    path = pasted(path)
    if path.startswith("//") and not bpy.data.filepath:
        raise ValueError(f"{path!r} is relative and the .blend is not saved: save it first or choose an "
                         f"absolute {what}")
    return os.path.normpath(os.path.abspath(os.path.expanduser(bpy.path.abspath(path))))


SIDE_ITEMS = [("left", "Left", "Left hand"), ("right", "Right", "Right hand")]
TARGET_ITEMS = [
    ("BOTH", "Both", "Both hands"),
    ("LEFT", "Left", "The left hand"),
    ("RIGHT", "Right", "The right hand"),
]


def _limits_changed(self, context):
    from . import rig

    if self.is_hand and self.id_data.type == "ARMATURE":
        rig.set_limits(self.id_data, self.use_limits)


def _slider_updater(kind: str, finger: str):
    def update(self, context):
        from . import fingers

        if fingers.posable(self.id_data):  # a rig that lost a bone (or is being edited) is left alone
            fingers.slider_changed(context, self.id_data, kind, finger)

    return update


# where each spread slider moves its finger (anatomy.curl_spread_angles: positive is away from the middle finger;
# the middle finger itself goes towards the index, the thumb away from the index)
SPREAD_WAYS = {"thumb": "the thumb away from the index (negative: towards it)",
               "middle": "the middle finger towards the index (negative: towards the ring finger)"}


def _hand_props_annotations() -> dict:
    ann = {
        "is_hand": BoolProperty(name="HandForge Hand", default=False, options={"HIDDEN"}),
        "is_hand_mesh": BoolProperty(name="HandForge Hand Mesh", default=False, options={"HIDDEN"}),
        "side": EnumProperty(name="Side", items=SIDE_ITEMS, default="right", description="Which hand this rig is"),
        "hand_model": StringProperty(name="Hand Model", default="open",
                                     description="The hand model this rig was built from (open or mano)"),
        "betas": FloatVectorProperty(name="Shape", size=NUM_BETAS, default=(0.0,) * NUM_BETAS,
                                     description="Shape coefficients; change them with Set Shape"),
        "use_limits": BoolProperty(name="Joint Limits", default=False, update=_limits_changed, override=OVERRIDABLE,
                                   description="Limit each finger joint to its anatomical range of motion"),
    }
    for finger in FINGERS:
        ann[f"curl_{finger}"] = FloatProperty(
            name=finger.capitalize(), min=0.0, max=1.0, default=0.0, subtype="FACTOR",
            update=_slider_updater("curl", finger), override=OVERRIDABLE,
            description=f"Curl the {finger} (0 straight, 1 fully curled) from its current pose; keyable")
        ann[f"spread_{finger}"] = FloatProperty(
            name=finger.capitalize(), min=-1.0, max=1.0, default=0.0, subtype="FACTOR",
            update=_slider_updater("spread", finger), override=OVERRIDABLE,
            description=f"Spread {SPREAD_WAYS.get(finger, f'the {finger} away from the middle finger (negative: towards it)')} "
                        "from its current pose; keyable")
    return ann


HandProps = type("HANDFORGE_PG_hand", (bpy.types.PropertyGroup,), {"__annotations__": _hand_props_annotations()})


def _is_hand_of(side: str):
    def poll(self, obj):
        return obj.type == "ARMATURE" and obj.handforge.is_hand and obj.handforge.side == side

    return poll


class HANDFORGE_PG_scene(bpy.types.PropertyGroup):
    left: PointerProperty(name="Left Hand", type=bpy.types.Object, poll=_is_hand_of("left"),
                          description="The left hand rig the HandForge tools act on")
    right: PointerProperty(name="Right Hand", type=bpy.types.Object, poll=_is_hand_of("right"),
                           description="The right hand rig the HandForge tools act on")
    target: EnumProperty(name="Hands", items=TARGET_ITEMS, default="BOTH",
                         description="Which hands the pose tools act on")
    job_seed: IntProperty(name="Seed", default=0, min=0, description="Random seed of generated results")
    pose_search: StringProperty(name="Search", default="", options={"TEXTEDIT_UPDATE"},
                                description="Show only library poses whose name, category or description has these words")
    user_pose_name: StringProperty(name="Name", default="",
                                   description="The name Save Pose gives the current finger pose in your user library")


# ---------------------------------------------------------------------- backend state (runtime only)
class HANDFORGE_PG_engine(bpy.types.PropertyGroup):
    available: BoolProperty(name="Available", description="Whether the engine can run on the backend")
    reason: StringProperty(name="Reason", description="Why the engine cannot run and how to fix it, or what it lacks while it runs")
    description: StringProperty(name="Description", description="What the engine does")


class HANDFORGE_PG_kind(bpy.types.PropertyGroup):
    engine: StringProperty(name="Engine", description="The engine that runs this job kind")
    description: StringProperty(name="Description", description="What this job kind does")


class HANDFORGE_PG_hand_model(bpy.types.PropertyGroup):
    available: BoolProperty(name="Available", description="Whether the backend can build this hand model")
    reason: StringProperty(name="Reason", description="Why the hand model is unavailable, and how to fix it")


class HANDFORGE_PG_job(bpy.types.PropertyGroup):
    job_id: StringProperty(name="Job", description="The backend's id of the job")
    label: StringProperty(name="Label", description="What the job is doing")
    fraction: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR", description="How much of the job is done")
    message: StringProperty(name="Message", description="The job's latest progress message")


class HANDFORGE_PG_backend(bpy.types.PropertyGroup):
    status: StringProperty(name="Status", default="Not connected", description="The connection to the backend")
    connected: BoolProperty(name="Connected", description="Whether a backend is connected and answering")
    engines: CollectionProperty(type=HANDFORGE_PG_engine, name="Engines", description="The backend's engines")
    kinds: CollectionProperty(type=HANDFORGE_PG_kind, name="Job Kinds", description="The job kinds the backend runs")
    hand_models: CollectionProperty(type=HANDFORGE_PG_hand_model, name="Hand Models",
                                    description="The hand models the backend knows")
    jobs: CollectionProperty(type=HANDFORGE_PG_job, name="Jobs", description="Jobs running now")


CLASSES = (HandProps, HANDFORGE_PG_scene, HANDFORGE_PG_engine, HANDFORGE_PG_kind, HANDFORGE_PG_hand_model,
           HANDFORGE_PG_job, HANDFORGE_PG_backend)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.handforge = PointerProperty(type=HandProps, name="HandForge", override=OVERRIDABLE,
                                                 description="HandForge hand rig settings of this object")
    bpy.types.Scene.handforge = PointerProperty(type=HANDFORGE_PG_scene, name="HandForge",
                                                description="HandForge settings of this scene: its hands and targets")
    bpy.types.WindowManager.handforge = PointerProperty(type=HANDFORGE_PG_backend, name="HandForge Backend",
                                                        description="The HandForge backend connection of this session")


def unregister() -> None:
    del bpy.types.WindowManager.handforge
    del bpy.types.Scene.handforge
    del bpy.types.Object.handforge
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
