"""The job ``interaction.sample`` through a real backend and client: the learned engine (a tiny
checkpoint through ``interaction.checkpoint``) around the artist's hand, progress, cancel, the
templates engine, and inputs rejected with what was wrong."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from handforge.engines.checkpoints import save_model
from handforge.engines.hands.jobs import POSE_LIMITS
from handforge.engines.interaction.jobs import ANCHOR_ROOM
from handforge.evaluation.limits import joint_frames
from handforge.hands import load_hand_model
from handforge_shared import pose_library
from handforge_shared.anatomy import LIMITS_DEG, anatomical_to_hand_pose, hand_pose_to_anatomical
from handforge_shared.client import Cancelled, Error, JobFailed, Progress
from handforge_shared.skeleton import JOINT_NAMES
from tests.support.interaction import tiny_denoiser
from tests.support.server import running_server
from tests.support.threads import torch_threads

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("global_orient", "hand_pose", "betas", "transl")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with torch_threads(1):
        folder = save_model(tiny_denoiser(load_hand_model("open"), steps=0), tmp_path_factory.mktemp("ckpt") / "tiny")
    env = {"HANDFORGE_INTERACTION_CHECKPOINT": str(folder),
           "HANDFORGE_MANO_DIR": str(tmp_path_factory.mktemp("no_mano_files")),  # MANO unavailable, wherever run
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as server:
        yield server


def anchor_arrays(side: str = "left") -> dict[str, np.ndarray]:
    pose = pose_library.get("pinch", side=side)
    return {f"anchor.{f}": np.asarray(getattr(pose, f), np.float32) for f in FIELDS}


def past_limit(side: str, degrees: float, joint: str = "index2", closed: bool = False) -> dict[str, np.ndarray]:
    """The pinch with ``joint`` bent back (``closed``: bent) ``degrees`` past its limit (on the open hand's
    frames)."""
    arrays = anchor_arrays(side)
    frames, k = joint_frames(side), JOINT_NAMES.index(joint) - 1
    angles = hand_pose_to_anatomical(arrays["anchor.hand_pose"].astype(np.float64), frames, side)
    # (flexion, above or below its range)
    angles[k, 0] = np.radians(LIMITS_DEG[k, 0, 1] + degrees if closed else LIMITS_DEG[k, 0, 0] - degrees)
    return {**arrays, "anchor.hand_pose": anatomical_to_hand_pose(angles, frames, side).astype(np.float32)}


def test_learned_engine_samples_around_the_artists_hand_with_progress(server):
    arrays = anchor_arrays("left")
    with server.client(lost_after=60) as client:  # a loaded 2-core machine can starve the server for seconds
        assert client.hello()["engines"]["interaction"]["available"]
        events = []
        # no engine named: the learned one is the default
        result = client.run("interaction.sample", {"anchor_side": "left", "count": 5, "seed": 3,
                                                   "steps": 6, "guidance_steps": 3}, arrays, timeout=120,
                            on_progress=events.append)
    # progress is coalesced when it comes faster than it is sent: at least one denoising step shows, in order
    steps = [e for e in events if e.message.startswith("other hand: step")]
    assert len(steps) >= 1 and steps == sorted(steps, key=lambda e: e.fraction)
    assert result.data["engine"] == "learned" and result.data["count"] == 5
    for f in FIELDS:
        assert np.array_equal(result.arrays[f"left.{f}"], np.repeat(arrays[f"anchor.{f}"][None], 5, axis=0))
        assert result.arrays[f"right.{f}"].shape[0] == 5 and np.isfinite(result.arrays[f"right.{f}"]).all()
    score = result.arrays["score"]
    assert score.shape == (5,) and np.all(np.diff(score) <= 0) and result.data["best_score"] == pytest.approx(score[0])
    with server.client(lost_after=60) as client:  # fewer steps than the default guidance_steps: every step guided
        few = client.run("interaction.sample", {"anchor_side": "left", "count": 2, "steps": 4}, arrays, timeout=120)
    assert np.isfinite(few.arrays["right.hand_pose"]).all()


def test_cancel_stops_sampling(server):
    with server.client(lost_after=60) as client:  # a loaded 2-core machine can starve the server for seconds
        handle = client.submit("interaction.sample", {"engine": "learned", "count": 64, "steps": 100,
                                                        "guidance_steps": 100})
        sampling = False
        for _ in range(1200):  # until it is sampling (past loading), at most a minute
            sampling = any(isinstance(e, Progress) and "step" in e.message for e in client.poll(0.05))
            if sampling or handle.done:
                break
        assert sampling, handle.outcome
        asked = time.monotonic()
        handle.cancel()
        outcome = handle.wait(60)
    assert isinstance(outcome, Cancelled)
    assert time.monotonic() - asked < 30  # at the next step, not after 100


def test_templates_engine_needs_no_weights(server):
    with server.client(lost_after=60) as client:  # a loaded 2-core machine can starve the server for seconds
        result = client.run("interaction.sample", {"engine": "templates", "count": 1, "seed": 1,
                                                   "anchor_side": "right", "templates": ["clap"]},
                            anchor_arrays("right"), timeout=120)
    assert result.data["templates"] == ["clap"]
    assert np.array_equal(result.arrays["right.hand_pose"][0], anchor_arrays("right")["anchor.hand_pose"])


@pytest.mark.parametrize("engine", ["templates", "learned"])
def test_an_anchor_at_the_edge_of_its_range_gets_a_partner_the_other_jobs_take(server, engine):
    """An anchor at -100 m (the other jobs' bound) had its partner at -100.17 m, which forward_hands then refused: the
    anchor is bounded 1 m inside it, and the hand placed by it within the other jobs' bound."""
    edge = POSE_LIMITS["transl"] - ANCHOR_ROOM
    arrays = {**anchor_arrays("right"), "anchor.transl": np.array([-edge, edge, -edge], np.float32)}
    with server.client(lost_after=60) as client:
        result = client.run("interaction.sample", {"engine": engine, "count": 4, "seed": 1, "anchor_side": "right",
                                                   **({"steps": 4} if engine == "learned" else {})},
                            arrays, timeout=120)
        placed = {f"left.{f}": result.arrays[f"left.{f}"] for f in ("global_orient", "hand_pose", "transl")}
        assert np.abs(placed["left.transl"]).max() <= POSE_LIMITS["transl"], placed["left.transl"]
        assert client.run("forward_hands", {}, placed, timeout=60).arrays["left.vertices"].shape[0] == 4


def test_candidates_left_inside_an_anchor_of_a_far_out_shape_are_said_to_be(server):
    """An anchor shaped at betas 20 (the schema's limit): every candidate 35-72 mm into it, said by scores alone."""
    far_out = {**anchor_arrays("right"), "anchor.betas": np.full(10, 20.0, np.float32)}
    with server.client(lost_after=60) as client:
        result = client.run("interaction.sample", {"engine": "templates", "count": 2, "seed": 1, "anchor_side": "right",
                                                   "templates": ["clap"]}, far_out, timeout=300)
        usual = client.run("interaction.sample", {"engine": "templates", "count": 2, "seed": 1, "anchor_side": "right",
                                                  "templates": ["clap"]}, anchor_arrays("right"), timeout=300)
        both = client.run("interaction.sample", {"engine": "templates", "count": 2, "seed": 1, "anchor_side": "right",
                                                 "templates": ["clap"]},
                          {**past_limit("right", 60.0, "pinky3"), "anchor.betas": far_out["anchor.betas"]}, timeout=300)
    assert result.data["warning"].startswith("every candidate still goes ")
    assert "the anchor's shape (betas up to 20) is far from the hands the engines know" in result.data["warning"]
    assert "warning" not in usual.data
    # a finger outside its limits as well: both said, one after the other
    first, second = both.data["warning"].split("; the anchor is outside its joint limits (")
    assert first.startswith("every candidate still goes ") and "betas up to 20" in first, both.data
    assert first.endswith("(their scores and max_depth say how far)") and first.count(";") == 0, both.data
    assert second.startswith("pinky's tip joint bent back 60° past its limit)"), both.data


def test_a_joint_bent_too_far_closed_is_said_as_bent_and_the_middle_finger_by_name():
    """The warning said 'bent' of a joint bent back past straight, read as too far closed, and named the middle
    finger's middle joint 'middle middle joint'."""
    from handforge.engines.interaction.jobs import _anchor_off_limits
    from handforge.hands.registry import load_hand_model

    hands = load_hand_model("open")
    anchor = {k.split(".")[1]: v for k, v in past_limit("left", 30.0, "middle2", closed=True).items()} | {"side": "left"}
    assert "(middle finger's middle joint bent 30° past its limit)" in _anchor_off_limits(hands, anchor)
    anchor = {k.split(".")[1]: v for k, v in past_limit("left", 30.0, "thumb3").items()} | {"side": "left"}
    assert "(thumb's tip joint bent back 30° past its limit)" in _anchor_off_limits(hands, anchor)


@pytest.mark.parametrize("engine", ["learned", "templates"])
def test_an_anchor_far_outside_its_joint_limits_is_said_to_be_and_returned_unchanged(server, engine):
    """Both engines make the other hand for the anchor moved into its limits and score the other hand only: an
    anchor finger bent 60° past its limit got candidates scored as any other, unsaid."""
    params = {"engine": engine, "count": 2, "seed": 1, "anchor_side": "left",
              **({"steps": 6, "guidance_steps": 3} if engine == "learned" else {"templates": ["clap"]})}
    off, slightly = past_limit("left", 60.0), past_limit("left", 3.0)
    with server.client(lost_after=60) as client:
        results = [client.run("interaction.sample", params, arrays, timeout=300)
                   for arrays in (off, slightly, anchor_arrays("left"))]
    warning = results[0].data["warning"]
    assert "the anchor is outside its joint limits (index finger's middle joint bent back 60° past its limit)" \
        in warning, warning
    assert "the scores rate the other hand only, so bring the finger back within the limits" in warning
    assert warning.count(";") == 0, warning  # (warnings are joined by '; ')
    for result, arrays in zip(results, (off, slightly, anchor_arrays("left"))):
        for f in FIELDS:  # the anchor as sent, bit for bit
            assert np.array_equal(result.arrays[f"left.{f}"], np.repeat(arrays[f"anchor.{f}"][None], 2, axis=0))
    for within in results[1:]:  # within a few degrees (people's ranges vary by ±10°) or within: nothing said
        assert "joint limits" not in within.data.get("warning", ""), within.data


@pytest.mark.parametrize("engine", ["learned", "templates"])
def test_both_free_hands_take_the_shape_sent(server, engine):
    """With both hands free the shape was drawn with them, and the add-on shows them on its rigs' own shapes: a
    candidate 1 mm apart was 4.5 mm apart there. anchor.betas alone is now both hands' shape."""
    betas = np.linspace(-1.5, 1.5, 10).astype(np.float32)
    with server.client(lost_after=60) as client:
        result = client.run("interaction.sample", {"engine": engine, "count": 2, "seed": 1, "anchor_side": "none",
                                                   **({"steps": 6} if engine == "learned" else {})},
                            {"anchor.betas": betas}, timeout=300)
        with pytest.raises(JobFailed, match="anchor arrays were sent but anchor_side is 'none'"):
            client.run("interaction.sample", {"anchor_side": "none"}, {"anchor.betas": betas,
                                                                      "anchor.transl": np.zeros(3, np.float32)})
    for side in ("left", "right"):
        assert np.array_equal(result.arrays[f"{side}.betas"], np.repeat(betas[None], 2, axis=0)), side


def test_candidates_left_apart_from_an_anchor_of_a_far_out_shape_are_said_to_be():
    """At betas -20 the learned engine's candidates around a fist all stayed 10 mm from it, touch on, said by
    scores alone (0.4), while candidates deep inside one at +20 were said to be."""
    from handforge.engines.interaction.settings import SHIPPED_CHECKPOINT

    fist = pose_library.get("fist", side="left")
    far_out = {**{f"anchor.{f}": np.asarray(getattr(fist, f), np.float32) for f in FIELDS},
               "anchor.betas": np.full(10, -20.0, np.float32)}
    env = {"HANDFORGE_INTERACTION_CHECKPOINT": str(SHIPPED_CHECKPOINT),  # (the tiny model's stay in touch)
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as shipped, shipped.client(lost_after=60) as client:
        result = client.run("interaction.sample", {"count": 2, "seed": 0, "anchor_side": "left"}, far_out,
                            timeout=300)
    assert result.arrays["gap"].min() > 0.004, result.arrays["gap"]  # what is to be said
    assert result.data["warning"].startswith("every candidate is still "), result.data
    assert " mm or more from the anchor: the anchor's shape (betas up to 20) is far from" in result.data["warning"]


@pytest.mark.parametrize("params, arrays, message", [
    ({"anchor_side": "left"}, {}, "anchor.global_orient is missing"),
    ({}, anchor_arrays("left"), "anchor_side is 'none'"),
    ({"anchor_side": "up"}, {}, "anchor_side"),
    ({"count": 0}, {}, "count"),
    ({"guidance_steps": -1}, {}, "guidance_steps"),
    ({"penetration_guidance": -1.0}, {}, "penetration_guidance"),
    ({"cfg_scale": 3.0}, {}, "cfg_scale"),  # 3 to 10 put candidates 9 to 49 cm from the hand
    ({"separation": "yes"}, {}, "params.separation: must be true or false"),
    ({"engine": "templates", "templates": ["hug"]}, {}, "unknown template 'hug'"),
    ({"model": "smpl"}, {}, "model"),
    ({"model": "mano"}, {}, "hand model 'mano' is not available here"),  # before queueing, with what to set
    ({"engine": "learned", "steps": 150}, {}, "exceeds the 100 diffusion steps"),
    # the learned engine's settings with the templates engine: refused as templates with the learned one are
    ({"engine": "templates", "steps": 40, "redraws": 8}, {}, "steps, redraws only apply to engine 'learned'"),
    ({"separation": False, "redraws": 8}, {}, "redraws only apply with separation"),  # (were not drawn, unsaid)
    ({"anchor_side": "left"}, {**anchor_arrays("left"), "anchor.transl": np.array([0, np.nan, 0], np.float32)},
     "anchor.transl"),
])
def test_bad_inputs_are_refused_with_what_was_wrong(server, params, arrays, message):
    with server.client(lost_after=60) as client:  # a loaded 2-core machine can starve the server for seconds
        with pytest.raises(JobFailed) as info:
            client.run("interaction.sample", params, arrays, timeout=30)
    assert message in info.value.message + info.value.hint
    # as a person reads it, the hint once (a missing MANO's reason already names the setting to fill)
    assert not info.value.hint or str(info.value).count(info.value.hint) == 1


def test_more_steps_than_the_checkpoint_was_trained_with_are_refused_before_the_job_is_queued(server):
    # before: accepted, then refused once the job had its turn and had loaded the model
    with server.client(lost_after=60) as client:
        handle = client.submit("interaction.sample", {"engine": "learned", "steps": 150})
        outcome = handle.wait(30)
    assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
    assert outcome.message.startswith("params.steps: 150 exceeds the 100 diffusion steps the model at ")
    assert outcome.field == "params.steps" and outcome.hint == "ask for at most 100 steps"
    assert handle.position is None  # never accepted


def test_a_missing_checkpoint_is_refused_before_the_job_is_queued_and_templates_still_run(tmp_path):
    # before: accepted, then failed as missing_weights when its turn came
    env = {"HANDFORGE_INTERACTION_CHECKPOINT": str(tmp_path / "nonexistent"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as server, server.client(lost_after=60) as client:
        handle = client.submit("interaction.sample", {"count": 1})
        outcome = handle.wait(30)
        assert isinstance(outcome, Error) and outcome.code == "missing_weights", outcome
        assert outcome.message.startswith("engine 'learned' cannot run: interaction.checkpoint: ")
        assert "nonexistent" in outcome.message and "engine 'templates'" in outcome.hint
        assert handle.position is None  # never accepted
        result = client.run("interaction.sample", {"engine": "templates", "count": 1}, timeout=120)
    assert result.data["engine"] == "templates"


def test_a_checkpoint_folder_not_there_is_refused_at_submit_saying_how_to_set_the_setting(tmp_path, monkeypatch):
    """The refusal at submit took the job's place, without the job's how-to: the environment variable and the
    config file that set interaction.checkpoint, and how to train a model."""
    from handforge.engines.interaction import jobs
    from handforge_shared.protocol import ProtocolError

    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(tmp_path / "nonexistent"))
    params = {name: spec.default for name, spec in jobs.SCHEMA.params.items()}
    with pytest.raises(ProtocolError) as refused:
        jobs._check(params, {})
    assert refused.value.code == "missing_weights" and "nonexistent: no such checkpoint folder" in refused.value.message
    assert "HANDFORGE_INTERACTION_CHECKPOINT=<value>" in refused.value.hint, refused.value.hint
    assert "handforge train interaction --corpus DIR --out RUN" in refused.value.hint
    assert "engine 'templates'" in refused.value.hint
    assert "\n" not in refused.value.hint  # (one line: its config-file lines ran on into "; or use engine ...")


def test_a_checkpoint_setting_that_is_no_checkpoint_is_missing_weights(tmp_path, monkeypatch):
    # before: a folder without config.json (a training run instead of its model/) ended "internal"
    from handforge.engines.interaction import jobs
    from handforge.server.jobs import JobContext, JobError

    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(tmp_path))
    ctx = JobContext("j", "interaction.sample", lambda fraction, message, previews: None)
    with pytest.raises(JobError) as failed:
        jobs._learned(ctx, None, "open", {"steps": 10})
    assert failed.value.code == "missing_weights" and "no config.json" in failed.value.message
    assert "interaction.checkpoint" in failed.value.hint and "templates" in failed.value.hint


def _sampling_error(folder, monkeypatch):
    """The JobError of an interaction.sample job with the checkpoint ``folder``."""
    from handforge.engines.interaction import jobs
    from handforge.server.jobs import JobContext, JobError

    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(folder))
    ctx = JobContext("j", "interaction.sample", lambda fraction, message, previews: None)
    params = {**{name: spec.default for name, spec in jobs.SCHEMA.params.items()}, "count": 2, "steps": 2}
    with pytest.raises(JobError) as failed:
        jobs.sample(ctx, params, {})
    return failed.value


def test_a_checkpoint_of_another_vector_size_is_missing_weights(tmp_path, monkeypatch):
    """An InteractionDenoiser saved with another vector_dim (a foreign or damaged config, weights to match)
    loaded, then ended the job ``internal`` with a reshape RuntimeError inside sampling."""
    from handforge.engines.interaction import model

    with monkeypatch.context() as patch:  # such a model can only be built by another representation
        patch.setattr(model, "VECTOR_DIM", 10)
        folder = save_model(model.InteractionDenoiser(vector_dim=10, width=8, hidden=16), tmp_path / "other")
    failed = _sampling_error(folder, monkeypatch)
    assert failed.code == "missing_weights"
    assert str(folder) in failed.message and "vector_dim must be the representation's 64, got 10" in failed.message


def test_a_hand_edited_config_that_makes_no_working_model_is_missing_weights_naming_the_key(tmp_path, monkeypatch):
    """A beta_schedule no sampler has loaded (nothing checked it), then ended every job ``internal`` when the
    pipeline made its scheduler; the load refuses it, through the model cache, as a job error saying the key."""
    import json

    from handforge.engines.interaction import model

    folder = save_model(model.InteractionDenoiser(width=8, hidden=16, layers=1, heads=2), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "beta_schedule": "cosine"}))
    failed = _sampling_error(folder, monkeypatch)
    assert failed.code == "missing_weights"
    assert failed.message == (
        f"{folder}: cannot load the InteractionDenoiser checkpoint: its config.json sets beta_schedule to 'cosine', "
        "not a string among 'linear', 'scaled_linear', 'squaredcos_cap_v2' (the default is 'squaredcos_cap_v2'); "
        "correct it, or save or train the model again")


