"""One sample of a dataset: written whole or not at all (a ``.partial-`` folder renamed into place), and
its labels read back and checked (``read_labels``: the one reader of every labels.json).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from handforge.disk import png_cut_short, stops_the_run, write_error
from handforge.export.folder import LABELS, PARTIAL_PREFIX, sample_dir
from handforge.export.streamed_json import dumps
from handforge_shared.files import parse_json, replace_held, sync_folder
from handforge_shared.poses import json_flag
from handforge_shared.skeleton import NUM_KEYPOINTS, SIDES


def failure(exc: BaseException) -> str:
    """``SampleWriter``'s one line for a sample's error: its type, first line and where it was raised."""
    import traceback

    last = traceback.extract_tb(exc.__traceback__)[-1]
    first = (str(exc).strip().splitlines() or [""])[0]  # one line: Blender's reasons come with its log's tail
    return f"{type(exc).__name__}: {first} ({Path(last.filename).name}:{last.lineno})"


class SampleWriter:
    """Makes and writes samples, the writing overlapped: ``make()`` runs in the caller's thread and the
    sample's files are encoded, synced and renamed into place (``write_sample``, each sample whole or
    not at all as ever) by one background thread while the caller makes the next one (Blender renders
    with one core; PNG encoding and the fsyncs take the other). At most ``depth`` made samples wait,
    so memory stays bounded. One bad sample (a scene Blender fails on) is said in ``errors`` (index →
    ``failure``'s line, whether making or writing it; complete after ``flush()`` or the ``with`` block)
    and the others go on; a rerun retries it. An error that would fail every later sample too
    (``stops_the_run``: a full disk, a file-size limit, a folder this user cannot write) is raised instead, by the next
    ``write_or_fail`` or by leaving the block. Leaving the block, also on an error or an interruption,
    writes every sample already made before it returns.

    A ``make()`` may return a call that finishes the sample instead (``run.begin_sample``: its Blender
    render sent, its labels not made yet): that call runs after the next ``write_or_fail``'s ``make()``
    (or on ``flush()``, or on leaving the block without an error), so Blender renders one sample while
    the next is sampled and sent. The samples are written in the order given; one begun and not finished
    when the block is left on an error is not written (a rerun makes it)."""

    def __init__(self, out: Path, depth: int = 1):
        import queue

        self.out, self.errors = out, {}
        self.stopped: OSError | None = None  # the error that stops the run (``stops_the_run``)
        self.made = 0  # samples made (or failed making), written or handed to the writing thread
        self._begun: tuple[int, Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]]] | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._drain, name="handforge-sample-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:
            if kind is None:
                self.finish_begun()
        finally:
            self.close()
        if kind is None and self.stopped is not None:
            raise self.stopped

    def write_or_fail(self, index: int, make: Callable[[], Any]) -> None:
        if self.stopped is not None:
            raise self.stopped
        made = self._made(index, make)
        self.finish_begun()  # (the one before it, written first)
        if callable(made):
            self._begun = (index, made)
        elif made is not None:
            self._write(index, made)

    def finish_begun(self) -> None:
        """Finish the sample begun (``make()`` returned a call), if any, and hand it to the writing thread."""
        if self._begun is not None:
            (index, finish), self._begun = self._begun, None
            made = self._made(index, finish)
            if made is not None:
                self._write(index, made)

    def _made(self, index: int, make: Callable[[], Any]) -> Any:
        """``make()``, or None when it failed (said in ``errors``; an error that stops the run is raised)."""
        try:
            return make()
        except Exception as exc:
            if stops_the_run(exc, writing=False):
                raise
            self.errors[index] = failure(exc)
            self.made += 1
            return None

    def _write(self, index: int, made: tuple[dict[str, Any], dict[str, np.ndarray]]) -> None:
        labels, images = made
        if not self._thread.is_alive():
            raise RuntimeError("the sample writer is closed")
        self._queue.put((index, labels, images))
        self.made += 1

    def flush(self) -> None:
        """Finish the sample begun, then wait until every sample handed over is on the disk (or failed:
        ``errors``, ``stopped``)."""
        self.finish_begun()
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                index, labels, images = item
                if self.stopped is not None:  # (those made meanwhile: they would fail the same way)
                    continue
                try:
                    write_sample(self.out, index, labels, images)
                except BaseException as exc:  # (this thread must go on: the caller may wait on the queue)
                    if stops_the_run(exc, writing=True):
                        self.stopped = exc
                    else:
                        self.errors[index] = failure(exc)
            finally:
                self._queue.task_done()


def write_sample(out: Path, index: int, labels: dict[str, Any], images: dict[str, np.ndarray]) -> Path:
    """Write a sample into a hidden folder, then rename it into place: a sample exists whole or not at all,
    also after a power loss (its files and folder are synced to the disk before the rename, and the rename
    after it: without, a renamed sample could come back with empty files, counted as finished).
    ``images``: file name → array (.png: uint8 or bool image; .npy: raw float32 array)."""
    final = sample_dir(out, index)
    # a folder of this writer's own: a Ray worker stopped as hung writes on for a moment after ``ray.kill`` (tens of
    # ms, more on a busy or distant node) while another is given its samples; sharing one name, each removed the
    # other's files from under it (the sample failed) or renamed the folder into place half written
    partial = final.parent / f"{PARTIAL_PREFIX}{final.name}.{uuid.uuid4().hex[:12]}"
    writing = None  # the file being written, by its name in the sample
    try:
        partial.mkdir(parents=True)
        with contextlib.ExitStack() as files:  # each file stays open until it is synced
            opened = []  # (name, file)
            for name, array in images.items():
                writing = name
                fh = files.enter_context(open(partial / name, "wb"))
                if name.endswith(".npy"):
                    np.save(fh, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
                else:
                    image = Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1))
                    image.save(fh, format=Image.registered_extensions()[Path(name).suffix.lower()])
                opened.append((name, fh))
            writing = LABELS
            fh = files.enter_context(open(partial / LABELS, "wb"))
            fh.write((dumps(labels) + "\n").encode("utf-8"))
            opened.append((LABELS, fh))
            for writing, fh in opened:  # (a limit met by a file's last bytes, flushed here, names that file too)
                fh.flush()
            writing = None
            _sync_all([lambda fd=fh.fileno(): os.fsync(fd) for _, fh in opened] + [lambda: sync_folder(partial)])
    except BaseException as exc:  # e.g. the disk is full: nothing half-written stays
        shutil.rmtree(partial, ignore_errors=True)
        # said of the samples' folder, not of the hidden .partial- one; a file-size limit of the file that
        # passed it (by its name in the sample), the one whose size matters
        said = write_error(exc, final.parent)
        if writing is not None and getattr(said, "errno", None) == errno.EFBIG:
            said = OSError(errno.EFBIG, said.strerror, str(final / writing))
        if said is exc:
            raise
        raise said from None
    try:
        _put_in_place(partial, final)
    except BaseException:  # nothing half-written stays, whatever stood in the way
        shutil.rmtree(partial, ignore_errors=True)
        raise
    sync_folder(final.parent)
    return final


def _put_in_place(partial: Path, final: Path) -> None:
    """Rename the written ``partial`` folder to ``final``: the rename first, then what stood in its way (a check
    before it raced with another writer renaming the same sample into place between the check and the rename,
    ending in "not a sample folder" or deleting that writer's finished sample). Another writer's finished sample
    there (the same bytes) is kept and ``partial`` removed; a folder without labels, which no writer leaves (each
    renames its folder whole), is a leftover, replaced; anything else is refused."""
    for _ in range(3):
        try:
            replace_held(partial, final)  # atomic: into no folder or an empty one, else refused
            return
        except OSError:
            if final.is_dir() and not final.is_symlink():
                if not _cleared_leftover(final):  # another writer's, the same bytes: kept
                    # (a file of ours held a moment on Windows, an antivirus's: left for the next run's
                    # clean_partial; its PermissionError stopped the whole export over a finished sample)
                    shutil.rmtree(partial, ignore_errors=True)
                    return
            elif os.path.lexists(final):  # not ours to delete
                raise FileExistsError(errno.EEXIST, "not a sample folder, where this sample goes: move it away, "
                                                    "then export again", str(final)) from None
            else:  # nothing there: the rename's own failure (e.g. a disk error)
                raise
    replace_held(partial, final)  # (a leftover that came back twice: its error said)


# the folder opened once, then checked and emptied through it (not on Windows)
_THROUGH_FOLDER = (shutil.rmtree.avoids_symlink_attacks and hasattr(os, "O_DIRECTORY")
                   and {os.open, os.stat, os.unlink} <= os.supports_dir_fd and os.scandir in os.supports_fd)


def _cleared_leftover(final: Path) -> bool:
    """Empty the folder at ``final`` unless it holds labels (False: a finished sample, kept), for the rename again.
    Through the folder as opened once: checked, then removed by name, it was the finished sample of another writer
    of the same sample if that one had cleared the same leftover and renamed its own there in between, and this
    writer, killed before its rename (a Ray actor stopped as hung), left the sample missing though counted done."""
    if not _THROUGH_FOLDER:
        if (final / LABELS).is_file():
            return False
        shutil.rmtree(final, ignore_errors=True)
        return True
    try:
        folder = os.open(final, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:  # cleared by another writer: the rename again
        return True
    try:
        try:
            if stat.S_ISREG(os.stat(LABELS, dir_fd=folder).st_mode):
                return False
        except FileNotFoundError:
            pass
        for entry in os.scandir(folder):  # (a removal from under another writer's removal is no error)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.name, dir_fd=folder, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=folder)
    finally:
        os.close(folder)
    return True


_SYNC_POOL = None
_SYNC_POOL_LOCK = threading.Lock()


def _sync_all(syncs: list[Callable[[], Any]]) -> None:
    """Run the fsyncs of one sample's files and folder at once and return when all are done (or raise
    the first one's error). ext4 commits concurrent fsyncs in one journal transaction: a sample's ten
    took 32 ms one after the other here, 4 ms together."""
    global _SYNC_POOL
    from concurrent.futures import ThreadPoolExecutor, wait

    with _SYNC_POOL_LOCK:
        if _SYNC_POOL is None:
            _SYNC_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="handforge-fsync")
    futures = [_SYNC_POOL.submit(sync) for sync in syncs]
    wait(futures)  # all of them, failed or not, before the caller closes the files
    for future in futures:
        future.result()


def sample_labels(out: Path, indices: Iterable[int]) -> Iterator[dict[str, Any]]:
    """The labels of samples ``indices``, read one at a time in that order (a large dataset's labels
    take gigabytes together)."""
    for index in indices:
        try:
            yield read_labels(sample_dir(out, index))
        except LabelsError as exc:  # (an edited file ended in a KeyError or IndexError traceback, no file named)
            raise ValueError(f"{exc.path} is damaged ({exc.problem}): delete its sample folder and run again to "
                             "write it anew") from None


class LabelsError(ValueError):
    """A sample's labels that cannot be used: the file (``path``) and what is wrong in it (``problem``)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def read_labels(folder: Path) -> dict[str, Any]:
    """The labels of the finished sample ``folder`` (``samples/NNNNNN``), checked by ``labels_problem``: the
    one reader of every labels.json (``LabelsError`` names the file and what is wrong in it)."""
    path = folder / LABELS
    try:
        labels = parse_json(path.read_text(encoding="utf-8"))
        problem = labels_problem(labels, int(folder.name)) if folder.name.isdigit() else "not a sample's folder name"
    except ValueError as exc:  # (it said "Invalid control character", no file named; UnicodeDecodeError too)
        problem = str(exc)
    if problem:
        raise LabelsError(path, problem)
    return labels


def _numbers(value: Any, *shape: int, flags: bool = False) -> bool:
    """Whether ``value`` is nested lists of finite numbers of ``shape``; true and false count only with ``flags``
    (``visible``: elsewhere a true was taken as the number 1)."""
    if not isinstance(value, list) or len(value) != shape[0]:
        return False
    # parsed JSON's lists and numbers are exactly list, int, float or bool: checked by type in one go (the check
    # per row and value took half of a dataset's finishing time), the same answer as the check per value below,
    # which anything else takes
    if len(shape) == 2 and set(map(type, value)) == {list} and set(map(len, value)) == {shape[1]}:
        value = list(itertools.chain.from_iterable(value))
    elif len(shape) > 1:
        return all(_numbers(row, *shape[1:], flags=flags) for row in value)
    if set(map(type, value)) <= (_FLAG_TYPES if flags else _NUMBER_TYPES):
        return all(map(math.isfinite, value))
    return all(isinstance(x, (int, float)) and math.isfinite(x) and (flags or not isinstance(x, bool)) for x in value)


_NUMBER_TYPES, _FLAG_TYPES = {int, float}, {int, float, bool}


def _refused(name: str, value: Any, rule: str) -> str:
    """Why field ``name`` holding ``value`` is refused: a true or false where a number belongs, named (a true
    was taken as 1, and "must be 21×2 numbers" of 21×2 values would not say which), else the ``rule``."""
    flag = json_flag(value)
    return f"{name}{flag}, not a number" if flag.startswith(("[", ".")) else f"{name} {rule}"


def sample_problem(folder: Path, images: Iterable[str]) -> str:
    """What makes the finished sample ``folder`` (``samples/NNNNNN``) unusable as training data, naming the
    file ('' when nothing): its labels (``labels_problem``), and ``images`` that are missing, unreadable
    or of another size than the labels' camera (read from their headers)."""
    try:
        labels = read_labels(folder)
    except LabelsError as exc:
        return str(exc)
    except OSError as exc:
        return f"{folder / LABELS}: {exc.strerror or exc}"
    for name in images:
        try:
            with Image.open(folder / name) as image:
                found = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return f"{folder / name}: {type(exc).__name__}: {exc}"
        problem = size_problem(folder / name, found, labels)
        if problem:
            return problem
    return ""


def finished_image(path: Path, fix: str = "delete its sample folder and run again to write it anew") -> Image.Image:
    """A finished sample's image, read whole (Pillow reads lazily: a truncated file failed later, unnamed); a
    damaged or missing one is named with the ``fix`` (an ``OSError`` here was read as a full disk: "make room")."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc}): {fix}") from None


def size_problem(path: Path, size: tuple[int, int], labels: dict) -> str:
    """'' when an image of ``size`` (width, height) at ``path`` is its ``labels``' camera's size, else why not: the
    labels are in the camera's pixels, and a resized image measured or trained on as it is shifts every keypoint."""
    wanted = (labels["camera"]["width"], labels["camera"]["height"])
    if tuple(size) == wanted:
        return ""
    return f"{path} is {size[0]}×{size[1]} but its labels' camera is {wanted[0]}×{wanted[1]}"


def files_problem(folder: Path, labels: dict[str, Any]) -> str:
    """Which file the labels of the finished sample ``folder`` list is missing or cut short ('' when none),
    from its size and last bytes (a PNG's end chunk, a .npy's size against its header), not its pixels: a
    resume counted a sample with its labels as finished, so one whose image was deleted or cut short stayed
    in COCO and the InterHand2.6M-style files."""
    for name in labels["files"].values():
        path = folder / name
        try:
            size = path.stat().st_size
            if name.endswith(".png"):
                whole = not png_cut_short(path)
            elif name.endswith(".npy"):
                with path.open("rb") as fh:
                    version = np.lib.format.read_magic(fh)
                    header = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if header is None:
                        return f"{path}: a .npy of version {version}, not one this export writes"
                    shape, _, dtype = header(fh)
                    whole = size == fh.tell() + math.prod(shape) * dtype.itemsize
            else:
                whole = size > 0
        except FileNotFoundError:
            return f"{path} is missing"
        except (OSError, ValueError) as exc:
            return f"{path}: {type(exc).__name__}: {exc}"
        if not whole:
            return f"{path} is damaged (cut short)"
    return ""


def labels_problem(labels: Any, index: int) -> str:
    """What in a sample's labels the aggregate files, the contact sheet, the image check (``handforge eval
    image``) and the engines' datasets cannot use ('' when nothing): the fields they read, of the types
    and shapes the export writes."""
    if not isinstance(labels, dict):
        return f"a JSON {type(labels).__name__}, not an object"
    if "index" not in labels:
        return "no index: not a sample's labels"
    if labels["index"] != index:
        return f"index {labels['index']!r} in the folder of sample {index}"
    camera, hands, files = labels.get("camera"), labels.get("hands"), labels.get("files")
    if not isinstance(camera, dict) or not all(isinstance(camera.get(k), int) and not isinstance(camera.get(k), bool)
                                               and camera[k] > 0 for k in ("width", "height")):
        return "camera.width and camera.height must be positive whole numbers"
    for name, shape in (("K", (3, 3)), ("R", (3, 3)), ("t", (3,))):
        if not _numbers(camera.get(name), *shape):
            return _refused(f"camera.{name}", camera.get(name), f"must be {'×'.join(map(str, shape))} numbers")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return "files must map each output to its file name"
    # a name in the sample's own folder: "../000001/rgb.png" evaluated another sample's image, "/etc/passwd" was opened
    elsewhere = next((f"{k} = {v!r}" for k, v in files.items() if not v or v in (".", "..") or "/" in v or "\\" in v), "")
    if elsewhere:
        return f"files.{elsewhere} is not the name of a file in the sample's folder"
    if labels.get("bbox") is not None and not _numbers(labels["bbox"], 4):
        return _refused("bbox", labels["bbox"], "must be null or 4 numbers")
    for key, container in (("hand_type", None), ("skin_tone", None), ("preset", "lighting"), ("kind", "background")):
        holder = labels.get(container) if container else labels
        if not isinstance(holder, dict) or not isinstance(holder.get(key), str):
            return f"{container + '.' if container else ''}{key} must be text"
    if not isinstance(labels.get("camera_params"), dict):
        return "camera_params must be an object"
    if not isinstance(hands, dict) or not set(hands) <= set(SIDES):
        return f"hands must map sides ({', '.join(SIDES)}) to hands"
    for side, hand in hands.items():
        if hand is None:
            continue
        if not isinstance(hand, dict):
            return f"hands.{side} must be an object"
        for name, shape in (("keypoints_2d", (NUM_KEYPOINTS, 2)), ("keypoints_camera", (NUM_KEYPOINTS, 3)),
                            ("keypoints_world", (NUM_KEYPOINTS, 3)), ("visible", (NUM_KEYPOINTS,))):
            if not _numbers(hand.get(name), *shape, flags=name == "visible"):
                return _refused(f"hands.{side}.{name}", hand.get(name), f"must be {'×'.join(map(str, shape))} numbers")
        if hand.get("bbox") is not None and not (_numbers(hand["bbox"], 4) and f"mask_{side}" in files):
            return _refused(f"hands.{side}.bbox", hand["bbox"], f"must be null or 4 numbers, with files.mask_{side}")
        if hand.get("bbox_projected") is not None and not _numbers(hand["bbox_projected"], 4):
            return _refused(f"hands.{side}.bbox_projected", hand["bbox_projected"], "must be null or 4 numbers")
        params = hand.get("params_world")
        if not isinstance(params, dict) or not all(_numbers(params.get(k), n) for k, n in (
                ("global_orient", 3), ("hand_pose", 45), ("transl", 3))) or not (
                isinstance(params.get("betas"), list) and _numbers(params["betas"], len(params["betas"]))):
            return _refused(f"hands.{side}.params_world", params,
                            "must hold global_orient (3), hand_pose (45), betas and transl (3)")
    return ""
