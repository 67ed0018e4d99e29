"""``handforge eval interaction``: the table InterHandGen reports (arXiv:2403.17422, Table 1), on a
held-out split of the open corpus, for ground truth, the learned engine without and with
anti-penetration guidance, and the templates engine.

Rows are free two-hand samples (no artist's hand), and one row of the other hand sampled around the
split's own hands (``--conditioned-samples``, the artist's use: one candidate each, left and right in
turn), which free samples do not exercise. The reference set is the split's interaction
frames, each also mirrored: the model learns both hands as the anchor, so it samples the
left↔right symmetric distribution. The "ground truth" row is drawn from the split's other clips
(``clip_disjoint_draws``), and the held-out hands of the conditioned row with it.

Columns: penetration volume (cm³) and deepest penetration (mm) on wrist-sealed meshes, contact
ratio (``handforge.evaluation``), diversity, Fréchet distance and KID (cubic kernel) on the
evaluation features (``handforge.evaluation.features``, frame network), and precision / recall
with k-nearest-neighbour manifolds, k = 5 (Kynkäänniemi et al., NeurIPS 2019, arXiv:1904.06991;
InterHandGen reports them so), the reference manifold built from its distinct configurations, the
generated one from every sample (``knn_precision_recall``).

FD, KID and precision/recall depend on the sample count N as well as on the distribution (FD's
bias grows as 1/N: one distribution against 2,000 reference frames gave 0.47 at N = 500 and 1.98 at
N = 100, and at N ≤ the feature dimension the covariance is singular), and the rows differ in N by
default (--samples, --conditioned-samples, --template-samples): the table gives each row's N and
warns of those at or below the feature dimension; ``--equal-samples`` compares every row, and the
reference, on the smallest row's N drawn at random.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from handforge.arguments import SEED, at_least, given_path, number_in, report_file, whole_number, write_report

# The templates row is drawn whole, and no corpus bounds it as the split bounds --samples: 10**9 filled memory,
# unsaid, after the learned rows. 10,000 is ~2 GB and hours here (0.4 s a sample on a busy 2-core machine), far
# past the N where FD's ~1/N bias is small against the 2,000 reference frames.
MAX_TEMPLATE_SAMPLES = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="an open corpus folder (`handforge corpus`)")
    parser.add_argument("--split", default="test", help="held-out split (default: test)")
    parser.add_argument("--checkpoint", type=given_path("a model folder"), default=None, help="model folder (default: interaction.checkpoint)")
    parser.add_argument("--samples", type=at_least(6), default=500, help="samples per row (features, diversity, FD, KID, P/R)")
    parser.add_argument("--mesh-samples", type=at_least(1), default=150, help="of those, pairs measured on meshes (slow)")
    parser.add_argument("--template-samples", type=whole_number(6, MAX_TEMPLATE_SAMPLES), default=150,
                        help=f"samples of the templates engine (6 to {MAX_TEMPLATE_SAMPLES})")
    parser.add_argument("--conditioned-samples", type=_no_row_or_at_least_6, default=100,
                        help="held-out hands the guided engine samples the other hand around, one each (0: no row; "
                             "> 5 for k-NN precision/recall)")
    parser.add_argument("--reference", type=at_least(6), default=2000, help="reference frames")
    parser.add_argument("--steps", type=at_least(1), default=20, help="DDIM steps per hand")
    # (interaction.sample's bounds: --contact 1e39 overflowed float32 into a traceback about non-finite poses)
    parser.add_argument("--guidance", type=number_in(0.0, 100.0), default=None,
                        help="anti-penetration strength (default: the engine's)")
    parser.add_argument("--cfg", type=number_in(-1.0, 10.0), default=None,
                        help="classifier-free guidance s of the learned rows (default: the engine's; below 0 "
                             "towards the unconditional: more varied around one hand)")
    parser.add_argument("--contact", type=number_in(0.0, 100.0), default=None,
                        help="contact guidance (default: the engine's)")
    parser.add_argument("--no-separation", action="store_true",
                        help="without the final rigid separation of the guided row (the unguided row has neither it, "
                             "nor touch, nor redraws)")
    parser.add_argument("--no-touch", action="store_true", help="without moving the guided row's hands into touch")
    parser.add_argument("--redraws", type=at_least(0), default=None,
                        help="rounds of redrawing interlocked candidates in the guided row (default: the engine's)")
    parser.add_argument("--equal-samples", action="store_true",
                        help="FD, KID and precision/recall of every row on as many samples as the smallest row has, "
                             "against as many reference frames (drawn at random): the rows' figures comparable, "
                             "each on fewer samples (default: each row on all its samples, against --reference)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--out", type=report_file, default=None, help="also write the table as JSON here")


K_NEAREST = 5  # k of the k-NN precision/recall
DUPLICATE_TOLERANCE = 1e-3  # feature units: copies of one configuration lie ~1e-5 apart, distinct ones > 0.1


def distinct_rows(x, tolerance: float = DUPLICATE_TOLERANCE):
    """``x`` (N, D) without its near-duplicate rows (closer than ``tolerance`` to a row kept before them)."""
    import numpy as np
    from scipy.spatial import cKDTree

    x = np.asarray(x, np.float64)
    keep, dropped = [], np.zeros(len(x), dtype=bool)
    tree = cKDTree(x)
    for i in range(len(x)):
        if not dropped[i]:
            keep.append(i)
            dropped[tree.query_ball_point(x[i], tolerance)] = True
    return x[keep]


def _no_row_or_at_least_6(text: str) -> int:
    value = at_least(0)(text)
    if 0 < value <= 5:
        raise argparse.ArgumentTypeError(f"must be 0 (no row) or more than 5 (k-NN precision/recall with k = 5), "
                                         f"got {value}")
    return value


def knn_precision_recall(real, fake, k: int = K_NEAREST) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): a sample is inside a set's
    manifold when it lies within the k-th-nearest-neighbour radius of some member of that set.

    The reference manifold is built from its distinct rows: its copies come from the data, not from
    the generator (the open corpus's contact frames hold template poses exactly: the test split's
    26,290 contact frames have 85 distinct pairs of finger poses; on the validation split 1,994 of
    2,000 reference frames have a copy within 1e-4 in the canonical features), and a radius measured
    to copies is 0, so with them kept the reference manifold shrank to its points: ground truth,
    itself copies, scored 0.97 and a sample that is not an exact template ~0.05. The generated
    manifold is built from every sample, as the standard definition does: a generator that repeats a
    few configurations gets radii of 0 there and a low recall (6 distinct samples repeated to 500 had
    recall 0.9995 with its copies dropped, their few 5th-neighbour radii spanning everything). Every
    sample is counted on both sides."""
    import numpy as np
    from scipy.spatial.distance import cdist

    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    real_points = distinct_rows(real)
    for points, what in ((real_points, "distinct reference configurations"), (fake, "generated samples")):
        if len(points) <= k:
            raise ValueError(f"k-NN precision/recall with k = {k} needs more than {k} {what}, got {len(points)}")

    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]  # column 0 is the point itself

    fake_points, real_radii, fake_radii = fake, radii(real_points), radii(fake)
    precision = (cdist(fake, real_points) <= real_radii[None]).any(axis=1).mean()
    recall = (cdist(real, fake_points) <= fake_radii[None]).any(axis=1).mean()
    return float(precision), float(recall)


