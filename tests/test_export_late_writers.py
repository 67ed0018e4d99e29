"""Writers that put a sample in place late or at the same time as another: a worker stopped as hung that writes on
(a Ray actor until ``ray.kill`` reaches it), two writers of the same sample, and the cleaning of half-written ones."""

from __future__ import annotations

import json
import shutil

import pytest

from handforge.export.folder import is_finished, sample_dir
from handforge.export.local_pool import LocalPool
from handforge.export.shards import export_sharded
from handforge.export.spec import parse_spec
from tests.support.scale import COMMAND, SPEC


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