def test_a_checkpoint_of_nan_weights_is_refused_at_submit_as_the_job_refuses_it(tmp_path, monkeypatch):
    """A diverged training run's checkpoint (NaN weights) passed the submit check, and the engine's note said nothing:
    every job then failed as missing_weights when its load found the NaN."""
    import torch

    from handforge.engines.interaction import jobs, model
    from handforge_shared.protocol import ProtocolError

    net = model.InteractionDenoiser(width=8, hidden=16, layers=1, heads=2)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    folder = save_model(net, tmp_path / "diverged")
    failed = _sampling_error(folder, monkeypatch)
    assert failed.code == "missing_weights" and "holds weights that are not finite (NaN or infinity)" in failed.message
    params = {name: spec.default for name, spec in jobs.SCHEMA.params.items()}
    with pytest.raises(ProtocolError) as refused:
        jobs._check(params, {})
    assert refused.value.code == "missing_weights" and failed.message in refused.value.message, refused.value.message
    assert failed.message in jobs._note()


def test_the_demos_interaction_part_says_a_missing_checkpoint_in_one_line(tmp_path, monkeypatch, capsys):
    """The demo goes on without the interaction part (it ended in a CheckpointError traceback)."""
    from handforge.engines.interaction.demo import demo

    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(tmp_path / "nonexistent"))
    demo(tmp_path)
    out = capsys.readouterr().out
    assert out.startswith("interaction: skipped:") and "nonexistent" in out
    assert not (tmp_path / "interaction.npz").exists()


