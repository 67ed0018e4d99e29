"""The motion jobs' input checks at their bounds (motion.inbetween, motion.trajectory, motion.generate), as the server
runs them before queueing a job (the schema, then the kind's check; ``refusal``): each limit taken at its value and
refused one past it, naming the field; each hand sent incomplete told the array it lacks. Mutation testing of
handforge/engines/motion/jobs.py found these unpinned (each test names the mutation it catches; the bounds pinned
before: tests/test_job_input_bounds.py, the jobs end to end: tests/test_motion_jobs.py).

The learned engine's requests are checked against the shipped motion model (512 frames at 30 fps, 1000 diffusion
steps), unless a test sets up its own; the requests below are short enough for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.engines.hands.jobs import POSE_LIMITS
from handforge_shared.poses import MOTION_MAX_FRAMES

from tests.support.job_requests import refusal, refused
from tests.support.motion_keys import keyed_ends

KINDS = ("motion.inbetween", "motion.trajectory", "motion.generate")
FRAMES = 6


def request(kind: str, frames: int = FRAMES) -> dict[str, np.ndarray]:
    """Arrays every check of ``kind`` takes: both hands keyed at the ends, both wrists' paths apart, or nothing."""
    if kind == "motion.inbetween":
        return keyed_ends(frames)
    if kind == "motion.trajectory":
        return {f"{side}.transl": np.tile(np.float32([x, 0.0, 0.0]), (frames, 1))
                for side, x in (("left", -0.1), ("right", 0.1))}
    return {}


def params(kind: str, **values) -> dict:
    """``values``, and motion.generate's frames as few as the other kinds' (6 frames at 1 fps fit the model)."""
    return {"num_frames": FRAMES, **values} if kind == "motion.generate" else values


def taken(kind: str, sent: dict, arrays: dict) -> None:
    error = refusal(kind, sent, arrays)
    assert error is None, f"{error.code}: {error}"


def past(value: float, direction: float) -> float:
    return float(np.nextafter(value, direction))


# ------------------------------------------------------------------------------------- parameters
BOUNDS = [  # (param, lowest, highest, as the refusal writes them)
    ("seed", 0, 2**31 - 1, "between 0 and 2147483647"),
    ("steps", 1, 1000, "between 1 and 1000"),
    ("variation", 0.01, 1.0, "between 0.01 and 1.0"),
    ("smoothing", 0.0, 10.0, "between 0.0 and 10.0"),
    ("fps", 1.0, 1000.0, "between 1.0 and 1000.0"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, low, high, says", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_a_setting_is_taken_at_its_bounds_and_refused_just_past_them(kind, name, low, high, says):
    # (mutation testing: seed to 2**31 or from -1, steps to 1001 or from 0, variation from 0 (outside (0, 1]) or to
    # 1.01, smoothing from -1 or to 10.5 went unnoticed; fps, pinned by its message in test_job_input_bounds.py, is
    # here too for every kind)
    for value in (low, high):
        taken(kind, params(kind, **{name: value}), request(kind))
    if isinstance(low, int):
        beyond = (low - 1, high + 1)
    else:
        beyond = (past(low, -np.inf), past(high, np.inf))
    for value in beyond:
        error = refused(kind, params(kind, **{name: value}), request(kind), field=f"params.{name}")
        assert f"must be {says}, got {value!r}" in str(error)


def test_a_generated_motion_is_2_to_512_frames():
    # (mutation testing: num_frames to 513 went unnoticed; 2 was pinned)
    taken("motion.generate", {"engine": "spline", "num_frames": MOTION_MAX_FRAMES}, {})
    error = refused("motion.generate", {"num_frames": MOTION_MAX_FRAMES + 1}, {}, field="params.num_frames")
    assert f"must be between 2 and {MOTION_MAX_FRAMES}, got {MOTION_MAX_FRAMES + 1}" in str(error)


@pytest.mark.parametrize("kind", ["motion.inbetween", "motion.trajectory"])
def test_keys_and_paths_of_more_than_512_frames_are_refused(kind):
    # (mutation testing: the frames dimension to 513 went unnoticed; 512 taken was pinned)
    error = refusal(kind, {}, request(kind, MOTION_MAX_FRAMES + 1))
    assert error is not None and error.field.startswith("arrays.left."), error
    assert f"dimension frames (axis 0) must be between 2 and {MOTION_MAX_FRAMES}, got {MOTION_MAX_FRAMES + 1}" \
        in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, value, says", [
    ("engine", "diffusion", "must be one of 'learned', 'spline', got 'diffusion'"),
    ("hand_model", "smplx", "must be one of 'open', 'mano', got 'smplx'"),
    ("penetration_guidance", "always", "must be one of 'auto', 'repair', 'on', 'off', got 'always'"),
])
def test_a_choice_not_offered_is_refused(kind, name, value, says):
    # (mutation testing: dropping any of these choice lists went unnoticed: an unknown engine or guidance was taken
    # at submit, an unknown hand model failed inside the check, an internal error)
    error = refused(kind, {name: value}, request(kind), field=f"params.{name}")
    assert says in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, value", [("steps", 6), ("variation", 0.5), ("smoothing", 2.0),
                                         ("penetration_guidance", "on")])
