"""A 2D hand-landmark detector on images, and how far its keypoints lie from our labels.

The detector is MediaPipe Hands (Zhang et al. 2020, arXiv:2006.10214; its legacy
``mediapipe.solutions.hands``, whose palm-detection and landmark models ship inside the wheel: nothing
is downloaded). AttentionHand (Park et al., ECCV 2024, arXiv:2407.18034, Table 1 and supplement D.2)
scores generated hand images with it: the hand confidence and the MSE-2D between its keypoints and
the keypoints the image was conditioned on.

API (``handforge eval image`` and other engines' evaluations use only these):

    detect(image) -> list[DetectedHand]                 RGB uint8 (H, W, 3) image
    match(detected, labelled) -> {side: DetectedHand}   labelled: {side: (21, 2) pixels}
    keypoint_errors(predicted, labelled, box) -> KeypointErrors

Keypoints are in our order (``handforge_shared.skeleton.KEYPOINT_NAMES``, InterHand2.6M's) and in
pixels with ``handforge.render.camera``'s convention: (0, 0) the image's top-left corner, pixel
centres at i + 0.5. MediaPipe's normalised landmarks are fractions of the image's width and height
measured from that same corner, so pixels = fraction × size with no half-pixel shift.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from handforge_shared.skeleton import KEYPOINT_NAMES

INSTALL_HINT = 'pip install "handforge[landmarks]" (mediapipe 0.10.21; scripts/dev.py installs it)'

# MediaPipe Hands' 21 landmarks: the wrist, then per finger from the base to the tip (its model card).
MEDIAPIPE_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}{joint}" for finger in ("thumb", "index", "middle", "ring", "pinky") for joint in (1, 2, 3, 4))
# OURS_FROM_MEDIAPIPE[i]: the MediaPipe landmark that is our keypoint i
OURS_FROM_MEDIAPIPE: tuple[int, ...] = tuple(MEDIAPIPE_NAMES.index(name) for name in KEYPOINT_NAMES)

PCK_THRESHOLD = 0.1  # PCK@0.1: a keypoint is correct within 10 % of the hand box's diagonal


class LandmarkError(RuntimeError):
    """The detector cannot run (MediaPipe missing) or was given an unusable image."""


@dataclass(frozen=True)
class DetectedHand:
    side: str                # "left" or "right": the person's hand, as our labels name it
    score: float             # MediaPipe's handedness confidence (its "hand confidence")
    keypoints: np.ndarray    # (21, 2) float pixels, our keypoint order


@dataclass(frozen=True)
class KeypointErrors:
    mean_px: float           # mean Euclidean distance over the 21 keypoints, pixels
    mean_normalised: float   # the same divided by the hand box's diagonal
    mse_2d: float            # mean squared distance, pixels² (see ``keypoint_errors``)
    pck: float               # fraction of keypoints within PCK_THRESHOLD × the box diagonal
    per_keypoint_px: np.ndarray  # (21,) distances in our keypoint order

    def as_dict(self) -> dict:
        return {"mean_px": self.mean_px, "mean_normalised": self.mean_normalised, "mse_2d": self.mse_2d,
                f"pck@{PCK_THRESHOLD:g}": self.pck,
                "per_keypoint_px": {n: float(d) for n, d in zip(KEYPOINT_NAMES, self.per_keypoint_px)}}


# What MediaPipe's C++ (TFLite, absl) writes to fd 2 on every run, past Python's logging and deaf to
# GLOG_minloglevel / TF_CPP_MIN_LOG_LEVEL (absl's own logging, measured with mediapipe 0.10.21): said for
# nothing, it alarmed `handforge eval image`'s users. Only these lines are dropped; any other is kept.
_NATIVE_NOISE = re.compile(
    r"Created TensorFlow Lite XNNPACK delegate|All log messages before absl::InitializeLog|"
    r"inference_feedback_manager\.cc.*single signature|landmark_projection_calculator\.cc.*NORM_RECT without|"
    # where EGL is there (EGL_PLATFORM set, as the GL renderer sets it), its GL context's start
    r"gl_context_egl\.cc.*Successfully initialized EGL|gl_context\.cc.*GL version:")


_FD2_LOCK = threading.Lock()
_LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def native_noise_dropped():
    """fd 2 inside the block, passed on line by line as it comes, less MediaPipe's routine lines
    (``_NATIVE_NOISE``): through a pipe and a thread, not held until the block ends. The words of a crash that
    comes some time after them reach the terminal; those of one that aborts at once (an absl CHECK writes its
    line and aborts) die with the thread that would pass them on: with debug logging (``handforge -v``) fd 2 is
    left alone, MediaPipe's every line shown. One block at a time: two threads' blocks interleaved would leave
    fd 2 on the first one's closed pipe (the second restores what it found)."""
    if _LOG.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    with _FD2_LOCK:
        saved = os.dup(2)
        read_end = write_end = forwarder = None
        try:
            read_end, write_end = os.pipe()
            # the forwarder owns its ends (the pipe's reading end, a copy of the terminal's) and closes them: a
            # child process the block started may hold the pipe past the block, and it forwards that to its end
            out = os.dup(saved)
            try:
                thread = threading.Thread(target=_forward, args=(read_end, out), name="fd2-forwarder", daemon=True)
                thread.start()
            except BaseException:
                os.close(out)
                raise
            forwarder, read_end = thread, None  # (its own now)
            os.dup2(write_end, 2)
            os.close(write_end)
            write_end = None
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)  # (the pipe's last write end, unless a child holds it: the forwarder reads to its end)
            for fd in (saved, read_end, write_end):  # (the pipe's ends where the forwarder never took them)
                if fd is not None:
                    os.close(fd)
            if forwarder is not None:  # what the block wrote reaches the terminal before what comes after it
                forwarder.join(timeout=1.0)


