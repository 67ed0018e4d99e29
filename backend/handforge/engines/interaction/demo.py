"""The demo's interaction step: the right hand sampled around a posed left hand, as the add-on's
Sample Interaction does (job ``interaction.sample``'s default engine, the learned one, with the
``interaction.checkpoint`` setting's checkpoint, the shipped one unless one is configured, and the job's
default settings)."""

from __future__ import annotations

from pathlib import Path

INTERACTION_ANCHOR, INTERACTION_COUNT = "cupped", 4


def demo(out: Path) -> None:
    """The candidates, best first, in ``interaction.npz`` (the job's result arrays), and one line."""
    import io
    import time

    import numpy as np

    from handforge import config
    from handforge_shared.files import write_atomic
    from handforge.engines.checkpoints import CheckpointError, load_model
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.interaction.pipeline import InteractionPipeline, SampleSettings
    from handforge.engines.interaction.settings import CHECKPOINT, SHIPPED_CHECKPOINT
    from handforge.hands import load_hand_model
    from handforge.runtime import torch_threads
    from handforge_shared import pose_library

    started = time.perf_counter()
    pose = pose_library.get(INTERACTION_ANCHOR, side="left")
    anchor = {"side": "left", **{name: np.asarray(getattr(pose, name), np.float32)
                                 for name in ("global_orient", "hand_pose", "betas", "transl")}}
    try:
        model = load_model(InteractionDenoiser, config.value(CHECKPOINT.key))
    except CheckpointError as exc:  # the rest of the demo still runs
        print(f"interaction: skipped: {exc} (`handforge doctor` shows the setting)")
        return
    # the one that runs, named: a configured one read as the shipped one
    checkpoint = config.said(CHECKPOINT.key, f"shipped checkpoint {SHIPPED_CHECKPOINT.name}", "checkpoint ")
    hand_model = load_hand_model("open")
    with torch_threads(1):  # small batches: on a shared 2-core machine two threads took 6-10 s, one 0.2 s
        found = InteractionPipeline(model, hand_model)(SampleSettings(count=INTERACTION_COUNT, seed=0), anchor)
    seconds = time.perf_counter() - started
    buffer = io.BytesIO()
    np.savez(buffer, **found.arrays())
    write_atomic(out / "interaction.npz", buffer.getvalue())
    # The score's max_depth is the loss's nearest-vertex estimate; the depth printed is the exact one
    # (``handforge eval``'s), so the two never show different numbers for the same hands.
    depth = best_depth(hand_model, found)
    print(f"interaction: {len(found.score)} candidates for the right hand around a left hand posed "
          f"'{INTERACTION_ANCHOR}' (learned engine, {checkpoint}) in {seconds:.1f} s; best score {found.score[0]:.3f} (max depth "
          f"{depth * 1000:.1f} mm exact, gap {found.gap[0] * 1000:.1f} mm); all, best first, in "
          f"{out / 'interaction.npz'}")


def best_depth(hand_model, found) -> float:
    """m, the exact penetration depth of the best candidate (``penetration_metrics``' max_depth)."""
    import torch

    from handforge.engines.interaction.pipeline import FIELDS
    from handforge.evaluation.penetration import max_depths

    with torch.no_grad():
        verts = {side: hand_model(side, **{f: torch.from_numpy(hand[f][:1]) for f in FIELDS}).vertices
                 for side, hand in found.hands.items()}
    return float(max_depths(verts["left"], verts["right"], hand_model.faces("left"), hand_model.faces("right"))[0])
