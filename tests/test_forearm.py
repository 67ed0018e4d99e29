"""The render forearm: follows the posed wrist, capped and outward-facing, never in the keypoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from handforge.hands import load_hand_model
from handforge_shared import pose_library
from handforge_shared.forearm import ForearmSpec, forearm_mesh, wrist_loop
from handforge_shared.rotations import mirror_points


@pytest.fixture(scope="module")
def model():
    return load_hand_model("open", dtype=torch.float64)


def _posed(model, side, global_orient, name="fist"):
    pose = pose_library.get(name, side)
    out = model(side, global_orient, pose.hand_pose, transl=[0.1, -0.2, 0.3])
    return out.vertices.numpy(), out.joints.numpy(), out.keypoints.numpy()


@pytest.mark.parametrize("style", ["skin", "sleeve"])
def test_forearm_follows_the_wrist_and_closes_the_hand(model, style):
    rig = model.rig("right")
    spec = ForearmSpec(length=0.2, taper=1.3, style=style)
    go = np.array([[0.0, 0.0, 0.0], [0.4, -1.2, 0.7]])
    verts, joints, keypoints = _posed(model, "right", go)
    arm, faces = forearm_mesh(rig, verts, joints, spec)
    assert arm.shape[0] == 2 and faces.max() < arm.shape[1]
    for b in range(2):
        loop = wrist_loop(rig)
        if style == "skin":  # the tube starts on the hand's opening: together they close the hand
            np.testing.assert_allclose(arm[b, :len(loop)], verts[b, loop])
        up_arm = joints[b, 0] - joints[b, 4]
        far = arm[b, -1] - verts[b, loop].mean(0)
        np.testing.assert_allclose(np.linalg.norm(far), 0.2, atol=1e-9)
        assert np.dot(far, up_arm) / (np.linalg.norm(far) * np.linalg.norm(up_arm)) > 0.999
        mesh = trimesh.Trimesh(arm[b], faces, process=False)
        # A capped tube open only at the wrist; its normals point outwards.
        rim = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
        assert len(rim) == len(loop)
        radial = mesh.triangles_center - verts[b, loop].mean(0)
        along = up_arm / np.linalg.norm(up_arm)
        radial -= np.outer(radial @ along, along)
        side_faces = np.abs(mesh.face_normals @ along) < 0.7  # the tube's wall, not the cap or the cuff
        assert np.mean(np.sum(mesh.face_normals[side_faces] * radial[side_faces], 1) > 0) > 0.95
    # Never part of the keypoints: the hand's keypoints are what the model gives without it.
    np.testing.assert_allclose(keypoints, model("right", go, pose_library.get("fist", "right").hand_pose,
                                                transl=[0.1, -0.2, 0.3]).keypoints.numpy())


def test_left_forearm_is_the_mirror_of_the_right(model):
    right_v, right_j, _ = _posed(model, "right", np.array([0.3, 0.5, -0.2]))
    left_v, left_j, _ = _posed(model, "left", np.array([0.3, -0.5, 0.2]))
    np.testing.assert_allclose(left_v, mirror_points(right_v) + [[0.2, 0, 0]], atol=1e-9)
    right_arm, _ = forearm_mesh(model.rig("right"), right_v, right_j)
    left_arm, _ = forearm_mesh(model.rig("left"), left_v, left_j)
    np.testing.assert_allclose(np.sort(np.round(left_arm[0], 9), axis=0),
                               np.sort(np.round(mirror_points(right_arm[0]) + [0.2, 0, 0], 9), axis=0), atol=1e-8)


def test_bad_forearm_settings_are_named():
    with pytest.raises(ValueError, match="unknown forearm style 'glove'"):
        ForearmSpec(style="glove")
    with pytest.raises(ValueError, match="length must be in"):
        ForearmSpec(length=-1)
    rig = load_hand_model("open").rig("right")
    with pytest.raises(ValueError, match="forearm_mesh needs vertices"):
        forearm_mesh(rig, np.zeros((10, 3)), np.zeros((16, 3)))
