"""The corpus summary: statistics from the evaluation module, a contact sheet and histograms.

Cheap bookkeeping (lengths, kinds, templates, resolver outcomes) covers every clip; the
evaluation-module measures (exact penetration and contact, joint limits, smoothness, diversity)
run on a random sample of clips, because exact mesh booleans cost about a second per pair.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from handforge.evaluation.contact import pair_metrics
from handforge.evaluation.features import FeatureError, load_features
from handforge.evaluation.limits import joint_limit_metrics
from handforge.evaluation.motion import clip_keypoints, smoothness
from handforge.evaluation.report import evaluate_clips
from handforge.hands import HandModel
from handforge_shared.files import write_atomic
from handforge_shared.poses import MotionClip

TWO_HAND_KINDS = ("interaction", "clapping", "count_on_hand")
RESOLVER_DEPTHS = ("estimates of the resolver's loss (nearest vertex and its normal; off by up to the vertex "
                   "spacing); exact depths: evaluation's max_depth_mm")


def clip_record(name: str, split_group: str, clip: MotionClip) -> dict[str, Any]:
    """What the summary keeps about every clip (small; computed where the clip is made)."""
    info = clip.extra.get("corpus", {})
    held = sum(b - a + 1 for a, b, _ in info.get("contact_frames", []))
    return {"name": name, "group": split_group, "kind": info.get("kind", "?"), "frames": clip.num_frames,
            "templates": info.get("templates", []), "held_frames": held,
            "wrist_speed": _wrist_speed(clip)}


def _wrist_speed(clip: MotionClip) -> float:
    """Mean speed (m/s) of the hands' translations: a quick measure of how much a clip moves."""
    speeds = [np.linalg.norm(np.diff(p.transl, axis=0), axis=1).mean() * clip.fps for p in clip.hands.values()]
    return float(np.mean(speeds))


def evaluate_sample(clips: list[tuple[str, MotionClip]], model: HandModel, rng: np.random.Generator,
                    frames: int = 200) -> dict[str, Any]:
    """Evaluation-module statistics over the sampled clips.

    ``report``: ``handforge.evaluation.report.evaluate_clips`` (every engine is measured with it),
    when the feature network is available; without it (it is trained on this very corpus), the
    same measures minus the feature-based ones. ``held_contact_frames``: exact penetration and
    contact on frames where a template's contact is held — the corpus's own promise.
    """
    plain = [clip for _, clip in clips]
    out: dict[str, Any] = {"sample_clips": len(clips)}
    try:
        nets = load_features()
    except FeatureError as exc:
        out["report"] = _report_without_features(plain, model, rng, frames)
        out["report"]["features"] = f"not computed: {exc}"
    else:
        out["report"] = evaluate_clips(plain, model, features=nets, frames=frames, seed=int(rng.integers(2 ** 31)))
    held = []
    for clip in plain:
        spans = clip.extra["corpus"].get("contact_frames", [])
        if spans:
            a, b, _ = spans[int(rng.integers(len(spans)))]
            held.append((clip, int(rng.integers(a, b + 1))))
    out["held_contact_frames"] = _pair_metrics(model, held)
    return out


def _report_without_features(clips: list[MotionClip], model: HandModel, rng: np.random.Generator,
                             frames: int) -> dict[str, Any]:
    report: dict[str, Any] = {"clips": len(clips), "frames": int(sum(c.num_frames for c in clips))}
    smooth = [smoothness(np.concatenate([k["left"], k["right"]], axis=1), c.fps).summary()
              for c in clips for k in [clip_keypoints(c, model)]]
    report["smoothness"] = {key: float(np.mean([s[key] for s in smooth])) for key in smooth[0]}
    report["smoothness"]["max_jerk_worst"] = float(max(s["max_jerk"] for s in smooth))
    report["joint_limits"] = {side: joint_limit_metrics(np.concatenate([c.hands[side].hand_pose for c in clips]),
                                                        side).summary(tolerance_deg=0.01)
                              for side in ("left", "right")}
    two = [(c, int(rng.integers(c.num_frames))) for c in clips if c.extra["corpus"]["kind"] in TWO_HAND_KINDS]
    report["two_hand_frames"] = _pair_metrics(model, two[:frames])
    return report


def _pair_metrics(model: HandModel, pairs: list[tuple[MotionClip, int]]) -> dict[str, Any]:
    if not pairs:
        return {"frames": 0}
    faces = {s: model.faces(s) for s in ("left", "right")}
    verts = _vertices(model, pairs)
    pen, con = pair_metrics(verts["left"], verts["right"], faces["left"], faces["right"])
    return {"frames": len(pairs), **pen.summary(), "max_depth_mm_worst": float(pen.max_depth.max() * 1e3),
            "penetration_volume_cm3_worst": float(pen.volume.max() * 1e6), **con.summary(),
            "depths_mm": (pen.max_depth * 1e3).round(3).tolist()}


