"""How HandForge's feature networks are trained (``handforge train-features``): the recipe.

Data: a folder of motion clips (``.npz``, ``MotionClip``), e.g. the output of ``handforge corpus``
(``clips/`` and ``splits.json``). Clips without ``splits.json`` are split 90/10 by a hash of their
name. Keypoints come from the clip's own hand model (the open hand needs nothing; MANO clips need
the MANO files). Clips without both hands are skipped.

Targets, from the corpus metadata (``extra["corpus"]``):
    frame network   per frame, the interaction template held in that frame (``contact_frames``:
                    "clap", "palm_on_back", ...) or "free"; plus reconstruction of the 126 canonical
                    coordinates from the 128-d feature (weight ``recon_weight``) so that the
                    feature keeps finger and placement detail the classes do not need.
    motion network  per clip, its kind ("gestures", "interaction", "clapping", "count_on_hand",
                    and "periodic_tapping" / "_waving" / "_counting"), and which templates it holds
                    (multi-label).
Clips without corpus metadata (real datasets) are labelled "unlabelled": they train the
reconstruction only. Class imbalance is met with cross-entropy weights ∝ 1/√frequency.

Recipe: every ``frame_stride``-th frame; motion crops of ``window`` frames up to the whole clip,
``windows_per_clip`` per clip and epoch; 1 mm Gaussian keypoint noise; Adam (lr 1e-3, cosine decay), batch 512 frames
/ 64 crops; seeded (``torch.manual_seed`` and numpy ``default_rng``), single-threaded data order. A
batch's loss and gradient are sums over ``GRAD_CHUNKS`` fixed chunks, each computed on one torch thread
and added in a fixed order; ``--threads`` only says how many chunks run side by side, so the same
corpus and seed give the same weights on any thread count (torch splits some sums by its thread count:
with intra-op threads, one to four gave weights differing in the last bits). The price: at most
``GRAD_CHUNKS`` cores train.
Results (validation accuracy, Fréchet distance train ↔ validation) go into the checkpoint.
"""

from __future__ import annotations

import hashlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from handforge.evaluation.distribution import frechet_feature_distance
from handforge.evaluation.feature_models import FrameNet, MotionNet
from handforge.evaluation.features import (
    SCALE,
    FeatureError,
    FeatureNetworks,
    canonical_axes,
    canonical_frames,
    canonical_motion,
    two_hand_keypoints,
)
from handforge_shared.files import parse_json
from handforge_shared.mano_params import FLAT, not_flat

FREE = "free"
UNLABELLED = "unlabelled"
# A batch's gradient is the sum of this many chunks' gradients, whatever the thread count: torch sums
# layer norm's, convolution's and Linear's weight gradients and a loss's mean in pieces per thread
GRAD_CHUNKS = 8


@dataclass
class TrainSettings:
    epochs_frame: int = 8
    epochs_motion: int = 8
    batch_frame: int = 512
    batch_motion: int = 64
    lr: float = 1e-3
    frame_stride: int = 3
    window: int = 64
    windows_per_clip: int = 4
    recon_weight: float = 1.0
    noise: float = 0.001  # m
    seed: int = 0


@dataclass
class CorpusData:
    names: list[str]
    splits: list[str]                 # "train" / "validation" / "test" per clip
    keypoints: list[np.ndarray]       # (T, 42, 3) float32 per clip, both hands present
    frame_labels: list[np.ndarray]    # (T,) template name per frame
    motion_labels: list[str]
    templates: list[set[str]]
    source: dict[str, Any] = field(default_factory=dict)