def test_each_learned_setting_sent_to_the_spline_engine_is_refused(kind, name, value):
    # the spline engine reads none of them: taken, they would be ignored, unsaid (mutation testing: smoothing left out
    # of LEARNED_ONLY went unnoticed in process; a server test sends it beside variation)
    error = refused(kind, params(kind, engine="spline", **{name: value}), request(kind), field=f"params.{name}")
    assert error.message.startswith(f"params.{name}: {name} only applies to engine 'learned' (the spline engine ")
    assert error.hint == "set engine to 'learned', or leave it out"


# ------------------------------------------------------------------------------------- arrays
FIELDS = {"motion.inbetween": ("global_orient", "hand_pose", "transl"), "motion.trajectory": ("global_orient", "transl")}


def _with(kind: str, name: str, value: float) -> dict[str, np.ndarray]:
    arrays = request(kind)
    if kind == "motion.trajectory" and name == "global_orient":
        arrays["left.global_orient"] = np.zeros((FRAMES, 3), np.float64)
    arrays[f"left.{name}"] = np.full(arrays[f"left.{name}"].shape, value, np.float64)
    return arrays


@pytest.mark.parametrize("kind, name", [(k, n) for k, names in FIELDS.items() for n in names])
def test_a_key_or_path_array_is_taken_at_its_limits_and_refused_past_them(kind, name):
    # the rigs' bounds: 4π radians, 100 m (mutation testing: the arrays' min or max dropped, or transl bounded by the
    # rotations' 4π, went unnoticed)
    limit = POSE_LIMITS[name]
    for value in (limit, -limit):
        taken(kind, {"engine": "spline"}, _with(kind, name, value))
    for value, says in ((past(limit, np.inf), f"has values above {limit}"),
                        (past(-limit, -np.inf), f"has values below {-limit}")):
        error = refused(kind, {"engine": "spline"}, _with(kind, name, value), field=f"arrays.left.{name}")
        assert says in str(error)


@pytest.mark.parametrize("kind", KINDS)
def test_betas_are_taken_at_their_limits_and_refused_past_them(kind):
    # (mutation testing: the betas' min and max dropped, of the keys' and paths' kinds or of motion.generate's, went
    # unnoticed)
    limit = POSE_LIMITS["betas"]
    for value in (limit, -limit):
        taken(kind, {"engine": "spline"}, {**request(kind), "right.betas": np.full(10, value)})
    for value, says in ((past(limit, np.inf), f"has values above {limit}"),
                        (past(-limit, -np.inf), f"has values below {-limit}")):
        error = refused(kind, {"engine": "spline"}, {**request(kind), "right.betas": np.full(10, value)},
                        field="arrays.right.betas")
        assert says in str(error)


@pytest.mark.parametrize("kind", KINDS)
def test_betas_are_ten_values(kind):
    # (mutation testing: motion.generate's betas of any length went unnoticed: 5 of them stacked with the other
    # hand's 10 failed inside the job, an internal error)
    error = refused(kind, {"engine": "spline"}, {**request(kind), "right.betas": np.zeros(5)},
                    field="arrays.right.betas")
    assert "must have shape (10,), got (5,)" in str(error)


def test_a_key_mask_of_2_is_refused():
    # a 2 would key as a 1 does (mutation testing: the mask's max 2 was caught only by a server test; here in process)
    arrays = keyed_ends(FRAMES)
    arrays["left.mask"][0, 0] = 2
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field="arrays.left.mask")
    assert "has values above 1" in str(error)