def _vertices(model: HandModel, pairs: list[tuple[MotionClip, int]]) -> dict[str, np.ndarray]:
    out = {}
    with torch.no_grad():
        for side in ("left", "right"):
            params = {k: np.stack([getattr(clip.hands[side], k)[f] for clip, f in pairs])
                      for k in ("global_orient", "hand_pose", "betas", "transl")}
            out[side] = model(side, **params).vertices.cpu().numpy()
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def summarise(records: list[dict[str, Any]], splits: dict[str, list[str]], resolver: dict[str, Any],
              sample: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    frames = np.array([r["frames"] for r in records])
    templates = Counter(t for r in records for t in r["templates"])
    return {
        "format": "handforge.corpus-summary",
        "version": 2,  # 2: the resolver's depths are keyed *_estimate_mm (1: max_depth_mm, read as exact)
        "settings": settings,
        "sequences": len(records),
        "frames": int(frames.sum()),
        "frames_per_sequence": {"min": int(frames.min()), "mean": float(frames.mean()), "max": int(frames.max())},
        "kinds": dict(Counter(r["kind"] for r in records)),
        "templates_used": dict(templates),
        "held_contact_frames": int(sum(r["held_frames"] for r in records)),
        "splits": {k: len(v) for k, v in splits.items()},
        "resolver": resolver,
        "evaluation": sample,
    }


def resolver_summary(outcomes: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per template: instances drawn, resolved, and the resolved ones' worst penetration depth,
    contact gap and penetration on the way into a grip (the loss's per-vertex test). The depths are
    the loss's nearest-vertex estimates (exact ones for every instance would cost ~0.1 s each), so
    their keys say ``estimate``: ``evaluation``'s ``max_depth_mm`` is the exact measure, and the same
    key for both read as two different numbers for one thing (a clasp: 1.9 mm here, exactly 1.45 mm)."""
    per: dict[str, dict[str, list]] = {}
    for o in outcomes:
        d = per.setdefault(o["template"], {"ok": [], "depth": [], "gap": [], "closing": []})
        d["ok"].append(o["ok"])
        if o["ok"]:
            d["depth"].append(o["max_depth"])
            d["gap"].append(o["max_gap"])
            d["closing"].append(o.get("closing_depth", 0.0))
    total = sum(len(d["ok"]) for d in per.values())
    return {
        "instances": total,
        "resolved": int(sum(sum(d["ok"]) for d in per.values())),
        "depths": RESOLVER_DEPTHS,
        "per_template": {name: {"instances": len(d["ok"]), "resolved": int(sum(d["ok"])),
                                "max_depth_estimate_mm": float(max(d["depth"], default=0.0) * 1e3),
                                "max_contact_gap_mm": float(max(d["gap"], default=0.0) * 1e3),
                                "max_closing_depth_estimate_mm": float(max(d["closing"], default=0.0) * 1e3)}
                         for name, d in sorted(per.items())},
    }


# ---------------------------------------------------------------------- figures
def contact_sheet(path: Path, clips: list[tuple[str, MotionClip]], model: HandModel, columns: int = 6) -> None:
    """A grid of thumbnails: one frame per clip (a held contact frame where there is one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from handforge.corpus.preview import HAND_COLOURS, draw_hands, scene_rotation

    rows = max(1, -(-len(clips) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, clip) in zip(axes.flat, clips):
        info = clip.extra["corpus"]
        held = info.get("contact_frames") or []
        frame = (held[0][0] + held[0][1]) // 2 if held else clip.num_frames // 2
        meshes = []
        with torch.no_grad():
            for side, pose in clip.hands.items():
                v = model.forward_pose(side, pose[frame]).vertices[0].cpu().numpy()
                meshes.append((v, model.faces(side).cpu().numpy(), HAND_COLOURS[side]))
        label = held[0][2] if held else info.get("periodic") or info["kind"]
        draw_hands(ax, meshes, scene_rotation(0.0, 25.0), f"{name} {info['kind']}\n{label} f{frame}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def histograms(path: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    ax.hist([r["frames"] for r in records], bins=30, color="tab:blue")
    ax.set(title="clip length", xlabel="frames (30 fps)", ylabel="clips")
    ax = axes[0, 1]
    kinds = summary["kinds"]
    ax.bar(list(kinds), list(kinds.values()), color="tab:green")
    ax.set(title="kinds", ylabel="clips")
    ax.tick_params(axis="x", rotation=30)
    ax = axes[0, 2]
    used = summary["templates_used"]
    ax.barh(list(used), list(used.values()), color="tab:orange")
    ax.set(title="interaction templates used", xlabel="times")
    ax = axes[1, 0]
    ax.hist([r["wrist_speed"] for r in records], bins=30, color="tab:purple")
    ax.set(title="mean wrist speed per clip", xlabel="m/s", ylabel="clips")
    ax = axes[1, 1]
    per = summary["resolver"]["per_template"]
    rate = [v["resolved"] / max(v["instances"], 1) for v in per.values()]
    ax.barh(list(per), rate, color="tab:red")
    ax.set(title="resolver success per template", xlabel="resolved fraction", xlim=(0, 1))
    ax = axes[1, 2]
    depths = summary["evaluation"].get("held_contact_frames", {}).get("depths_mm", [])
    ax.hist(depths, bins=20, color="tab:brown", label="held contact frames")
    ax.set(title="penetration depth (sample, exact)", xlabel="max depth mm", ylabel="frames")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=False))
