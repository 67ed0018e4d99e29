"""Dataset writers: one folder per sample (written whole or not at all), COCO keypoints, InterHand2.6M-style
annotations and the dataset card, the last three rebuilt from the finished samples' JSON files. Those
are read one sample at a time and each aggregate file is written as they are read (``streamed_json``):
all of a 100,000-sample dataset's labels took gigabytes.

Layout of an export folder::

    samples/000042/labels.json   self-describing labels (see ``handforge.export.labels``)
    samples/000042/rgb.png mesh.png mask_left.png mask_right.png skeleton.png depth.npy normals.npy
    coco.json                    COCO keypoints (21 per hand, skeleton, boxes, RLE masks)
    interhand/annotations/export/InterHand2.6M_export_{MANO_NeuralAnnot,camera,joint_3d,data}.json
    dataset_card.md, dataset_card.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from handforge.datasets.interhand_files import MM_PER_M
from handforge_shared.files import TEMPORARY_SUFFIX, FolderBusy, atomic_file, folder_lock, sync_folder, write_atomic
from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS, NUM_KEYPOINTS, SIDES

SAMPLES = "samples"
LABELS = "labels.json"
SPEC_RECORD = "export_spec.json"  # what the folder's samples were made from: a spec or a Blender request
INPUTS = "inputs"  # in it: the files besides the spec the samples were made from (``file_identities``)
HAND_MODEL = "hand_model_identity"  # in it: the hand model the samples were posed with (``run.hand_model_identity``)
GENERATE_WEIGHTS = "generate_weights"  # in it: the image weights of generated RGB (``generated_rgb.weights_identity``)
PARTIAL_PREFIX = ".partial-"
SPLIT = "export"  # the InterHand2.6M-style split name
INTERHAND = "interhand"  # the InterHand2.6M-style files' folder
COCO_CATEGORIES = {"right": 1, "left": 2}
# the camera parameters the card gives ranges of (a Blender scene's cameras have distance and focal only)
CAMERA_RANGES = ("distance", "elevation", "azimuth", "focal", "roll")


def dumps(data: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Deterministic JSON (sorted keys) so equal labels are equal bytes; ``default`` as ``json.dumps``'s."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False, default=default)


class ExportBusy(RuntimeError):
    """Another driver holds the dataset folder."""


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """One driver per dataset folder at a time (a second one would redo the first one's samples)."""
    try:
        with folder_lock(out):
            yield
    except FolderBusy:
        raise ExportBusy(f"{out}: another handforge export is writing into this folder; wait for it "
                         "or stop it (a rerun afterwards resumes)") from None


class FolderTaken(ValueError):
    """The output folder holds something else than this export's samples."""


def claim_folder(out: Path, record: dict[str, Any], what: str = "spec", write: bool = True) -> None:
    """Make ``out`` the folder of the export ``record`` describes (a spec's ``to_dict()``, or a Blender
    scene's request), or refuse with ``FolderTaken``: a folder holds one export (its ``SPEC_RECORD``),
    which a rerun of the same one resumes. Refused: a folder with other files, one holding another
    export (``what`` names it: its samples would be mixed with this one's, and its card would
    describe neither), one made from other input files (the record's ``INPUTS``, ``file_identities``:
    a background image or clip changed, added or removed), one made with another hand model (its
    ``HAND_MODEL``: e.g. other MANO files in ``mano.model_dir``), or, when the record has ``samples`` (which
    may grow: a rerun with more extends the dataset), more finished samples than that. ``write=False``
    only checks (before a job is queued)."""
    path = out / SPEC_RECORD
    # more samples extend the dataset; the inputs and the hand model are checked on their own
    mutable = ("samples", INPUTS, HAND_MODEL, GENERATE_WEIGHTS)
    wanted = {k: v for k, v in record.items() if k not in mutable}
    if path.is_file():
        held = _held_record(out)
        if not isinstance(held, dict) or {k: v for k, v in held.items() if k not in mutable} != wanted:
            differ = sorted(k for k in set(wanted) | set(held or {}) if k not in mutable
                            and (held or {}).get(k) != wanted.get(k)) if isinstance(held, dict) else ["all"]
            raise FolderTaken(f"{out} holds an export of another {what} (differing: {', '.join(differ)}): choose a "
                              f"new or an empty folder, or rerun with that {what.split(',')[0]} to resume it")
        now = record.get(INPUTS, {})
        # (a folder recorded before inputs were: resumed, recorded now)
        if INPUTS in held and _contents(held[INPUTS]) != _contents(now):
            raise FolderTaken(f"{out} holds samples made from other input files ({inputs_changed(held[INPUTS], now)} "
                              "since): resuming would mix two datasets; restore the file(s) to resume, or choose a "
                              "new folder")
        # (a folder recorded before the hand model was: resumed, recorded now; a check without it: not compared)
        held_model, model = held.get(HAND_MODEL), record.get(HAND_MODEL)
        if held_model is not None and model is not None and held_model != model:
            raise FolderTaken(f"{out} holds samples made with another {model['name']} hand model (its arrays "
                              "as loaded differ, e.g. other MANO files in mano.model_dir): resuming would mix two "
                              "datasets; restore the hand model's files to resume, or choose a new folder")
        held_weights, weights = held.get(GENERATE_WEIGHTS), record.get(GENERATE_WEIGHTS)
        if held_weights is not None and weights is not None and held_weights != weights:
            changed = ", ".join(k for k in sorted(weights) if held_weights.get(k) != weights.get(k))
            raise FolderTaken(f"{out} holds images generated with other weights ({changed}: "
                              f"{held_weights.get(changed.split(', ')[0])} then): resuming would mix two models' "
                              "images; set them back to resume, or choose a new folder")
        extra = sum(1 for p in (out / SAMPLES).glob(f"*/{LABELS}")
                    if p.parent.name.isdigit() and int(p.parent.name) >= record["samples"]) if "samples" in record else 0
        if extra:
            raise FolderTaken(f"{out} holds {extra} finished sample(s) beyond the {record['samples']} asked for: ask "
                              "for at least as many as are there, or choose another folder")
    # (a run killed while it wrote its record left only the record's temporary file: resumed)
    elif out.is_dir() and any(not (p.name.startswith(f".{SPEC_RECORD}.") and p.name.endswith(TEMPORARY_SUFFIX))
                              for p in out.iterdir()):
        raise FolderTaken(f"{out} is not empty and holds no HandForge export: choose a new or an empty folder")
    if write:
        write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


MTIME_SETTLED_NS = 2 * 10**9  # a file's time is recorded once it is this old (``file_identities``)


def file_identities(files: dict[str, Path], known: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Name → size and BLAKE2b hash of each file (background images, clips), with its modification time:
    a file whose size and time match its entry in ``known`` (the folder's record, ``recorded_inputs``)
    keeps that hash unread, so a resume over a 20,000-clip corpus stats its clips instead of reading them."""
    identities, now = {}, time.time_ns()
    for name, path in sorted(files.items()):
        stat, held = path.stat(), (known or {}).get(name) or {}
        same = (held.get("bytes"), held.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
        digest = held.get("blake2b") if same else None
        if digest is None:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        identities[name] = {"bytes": stat.st_size, "blake2b": digest}
        # a file modified moments ago may be rewritten within the same clock tick, its time unchanged:
        # its time is not recorded, so the next run reads it again
        if now - stat.st_mtime_ns > MTIME_SETTLED_NS:
            identities[name]["mtime_ns"] = stat.st_mtime_ns
    return identities


def _held_record(out: Path) -> Any:
    """The folder's ``SPEC_RECORD`` as parsed JSON, None when missing or unreadable."""
    try:
        return json.loads((out / SPEC_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def recorded_inputs(out: Path) -> dict[str, Any]:
    """The ``file_identities`` the folder's record holds ({} when none is readable)."""
    held = _held_record(out)
    inputs = held.get(INPUTS) if isinstance(held, dict) else None
    return {k: v for k, v in inputs.items() if isinstance(v, dict)} if isinstance(inputs, dict) else {}


def _contents(identities: dict[str, Any]) -> dict[str, Any]:
    """``file_identities`` without the modification times: a file touched or copied is the same input."""
    if not isinstance(identities, dict):  # a damaged record: differs from any
        return identities
    return {name: {k: v for k, v in entry.items() if k != "mtime_ns"} if isinstance(entry, dict) else entry
            for name, entry in identities.items()}


def inputs_changed(held: dict[str, Any], now: dict[str, Any], shown: int = 3) -> str:
    """What differs between two ``file_identities``, e.g. "bg/b.png changed (812 → 790 bytes), bg/c.png added"."""
    held, now = _contents(held), _contents(now)

    def change(name: str) -> str:
        if name not in now:
            return f"{name} removed"
        if name not in held:
            return f"{name} added"
        before, after = held[name].get("bytes"), now[name]["bytes"]
        return f"{name} changed ({before} → {after} bytes)" if before != after else f"{name} changed (same size)"
    changes = [change(name) for name in sorted(set(held) | set(now)) if held.get(name) != now.get(name)]
    return ", ".join(changes[:shown]) + (f" and {len(changes) - shown} more" if len(changes) > shown else "")


def sample_dir(out: Path, index: int) -> Path:
    return out / SAMPLES / f"{index:06d}"


def is_finished(out: Path, index: int) -> bool:
    return (sample_dir(out, index) / LABELS).is_file()


def clean_partial(out: Path) -> int:
    """Remove what an interrupted run left half-written (samples, and ``write_atomic``'s temporary
    files of the aggregate files); returns how many."""
    root = out / SAMPLES
    stale = list(root.glob(PARTIAL_PREFIX + "*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    # the aggregate files: at the top and in the InterHand2.6M-style tree (not among the samples)
    pattern = f".*{TEMPORARY_SUFFIX}"  # write_atomic's files of a run killed while it wrote them
    temporary = [p for p in [*out.glob(pattern), *(out / INTERHAND).rglob(pattern)] if p.is_file()]
    for path in temporary:
        path.unlink(missing_ok=True)
    return len(stale) + len(temporary)


@contextlib.contextmanager
def claimed_folder(out: Path, record: dict[str, Any], record_of: str = "spec") -> Iterator[int]:
    """The dataset folder every export writes through: ``out`` made if needed, locked for this run
    (``run_lock``), claimed for ``record`` (``claim_folder``) and cleared of what interrupted runs left
    half-written (yields how many). A run refused or failed before it wrote a sample leaves the folder
    as it found it (no record, and no folder if it made it); one refused because another run holds the
    folder touches nothing of it."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file system that refuses new folders though access() allows them (/proc)
        raise FolderTaken(f"cannot write into {out}: {exc.strerror or exc}; choose a folder you can "
                          "write to") from None
    with run_lock(out):  # ExportBusy: another run's folder, left alone
        fresh = not (out / SPEC_RECORD).exists()
        try:
            claim_folder(out, record, record_of)
            yield clean_partial(out)
        except BaseException:
            samples = out / SAMPLES
            if fresh and {p.name for p in out.iterdir()} <= {SPEC_RECORD, SAMPLES} and not (
                    samples.is_dir() and any(samples.iterdir())):
                (out / SPEC_RECORD).unlink(missing_ok=True)
                for made in (samples, out) if created else (samples,):
                    with contextlib.suppress(OSError):
                        made.rmdir()
            raise


def write_or_fail(out: Path, index: int, make: Any) -> str | None:
    """Make sample ``index`` (``make() -> (labels, images)``) and write it: None, or why it failed (one
    line: the error and where it was raised). One bad sample (a corrupt background image, a full disk)
    is reported in the run's summary and the others go on, in one process as in the workers; a rerun
    retries it."""
    try:
        labels, images = make()
        write_sample(out, index, labels, images)
        return None
    except Exception as exc:
        return failure(exc)


def failure(exc: BaseException) -> str:
    """``write_or_fail``'s one line for a sample's error: its type, first line and where it was raised."""
    import traceback

    last = traceback.extract_tb(exc.__traceback__)[-1]
    first = (str(exc).strip().splitlines() or [""])[0]  # one line: Blender's reasons come with its log's tail
    return f"{type(exc).__name__}: {first} ({Path(last.filename).name}:{last.lineno})"


class SampleWriter:
    """``write_or_fail`` with the writing overlapped: ``make()`` runs in the caller's thread and the
    sample's files are encoded, synced and renamed into place (``write_sample``, each sample whole or
    not at all as ever) by one background thread while the caller makes the next one (Blender renders
    with one core; PNG encoding and the fsyncs take the other). At most ``depth`` made samples wait,
    so memory stays bounded. ``errors``: index → ``write_or_fail``'s line for each sample that failed,
    whether making or writing it; complete after ``flush()`` or the ``with`` block. Leaving the block,
    also on an error or an interruption, writes every sample already made before it returns."""

    def __init__(self, out: Path, depth: int = 1):
        import queue

        self.out, self.errors = out, {}
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._drain, name="handforge-sample-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write_or_fail(self, index: int, make: Callable[[], tuple[dict[str, Any], dict[str, np.ndarray]]]) -> None:
        try:
            labels, images = make()
        except Exception as exc:
            self.errors[index] = failure(exc)
            return
        if not self._thread.is_alive():
            raise RuntimeError("the sample writer is closed")
        self._queue.put((index, labels, images))

    def flush(self) -> None:
        """Wait until every sample handed over is on the disk (or failed: ``errors``)."""
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
                try:
                    write_sample(self.out, index, labels, images)
                except BaseException as exc:  # (this thread must go on: the caller may wait on the queue)
                    self.errors[index] = failure(exc)
            finally:
                self._queue.task_done()


def write_sample(out: Path, index: int, labels: dict[str, Any], images: dict[str, np.ndarray]) -> Path:
    """Write a sample into a hidden folder, then rename it into place: a sample exists whole or not at all,
    also after a power loss (its files and folder are synced to the disk before the rename, and the rename
    after it: without, a renamed sample could come back with empty files, counted as finished).
    ``images``: file name → array (.png: uint8 or bool image; .npy: raw float32 array)."""
    final = sample_dir(out, index)
    partial = final.parent / f"{PARTIAL_PREFIX}{final.name}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with contextlib.ExitStack() as files:  # each file stays open until it is synced
            opened = []
            for name, array in images.items():
                fh = files.enter_context(open(partial / name, "wb"))
                if name.endswith(".npy"):
                    np.save(fh, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
                else:
                    image = Image.fromarray(array.astype(np.uint8) * (255 if array.dtype == bool else 1))
                    image.save(fh, format=Image.registered_extensions()[Path(name).suffix.lower()])
                opened.append(fh)
            fh = files.enter_context(open(partial / LABELS, "wb"))
            fh.write((dumps(labels) + "\n").encode("utf-8"))
            opened.append(fh)
            for fh in opened:
                fh.flush()
            _sync_all([lambda fd=fh.fileno(): os.fsync(fd) for fh in opened] + [lambda: sync_folder(partial)])
    except BaseException:  # e.g. the disk is full: nothing half-written stays
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():  # a finished sample is never rewritten; this is a leftover without labels
        shutil.rmtree(final)
    os.replace(partial, final)
    sync_folder(final.parent)
    return final


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


def finished_indices(out: Path, count: int) -> list[int]:
    """The finished samples' indices below ``count``, in order: the dataset's own folders only (named as
    ``sample_dir`` names them): a copy such as "000003 copy" was read as one more sample, a duplicate id,
    and a sample from index 1,000,000 on (seven digits) was left out of every aggregate file."""
    root = out / SAMPLES
    if not root.is_dir():
        return []
    names = (p.parent.name for p in root.glob(f"*/{LABELS}"))
    return sorted(int(name) for name in names
                  if name.isascii() and name.isdigit() and sample_dir(out, int(name)).name == name and int(name) < count)


def pending_indices(out: Path, count: int) -> list[int]:
    """The samples below ``count`` not finished yet, in order, from one listing of the finished ones (a
    file check per index took 10 s a million samples before a run's first sample, which looked hung)."""
    finished = set(finished_indices(out, count))
    return [index for index in range(count) if index not in finished]


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
        labels = json.loads(path.read_text(encoding="utf-8"))
        problem = labels_problem(labels, int(folder.name)) if folder.name.isdigit() else "not a sample's folder name"
    except (ValueError, UnicodeDecodeError) as exc:  # (it said "Invalid control character", no file named)
        problem = str(exc)
    if problem:
        raise LabelsError(path, problem)
    return labels


def _numbers(value: Any, *shape: int) -> bool:
    """Whether ``value`` is nested lists of finite numbers (bools count: ``visible``) of ``shape``."""
    if not isinstance(value, list) or len(value) != shape[0]:
        return False
    if len(shape) > 1:
        return all(_numbers(row, *shape[1:]) for row in value)
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in value)


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
    size = (labels["camera"]["width"], labels["camera"]["height"])
    for name in images:
        try:
            with Image.open(folder / name) as image:
                found = image.size
        except (OSError, ValueError) as exc:
            return f"{folder / name}: {type(exc).__name__}: {exc}"
        if found != size:
            return f"{folder / name} is {found[0]}×{found[1]} but its labels' camera is {size[0]}×{size[1]}"
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
            return f"camera.{name} must be {'×'.join(map(str, shape))} numbers"
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return "files must map each output to its file name"
    if labels.get("bbox") is not None and not _numbers(labels["bbox"], 4):
        return "bbox must be null or 4 numbers"
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
            if not _numbers(hand.get(name), *shape):
                return f"hands.{side}.{name} must be {'×'.join(map(str, shape))} numbers"
        if hand.get("bbox") is not None and not (_numbers(hand["bbox"], 4) and f"mask_{side}" in files):
            return f"hands.{side}.bbox must be null or 4 numbers, with files.mask_{side}"
        if hand.get("bbox_projected") is not None and not _numbers(hand["bbox_projected"], 4):
            return f"hands.{side}.bbox_projected must be null or 4 numbers"
        params = hand.get("params_world")
        if not isinstance(params, dict) or not all(_numbers(params.get(k), n) for k, n in (
                ("global_orient", 3), ("hand_pose", 45), ("transl", 3))) or not (
                isinstance(params.get("betas"), list) and _numbers(params["betas"], len(params["betas"]))):
            return f"hands.{side}.params_world must hold global_orient (3), hand_pose (45), betas and transl (3)"
    return ""


# ---------------------------------------------------------------------------------- streamed JSON
class _Items:
    """The items of a JSON array or object in a ``streamed_json`` file, written one at a time into an
    unnamed temporary file (``file``: open inside the ``streamed_json`` block)."""

    brackets = ""

    def __init__(self) -> None:
        self.file: IO[str] | None = None
        self.empty = True

    def _write(self, text: str) -> None:
        self.file.write(text if self.empty else "," + text)
        self.empty = False

    def copy_to(self, fh: IO[str]) -> None:
        self.file.seek(0)
        fh.write(self.brackets[0])
        shutil.copyfileobj(self.file, fh)
        fh.write(self.brackets[1])


class JsonArray(_Items):
    """Its items in the order they are appended."""

    brackets = "[]"

    def append(self, value: Any) -> None:
        self._write(dumps(value))

    def extend(self, values: Iterable[Any]) -> None:
        for value in values:
            self.append(value)


class JsonObject(_Items):
    """Its keys must come in the order ``dumps`` sorts them into (checked), so the file is the bytes
    ``dumps`` gives of the whole object."""

    brackets = "{}"

    def __init__(self) -> None:
        super().__init__()
        self.last_key: str | None = None

    def put(self, key: str, value: Any) -> None:
        if self.last_key is not None and key <= self.last_key:
            raise ValueError(f"key {key!r} after {self.last_key!r}: a streamed object's keys come in sorted order")
        self.last_key = key
        self._write(dumps(key) + ":" + dumps(value))


_HOLE = "\0streamed items\0"  # in no template: where a JsonArray's or JsonObject's items go


@contextlib.contextmanager
def streamed_json(path: Path, template: dict[str, Any]) -> Iterator[None]:
    """``path`` as ``dumps(template)`` would write it, where the template's ``JsonArray`` and
    ``JsonObject`` values are filled inside the block, each into an unnamed temporary file beside
    ``path`` (memory stays the same however many items they get). Whole or not at all: the file is
    assembled in ``atomic_file``'s temporary file and renamed into place when the block ends without
    an error."""
    holes: list[_Items] = []

    def hole(value: Any) -> str:  # json.dumps calls it in the order it writes, keys sorted
        if not isinstance(value, _Items):
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        holes.append(value)
        return _HOLE

    frame = dumps(template, default=hole).split(dumps(_HOLE))
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for items in holes:
            items.file = stack.enter_context(tempfile.TemporaryFile(
                "w+", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX))
        yield
        with atomic_file(path) as fh:
            fh.write(frame[0])
            for items, text in zip(holes, frame[1:]):
                items.copy_to(fh)
                fh.write(text)


# ------------------------------------------------------------------------------------------- COCO
def coco_keypoints(hand: dict[str, Any], width: int, height: int) -> tuple[list[float], int]:
    """COCO's flat [x, y, v] × 21: v = 2 visible, 1 in the image but hidden, 0 outside or behind the
    camera (x = y = 0; a point behind it projects to a mirrored pixel that can lie in the image)."""
    flat, labelled = [], 0
    depths = [xyz[2] for xyz in hand["keypoints_camera"]]
    for (x, y), visible, z in zip(hand["keypoints_2d"], hand["visible"], depths):
        inside = z > 0 and 0 <= x < width and 0 <= y < height
        v = 2 if visible else (1 if inside else 0)
        flat += [round(x, 3), round(y, 3), v] if v else [0, 0, 0]
        labelled += v > 0
    return flat, labelled


def image_name(sample: dict[str, Any]) -> str:
    """The sample's image as the aggregate files name it: its RGB, else its mesh image."""
    return f"{SAMPLES}/{sample['index']:06d}/{sample['files'].get('rgb', sample['files'].get('mesh'))}"


def coco_image(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's entry in COCO's images (id: its index + 1)."""
    return {"id": sample["index"] + 1, "file_name": image_name(sample),
            "width": sample["camera"]["width"], "height": sample["camera"]["height"]}


def coco_annotations(out: Path, sample: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The sample's entries in COCO's annotations: one per hand with a box, its RLE mask read from
    the sample's ``mask_<side>.png``."""
    from pycocotools import mask as mask_utils

    image_id = sample["index"] + 1
    width, height = sample["camera"]["width"], sample["camera"]["height"]
    for side, hand in sorted(sample["hands"].items()):
        if hand["bbox"] is None:
            continue
        mask = _mask(sample_dir(out, sample["index"]) / sample["files"][f"mask_{side}"])
        rle = mask_utils.encode(np.asfortranarray(mask))
        keypoints, labelled = coco_keypoints(hand, width, height)
        yield {"id": image_id * 2 + (side == "right"), "image_id": image_id, "category_id": COCO_CATEGORIES[side],
               "iscrowd": 0, "bbox": hand["bbox"], "area": float(mask_utils.area(rle)),
               "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
               "keypoints": keypoints, "num_keypoints": labelled}


def finished_image(path: Path) -> Image.Image:
    """A finished sample's image, read whole (Pillow reads lazily: a truncated file failed later, unnamed); a
    damaged or missing one is named with the fix (an ``OSError`` here was read as a full disk: "make room")."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc}): delete its sample folder and run "
                         "again to write it anew") from None


def _mask(path: Path) -> np.ndarray:
    """A finished sample's mask image as booleans."""
    return np.asarray(finished_image(path)) > 127


def write_coco(out: Path, indices: list[int]) -> Path:
    """``coco.json`` of samples ``indices`` (images and annotations in their order)."""
    skeleton = [[k + 1, p + 1] for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0]
    images, annotations = JsonArray(), JsonArray()
    path = out / "coco.json"
    with streamed_json(path, {
            "info": {"description": "HandForge labelled renders", "keypoint_convention":
                     "pixel coordinates with (0, 0) the top-left image corner; pixel centres at i + 0.5"},
            "categories": [{"id": cid, "name": f"{side}_hand", "supercategory": "hand",
                            "keypoints": list(KEYPOINT_NAMES), "skeleton": skeleton}
                           for side, cid in COCO_CATEGORIES.items()],
            "images": images, "annotations": annotations}):
        for sample in sample_labels(out, indices):
            images.append(coco_image(sample))
            annotations.extend(coco_annotations(out, sample))
    return path


# ----------------------------------------------------------------------------- InterHand2.6M style
def interhand_paths(out: Path, hand_model: str = "mano") -> dict[str, Path]:
    """The InterHand2.6M-style files; ``"params"`` is the release's MANO file for MANO hands, and
    for the open hand a file named for it (its parameters are no MANO parameters: code that reads a
    MANO file would pose MANO with them, centimetres off without a word)."""
    folder = out / INTERHAND / "annotations" / SPLIT
    params = "MANO_NeuralAnnot" if hand_model == "mano" else f"HandForge_{hand_model}_hand_params"
    return {kind: folder / f"InterHand2.6M_{SPLIT}_{name}.json"
            for kind, name in (("params", params), ("camera", "camera"), ("joint_3d", "joint_3d"), ("data", "data"))}


def interhand_mano(sample: dict[str, Any], hands_mean: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """The sample's frame in the MANO file: each side's pose, shape and translation, or None."""
    frame = {}
    for side in SIDES:
        hand = sample["hands"].get(side)
        if hand is None:
            frame[side] = None
            continue
        p = hand["params_world"]
        pose = np.asarray(p["hand_pose"]) - (hands_mean[side] if hands_mean else 0.0)
        frame[side] = {"pose": [*p["global_orient"], *pose.tolist()], "shape": p["betas"], "trans": p["transl"]}
    return frame


def interhand_camera(sample: dict[str, Any]) -> dict[str, list[float]]:
    """The sample's camera in each table of the camera file."""
    cam = sample["camera"]
    R, t, K = np.asarray(cam["R"]), np.asarray(cam["t"]), np.asarray(cam["K"])
    return {"campos": (-R.T @ t * MM_PER_M).tolist(), "camrot": R.tolist(), "focal": [K[0, 0], K[1, 1]],
            "princpt": [K[0, 2] - 0.5, K[1, 2] - 0.5]}


def _joint_valid(sample: dict[str, Any]) -> np.ndarray:
    """1 for the joints of the hands the sample has (InterHand2.6M: right 0–20, left 21–41)."""
    valid = np.zeros(2 * NUM_KEYPOINTS)
    for slot, side in enumerate(("right", "left")):
        if sample["hands"].get(side) is not None:
            valid[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = 1
    return valid


def interhand_joints(sample: dict[str, Any]) -> dict[str, Any]:
    """The sample's entry in the joint file."""
    world = np.zeros((2 * NUM_KEYPOINTS, 3))
    for slot, side in enumerate(("right", "left")):
        hand = sample["hands"].get(side)
        if hand is not None:
            world[slot * NUM_KEYPOINTS:(slot + 1) * NUM_KEYPOINTS] = np.asarray(hand["keypoints_world"]) * MM_PER_M
    return {"world_coord": world.tolist(), "joint_valid": _joint_valid(sample).tolist(),
            "hand_type": sample["hand_type"], "hand_type_valid": int(sample["hand_type"] != "none")}


def interhand_data(sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The sample's image and annotation in the data file; None for a sample with no hand in view
    (its loaders want a hand type and a box)."""
    if sample["hand_type"] == "none" or sample["bbox"] is None:
        return None
    i = sample["index"]
    image = {"id": i, "file_name": image_name(sample), "width": sample["camera"]["width"],
             "height": sample["camera"]["height"], "capture": 0, "subject": 0, "seq_name": "handforge",
             "camera": str(i), "frame_idx": i}
    annotation = {"id": i, "image_id": i, "bbox": sample["bbox"], "joint_valid": _joint_valid(sample).tolist(),
                  "hand_type": sample["hand_type"], "hand_type_valid": 1}
    return image, annotation


def write_interhand(out: Path, indices: list[int], hands_mean: dict[str, np.ndarray] | None,
                    hand_model: str = "mano") -> dict[str, Path]:
    """The four InterHand2.6M annotation files (Moon et al., ECCV 2020,
    https://github.com/facebookresearch/InterHand2.6M): one capture "0", frame index = camera id =
    sample index. MANO poses are mean-relative as in the release (``hands_mean`` taken off: loaders add it back; the
    open hand's mean is zero), translations in metres; joints and camera positions in millimetres;
    the principal point moves to InterHand2.6M's pixel-centres-on-integers convention (−0.5). Samples
    with no hand in view are in the MANO, camera and joint files but not in the data file (its loaders
    accept only right, left or interacting hands with a box).
    The labels are read twice: the MANO, camera and joint files are keyed by the sample index as text,
    written in the order ``dumps`` sorts keys ("10" before "2"); the data file lists samples in
    index order."""
    paths = interhand_paths(out, hand_model)
    mano, joints = JsonObject(), JsonObject()
    cameras = {table: JsonObject() for table in ("campos", "camrot", "focal", "princpt")}
    with (streamed_json(paths["params"], {"0": mano}), streamed_json(paths["camera"], {"0": cameras}),
          streamed_json(paths["joint_3d"], {"0": joints})):
        for sample in sample_labels(out, sorted(indices, key=str)):
            key = str(sample["index"])
            mano.put(key, interhand_mano(sample, hands_mean))
            for table, value in interhand_camera(sample).items():
                cameras[table].put(key, value)
            joints.put(key, interhand_joints(sample))
    images, annotations = JsonArray(), JsonArray()
    with streamed_json(paths["data"], {"images": images, "annotations": annotations}):
        for entry in filter(None, map(interhand_data, sample_labels(out, indices))):
            images.append(entry[0])
            annotations.append(entry[1])
    return paths


# ------------------------------------------------------------------------------------ dataset card
def card_figures(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The card's figures of ``samples``, gathered in one pass: counts, the visible-keypoint fraction,
    camera parameter ranges and the looks used."""
    hand_types: Counter[str] = Counter()
    visible = keypoints = 0
    bounds: dict[str, list[float]] = {}  # [lowest, highest], the first of equal ones (as min() and max() give)
    lighting, backgrounds, skin_tones = set(), set(), set()
    for s in samples:
        hand_types[s["hand_type"]] += 1
        for hand in s["hands"].values():
            visible += sum(hand["visible"])
            keypoints += len(hand["visible"])
        for k in CAMERA_RANGES:
            if k in s["camera_params"]:
                value = s["camera_params"][k]
                low, high = bounds.setdefault(k, [value, value])
                bounds[k] = [min(low, value), max(high, value)]
        lighting.add(s["lighting"]["preset"])
        backgrounds.add(s["background"]["kind"])
        skin_tones.add(s["skin_tone"])
    return {"samples": hand_types.total(), "hand_types": dict(sorted(hand_types.items())),
            "visible_keypoint_fraction": round(visible / keypoints, 4) if keypoints else None,
            "ranges": {k: [round(bounds[k][0], 4), round(bounds[k][1], 4)] for k in CAMERA_RANGES if k in bounds},
            "lighting": sorted(lighting), "backgrounds": sorted(backgrounds), "skin_tones": sorted(skin_tones)}


def write_card(out: Path, indices: list[int], settings: dict[str, Any]) -> Path:
    """``dataset_card.json`` and a readable ``dataset_card.md`` of samples ``indices``: counts, parameter
    ranges, settings, licences, the command."""
    card = {**card_figures(sample_labels(out, indices)), **settings}
    write_atomic(out / "dataset_card.json", json.dumps(card, indent=1, sort_keys=True) + "\n")
    lines = ["# HandForge labelled renders", "", f"Made with: `{settings['command']}`", "",
             f"- samples: {card['samples']} ({', '.join(f'{k}: {v}' for k, v in card['hand_types'].items())})",
             f"- visible keypoints: {card['visible_keypoint_fraction']}",
             f"- hand model: {settings['hand_model']} — licence: {settings['hand_model_licence']}",
             *(f"- hand model file {key}: {f['path']} ({f['bytes']} bytes, BLAKE2b {f['blake2b']})"
               for key, f in settings.get("hand_model_files", {}).items()),
             f"- render: {settings['render']}", f"- image size: {settings['width']}×{settings['height']}",
             *([f"- generated by: {g['engine']} (SD {g['sd_model']}; ControlNets {', '.join(g['controlnets'])}); "
                f"prompts: {' | '.join(g['prompts'])}"
                + (f"; aligned (MediaPipe mean error < {a['keep_below_px']} px): {a['passed']}/{a['checked']}"
                   if (a := g.get("alignment")) else "")] if (g := settings.get("generate")) else []),
             *(f"- camera {k}: {v}" for k, v in card["ranges"].items()),
             f"- lighting: {', '.join(card['lighting'])}; backgrounds: {', '.join(card['backgrounds'])}",
             f"- skin tones: {', '.join(card['skin_tones'])} (Monk Skin Tone scale, https://skintone.google/)",
             "", "Files: samples/NNNNNN/labels.json (self-describing), coco.json (COCO keypoints, RLE masks), "
             "interhand/annotations/export/ (InterHand2.6M-style). Pixel coordinates: (0, 0) is the top-left image "
             "corner, pixel centres at i + 0.5 (InterHand2.6M-style cameras: principal point − 0.5).", ""]
    write_atomic(out / "dataset_card.md", "\n".join(lines))
    return out / "dataset_card.md"
