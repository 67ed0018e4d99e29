"""The labelled export's aggregate files (COCO, InterHand2.6M-style, the card) are streamed from the
samples' labels: the bytes ``dumps`` gives of each whole file, written whole or not at all, in memory
that does not grow with the number of samples."""

from __future__ import annotations

import errno
import json
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from handforge.export import run
from handforge.export.card import CAMERA_RANGES
from handforge.export.coco import coco_annotations, coco_image, write_coco
from handforge.export.folder import LABELS, SAMPLES as SAMPLES_FOLDER, SPEC_RECORD, finished_indices, sample_dir
from handforge.export.interhand_format import interhand_camera, interhand_data, interhand_joints, interhand_mano, interhand_paths
from handforge.export.samples import sample_labels, sample_problem
from handforge.export.streamed_json import dumps, streamed_json
from handforge.export.spec import parse_spec
from tests.support.images import png_claiming

# a camera among and beside the hands: samples with no hand in view, hands with no box, indices past 9
SPEC = {"seed": 3, "samples": 14, "width": 96, "height": 64, "render": {"engine": "none"}, "outputs": ["mesh", "masks"],
        "camera": {"distance": [0.08, 0.2], "elevation": [-90, 90], "azimuth": [-360, 360], "focal": [50, 200],
                   "roll": [-180, 180]}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aggregates") / "data"
    run.export(parse_spec(SPEC), out, command="test", progress=False)
    return out


def read_all(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("samples/*/labels.json"))]


def test_streamed_files_are_the_bytes_of_dumps_of_the_whole_files(exported):
    samples = read_all(exported)
    assert len(samples) == 14 and {"none", "right", "interacting"} <= {s["hand_type"] for s in samples}
    assert any(h["bbox"] is None for s in samples if s["hand_type"] != "none" for h in s["hands"].values())
    coco = json.loads((exported / "coco.json").read_text())
    whole = {"info": coco["info"], "categories": coco["categories"],
             "images": [coco_image(s) for s in samples],
             "annotations": [a for s in samples for a in coco_annotations(exported, s)]}
    assert (exported / "coco.json").read_text() == dumps(whole)
    data = [entry for entry in map(interhand_data, samples) if entry is not None]
    cameras = [interhand_camera(s) for s in samples]
    whole_interhand = {  # keyed by the index as text: dumps sorts "10" before "2"
        "params": {"0": {str(s["index"]): interhand_mano(s, None) for s in samples}},
        "camera": {"0": {table: {str(s["index"]): c[table] for s, c in zip(samples, cameras)} for table in cameras[0]}},
        "joint_3d": {"0": {str(s["index"]): interhand_joints(s) for s in samples}},
        "data": {"images": [image for image, _ in data], "annotations": [annotation for _, annotation in data]}}
    paths = interhand_paths(exported, "open")
    for kind, expected in whole_interhand.items():
        assert paths[kind].read_text() == dumps(expected), kind


def test_pycocotools_reads_the_streamed_coco_file(exported):
    from pycocotools.coco import COCO

    samples = read_all(exported)
    coco = COCO(str(exported / "coco.json"))
    assert sorted(coco.getImgIds()) == [s["index"] + 1 for s in samples]
    boxes = [h["bbox"] for s in samples for _, h in sorted(s["hands"].items()) if h["bbox"] is not None]
    assert [a["bbox"] for a in coco.loadAnns(sorted(coco.getAnnIds()))] == boxes


def test_the_card_counts_the_samples_it_reads_one_at_a_time(exported):
    samples = read_all(exported)
    card = json.loads((exported / "dataset_card.json").read_text())
    visible = [v for s in samples for h in s["hands"].values() for v in h["visible"]]
    params = [s["camera_params"] for s in samples]
    assert card["samples"] == len(samples) and card["hand_types"] == Counter(s["hand_type"] for s in samples)
    assert card["visible_keypoint_fraction"] == round(float(np.mean(visible)), 4)
    assert card["ranges"] == {k: [round(min(p[k] for p in params), 4), round(max(p[k] for p in params), 4)]
                              for k in CAMERA_RANGES}
    assert card["lighting"] == sorted({s["lighting"]["preset"] for s in samples})
    assert card["backgrounds"] == sorted({s["background"]["kind"] for s in samples})
    assert card["skin_tones"] == sorted({s["skin_tone"] for s in samples})


