"""Writers that put a sample in place late or at the same time as another: a worker stopped as hung that writes on
(a Ray actor until ``ray.kill`` reaches it), two writers of the same sample, and the cleaning of half-written ones."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from handforge.export.folder import is_finished, sample_dir
from handforge.export.local_pool import LocalPool
from handforge.export.shards import export_sharded
from handforge.export.spec import parse_spec
from tests.support.scale import COMMAND, SPEC
from tests.support.unremovable import unremovable


@pytest.mark.slow  # (a worker process)
def test_a_sample_finished_late_while_the_files_are_written_is_in_them_and_not_failed(tmp_path, monkeypatch):
    """A sample the run gave up on that a worker stopped as hung puts in place while the aggregate files are written
    (here: sample 3, reported failed and taken away, put back during the first finalise) is in coco.json, and the
    summary's ``failed`` and ``finished`` say what the files describe: the files left it out, while the summary,
    checking the folder afterwards, called it neither failed nor finished, with no rerun hinted."""
    import handforge.export.run as run

    four, out, late = parse_spec({**SPEC, "samples": 4}), tmp_path / "data", tmp_path / "late"

    class GivesUpOnSample3(LocalPool):
        def wait(self, timeout):
            events = super().wait(timeout)
            for event in events:
                for result in event.payload[1] if event.kind == "done" else []:
                    if result["index"] == 3:  # as a sample whose every worker was stopped as hung
                        result["error"] = "RuntimeError: given up"
                        shutil.move(sample_dir(out, 3), late)
            return events

    finalise, calls = run.finalise, []

    def finalise_while_the_lost_worker_finishes(*args, **kwargs):
        calls.append(finalise(*args, **kwargs))
        if late.exists():
            late.rename(sample_dir(out, 3))
        return calls[-1]

    monkeypatch.setattr(run, "finalise", finalise_while_the_lost_worker_finishes)
    summary = export_sharded(four, out, lambda: GivesUpOnSample3(four.to_dict(), str(out), 1), 1,
                             command=COMMAND, progress=False, chunk_size=2)
    assert is_finished(out, 3)
    coco = json.loads((out / "coco.json").read_text())
    assert [image["id"] - 1 for image in coco["images"]] == [0, 1, 2, 3]
    assert summary["failed"] == {} and summary["finished"] == 4 and summary["written"] == 4
    assert calls == [3, 4]


def _sample_folder(folder: Path, index: int, files: tuple[str, ...] = ("mesh.png", "depth.npy")) -> Path:
    """A folder holding a finished sample's file names (the contents do not matter here)."""
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"image")
    (folder / "labels.json").write_text(json.dumps({"index": index}))
    return folder


def test_a_writer_putting_its_sample_in_place_while_it_is_cleaned_away_leaves_it_whole_or_absent(tmp_path,
                                                                                                 monkeypatch):
    """``clean_partial`` (the end of a run, or the next one's start) meets a folder whose writer, a worker stopped
    as hung that writes on, renames it into place just then (here: at the first file removed): the sample is then
    whole or absent. Removed file by file through an open folder, it lost its files after the rename: an empty
    sample folder its writer had reported written."""
    import os

    from handforge.export.folder import clean_partial
    from handforge.export.samples import _put_in_place

    out = tmp_path / "data"
    partial = _sample_folder(out / "samples" / ".partial-000003.0123456789ab", 3)
    final, unlink, put = sample_dir(out, 3), os.unlink, []

    def unlink_as_the_writer_renames(*args, **kwargs):
        if not put:
            put.append(True)
            try:
                _put_in_place(partial, final)
            except OSError as exc:  # its folder was taken first: the writer's sample fails
                put.append(exc)
        return unlink(*args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink_as_the_writer_renames)
    clean_partial(out)
    monkeypatch.undo()
    assert put
    assert not final.exists() or sorted(os.listdir(final)) == ["depth.npy", "labels.json", "mesh.png"]
    # absent, the writer was told so (its sample failed, a rerun makes it), not left to count it written
    assert final.exists() or isinstance(put[-1], OSError), put
    assert [p.name for p in (out / "samples").iterdir()] == ([final.name] if final.exists() else [])


