"""The jobs' and the export specification's input checks at their exact bounds: each limit taken at its value and
refused one past it, each required pairing refused without its partner. Mutation testing found these unpinned (each
test names the mutation it catches: a bound moved by one, a check dropped, a value taken from another field). A
request is checked in process, as the server checks it before queueing (the schema, then the kind's check).
image.transfer's bounds: tests/test_transfer_job_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.export.spec import SpecError, parse_spec
from handforge_shared.protocol import ProtocolError

from tests.support.job_requests import refusal, refused, registry


# ------------------------------------------------------------------------------------- export specification
GL_ONLY = {"render": {"engine": "none"}, "outputs": ["mesh"]}  # (no Blender: images of 1 pixel are made)


@pytest.mark.parametrize("spec, field", [
    ({**GL_ONLY, "width": 0}, "width"), ({**GL_ONLY, "height": 0}, "height"), ({"samples": 0}, "samples"),
    ({"samples": 1, "render": {"engine": "cycles", "samples": 0}}, "render.samples"),
    ({"generate": {"steps": 0}}, "generate.steps"),
])
def test_whole_number_settings_of_the_spec_start_at_one(spec, field):
    # (mutation testing: _positive_int taking 0, a dataset of 0 samples or an image 0 pixels wide, went unnoticed)
    with pytest.raises(SpecError, match=rf"^{field}: expected a whole number from 1 to "):
        parse_spec(spec)
    section, _, key = field.rpartition(".")
    one = {**spec, section: {**spec[section], key: 1}} if section else {**spec, key: 1}
    parse_spec(one)


@pytest.mark.parametrize("where", ["seed", "generate.seed"])
def test_a_spec_seed_takes_up_to_2_63_minus_1(where):
    # JSON holds any integer; torch's generators and TOML hold 64-bit signed ones (mutation testing: 2**63 taken
    # went unnoticed)
    def spec(seed):
        return {"generate": {"seed": seed}} if where == "generate.seed" else {"seed": seed}

    parse_spec(spec(2**63 - 1))
    with pytest.raises(SpecError, match=rf"^{where}: expected a whole number from 0 to 2\*\*63 - 1"):
        parse_spec(spec(2**63))


def test_pose_source_files_without_files_is_refused():
    # (mutation testing: the check dropped went unnoticed; an export of no clips had no pose to draw)
    for files in ({}, {"files": []}):
        with pytest.raises(SpecError, match=r"^poses.files: give at least one motion clip \(\.npz\) for source = 'files'"):
            parse_spec({"poses": {"source": "files", **files}})


@pytest.mark.parametrize("tone", ["fff", "#a07e5", "a07e56aa", "g07e56"])
def test_a_skin_tone_is_six_hex_digits(tone):
    # a CSS short colour ('fff') or one with alpha is no sRGB hex colour the renderer reads (mutation testing:
    # "len(tone) > 6" went unnoticed)
    with pytest.raises(SpecError, match=r"^hands.skin_tones: .* is not an sRGB hex colour like 'a07e56'"):
        parse_spec({"hands": {"skin_tones": [tone]}})
    assert parse_spec({"hands": {"skin_tones": ["#A07E56"]}}).hands.skin_tones == ("a07e56",)


def test_blender_renders_take_4_by_4_pixels_and_refuse_3():
    # (mutation testing: "min(width, height) <= 4", Blender's smallest image refused, went unnoticed)
    parse_spec({"width": 4, "height": 4})
    for width, height in ((3, 4), (4, 3)):
        with pytest.raises(SpecError, match=rf"^width, height: {width}×{height}; Blender renders images of at least 4×4"):
            parse_spec({"width": width, "height": height})
    parse_spec({**GL_ONLY, "width": 3, "height": 3})  # no Blender image: any size


@pytest.mark.parametrize("side", ["width", "height"])
def test_an_image_side_takes_up_to_8192_pixels(side):
    # (mutation testing: the limit raised to 16384 went unnoticed)
    assert getattr(parse_spec({**GL_ONLY, side: 8192}), side) == 8192
    with pytest.raises(SpecError, match=rf"^{side}: expected a whole number from 1 to 8192, got 8193"):
        parse_spec({**GL_ONLY, side: 8193})


@pytest.mark.parametrize("name", ["steps", "guidance_scale", "control_scale"])
def test_the_specs_generate_settings_take_what_image_generate_takes(name):
    # the export's generated RGB runs image.generate's pipeline: its bounds are the job's (mutation testing:
    # guidance_scale from 0 went unnoticed; below 1 classifier-free guidance is off, which the job refuses)
    param = registry().kind("image.generate").schema.params[name]
    cast = int if name == "steps" else float
    for value in (param.min, param.max):
        assert getattr(parse_spec({"generate": {name: cast(value)}}).generate, name) == value
    below = cast(param.min) - (1 if name == "steps" else 0.5)
    with pytest.raises(SpecError, match=rf"^generate.{name}: expected a"):
        parse_spec({"generate": {name: below}})


@pytest.mark.parametrize("prompts", [[], [""], ["  "], ["two hands", "\t"]])
def test_a_blank_generate_prompt_is_refused(prompts):
    # (mutation testing: a prompt of spaces taken, an image from no words, went unnoticed)
    with pytest.raises(SpecError, match=r"^generate.prompts: give at least one non-empty prompt"):
        parse_spec({"generate": {"prompts": prompts}})


def test_shape_sigma_takes_0_to_3():
    # betas are clipped to ±3: a wider sigma only piles them at the clip (mutation testing: 10 taken went unnoticed)
    assert parse_spec({"hands": {"shape_sigma": 3}}).hands.shape_sigma == 3.0
    assert parse_spec({"hands": {"shape_sigma": 0}}).hands.shape_sigma == 0.0
    for sigma in (3.5, -0.1):
        with pytest.raises(SpecError, match=r"^hands.shape_sigma: expected a number from 0.0 to 3.0"):
            parse_spec({"hands": {"shape_sigma": sigma}})


def test_a_background_image_may_cover_16_frames_and_no_more(tmp_path):
    # at 64×64 a 1×16 image is scaled to 64×1024, 16 frames: taken; 1×17, 17 frames: refused (mutation testing:
    # "cover >= 16 frames", an image at the limit refused, went unnoticed)
    from PIL import Image

    for rows, ok in ((16, True), (17, False)):
        folder = tmp_path / str(rows)
        folder.mkdir()
        Image.new("RGB", (1, rows), (90, 90, 90)).save(folder / "tall.png")
        spec = {"width": 64, "height": 64, "background": {"kinds": ["images"], "folder": str(folder)}}
        if ok:
            assert parse_spec(spec).background.folder == str(folder)
        else:
            with pytest.raises(SpecError, match=r"^background.folder: .*tall.png' is 1×17 pixels, far from the 64×64"):
                parse_spec(spec)


def test_a_spec_takes_up_to_ten_million_samples():
    # (mutation testing: the limit raised tenfold went unnoticed)
    assert parse_spec({"samples": 10_000_000}).samples == 10_000_000
    with pytest.raises(SpecError, match=r"^samples: expected a whole number from 1 to 10000000, got 10000001"):
        parse_spec({"samples": 10_000_001})


# ------------------------------------------------------------------------------------- motion
@pytest.mark.parametrize("kind", ["motion.generate", "motion.inbetween", "motion.trajectory"])
def test_a_motion_takes_1_to_8_samples_at_1_to_1000_fps(kind):
    # (mutation testing: MAX_SAMPLES 9 and an fps of 0.001 taken went unnoticed; fps below 1 has no frame a second)
    schema = registry().kind(kind).schema
    assert schema.validate({"num_samples": 8, "fps": 1.0}, {})["num_samples"] == 8
    assert schema.validate({"fps": 1000.0}, {})["fps"] == 1000.0
    for params, field, says in (({"num_samples": 9}, "params.num_samples", "between 1 and 8, got 9"),
                                ({"num_samples": 0}, "params.num_samples", "between 1 and 8, got 0"),
                                ({"fps": 0.5}, "params.fps", "between 1.0 and 1000.0, got 0.5"),
                                ({"fps": 1000.5}, "params.fps", "between 1.0 and 1000.0, got 1000.5")):
        with pytest.raises(ProtocolError) as info:
            schema.validate(params, {})
        assert info.value.field == field and says in str(info.value), str(info.value)


@pytest.mark.parametrize("arrays", [{}, {"left.betas": np.zeros(10, np.float32)}])
def test_an_inbetween_without_keys_says_to_send_them(arrays):
    # a request of no keys at all (no <side>.mask): said, with what to send (mutation testing: the check dropped went
    # unnoticed; the all-zeros check after it then indexed a hand that was not there, an internal error)
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field="arrays.right.mask")
    assert "no keys given" in str(error) and "send <side>.mask" in error.hint


@pytest.mark.parametrize("arrays", [{}, {"right.betas": np.zeros(10, np.float32)}])
def test_a_trajectory_without_a_wrist_path_says_to_send_one(arrays):
    # (mutation testing: the check dropped went unnoticed; the request then reached the frames count of no array)
    error = refused("motion.trajectory", {"engine": "spline"}, arrays, field="arrays.right.transl")
    assert "no wrist path given" in str(error) and "send <side>.transl (T, 3)" in error.hint


def test_a_motion_of_one_frame_is_refused_and_two_are_taken():
    # a motion needs two frames (mutation testing: the frames dimension from 1 went unnoticed)
    from handforge_shared.poses import MOTION_MAX_FRAMES
    from tests.support.motion_keys import keyed_ends

    for frames in (2, MOTION_MAX_FRAMES):
        assert refusal("motion.inbetween", {"engine": "spline"}, keyed_ends(frames)) is None
        assert refusal("motion.trajectory", {"engine": "spline"},
                       {"right.transl": np.zeros((frames, 3), np.float32)}) is None
    one = {k: v if k.endswith(".betas") else v[:1] for k, v in keyed_ends(2).items()}
    error = refused("motion.inbetween", {"engine": "spline"}, one, field="arrays.left.global_orient")
    assert f"dimension frames (axis 0) must be between 2 and {MOTION_MAX_FRAMES}, got 1" in str(error)
    refused("motion.trajectory", {"engine": "spline"}, {"right.transl": np.zeros((1, 3), np.float32)},
            field="arrays.right.transl")
    with pytest.raises(ProtocolError, match=r"^params.num_frames: must be between 2 and "):
        registry().kind("motion.generate").schema.validate({"num_frames": 1}, {})


def test_first_frame_takes_blenders_frame_range():
    # Blender's frames run from -1,048,574 to 1,048,574 (MAXFRAME): a note naming a frame past them names none the
    # scene has (mutation testing: 2**31 - 1 taken went unnoticed)
    schema = registry().kind("motion.inbetween").schema
    for frame in (-1_048_574, 1_048_574):
        assert schema.validate({"first_frame": frame}, {})["first_frame"] == frame
    for frame in (-1_048_575, 1_048_575):
        with pytest.raises(ProtocolError, match=rf"^params.first_frame: must be between -1048574 and 1048574, got {frame}"):
            schema.validate({"first_frame": frame}, {})


def test_a_key_mask_is_uint8_0_or_1():
    # a float mask's 0.5 would have been a key unsaid (mutation testing: float32 masks taken went unnoticed)
    from tests.support.motion_keys import keyed_ends

    arrays = keyed_ends(4)
    arrays["left.mask"] = arrays["left.mask"].astype(np.float32)
    error = refused("motion.inbetween", {"engine": "spline"}, arrays, field="arrays.left.mask")
    assert "has dtype float32; send uint8" in str(error) and "dtype=numpy.uint8" in error.hint


# ------------------------------------------------------------------------------------- interaction
def test_templates_asked_of_the_learned_engine_are_refused():
    # the learned engine draws no template: a list of them was read by nothing (mutation testing: the check dropped
    # went unnoticed)
    from handforge.corpus.templates import template_names

    name = template_names()[0]
    error = refused("interaction.sample", {"engine": "learned", "templates": [name]}, field="params.templates")
    assert "templates only apply to engine 'templates'" in str(error)
    assert error.hint == "set engine to 'templates' or leave templates empty"
    assert refusal("interaction.sample", {"engine": "templates", "templates": [name]}) is None


@pytest.mark.parametrize("params", [{"separation": False}, {"separation": False, "redraws": 2},
                                    {"separation": False, "redraws": 0}])
def test_separation_off_takes_redraws_at_their_default_or_off(params):
    # the defaults sent as they are still run, as the add-on sends them (mutation testing: refusing the default 2
    # without separation went unnoticed)
    assert refusal("interaction.sample", params) is None
    error = refused("interaction.sample", {"separation": False, "redraws": 3}, field="params.redraws")
    assert "redraws only apply with separation" in str(error)


def test_interaction_takes_1_to_256_candidates():
    # (mutation testing: MAX_COUNT 257 went unnoticed)
    assert refusal("interaction.sample", {"engine": "templates", "count": 256}) is None
    assert "between 1 and 256, got 257" in str(refused("interaction.sample", {"count": 257}, field="params.count"))


def test_as_many_steps_as_the_checkpoint_was_trained_with_are_taken_one_more_refused(tmp_path, monkeypatch):
    # (mutation testing: "steps >= num_train_timesteps" at submit, the checkpoint's own count refused, went unnoticed)
    from handforge.engines.checkpoints import save_model
    from handforge.engines.interaction.model import InteractionDenoiser

    folder = save_model(InteractionDenoiser(width=8, hidden=16, layers=1, heads=2, num_train_timesteps=100),
                        tmp_path / "hundred")
    monkeypatch.setenv("HANDFORGE_INTERACTION_CHECKPOINT", str(folder))
    assert refusal("interaction.sample", {"steps": 100}) is None
    error = refused("interaction.sample", {"steps": 101}, field="params.steps")
    assert "101 exceeds the 100 diffusion steps" in str(error) and error.hint == "ask for at most 100 steps"


def test_interaction_steps_start_at_2():
    # (mutation testing: steps from 1 went unnoticed)
    assert refusal("interaction.sample", {"steps": 2}) is None
    assert "between 2 and 200, got 1" in str(refused("interaction.sample", {"steps": 1}, field="params.steps"))


@pytest.mark.parametrize("name, value", [("guidance_steps", 4), ("contact_guidance", 0.5), ("cfg_scale", 1.0)])
def test_each_learned_setting_sent_to_the_templates_engine_is_refused(name, value):
    # the templates engine reads none of them (mutation testing: guidance_steps left out of LEARNED_ONLY, taken
    # and ignored unsaid, went unnoticed)
    error = refused("interaction.sample", {"engine": "templates", name: value}, field=f"params.{name}")
    assert f"{name} only applies to engine 'learned'" in str(error)


def test_interaction_takes_up_to_8_redraws():
    # (mutation testing: 9 taken went unnoticed)
    assert refusal("interaction.sample", {"redraws": 8}) is None
    assert "between 0 and 8, got 9" in str(refused("interaction.sample", {"redraws": 9}, field="params.redraws"))
