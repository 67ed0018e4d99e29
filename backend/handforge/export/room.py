"""Whether an export fits: the memory one sample takes while it is made, and the disk its samples take.

Refused before the first sample, not when the machine runs out: an 8192² sample took the backend to
5.2 GB, and 64 of them (70 GB) went on writing into a disk with less free.

Memory: ``SAMPLE_BYTES_PER_PIXEL`` per pixel of the image size (measured: a 4096² sample of every
output with the GL renderer, the backend's resident memory went from 0.5 to 1.6 GB, 66 bytes a pixel),
against what the machine has available now. Disk: the float arrays alone (depth 4 bytes a pixel,
normals 12: ``np.save``'s size, whatever the image shows; the PNGs compress, and are not counted), so a
refusal is never wrong about needing more than is free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from handforge.disk import byte_amount
from handforge.export.folder import finished_now, pending_indices
from handforge_shared.files import existing_ancestor

SAMPLE_BYTES_PER_PIXEL = 70
ARRAY_BYTES_PER_PIXEL = {"depth": 4, "normals": 12}  # float32 (H, W) and (H, W, 3), as samples.write_sample saves


class ExportTooLarge(ValueError):
    """An export that cannot fit in this machine's memory or its output disk (``lacking``: "memory" or
    "disk"); ``need`` says what it needs against what there is, ``fixes`` what to lower, in
    ``handforge export``'s terms (a caller with other options, the demo, says its own)."""

    def __init__(self, lacking: str, need: str, fixes: str) -> None:
        super().__init__(f"{need}: {fixes}")
        self.lacking, self.need, self.fixes = lacking, need, fixes

    def __reduce__(self):  # (pickle gave __init__ the message alone, unpickling raised TypeError)
        return type(self), (self.lacking, self.need, self.fixes)


def check_room(out: str | os.PathLike, width: int, height: int, outputs: tuple[str, ...], pending: int,
               at_once: int = 1) -> None:
    """``ExportTooLarge`` when ``at_once`` ``width`` × ``height`` samples made together on this machine
    (one per worker; 0: made elsewhere, by Ray workers, not checked) need more memory than is available,
    or ``pending`` samples of ``outputs`` more disk than ``out``'s file system has free."""
    import psutil

    pixels = width * height
    need, available = SAMPLE_BYTES_PER_PIXEL * pixels * at_once, psutil.virtual_memory().available
    if need > available:
        made = f"{at_once} samples of {width}×{height} made at once need" if at_once > 1 else \
            f"a sample of {width}×{height} needs"
        raise ExportTooLarge("memory", f"{made} about {byte_amount(need)} of memory, and this machine has "
                                       f"{byte_amount(available)} available",
                             f"lower the resolution{' or --workers' if at_once > 1 else ''}, or free memory")
    per_sample = pixels * sum(ARRAY_BYTES_PER_PIXEL.get(o, 0) for o in outputs)
    if not pending or not per_sample:
        return
    disk = existing_ancestor(Path(out))
    free = shutil.disk_usage(disk).free
    if pending * per_sample > free:
        arrays = " and ".join(o for o in ARRAY_BYTES_PER_PIXEL if o in outputs)
        raise ExportTooLarge("disk", f"{pending} samples of {width}×{height} need at least "
                                     f"{byte_amount(pending * per_sample)} (their {arrays} arrays alone), and "
                                     f"{disk} has {byte_amount(free)} free",
                             "free space, lower the resolution, or export fewer samples (a rerun into the same "
                             "folder resumes)")


def pending_that_fit(spec, out: Path, limit: int | None = None, at_once: int = 1) -> tuple[list[int], int]:
    """The samples of ``spec`` an export into ``out`` still has to make (the first ``limit`` of them) and how
    many are finished, once ``check_room`` found they fit (``at_once``: as there). Checked before the list is made:
    ten million samples refused for the disk took 650 MB and seconds to list first."""
    finished = finished_now(out, spec.samples)
    count = spec.samples - len(finished) if limit is None else min(limit, spec.samples - len(finished))
    check_room(out, spec.width, spec.height, spec.outputs, count, min(at_once, count))
    return pending_indices(out, spec.samples, count, finished), len(finished)


__all__ = ["ARRAY_BYTES_PER_PIXEL", "ExportTooLarge", "SAMPLE_BYTES_PER_PIXEL", "check_room",
           "pending_that_fit"]