def load_corpus(folder: str | Path, max_clips: int | None = None, progress: bool = False) -> CorpusData:
    """Read every clip of a corpus folder (or a plain folder of clips) and compute its two-hand keypoints.

    Clips are read through ``handforge.datasets`` like every other consumer of the corpus; a plain
    folder without ``splits.json`` gets a hashed train/validation split per clip name."""
    from handforge.datasets import DatasetError, open_corpus, open_motion_folder
    from handforge.hands import load_hand_model

    folder = Path(folder)
    models: dict[str, Any] = {}
    try:
        if (folder / "splits.json").is_file():
            source = open_corpus(folder, max_clips=max_clips)
        else:
            source = open_motion_folder(folder / "clips" if (folder / "clips").is_dir() else folder, max_clips=max_clips)
        raw = [(path, info) for path, info in zip(source.paths, source.clips) if info.pose_convention != FLAT]
        if raw:  # (as measure refuses them: their keypoints, posed as flat, were another pose's, unsaid)
            raise FeatureError(not_flat(raw[0][0], raw[0][1].pose_convention, "training on them"))
        data = CorpusData([], [], [], [], [], [], {"folder": folder.name, "clips_found": len(source.clips)})
        made = _corpus_settings(folder)
        if made:
            data.source["corpus_settings"] = made
        # clips load lazily: a damaged file raises here, inside the try, with its path
        for info, clip in source.iter_clips(progress=progress, desc="keypoints"):
            if clip.hand_model not in models:
                models[clip.hand_model] = load_hand_model(clip.hand_model)
            keypoints, both = two_hand_keypoints(clip, models[clip.hand_model])
            if not len(both) or not both.all():
                continue  # the networks need both hands in every frame
            corpus_info = info.extra.get("corpus", {}) if isinstance(info.extra, dict) else {}
            labels = np.full(clip.num_frames, FREE if corpus_info else UNLABELLED, dtype=object)
            for start, end, template in corpus_info.get("contact_frames", []):
                labels[start:end + 1] = template
            data.names.append(info.name)
            # a plain folder has no splits: hash the person group, so that one person's clips
            # (which share a hand shape and interactions) never land in both train and validation
            data.splits.append(info.split or _hash_split(info.group or info.name))
            data.keypoints.append(keypoints.astype(np.float32))
            data.frame_labels.append(labels)
            data.motion_labels.append(_motion_class(corpus_info))
            data.templates.append({t for _, _, t in corpus_info.get("contact_frames", [])})
    except DatasetError as exc:
        raise FeatureError(str(exc)) from None
    if not data.names:
        raise FeatureError(f"{folder}: none of the {len(source.clips)} clips has both hands in every frame")
    if "train" not in data.splits:
        raise FeatureError(f"{folder}: no clip is in the training split")
    data.source["clips_used"] = len(data.names)
    data.source["hand_models"] = sorted(models)
    return data


def train(data: CorpusData, settings: TrainSettings | None = None, progress: bool = False,
          threads: int | None = None) -> FeatureNetworks:
    """Train both networks on ``data`` (the train split) and report on the validation split.

    ``threads`` (default: torch's thread count) chunks of a batch run side by side, each on one torch
    thread: the result does not depend on it."""
    from handforge.runtime import torch_threads

    threads = torch.get_num_threads() if threads is None else threads
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a whole number ≥ 1, got {threads!r}")
    with torch_threads(1), ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return _train(data, settings or TrainSettings(), progress, _Chunks(pool if threads > 1 else None))


def _train(data: CorpusData, s: TrainSettings, progress: bool, chunks: "_Chunks") -> FeatureNetworks:
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    train_ids = [i for i, sp in enumerate(data.splits) if sp == "train"]
    val_ids = [i for i, sp in enumerate(data.splits) if sp == "validation"]
    # no validation clips (a few --max-clips): measured on the training clips, which the results say (they showed
    # accuracy 1.0 and a Fréchet distance of 0 as if validated)
    validated_on = "validation" if val_ids else "train (no validation clips)"
    val_ids = val_ids or train_ids

    frame_classes = sorted({str(x) for i in train_ids for x in np.unique(data.frame_labels[i])})
    motion_classes = sorted({data.motion_labels[i] for i in train_ids})
    templates = sorted({t for i in train_ids for t in data.templates[i]})
    frame_net = FrameNet(classes=frame_classes)
    motion_net = MotionNet(classes=motion_classes, template_names=templates)

    frames_x, frames_y = _frames(data, train_ids, frame_classes, s.frame_stride)
    frame_loss = _fit_frames(frame_net, frames_x, frames_y, frame_classes, s, rng, progress, chunks)
    motion_loss = _fit_motion(motion_net, data, train_ids, motion_classes, templates, s, rng, progress, chunks)
    frame_net.eval()
    motion_net.eval()

    nets = FeatureNetworks(frame_net, motion_net)
    val_x, val_y = _frames(data, val_ids, frame_classes, s.frame_stride)
    results = {"final_frame_loss": frame_loss, "final_motion_loss": motion_loss,
               "train_frames": int(len(frames_x)), "validation_frames": int(len(val_x)), "validated_on": validated_on}
    with torch.no_grad():
        val_feat = frame_net(val_x)
        known = val_y >= 0
        if known.any() and UNLABELLED not in frame_classes:
            pred = frame_net.classify(val_feat).argmax(-1)
            results["frame_validation_accuracy"] = float((pred[known] == val_y[known]).float().mean())
            results["frame_majority_baseline"] = float(torch.bincount(val_y[known]).max() / known.sum())
        train_feat = frame_net(frames_x[torch.randperm(len(frames_x))[: len(val_x)]])
        results["frame_fd_train_validation"] = frechet_feature_distance(train_feat.numpy(), val_feat.numpy())
        if UNLABELLED not in motion_classes:
            hits = [int(motion_net.classify(motion_net(canonical_motion(data.keypoints[i])[None])).argmax())
                    == motion_classes.index(data.motion_labels[i]) for i in val_ids
                    if data.motion_labels[i] in motion_classes]
            results["motion_validation_accuracy"] = float(np.mean(hits)) if hits else None
    nets.recipe = {"settings": asdict(s), "gradient_chunks": GRAD_CHUNKS, "data": data.source, "results": results,
                   "splits": {k: data.splits.count(k) for k in sorted(set(data.splits))}}
    made = data.source.get("corpus_settings", {})
    if "seed" in made and "sequences" in made:
        nets.recipe["corpus_command"] = f"handforge corpus --out CORPUS --sequences {made['sequences']} --seed {made['seed']}"
    return nets


