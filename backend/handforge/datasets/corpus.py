"""Reading the open corpus (``handforge corpus``) and plain folders of motion clips.

A corpus folder holds ``clips/NNNNNN.npz`` (``MotionClip`` files) and ``splits.json``
(``{"format": SPLITS_FORMAT, "train": [names], "validation": [...], "test": [...]}``). Indexing
reads only each file's small JSON ``meta`` entry (frame count, fps, metadata), never its arrays, so
a 20,000-clip corpus is indexed without holding its 3.7 M frames; ``load`` reads one clip.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence


from handforge.datasets.representation import ClipInfo, DatasetError
from handforge_shared.files import parse_json, read_error
from handforge_shared.mano_params import FLAT
from handforge_shared.poses import MOTION_FORMAT, MotionClip, PoseFormatError, motion_files, read_npz_meta

SPLITS = ("train", "validation", "test")
SPLITS_FORMAT = "handforge.corpus-splits"
CORPUS_SOURCE = "handforge-corpus"
FOLDER_SOURCE = "motion-folder"


def clip_path(folder: str | os.PathLike, name: str) -> Path:
    """Where a corpus folder keeps clip ``name``."""
    return Path(folder) / "clips" / f"{name}.npz"


def read_splits(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Clip names per split from a corpus folder's ``splits.json``."""
    path = Path(folder) / "splits.json"
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; a corpus folder written by `handforge corpus` has one: give "
                           "such a folder (in Python, handforge.datasets.MotionFolder reads a plain folder of clips)")
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # (not UTF-8, not JSON, nested too deeply, a number of 5,000 digits)
        raise DatasetError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SPLITS_FORMAT:
        raise DatasetError(f"{path} is not a HandForge corpus split file (format {SPLITS_FORMAT!r} expected)")
    splits = {}
    for split in SPLITS:
        names = data.get(split, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: '{split}' must be a list of clip names")
        splits[split] = names
    seen: dict[str, str] = {}
    for split, names in splits.items():
        for name in names:
            # a name that was a path ('../../etc/x', '/etc/x') read a file outside the clips folder (and 'a/b'
            # one its split was not found for); a clip file that is a link is the user's own and is followed
            # (a subset of a larger corpus made with links), as is a clips folder that is a link
            if _NOT_A_NAME.search(name):
                raise DatasetError(f"{path}: '{split}' lists {name!r}, which is not a clip name: a clip name is the "
                                   f"name of a file in {path.parent / 'clips'} without .npz (e.g. 000001), never a "
                                   "path")
            if name in seen:
                raise DatasetError(f"{path}: clip {name} is listed twice in '{split}'" if seen[name] == split else
                                   f"{path}: clip {name} is in both '{seen[name]}' and '{split}'")
            seen[name] = split
    return splits


# Not a clip's file name: a path ('../../etc/x', '/etc/x', 'a/b', Windows' 'a\\b' and 'C:x'), '.', '..', '' or NUL
_NOT_A_NAME = re.compile(r"[/\\:\x00]|^\.{0,2}$")


def read_clip_info(path: str | os.PathLike, source: str = FOLDER_SOURCE, split: str | None = None) -> ClipInfo:
    """A clip file's ``ClipInfo`` from its ``meta`` entry alone (the arrays stay compressed on disk)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # (zipfile.is_zipfile(path) would call an unreadable file "no archive")
            archive = zipfile.is_zipfile(fh)
        if not archive:  # np.load then speaks of pickles, which are never read
            raise DatasetError(f"{path}: not a readable motion file (not a .npz archive)")
        meta = read_npz_meta(path)  # its checks: sizes from the headers, a small cap on meta (not a 1.6 GB one)
    except DatasetError:
        raise
    except PoseFormatError as exc:  # names the file already
        raise DatasetError(f"{path}: not a readable motion file ({str(exc).removeprefix(f'{path}: ')})") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable motion file ({read_error(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != MOTION_FORMAT:
        raise DatasetError(f"{path}: not a HandForge motion file (meta format {MOTION_FORMAT!r} expected)")
    frames, fps = meta.get("num_frames"), meta.get("fps")
    if not isinstance(frames, int) or frames < 1 or not isinstance(fps, (int, float)) or not fps > 0:
        raise DatasetError(f"{path}: meta needs a positive integer num_frames and a positive fps")
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    corpus = extra.get("corpus", {})
    problem = corpus_meta_problem(corpus, frames)
    if problem:
        raise DatasetError(f"{path}: meta extra.corpus{problem}: `handforge corpus` writes it so; make the clip "
                           "anew, or remove the clip")
    group = corpus.get("group")
    return ClipInfo(source=source, name=path.stem, split=split, fps=float(fps), num_frames=frames,
                    hand_model=str(meta.get("hand_model")), group=None if group is None else str(group),
                    pose_convention=str(extra.get("pose_convention", FLAT)), extra=extra)


def corpus_meta_problem(corpus: Any, frames: int) -> str:
    """What is wrong with a clip's ``extra["corpus"]`` ('' when nothing), from the field on: its ``contact_frames``
    each ``[first, last, template]`` frames within the clip's ``frames``. Read by training, evaluation and the
    summary, a damaged one ended in a TypeError traceback, or was used as it was (frames 1.5 to 1e9)."""
    if not isinstance(corpus, dict):
        return f" must be a JSON object, got {type(corpus).__name__}"
    spans = corpus.get("contact_frames", [])
    if not isinstance(spans, list):
        return f".contact_frames must be a list of [first, last, template], got {type(spans).__name__}"
    for k, span in enumerate(spans):
        whole = isinstance(span, list) and len(span) == 3 and all(
            isinstance(f, int) and not isinstance(f, bool) for f in span[:2]) and isinstance(span[2], str)
        if not whole:
            return f".contact_frames[{k}] must be [first, last, template] (two whole frame numbers and a name), got " \
                   f"{str(span)[:60]}"
        if not 0 <= span[0] <= span[1] < frames:
            return f".contact_frames[{k}] spans frames {span[0]} to {span[1]}, not within the clip's 0 to {frames - 1}"
    return ""


def load_clip(path: str | os.PathLike) -> MotionClip:
    """One clip file, fully validated; a damaged file raises ``DatasetError`` naming it."""
    try:
        return MotionClip.load(path)
    except PoseFormatError as exc:
        raise DatasetError(str(exc)) from None


@dataclass(frozen=True)
class ClipFiles:
    """An index of clip files: ``clips[i]`` describes ``paths[i]``. Picklable (paths and infos only).

    ``load(i)`` reads clip i; ``iter_clips`` yields ``(info, clip)`` pairs, optionally with a
    progress bar. Build one with ``open_corpus`` or ``open_motion_folder``.
    """

    root: Path
    paths: tuple[Path, ...]
    clips: tuple[ClipInfo, ...]

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_frames(self) -> int:
        return sum(c.num_frames for c in self.clips)

    def load(self, index: int) -> MotionClip:
        clip = load_clip(self.paths[index])
        if clip.num_frames != self.clips[index].num_frames:
            raise DatasetError(f"{self.paths[index]}: changed since it was indexed ({clip.num_frames} frames, "
                               f"the index says {self.clips[index].num_frames}); open the folder again")
        return clip

    def select(self, split: str | Sequence[str] | None = None, max_clips: int | None = None) -> "ClipFiles":
        """The clips of one or more splits (None: all), the first ``max_clips`` of them."""
        keep = select_clips(self.clips, split, max_clips)
        return replace(self, paths=tuple(self.paths[i] for i in keep), clips=tuple(self.clips[i] for i in keep))

    def iter_clips(self, progress: bool = False, desc: str = "clips") -> Iterator[tuple[ClipInfo, MotionClip]]:
        from tqdm import tqdm

        for i in tqdm(range(len(self.clips)), desc=desc, unit="clip", disable=not progress):
            yield self.clips[i], self.load(i)


def select_clips(clips: Sequence[ClipInfo], split: str | Sequence[str] | None, max_clips: int | None) -> list[int]:
    """Indices of the clips in ``split`` (one name, several, or None for all), the first ``max_clips``."""
    return select_indices([c.split for c in clips], split, max_clips)


def select_indices(splits: Sequence[str | None], split: str | Sequence[str] | None,
                   max_clips: int | None) -> list[int]:
    if max_clips is not None and (not isinstance(max_clips, int) or max_clips < 1):
        raise DatasetError(f"max_clips must be a positive integer or None, got {max_clips!r}")
    keep = list(range(len(splits)))
    if split is not None:
        wanted = {split} if isinstance(split, str) else set(split)
        unknown = wanted - set(SPLITS)
        if unknown:
            raise DatasetError(f"unknown split {sorted(unknown)}: use {', '.join(SPLITS)}")
        keep = [i for i in keep if splits[i] in wanted]
    return keep[:max_clips]


def _index(root: Path, paths: list[Path], source: str, split_of: dict[str, str], progress: bool) -> ClipFiles:
    from tqdm import tqdm

    infos = [read_clip_info(p, source, split_of.get(p.stem))
             for p in tqdm(paths, desc="index", unit="clip", disable=not progress)]
    return ClipFiles(root=root, paths=tuple(paths), clips=tuple(infos))


def open_corpus(folder: str | os.PathLike, split: str | Sequence[str] | None = None, max_clips: int | None = None,
                progress: bool = False) -> ClipFiles:
    """Index a corpus folder: the clips listed in ``splits.json``, in name order, each with its split.

    ``split`` keeps one or more splits; ``max_clips`` the first clips (by name) after that. Clip
    files that ``splits.json`` does not list are not part of the corpus and are skipped.
    """
    root = Path(folder).expanduser()
    clip_dir = root / "clips"
    if not root.is_dir():  # (it said "<folder>/clips: no clips folder" of a folder that is not there)
        raise DatasetError(f"{root}: {'a file, not a folder' if root.exists() else 'no such folder'}; give the "
                           "folder `handforge corpus --out` wrote")
    if not clip_dir.is_dir():
        raise DatasetError(f"{clip_dir}: no clips folder; give the folder `handforge corpus --out` wrote")
    split_of = {name: s for s, names in read_splits(root).items() for name in names}
    paths = [clip_path(root, name) for name in sorted(split_of)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{clip_dir}: splits.json lists {len(missing)} clips that are not there "
                           f"(first: {missing[0]}); the corpus is incomplete, write it again")
    return _index(root, _select_paths(paths, split_of, split, max_clips), CORPUS_SOURCE, split_of, progress)


def _select_paths(paths: Sequence[Path], split_of: dict[str, str], split: Any, max_clips: int | None) -> list[Path]:
    """The same selection as ``ClipFiles.select``, made before reading any file."""
    splits = [split_of.get(p.stem) for p in paths]
    return [paths[i] for i in select_indices(splits, split, max_clips)]


def open_motion_folder(folder: str | os.PathLike, max_clips: int | None = None, progress: bool = False) -> ClipFiles:
    """Index every ``*.npz`` motion clip of a folder (exported or generated clips); no splits."""
    root = Path(folder).expanduser()
    if not root.is_dir():  # (a file was said to be no such folder)
        raise DatasetError(f"{root}: a file, not a folder of motion clips (.npz)" if root.exists() else
                           f"{root}: no such folder")
    try:
        paths = motion_files(root)
    except PoseFormatError as exc:
        raise DatasetError(str(exc)) from None
    paths = [paths[i] for i in select_indices([None] * len(paths), None, max_clips)]
    if not paths:
        raise DatasetError(f"{root}: no motion clips (.npz) in this folder")
    return _index(root, paths, FOLDER_SOURCE, {}, progress)