def test_a_partial_folder_its_writer_put_in_place_is_not_counted_as_removed(tmp_path, monkeypatch):
    """The run's summary counts the half-written folders it removed: one whose writer renamed it into place just
    before the removal's own rename (a finished sample now) was counted as removed all the same."""
    import os

    from handforge.export.folder import clean_partial
    from handforge.export.samples import _put_in_place

    out = tmp_path / "data"
    partial = _sample_folder(out / "samples" / ".partial-000004.0123456789ab", 4)
    _sample_folder(out / "samples" / ".partial-000005.0123456789ab", 5)  # a leftover: removed
    rename = os.rename

    def rename_after_the_writer(src, dst, *args, **kwargs):
        if os.fspath(src) == os.fspath(partial):
            _put_in_place(partial, sample_dir(out, 4))
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename_after_the_writer)
    assert clean_partial(out) == 1
    monkeypatch.undo()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [sample_dir(out, 4).name]


class Killed(BaseException):
    """A writer killed where it stands (a Ray actor stopped as hung, reached by ``ray.kill``)."""


def test_a_writer_clearing_a_leftover_never_removes_the_sample_another_writer_put_there(tmp_path, monkeypatch):
    """Two writers of one sample both find a leftover without labels where it goes: writer A clears it and puts its
    sample there just after writer B found no labels in it (forced here: at B's check). B, killed before its own
    rename, must leave A's finished sample in place: it cleared by name what it had checked, A's sample then, and a
    sample the run had counted written was gone."""
    import os

    import handforge.export.samples as samples

    out = tmp_path / "data"
    final = sample_dir(out, 3)
    final.mkdir(parents=True)
    (final / "mesh.png").write_bytes(b"cut short")  # a leftover: no labels
    mine = _sample_folder(out / "samples" / ".partial-000003.bbbbbbbbbbbb", 3)
    theirs = _sample_folder(out / "samples" / ".partial-000003.aaaaaaaaaaaa", 3)
    stat, replace_held, theirs_put, renames = os.stat, samples.replace_held, [], []

    def stat_as_the_other_writer_puts_its_sample(path, *args, **kwargs):
        try:
            return stat(path, *args, **kwargs)
        except FileNotFoundError:
            if str(path).endswith("labels.json") and not theirs_put:  # B found no labels: A goes first now
                theirs_put.append(path)
                shutil.rmtree(final)
                replace_held(theirs, final)
            raise

    def killed_at_the_second_rename(source, target):
        renames.append(source)
        if len(renames) == 2:
            raise Killed
        replace_held(source, target)

    monkeypatch.setattr(os, "stat", stat_as_the_other_writer_puts_its_sample)
    monkeypatch.setattr(samples, "replace_held", killed_at_the_second_rename)
    with pytest.raises(Killed):
        samples._put_in_place(mine, final)
    monkeypatch.undo()
    assert theirs_put and sorted(os.listdir(final)) == ["depth.npy", "labels.json", "mesh.png"]


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_partial_folder_whose_removal_keeps_failing_keeps_one_name(tmp_path):
    """A half-written folder whose removal fails (a file that cannot be removed, as on NFS with a file held open
    elsewhere) is renamed before it is removed; every later run renamed it again with one more suffix, so its name
    grew without bound. It keeps the name of its first removal now, and goes once the file can be removed."""
    from handforge.export.folder import clean_partial

    out = tmp_path / "data"
    partial = _sample_folder(out / "samples" / ".partial-000003.0123456789ab", 3)
    (partial / "held").mkdir()
    (partial / "held" / "file").write_bytes(b"held")
    names = []
    with unremovable(partial / "held" / "file", out):
        for _ in range(3):
            clean_partial(out)
            names.append(sorted(p.name for p in (out / "samples").iterdir()))
    # renamed at the first removal (its writer can no longer put it in place), and kept so
    assert len(names[0]) == 1 and names[0] != [partial.name], names
    assert names[0] == names[1] == names[2], names
    clean_partial(out)
    assert list((out / "samples").iterdir()) == []
