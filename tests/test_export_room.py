"""An export that cannot fit is refused before its first sample (memory, disk), and a large image size's
GL buffers do not outlive the export that needed them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handforge.export.room import ExportTooLarge, check_room


def test_a_sample_larger_than_the_memory_or_samples_larger_than_the_disk_are_refused(tmp_path):
    check_room(tmp_path, 64, 64, ("mesh", "depth", "normals"), 10)  # fits
    with pytest.raises(ExportTooLarge, match=r"a sample of 200000×200000 needs about 2800\.0 GB of memory"):
        check_room(tmp_path, 200_000, 200_000, ("mesh",), 1)
    check_room(tmp_path, 200_000, 200_000, ("mesh",), 1, at_once=0)  # made by Ray workers elsewhere
    with pytest.raises(ExportTooLarge, match=r"3 samples of 100000×100000 made at once need about 2100\.0 GB .* "
                                             "lower the resolution or --workers"):
        check_room(tmp_path, 100_000, 100_000, ("mesh",), 1, at_once=3)
    # the disk: depth and normals, 16 bytes a pixel whatever the image shows
    with pytest.raises(ExportTooLarge, match=r"10000000 samples of 4096×4096 need at least 2684354\.6 GB \(their "
                                             r"depth and normals arrays alone\), and .* GB free"):
        check_room(tmp_path / "new" / "folder", 4096, 4096, ("mesh", "depth", "normals"), 10_000_000)
    check_room(tmp_path, 4096, 4096, ("mesh", "masks"), 10_000_000)  # PNGs only: not counted
    # a small disk's refusal in MB: it said it needed "0.0 GB" and had "0.0 GB free"
    from handforge.export import room

    usage = room.shutil.disk_usage(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(room.shutil, "disk_usage", lambda path: usage._replace(free=2_000_000))
        with pytest.raises(ExportTooLarge, match=r"300 samples of 64×64 need at least 19\.7 MB \(their depth and "
                                                 r"normals arrays alone\), and .* has 2\.0 MB free"):
            check_room(tmp_path, 64, 64, ("mesh", "depth", "normals"), 300)


def test_the_export_command_refuses_a_dataset_larger_than_the_disk_before_writing_a_sample(tmp_path, capsys):
    # before: 64 samples of 8192² (70 GB) went on writing into a disk with less free, found out GBs later
    from handforge.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 1, "samples": 10_000_000, "width": 4096, "height": 4096,
                                "render": {"engine": "none"}}))
    assert main(["export", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "need at least" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("samples/*/labels.json"))


def test_the_refusal_comes_before_the_samples_to_make_are_listed(tmp_path):
    """The room is checked on the count of the samples to make, before they are listed: 10 million refused took
    650 MB and seconds; a run limited by --samples lists that many only. The finished ones are skipped."""
    import tracemalloc

    from handforge.export.room import pending_that_fit
    from handforge.export.spec import parse_spec

    for index in (1, 3):
        (tmp_path / "samples" / f"{index:06d}").mkdir(parents=True)
        (tmp_path / "samples" / f"{index:06d}" / "labels.json").write_text("{}")
    spec = parse_spec({"seed": 1, "samples": 10_000_000, "width": 4096, "height": 4096, "render": {"engine": "none"}})
    tracemalloc.start()
    try:
        with pytest.raises(ExportTooLarge, match="9999998 samples of 4096×4096 need at least"):
            pending_that_fit(spec, tmp_path)
        assert pending_that_fit(spec, tmp_path, limit=4) == ([0, 2, 4, 5], 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, peak


def test_the_gl_buffers_of_a_large_image_are_freed_when_the_export_ends():
    # before: a 4096² render held 0.46 GB (Mesa frees released textures at the context's next use), 8192² 1.9 GB
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer

    def resident() -> int:
        with open("/proc/self/status") as fh:
            return int(fh.read().split("VmRSS:")[1].split()[0]) * 1024

    gl = renderer()
    triangle = (np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.0, 0.1, 1.0]]), np.array([[0, 1, 2]]))

    def camera(side: int) -> Camera:
        return Camera(K=np.array([[side, 0, side / 2], [0, side, side / 2], [0, 0, 1.0]]), R=np.eye(3),
                      t=np.zeros(3), width=side, height=side)

    gl.render(camera(64), [triangle], normals=True)
    before = resident()
    gl.render(camera(4096), [triangle], normals=True)
    assert resident() - before > 300e6  # (what the buffers take)
    gl.release_large()
    assert resident() - before < 100e6
    assert gl.render(camera(64), [triangle], normals=True).mesh.shape == (64, 64, 3)  # small sizes go on


def test_the_refusal_survives_pickling_whole():
    """Raised where an exception crosses a process by pickle (a worker process, a Ray actor), it arrives whole: it
    only is in a driver today, but unpickling it raised TypeError (its three arguments given its message alone)."""
    import pickle

    refusal = pickle.loads(pickle.dumps(ExportTooLarge("disk", "4 samples need 1.0 GB", "free space")))
    assert isinstance(refusal, ExportTooLarge) and str(refusal) == "4 samples need 1.0 GB: free space"
    assert (refusal.lacking, refusal.need, refusal.fixes) == ("disk", "4 samples need 1.0 GB", "free space")


def test_byte_amounts_are_said_in_the_unit_that_shows_them():
    from handforge.disk import byte_amount

    # a unit's boundary, rounded up: in the larger unit ("1000.0 MB" and "1000 kB" before)
    assert [byte_amount(n) for n in (999_960_000, 999_999, 999_499)] == ["1.0 GB", "1.0 MB", "999 kB"]

    assert [byte_amount(n) for n in (2.84e12, 19_660_800, 2_000_000, 328_000, 0)] == \
        ["2840.0 GB", "19.7 MB", "2.0 MB", "328 kB", "0 kB"]
