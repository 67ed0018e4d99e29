"""One posed hand as every export and image engine draws and labels it."""

from __future__ import annotations

from typing import Any

import torch


def posed_hand(model, side: str, pose) -> dict[str, Any]:
    """``model``'s ``side`` hand in ``pose`` (model frame, float64 numpy): the pose, vertices, 21
    keypoints, wrist joint ("root"), 16 joints, faces and rig (the forearm starts at its wrist loop)."""
    with torch.no_grad():
        result = model.forward_pose(side, pose)
    # (.cpu(): the export job's hand model is on the job's device, a GPU on a GPU backend)
    return {"pose": pose, "vertices": result.vertices[0].double().cpu().numpy(),
            "keypoints": result.keypoints[0].double().cpu().numpy(), "root": result.joints[0, 0].double().cpu().numpy(),
            "joints": result.joints[0].double().cpu().numpy(), "faces": model.faces(side).cpu().numpy(),
            "rig": model.rig(side)}
