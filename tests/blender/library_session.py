"""Blender session: the pose browser (thumbnails, search) and the user pose library, across an
add-on update (reinstall) and a disable/enable."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import bpy
import numpy as np

from session import ADDON_MODULE, Session, error_of, hand, recorded_layout

s = Session()
s.install()
a = s.args
JOINTS = a["joints"]


def rotations(side: str) -> np.ndarray:
    arm = hand(side)
    return np.array([np.array(arm.pose.bones[n].matrix_basis)[:3, :3] for n in JOINTS])


def addon_library():
    """The installed add-on's browser module (for what only a drawn panel would show)."""
    return importlib.import_module(f"{ADDON_MODULE}.library")


assert bpy.ops.handforge.add_hands() == {"FINISHED"}


def covered(preview) -> float:
    """The share of a preview's pixels the hand covers (alpha > 0.5)."""
    pixels = np.empty(len(preview.image_pixels_float), np.float32)
    preview.image_pixels_float.foreach_get(pixels)
    return float((pixels.reshape(-1, 4)[:, 3] > 0.5).mean())


def thumbnails():
    lib = addon_library()
    folder = Path(lib.THUMBNAILS)
    sizes = {}
    for name in a["presets"]:
        image = bpy.data.images.load(str(folder / f"{name}.png"))
        sizes[name] = list(image.size) + [image.channels]
        bpy.data.images.remove(image)
    return {"folder": str(folder), "sizes": sizes,
            # icon ids exist only with a UI (0 in background mode): the loaded previews are checked
            "previews": {name: [*lib.thumbnail(name).image_size, covered(lib.thumbnail(name))] for name in a["presets"]},
            "search_pinch": lib.builtin_names("pinch"), "search_count": lib.builtin_names("COUNT"),
            "search_none": lib.builtin_names("no such pose"), "search_all": len(lib.builtin_names("")),
            "search_all_names": lib.builtin_names("")}


s.check("thumbnails", thumbnails)


def round_trip():
    right = hand("right")
    out = {}
    assert bpy.ops.handforge.apply_preset(preset="ok", sides="BOTH") == {"FINISHED"}
    right.handforge.curl_pinky = 0.3  # the artist's own variation
    s.arrays["saved_right"] = rotations("right")
    assert bpy.ops.handforge.save_user_pose(name="My OK", side="RIGHT") == {"FINISHED"}
    out["path"] = str(addon_library().user_library_path())
    out["no_name"] = error_of(lambda: bpy.ops.handforge.save_user_pose(name="  ", side="RIGHT"))
    out["taken"] = error_of(lambda: bpy.ops.handforge.save_user_pose(name="My OK", side="RIGHT"))
    out["overwrite"] = sorted(bpy.ops.handforge.save_user_pose(name="My OK", side="RIGHT", overwrite=True))
    assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.apply_user_pose(name="My OK", sides="LEFT") == {"FINISHED"}
    s.arrays["applied_left"] = rotations("left")
    s.arrays["right_untouched"] = rotations("right")
    out["user_names"] = addon_library().user_names()
    out["user_search"] = addon_library().user_names("ok"), addon_library().user_names("fist")
    return out


s.check("round_trip", round_trip)


def padded_names():
    """A name typed with spaces around it is the same name for Save, Apply and Delete."""
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT") == {"FINISHED"}
    s.arrays["padded_saved"] = rotations("right")
    assert bpy.ops.handforge.save_user_pose(name="  fist mine ", side="RIGHT") == {"FINISHED"}
    out = {"saved": addon_library().user_names("fist")}
    assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
    out["apply"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name=" fist mine  ", sides="RIGHT"))
    s.arrays["padded_applied"] = rotations("right")
    out["delete"] = error_of(lambda: bpy.ops.handforge.delete_user_pose(name="\tfist mine "))
    out["after_delete"] = addon_library().user_names()
    # a line break inside a name (a script's, or pasted) broke the list's rows: refused, nothing saved
    out["line_break"] = error_of(lambda: bpy.ops.handforge.save_user_pose(name="two\nlines", side="RIGHT"))
    out["after_line_break"] = addon_library().user_names()
    assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
    return out