def _forward(read_end: int, out: int) -> None:
    """Lines from ``read_end`` to ``out``, MediaPipe's routine lines dropped, until the pipe's end; it always drains
    the pipe (a writer to a full pipe nobody reads blocks for good), and closes both when done."""
    pending = b""
    try:
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = [line + b"\n" for line in lines if not _NATIVE_NOISE.search(line.decode(errors="replace"))]
            _write_all(out, b"".join(kept))
        if pending and not _NATIVE_NOISE.search(pending.decode(errors="replace")):
            _write_all(out, pending)
    finally:
        os.close(read_end)
        os.close(out)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # (a terminal gone: what is left is dropped, and the pipe still drained)
        pass


_PROCESS_LOCK = threading.Lock()  # one MediaPipe graph per threshold, shared: it is not thread-safe


@lru_cache(maxsize=2)
def _hands(min_confidence: float):
    try:
        from mediapipe.python.solutions import hands as mp_hands
    except ImportError as exc:
        raise LandmarkError(f"the hand-landmark detector needs MediaPipe ({exc}); install it: {INSTALL_HINT}") from exc
    # static_image_mode: every image is detected afresh (no tracking between unrelated images). The graph's
    # calculators open on its own threads after it is made (TFLite's XNNPACK line among their words, once out of
    # the block in a full test run): a first image, waited for, keeps their opening inside the block
    with native_noise_dropped():
        hands = mp_hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1,
                               min_detection_confidence=min_confidence)
        hands.process(np.zeros((32, 32, 3), np.uint8))
        return hands


