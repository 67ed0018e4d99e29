"""MANO through smplx, from the user's model files, behind the one ``HandModel`` interface.

Opt-in: smplx has a non-commercial research licence (the ``mano`` extra) and the MANO files have
their own (``mano_files``); neither ships with HandForge. smplx is imported only here, lazily.

The known MANO traps, handled here once:
- chumpy: the files are read without it (``mano_files``), and smplx gets the arrays through
  ``data_struct`` so it never unpickles anything itself;
- the released left model's ``shapedirs`` x row has the wrong sign (smplx #48): fixed on load,
  exactly when ``mano_params.left_shapedirs_need_fix`` detects it (``ManoModel.left_shapedirs_fixed``);
- ``flat_hand_mean``: our ``hand_pose`` is flat (zero = flat hand), so smplx runs with
  ``flat_hand_mean=True``; mean-relative poses (smplx's default, InterHand2.6M) are converted with
  ``ManoModel.flat_hand_pose`` (``mano_params`` holds the formulas);
- PCA: the layer takes full 45-d axis-angle poses (``use_pca=False``); ``hand_pose_from_pca`` /
  ``hand_pose_to_pca`` convert coefficients with this model's ``hands_components``;
- units: MANO is in metres, like HandForge; nothing is scaled.
Keypoints: smplx's 16 joints + the fingertip vertices ``MANO_TIP_VERTEX_IDS``, in InterHand2.6M
order (``HandLayer.forward``).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np
import torch

from handforge.hands.base import HandLayer, HandModel
from handforge.hands.errors import HandModelError
from handforge.hands.mano_status import SMPLX_MISSING, unavailable_reason
from handforge.hands.mano_files import ManoData, load_mano_dir
from handforge_shared import mano_params
from handforge_shared.rig import HandRig
from handforge_shared.skeleton import MANO_TIP_VERTEX_IDS, NUM_BETAS, SIDES, Side



def _smplx() -> Any:
    try:
        import smplx
    except ImportError as exc:
        raise HandModelError(f"{SMPLX_MISSING} ({exc})") from None
    return smplx


class ManoLayer(HandLayer):
    """One side of MANO: smplx's ``MANO`` layer (flat hand mean, full pose) plus the model arrays."""

    def __init__(self, data: ManoData, shapedirs: np.ndarray) -> None:
        super().__init__()
        smplx = _smplx()
        self.side = data.side
        self.model_name = "mano"
        self.source = data.path
        arrays = {**data.arrays, "shapedirs": shapedirs[:, :, :NUM_BETAS]}
        self._arrays = arrays
        # smplx prints a warning to stdout for every model with fewer than 300 shape components.
        with contextlib.redirect_stdout(io.StringIO()):
            self.smplx_mano = smplx.MANO(
                str(data.path), data_struct=smplx.utils.Struct(**arrays), is_rhand=data.side == "right",
                use_pca=False, flat_hand_mean=True, num_betas=NUM_BETAS,
                create_global_orient=False, create_body_pose=False, create_hand_pose=False,
                create_betas=False, create_transl=False,
            )
        f32 = torch.float32
        self.register_buffer("hands_mean", torch.tensor(arrays["hands_mean"], dtype=f32))
        self.register_buffer("hands_components", torch.tensor(arrays["hands_components"], dtype=f32))
        self.register_buffer("faces", torch.tensor(arrays["f"], dtype=torch.long))
        self.register_buffer("tip_vertex_ids", torch.tensor(MANO_TIP_VERTEX_IDS, dtype=torch.long))

    def posed_vertices_and_joints(self, global_orient: torch.Tensor, hand_pose: torch.Tensor,
                                  betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.smplx_mano(betas=betas, global_orient=global_orient, hand_pose=hand_pose)
        return out.vertices, out.joints

    def model_array(self, key: str) -> np.ndarray:
        """One of the MANO file's arrays as loaded (float64; shapedirs fixed and cut to 10 betas)."""
        return self._arrays[key]

    def rig(self) -> HandRig:
        # MANO's file keys (v_template, weights, ...) are its on-disk format; HandRig names them.
        a = self._arrays
        j_regressor, shapedirs = a["J_regressor"], a["shapedirs"]
        return HandRig(
            side=self.side, hand_model="mano",
            rest_vertices=a["v_template"],  # the flat hand: flat_hand_mean=True
            faces=a["f"].astype(np.int32),
            rest_joints=j_regressor @ a["v_template"],
            skin_weights=a["weights"],
            tip_vertex_ids=np.array(MANO_TIP_VERTEX_IDS, dtype=np.int32),
            shape_dirs=shapedirs,
            joint_shape_dirs=np.einsum("jv,vcs->jcs", j_regressor, shapedirs),
            pose_dirs=a["posedirs"],  # (V, 3, 135): smplx's pose-feature order, see HandRig
        )


class ManoModel(HandModel):
    """Both MANO hands, with the conversions from other MANO pose conventions."""

    left: ManoLayer
    right: ManoLayer

    def __init__(self, left: ManoLayer, right: ManoLayer, left_shapedirs_fixed: bool) -> None:
        super().__init__("mano", left=left, right=right)
        self.left_shapedirs_fixed = left_shapedirs_fixed

    def hands_mean(self, side: Side) -> torch.Tensor:
        return self.layer(side).hands_mean

    def hands_components(self, side: Side) -> torch.Tensor:
        return self.layer(side).hands_components

    def hands_mean_arrays(self) -> dict[Side, np.ndarray]:
        """Both sides' ``hands_mean`` (45,) float64, e.g. for ``interhand.capture_clips``."""
        return {side: self.layer(side).model_array("hands_mean").copy() for side in SIDES}

    def _like(self, side: Side, value: Any) -> torch.Tensor:
        ref = self.hands_mean(side)
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
        return t.to(device=ref.device, dtype=ref.dtype)

    def flat_hand_pose(self, side: Side, hand_pose: Any, convention: str = mano_params.MEAN_RELATIVE) -> torch.Tensor:
        """(..., 45) hand pose in ``convention`` → HandForge's flat convention (differentiable)."""
        return mano_params.convert_hand_pose(self._like(side, hand_pose), self.hands_mean(side), convention,
                                             mano_params.FLAT)

    def mean_relative_hand_pose(self, side: Side, hand_pose: Any) -> torch.Tensor:
        """(..., 45) flat hand pose → mean-relative (smplx's default ``flat_hand_mean=False``)."""
        return mano_params.mean_relative_from_flat(self._like(side, hand_pose), self.hands_mean(side))

    def hand_pose_from_pca(self, side: Side, coeffs: Any, mean_relative: bool = True) -> torch.Tensor:
        """(..., n) PCA coefficients → (..., 45) flat hand pose.

        ``mean_relative=True`` (MANO's and smplx's default): the coefficients are around the mean
        pose; ``False``: around the flat hand (smplx ``use_pca=True, flat_hand_mean=True``).
        """
        mean = self.hands_mean(side) if mean_relative else None
        return mano_params.hand_pose_from_pca(self._like(side, coeffs), self.hands_components(side), mean)

    def hand_pose_to_pca(self, side: Side, hand_pose: Any, num_comps: int = 45,
                         mean_relative: bool = True) -> torch.Tensor:
        """(..., 45) flat hand pose → (..., n) PCA coefficients (least squares when n < 45)."""
        mean = self.hands_mean(side) if mean_relative else None
        return mano_params.hand_pose_to_pca(self._like(side, hand_pose), self.hands_components(side),
                                            num_comps, mean)


def build_mano(data: dict[Side, ManoData]) -> ManoModel:
    """The MANO model from both sides' validated data, with the left shapedirs fix applied."""
    left_shapedirs, fixed = mano_params.fix_left_shapedirs(data["left"]["shapedirs"], data["right"]["shapedirs"])
    return ManoModel(left=ManoLayer(data["left"], left_shapedirs),
                     right=ManoLayer(data["right"], data["right"]["shapedirs"]),
                     left_shapedirs_fixed=fixed)


def load_mano(model_dir: str | os.PathLike | None = None) -> ManoModel:
    """MANO from ``model_dir`` (default: the ``mano.model_dir`` setting / $HANDFORGE_MANO_DIR)."""
    _smplx()
    return build_mano(load_mano_dir(model_dir))


__all__ = ["ManoLayer", "ManoModel", "build_mano", "load_mano", "unavailable_reason"]