def test_a_write_that_fails_half_way_leaves_the_last_whole_file(exported, tmp_path, monkeypatch):
    out = tmp_path / "data"
    shutil.copytree(exported, out)
    before = (out / "coco.json").read_bytes()
    annotations = coco_annotations

    def disk_full_at_sample_11(out, sample):
        if sample["index"] == 11:
            raise OSError(errno.ENOSPC, "No space left on device")
        return annotations(out, sample)

    monkeypatch.setattr("handforge.export.coco.coco_annotations", disk_full_at_sample_11)
    with pytest.raises(OSError, match="No space left"):
        write_coco(out, finished_indices(out, SPEC["samples"]))
    assert (out / "coco.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in exported.iterdir())  # no temporary file


def copies_of_a_sample(source: Path, out: Path, count: int) -> None:
    """``count`` samples in ``out``, each ``source``'s labels with its index rewritten, and its images."""
    labels = json.loads((source / LABELS).read_text())
    for index in range(count):
        folder = sample_dir(out, index)
        folder.mkdir(parents=True)
        for name in labels["files"].values():
            shutil.copyfile(source / name, folder / name)
        (folder / LABELS).write_text(dumps({**labels, "index": index}))


def finalise_peak(spec, out: Path) -> int:
    tracemalloc.start()
    try:
        run.finalise(spec, out, "test", "test")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_finalising_ten_times_the_samples_takes_no_more_memory(exported, tmp_path):
    """All the labels were read into one list first (about 50 KB of Python objects a sample here: a
    100,000-sample dataset took gigabytes at the end of its run)."""
    peaks = {}
    for count in (20, 200):
        spec = parse_spec({**SPEC, "samples": count})
        copies_of_a_sample(sample_dir(exported, 11), tmp_path / str(count), count)  # (both hands in view)
        # the lower of two: a first call imports, and Python's interned-string table (pathlib interns
        # each folder name) is reallocated now and then
        peaks[count] = min(finalise_peak(spec, tmp_path / str(count)) for _ in range(2))
    assert peaks[200] - peaks[20] < 180 * 2_000, peaks  # under 2 KB a further sample


def test_a_damaged_image_of_the_contact_sheet_is_named_with_the_fix(exported, tmp_path):
    """A truncated mesh image of a finished sample (read for the contact sheet at the end of a rerun): it
    read as a full disk, "could not write: Truncated File Read; make room", no file named."""
    out = tmp_path / "data"
    shutil.copytree(exported, out)
    image = out / "samples" / "000000" / "mesh.png"
    image.write_bytes(image.read_bytes()[:60])
    labels = list(sample_labels(out, [0]))
    with pytest.raises(ValueError, match=f"{image} is damaged .*delete its sample folder and run again"):
        run.contact_sheet(out, labels)


def test_a_damaged_mask_is_named_with_the_fix(exported, tmp_path):
    """A finished sample whose mask file was damaged after it was written (a machine that died after the
    rename) is named with the fix; it read as a full disk ("make room") and every rerun stopped there."""
    out = tmp_path / "data"
    shutil.copytree(exported, out)
    mask = next(out.glob("samples/*/mask_right.png"))
    mask.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{mask} is damaged .*delete its sample folder and run again"):
        write_coco(out, finished_indices(out, SPEC["samples"]))


def test_a_mask_claiming_too_many_pixels_is_named_as_damaged(exported, tmp_path):
    """A finished mask replaced by a PNG whose header claims 20000 x 20000: Pillow's DecompressionBombError is
    neither an OSError nor a ValueError, so a rerun of `handforge export` ended in its traceback."""
    out = tmp_path / "data"
    shutil.copytree(exported, out)
    mask = next(out.glob("samples/*/mask_right.png"))
    mask.write_bytes(png_claiming(20_000, 20_000))
    damaged = f"{mask} is damaged \\(DecompressionBombError: .*\\): delete its sample folder and run again"
    with pytest.raises(ValueError, match=damaged):
        write_coco(out, finished_indices(out, SPEC["samples"]))
    assert sample_problem(mask.parent, [mask.name]).startswith(f"{mask}: DecompressionBombError: Image size")
    with pytest.raises(ValueError, match=damaged):
        run.export(parse_spec(SPEC), out, command="test", progress=False)


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
@pytest.mark.parametrize("name", ["mesh.png", "depth.npy"])
def test_a_finished_sample_missing_a_file_is_named_when_the_dataset_is_finalised(tmp_path, damage, name):
    """A resume counted a sample with its labels as finished: one whose image or depth was deleted or cut short
    afterwards stayed in coco.json and the InterHand2.6M-style files, and the run said all was well."""
    spec = parse_spec({**SPEC, "samples": 3, "outputs": ["mesh", "masks", "depth"]})
    out = tmp_path / "data"
    run.export(spec, out, command="test", progress=False)
    write_coco(out, finished_indices(out, 3))  # whole: no complaint
    path = out / "samples" / "000001" / name
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-1])
    said = "is missing" if damage == "deleted" else r"is damaged \(cut short\)"
    with pytest.raises(ValueError, match=f"{path} {said}: delete its sample folder and run again"):
        run.export(spec, out, command="test", progress=False)
    shutil.rmtree(path.parent)  # as told: the sample is made again
    run.export(spec, out, command="test", progress=False)
    assert (out / "samples" / "000001" / name).is_file()


