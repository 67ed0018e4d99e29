"""The hands of a scene: adding a pair, finding them, their default placement, their shape."""

from __future__ import annotations

from . import reframe
from . import pose as pose_conv
from . import rig as rig_build
from handforge_shared.poses import side_by_side
from handforge_shared.protocol import sentence
from handforge_shared.rig import HandRig, load_open_hand_rig
from handforge_shared.skeleton import JOINT_NAMES, SIDES, other_side

DEFAULT_PLACEMENT = side_by_side().hands
TARGET_SIDES = {"BOTH": ("left", "right"), "LEFT": ("left",), "RIGHT": ("right",)}


class NoHandsError(RuntimeError):
    pass


def open_hand_rigs() -> dict[str, HandRig]:
    right = load_open_hand_rig("right")
    return {"left": right.mirrored(), "right": right}


PAIR_SPACING_M = 0.6  # a new pair of hands goes this far to the right (+X) of the scene's rightmost hand


def add_hands(context, rigs: dict[str, HandRig], name: str = "Hand") -> tuple[dict[str, object], str]:
    """Build one rig per side in their default placement and make them the scene's hands: both or neither.

    Placed beside the hands already there, never on them: a hand whose side the scene lacks joins the
    other hand where it stands (a pair again); otherwise the new hands go ``PAIR_SPACING_M`` to the right
    of the rightmost one. Returns the new hands and a note saying where they went ("" by default)."""
    suffix = {"left": "L", "right": "R"}
    existing = [o for o in context.scene.objects if o.type == "ARMATURE" and o.handforge.is_hand]
    partners = scene_hands(context.scene, required=False)  # the scene's hands before these
    out = {}
    try:
        for side in SIDES:
            if side in rigs:
                out[side] = rig_build.build_hand(context, rigs[side], f"{name}.{suffix[side]}")
                pose_conv.write_pose(out[side], DEFAULT_PLACEMENT[side])
    except BaseException:
        for arm_obj in out.values():
            rig_build.remove_hand(arm_obj)
        raise
    note = ""
    if len(out) == 1 and not any(o.handforge.side in out for o in existing) and partners:
        partner = next(iter(partners.values()))  # the other side's: this side has no hand
        for obj in out.values():
            obj.matrix_world = partner.matrix_world.copy()
        note = f", beside {partner.name}"
    elif existing:
        x = max(o.matrix_world.translation.x for o in existing) + PAIR_SPACING_M
        for obj in out.values():
            obj.location.x = x
        # one side added to a scene with both: the tools pair it with the other side's hand there (said: it
        # was "the new ones", and Mirror Pose then pulled that hand 0.7 m out of its own pair)
        others = {side: obj for side, obj in partners.items() if side not in out}
        with_ = "".join(f" and the {side} hand {obj.name!r}" for side, obj in others.items())
        note = (f", {x:.2f} m to the right of the {len(existing)} hand(s) already in the scene; the HandForge "
                f"tools now act on {'it' if len(out) == 1 else 'the new ones'}{with_}" + (
                    " (Left Hand and Right Hand in the HandForge panel choose others)" if with_ else ""))
    for side, arm_obj in out.items():
        setattr(context.scene.handforge, side, arm_obj)
    return out, note


def set_shape(context, arm_obj, betas) -> None:
    """Change a hand's shape (rest skeleton, shape keys) and keep its poses: the one shown and that of every
    keyed frame of its action (bone channels are relative to the rest bones, so the keys are re-keyed:
    ``reframe.reframe_keys``); frames between keys show what the new keys interpolate to. Check several hands
    with ``rig.check_reshapable`` first: a refusal then leaves them all as they were."""
    current = pose_conv.read_pose(arm_obj, visual=False)
    before = pose_conv.bone_frames(arm_obj)
    rig_build.reshape(context, arm_obj, betas)
    if reframe.reframe_keys(arm_obj, pose_conv.rest_change(before, pose_conv.bone_frames(arm_obj))):
        context.view_layer.update()  # the new keys shown now: the pose written next (an unkeyed change too) stays
    pose_conv.write_pose(arm_obj, current)


