"""Blender session: Sample Interaction pressed again while candidates are browsed (it takes the preview off the rig
to read the anchor as the artist posed it, and keeps the candidates until the new ones land): Apply pressed while
that sampling runs, and the sampled hand posed by the artist while it runs."""

from __future__ import annotations

import bpy
import numpy as np
from session import Session, as_user, channels, hand, ui_context, while_a_job_runs

s = Session()
s.install()
UI = ui_context()
ops = bpy.ops.handforge


def sample(**kwargs):
    return as_user(ops.sample_interaction, **{"engine": "templates", "count": 3, "anchor": "LEFT", **kwargs})


def state():
    return bpy.context.window_manager.handforge_interaction


def once(action):
    done = []
    return done, lambda: done or done.append(action())


s.start_backend()
assert ops.add_hands() == {"FINISHED"}
bpy.context.view_layer.objects.active = hand("left")


def apply_while_resampling():
    """Candidate 2 shown, Sample Interaction again, Apply pressed while it runs: candidate 2 is what Apply keeps."""
    before = channels("right")
    assert sample(seed=2)[0] == ["FINISHED"]
    assert as_user(ops.interaction_next)[0] == ["FINISHED"]
    shown = channels("right")
    done, apply = once(lambda: as_user(ops.interaction_apply))
    with while_a_job_runs(apply):
        resampled = sample(seed=5)
    applied = channels("right")  # (the new candidates land after Apply: shown on the rig now)
    if len(state().candidates):
        assert as_user(ops.interaction_cancel)[0] == ["FINISHED"]
    kept = channels("right")  # what Cancel puts back: what Apply kept
    found = {"apply": done[0] if done else None, "resampled": resampled,
             "kept_candidate": bool(np.allclose(kept, shown, atol=1e-6)),
             "kept_before": bool(np.allclose(kept, before, atol=1e-6)),
             "applied_differs": bool(not np.allclose(applied, kept, atol=1e-6))}
    return found


s.check("apply_while_resampling", apply_while_resampling)


def posed_while_resampling():
    """The sampled hand posed by the artist (a preset) while a new sampling runs: Cancel on the new candidates
    puts that pose back, as it does when no candidates were browsed before."""
    assert sample(seed=2)[0] == ["FINISHED"]
    done, pose = once(lambda: as_user(ops.apply_preset, preset="fist", sides="RIGHT"))
    posed = []
    with while_a_job_runs(lambda: pose() or posed or posed.append(channels("right"))):
        resampled = sample(seed=5)
    landed = len(state().candidates)
    if landed:
        assert as_user(ops.interaction_cancel)[0] == ["FINISHED"]
    return {"preset": done[0] if done else None, "resampled": resampled, "landed": landed,
            "cancel_gives_the_artists_pose": bool(posed and np.allclose(channels("right"), posed[0], atol=1e-6))}


s.check("posed_while_resampling", posed_while_resampling)
def posed_while_a_cancelled_resampling_ran():
    """The sampled hand posed by the artist while a new sampling runs, which is then cancelled: the candidates stay
    to browse, and the artist's pose stays on the hand (it was posed over again with the candidate shown before)."""
    assert sample(seed=2)[0] == ["FINISHED"]
    posed = []

    def pose_then_cancel():
        if not posed:  # (flat: the hand is a fist since the check before)
            assert as_user(ops.apply_preset, preset="flat", sides="RIGHT")[0] == ["FINISHED"]
            posed.append(channels("right"))
            as_user(ops.cancel_job)

    with while_a_job_runs(pose_then_cancel):
        resampled = sample(seed=5)
    found = {"resampled": resampled, "count": len(state().candidates),
             "pose_kept": bool(posed and np.allclose(channels("right"), posed[0], atol=1e-6))}
    if found["count"]:
        found["message"] = state().message
        found["apply"] = as_user(ops.interaction_apply)
    return found


s.check("posed_while_a_cancelled_resampling_ran", posed_while_a_cancelled_resampling_ran)
def request_read_again():
    """The request read again as after an Undo or Redo while a sampling ran (``JobOperator._made_from_now``), with
    candidates browsed and the sampled hand posed by the artist: it changes nothing (before: it put the pose from
    before the candidates over the artist's and took that for what the add-on wrote)."""
    import importlib
    from types import SimpleNamespace

    from session import ADDON_MODULE

    operator = importlib.import_module(f"{ADDON_MODULE}.ops_interaction").HANDFORGE_OT_sample_interaction
    assert sample(seed=2)[0] == ["FINISHED"]
    candidate = channels("right")
    assert as_user(ops.apply_preset, preset="fist", sides="RIGHT")[0] == ["FINISHED"]
    posed, shown = channels("right"), state().shown
    stand_in = SimpleNamespace(anchor="LEFT", engine="templates", count=3, seed=2, separation=True, touch=True)
    kind = operator.job_request(stand_in, bpy.context)[0]
    found = {"kind": kind, "posed": bool(not np.allclose(posed, candidate, atol=1e-6)),
             "pose_kept": bool(np.allclose(channels("right"), posed, atol=1e-6)), "shown_kept": state().shown == shown}
    found["apply"] = as_user(ops.interaction_apply)
    return found


s.check("request_read_again", request_read_again)
def posed_then_applied_while_resampling():
    """Candidate 2 shown, Sample Interaction again, the sampled hand posed by the artist while it runs (over the pose
    from before the candidates, the candidate being off the rig), then Apply while it still runs: the artist's pose
    is kept, and Apply says candidate 2 was not shown on it rather than applying it "with your changes"."""
    assert sample(seed=2)[0] == ["FINISHED"]
    assert as_user(ops.interaction_next)[0] == ["FINISHED"]
    done, posed = [], []

    def pose_then_apply():
        if not done:
            assert as_user(ops.apply_preset, preset="flat", sides="RIGHT")[0] == ["FINISHED"]
            posed.append(channels("right"))
            done.append(as_user(ops.interaction_apply))

    with while_a_job_runs(pose_then_apply):
        resampled = sample(seed=5)
    if len(state().candidates):  # the new candidates, landed after Apply: Cancel gives back what Apply kept
        assert as_user(ops.interaction_cancel)[0] == ["FINISHED"]
    return {"apply": done[0] if done else None, "resampled": resampled,
            "pose_kept": bool(posed and np.allclose(channels("right"), posed[0], atol=1e-6))}


s.check("posed_then_applied_while_resampling", posed_then_applied_while_resampling)
def both_posed_while_a_cancelled_resampling_ran():
    """Both hands sampled (no anchor), both posed by the artist while a new sampling runs, which is then cancelled:
    the message and Apply speak of both hands."""
    assert sample(anchor="NONE", seed=2)[0] == ["FINISHED"]
    posed = []

    def pose_then_cancel():
        if not posed:
            assert as_user(ops.apply_preset, preset="fist", sides="BOTH")[0] == ["FINISHED"]
            posed.append(True)
            as_user(ops.cancel_job)

    with while_a_job_runs(pose_then_cancel):
        resampled = sample(anchor="NONE", seed=5)
    found = {"resampled": resampled, "count": len(state().candidates)}
    if found["count"]:
        found["message"] = state().message
        found["apply"] = as_user(ops.interaction_apply)
    return found


s.check("both_posed_while_a_cancelled_resampling_ran", both_posed_while_a_cancelled_resampling_ran)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