def test_a_checkpoint_replaced_between_its_checks_at_submit_is_missing_weights(monkeypatch):
    # its files checked, then unreadable when read for the model's steps (a training run writing it just then):
    # an internal error at submit; now missing_weights naming what was wrong
    from handforge.engines import checkpoints
    from handforge.engines.interaction import jobs
    from handforge_shared.protocol import ProtocolError

    def replaced(folder, spec):
        raise checkpoints.CheckpointError(f"{folder}/config.json: not a readable model config")

    monkeypatch.setattr(checkpoints, "saved_config", replaced)
    params = {name: spec.default for name, spec in jobs.SCHEMA.params.items()}
    with pytest.raises(ProtocolError) as refused:
        jobs._check(params, {})
    assert refused.value.code == "missing_weights" and "not a readable model config" in refused.value.message


def test_both_engines_take_the_mano_model_again_once_its_files_change(tmp_path):
    """Once MANO's files changed on disk, forward_hands took the reloaded hand model while interaction.sample kept
    the first job's (its templates sampler and learned pipeline were cached on it) until the server restarted."""
    from tests.support.synthetic_mano import synthetic_mano, write_mano_pickle

    mano = tmp_path / "mano"

    def write(scale: float) -> None:
        for side, data in synthetic_mano().items():  # (a new file each: a new inode, whatever the clock says)
            write_mano_pickle({**data, "v_template": data["v_template"] * scale}, tmp_path / "new.pkl")
            os.replace(tmp_path / "new.pkl", mano / f"MANO_{side.upper()}.pkl")

    def sample(client) -> list[np.ndarray]:
        common = {"model": "mano", "count": 2, "seed": 1, "separation": False, "touch": False}
        templates = client.run("interaction.sample", {**common, "engine": "templates"}, timeout=120)
        learned = client.run("interaction.sample", {**common, "engine": "learned", "steps": 4, "redraws": 0,
                                                    "penetration_guidance": 0}, timeout=120)
        return [result.arrays[f"{side}.transl"] for result in (templates, learned) for side in ("left", "right")]

    mano.mkdir()
    write(1.0)
    with torch_threads(1):
        folder = save_model(tiny_denoiser(load_hand_model("open"), steps=50), tmp_path / "tiny")
    env = {"HANDFORGE_INTERACTION_CHECKPOINT": str(folder), "HANDFORGE_MANO_DIR": str(mano),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as server, server.client(lost_after=60) as client:
        before = sample(client)
        write(1.5)
        after = sample(client)
    with running_server("--devices", "cpu", env=env) as fresh, fresh.client(lost_after=60) as client:
        expected = sample(client)
    assert not all(np.allclose(b, e) for b, e in zip(before, expected))  # (the change shows in both engines)
    for got, want in zip(after, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_each_candidates_template_name_is_the_template_its_hands_show():
    """The templates engine returns its candidates best first, with extra['templates'][i] the template candidate i
    was drawn from. Told apart by the hands themselves: a clap's palms face each other (the two palm normals,
    palm centroid minus back centroid of the posed meshes, point against each other), palm_on_back's right palm
    lies on the left hand's back, both palms facing down (the normals point alike). Seed 2 draws both templates
    and its scores put them in another order than they were drawn."""
    import torch

    from handforge.corpus.regions import compute_regions
    from handforge.engines.interaction.pipeline import SampleSettings
    from handforge.engines.interaction.templates import TemplateSampler

    model = load_hand_model("open")
    found = TemplateSampler(model)(SampleSettings(count=6, seed=2), templates=["clap", "palm_on_back"])
    names = found.extra["templates"]
    assert set(names) == {"clap", "palm_on_back"}, names
    regions = compute_regions(model.rig("right"))  # (the same vertex ids on the left hand: mirrored in order)
    normals = {}
    for side in ("left", "right"):
        with torch.no_grad():
            v = model(side, **{f: torch.as_tensor(found.hands[side][f]) for f in FIELDS}).vertices.numpy()
        n = v[:, regions["palm"]].mean(1) - v[:, regions["back"]].mean(1)
        normals[side] = n / np.linalg.norm(n, axis=1, keepdims=True)
    facing = (normals["left"] * normals["right"]).sum(1)  # measured: about -0.75 for a clap, +0.8 for palm_on_back
    shown = ["clap" if f < -0.3 else "palm_on_back" if f > 0.3 else f"unclear ({f:.2f})" for f in facing]
    assert shown == names, (names, np.round(facing, 2).tolist())