def scene_hands(scene, target: str = "BOTH", required: bool = True, edit: bool = False) -> dict[str, object]:
    """The scene's hand rigs for ``target`` ('BOTH', 'LEFT', 'RIGHT'), side → armature object; with ``edit``
    (the caller changes them) rigs linked from another file are refused (``check_editable``)."""
    props = scene.handforge
    hands = {}
    for side in TARGET_SIDES[target]:
        obj = getattr(props, side)
        if obj is not None and obj.name in scene.objects and not (
                obj.type == "ARMATURE" and obj.handforge.is_hand and obj.handforge.side == side):
            # (the pickers offer only such rigs, but a script may set any object, and a rig's side may change since:
            # it failed as "HandForge failed (AttributeError: 'Mesh' object has no attribute 'bones')")
            if not required:  # (the panels draw without it)
                continue
            what = (f"a {obj.handforge.side} hand" if obj.type == "ARMATURE" and obj.handforge.is_hand else
                    f"not a HandForge hand rig ({obj.type.lower()})")
            raise NoHandsError(f"the {side} hand chosen in HandForge > Hands, {obj.name!r}, is {what}: choose the "
                               f"{side} hand's rig there, or add hands with Add Hands")
        if obj is None or obj.name not in scene.objects:
            obj = next((o for o in scene.objects if o.type == "ARMATURE" and o.handforge.is_hand
                        and o.handforge.side == side), None)
            chosen = getattr(props, other_side(side))
            if obj is not None and chosen is not None and chosen.name in scene.objects:
                # the panel names the other hand only (this one deleted?): a hand of another pair stood in,
                # unsaid; refused where it is required, left out where not (the panels, the keying set)
                if required:
                    raise NoHandsError(f"the {side} hand is not chosen in HandForge > Hands (its rig deleted?), "
                                       f"while the {other_side(side)} hand is {chosen.name!r}: choose the {side} hand "
                                       f"there (e.g. {obj.name!r}), or add one with Add Hands")
                obj = None
        if obj is not None:
            hands[side] = obj
    if required:
        check_joints(hands)
    hands = {side: obj for side, obj in hands.items() if not rig_build.missing_bones(obj)}
    if required and not hands:
        what = {"BOTH": "hands", "LEFT": "left hand", "RIGHT": "right hand"}[target]
        raise NoHandsError(f"no {what} in the scene: add them with HandForge > Add Hands")
    if edit:
        check_editable(hands.values())
        check_not_in_edit_mode(hands.values())
    return hands


def check_joints(rigs: dict[str, object]) -> None:
    """Refuse rigs (side → rig) that lost a joint, naming it: a rig that lost joints would be changed halfway, then
    fail. Also where a job's result lands: a bone renamed while it ran failed there as a bug (a KeyError)."""
    for side, obj in rigs.items():
        why = lost_joints(side, obj)
        if why:
            raise NoHandsError(why)


def lost_joints(side: str, obj) -> str:
    """Why the rig ``obj`` cannot be posed, when it lost a joint (naming it and the fix), or ''."""
    missing = rig_build.missing_bones(obj)
    if not missing:
        return ""
    # a bone renamed (its vertex group with it) is lost too: HandForge finds the joints by name
    renamed = {name: rig_build.renamed_bone(obj, name) for name in missing}
    said = ", ".join(f"{name} (renamed {renamed[name]!r}?)" if renamed[name] else name for name in missing)
    back = "rename it back, " if any(renamed.values()) else ""
    return (f"the {side} hand {obj.name!r} has lost its bone(s) {said}: {back}undo the change that removed them, or "
            "add the hands again with HandForge > Add Hands")


def in_edit_mode(arm_obj) -> str:
    """Why a change to this hand must wait (its armature or its mesh in Edit Mode), or "". Blender's undo in
    Edit Mode holds only the edited bones or vertices: a pose or keys changed meanwhile could not be undone
    (Ctrl-Z undid nothing of Key Pose), and a bone deleted there is still in the rig HandForge reads."""
    if arm_obj.mode == "EDIT":
        return f"the hand {arm_obj.name!r} is in Edit Mode: leave it (Tab) first"
    # (its forearm too: Set Shape refits it, and the refit was lost when its Edit Mode was left: a 1.6 cm seam)
    for mesh_obj in [rig_build.hand_mesh(arm_obj), *rig_build.forearm_meshes(arm_obj)]:
        if mesh_obj is not None and mesh_obj.mode == "EDIT":
            return f"the mesh {mesh_obj.name!r} of the hand {arm_obj.name!r} is in Edit Mode: leave it (Tab) first"
    return ""


def check_not_in_edit_mode(rigs) -> None:
    """Refuse hands that ``in_edit_mode`` says must not be changed now, before any is changed."""
    for obj in rigs:
        why = in_edit_mode(obj)
        if why:
            raise NoHandsError(why)


def poll_not_in_edit_mode(cls, context) -> bool:
    """An operator's ``poll`` for buttons that change the hands: greyed, with the reason, while one of the
    scene's hands (or its mesh) is in Edit Mode (``in_edit_mode``)."""
    if not context.mode.startswith("EDIT"):  # no object in Edit Mode: the polls of every redraw stay cheap
        return True
    for obj in scene_hands(context.scene, required=False).values():
        why = in_edit_mode(obj)
        if why:
            cls.poll_message_set(sentence(why))
            return False
    return True


def poll_nothing_in_edit_mode(cls, context) -> bool:
    """``poll_not_in_edit_mode``, and greyed too while any other object is in Edit Mode: Blender's undo then holds
    only that object's edits (a preset pressed while a prop was edited posed the hand, and Ctrl-Z did not undo
    it). For the pose and shape buttons, which need nothing edited meanwhile."""
    if not poll_not_in_edit_mode(cls, context):
        return False
    why = other_in_edit_mode(context)
    if why:
        cls.poll_message_set(sentence(why))
        return False
    return True