def clip_disjoint_draws(clips, reference: int, samples: int, rng) -> tuple:
    """Rows for the reference set and for the ground-truth row, drawn from two random halves of the
    clips (``clips`` (N,): each frame's clip). A clip's frames are near copies of each other: drawn
    from the same clips, the ground truth found its own neighbours in the reference (precision 0.97,
    FD 3.2 on the open corpus's test split), a measure of leakage rather than of the data's spread."""
    import numpy as np

    clips = np.asarray(clips)
    names = rng.permutation(np.unique(clips))
    if len(names) < 2:  # (no option lowers it: one half of one clip is empty)
        raise ValueError(f"it holds {len(names)} clip{'s' if len(names) != 1 else ''}, and the ground-truth row is "
                         "drawn from other clips than the reference: make a larger corpus, or choose another split "
                         "(--split)")
    truth_clips = np.isin(clips, names[:len(names) // 2])
    pools = rng.permutation(np.flatnonzero(~truth_clips)), rng.permutation(np.flatnonzero(truth_clips))
    for pool, wanted, what in zip(pools, (reference, samples), ("--reference", "--samples")):
        if len(pool) < wanted:
            raise ValueError(f"half of its {len(names)} clips hold {len(pool)} frames (mirrored included), "
                             f"fewer than {what} {wanted}: lower it, or make a larger corpus")
    return pools[0][:reference], pools[1][:samples]


class _Refused(Exception):
    """What ``run`` prints (after "handforge eval interaction: ") before exiting with status 2."""


@dataclass
class _Setup:
    """What every row is sampled with and measured against."""

    folder: Any                # the checkpoint folder
    pipe: Any                  # InteractionPipeline of the checkpoint and the open hand
    features: Any              # the evaluation features
    truth: Any                 # the ground-truth row's pairs (and the conditioned row's held-out hands)
    reference_features: Any    # (R, D) the reference frames' features
    note: str                  # said when --split is a training split
    rng: Any


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)  # small batches: see train.py
    try:
        setup = _prepared(args)
    except _Refused as exc:
        print(f"handforge eval interaction: {exc}", file=sys.stderr)
        return 2
    if setup.note:
        print(f"handforge eval interaction: {setup.note}", file=sys.stderr, flush=True)
    rows = _sampled_rows(args, setup)
    compared = setup.reference_features
    if args.equal_samples:  # one draw of the reference for every row: the rows measured against the same frames
        smallest = min(len(hands["left"]["transl"]) for hands, _ in rows.values())
        compared = compared[setup.rng.choice(len(compared), smallest, replace=False)]
    table = {}
    for name, (hands, seconds) in rows.items():
        table[name] = _measured(args, setup, hands, seconds, compared)
        print(f"{name}: " + ", ".join(f"{k} {_number(v)}" for k, v in table[name].items() if k != "not_measured"),
              flush=True)
    print(markdown(table))
    for line in sample_count_warnings(table):
        print(line)
    for name, row in table.items():  # (a "–" in the table says nothing of why)
        for metrics, why in row["not_measured"].items():
            print(f"not measured: {metrics} of {name}: {why}")
    if args.out:
        write_report(args.out, {**run_record(args, setup.folder), "rows": table})
    return 0


def _prepared(args: argparse.Namespace) -> _Setup:
    """The model, the features and the split's draws; ``_Refused`` for what the user must change."""
    import numpy as np
    import torch

    from handforge import config
    from handforge.datasets import DatasetError
    from handforge.engines.checkpoints import CheckpointError, load_model
    from handforge.engines.interaction.data import load_pairs
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.interaction.pipeline import InteractionPipeline
    from handforge.engines.interaction.settings import CHECKPOINT
    from handforge.evaluation.common import training_split_note
    from handforge.evaluation.features import load_features
    from handforge.hands import load_hand_model

    folder = args.checkpoint or config.value(CHECKPOINT.key)
    try:
        denoiser = load_model(InteractionDenoiser, folder)
    except CheckpointError as exc:
        raise _Refused(str(exc)) from None
    # as the job does: DDIM cannot take more steps than the model's diffusion steps (diffusers' set_timesteps
    # raised a ValueError after the data was loaded, a traceback)
    if args.steps > denoiser.config.num_train_timesteps:
        raise _Refused(f"--steps {args.steps} is more than the model's {denoiser.config.num_train_timesteps} "
                       "diffusion steps")
    features = load_features()  # (before the corpus is read: a bad evaluation.features setting is said at once)
    hand_model = load_hand_model("open")
    rng = np.random.default_rng(args.seed)
    try:
        frames = load_pairs(args.corpus, args.split, mirror=True)
    except (DatasetError, ValueError) as exc:  # a wrong folder or split name
        # (as eval motion's: the other split is the quicker fix; load_pairs says "make a larger corpus")
        empty = "holds no clips" in str(exc) or "no interaction frames" in str(exc)
        raise _Refused(f"{exc}{', or choose another split (--split)' if empty else ''}") from None
    try:
        reference_rows, truth_rows = clip_disjoint_draws(frames.clips.numpy(), args.reference, args.samples, rng)
    except ValueError as exc:
        raise _Refused(f"the {args.split} split: {exc}") from None
    reference = frames.take(torch.as_tensor(reference_rows))
    truth = frames.take(torch.as_tensor(truth_rows))
    pipe = InteractionPipeline(denoiser, hand_model)
    reference_features = _features(pipe, features, _as_hands(reference))
    # k-NN precision/recall needs more than K_NEAREST distinct reference configurations (the generated side,
    # ground truth included, counts its copies); the corpus's contact frames repeat template poses, so a small
    # split's draw can hold fewer: say so before sampling
    distinct = len(distinct_rows(reference_features))
    if distinct <= K_NEAREST:
        raise _Refused(f"the {args.split} split's reference (--reference {len(reference_features)} frames) holds "
                       f"{distinct} distinct configurations, and k-NN precision/recall needs more than {K_NEAREST}: "
                       "draw more, or use a larger corpus or another split")
    return _Setup(folder, pipe, features, truth, reference_features, training_split_note([args.split], "--split"),
                  rng)


def _as_hands(pairs) -> dict:
    from handforge.engines.interaction.data import FIELDS

    return {side: {f: pairs.arrays[f][:, h] for f in FIELDS} for h, side in enumerate(("left", "right"))}


def _forward(pipe, hands: dict) -> dict:
    import torch

    from handforge.engines.interaction.data import FIELDS
    with torch.no_grad():
        return {s: pipe.hand_model(s, **{f: torch.as_tensor(hands[s][f]) for f in FIELDS}) for s in ("left", "right")}


def _features(pipe, features, hands: dict):
    import torch

    out = _forward(pipe, hands)
    return features.frame_features(torch.cat([out["left"].keypoints, out["right"].keypoints], dim=1))


def _sampled_rows(args: argparse.Namespace, setup: _Setup) -> dict[str, tuple[dict, float]]:
    """Each row's hands and seconds a sample: ground truth, the learned engine without and with guidance (and
    around held-out hands), the templates engine."""
    import numpy as np

    from handforge.engines.interaction.data import FIELDS
    from handforge.engines.interaction.pipeline import SampleSettings
    from handforge.engines.interaction.templates import TemplateSampler

    pipe, truth = setup.pipe, setup.truth
    guidance = SampleSettings().penetration_guidance if args.guidance is None else args.guidance
    cfg = SampleSettings().cfg_scale if args.cfg is None else args.cfg
    contact = SampleSettings().contact_guidance if args.contact is None else args.contact
    separation = not args.no_separation
    redraws = SampleSettings().redraws if args.redraws is None else args.redraws
    touch = not args.no_touch

    def learned(strength: float, separate: bool, redraw: int, touching: bool) -> tuple[dict, float]:
        started, parts = time.monotonic(), []
        for start in range(0, args.samples, 100):
            count = min(100, args.samples - start)
            found = pipe(SampleSettings(count=count, seed=args.seed + start, steps=args.steps, cfg_scale=cfg,
                                        penetration_guidance=strength, contact_guidance=contact,
                                        separation=separate, redraws=redraw, touch=touching))
            parts.append(found.hands)
        hands = {s: {f: np.concatenate([p[s][f] for p in parts]) for f in FIELDS} for s in ("left", "right")}
        return hands, (time.monotonic() - started) / args.samples

    def conditioned(count: int) -> tuple[dict, float]:
        """The artist's use: the other hand around a held-out hand (left and right in turn), one each."""
        started, rows = time.monotonic(), []
        for i in range(count):
            side = ("left", "right")[i % 2]
            anchor = {"side": side, **{f: truth.arrays[f][i, i % 2].numpy() for f in FIELDS}}
            found = pipe(SampleSettings(count=1, seed=args.seed + i, steps=args.steps, cfg_scale=cfg,
                                        penetration_guidance=guidance,
                                        contact_guidance=contact, separation=separation, redraws=redraws,
                                        touch=touch), anchor)
            rows.append(found.hands)
        hands = {s: {f: np.concatenate([r[s][f] for r in rows]) for f in FIELDS} for s in ("left", "right")}
        return hands, (time.monotonic() - started) / count

    def templates() -> tuple[dict, float]:
        started = time.monotonic()
        found = TemplateSampler(pipe.hand_model)(SampleSettings(count=args.template_samples, seed=args.seed))
        return found.hands, (time.monotonic() - started) / args.template_samples

    rows = {"ground truth": (_as_hands(truth), 0.0)}
    rows["learned, no guidance"] = learned(0.0, False, 0, False)
    guided = (f"learned, guidance {guidance:g}" + (f", contact {contact:g}" if contact else "")
              + (", separation" if separation else "") + (", touch" if touch else "")
              + (f", {redraws} redraws" if redraws else ""))
    rows[guided] = learned(guidance, separation, redraws, touch)
    if args.conditioned_samples > args.samples:  # (the held-out hands are drawn among the --samples ones)
        print(f"--conditioned-samples {args.conditioned_samples} is more than --samples {args.samples}: the row "
              f"uses {args.samples}", file=sys.stderr)
        args.conditioned_samples = args.samples  # what the row and the report use (the report said the number asked)
    if args.conditioned_samples > 0:
        anchors = f"{args.split} hands" if setup.note else "held-out hands"  # (the training split's are not)
        rows[guided.replace("learned,", f"learned around {anchors},")] = conditioned(args.conditioned_samples)
    rows["templates"] = templates()
    return rows


def _measured(args: argparse.Namespace, setup: _Setup, hands: dict, seconds: float, compared) -> dict[str, Any]:
    """One row of the table: ``hands``' metrics, FD, KID and precision/recall against ``compared``."""
    import torch

    from handforge.evaluation.contact import pair_metrics
    from handforge.evaluation.distribution import diversity, frechet_feature_distance, kid

    hand_model = setup.pipe.hand_model
    out = _forward(setup.pipe, hands)
    feats = setup.features.frame_features(torch.cat([out["left"].keypoints, out["right"].keypoints], dim=1))
    m = min(args.mesh_samples, len(feats))
    penetration, contact = pair_metrics(out["left"].vertices[:m].numpy(), out["right"].vertices[:m].numpy(),
                                        hand_model.faces("left").numpy(), hand_model.faces("right").numpy())
    drawn = feats[setup.rng.choice(len(feats), len(compared), replace=False)] if args.equal_samples else feats
    not_measured = {}
    try:  # (one row that cannot be measured must not lose the rows measured before it)
        precision, recall = knn_precision_recall(compared, drawn, k=K_NEAREST)
    except ValueError as exc:
        precision = recall = None
        not_measured["precision, recall"] = str(exc)
    return {
        "samples": len(feats),
        "compared_samples": len(drawn),  # FD, KID, precision/recall: of this many samples,
        "reference_frames": len(compared),  # against this many reference frames
        "feature_dim": feats.shape[1],
        "mesh_samples": m,  # the pairs the mesh metrics measured (at most --mesh-samples)
        "penetration_volume_cm3": penetration.summary()["penetration_volume_cm3"],
        "max_depth_mm": penetration.summary()["max_depth_mm"],
        "contact_ratio": contact.summary()["contact_ratio"],
        "in_contact": contact.summary()["contact_fraction_of_pairs"],
        "diversity": diversity(feats),
        "fd": frechet_feature_distance(drawn, compared),
        "kid": kid(drawn, compared)[0],
        "precision": precision, "recall": recall,
        "ms_per_sample": 1e3 * seconds,
        "not_measured": not_measured,
    }


def run_record(args: argparse.Namespace, folder: Any) -> dict[str, Any]:
    """How a report was made: the model, the data and every sampling setting its rows used (the
    engine's defaults filled in), so that two reports can be told apart."""
    from handforge.engines.interaction.pipeline import SampleSettings
    from handforge.evaluation.common import held_out_fields, training_split_note

    defaults = SampleSettings()

    def chosen(value: Any, default: Any) -> Any:
        return default if value is None else value

    return {"checkpoint": str(folder), "corpus": str(args.corpus), "split": args.split,
            **held_out_fields(training_split_note([args.split], "--split")), "reference": args.reference,
            "samples": args.samples, "mesh_samples_asked": args.mesh_samples,
            "conditioned_samples": args.conditioned_samples, "template_samples": args.template_samples,
            "seed": args.seed, "steps": args.steps, "equal_samples": args.equal_samples,
            "guidance": chosen(args.guidance, defaults.penetration_guidance),
            "cfg": chosen(args.cfg, defaults.cfg_scale), "contact": chosen(args.contact, defaults.contact_guidance),
            "separation": not args.no_separation, "touch": not args.no_touch,
            "redraws": chosen(args.redraws, defaults.redraws)}


def sample_count_warnings(table: dict) -> list[str]:
    """Lines for the table: the rows whose FD, KID and precision/recall were measured on N at or below the
    feature dimension (a singular covariance: FD rises steeply as N falls), and a note when the rows' N differ."""
    lines = []
    small = [f"{name} (N = {row['compared_samples']})" for name, row in table.items()
             if row["compared_samples"] <= row["feature_dim"]]
    if small:
        dim = next(iter(table.values()))["feature_dim"]
        lines.append(f"warning: {', '.join(small)}: FD, KID and precision/recall on no more samples than the "
                     f"feature dimension ({dim}), biased upward, FD most (~1/N): raise them (--samples, "
                     "--conditioned-samples, --template-samples)")
    counts = {row["compared_samples"] for row in table.values()}
    if len(counts) > 1:
        lines.append(f"note: FD, KID and precision/recall depend on N as well as on the distribution, and the rows' N "
                     f"differ ({', '.join(str(n) for n in sorted(counts))}, against "
                     f"{next(iter(table.values()))['reference_frames']} reference frames): --equal-samples compares "
                     "them on equal N")
    return lines


def markdown(table: dict) -> str:
    columns = [("penetration_volume_cm3", "pen. volume cm³"), ("max_depth_mm", "pen. depth mm"),
               ("contact_ratio", "contact ratio"), ("diversity", "diversity"), ("fd", "FD"), ("kid", "KID"),
               ("precision", "precision"), ("recall", "recall"), ("ms_per_sample", "ms/sample")]
    # N: the samples FD, KID and precision/recall were measured on (they depend on it: sample_count_warnings)
    lines = ["| | N | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['compared_samples']} | "
                     + " | ".join(_number(row[key], ".3g") for key, _ in columns) + " |")
    return "\n".join(lines)


def _number(value: float | None, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)