def detect(image: np.ndarray, min_confidence: float = 0.5) -> list[DetectedHand]:
    """Hands MediaPipe finds in an RGB uint8 image (H, W, 3); an empty list when it finds none."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise LandmarkError(f"detect() needs an RGB uint8 image of shape (H, W, 3), got {image.dtype} "
                            f"{image.shape} (drop an alpha channel with image[..., :3])")
    height, width = image.shape[:2]
    hands = _hands(float(min_confidence))
    with _PROCESS_LOCK, native_noise_dropped():
        result = hands.process(np.ascontiguousarray(image))
    found = []
    for landmarks, handedness in zip(result.multi_hand_landmarks or (), result.multi_handedness or ()):
        fractions = np.array([(p.x, p.y) for p in landmarks.landmark], np.float64)
        best = handedness.classification[0]
        # MediaPipe names handedness as seen in a mirrored (selfie) image; our renders are not
        # mirrored, so its "Left" is the person's right hand (tests/test_landmarks.py checks this).
        side = "right" if best.label == "Left" else "left"
        found.append(DetectedHand(side, float(best.score),
                                  fractions[list(OURS_FROM_MEDIAPIPE)] * np.array([width, height], np.float64)))
    return found


def _box_diagonal(keypoints: np.ndarray, box=None) -> float:
    """The diagonal of an [x, y, width, height] box, else of the keypoints' bounding box."""
    if box is not None:
        return float(np.hypot(box[2], box[3]))
    return float(np.linalg.norm(keypoints.max(0) - keypoints.min(0)))


def keypoint_errors(predicted: np.ndarray, labelled: np.ndarray, box=None, visible=None,
                    threshold: float = PCK_THRESHOLD) -> KeypointErrors:
    """Distances between two (21, 2) pixel keypoint sets, normalised by ``box`` ([x, y, w, h], the
    labelled hand's; default: the labelled keypoints' bounding box). ``visible`` (21,) bool: the means
    and PCK@``threshold`` over those keypoints only (NaN when none is); default every keypoint.

    ``mse_2d`` follows AttentionHand's MSE-2D (arXiv:2407.18034): the mean over keypoints of the
    squared 2D distance. The paper gives neither its unit nor a normalisation; ours is pixels², so
    it is comparable between runs at one image size, not with the paper's table."""
    predicted, labelled = np.asarray(predicted, np.float64), np.asarray(labelled, np.float64)
    if predicted.shape != (len(KEYPOINT_NAMES), 2) or labelled.shape != predicted.shape:
        raise ValueError(f"keypoint_errors needs two (21, 2) arrays, got {predicted.shape} and {labelled.shape}")
    with np.errstate(over="ignore"):  # (a label edited out to 1e308 px: its errors are inf, said without warnings)
        distances = np.hypot(*(predicted - labelled).T)  # (norm squares first: a label 1e200 px out was inf away)
        diagonal = max(_box_diagonal(labelled, box), 1e-9)
        counted = distances if visible is None else distances[np.asarray(visible, bool)]
        if not counted.size:
            return KeypointErrors(mean_px=math.nan, mean_normalised=math.nan, mse_2d=math.nan, pck=math.nan,
                                  per_keypoint_px=distances)
        return KeypointErrors(mean_px=float(counted.mean()), mean_normalised=float(counted.mean() / diagonal),
                              mse_2d=float((counted ** 2).mean()), pck=float((counted <= threshold * diagonal).mean()),
                              per_keypoint_px=distances)


def match(detected: list[DetectedHand], labelled: dict[str, np.ndarray]) -> dict[str, DetectedHand]:
    """Pair detections with labelled hands by 2D proximity (mean keypoint distance, an optimal
    one-to-one assignment), not by handedness: a misaligned or mislabelled hand must still be paired
    and measured. Labelled hands without a detection are absent from the result."""
    from scipy.optimize import linear_sum_assignment

    sides = list(labelled)
    if not detected or not sides:
        return {}
    with np.errstate(over="ignore"):
        cost = np.array([[np.hypot(*(d.keypoints - np.asarray(labelled[s], np.float64)).T).mean()
                          for d in detected] for s in sides])
    # a label beyond float range (an edited labels.json: 1e308) is paired last, not "cost matrix is infeasible"
    cost = np.nan_to_num(cost, nan=np.finfo(np.float64).max, posinf=np.finfo(np.float64).max)
    rows, cols = linear_sum_assignment(cost)
    return {sides[r]: detected[c] for r, c in zip(rows, cols)}
