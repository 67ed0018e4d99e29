"""The export specification's checks (handforge/export/spec.py) at their exact bounds, found unpinned by a mutation
pass over spec.py: each value taken at its bound and refused one past it, the refusal naming the key; each default
as documented; each check that a mutant dropped unnoticed. (More of the spec's bounds:
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
