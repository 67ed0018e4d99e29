"""Evaluate the motion engines on held-out clips (``handforge eval motion --corpus DIR``).

Tasks, each on windows cut from the held-out clips (validation and test splits by default):

    gap15 / gap30 / gap60   in-betweening: the first and last 5 frames keyed, a gap of 15/30/60
                            frames between (HandDiffuse's key-frame task, with three gap lengths)
    trajectory              both wrists' translations keyed at every frame of 60, the rest free
    unconditional           60 frames, no keys

Rows: ground truth (the windows themselves), the learned engine, the spline engine and, for the
gap tasks, the keys' curve alone (``MotionPipeline.curve_inbetweens``: what the learned engine starts from
and corrects; the spline engine's in-between across short gaps, the model's own curve, Hermite for the
shipped checkpoint, across long ones). Metrics from
``handforge.evaluation`` (``evaluate_clips``): Fréchet distance of the motion features to the
ground-truth windows (for the ground-truth row: its windows of half the clips against those of the
other half, ``ground_truth_report``), diversity, jitter and acceleration, penetration volume and depth and contact
ratio on ``--frames`` drawn two-hand frames, joint-limit violations; and the keyframe error: the
largest rotation angle (rad) between a keyed rotation and the result's, and the largest keyed
wrist-translation error (m). Per task, after the table: FD learned − spline with its paired bootstrap
interval over the windows (``fd_against_spline``; ``--bootstrap`` draws): with a few hundred windows FD
moves with the windows drawn by more than the two engines differ, and the interval says whether their
order holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from handforge.arguments import SEED, at_least, comma_list, given_path, number_in, report_file, torch_thread_count, write_report

KEY_FRAMES = 5
TASKS = ("gap15", "gap30", "gap60", "trajectory", "unconditional")


# a 95 % interval's ends are the draws' 2.5th and 97.5th percentiles: with 1 draw both were that draw, an "interval"
# of one value away from the estimate; from 100 draws its ends are set by a few draws each
MIN_BOOTSTRAP_DRAWS = 100


def _bootstrap_draws(text: str) -> int:
    draws = at_least(0)(text)
    if 0 < draws < MIN_BOOTSTRAP_DRAWS:
        raise argparse.ArgumentTypeError(f"must be 0 (no interval) or at least {MIN_BOOTSTRAP_DRAWS} draws, whose 2.5th "
                                         f"and 97.5th percentiles the 95 % interval's ends are; got {draws}")
    return draws


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="a `handforge corpus` folder")
    parser.add_argument("--splits", type=comma_list, default="validation,test",
                        help="held-out splits to cut windows from, comma-separated (read in the corpus's order, "
                             "train, validation, test, whatever the order given)")
    parser.add_argument("--checkpoint", type=given_path("a motion checkpoint folder"), default=None, help="motion checkpoint (default: motion.checkpoint)")
    parser.add_argument("--windows", type=at_least(1), default=128, help="windows per task")
    parser.add_argument("--steps", type=at_least(1), default=20, help="DDIM steps of the learned engine")
    parser.add_argument("--batch", type=at_least(1), default=32, help="windows denoised together")
    parser.add_argument("--guidance", choices=("auto", "on", "repair", "off"), default="off",
                        help="penetration guidance (off here unless asked: the jobs' own choices are 'auto' "
                             "for wrist paths and generation, 'repair' for in-betweening): 'auto' while sampling "
                             "when the wrists are within 20 cm, 'on' throughout, 'repair' not while sampling; all "
                             "three then move the motions that still pass one hand through the other out of it")
    # the jobs' range (their "smoothing" parameter): --smoothing 1e308 was an OverflowError traceback, and 1e9 a
    # filter of billions of taps, allocated before it ran
    parser.add_argument("--smoothing", type=number_in(0.0, 10.0), default=None, help="σ (frames) of the post-filter, "
                        "0 (off) to 10, as the jobs take it (default: the pipeline's)")
    parser.add_argument("--variation", type=number_in(0.0, 1.0, low_open=True), default=None, help="how much of the schedule runs (1: from "
                        "noise; less: from the keys' in-between, noised); default: the jobs' own, 0.8 for the gap "
                        "tasks (motion.inbetween) and 1 for the others")
    parser.add_argument("--bootstrap", type=_bootstrap_draws, default=200,
                        help="draws of the paired bootstrap interval of each task's FD difference between the learned "
                             f"and the spline engine (0: none; else at least {MIN_BOOTSTRAP_DRAWS})")
    parser.add_argument("--frames", type=at_least(1), default=60, help="two-hand frames drawn per row for the mesh metrics")
    parser.add_argument("--tasks", type=comma_list, default=",".join(TASKS),
                        help="comma-separated subset of " + ", ".join(TASKS))
    parser.add_argument("--seed", type=SEED, default=0,
                        help="seed of the windows cut, each window's noise (--seed + its index) and the frames drawn "
                             "for the mesh metrics")
    parser.add_argument("--threads", type=torch_thread_count(), default=None,
                        help="torch CPU threads (default: torch's own, every core; 1 is fastest on a busy machine)")
    parser.add_argument("--out", type=report_file, help="write the full report here (JSON)")


def task_window(task: str) -> int:
    return {"gap15": 15 + 2 * KEY_FRAMES, "gap30": 30 + 2 * KEY_FRAMES, "gap60": 60 + 2 * KEY_FRAMES}.get(task, 60)


def default_variation(task: str) -> float:
    """The variation the task's job kind uses by default."""
    from handforge.engines.motion.jobs import INBETWEEN_VARIATION

    return INBETWEEN_VARIATION if task.startswith("gap") else 1.0


