"""Keyframing operators: key the pose, import and export motion clips (.npz)."""

from __future__ import annotations

import json
import os
import time

import bpy
from bpy.props import IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import fingers, generated_keys, hands, importers, keys, ops_interaction, placement
from .errors import report_error, reports_errors
from .ops_pose import _target, sides_option
from .properties import BLEND_RELATIVE, ONE_SHOT, SCENE_FRAME_END, SCENE_FRAME_START, absolute_path, scene_range
from handforge_shared.poses import KEY_PARTS, MotionClip

MODAL_SLICE_S = 0.05  # work per timer tick of a long export: the UI stays responsive, Esc is heard


def motion_file_to_read(filepath: str) -> str:
    """The absolute path of an existing motion file, or a ValueError that says what to choose."""
    if not filepath.strip():
        raise ValueError("no file chosen: choose a HandForge motion clip (.npz) to import")
    path = absolute_path(filepath, "file")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: choose a motion clip (.npz) inside it")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file; choose an existing motion clip (.npz)")
    return path


def motion_file_to_write(filepath: str) -> str:
    """The absolute path to write a motion clip to, checked before any work is done."""
    if not filepath.strip() or os.path.basename(filepath).lower() in ("", ".npz"):
        raise ValueError("no file chosen: choose where to write the motion clip, e.g. //motion.npz")
    path = absolute_path(filepath, "file")  # "//motion.npz" of an unsaved .blend went to the working folder
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: choose a file name inside it, e.g. motion.npz")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"the folder {folder} does not exist: create it or choose another folder")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"the folder {folder} is not writable: choose another folder")
    return path


class HANDFORGE_OT_key_pose(bpy.types.Operator):
    """Insert keyframes of the current pose of the hands at the current frame"""

    bl_idname = "handforge.key_pose"
    bl_label = "Key Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    sides: sides_option()

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context), edit=True)
        hands.check_evaluated(context.view_layer, found.values())
        hands.check_finite(found.values())  # (a NaN shown, from a NaN key: keyed again, unsaid)
        keys.check_own_actions(found)  # one shared action: the second hand's keys would replace the first's
        keys.check_keyable(found)
        frame = context.scene.frame_current_final  # the time shown, subframe included, as Blender's I key
        # (the keyed finger sliders too, at what the bones show: else they took the keyed pose back)
        total = sum(keys.key_pose(obj, frame) + fingers.key_shown_sliders(obj, frame, "KEYFRAME")
                    for obj in found.values())
        for side, obj in found.items():
            warning = keys.sharing_warning(obj, found.values(), f"its pose at frame {keys.frame_text(frame)} is "
                                                                "this one too")
            for said in (warning, keys.driven_note(side, obj, range(KEY_PARTS), "these keys")):
                if said:
                    self.report({"WARNING"}, said)
        kept = _candidate_kept(context, found.values())
        self.report({"INFO"}, f"keyed {total} channels at frame {keys.frame_text(frame)}" + kept)
        return {"FINISHED"}


def _candidate_kept(context, keyed) -> str:
    """Key Pose on rigs whose interaction candidates are browsed keys the candidate shown, and keeps it: browsing
    ends as Apply ends it ('' when none was browsed, else what the report adds). Left browsing, Cancel put back the
    pose from before the candidates over keys that hold the candidate: the viewport showed one pose, the keys, a
    render and an export another (113 px apart in an export's keypoints)."""
    if not ops_interaction.browsing(context):
        return ""
    browsed = set(json.loads(ops_interaction.browse_state(context).rig_uids or "{}").values())
    if not any(obj.session_uid in browsed for obj in keyed):
        return ""
    ops_interaction.end_browse(context, restore=False)
    return "; the interaction candidate shown is kept (browsing ended, as Apply Candidate ends it)"


# Operators whose button always opens Blender's file browser on their ``filepath``: it stays remembered, so
# the browser opens where the artist last was (as Blender's importers and exporters do); only a script that
# omits it reuses the last file unseen.
FILE_BROWSER_OPERATORS = ("handforge.import_motion", "handforge.export_motion")


