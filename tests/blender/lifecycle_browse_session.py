"""Blender session: HandForge disabled while Sample Interaction candidates are browsed (through a real backend the
add-on starts) ends the browse with the rigs as they were before the candidates, as Cancel does: in the
Preferences, and under Blender's restricted context (``RestrictBlend``: no scene, no ``bpy.data``); a file saved
after the disabling holds the artist's pose."""

from __future__ import annotations

import bpy
import numpy as np
from session import ADDON_MODULE, Session, hand

s = Session()
s.install()
s.start_backend()
SIDES = ("left", "right")


RIGS: dict[str, str] = {}  # side → the rig's name (the scene's HandForge properties go with the add-on)


def channels(side: str) -> np.ndarray:
    """Every pose bone's matrix_basis: the channels as written."""
    return np.array([np.array(pb.matrix_basis) for pb in bpy.data.objects[RIGS[side]].pose.bones])


def browse_then(disable) -> dict:
    """Sample with the left hand active (the right one posed by the candidates), then ``disable()``."""
    bpy.context.view_layer.objects.active = hand("left")
    before = {side: channels(side) for side in SIDES}
    result = bpy.ops.handforge.sample_interaction(engine="templates", count=3, seed=3)
    found = {"sampled": sorted(result),
             "browsing": len(bpy.context.window_manager.handforge_interaction.candidates),
             "previewed": not np.allclose(channels("right"), before["right"], atol=1e-3)}
    disable()
    found["enabled_after"] = ADDON_MODULE in bpy.context.preferences.addons
    found["right_off_its_pose"] = float(np.abs(channels("right") - before["right"]).max())
    found["left_off_its_pose"] = float(np.abs(channels("left") - before["left"]).max())
    return found


def setup():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.apply_preset(preset="point", sides="RIGHT") == {"FINISHED"}
    RIGS.update({side: hand(side).name for side in SIDES})
    s.arrays["right0"] = channels("right")


s.check("setup", setup)


def in_preferences():
    found = browse_then(lambda: bpy.ops.preferences.addon_disable(module=ADDON_MODULE))
    bpy.ops.wm.save_as_mainfile(filepath=str(s.work / "disabled.blend"))
    return found


s.check("preferences", in_preferences)


def restricted():
    assert bpy.ops.preferences.addon_enable(module=ADDON_MODULE) == {"FINISHED"}
    s.start_backend()  # (disabling stopped it, and Blender reset the preferences)

    import addon_utils  # (Blender's: on the path once bpy is imported)
    import bpy_restrict_state

    def disable():
        # Blender's RestrictBlend; in this bpy module build it restricts Blender's own scripts' bpy, not the one
        # imported here and by the add-on (in Blender they are one module): restricted here too, as in Blender
        real = bpy.data, bpy.context
        with bpy_restrict_state.RestrictBlend():
            bpy.data, bpy.context = bpy_restrict_state._data_restrict, bpy_restrict_state._context_restrict
            try:
                found["restricted_data"] = not hasattr(bpy.data, "objects")
                addon_utils.disable(ADDON_MODULE, default_set=True)
            finally:
                bpy.data, bpy.context = real

    found = {}
    return {**browse_then(disable), **found}


s.check("restricted", restricted)


def reopened():
    bpy.ops.wm.open_mainfile(filepath=str(s.work / "disabled.blend"))
    return {"right_off_its_pose": float(np.abs(channels("right") - s.arrays["right0"]).max())}


s.check("reopened", reopened)
s.finish()