s.check("padded_names", padded_names)


def drawn_panel(search: str) -> list:
    """What the Pose Library panel draws for a search: ``["set", button text, property, value]`` per
    button property, ``["template_icon"|"label", text]`` per thumbnail and text."""
    bpy.context.scene.handforge.pose_search = search
    out, texts = [], []
    for call in recorded_layout(bpy.types.HANDFORGE_PT_pose_library.draw):
        assert call[0] != "bad", call
        if call[0] == "operator":
            texts.append(call[2].get("text", ""))
        elif call[0] == "set":
            out.append(["set", texts[-1], call[2], call[3]])
        elif call[0] in ("template_icon", "label"):
            out.append([call[0], call[2].get("text", "")])
    return out


def panel():
    out = {"all": drawn_panel(""), "ok": drawn_panel("ok")}
    path = Path(addon_library().user_library_path())
    kept = path.read_bytes()
    path.write_text("{not json")
    try:
        out["corrupt"] = drawn_panel("")
        # nested 100,000 deep: json.loads raised RecursionError, which the panel's draw raised at every redraw
        path.write_text('{"format": "handforge.user_poses", "poses": ' + "[" * 100_000 + "]" * 100_000 + "}")
        out["deep"] = drawn_panel("")
    finally:
        path.write_bytes(kept)
    bpy.context.scene.handforge.pose_search = ""
    return out


s.check("panel", panel)


def after_update():
    assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
    # an add-on update: the same extension installed over itself, then disabled and enabled
    result = bpy.ops.extensions.package_install_files(filepath=s.zip, repo="user_default", enable_on_install=True)
    bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
    bpy.ops.preferences.addon_enable(module=ADDON_MODULE)
    out = {"reinstall": sorted(result), "enabled": ADDON_MODULE in bpy.context.preferences.addons,
           "user_names": addon_library().user_names()}
    assert bpy.ops.handforge.apply_user_pose(name="My OK", sides="RIGHT") == {"FINISHED"}
    s.arrays["after_update_right"] = rotations("right")
    return out


s.check("after_update", after_update)


def bad_library():
    path = Path(addon_library().user_library_path())
    kept = path.read_bytes()
    out = {"missing": error_of(lambda: bpy.ops.handforge.apply_user_pose(name="Nobody", sides="RIGHT"))}
    path.write_text("{not json")
    out["corrupt"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name="My OK", sides="RIGHT"))
    path.write_text('{"format": "handforge.user_poses", "version": ' + "[" * 5_000 + "]" * 5_000 + ', "poses": {}}')
    out["deep"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name="My OK", sides="RIGHT"))
    # hand-edited: a version that is not a number, an angle that is not one
    path.write_text(json.dumps({"format": "handforge.user_poses", "version": None, "poses": {}}))
    out["bad_version"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name="My OK", sides="RIGHT"))
    path.write_text(json.dumps({"format": "handforge.user_poses", "version": 1, "poses": {"Typo": [[0, 0, "x"]] * 15}}))
    out["bad_angle"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name="Typo", sides="RIGHT"))
    # an angle no joint turns (1e5 degrees): it posed wrapped, meaningless rotations, unsaid
    path.write_text(json.dumps({"format": "handforge.user_poses", "version": 1,
                                "poses": {"Wild": [[1e5, 0, 0]] + [[0, 0, 0]] * 14}}))
    out["huge_angle"] = error_of(lambda: bpy.ops.handforge.apply_user_pose(name="Wild", sides="RIGHT"))
    path.write_bytes(kept)
    assert bpy.ops.handforge.delete_user_pose(name="My OK") == {"FINISHED"}
    out["after_delete"] = addon_library().user_names()
    out["deleted_again"] = error_of(lambda: bpy.ops.handforge.delete_user_pose(name="My OK"))
    return out


s.check("bad_library", bad_library)
s.finish()
