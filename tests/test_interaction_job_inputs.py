"""interaction.sample's input checks at their bounds, as the server runs them before queueing a job (the schema,
then the kind's check; ``refusal``): each limit taken at its value and refused one past it, naming the field.
Mutation testing of handforge/engines/interaction/jobs.py found these unpinned (each test names the mutation it
catches).

The learned engine's requests are checked against the shipped checkpoint (its files and weights are read, no
model is built) unless a test points interaction.checkpoint elsewhere; nothing is sampled."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.engines.checkpoints import save_model
from handforge.engines.hands.jobs import POSE_LIMITS
from handforge.engines.interaction.jobs import ANCHOR_ROOM
from handforge_shared import pose_library
from handforge_shared.poses import POSE_FIELDS
from handforge_shared.protocol import ErrorCode

from tests.support.job_requests import refusal, refused

KIND = "interaction.sample"


def anchor(side: str = "left", *names: str) -> dict[str, np.ndarray]:
    """The pinch as anchor.* arrays (float32), the fields ``names`` only (all of them when none is named)."""
    pose = pose_library.get("pinch", side=side)
    return {f"anchor.{name}": np.asarray(getattr(pose, name), np.float32).reshape(size)
            for name, size in POSE_FIELDS.items() if name in (names or POSE_FIELDS)}


# ------------------------------------------------------------------------------------- the anchor
def test_anchor_arrays_without_an_anchor_side_are_refused_naming_the_first_by_name():
    # sent in any order, the field is the first by name (mutation testing: the names unsorted, or the last named,
    # went unnoticed: the field then followed the order the client happened to send them in)
    arrays = {"anchor.transl": np.zeros(3, np.float32), "anchor.hand_pose": np.zeros(45, np.float32),
              "anchor.global_orient": np.zeros(3, np.float32)}
    error = refused(KIND, {}, arrays, field="arrays.anchor.global_orient")
    assert "anchor arrays were sent but anchor_side is 'none'" in str(error)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("sent, missing", [("global_orient", "hand_pose"), ("hand_pose", "global_orient"),
                                           ("betas", "global_orient"), ("transl", "global_orient")])
def test_an_anchor_without_its_global_orient_and_hand_pose_is_refused_naming_the_one_missing(side, sent, missing):
    # both rotations are the anchor (mutation testing: hand_pose not required, a flat hand taken unsaid, the right
    # anchor unchecked, or the field naming global_orient whichever was missing, went unnoticed)
    error = refused(KIND, {"anchor_side": side}, anchor(side, sent), field=f"arrays.anchor.{missing}")
    assert error.message == f"arrays.anchor.{missing}: anchor_side is {side!r} but anchor.{missing} is missing"
    assert error.hint == "send the anchor hand's anchor.global_orient (3,) and anchor.hand_pose (45,)"
    assert refusal(KIND, {"anchor_side": side}, anchor(side, "global_orient", "hand_pose")) is None


@pytest.mark.parametrize("name", list(POSE_FIELDS))
def test_an_anchor_array_of_another_size_is_refused(name):
    # the job reshapes each to its size (mutation testing: shape (None,) went unnoticed; the job then failed inside)
    size = POSE_FIELDS[name]
    arrays = {**anchor(), f"anchor.{name}": np.zeros(size + 1, np.float32)}
    error = refused(KIND, {"anchor_side": "left"}, arrays, field=f"arrays.anchor.{name}")
    assert f"must have shape ({size},), got ({size + 1},)" in str(error)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16])
def test_an_anchor_array_of_integers_or_half_floats_is_refused(dtype):
    # (mutation testing: int64 taken went unnoticed)
    arrays = {**anchor(), "anchor.hand_pose": np.zeros(45, dtype)}
    error = refused(KIND, {"anchor_side": "left"}, arrays, field="arrays.anchor.hand_pose")
    assert f"has dtype {np.dtype(dtype).name}; send float32 or float64" in str(error)


@pytest.mark.parametrize("name", list(POSE_FIELDS))
def test_an_anchor_array_is_taken_at_its_limits_and_refused_past_them(name):
    # bounded as every job's pose arrays are (tests/test_server_registry.py pins the numbers, this their use); the
    # translation 1 m inside: the hand placed by it must fit the other jobs' bound (test_interaction_job.py)
    limit, size = POSE_LIMITS[name] - (ANCHOR_ROOM if name == "transl" else 0), POSE_FIELDS[name]
    for value in (limit, -limit):
        assert refusal(KIND, {"anchor_side": "left"}, {**anchor(), f"anchor.{name}": np.full(size, value)}) is None
    for value, says in ((np.nextafter(limit, np.inf), f"has values above {limit}"),
                        (np.nextafter(-limit, -np.inf), f"has values below {-limit}")):
        error = refused(KIND, {"anchor_side": "left"}, {**anchor(), f"anchor.{name}": np.full(size, value)},
                        field=f"arrays.anchor.{name}")
        assert says in str(error)


# ------------------------------------------------------------------------------------- the schema's bounds
@pytest.mark.parametrize("name, low, high", [
    ("seed", 0, 2**31 - 1), ("steps", 2, 200), ("guidance_steps", 0, 200), ("redraws", 0, 8), ("count", 1, 256)])
def test_each_whole_number_is_taken_at_its_bounds_and_refused_one_past_them(name, low, high):
    # (mutation testing: seed from -1 or to 2**31, guidance_steps to 201 went unnoticed)
    for value in (low, high):
        assert refusal(KIND, {name: value}) is None, (name, value)
    for value in (low - 1, high + 1):
        error = refused(KIND, {name: value}, field=f"params.{name}")
        assert f"must be between {low} and {high}, got {value}" in str(error)


@pytest.mark.parametrize("name, low, high", [
    ("cfg_scale", -1.0, 2.0), ("penetration_guidance", 0.0, 100.0), ("contact_guidance", 0.0, 100.0)])
def test_each_number_is_taken_at_its_bounds_and_refused_past_them(name, low, high):
    # (mutation testing: cfg_scale from -1.5 or to 2.5, penetration_guidance to 101, contact_guidance from -1 went
    # unnoticed; 3 to 10 put cfg_scale's candidates 9 to 49 cm from the hand)
    for value in (low, high):
        assert refusal(KIND, {name: value}) is None, (name, value)
    for value in (float(np.nextafter(low, -np.inf)), float(np.nextafter(high, np.inf))):
        error = refused(KIND, {name: value}, field=f"params.{name}")
        assert f"must be between {low} and {high}, got {value!r}" in str(error)


def test_up_to_64_template_names_of_up_to_64_characters_are_read_each_once():
    # (mutation testing: 65 names, a 65-character name, or a name repeated, taken went unnoticed)
    assert "must have between 0 and 64 items, got 65" in str(
        refused(KIND, {"engine": "templates", "templates": ["prayer"] * 65}, field="params.templates"))
    assert "is 65 characters long; the limit is 64" in str(
        refused(KIND, {"engine": "templates", "templates": ["x" * 65]}, field="params.templates[0]"))
    assert "must not repeat items" in str(
        refused(KIND, {"engine": "templates", "templates": ["prayer", "prayer"]}, field="params.templates"))
    assert refusal(KIND, {"engine": "templates", "templates": ["prayer", "clap"]}) is None


def test_unknown_templates_are_refused_naming_the_first_sent():
    # (mutation testing: the last unknown one named went unnoticed)
    error = refused(KIND, {"engine": "templates", "templates": ["prayer", "hug", "wave"]}, field="params.templates")
    assert error.message == "params.templates: unknown template 'hug'"
    assert error.hint.startswith("known: prayer, clap, ")


def test_penetration_guidance_sent_to_the_templates_engine_is_refused():
    # the one learned setting tests/test_job_input_bounds.py and the job's tests leave out (mutation testing:
    # penetration_guidance left out of LEARNED_ONLY, taken and ignored unsaid, went unnoticed)
    error = refused(KIND, {"engine": "templates", "penetration_guidance": 1.0}, field="params.penetration_guidance")
    assert "penetration_guidance only applies to engine 'learned'" in str(error)
    assert refusal(KIND, {"engine": "templates", "penetration_guidance": 2.0}) is None  # (its default, as sent)


# ------------------------------------------------------------------------------------- the checkpoint
def test_a_checkpoint_folder_that_is_no_checkpoint_is_refused_saying_to_point_at_a_runs_model(tmp_path, monkeypatch):
    # a folder there, not a model (e.g. the run instead of its model/): the fix is where to point, not how to set
    # the setting (mutation testing: the no-folder fix given for both went unnoticed)
    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(tmp_path))
    error = refusal(KIND, {})
    assert error is not None and error.code == ErrorCode.MISSING_WEIGHTS, error
    assert error.message.startswith(f"engine 'learned' cannot run: interaction.checkpoint: {tmp_path}")
    assert error.hint.startswith("point interaction.checkpoint at the model/ folder of a `handforge train "
                                 "interaction` run"), error.hint
    assert refusal(KIND, {"engine": "templates"}) is None


def test_a_checkpoint_of_another_vector_size_is_refused_at_submit(tmp_path, monkeypatch):
    # its load refuses it (tests/test_interaction_job.py): said before the job is queued too (mutation testing: the
    # submit check without vector_dim, the job accepted and then failing as missing_weights, went unnoticed)
    from handforge.engines.interaction import model

    with monkeypatch.context() as patch:  # such a model can only be built by another representation
        patch.setattr(model, "VECTOR_DIM", 10)
        folder = save_model(model.InteractionDenoiser(vector_dim=10, width=8, hidden=16), tmp_path / "other")
    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(folder))
    error = refusal(KIND, {})
    assert error is not None and error.code == ErrorCode.MISSING_WEIGHTS, error
    assert error.message == (f"engine 'learned' cannot run: interaction.checkpoint: {folder} holds a checkpoint of "
                             "InteractionDenoiser with vector_dim 10, not the 64 this engine takes")