# ------------------------------------------------------------------------------------- the kinds' checks
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_hand_sent_incomplete_names_what_it_sent_and_what_it_lacks(side):
    # (mutation testing: the message naming another missing array as the one sent, or the hint the right hand for
    # the left, went unnoticed: the tests read "is required with" only)
    arrays = keyed_ends(FRAMES)
    del arrays[f"{side}.hand_pose"], arrays[f"{side}.transl"]
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field=f"arrays.{side}.hand_pose")
    assert error.message == f"arrays.{side}.hand_pose: is required with arrays.{side}.global_orient"
    assert error.hint == (f"send all of {side}.global_orient, {side}.hand_pose, {side}.transl, {side}.mask for the "
                          f"{side} hand")


@pytest.mark.parametrize("alone", ["mask", "global_orient"])
def test_a_hand_sent_as_one_array_alone_is_refused(alone):
    # (mutation testing: "two or more arrays of four" went unnoticed; a mask alone then failed inside the check,
    # an internal error)
    arrays = {k: v for k, v in keyed_ends(FRAMES).items() if not k.startswith("left.") or k == f"left.{alone}"}
    missing = "global_orient" if alone == "mask" else "hand_pose"
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field=f"arrays.left.{missing}")
    assert error.message == f"arrays.left.{missing}: is required with arrays.left.{alone}"


def test_keys_on_one_hand_only_are_taken():
    # the other hand sent, keyed on no frame: the keys of both hands count (mutation testing: counting the first
    # hand's alone went unnoticed: "keys no frame" said of a request that keys the right hand)
    arrays = keyed_ends(FRAMES)
    arrays["left.mask"][:] = 0
    taken("motion.inbetween", {"engine": "spline"}, arrays)
    arrays["right.mask"][:] = 0
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field="arrays.left.mask")
    assert "keys no frame (all zeros)" in str(error)


def test_one_part_keyed_on_one_frame_is_a_key():
    # a row keys its frame when any column is set, and one keyed frame is enough (mutation testing: "keyed <= 1", one
    # key refused as none, and a row keying its frame only when every column is set went unnoticed in process)
    arrays = keyed_ends(FRAMES)
    arrays["left.mask"][:] = 0
    arrays["right.mask"][:] = 0
    arrays["right.mask"][2, 5] = 1  # the right hand's fifth finger joint on frame 2, nothing else
    taken("motion.inbetween", {"engine": "spline"}, arrays)


def test_betas_sent_first_do_not_count_as_the_frames():
    # the arrays' frames are those of the per-frame arrays, whichever comes first (mutation testing: the betas' 10
    # counted as frames went unnoticed: a request sending them first failed inside the check, an internal error)
    for kind in ("motion.inbetween", "motion.trajectory"):
        arrays = request(kind, frames=30)
        taken(kind, {"engine": "spline"}, {"right.betas": np.zeros(10, np.float32), **arrays})


@pytest.mark.parametrize("sent", ["left", "right"])
def test_wrist_rotations_without_their_path_are_refused_beside_the_other_wrists_path(sent):
    # (mutation testing: checking the left wrist alone went unnoticed: the right one's rotations beside a left path
    # were taken, and generated along no path)
    other = "right" if sent == "left" else "left"
    arrays = {f"{other}.transl": np.zeros((FRAMES, 3), np.float32),
              f"{sent}.global_orient": np.zeros((FRAMES, 3), np.float32)}
    error = refused("motion.trajectory", {"engine": "spline"}, arrays, field=f"arrays.{sent}.transl")
    assert error.message == f"arrays.{sent}.transl: is required with arrays.{sent}.global_orient"
    assert error.hint == f"send the {sent} wrist's path (T, 3) with its rotations"


@pytest.mark.parametrize("kind", ["motion.inbetween", "motion.trajectory"])
def test_keys_and_paths_longer_than_the_model_takes_are_refused_before_the_job_is_queued(kind):
    # the shipped model's 512 frames at 30 fps span 17.03 s: 409 frames at 24 fps fit, 410 do not (mutation testing:
    # motion.trajectory's check of it dropped went unnoticed; its job then refused the request when its turn came)
    taken(kind, {"fps": 24.0}, request(kind, 409))
    error = refused(kind, {"fps": 24.0}, request(kind, 410), field="arrays")
    assert error.message == ("arrays: 410 frames at 24 fps (17.04 s) is longer than the model's 512 frames at 30 fps "
                             "(17.03 s)")
    assert error.hint == ("generate at most 409 frames at a time at 24 fps, or use the spline engine (up to 512 frames at "
                          "any frame rate)")
    taken(kind, {"fps": 24.0, "engine": "spline"}, request(kind, 410))