class HANDFORGE_OT_import_motion(bpy.types.Operator, ImportHelper):
    """Import a HandForge motion clip (.npz) onto the hands as generated keyframes (your own keys stay)"""

    bl_idname = "handforge.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    frame_start: IntProperty(name="Start Frame", default=1, options=ONE_SHOT,
                             description="Where the clip's first frame goes (the current frame unless set; any frame, "
                                         "negative ones too)")
    blend: IntProperty(name="Blend Frames", default=0, min=0, soft_max=24,
                       description="Ease the clip into and out of your own keys over this many frames instead of "
                                   "jumping to them (0: no easing)")

    def invoke(self, context, event):
        self.frame_start = context.scene.frame_current  # shown in the file browser, and set from here on
        return super().invoke(context, event)

    @reports_errors
    def execute(self, context):
        path = motion_file_to_read(self.filepath)  # checked before any work
        found = hands.scene_hands(context.scene, "BOTH", edit=True)
        clip = MotionClip.load(path)
        # (not set: the current frame; a -1 for it made negative frames unreachable, -20 went to the current one)
        start = self.frame_start if self.properties.is_property_set("frame_start") else context.scene.frame_current
        summary, browse_ended = importers.key_motion(context, clip, found, start, "the imported motion",
                                                     blend=self.blend)
        for warning in summary["warnings"] + ([browse_ended] if browse_ended else []):
            self.report({"WARNING"}, warning)
        moved = "".join(f"; {move}" for move in summary["range"])
        self.report({"INFO"}, f"imported {clip.num_frames} frames ({summary['keys']} keys) at frames "
                              f"{keys.range_text(summary['frame_start'], summary['frame_end'])}"
                              f"{keys.placing_note(clip, keys.scene_fps(context.scene), summary['frame_start'])}{moved}")
        return {"FINISHED"}