def task_mask(task: str, frames: int) -> np.ndarray:
    from handforge.engines.motion import representation as rep

    mask = np.zeros((frames, 2, rep.PARTS), dtype=bool)
    if task.startswith("gap"):
        mask[:KEY_FRAMES] = mask[-KEY_FRAMES:] = True
    elif task == "trajectory":
        mask[:, :, rep.TRANSL_PART] = True
    return mask


def cut_windows(clips: list, length: int, count: int, seed: int) -> tuple[list, list[int]]:
    """Up to ``count`` windows of ``length`` frames, spread over the clips (both hands present), and the
    index in ``clips`` of each one's clip."""
    rng = np.random.default_rng(seed)
    spans = [(i, s) for i, c in enumerate(clips) if set(c.hands) == {"left", "right"}
             for s in range(0, c.num_frames - length + 1, max(1, length // 2))]
    if not spans:
        raise ValueError(f"no clip has {length} frames with both hands")
    picked = rng.choice(len(spans), size=min(count, len(spans)), replace=False)
    return ([_window(clips[spans[k][0]], spans[k][1], length) for k in sorted(picked)],
            [spans[k][0] for k in sorted(picked)])


def _window(clip, start: int, length: int):
    from dataclasses import replace

    hands = {side: pose[start:start + length] for side, pose in clip.hands.items()}
    present = {side: m[start:start + length] for side, m in clip.present.items()}
    return replace(clip, hands=hands, present=present)


def ground_truth_halves(window_clips, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices of the ground-truth row's windows and of its reference's: the windows of two random halves
    of their clips (``window_clips``: each window's clip); None when they come from one clip. Windows of a
    clip overlap and are near copies, so the halves share none (as eval interaction's draws)."""
    clips = np.asarray(window_clips)
    names = np.random.default_rng(seed).permutation(np.unique(clips))
    if len(names) < 2:
        return None
    truth = np.isin(clips, names[:len(names) // 2])
    return np.flatnonzero(truth), np.flatnonzero(~truth)


def ground_truth_report(windows: list, window_clips, hands, features, frames: int, seed: int) -> dict[str, Any]:
    """``evaluate_clips`` of the ground-truth windows: their own metrics on every window, the comparison
    with the reference (FD, KID) on the windows of half their clips against those of the other half
    (``report["reference"]`` says so). Compared with themselves they scored FD exactly 0 and a negative
    KID, a floor no engine can reach. Each half holds about half the windows, and FD rises as N falls:
    the figure is an upper estimate of the floor. From one clip the comparison is not measured, and said."""
    from handforge.evaluation.report import REFERENCE_METRICS, evaluate_clips

    report = evaluate_clips(windows, hands, features=features, frames=frames, seed=seed)
    halves = ground_truth_halves(window_clips, seed)
    if halves is None:
        for name in REFERENCE_METRICS:
            report["not_measured"][name] = ("the windows come from one clip, and the ground truth is compared with "
                                            "the windows of other clips (with itself its FD is 0): use more clips")
        return report
    truth, other = halves
    compared = evaluate_clips([windows[i] for i in truth], hands, reference=[windows[i] for i in other],
                              features=features, frames=frames, seed=seed, metrics=REFERENCE_METRICS)
    for name in REFERENCE_METRICS:
        if name in compared:
            report[name] = compared[name]
        else:
            report["not_measured"][name] = compared["not_measured"][name]
    report["reference"] = (f"its {len(truth)} windows of half the clips with the {len(other)} of the other half "
                           f"(the other rows: {len(windows)} with the same {len(windows)})")
    return report


def observation_of(window, mask: np.ndarray):
    from handforge.engines.motion.observation import Observation

    sides = ("left", "right")
    values = {f: np.stack([getattr(window.hands[s], f) for s in sides], 1) for f in ("global_orient", "hand_pose", "transl")}
    betas = np.stack([window.hands[s].betas[0] for s in sides])
    return Observation(**values, part_mask=mask, betas=betas, hand_model=window.hand_model, fps=window.fps)


def fd_against_spline(windows: list, window_clips, learned: list, spline: list, hands, features, draws: int,
                      seed: int) -> dict[str, Any] | None:
    """``paired_frechet_difference`` of the learned and the spline engine's motion features, against those of the
    windows, over the windows with both hands on every frame in all three (the table's FD takes each set's own
    such windows: where a ground-truth window lacks a hand somewhere, the two differences can part), the windows of
    one clip (``window_clips``) drawn together; None with fewer than 2 such windows."""
    from handforge.evaluation.distribution import paired_frechet_difference
    from handforge.evaluation.features import two_hand_keypoints

    rows, clips = [], []
    for sets, clip in zip(zip(windows, learned, spline), window_clips):
        found = [two_hand_keypoints(motion, hands) for motion in sets]
        if all(len(present) and present.all() for _, present in found):  # (as evaluate_clips takes a motion)
            rows.append([features.motion_features([keypoints])[0] for keypoints, _ in found])
            clips.append(clip)
    if len(rows) < 2:
        return None
    truth, made, splined = (np.stack(column) for column in zip(*rows))
    return paired_frechet_difference(made, splined, truth, draws=draws, seed=seed, groups=clips)


def fd_line(task: str, found: dict[str, Any]) -> str:
    # (ASCII: a console in a Windows code page printed "−" as an error before the report was written)
    return (f"{task}: FD learned - spline {found['difference']:+.3g}, 95 % paired bootstrap interval "
            f"{found['low']:+.3g} to {found['high']:+.3g} over {found['samples']} windows of {found['groups']} clips "
            f"(their clips drawn whole; below 0 in {100 * found['below_zero']:.0f} % of {found['draws']} draws)")


def keyframe_errors(clips: list, observations: list) -> dict[str, float]:
    from handforge_shared.rotations import axis_angle_to_matrix, rotation_angle

    worst_angle, worst_transl = 0.0, 0.0
    for clip, obs in zip(clips, observations):
        for h, side in enumerate(("left", "right")):
            pose = clip.hands[side]
            for name in ("global_orient", "hand_pose"):
                keyed = obs._keyed(name, obs.part_mask)[:, h].reshape(obs.num_frames, -1, 3)[..., 0]
                if keyed.any():
                    got = getattr(pose, name).reshape(obs.num_frames, -1, 3)[keyed]
                    want = getattr(obs, name)[:, h].reshape(obs.num_frames, -1, 3)[keyed]
                    rel = np.swapaxes(axis_angle_to_matrix(want), -1, -2) @ axis_angle_to_matrix(got)
                    worst_angle = max(worst_angle, float(np.max(rotation_angle(rel))))
            keyed = obs.part_mask[:, h, -1]
            if keyed.any():
                worst_transl = max(worst_transl, float(np.abs(pose.transl[keyed] - obs.transl[keyed, h]).max()))
    return {"keyframe_rotation_error_rad": worst_angle, "keyframe_translation_error_m": worst_transl}


def summarise(report: dict[str, Any]) -> dict[str, float | None]:
    def get(*path):
        node = report
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    limits = [v.get("limit_violation_max_deg") for v in (report.get("joint_limits") or {}).values()]
    return {
        "fd_motion": get("vs_reference_motions", "frechet"),
        "diversity": get("diversity_motions"),
        "jitter": get("smoothness", "jitter"),
        "acceleration": get("smoothness", "mean_acceleration"),
        "pen_volume_cm3": get("penetration", "penetration_volume_cm3"),
        "pen_depth_mm": get("penetration", "max_depth_mm"),
        "contact_ratio": get("contact", "contact_ratio"),
        "limit_max_deg": float(np.max(limits)) if limits else None,  # the worse hand's (it was their mean)
        "key_rot_rad": report.get("keyframe_rotation_error_rad"),
        "key_transl_m": report.get("keyframe_translation_error_m"),
        "seconds": report.get("seconds"),
    }


def format_table(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    columns = list(rows[0][2])
    head = "| task | engine | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 2)]
    for task, engine, values in rows:
        cells = ["–" if v is None else f"{v:.3g}" for v in values.values()]
        lines.append(f"| {task} | {engine} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def not_measured_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per metric left out and why (``evaluate_clips``'s ``not_measured``), naming the rows
    (``task/engine``) it is left out of."""
    rows_of: dict[tuple[str, str], list[str]] = {}
    for row, report in reports.items():
        for name, why in report.get("not_measured", {}).items():
            rows_of.setdefault((name, why), []).append(row)
    return [f"not measured: {name} in {', '.join(rows)}: {why}" for (name, why), rows in rows_of.items()]


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.datasets import DatasetError, open_corpus
    from handforge.datasets.corpus import SPLITS
    from handforge.engines.checkpoints import CheckpointError, load_model
    from handforge.engines.motion.model import MotionDenoiser, check_representation
    from handforge.engines.motion.pipeline import DEFAULT_SMOOTHING, MotionPipeline, guidance_named
    from handforge.engines.motion.settings import CHECKPOINT
    from handforge.engines.motion.spline import spline_inbetween
    from handforge.engines.motion.synthesis import into_limits
    from handforge.evaluation.common import held_out_fields, training_split_note
    from handforge.evaluation.features import load_features
    from handforge.evaluation.report import evaluate_clips
    from handforge.hands import load_hand_model
    from handforge import config

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = args.tasks  # (each once: comma_list refuses a repeat)
    # the windows are drawn from the clips in their order: the splits read in the corpus's order (train,
    # validation, test), so that "test,validation" measures what "validation,test" does (its figures differed)
    args.splits = sorted(args.splits, key=lambda name: (SPLITS.index(name) if name in SPLITS else len(SPLITS), name))
    splits = ",".join(args.splits)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        print(f"handforge eval motion: unknown tasks {unknown}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    if not tasks:  # nothing to measure: the table of no rows was an IndexError traceback after the checkpoint loaded
        print(f"handforge eval motion: --tasks names no task; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    if not args.splits:  # ("" or ","): the checkpoint loaded, then "the split(s)  of DIR hold no clips", naming none
        print(f"handforge eval motion: --splits names no split; choose from {', '.join(SPLITS)}", file=sys.stderr)
        return 2
    features = load_features()  # (before the corpus is read: a bad evaluation.features setting is said at once)
    try:
        clips = []
        for split in args.splits:
            source = open_corpus(args.corpus, split=split)
            clips += [source.load(i) for i in range(len(source))]
        checkpoint = args.checkpoint or config.value(CHECKPOINT.key)
        model = load_model(MotionDenoiser, checkpoint)
        check_representation(model, checkpoint)
    except (DatasetError, CheckpointError) as exc:
        print(f"handforge eval motion: {exc}", file=sys.stderr)
        return 2
    if not clips:
        print(f"handforge eval motion: the split(s) {splits} of {args.corpus} hold no clips: choose others "
              "(--splits)", file=sys.stderr)
        return 2
    rates = sorted({float(c.fps) for c in clips} - {float(model.config.fps)})
    if rates:  # (its windows go to the model frame for frame: the model would be measured at another speed)
        print(f"handforge eval motion: the clips are at {', '.join(f'{r:g}' for r in rates)} fps and the model "
              f"learnt motion at {model.config.fps:g} fps: evaluate on clips of its frame rate", file=sys.stderr)
        return 2
    hand_models = {c.hand_model for c in clips}
    if len(hand_models) != 1:
        print(f"handforge eval motion: clips of several hand models {sorted(hand_models)}", file=sys.stderr)
        return 2
    if args.steps > model.config.num_train_timesteps:
        print(f"handforge eval motion: --steps {args.steps} is more than the model's "
              f"{model.config.num_train_timesteps} diffusion steps", file=sys.stderr)
        return 2
    # as the jobs do: a window longer than the model's max_frames made its forward raise, a traceback mid-run
    too_long = [task for task in tasks if task_window(task) > model.config.max_frames]
    if too_long:
        print(f"handforge eval motion: the {too_long[0]} windows ({task_window(too_long[0])} frames) are longer than "
              f"the model's max_frames {model.config.max_frames}: leave out {', '.join(too_long)} (--tasks)",
              file=sys.stderr)
        return 2
    try:  # every task's windows before any is sampled: a corpus too short for one is said at once
        cut = {task: cut_windows(clips, task_window(task), args.windows, args.seed) for task in tasks}
    except ValueError as exc:
        print(f"handforge eval motion: {exc} in the split(s) {splits}: choose tasks with shorter windows "
              "(--tasks) or a corpus of longer clips", file=sys.stderr)
        return 2
    note = training_split_note(args.splits, "--splits")
    if note:
        print(f"handforge eval motion: {note}", file=sys.stderr, flush=True)
    windows_of = {task: windows for task, (windows, _) in cut.items()}
    hands = load_hand_model(hand_models.pop())
    pipe = MotionPipeline(model, hands)
    guidance = guidance_named(args.guidance)
    smoothing = DEFAULT_SMOOTHING if args.smoothing is None else args.smoothing
    rows, full, intervals, unpaired = [], {}, {}, []
    print(f"checkpoint {checkpoint}; corpus {args.corpus} ({splits}); windows per task: "
          + ", ".join(f"{task} {len(windows_of[task])}" for task in tasks), flush=True)
    for task in tasks:
        windows = windows_of[task]
        # on the hand model's wrist joints (the spline and the keys' curve too: one placement for all three)
        observations = pipe.placed([observation_of(w, task_mask(task, w.num_frames)) for w in windows])
        variation = args.variation if args.variation is not None else default_variation(task)
        started = time.monotonic()
        learned = []
        for s in range(0, len(observations), args.batch):
            chunk = observations[s:s + args.batch]
            # one seed per window: a window's motion is the same whatever --batch puts beside it
            values = pipe.batch(chunk, steps=args.steps, seed=[args.seed + s + k for k in range(len(chunk))],
                                guidance=guidance, smoothing=smoothing, variation=variation)
            learned += [o.clip(into_limits(v, o)) for o, v in zip(chunk, values)]
        learned_seconds = time.monotonic() - started
        started = time.monotonic()
        spline = [o.clip(into_limits(spline_inbetween(o), o)) for o in observations]
        spline_seconds = time.monotonic() - started
        engines = [("ground truth", windows, 0.0), ("learned", learned, learned_seconds),
                   ("spline", spline, spline_seconds)]
        if task.startswith("gap"):
            started = time.monotonic()
            curve = [o.clip(into_limits(v, o)) for o, v in zip(observations, pipe.curve_inbetweens(observations))]
            engines.append(("keys' curve", curve, time.monotonic() - started))
        if args.bootstrap:  # (before the rows: said with them)
            found = fd_against_spline(windows, cut[task][1], learned, spline, hands, features, args.bootstrap,
                                      args.seed)
            if found is not None:
                intervals[task] = found
            else:
                unpaired.append(task)
        for engine, generated, seconds in engines:
            if engine == "ground truth":  # (compared with windows of other clips, not with itself)
                report = ground_truth_report(windows, cut[task][1], hands, features, args.frames, args.seed)
            else:
                report = evaluate_clips(generated, hands, reference=windows, features=features, frames=args.frames,
                                        seed=args.seed)
            report.update(keyframe_errors(generated, observations), seconds=seconds / len(windows))
            if engine == "learned":
                report["variation"] = variation
                if task in intervals:
                    report["fd_against_spline"] = intervals[task]
            full[f"{task}/{engine}"] = report
            rows.append((task, engine, summarise(report)))
            print(f"{task:13s} {engine:12s} " + json.dumps(rows[-1][2]), flush=True)
    print()
    print(format_table(rows))
    for line in not_measured_lines(full):  # (a "–" in the table said nothing of why)
        print(line)
    for task, found in intervals.items():
        print(fd_line(task, found))
    if unpaired:
        print(f"not measured: the FD difference's interval in {', '.join(unpaired)}: needs 2 or more windows with both "
              "hands on every frame")
    for row, report in full.items():
        if "reference" in report:
            print(f"{row}: FD and KID compare {report['reference']}")
    if args.out:
        write_report(args.out, {"run": {"checkpoint": str(checkpoint), "corpus": str(args.corpus), "splits": splits,
                                        **held_out_fields(note),
                                        "seed": args.seed, "steps": args.steps, "guidance": args.guidance,
                                        "variation": args.variation, "smoothing": args.smoothing,
                                        "frames": args.frames, "batch": args.batch, "tasks": list(tasks),
                                        "bootstrap": args.bootstrap,
                                        "windows": {task: len(windows_of[task]) for task in tasks}},
                                "rows": [{"task": t, "engine": e, **v} for t, e, v in rows], "reports": full})
    return 0
