"""A motion clip file's metadata as readers check it: an "extra" that is not a JSON object, a "num_frames" that is
not a number, each said as what it is."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from handforge_shared.poses import MotionClip, PoseFormatError, side_by_side


def _clip_with_meta(path, key, value) -> None:
    """A 3-frame clip file at ``path`` whose meta sets ``key`` to ``value``, as no writer of ours would."""
    saved = MotionClip.from_frames([side_by_side()] * 3).save(path.with_name("saved.npz"))
    with zipfile.ZipFile(saved) as archive:
        arrays = {name.removesuffix(".npy"): np.load(archive.open(name)) for name in archive.namelist()}
    meta = json.loads(str(arrays["meta"]))
    meta[key] = value
    np.savez(path, **dict(arrays, meta=np.array(json.dumps(meta))))


@pytest.mark.parametrize("extra, kind", [([1], "list"), ("take 3", "str"), ([["a", 1]], "list")])
def test_extra_that_is_not_an_object_is_said_so(tmp_path, extra, kind):
    """A clip file whose meta "extra" was a list was refused as "extra metadata must be JSON-serialisable: cannot
    convert dictionary update sequence element #0 to a sequence" (it is JSON); [["a", 1]] was read as {"a": 1}."""
    _clip_with_meta(tmp_path / "b.npz", "extra", extra)
    with pytest.raises(PoseFormatError) as info:
        MotionClip.load(tmp_path / "b.npz")
    assert f"extra metadata must be a JSON object (names and values), got {kind}" in str(info.value)
    assert str(tmp_path / "b.npz") in str(info.value)


@pytest.mark.parametrize("given", ["3", True, [3]])
def test_num_frames_that_is_not_a_number(tmp_path, given):
    """"num_frames": "3" on a 3-frame clip said "metadata says 3 frames but the arrays hold 3"."""
    _clip_with_meta(tmp_path / "b.npz", "num_frames", given)
    with pytest.raises(PoseFormatError) as info:
        MotionClip.load(tmp_path / "b.npz")
    assert str(info.value) == f"{tmp_path / 'b.npz'}: metadata 'num_frames' must be a number of frames, got {given!r}"


def test_a_whole_number_still_loads(tmp_path):
    path = MotionClip.from_frames([side_by_side()] * 3).save(tmp_path / "a.npz")
    assert MotionClip.load(path).num_frames == 3
