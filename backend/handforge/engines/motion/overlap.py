"""Where a motion holds one hand inside the other, frame by frame, and the spline engine's note saying so.

The learned engine's Keep Apart measures each motion's deepest overlap (``MotionPipeline.deepest_penetration``);
the spline engine keeps nothing apart (its rotation splines and cubic wrist paths between keys can pass one hand
through the other), so its note names the frames, measured here with the same depth test.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from handforge.engines.motion import representation as rep
from handforge.engines.motion.observation import Observation

REACH = 0.45  # m: wrists farther apart than this cannot touch (two adult hands of up to ~21 cm)


@torch.no_grad()
def frame_depths(hand_model: Any, betas: Any, values: dict[str, np.ndarray], frames: np.ndarray | None = None,
                 chunk: int = 256, callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(T,) per frame, the deepest any vertex of one hand goes into the other (m) in ``values`` (rig values
    {global_orient, hand_pose, transl}: (T, 2, size)) of hands shaped ``betas`` (2, 10), over ``frames`` (a (T,)
    mask; all when None) where the wrists are within ``REACH`` (farther apart no vertex can touch, and the hand
    model is not run); 0 elsewhere. ``callback(done, total)`` after each chunk of the frames measured (a job's
    progress and cancel point: 8 long motions take tens of seconds on a CPU)."""
    from handforge.evaluation.penetration import penetration_depths

    # the wrists: each model's root joint sits off the origin (MANO's some 10 cm), beside transl
    roots = np.stack([hand_model.rig(side).rest_joints[0] for side in rep.HAND_AXIS])  # (2, 3)
    wrists = np.asarray(values["transl"]) + roots
    near = np.linalg.norm(wrists[:, 0] - wrists[:, 1], axis=-1) < REACH
    measured = np.flatnonzero(near if frames is None else near & frames)
    depths = np.zeros(len(wrists))
    betas = torch.as_tensor(np.asarray(betas), dtype=torch.float32)
    for start in range(0, len(measured), chunk):
        rows = measured[start:start + chunk]
        part = {k: torch.as_tensor(np.asarray(values[k])[rows], dtype=torch.float32)
                for k in ("global_orient", "hand_pose", "transl")}
        verts = [hand_model(side, part["global_orient"][:, h], part["hand_pose"][:, h],
                            betas[h].expand(len(rows), -1), part["transl"][:, h]).vertices
                 for h, side in enumerate(rep.HAND_AXIS)]
        depth_a, depth_b = penetration_depths(verts[0], verts[1], hand_model.faces(rep.HAND_AXIS[0]),
                                              hand_model.faces(rep.HAND_AXIS[1]))
        depths[rows] = torch.maximum(depth_a.amax(-1), depth_b.amax(-1)).double().cpu().numpy()
        if callback is not None:
            callback(start + len(rows), len(measured))
    return depths


def spline_note(observation: Observation, depths: np.ndarray, deep: float, first_frame: int = 0) -> str:
    """What the spline engine's motion (``depths``: ``frame_depths`` of it) says of hands more than ``deep`` (m) in
    each other: keys that hold them so (every part of both hands keyed), then the frames it made that take them
    so, numbered from ``first_frame`` (the scene's number of the first row); '' when none."""
    keyed = observation.part_mask.reshape(observation.num_frames, -1).all(-1)
    notes = []
    deep_keys = np.flatnonzero(keyed & (depths > deep))
    if len(deep_keys):
        notes.append(f"Your keys hold the hands {depths[deep_keys].max() * 1000:.0f} mm into each other on "
                     f"{_frames_named(deep_keys + first_frame)}: the spline engine keeps keys as they are; key the hands apart "
                     "there.")
    made = np.flatnonzero(~keyed & (depths > deep))
    if len(made):
        worst = made[np.argmax(depths[made])]
        notes.append(f"The spline motion takes the hands {depths[worst] * 1000:.0f} mm into each other on "
                     f"{_frames_named(made + first_frame)}, deepest at frame {worst + first_frame}: add a key where they overlap, or use the "
                     "learned engine with Keep Apart (penetration_guidance).")
    return " ".join(notes)


def _frames_named(frames: np.ndarray, most: int = 4) -> str:
    """Sorted frame numbers as runs: 'frames 3 to 9 and 20' (a scene's frames may be negative: '-18--6' read
    as nothing); after ``most`` runs the rest are left at '…'."""
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    named = [f"{r[0]}" if len(r) == 1 else f"{r[0]} to {r[-1]}" for r in runs[:most]]
    listed = ", ".join(named[:-1]) + f" and {named[-1]}" if len(named) > 1 else named[0]
    if len(runs) > most:
        listed = ", ".join(named) + ", …"
    word = "frame" if len(frames) == 1 else "frames"
    return f"{word} {listed}"


__all__ = ["REACH", "frame_depths", "spline_note"]