class HANDFORGE_OT_export_motion(bpy.types.Operator, ExportHelper):
    """Export the animation of the hands over a frame range as a HandForge motion clip (.npz)"""

    bl_idname = "handforge.export_motion"
    bl_label = "Export Motion"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    # ExportHelper's, shown in the redo panel: a typed "//motion.npz" is written beside the .blend file.
    # Remembered, as Blender's own exporters' (FILE_BROWSER_OPERATORS): the browser opens at the last file
    filepath: StringProperty(name="File Path", subtype="FILE_PATH", maxlen=1024, options=BLEND_RELATIVE,
                             description="The motion clip to write (.npz; // is the .blend file's folder)")
    frame_start: IntProperty(**SCENE_FRAME_START, options=ONE_SHOT)
    frame_end: IntProperty(**SCENE_FRAME_END, options=ONE_SHOT)
    sides: sides_option(default="BOTH", description="Which hands to export")

    @reports_errors
    def execute(self, context):
        scene = context.scene
        self._path = motion_file_to_write(self.filepath)  # everything is checked before any work
        start, end = scene_range(scene, self.frame_start, self.frame_end)
        found = hands.scene_hands(scene, _target(self, context))
        keys.check_export(found, start, end)
        # a rig read frame by frame (joint limits, NLA, drivers: not from its curves) must be one Blender evaluates:
        # an excluded or disabled one was written with one pose on every frame, unsaid
        hands.check_evaluated(context.view_layer, [obj for obj in found.values() if not keys.curves_alone(obj)])
        self._placement_notes = placement_notes(found)  # (read now: the steps move the scene's frame)
        self._result = {}
        self._steps = keys.export_steps(context, found, start, end, self._result)
        if bpy.app.background or context.window is None:  # no UI to show progress in: all at once
            for _ in self._steps:
                pass
            return self._finish()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.0, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._steps.close()  # restores the scene's frame
            self._end_ui(context)
            self.report({"WARNING"}, "export cancelled: nothing was written")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        until = time.perf_counter() + MODAL_SLICE_S
        try:
            for done in self._steps:
                context.window_manager.progress_update(int(100 * done))
                context.workspace.status_text_set(f"HandForge: exporting motion, {100 * done:.0f} % (Esc cancels)")
                if time.perf_counter() > until:
                    return {"RUNNING_MODAL"}
        except Exception as exc:  # noqa: BLE001 - reported like any operator error
            self._end_ui(context)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._end_ui(context)
        try:
            return self._finish()
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: said with its fix (execute's path has it too)
            report_error(self, exc)
            return {"CANCELLED"}

    def _end_ui(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        context.workspace.status_text_set(None)

    def _finish(self):
        clip = self._result["clip"]
        path = clip.save(self._path)
        for note in self._placement_notes:
            self.report({"WARNING"}, note)
        self.report({"INFO"}, f"wrote {clip.num_frames} frames to {path}")
        return {"FINISHED"}


def placement_notes(found: dict) -> list[str]:
    """What of the hands' placement as objects a clip leaves out, said as warnings: it holds each hand's
    bones in its own armature's space (as Import Motion writes them back), so a rig moved as an object
    (``placement.movers``: keys, drivers, constraints, a parent's) stood still in it, a pair placed apart as
    objects lost where one is from the other, and a mirrored rig (negative scale) showed the other side's hand
    than it holds."""
    notes = []
    for side, obj in found.items():
        moving = [o.name for o in placement.movers(obj)]
        if moving:
            notes.append(f"{obj.name} moves as an object ({', '.join(moving)}: keys, drivers, constraints, NLA "
                         "strips or an animated parent bone): the clip holds its bones only, so that motion is not in "
                         "it; move the hand with its wrist bone instead")
        if obj.matrix_world.determinant() < 0:
            notes.append(f"{obj.name} is mirrored (a negative scale): the clip holds the {side} hand its bones pose, "
                         "not the other side's hand it shows")
    if len(found) == 2 and found["left"].matrix_world != found["right"].matrix_world:
        notes.append("the two rigs are placed differently as objects: the clip holds each hand in its own "
                     "armature's space, so where one hand is from the other is not kept; place the hands with "
                     "their wrist bones (the rigs' objects alike) to keep it")
    return notes


class _GeneratedKeysOperator:
    """Shared by the generated-key tools: which hands, and 'nothing to do' said out loud."""

    bl_options = {"REGISTER", "UNDO"}
    done = ""  # past tense of what the tool does, for its report
    changes = False  # whether it changes what the keys pose (then said of a linked duplicate sharing them)

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    sides: sides_option()

    def act(self, arm_obj) -> int:
        raise NotImplementedError

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context), edit=True)
        keys.check_keyable(found)
        count = sum(self.act(obj) for obj in found.values())
        for obj in found.values() if count and self.changes else ():
            warning = keys.sharing_warning(obj, found.values(), f"its keys were {self.done} too")
            if warning:
                self.report({"WARNING"}, warning)
        if not count:
            which = f"{' and '.join(found)} {'hands have' if len(found) > 1 else 'hand has'}"
            self.report({"INFO"}, f"nothing to do: the {which} no generated keys (Import Motion or a backend job "
                                  "makes them)")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{self.done} {count} generated keys on the {' and '.join(found)} hand")
        return {"FINISHED"}


class HANDFORGE_OT_select_generated_keys(_GeneratedKeysOperator, bpy.types.Operator):
    """Select the generated keys of the hands (and only them), e.g. to move or scale them in the Dope Sheet"""

    bl_idname = "handforge.select_generated_keys"
    bl_label = "Select Generated Keys"
    done = "selected"

    def act(self, arm_obj) -> int:
        return generated_keys.select_generated(arm_obj)


class HANDFORGE_OT_delete_generated_keys(_GeneratedKeysOperator, bpy.types.Operator):
    """Delete the generated keys of the hands; your own keys stay exactly as they are"""

    bl_idname = "handforge.delete_generated_keys"
    bl_label = "Delete Generated Keys"
    done = "deleted"
    changes = True

    def act(self, arm_obj) -> int:
        return generated_keys.delete_generated(arm_obj)


class HANDFORGE_OT_make_artist_keys(_GeneratedKeysOperator, bpy.types.Operator):
    """Turn the generated keys of the hands into your own keys: later imports keep them"""

    bl_idname = "handforge.make_artist_keys"
    bl_label = "Make Artist Keys"
    done = "turned into artist keys"

    def act(self, arm_obj) -> int:
        return generated_keys.generated_to_artist(arm_obj)


CLASSES = (HANDFORGE_OT_key_pose, HANDFORGE_OT_import_motion, HANDFORGE_OT_export_motion,
           HANDFORGE_OT_select_generated_keys, HANDFORGE_OT_delete_generated_keys, HANDFORGE_OT_make_artist_keys)
