"""The dataset folder: its layout, the one export that owns it (claimed by its spec or Blender request,
locked while a driver writes), what its samples were made from, and which of them are finished.

Layout of an export folder::

    export_spec.json             what the samples were made from (``claim_folder``)
    samples/000042/labels.json   self-describing labels (see ``handforge.export.labels``)
    samples/000042/rgb.png mesh.png mask_left.png mask_right.png skeleton.png depth.npy normals.npy
    coco.json                    COCO keypoints (``export.coco``)
    interhand/annotations/export/InterHand2.6M_export_{MANO_NeuralAnnot,camera,joint_3d,data}.json
    interhand/annotations/skeleton.txt  (both ``export.interhand_format``)
    dataset_card.md, dataset_card.json  (``export.card``)
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from handforge_shared.files import (TEMPORARY_SUFFIX, FolderBusy, folder_lock, foreign_names, parse_json, read_error,
                                   replace_held, write_atomic)

log = logging.getLogger("handforge.export")

SAMPLES = "samples"
LABELS = "labels.json"
SPEC_RECORD = "export_spec.json"  # what the folder's samples were made from: a spec or a Blender request
INPUTS = "inputs"  # in it: the files besides the spec the samples were made from (``file_identities``)
HAND_MODEL = "hand_model_identity"  # in it: the hand model the samples were posed with (``run.hand_model_identity``)
GENERATE_WEIGHTS = "generate_weights"  # in it: the image weights of generated RGB (``generated_rgb.weights_identity``)
DIGEST = "blender_request"  # in a Blender request's record: a digest of it all (``blender_scene.request_record``)
SETTINGS = "settings"  # beside it: the request's settings as the user set them, for a refusal to name (since 2026-12)
# what a spec's record holds besides the spec (checked on their own on resume): left out when it is read as a spec
RECORD_ONLY = (INPUTS, HAND_MODEL, GENERATE_WEIGHTS)
PARTIAL_PREFIX = ".partial-"
INTERHAND = "interhand"  # the InterHand2.6M-style files' folder
COCO_FILE, CONTACT_SHEET = "coco.json", "contact_sheet.png"
CARD_JSON, CARD_MD = "dataset_card.json", "dataset_card.md"
# everything an export writes at the top of its folder (besides hidden temporary files)
DATASET_ENTRIES = frozenset({SPEC_RECORD, SAMPLES, INTERHAND, COCO_FILE, CONTACT_SHEET, CARD_JSON, CARD_MD})


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
    from handforge.export.spec import without_unused

    mutable = ("samples", *RECORD_ONLY)
    wanted = without_unused({k: v for k, v in record.items() if k not in mutable})
    if path.is_file() and not any_finished(out):
        # a run that finished no sample (each failed: a wrong spec, a full disk) holds nothing to mix with: its
        # record blocked the corrected spec's run ("holds an export of another spec") in a folder with no sample
        held = _held_record(out)
        held_spec = without_unused({k: v for k, v in held.items() if k not in mutable}) if isinstance(held, dict) \
            else None
        if write and held_spec != wanted:
            log.warning(f"{out}: the export of another {what.split(',')[0]} recorded there finished no sample: "
                        "this one replaces it")
    elif path.is_file():
        held = _held_record(out)
        if not isinstance(held, dict):  # (said as "another spec, differing: all", to be rerun with "that spec")
            raise FolderTaken(f"{path} cannot be read as the record of the export this folder holds "
                              f"({_unreadable(path)}): its samples cannot be resumed without it; restore the file, "
                              "or choose a new or an empty folder")
        # (keys a spec's source does not use compare at their defaults: refused now, they were accepted unread)
        held_spec = without_unused({k: v for k, v in held.items() if k not in mutable})
        if SETTINGS not in held_spec:  # recorded before the settings were: the digest covers them
            wanted.pop(SETTINGS, None)
        if held_spec != wanted:
            differ = _named_differences(held_spec, wanted)
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
        # (what a folder recorded before the device and dtype were is compared: those it lacks, not)
        changed = [k for k in sorted(weights or {}) if k in (held_weights or {}) and held_weights[k] != weights[k]]
        if changed and set(changed) <= {"device", "dtype"}:
            raise FolderTaken(f"{out} holds images generated on another device ({', '.join(changed)}: "
                              f"{held_weights[changed[0]]} then): resuming would mix images their seeds cannot "
                              "reproduce; resume where they were made (cuda: a machine with a GPU, or --ray with "
                              "--gpus-per-worker; cpu: one without, or --ray without it), or choose a new folder")
        if changed:
            raise FolderTaken(f"{out} holds images generated with other weights ({', '.join(changed)}: "
                              f"{held_weights[changed[0]]} then): resuming would mix two models' images; set them "
                              "back to resume, or choose a new folder")
        if "samples" in record:
            refuse_beyond(out, out, record["samples"])
    else:
        if not os.path.lexists(path) and any_finished(out) and (out / CARD_JSON).is_file():
            # (was "not empty and holds no HandForge export", of a dataset whose card and samples are there); a
            # Blender export's record is its request's digest, which its card cannot give back
            fix = (f"the card's 'spec' ({CARD_JSON}) is the spec it was made from; write it into {SPEC_RECORD} to "
                   "resume" if what == "spec" else f"restore {SPEC_RECORD} from a copy to resume")
            raise FolderTaken(f"{out} holds an export's samples and card but not its record, {SPEC_RECORD}: {fix}, "
                              "or choose a new or an empty folder")
        refuse_foreign_files(out)
    if write:
        write_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def refuse_beyond(out: Path, dataset: Path, count: int, unit: str = "sample(s)", asked: str = "samples") -> None:
    """``FolderTaken`` when ``dataset`` (a folder of ``samples/``, in ``out``) holds finished samples from index
    ``count`` on: asked for fewer than it holds, a run would leave them out of its dataset's files, or train on
    them unasked (``unit``: what they are to the user; ``asked``: the count's name)."""
    beyond = [int(p.parent.name) for p in (dataset / SAMPLES).glob(f"*/{LABELS}")
              if p.parent.name.isdigit() and int(p.parent.name) >= count]
    if beyond:  # the count to ask for is said: "as many as are there" left the user to count the folders
        raise FolderTaken(f"{out} holds {len(beyond)} finished {unit} beyond the {count} asked for (up to index "
                          f"{max(beyond)}): ask for at least {max(beyond) + 1} {asked}, or choose another folder")


def refuse_foreign_files(out: Path, holds: str = "HandForge export",
                         empty_folders: tuple[str, ...] = (SAMPLES,)) -> None:
    """``FolderTaken`` when ``out``, which records no ``holds`` (an export, pose-transfer pairs), is not empty: its
    files are someone else's (a thesis, another dataset), which the run would write beside. Hidden names are left
    out (.DS_Store, which a Mac's Finder adds to a new folder, or a record's temporary file of a run killed while
    it wrote it), and so are ``empty_folders`` left empty: nothing a run could mix with."""
    named = foreign_names(out, empty_folders=empty_folders)
    if named:
        raise FolderTaken(f"{out} is not empty and holds no {holds} ({named}): choose a new or an empty folder")


MTIME_SETTLED_NS = 2 * 10**9  # a file's time is recorded once it is this old (``file_identities``)


def _blake2b(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


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
            digest = _blake2b(path)
        identities[name] = {"bytes": stat.st_size, "blake2b": digest}
        # a file modified moments ago may be rewritten within the same clock tick, its time unchanged:
        # its time is not recorded, so the next run reads it again
        if now - stat.st_mtime_ns > MTIME_SETTLED_NS:
            identities[name]["mtime_ns"] = stat.st_mtime_ns
    return identities


class InputsEdited(ValueError):
    """An input file changed while an export ran (``InputWatch.after``): the run's samples were removed."""


def input_stamps(files: dict[str, Path]) -> dict[str, tuple[int, int] | None]:
    """Each input file's size and modification time now (None: gone or unreadable), by the spec's name for it."""
    stamps: dict[str, tuple[int, int] | None] = {}
    for name, path in files.items():
        try:
            stat = path.stat()
            stamps[name] = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamps[name] = None
    return stamps


REMOVING = ".removing-samples.json"  # the samples a run is removing (``remove_samples``); ``clean_partial`` finishes


def edited_inputs(before: dict[str, tuple[int, int] | None], inputs: dict[str, Any],
                  files_now: Callable[[], dict[str, Path]]) -> list[str]:
    """The input files edited, added or removed since ``before`` (``input_stamps`` as the run began): a file
    whose size or time moved but whose contents still hash to ``inputs``' (the record's ``file_identities``)
    was touched, not edited (a sync tool, a checkout). ``files_now``: the spec's input files as listed now; when
    they cannot be listed (a network folder's hiccup) nothing is said edited, with a warning: the next run's
    record check reads them again."""
    try:
        files = files_now()
    except (OSError, ValueError) as exc:
        log.warning(f"the input files could not be listed again after the run ({exc}); the next run checks them")
        return []
    now = input_stamps(files)
    edited = sorted(set(before) ^ set(now))
    for name in sorted(set(before) & set(now)):
        if before[name] != now[name] and not (now[name] is not None and _same_contents(files[name], inputs.get(name))):
            edited.append(name)
    return edited


def _same_contents(path: Path, identity: dict[str, Any] | None) -> bool:
    try:
        return identity is not None and _blake2b(path) == identity.get("blake2b")
    except OSError:
        return False


def remove_samples(out: Path, indices: list[int]) -> int:
    """Remove these finished samples; returns how many. Their list is written first (``REMOVING``), so that a
    removal cut short is finished by the next run's ``clean_partial`` rather than leaving some of them taken
    as finished; each is renamed to a hidden partial folder before it is deleted (no half sample)."""
    finished = [i for i in indices if is_finished(out, i)]
    if not finished:
        return 0
    log.warning(f"removing {len(finished)} sample(s) of this run")
    write_atomic(out / REMOVING, json.dumps(finished) + "\n")
    for index in finished:
        final = sample_dir(out, index)
        partial = final.parent / f"{PARTIAL_PREFIX}{final.name}"
        shutil.rmtree(partial, ignore_errors=True)
        if final.is_dir():
            replace_held(final, partial)
        shutil.rmtree(partial, ignore_errors=True)
    (out / REMOVING).unlink(missing_ok=True)
    return len(finished)


class InputWatch:
    """The input files of one run: their size and time taken when it is made (before the record hashes them, so
    that an edit from then on is seen), checked after the run (``after``) and, around the making of samples,
    when the run stops (``on_stop``: Ctrl-C, a full disk, a cancel). ``files_now``: the spec's input files as
    listed now (``spec.input_files``)."""

    def __init__(self, files_now: Callable[[], dict[str, Path]]) -> None:
        self.files_now, self.before = files_now, input_stamps(files_now())

    def after(self, out: Path, record: dict[str, Any], made: list[int], stopped: bool = False) -> None:
        """When an input file was edited, added or removed while the run went on (``edited_inputs``), the samples
        the run made (``made``) could show the files as they were in some and as they are in others: they are
        removed (``remove_samples``) and ``InputsEdited`` says so; after a run that ``stopped`` a warning says it
        instead, the stop's own error following. (Workers read the files as they draw them, and the record,
        hashed as the run began, would take the files put back on the next run: an edit mid-run ended in exit
        status 0 with two datasets in one.)"""
        edited = edited_inputs(self.before, record.get(INPUTS, {}), self.files_now)
        if not edited:
            return
        removed = remove_samples(out, made)
        shown = ", ".join(edited[:3]) + (f" and {len(edited) - 3} more" if len(edited) > 3 else "")
        message = (f"{shown} changed while this export ran (added, removed, or new contents): the {removed} "
                   "sample(s) it made were removed, as some could show the files as they were and some as they are "
                   "now; put the files back as they were and export again to make them anew, or export into a new "
                   "folder to use the files as they are now")
        if stopped:
            log.warning(message)
            return
        raise InputsEdited(message)

    @contextlib.contextmanager
    def on_stop(self, out: Path, record: dict[str, Any], made: list[int]) -> Iterator[None]:
        """A stop keeps the samples made, unless an input was edited: then they go too, said in a warning."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # (the stop's own error is the one to say)
                self.after(out, record, made, stopped=True)
            raise


def _held_record(out: Path) -> Any:
    """The folder's ``SPEC_RECORD`` as parsed JSON, None when missing or unreadable."""
    try:
        return parse_json((out / SPEC_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _unreadable(path: Path) -> str:
    """Why ``path`` is no record: its read or parse error, or what it holds instead of an object."""
    try:
        value = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return read_error(exc)
    return f"it holds a JSON {type(value).__name__}, not an object"


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


def _named_differences(held: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``_differences``, a Blender request's digest said in words: left out where settings that differ are
    named, else what it covers besides them (a hash named nothing the artist could change back)."""
    found = _differences(held, wanted)
    named = [d for d in found if not d.startswith(f"{DIGEST}:")]
    if len(named) == len(found):
        return found
    if SETTINGS not in held:  # recorded before the settings were: the digest is all there is to compare
        return named + ["the hands' keys or placement, the cameras, the frames or the settings"]
    return named or ["the hands' keys or placement, or the cameras, over the exported frames"]


def _differences(held: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Each key that differs between two records, down to nested keys ("render.samples: 4 → 16"; "render"
    alone named nothing the user could find), with the two values (a long one around where they differ)."""
    absent = object()
    found = []
    for key in sorted(set(held) | set(wanted)):
        a, b = held.get(key, absent), wanted.get(key, absent)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        else:
            texts = ["(absent)" if v is absent else json.dumps(v) for v in (a, b)]
            changed = _list_change(a, b) if isinstance(a, list) and isinstance(b, list) else None
            if not changed or max(len(t) for t in texts) <= AROUND_WIDTH:  # (short lists read best whole)
                changed = " → ".join(_around_difference(*texts))
            found.append(f"{prefix}{key}: {changed}")
    return found


AROUND_WIDTH = 40  # characters of a long value shown around where two differ
LIST_CHANGE_WIDTH = 100  # characters of a list's added and removed items, at most (then "and N more")


def _list_change(held: list, wanted: list) -> str | None:
    """What ``wanted`` adds to and removes from ``held`` ('"rgb" added; "thumbs_up" removed'), within about
    ``LIST_CHANGE_WIDTH`` characters; None when only the order differs. Cut around its first difference, a
    long list lost the item that differs (an output added first, a clip added after long paths)."""
    def without(items: list, others: list) -> list:
        # counted, not searched in a list: a spec may list thousands of clips
        left = collections.Counter(json.dumps(o, sort_keys=True) for o in others)
        kept = []
        for item in items:
            text = json.dumps(item, sort_keys=True)
            if left[text]:
                left[text] -= 1
            else:
                kept.append(text)
        return kept

    parts, room = [], LIST_CHANGE_WIDTH
    for texts, verb in ((without(wanted, held), "added"), (without(held, wanted), "removed")):
        if not texts:
            continue
        shown = []
        for text in texts:
            text = text if len(text) <= 60 else f"{text[:20]}…{text[-39:]}"  # (a path's end names its file)
            if shown and len(text) + 2 > room:
                break
            shown.append(text)
            room -= len(text) + 2
        more = f" and {len(texts) - len(shown)} more" if len(shown) < len(texts) else ""
        parts.append(f"{', '.join(shown)}{more} {verb}")
    return "; ".join(parts) or None


def _around_difference(a: str, b: str, width: int = AROUND_WIDTH) -> tuple[str, str]:
    """Two texts shortened to ``width`` characters around where they first differ."""
    if max(len(a), len(b)) <= width:
        return a, b
    start = max(0, next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) - width // 4)
    return tuple(("…" if start else "") + t[start:start + width] + ("…" if len(t) > start + width else "")
                 for t in (a, b))


def sample_dir(out: Path, index: int) -> Path:
    return out / SAMPLES / f"{index:06d}"


def is_finished(out: Path, index: int) -> bool:
    return (sample_dir(out, index) / LABELS).is_file()


def being_removed(out: Path) -> list[int]:
    """The samples a removal cut short listed (``REMOVING``), which the next run's ``clean_partial`` removes
    ([] without a readable list: none is removed then)."""
    try:
        listed = json.loads((out / REMOVING).read_text())
    except (OSError, ValueError):
        return []
    return [i for i in listed if isinstance(i, int) and not isinstance(i, bool)] if isinstance(listed, list) else []


def clean_partial(out: Path) -> int:
    """Remove what an interrupted run left half-written (samples, and ``write_atomic``'s temporary
    files of the aggregate files); returns how many."""
    root = out / SAMPLES
    removing = 0
    if (out / REMOVING).is_file():  # a removal cut short (``remove_samples``): finished first
        with contextlib.suppress(OSError, ValueError, TypeError):
            removing = remove_samples(out, being_removed(out))
        (out / REMOVING).unlink(missing_ok=True)
    stale = list(root.glob(PARTIAL_PREFIX + "*")) if root.is_dir() else []
    removed = sum(_remove_partial(path) for path in stale)
    # the aggregate files: at the top and in the InterHand2.6M-style tree (not among the samples)
    pattern = f".*{TEMPORARY_SUFFIX}"  # write_atomic's files of a run killed while it wrote them
    temporary = [p for p in [*out.glob(pattern), *(out / INTERHAND).rglob(pattern)] if p.is_file()]
    for path in temporary:
        path.unlink(missing_ok=True)
    return removing + removed + len(temporary)


REMOVED_SUFFIX = ".removed"  # a partial folder's name once a removal took it (``_remove_partial``)


def _remove_partial(path: Path) -> bool:
    """Remove a half-written sample folder, renamed to a name of its own first: its writer may be alive (a Ray
    actor stopped as hung writes on until ``ray.kill`` reaches it) and rename it into place meanwhile. Removed file
    by file through the open folder, the files went on being removed from the sample put in place: an empty or
    partial sample its writer had reported written. Renamed, it is either this removal's or its writer's. Whether
    it was this removal's and is gone (one put in place meanwhile, or one that could not be removed, is not counted
    as removed).

    A folder a removal renamed before, which it could not finish (a file that cannot be deleted, as on NFS while
    another host holds it open), is removed where it is: its writer lost it at that rename. Renamed again with a
    new suffix at every run, its name grew without bound."""
    doomed = path
    if not path.name.endswith(REMOVED_SUFFIX):
        doomed = path.with_name(f"{path.name}{REMOVED_SUFFIX}")  # (still a partial: a later run finishes it)
        try:
            os.rename(path, doomed)
        except FileNotFoundError:  # put in place by its writer, or removed by it
            return False
        except OSError:  # e.g. a file held open on Windows, where a folder cannot be renamed then (or a leftover of
            doomed = path  # the same name, from remove_samples' fixed one): removed in place
    shutil.rmtree(doomed, ignore_errors=True)
    if doomed.exists():
        log.warning(f"{doomed}, a sample an interrupted run left half-written, could not be removed entirely (a "
                    "file in it could not be deleted): the next run tries again, or remove it yourself")
        return False
    return True


@contextlib.contextmanager
def claimed_folder(out: Path, record: dict[str, Any], record_of: str = "spec") -> Iterator[int]:
    """The dataset folder every export writes through: ``out`` made if needed, locked for this run
    (``run_lock``), claimed for ``record`` (``claim_folder``) and cleared of what interrupted runs left
    half-written (yields how many). A run refused or failed before it wrote a sample leaves the folder
    as it found it (no record, and no folder if it made it); one refused because another run holds the
    folder touches nothing of it."""
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before Python 3.13)
        raise FolderTaken(f"cannot write into {out}: {exc}; choose a folder you can write to") from None
    outer = next((p for p in resolved.parents if (p / SPEC_RECORD).is_file() and (p / SAMPLES).is_dir()), None)
    if outer is not None:  # (its resume said nothing of a whole dataset inside it)
        raise FolderTaken(f"{out} is inside the dataset {outer}: choose a folder outside it")
    created = not out.exists()
    if created and out.is_symlink():  # (mkdir said "cannot write into out: File exists")
        raise FolderTaken(f"{out} is a link to {out.parent / os.readlink(out)}, which does not exist: make that "
                          "folder, or choose another")
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


def any_finished(out: Path) -> bool:
    """Whether ``out`` holds a finished sample (one with its labels), whatever its index."""
    root = out / SAMPLES
    return root.is_dir() and any(p.parent.name.isdigit() for p in root.glob(f"*/{LABELS}"))


def finished_indices(out: Path, count: int) -> list[int]:
    """The finished samples' indices below ``count``, in order: the dataset's own folders only (named as
    ``sample_dir`` names them): a copy such as "000003 copy" was read as one more sample, a duplicate id,
    and a sample from index 1,000,000 on (seven digits) was left out of every aggregate file."""
    root = out / SAMPLES
    if not root.is_dir():
        return []
    names = (p.parent.name for p in root.glob(f"*/{LABELS}"))
    return sorted(int(name) for name in names if _is_sample_name(out, name) and int(name) < count)


def unfinished_names(out: Path) -> list[str]:
    """The names of the dataset's own sample folders (as ``finished_indices`` takes them) without their labels: being
    written, or the labels deleted since."""
    root = out / SAMPLES
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_sample_name(out, p.name)
                  and not (p / LABELS).exists()) if root.is_dir() else []


def _is_sample_name(out: Path, name: str) -> bool:
    """Whether ``name`` is a sample folder's as ``sample_dir`` names it (not "000003 copy", nor "7")."""
    return name.isascii() and name.isdigit() and sample_dir(out, int(name)).name == name


def pending_indices(out: Path, count: int, limit: int | None = None, finished: set[int] | None = None) -> list[int]:
    """The samples below ``count`` not finished yet, in order, from one listing of the finished ones (a
    file check per index took 10 s a million samples before a run's first sample, which looked hung). Those a
    removal cut short listed are not finished: the next run removes them first (the checks for Blender before a
    run counted them finished, and let through without Blender a run that renders them again). ``limit``: the
    first that many; ``finished``: ``finished_now``'s set, when the caller has it already."""
    finished = finished_now(out, count) if finished is None else finished
    return list(itertools.islice((index for index in range(count) if index not in finished), limit))


def finished_now(out: Path, count: int) -> set[int]:
    """The finished samples' indices below ``count``, less those a removal cut short listed (``pending_indices``)."""
    return set(finished_indices(out, count)) - set(being_removed(out))