# ----------------------------------------------------------------------------- training loops
def _fit_frames(net: FrameNet, x: torch.Tensor, y: torch.Tensor, classes: list[str], s: TrainSettings,
                rng: np.random.Generator, progress: bool, chunks: "_Chunks") -> float:
    weights = _class_weights(y, len(classes))
    steps = s.epochs_frame * math.ceil(len(x) / s.batch_frame)
    optimiser, schedule = _optimiser(net, s.lr, steps)
    net.train()
    loss_value = float("nan")
    bar = _bar(steps, "frame net", progress)
    for _ in range(s.epochs_frame):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), s.batch_frame):
            idx = order[start:start + s.batch_frame]
            clean, target = x[idx], y[idx]
            noisy = _jittered(clean, s, rng)
            # the batch's mean losses as sums over chunks, each divided by the whole batch's count / weight
            labelled = target >= 0
            ce_total = weights[target[labelled]].sum()

            def chunk_loss(part: slice, clean=clean, noisy=noisy, target=target, ce_total=ce_total) -> torch.Tensor:
                feat = net(noisy[part])
                loss = s.recon_weight * (net.reconstruct(feat) - clean[part]).square().sum() / clean.numel()
                known = target[part] >= 0
                if known.any():
                    loss = loss + nn.functional.cross_entropy(net.classify(feat[known]), target[part][known],
                                                              weight=weights, reduction="sum") / ce_total
                return loss

            loss_value = chunks.step(net, chunk_loss, len(idx), optimiser, schedule, bar)
    bar.close()
    return loss_value


def _fit_motion(net: MotionNet, data: CorpusData, ids: list[int], classes: list[str], templates: list[str],
                s: TrainSettings, rng: np.random.Generator, progress: bool, chunks: "_Chunks") -> float:
    clips = [(canonical_motion(data.keypoints[i]), data.motion_labels[i], data.templates[i]) for i in ids]
    y_all = torch.tensor([classes.index(c) if c != UNLABELLED else -1 for _, c, _ in clips])
    weights = _class_weights(y_all, len(classes))
    per_epoch = len(clips) * s.windows_per_clip
    steps = s.epochs_motion * math.ceil(per_epoch / s.batch_motion)
    optimiser, schedule = _optimiser(net, s.lr, steps)
    net.train()
    loss_value = float("nan")
    bar = _bar(steps, "motion net", progress)
    for _ in range(s.epochs_motion):
        order = rng.permutation(np.repeat(np.arange(len(clips)), s.windows_per_clip))
        for start in range(0, len(order), s.batch_motion):
            batch = order[start:start + s.batch_motion]
            crops, y, multi = [], [], []
            for c in batch:
                seq, label, held = clips[c]
                # crops from `window` frames up to the whole clip: features are taken on whole clips
                w = int(rng.integers(min(s.window, len(seq)), len(seq) + 1))
                first = int(rng.integers(0, len(seq) - w + 1))
                crop = canonical_motion_window(seq, first, w)
                crops.append(_jittered(crop, s, rng))
                y.append(int(y_all[c]))
                multi.append([t in held for t in templates])
            x, mask = _pad(crops)
            y_t = torch.tensor(y)
            held_t = torch.tensor(multi, dtype=torch.float32)
            if not ((y_t >= 0).any() or templates):
                continue  # nothing to learn from unlabelled motion
            ce_total = weights[y_t[y_t >= 0]].sum()

            def chunk_loss(part: slice, x=x, mask=mask, y_t=y_t, held_t=held_t, ce_total=ce_total) -> torch.Tensor:
                feat = net(x[part], mask[part])
                loss = feat.new_zeros(())
                known = y_t[part] >= 0
                if known.any():
                    loss = loss + nn.functional.cross_entropy(net.classify(feat[known]), y_t[part][known],
                                                              weight=weights, reduction="sum") / ce_total
                if templates:
                    loss = loss + nn.functional.binary_cross_entropy_with_logits(
                        net.templates(feat), held_t[part], reduction="sum") / held_t.numel()
                return loss

            loss_value = chunks.step(net, chunk_loss, len(batch), optimiser, schedule, bar)
    bar.close()
    return loss_value