def other_in_edit_mode(context) -> str:
    """Why a change to the hands with an undo step must wait while an object is in Edit Mode, or "": Blender's undo
    then holds only that object's edits (Key Pose keyed the hands while a prop was edited, and Ctrl-Z left the keys)."""
    edited = context.edit_object if context.mode.startswith("EDIT") else None
    if edited is None:
        return ""
    return (f"{edited.name!r} is in Edit Mode, where undo holds only its edits (a change to the hands could not be "
            "undone): leave it (Tab) first")


def check_other_not_in_edit_mode(context) -> None:
    """Refuse, before any change, what ``other_in_edit_mode`` says must wait (checked where a job's result lands:
    the artist may have pressed Tab while it ran)."""
    why = other_in_edit_mode(context)
    if why:
        raise NoHandsError(why)


def check_pose_shown(rigs) -> None:
    """Refuse rigs whose shown pose is to be read (a bone constraint acts: ``pose.read_pose``) while their armature
    shows its Rest Position: the pose shown is then the rest, so Copy copied, and Save Pose saved, a flat hand
    (with the joint limits off, the channels were read: the pose)."""
    for obj in rigs:
        if obj.data.pose_position == "REST" and pose_conv.constrained(obj):
            raise NoHandsError(f"the hand {obj.name!r} shows its Rest Position, so its pose is not shown: switch it "
                               "to Pose Position (Armature properties › Skeleton) first")


def check_finite(rigs) -> None:
    """Refuse rigs whose pose is to be read while a bone's rotation (or the wrist's location) is not a number,
    naming the bone and the fix: it was "hand_pose has a non-finite value (NaN or inf) at index [3]", a
    parameter the artist never typed."""
    for obj in rigs:
        found = pose_conv.not_a_number(obj)
        if found:
            name, what = found
            reset = "Reset Pose with Include Placement" if name == JOINT_NAMES[0] else "Reset Pose"
            raise NoHandsError(f"the bone {name!r} of the hand {obj.name!r} has a {what} that is not a number "
                               f"(NaN): clear it (Pose Mode: select the bone, Alt-R or Alt-G), or use {reset}")


def one_hand_model(rigs: dict, what: str) -> str:
    """The hand model of ``rigs`` (side → rig), refused unless there is one; ``what`` (e.g. "the motion
    engine") is said to need a pair of one model."""
    models = {obj.handforge.hand_model for obj in rigs.values()}
    if len(models) != 1:
        each = ", ".join(f"{obj.name!r} is {obj.handforge.hand_model}" for _, obj in sorted(rigs.items()))
        raise ValueError(f"the hands are of different hand models ({', '.join(sorted(models))}): {each}; {what} "
                         "needs a pair of one model: add a matching pair (HandForge > Add Hands)")
    return models.pop()


def check_editable(rigs) -> None:
    """Refuse rigs linked from another file (or non-editable overrides): Blender lets a script pose and key
    them, and drops it all at save (Key Pose and Import Motion said done, and the keys were gone)."""
    for obj in rigs:
        if not obj.is_editable:
            source = obj.library.filepath if obj.library is not None else "a library"
            raise NoHandsError(f"{obj.name!r} is linked from {source}, and changes to it are not saved: make it "
                               "editable first (Object > Library Override > Make, or Object > Relations > Make Local)")


def not_evaluated(view_layer, obj) -> str:
    """Why Blender does not evaluate ``obj`` in ``view_layer`` and how to change that, or "" when it does: its
    collection excluded, or it or its collection disabled in viewports."""
    if not any(o == obj for o in view_layer.objects):  # (not by name: a linked hand may share it)
        return (f"is in a collection excluded from the view layer {view_layer.name!r}, so it is not updated: "
                "tick the collection in the Outliner first")
    view_layer.update()  # objects added or shown since the last redraw are then in the depsgraph
    # (not ``evaluated_get(...).is_evaluated``: a hand the scene's HandForge pointers name has an evaluated copy
    # even when disabled, never animated: Key Pose keyed its stale pose over the frame's keys)
    if not any(id_.original == obj for id_ in view_layer.depsgraph.ids):
        return ("is disabled in viewports (its own or its collection's monitor icon in the Outliner), so it is not "
                "updated: enable it there first")
    return ""


def check_evaluated(view_layer, objects, what: str = "hand") -> None:
    """Refuse objects Blender does not evaluate in ``view_layer`` (``not_evaluated``). Their bones and transforms
    keep what they showed when that was set (Key Pose keyed it over the frame's keys; a wrist path along such
    an empty stood still)."""
    for obj in objects:
        why = not_evaluated(view_layer, obj)
        if why:
            raise NoHandsError(f"the {what} {obj.name!r} {why}")
