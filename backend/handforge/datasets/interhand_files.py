"""Readers for InterHand2.6M's JSON files (CC BY-NC 4.0; the data is never shipped); numpy only.

``handforge.datasets.interhand`` finds them in the dataset's split folders.

``InterHand2.6M_{split}_MANO_NeuralAnnot.json``::

    {capture_id: {frame_idx: {"right": {"pose": [48], "shape": [10], "trans": [3]} | null,
                              "left":  ... | null}}}

``pose`` is the world-frame axis-angle of the wrist (3) and the 15 finger joints (45), ``trans``
is in metres. A hand is missing when its value is ``null`` or its key is absent. The finger pose is
*mean-relative* (the dataset was fitted with smplx's default ``flat_hand_mean=False``), and the
means live in the MANO files, which this module cannot read: the readers return mean-relative
poses tagged ``extra["pose_convention"] = "mean_relative"`` unless you pass ``hands_mean`` (per
side, (45,), e.g. ``ManoModel.hands_mean_arrays()``), and ``to_flat`` converts later. The
formula lives in ``mano_params``. Use these poses with the MANO hand model (``hand_model="mano"``).

``InterHand2.6M_{split}_camera.json``::

    {capture_id: {"campos": {cam: [3] mm}, "camrot": {cam: 3x3}, "focal": {cam: [fx, fy]},
                  "princpt": {cam: [cx, cy]}}}

becomes OpenCV cameras in metres: ``X_cam = R X_world + t`` with ``t = -R campos / 1000``.

Files are read a megabyte of text and one capture at a time (``_Document``), never whole.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Generator, Iterator, Mapping, NoReturn

import numpy as np

from handforge_shared.files import NestedTooDeeply, raw_decode_json
from handforge_shared.mano_params import FLAT, MEAN_RELATIVE, flat_from_mean_relative
from handforge_shared.poses import MAX_ROTATION, HandPose, MotionClip, PoseFormatError, TwoHandPose, overturned
from handforge_shared.protocol import unique_keys
from handforge_shared.skeleton import HAND_POSE_DIM, NUM_BETAS, SIDES, Side

SOURCE = "InterHand2.6M MANO_NeuralAnnot"
MM_PER_M = 1000.0

# capture id → frame index → the hands annotated in that frame
ManoAnnotations = dict[str, dict[int, dict[Side, HandPose]]]


CHUNK_BYTES = 1 << 20  # read at a time (a value longer than the text held reads as much again)


class _Members:
    """The members of one JSON object of a file, read as they are iterated (``_Document``)."""

    def __init__(self, members: Iterator[tuple[str, Any]]) -> None:
        self._members = members

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._members


class _Document:
    """A JSON file whose value is an object, read member by member: a release file's text and object
    tree were held whole by ``json.load`` (about three times the file) before one array was made; here
    a megabyte of text and one member's objects are. Values are parsed by ``json``'s own decoder, so
    numbers, strings, nesting limits and errors are the standard library's. (ijson, the streaming parser
    on PyPI, was tried first: its prefixes cost memory quadratic in the nesting: 1 GB for 40 kB of 20,000
    nested brackets, and 100,000 of them got the process killed for memory.)"""

    WHITESPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.text, self.at, self.ended = fh, "", 0, False
        self.consumed = self.lines = 0  # characters and line breaks before ``text``
        self.utf8 = codecs.getincrementaldecoder("utf-8-sig")()  # (a byte-order mark is dropped)
        self.bytes_read = 0
        self.decoder = json.JSONDecoder(object_pairs_hook=unique_keys)

    def members(self, nested: bool = False) -> Iterator[tuple[str, Any]]:
        """(key, value) of the file's object in file order. With ``nested``, a value that is an object
        comes as ``_Members``, read as it is iterated (before the next member)."""
        first = self._peek()
        if first == "":
            self._fail("the file is empty")
        if first != "{":  # named by its first character: a 2 GB array is not read to say it is a list
            kind = {"[": "an array", '"': "a string", "t": "true", "f": "false", "n": "null"}.get(
                first, "a number" if first in "-0123456789" else None)
            if kind is None:
                self._fail("Expecting value")  # (json's words)
            raise _NotAnObject(kind)
        yield from self._object(nested)
        if self._peek() != "":
            self._fail("extra data after the object")

    def _object(self, nested: bool) -> Iterator[tuple[str, Any]]:
        self.at += 1  # the "{"
        if self._peek() == "}":
            self.at += 1
            return
        seen: set[str] = set()
        while True:
            if self._peek() != '"':
                self._fail("expected a key in double quotes")
            key = self._value()
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
            if self._peek() != ":":
                self._fail("expected ':' after a key")
            self.at += 1
            if nested and self._peek() == "{":
                inner = self._object(False)
                yield key, _Members(inner)
                for _ in inner:  # the rest of it, if the reader stopped early
                    pass
            else:
                yield key, self._value()
            separator = self._peek()
            if separator not in (",", "}"):
                self._fail("expected ',' or '}' after a value")
            self.at += 1
            if separator == "}":
                return

    def _more(self) -> bool:
        """Read on, keeping the text not yet consumed; False at the end of the file."""
        if self.ended:
            return False
        while True:  # (a piece can end inside a character: then nothing is decoded yet)
            raw = self.fh.read(max(CHUNK_BYTES, len(self.text) - self.at))
            held = len(self.utf8.getstate()[0])
            try:
                chunk = self.utf8.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:  # its position counts from the piece: said from the file's start
                at = self.bytes_read - held + exc.start + (3 if self.bytes_read == 0 and raw[:3] == codecs.BOM_UTF8 else 0)
                raise _Malformed(f"not UTF-8 text ({exc.reason}): byte {at + 1} of the file") from None
            self.bytes_read += len(raw)
            if chunk or not raw:
                break
        if not chunk:
            self.ended = True
            return False
        self.consumed += self.at
        self.lines += self.text.count("\n", 0, self.at)
        self.text, self.at = self.text[self.at:] + chunk, 0
        return True

    def _peek(self) -> str:
        """The next character after whitespace, "" at the end of the file."""
        while True:
            self.at = self.WHITESPACE.match(self.text, self.at).end()
            if self.at < len(self.text) or not self._more():
                return self.text[self.at:self.at + 1]

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = raw_decode_json(self.decoder, self.text, self.at)
            except json.JSONDecodeError as exc:
                # cut short by the end of the text read so far (within the longest token, "\uXXXX", of it,
                # or in a string): read on; an error before that is the file's, said without reading on
                cut = exc.pos >= len(self.text) - 8 or exc.msg.startswith("Unterminated string")
                if cut and self._more():
                    continue
                self._fail(exc.msg, exc.pos)
            # a number ending near the end of the text held may go on ("1." of "1.5e10" read as 1.0): read on
            if end > len(self.text) - 32 and self._more():
                continue
            self.at = end
            return value

    def _fail(self, message: str, at: int | None = None) -> NoReturn:
        at = self.at if at is None else at
        line = self.lines + self.text.count("\n", 0, at) + 1
        raise _Malformed(f"{message}: line {line}, character {self.consumed + at + 1} of the file")


class _Malformed(Exception):
    """Not JSON, where and why (``json.JSONDecodeError``'s positions would count from the text held)."""


class _NotAnObject(Exception):
    """The file's JSON value is not an object (its type name)."""


def _members(source: str | os.PathLike | Mapping[str, Any], what: str, nested: bool = False
             ) -> tuple[Generator[tuple[str, Any], None, None], str]:
    """The top-level (key, value) pairs of an InterHand2.6M JSON file, read as they are iterated (see
    ``_Document``; with ``nested`` an object value is ``_Members``), or of its parsed dict; and the name
    to put in errors."""
    if isinstance(source, Mapping):
        return (item for item in source.items()), what
    path = Path(source)
    if not path.is_file():
        raise PoseFormatError(f"{path}: no such file (the InterHand2.6M {what} JSON)")

    def read(members: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        try:
            yield from members
        except (OSError, _Malformed, NestedTooDeeply) as exc:  # (NestedTooDeeply: before the ValueErrors below)
            raise PoseFormatError(f"{path}: not a readable JSON file ({exc})") from None
        except _NotAnObject as exc:
            raise PoseFormatError(f"{path}: expected a JSON object keyed by capture id, got {exc}") from None
        except ValueError as exc:  # unique_keys': "duplicate key '1'"
            raise PoseFormatError(f"{path}: {exc}, a key twice in one object (two annotations of one capture or "
                                  "frame; json keeps the last silently): keep one of them") from None

    def members() -> Iterator[tuple[str, Any]]:
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise PoseFormatError(f"{path}: not a readable JSON file ({exc})") from None
        with fh:
            for key, value in read(_Document(fh).members(nested)):  # a capture's frames are read in turn
                yield key, _Members(read(iter(value))) if isinstance(value, _Members) else value

    return members(), str(path)


def _hand(value: Any, where: str) -> HandPose | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PoseFormatError(f"{where}: expected an object with pose, shape and trans, or null")
    missing = [k for k in ("pose", "shape", "trans") if k not in value]
    if missing:
        raise PoseFormatError(f"{where}: missing {', '.join(missing)}")
    try:  # numbers only: "1e3" as text would read as 1000 (m), true as 1
        raw = {k: np.asarray(value[k]) for k in ("pose", "shape", "trans")}
        # (numpy makes [true, 0.5] numbers: a boolean among numbers is looked for in the list itself)
        if any(a.dtype.kind not in "iuf" for a in raw.values()) or any(
                isinstance(x, (bool, np.bool_)) for k in raw if isinstance(value[k], (list, tuple)) for x in value[k]):
            raise ValueError("found text, booleans or nested values")
        pose, shape, trans = (raw[k].astype(np.float64) for k in ("pose", "shape", "trans"))
    except (TypeError, ValueError) as exc:
        raise PoseFormatError(f"{where}: pose, shape and trans must be lists of numbers ({exc})") from None
    for name, arr, size in (("pose", pose, 3 + HAND_POSE_DIM), ("shape", shape, NUM_BETAS), ("trans", trans, 3)):
        if arr.shape != (size,):
            raise PoseFormatError(f"{where}: {name} must hold {size} numbers, got shape {arr.shape}")
    # MotionClip's bound, here where the frame is known: it named no file, capture or annotated frame
    found = overturned(pose.reshape(-1, 3))
    if found is not None:
        (joint,), angle = found
        raise PoseFormatError(f"{where}: pose[{3 * joint}:{3 * joint + 3}] turns a joint by {angle:g} rad "
                              f"(at most {MAX_ROTATION:g}): rotations are axis-angle radians")
    try:
        return HandPose(global_orient=pose[:3], hand_pose=pose[3:], betas=shape, transl=trans)
    except PoseFormatError as exc:
        raise PoseFormatError(f"{where}: {exc}") from None


def read_mano_annotations(source: str | os.PathLike | Mapping[str, Any]) -> ManoAnnotations:
    """Parse a ``MANO_NeuralAnnot.json`` (path or loaded dict); hand poses stay mean-relative."""
    with closing(_captures(source)) as captures:
        return dict(captures)


def _captures(source: str | os.PathLike | Mapping[str, Any]) -> Iterator[tuple[str, dict[int, dict[Side, HandPose]]]]:
    """Each capture of a ``MANO_NeuralAnnot.json`` (path, loaded dict or parsed annotations) and its
    frames in frame order, one capture at a time: a file is read as it is parsed."""
    if _parsed(source):
        yield from source.items()
        return
    members, name = _members(source, "MANO_NeuralAnnot", nested=True)
    with closing(members):  # the file, when this stops early (an error here or in its reader)
        yield from _parse_captures(members, name)


def _parse_captures(members: Iterator[tuple[str, Any]], name: str
                    ) -> Iterator[tuple[str, dict[int, dict[Side, HandPose]]]]:
    for capture, frames in members:
        if not isinstance(frames, (Mapping, _Members)):
            raise PoseFormatError(f"{name}: capture {capture}: expected an object keyed by frame index")
        parsed: dict[int, dict[Side, HandPose]] = {}
        for frame, hands in frames.items() if isinstance(frames, Mapping) else frames:
            where = f"{name}: capture {capture} frame {frame}"
            if not (isinstance(frame, str) and frame.isascii() and frame.isdigit()):  # int() also reads "1_0", " 3"
                raise PoseFormatError(f"{where}: frame keys must be integers (digits 0-9 only)")
            if len(frame) > 18:  # (int() refuses over 4300 digits with a ValueError; no capture has 10**18 frames)
                raise PoseFormatError(f"{name}: capture {capture} frame {frame[:20]}…: frame index of {len(frame)} "
                                      "digits; frame indices have at most 18")
            index = int(frame)
            if index in parsed:  # "7" and "07": the later one replaced the earlier one unseen
                raise PoseFormatError(f"{where}: frame {index} is annotated twice (two keys read as {index}); "
                                      "keep one of them")
            if hands is None:
                hands = {}
            if not isinstance(hands, Mapping):
                raise PoseFormatError(f"{where}: expected an object with 'right' and/or 'left'")
            unknown = [k for k in hands if k not in SIDES]
            if unknown:
                raise PoseFormatError(f"{where}: unknown hands {unknown}; expected 'right' and 'left'")
            poses = {s: _hand(hands.get(s), f"{where} {s}") for s in SIDES}
            parsed[index] = {s: p for s, p in poses.items() if p is not None}
        yield str(capture), dict(sorted(parsed.items()))


def _hands_mean(hands_mean: Mapping[Side, Any], side: Side) -> np.ndarray:
    if side not in hands_mean:
        raise PoseFormatError(f"hands_mean has no {side} hand; give both sides' means (MANO's hands_mean)")
    mean = np.asarray(hands_mean[side], dtype=np.float64)
    if mean.shape != (HAND_POSE_DIM,) or not np.all(np.isfinite(mean)):
        raise PoseFormatError(f"hands_mean[{side!r}] must be {HAND_POSE_DIM} finite numbers, got shape {mean.shape}")
    return mean


def to_flat(clip: MotionClip, hands_mean: Mapping[Side, Any]) -> MotionClip:
    """A mean-relative clip (``extra["pose_convention"]``) with HandForge's flat hand poses."""
    convention = clip.extra.get("pose_convention", FLAT)
    if convention == FLAT:
        return clip
    if convention != MEAN_RELATIVE:
        raise PoseFormatError(f"unknown pose_convention {convention!r} in the clip's metadata")
    hands = {}
    for side, pose in clip.hands.items():
        flat = flat_from_mean_relative(pose.hand_pose, _hands_mean(hands_mean, side))
        hands[side] = pose.replace(hand_pose=np.where(clip.present[side][:, None], flat, 0.0))
    return replace(clip, hands=hands, extra={**clip.extra, "pose_convention": FLAT})


def capture_clips(source: str | os.PathLike | Mapping[str, Any] | ManoAnnotations, fps: float = 30.0,
                  hands_mean: Mapping[Side, Any] | None = None) -> dict[str, MotionClip]:
    """One ``MotionClip`` per capture: its annotated frames in frame order, with presence masks.

    ``extra`` records the source, the capture id, each clip frame's InterHand2.6M ``frame_indices``
    and the ``pose_convention`` ("flat" when ``hands_mean`` is given, else "mean_relative").
    Captures with no annotated hand at all are left out. ``fps`` is the annotation rate you read
    (30 or 5 for the two InterHand2.6M versions). A HandForge export's file of the open hand's parameters
    (named for it) gives open-hand clips of flat poses.
    """
    hand_model = _exported_hand_model(source)
    # a HandForge export's file of another hand model's parameters: flat poses of that model (its mean is zero)
    convention = MEAN_RELATIVE if hand_model == "mano" else FLAT
    clips = {}
    with closing(_captures(source)) as captures:
        for capture, frames in captures:
            indices = list(frames)
            if not any(frames[i] for i in indices):
                continue
            two_hand = [TwoHandPose(**frames[i]) if frames[i] else None for i in indices]
            clip = _clip(two_hand, fps, {"source": SOURCE, "capture": capture, "frame_indices": indices,
                                         "pose_convention": convention}, hand_model)
            clips[capture] = clip if hands_mean is None else to_flat(clip, hands_mean)
    return clips


def params_kind(hand_model: str) -> str:
    """The kind in the name ``InterHand2.6M_<split>_<kind>.json`` of a file of hand parameters: the release's
    ``MANO_NeuralAnnot`` for MANO, and for another hand model (a HandForge export's) one named for it: code that
    reads a MANO file would pose MANO with the open hand's parameters, centimetres off without a word."""
    return "MANO_NeuralAnnot" if hand_model == "mano" else f"HandForge_{hand_model}_hand_params"


def _exported_hand_model(source: Any) -> str:
    """The hand model of a parameters file by its name (``params_kind``): their clips were tagged MANO and
    mean-relative whatever the file held."""
    if not isinstance(source, (str, os.PathLike)):
        return "mano"
    found = re.fullmatch(r"InterHand2\.6M_.+_HandForge_(\w+?)_hand_params\.json", Path(source).name)
    return found.group(1) if found else "mano"


def frame_poses(source: str | os.PathLike | Mapping[str, Any] | ManoAnnotations,
                hands_mean: Mapping[Side, Any] | None = None) -> dict[tuple[str, int], TwoHandPose]:
    """Every annotated frame with at least one hand, keyed by (capture id, frame index).

    Hand poses are flat when ``hands_mean`` is given, else mean-relative.
    """
    out = {}
    with closing(_captures(source)) as captures:
        for capture, frames in captures:
            for index, hands in frames.items():
                if not hands:
                    continue
                if hands_mean is not None:
                    hands = {s: p.replace(hand_pose=flat_from_mean_relative(p.hand_pose, _hands_mean(hands_mean, s)))
                             for s, p in hands.items()}
                out[(capture, index)] = TwoHandPose(**hands)
    return out


def _parsed(source: Any) -> bool:
    """Whether ``source`` is parsed annotations already (not a path or raw JSON dict)."""
    return isinstance(source, Mapping) and all(
        isinstance(frames, Mapping) and all(
            isinstance(k, int) and isinstance(hands, Mapping) and all(isinstance(p, HandPose) for p in hands.values())
            for k, hands in frames.items())
        for frames in source.values())


def _clip(frames: list[TwoHandPose | None], fps: float, extra: dict[str, Any], hand_model: str = "mano") -> MotionClip:
    sides = [s for s in SIDES if any(f is not None and f.hand(s) is not None for f in frames)]
    hands, present = {}, {}
    for s in sides:
        present[s] = np.array([f is not None and f.hand(s) is not None for f in frames])
        poses = [f.hand(s) if f is not None and f.hand(s) is not None else HandPose.zeros() for f in frames]
        hands[s] = HandPose(**{k: np.stack([getattr(p, k) for p in poses]) for k in ("global_orient", "hand_pose",
                                                                                      "betas", "transl")})
    return MotionClip(hands=hands, present=present, fps=fps, hand_model=hand_model, extra=extra)


# ---------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class InterHandCamera:
    """An InterHand2.6M camera in the OpenCV convention, metres: x_img ~ K (R X_world + t)."""

    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3) world → camera rotation
    t: np.ndarray  # (3,) metres

    @property
    def position(self) -> np.ndarray:
        """The camera centre in world coordinates, metres."""
        return -self.R.T @ self.t

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points in metres → (..., 2) pixel coordinates."""
        cam = np.asarray(points, dtype=np.float64) @ self.R.T + self.t
        uvw = cam @ self.K.T
        return uvw[..., :2] / uvw[..., 2:3]


def read_cameras(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, dict[str, InterHandCamera]]:
    """Parse ``InterHand2.6M_{split}_camera.json`` (path or loaded dict): capture → camera id → camera."""
    members, name = _members(source, "camera")
    with closing(members):
        return _parse_cameras(members, name)


def _parse_cameras(members: Iterator[tuple[str, Any]], name: str) -> dict[str, dict[str, InterHandCamera]]:
    out: dict[str, dict[str, InterHandCamera]] = {}
    for capture, fields in members:
        where = f"{name}: capture {capture}"
        if not isinstance(fields, Mapping) or any(k not in fields for k in ("campos", "camrot", "focal", "princpt")):
            raise PoseFormatError(f"{where}: expected campos, camrot, focal and princpt")
        cams = {}
        for cam in fields["campos"]:
            try:
                pos = np.asarray(fields["campos"][cam], dtype=np.float64).reshape(3)
                rot = np.asarray(fields["camrot"][cam], dtype=np.float64).reshape(3, 3)
                fx, fy = np.asarray(fields["focal"][cam], dtype=np.float64).reshape(2)
                cx, cy = np.asarray(fields["princpt"][cam], dtype=np.float64).reshape(2)
            except (KeyError, TypeError, ValueError) as exc:
                raise PoseFormatError(f"{where} camera {cam}: missing or malformed values ({exc})") from None
            if not all(np.all(np.isfinite(a)) for a in (pos, rot, [fx, fy, cx, cy])):
                raise PoseFormatError(f"{where} camera {cam}: non-finite values")
            if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4):
                raise PoseFormatError(f"{where} camera {cam}: camrot is not a rotation matrix")
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            cams[str(cam)] = InterHandCamera(K=K, R=rot, t=-rot @ pos / MM_PER_M)
        out[str(capture)] = cams
    return out
