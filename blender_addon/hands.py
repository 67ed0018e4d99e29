"""The hands of a scene: adding a pair, finding them, their default placement, their shape."""

from __future__ import annotations

from . import pose as pose_conv
from . import rig as rig_build
from handforge_shared.poses import side_by_side
from handforge_shared.rig import HandRig, load_open_hand_rig
from handforge_shared.skeleton import SIDES

DEFAULT_PLACEMENT = side_by_side().hands
TARGET_SIDES = {"BOTH": ("left", "right"), "LEFT": ("left",), "RIGHT": ("right",)}


class NoHandsError(RuntimeError):
    pass


def open_hand_rigs() -> dict[str, HandRig]:
    right = load_open_hand_rig("right")
    return {"left": right.mirrored(), "right": right}


def add_hands(context, rigs: dict[str, HandRig], name: str = "Hand") -> dict[str, object]:
    """Build one rig per side, place them side by side, and make them the scene's hands."""
    suffix = {"left": "L", "right": "R"}
    out = {}
    for side in SIDES:
        if side not in rigs:
            continue
        arm_obj = rig_build.build_hand(context, rigs[side], f"{name}.{suffix[side]}")
        pose_conv.write_pose(arm_obj, DEFAULT_PLACEMENT[side])
        setattr(context.scene.handforge, side, arm_obj)
        out[side] = arm_obj
    return out


def set_shape(context, arm_obj, betas) -> None:
    """Change a hand's shape (rest skeleton, shape keys) and keep its pose as it was."""
    current = pose_conv.read_pose(arm_obj, visual=False)
    rig_build.reshape(context, arm_obj, betas)
    pose_conv.write_pose(arm_obj, current)


def scene_hands(scene, target: str = "BOTH", required: bool = True) -> dict[str, object]:
    """The scene's hand rigs for ``target`` ('BOTH', 'LEFT', 'RIGHT'), side → armature object."""
    props = scene.handforge
    hands = {}
    for side in TARGET_SIDES[target]:
        obj = getattr(props, side)
        if obj is None or obj.name not in scene.objects:
            obj = next((o for o in scene.objects if o.type == "ARMATURE" and o.handforge.is_hand
                        and o.handforge.side == side), None)
        if obj is not None:
            hands[side] = obj
    if required and not hands:
        what = {"BOTH": "hands", "LEFT": "left hand", "RIGHT": "right hand"}[target]
        raise NoHandsError(f"no {what} in the scene: add them with HandForge > Add Hands")
    return hands