def test_a_range_spanning_exactly_the_models_frames_is_taken(tmp_path, monkeypatch):
    # 30 frames at 34.8 fps span 29/34.8 s, 25 gaps of the model's 30 fps: 26 model frames, which a model of 26 takes;
    # in floats 29 · 30 / 34.8 is 25.000000000000004 (mutation testing: retime.model_frames without its tolerance,
    # counting 27 and refusing the request, went unnoticed)
    from handforge.engines.checkpoints import save_model
    from handforge.engines.motion.model import MotionDenoiser
    from handforge.engines.motion.representation import FRAME_DIM

    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, max_frames=26,
                                       data_mean=[0.0] * FRAME_DIM, data_std=[1.0] * FRAME_DIM), tmp_path / "tiny")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    taken("motion.generate", {"num_frames": 30, "fps": 34.8}, {})
    error = refused("motion.generate", {"num_frames": 31, "fps": 34.8}, {}, field="params.num_frames")
    assert "31 frames at 34.8 fps (0.86 s) is longer than the model's 26 frames at 30 fps (0.83 s)" in str(error)


# ------------------------------------------------------------------------------------- one path for both wrists
def _wrist_paths(apart: np.ndarray) -> dict[str, np.ndarray]:
    """Both hands' transl putting their wrist joints (open hand, mean shape) ``apart`` (T, 3) from each other along one
    path: the left wrist on it, the right one ``apart`` from it."""
    from handforge.engines.motion.kinematics import rest_skeleton
    from handforge.hands.registry import load_hand_model

    rest, _ = rest_skeleton(load_hand_model("open"), torch.zeros(1, 2, 10))
    wrist = rest[0, :, 0].double().numpy()  # (2, 3): left, right
    path = np.stack([np.linspace(-0.1, 0.1, len(apart)), np.zeros(len(apart)), np.full(len(apart), 0.3)], 1)
    return {"left.transl": path - wrist[0], "right.transl": path + apart - wrist[1]}


def _one_path_refusal(arrays: dict[str, np.ndarray]):
    """What motion.trajectory's job says of ``arrays`` before it samples (None: it goes on)."""
    from handforge.engines.motion import jobs
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext, JobError

    checked = default_registry().kind("motion.trajectory").schema.validate({"engine": "spline"}, arrays)
    ctx = JobContext("j", "motion.trajectory", lambda fraction, message, previews: None)
    try:
        jobs._refuse_one_path(ctx, checked, jobs.trajectory_observation(checked, arrays))
    except JobError as exc:
        return exc
    return None


def test_wrists_within_a_millimetre_on_every_frame_are_one_path_two_millimetres_apart_are_not():
    # (mutation testing: "one path" widened to 1 cm went unnoticed: the tests sent one path and paths 2 cm apart)
    frames = 8
    for gap in (0.0, 0.0005, 0.0009):
        error = _one_path_refusal(_wrist_paths(np.tile([gap, 0.0, 0.0], (frames, 1))))
        assert error is not None and "put both wrists on one path" in error.message, gap
    for gap in (0.002, 0.005):
        assert _one_path_refusal(_wrist_paths(np.tile([0.0, gap, 0.0], (frames, 1)))) is None, gap


def test_wrist_paths_that_meet_on_some_frames_are_not_one_path():
    # crossing paths (the wrists at one place on one frame) are the animator's to make; the spline engine says where
    # the hands go into each other (mutation testing: refusing wrists that meet once went unnoticed)
    apart = np.zeros((8, 3))
    apart[:, 0] = np.linspace(-0.04, 0.04, 8)
    apart[3, 0] = 0.0  # the same place on frame 3
    assert _one_path_refusal(_wrist_paths(apart)) is None


# ------------------------------------------------------------------------------------- the frames named
@pytest.mark.parametrize("kind", KINDS)
def test_a_range_ending_past_blenders_last_frame_is_refused(kind):
    # first_frame is the scene's frame of the first row and notes name frames counted from it; Blender's last frame is
    # 1,048,574 (MAXFRAME): a range starting there is one frame long, and 6 frames from it were taken, a note then
    # naming frames no scene has (first_frame alone was bounded)
    last = 1_048_574
    taken(kind, params(kind, first_frame=last - FRAMES + 1), request(kind))
    error = refused(kind, params(kind, first_frame=last - FRAMES + 2), request(kind), field="params.first_frame")
    assert error.message == (f"params.first_frame: {FRAMES} frames from frame {last - FRAMES + 2} end at frame "
                             f"{last + 1}, past Blender's last frame {last}")
    assert error.hint == f"start at frame {last - FRAMES + 1} at the latest, or send fewer frames"