def _jittered(x: torch.Tensor, s: TrainSettings, rng: np.random.Generator) -> torch.Tensor:
    """Training noise on canonical keypoints (``s.noise`` is in metres, the keypoints are scaled)."""
    return x + torch.from_numpy(rng.normal(0, s.noise * SCALE, x.shape).astype(np.float32))


class _Chunks:
    """One optimiser step on a batch whose loss is the sum of ``chunk_loss(part)`` over ``GRAD_CHUNKS``
    fixed slices: each chunk's gradient on one torch thread (``pool``'s threads, or this one), added in
    chunk order. How many run at once changes the time, never a bit of the sum."""

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self.pool = pool

    def step(self, net: nn.Module, chunk_loss, size: int, optimiser, schedule, bar) -> float:
        params = [p for p in net.parameters() if p.requires_grad]
        edges = np.linspace(0, size, GRAD_CHUNKS + 1).round().astype(int)
        parts = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]

        def one(part: slice) -> tuple[float, tuple]:
            loss = chunk_loss(part)
            if not loss.requires_grad:
                return float(loss), (None,) * len(params)
            return float(loss.detach()), torch.autograd.grad(loss, params, allow_unused=True)

        done = list(self.pool.map(one, parts)) if self.pool else [one(part) for part in parts]
        for k, p in enumerate(params):
            grads = [g[k] for _, g in done if g[k] is not None]
            # a parameter no chunk used keeps no gradient, as after backward(): Adam leaves it alone
            p.grad = None
            for grad in grads:  # in chunk order
                p.grad = grad if p.grad is None else p.grad + grad
        optimiser.step()
        schedule.step()
        bar.update(1)
        return float(sum(loss for loss, _ in done))


def canonical_motion_window(canonical: torch.Tensor, first: int, length: int) -> torch.Tensor:
    """A crop of an already canonical (T, 126) motion, re-expressed in the frame of its own first
    frame (what ``canonical_motion`` gives for the cropped keypoints)."""
    k = canonical[first:first + length].reshape(length, -1, 3)
    origin, axes = canonical_axes(k[0])
    return ((k - origin) @ axes).reshape(length, -1)


# ----------------------------------------------------------------------------- helpers
def _frames(data: CorpusData, ids: list[int], classes: list[str], stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    keypoints = np.concatenate([data.keypoints[i][::stride] for i in ids])
    labels = np.concatenate([data.frame_labels[i][::stride] for i in ids])
    index = {c: k for k, c in enumerate(classes)}
    y = torch.tensor([index.get(str(lab), -1) if lab != UNLABELLED else -1 for lab in labels])
    return canonical_frames(keypoints), y


def _class_weights(y: torch.Tensor, count: int) -> torch.Tensor:
    freq = torch.bincount(y[y >= 0], minlength=count).float().clamp_min(1.0)
    w = freq.rsqrt()
    return w / (w * freq).sum() * freq.sum()


def _optimiser(net: nn.Module, lr: float, steps: int):
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    return optimiser, torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))


def _pad(crops: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(c) for c in crops)
    x = torch.zeros(len(crops), length, crops[0].shape[1])
    mask = torch.zeros(len(crops), length, dtype=torch.bool)
    for b, c in enumerate(crops):
        x[b, : len(c)] = c
        mask[b, : len(c)] = True
    return x, mask


def _motion_class(info: dict[str, Any]) -> str:
    kind = info.get("kind")
    if not kind:
        return UNLABELLED
    return f"periodic_{info['periodic']}" if kind == "periodic" and info.get("periodic") else str(kind)


def _corpus_settings(folder: Path) -> dict[str, Any]:
    """The settings ``handforge corpus`` recorded in the folder's summary, if it has one."""
    try:
        summary = parse_json((folder / "summary.json").read_text())
        return dict(summary.get("settings", {}))
    except (OSError, TypeError, ValueError):
        return {}


def _hash_split(name: str) -> str:
    return "validation" if int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10 == 0 else "train"


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, progress: bool):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step")
