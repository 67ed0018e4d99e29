"""The export specification's checks (handforge/export/spec.py) at their exact bounds, found unpinned by a mutation
pass over spec.py: each value taken at its bound and refused one past it, the refusal naming the key; each check
that a mutant weakened unnoticed. (More of the spec's bounds:
tests/test_job_input_bounds.py.)"""

from __future__ import annotations

import pytest

from handforge.export.spec import SpecError, load_spec, parse_spec


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_camera_range_of_an_integer_beyond_any_float_is_refused_naming_the_key(tmp_path, suffix):
    # an integer of 400 digits (zeros typed on) is read whole by JSON and TOML: float() of it raised an
    # OverflowError traceback out of `handforge export` in place of the range's refusal
    big = "1" + "0" * 400
    path = tmp_path / f"spec{suffix}"
    path.write_text(f'{{"camera": {{"distance": [0.4, {big}]}}}}' if suffix == ".json"
                    else f"[camera]\ndistance = [0.4, {big}]\n")
    with pytest.raises(SpecError, match=r"^camera.distance: .*must satisfy 0.05 <= min <= max <= 100.0"):
        load_spec(path)
    for where, key in (("camera.focal", "focal"), ("camera.roll", "roll")):
        with pytest.raises(SpecError, match=rf"^{where}: .*must satisfy"):
            parse_spec({"camera": {key: [-int(big), 1]}})


# ------------------------------------------------------------------------------------- whole numbers and numbers
@pytest.mark.parametrize("section, key, high", [("render", "samples", 4096), ("generate", "steps", 200)])
def test_cycles_samples_and_generate_steps_take_their_maximum_and_refuse_one_more(section, key, high):
    # (mutation testing: render.samples 4097 and generate.steps 201 taken went unnoticed)
    spec = {"samples": 1, "render": {"engine": "cycles"}} if section == "render" else {}
    taken = parse_spec({**spec, section: {**spec.get(section, {}), key: high}})
    assert getattr(getattr(taken, section), key) == high
    refusal = rf"^{section}.{key}: expected a whole number from 1 to {high}, got {high + 1}$"
    with pytest.raises(SpecError, match=refusal):
        parse_spec({**spec, section: {**spec.get(section, {}), key: high + 1}})


# ------------------------------------------------------------------------------------- camera ranges
CAMERA_BOUNDS = {"distance": (0.05, 100.0), "elevation": (-90.0, 90.0), "azimuth": (-360.0, 360.0),
                 "focal": (4.0, 500.0), "roll": (-180.0, 180.0)}


@pytest.mark.parametrize("key", sorted(CAMERA_BOUNDS))
def test_a_camera_range_takes_its_bounds_and_refuses_past_them(key):
    # (mutation testing: each bound moved, distance from 0, elevation from -91, azimuth to 361, focal from 1 mm,
    # roll to 181, went unnoticed)
    low, high = CAMERA_BOUNDS[key]
    assert getattr(parse_spec({"camera": {key: [low, high]}}).camera, key) == (low, high)
    for lo, hi in ((low - 0.01, high), (low, high + 0.01)):
        with pytest.raises(SpecError, match=rf"^camera.{key}: \[{lo}, {hi}\] must satisfy {low} <= min <= max <= "
                                            rf"{high}$"):
            parse_spec({"camera": {key: [lo, hi]}})


def test_keep_below_px_takes_0_to_10000_pixels():
    # (mutation testing: 100,000 taken went unnoticed)
    for value in (0, 10_000):
        assert parse_spec({"generate": {"keep_below_px": value}}).generate.keep_below_px == float(value)
    for value in (10_000.5, -0.5):
        with pytest.raises(SpecError, match=rf"^generate.keep_below_px: expected a number from 0.0 to 10000.0, "
                                            rf"got {value}$"):
            parse_spec({"generate": {"keep_below_px": value}})


@pytest.mark.parametrize("key, low, high", [("guidance_scale", 1.0, 30.0), ("control_scale", 0.0, 3.0)])
def test_generate_scales_take_their_range_and_refuse_past_its_top(key, low, high):
    # (mutation testing: control_scale up to 5 taken went unnoticed; the range's bottom is
    # tests/test_job_input_bounds.py's)
    for value in (low, high):
        assert getattr(parse_spec({"generate": {key: value}}).generate, key) == value
    with pytest.raises(SpecError, match=rf"^generate.{key}: expected a number from {low} to {high}, got {high + 0.5}$"):
        parse_spec({"generate": {key: high + 0.5}})


# ------------------------------------------------------------------------------------- checks
def test_render_samples_without_a_top_level_samples_is_refused_under_every_engine_but_cycles():
    # (mutation testing: the refusal kept to Workbench only, engine 'none' taking render.samples = 500 as Cycles'
    # samples and making the default 100 samples, went unnoticed)
    for engine in ("workbench", "none", "generate"):
        with pytest.raises(SpecError, match=rf"^render.samples = 500 is Cycles' samples per pixel \(unused with engine "
                                            rf"'{engine}'\), not the dataset's size"):
            parse_spec({"render": {"engine": engine, "samples": 500}})
    spec = parse_spec({"render": {"engine": "cycles", "samples": 500}})
    assert (spec.samples, spec.render.samples) == (100, 500)


@pytest.mark.parametrize("suffix", [".TOML", ".Toml"])
def test_a_spec_named_toml_in_capitals_is_read_as_toml(tmp_path, suffix):
    # (mutation testing: the suffix compared as written, spec.TOML read as JSON and refused as not valid JSON, went
    # unnoticed)
    path = tmp_path / f"spec{suffix}"
    path.write_text('samples = 7\n[camera]\npreset = "egocentric"\n')
    spec = load_spec(path)
    assert (spec.samples, spec.camera.preset, spec.camera.distance) == (7, "egocentric", (0.3, 0.5))


# ------------------------------------------------------------------------------------- generate's lists, skin tones
@pytest.mark.parametrize("given, refusal", [
    (["depth", "depth"], r"^generate.controls: depth given more than once; give each once$"),
    ("", r"^generate.controls: \[''\] holds an empty name: name ControlNet folders, or leave controls out"),
])
def test_generate_controls_refuse_a_repeat_and_an_empty_name(given, refusal):
    # a ControlNet named twice was refused only as the generator started, and controls = "" as 'leave them out for
    # attentionhand' though no attentionhand was asked for
    with pytest.raises(SpecError, match=refusal):
        parse_spec({"render": {"engine": "generate"}, "generate": {"controls": given}})
    assert parse_spec({"render": {"engine": "generate"}, "generate": {"controls": ["depth"]}}).generate.controls == (
        "depth",)


def test_a_prompt_given_twice_is_taken_as_a_weight():
    # (a dataset recorded with one did so before, and must resume; two of three draws then take it)
    spec = parse_spec({"render": {"engine": "generate"}, "generate": {"prompts": ["two hands", "two hands", "fist"]}})
    assert spec.generate.prompts == ("two hands", "two hands", "fist")


def test_a_skin_tone_takes_one_hash_not_two():
    # lstrip('#') took '##a07e56' as a07e56
    assert parse_spec({"hands": {"skin_tones": ["#A07E56"]}}).hands.skin_tones == ("a07e56",)
    with pytest.raises(SpecError, match=r"^hands.skin_tones: '#a07e56' is not an sRGB hex colour like 'a07e56'$"):
        parse_spec({"hands": {"skin_tones": ["##a07e56"]}})