def test_every_damaged_sample_is_named_in_one_pass(tmp_path):
    """The first damaged sample stopped the pass: with k of them, k reruns found them one by one."""
    spec = parse_spec({**SPEC, "samples": 4, "outputs": ["mesh", "masks"]})
    out = tmp_path / "data"
    run.export(spec, out, command="test", progress=False)
    for index in (1, 3):
        (out / "samples" / f"{index:06d}" / "mesh.png").unlink()
    with pytest.raises(ValueError, match=r"2 finished samples have a file missing or cut short \(.*000001/mesh.png is "
                                         r"missing; .*000003/mesh.png is missing\): delete their sample folders"):
        write_coco(out, finished_indices(out, 4))


def test_finishing_reads_each_samples_labels_once_and_writes_the_same_bytes(exported, tmp_path, monkeypatch):
    """Each aggregate file read and checked every labels.json on its own (COCO, the InterHand2.6M-style files
    twice, the card, the contact sheet's first twelve): ~4 reads a sample, 40 s to finish a 5,000-sample rerun."""
    from handforge.export import samples

    out = tmp_path / "data"
    shutil.copytree(exported, out)
    aggregates = [p for p in sorted(out.rglob("*")) if p.is_file() and p.name != SPEC_RECORD
                  and SAMPLES_FOLDER not in p.relative_to(out).parts]
    assert len(aggregates) == 9  # COCO, the four InterHand2.6M-style files and skeleton.txt, the card, the sheet
    before = {p: p.read_bytes() for p in aggregates}
    for p in aggregates:
        p.unlink()
    reads, read = Counter(), samples.read_labels

    def counted(folder):
        reads[folder.name] += 1
        return read(folder)

    monkeypatch.setattr(samples, "read_labels", counted)
    run.finalise(parse_spec(SPEC), out, "test", run.renderer().renderer_name)
    assert reads == Counter({f"{i:06d}": 1 for i in range(SPEC["samples"])})
    assert {p: p.read_bytes() for p in aggregates} == before  # the files of the whole export's own finish


def test_a_keyed_object_takes_its_keys_in_any_order_and_writes_the_bytes_of_dumps(tmp_path):
    """The InterHand2.6M-style files' objects are filled in index order and keyed by the index as text."""
    from handforge.export.streamed_json import KeyedJsonObject

    items = {str(i): {"i": i, "text": "é" * (i % 3)} for i in (0, 1, 2, 10, 11, 100, 7, 23)}
    keyed = KeyedJsonObject()
    with streamed_json(tmp_path / "keyed.json", {"0": keyed, "z": [1]}):
        for key, value in items.items():
            keyed.put(key, value)
    assert (tmp_path / "keyed.json").read_text() == dumps({"0": items, "z": [1]})
    empty = KeyedJsonObject()
    with streamed_json(tmp_path / "empty.json", {"0": empty}):
        pass
    assert (tmp_path / "empty.json").read_text() == dumps({"0": {}})
    twice = KeyedJsonObject()
    with pytest.raises(ValueError, match="key '2' put twice"), streamed_json(tmp_path / "twice.json", {"0": twice}):
        for key in ("2", "10", "2"):
            twice.put(key, 0)
    assert not (tmp_path / "twice.json").exists()
