"""The corpus generator: chunks of two-hand motion clips from seeds.

Work is split into chunks of ``chunk_size`` sequences. Everything random in a chunk comes from
``SeedSequence(seed, spawn_key=(chunk, ...))``, so a chunk's clips depend only on the seed and the
chunk index: the same corpus comes out whatever the number of worker processes.

Per chunk:
1. Each sequence draws its kind (``KINDS``). Sequences that need two-hand interactions are put
   in *groups* of a few sequences; each group is one person (one hand shape, ``betas``, for both
   hands) with a few interaction instances drawn from the templates.
2. All instances of the chunk are resolved in one batched call (``resolver``); instances that do
   not resolve are dropped (their sequences fall back to free gestures; clapping sequences whose
   group's clap did not resolve become interactions with the group's resolved templates).
3. Each sequence is built from its own random stream (``motion``) and returned as a
   ``MotionClip`` whose ``extra["corpus"]`` records how it was made, including the frames where
   the hands are held exactly in a resolved interaction (``contact_frames``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from handforge.corpus import motion as M
from handforge.corpus.placement import FORWARD, RIGHT, UP, PalmFrame, rotate, unit
from handforge.corpus.resolver import GRIP_SHORT, Instance, Resolved, Resolver, ResolverSettings, opened
from handforge.corpus.templates import TEMPLATES, Template, draw
from handforge.hands import HandModel, load_hand_model
from handforge_shared import pose_library
from handforge_shared.poses import HandPose, MotionClip
from handforge_shared.rotations import axis_angle_to_matrix
from handforge_shared.skeleton import FINGERS, NUM_BETAS, SIDES

CORPUS_VERSION = 1
SCENE_FRAME = "x to the person's right, y up, z towards their body (metres); = the hand model frame"

# Sequence kinds and how often they are drawn.
KINDS: dict[str, float] = {
    "gestures": 0.20,       # each hand on its own: library poses in turn, wrist paths
    "periodic": 0.18,       # tapping, waving or counting on one's own fingers
    "interaction": 0.42,    # approach, hold, release one or two interactions
    "clapping": 0.08,       # repeated claps
    "count_on_hand": 0.12,  # the right index counts along the left hand's fingers
}
NEEDS_GROUP = {"interaction", "clapping", "count_on_hand"}
INTERACTION_TEMPLATES = tuple(n for n in TEMPLATES if not n.startswith("count_on_"))
BETA_SIGMA = 1.0  # hand shapes: betas ~ N(0, σ²) (the open hand's shape space is PCA-whitened)

FREE_POSES = tuple(n for n in pose_library.names() if n != "flat") + ("flat",)
TAP_BASES = ("relaxed", "flat", "cupped", "spread")
WAVE_BASES = ("flat", "spread", "blade", "relaxed")


@dataclass
class CorpusSettings:
    chunk_size: int = 128
    sequences_per_group: int = 32     # how many sequences share one person and their instances
    instances_per_group: int = 4
    resolver: ResolverSettings = field(default_factory=ResolverSettings)


@dataclass
class Sequence:
    """A generated clip with its name (``000123``) and which split group it belongs to."""

    name: str
    clip: MotionClip
    group: str


@dataclass
class ChunkReport:
    sequences: list[Sequence]
    resolved: list[Resolved]


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


class Generator:
    """Generates corpus chunks with one hand model (the open hand by default)."""

    def __init__(self, model: HandModel | None = None, settings: CorpusSettings | None = None) -> None:
        self.model = model if model is not None else load_hand_model("open")
        self.settings = settings or CorpusSettings()
        self.resolver = Resolver(self.model, self.settings.resolver)
        self.rigs = {side: self.model.rig(side) for side in SIDES}
        self.frames = {side: rig.joint_frames() for side, rig in self.rigs.items()}

    # ------------------------------------------------------------------ chunks
    def chunk(self, seed: int, chunk: int, count: int) -> ChunkReport:
        """Sequences ``chunk * chunk_size`` … ``+ count - 1`` of the corpus of ``seed``."""
        s = self.settings
        plan = _stream(seed, chunk, 0)
        kinds = plan.choice(list(KINDS), size=count, p=np.array(list(KINDS.values())) / sum(KINDS.values()))
        # groups: one person and their interaction instances, shared by a few sequences
        needing = [i for i in range(count) if kinds[i] in NEEDS_GROUP]
        counting = [i for i in needing if kinds[i] == "count_on_hand"]
        others = [i for i in needing if kinds[i] != "count_on_hand"]
        groups: list[dict[str, Any]] = []
        for members, counting_group in ((others, False), (counting, True)):
            if not members:
                continue
            count_groups = max(1, round(len(members) / s.sequences_per_group))  # about that many per group
            for part in np.array_split(np.array(members), count_groups):
                groups.append({"members": [int(i) for i in part], "counting": counting_group})
        instances: list[tuple[int, Instance]] = []
        for g, group in enumerate(groups):
            betas = plan.normal(0.0, BETA_SIGMA, size=NUM_BETAS)
            group["betas"] = betas
            for template in self._group_templates(plan, group, [kinds[i] for i in group["members"]]):
                inst = Instance(template, draw(template, plan), {"left": betas, "right": betas})
                instances.append((g, inst))
        resolved = self.resolver.resolve([inst for _, inst in instances])
        for (g, _), res in zip(instances, resolved):
            if res.ok:
                groups[g].setdefault("resolved", []).append(res)
        member_group = {i: g for g, group in enumerate(groups) for i in group["members"]}

        out = []
        for i in range(count):
            rng = _stream(seed, chunk, 1, i)
            index = chunk * s.chunk_size + i
            kind = str(kinds[i])
            group = groups[member_group[i]] if i in member_group else None
            if group is not None and not group.get("resolved"):
                kind = "gestures"  # nothing of the group resolved: fall back to free hands
            elif kind == "clapping" and not any(r.template == "clap" for r in group["resolved"]):
                # The group's clap did not resolve: clapping along another template would slam
                # closed grips together, so these members perform the group's resolved interactions.
                kind = "interaction"
            if group is not None and kind != "gestures":
                betas, label = group["betas"], f"{chunk}:{member_group[i]}"
            else:
                betas, label = rng.normal(0.0, BETA_SIGMA, size=NUM_BETAS), f"{chunk}:solo{i}"
            clip = self.sequence(kind, rng, betas, group.get("resolved", []) if group else [],
                                 extra={"seed": int(seed), "index": int(index), "group": label})
            out.append(Sequence(name=f"{index:06d}", clip=clip, group=label))
        return ChunkReport(out, resolved)

    def _group_templates(self, rng: np.random.Generator, group: dict, kinds: list[str]) -> list[Template]:
        k = self.settings.instances_per_group
        if group["counting"]:
            fingers = sorted(rng.choice(len(FINGERS), size=min(k + 1, len(FINGERS)), replace=False))
            return [TEMPLATES[f"count_on_{FINGERS[f]}"] for f in fingers]
        names = list(rng.choice(INTERACTION_TEMPLATES, size=k, replace=False))
        if "clapping" in kinds and "clap" not in names:
            names[0] = "clap"
        return [TEMPLATES[n] for n in names]

    # ------------------------------------------------------------------ sequences
    def sequence(self, kind: str, rng: np.random.Generator, betas: np.ndarray, resolved: list[Resolved],
                 extra: dict[str, Any]) -> MotionClip:
        hands = {side: M.ShapedHand.from_rig(self.rigs[side], betas, self.frames[side]) for side in SIDES}
        speed = float(rng.uniform(0.7, 1.5))  # > 1: faster
        builder: Callable = {
            "gestures": self._gestures, "periodic": self._periodic, "interaction": self._interaction,
            "clapping": self._clapping, "count_on_hand": self._count_on_hand,
        }[kind]
        tracks, info, contact_frames = builder(rng, hands, resolved, speed)
        frames = tracks["left"].num_frames
        pose = {side: HandPose(**hands[side].to_pose(tracks[side])) for side in SIDES}
        corpus = {"version": CORPUS_VERSION, "kind": kind, "speed": round(speed, 3), "scene": SCENE_FRAME,
                  "contact_frames": contact_frames, **info, **extra}
        assert M.MIN_FRAMES <= frames <= M.MAX_FRAMES
        return MotionClip(hands=pose, fps=M.FPS, hand_model=self.model.name, extra={"corpus": corpus})

    # --- free hands -----------------------------------------------------
    def _free_start(self, rng: np.random.Generator, hands: dict) -> dict[str, M.HandState]:
        """Both hands apart in front of the body, each in a natural random orientation and pose."""
        states = {}
        for side, sign in (("left", -1.0), ("right", 1.0)):
            centre = np.array([sign * rng.uniform(0.17, 0.24), rng.uniform(-0.06, 0.06), rng.uniform(-0.1, 0.0)])
            states[side] = hands[side].state(pose_library.anatomical(str(rng.choice(FREE_POSES))),
                                             _random_palm(rng, side, centre))
        return states

    def _gestures(self, rng, hands, resolved, speed):
        start = self._free_start(rng, hands)
        timelines = {}
        for side in SIDES:
            tl = M.Timeline(start[side]).hold(rng.uniform(0.1, 0.6))
            for _ in range(rng.integers(2, 6)):
                angles = pose_library.anatomical(str(rng.choice(FREE_POSES)))
                turn = axis_angle_to_matrix(unit(rng.normal(size=3)) * np.radians(rng.uniform(0, 35)))
                target = tl.last.with_angles(angles).moved(rotation=turn)
                tl.move(target, _dur(rng, 0.3, 0.8, speed), M.finger_delays(rng, rng.uniform(0.0, 0.3)))
                tl.hold(rng.uniform(0.15, 1.0) / speed)
            timelines[side] = tl
        frames = _length(max(tl.time for tl in timelines.values()), rng)
        tracks = {side: tl.render(frames) for side, tl in timelines.items()}
        for side in SIDES:
            _shift(tracks[side], M.wrist_path(rng, frames, rng.uniform(0.0, 0.05)))
        return tracks, {"poses": "library"}, []

    def _periodic(self, rng, hands, resolved, speed):
        start = self._free_start(rng, hands)
        what = str(rng.choice(["tapping", "waving", "counting"]))
        active = [s for s in SIDES if rng.random() < 0.6] or [str(rng.choice(SIDES))]
        timelines, overlays = {}, []
        duration = rng.uniform(2.5, 9.0)
        for side in SIDES:
            tl = M.Timeline(start[side])
            if side in active and what == "counting":
                tl.hold(rng.uniform(0.2, 0.6))
                for n in range(1, 6):
                    tl.move(tl.last.with_angles(pose_library.anatomical(f"count_{n}")), _dur(rng, 0.3, 0.6, speed),
                            M.finger_delays(rng, 0.25))
                    tl.hold(rng.uniform(0.2, 0.7) / speed)
            elif side in active:
                base = TAP_BASES if what == "tapping" else WAVE_BASES
                palm = _tapping_palm(rng, side, start[side].centre) if what == "tapping" else \
                    _waving_palm(rng, side, start[side].centre)
                tl.move(hands[side].state(pose_library.anatomical(str(rng.choice(base))), palm), rng.uniform(0.4, 0.8))
            tl.hold(max(duration - tl.time, 0.1))
            timelines[side] = tl
        frames = _length(max(tl.time for tl in timelines.values()), rng)
        tracks = {side: tl.render(frames) for side, tl in timelines.items()}
        t_end = frames / M.FPS
        for side in active:
            if what == "tapping":
                fingers = tuple(f for f in FINGERS[1:] if rng.random() < 0.7) or ("index",)
                overlays.append(M.add_tapping(tracks[side], rng, fingers, 0.9, t_end - 0.2))
            elif what == "waving":
                overlays.append(M.add_waving(tracks[side], rng, 0.9, t_end - 0.2, hands[side].palm))
        for side in SIDES:
            _shift(tracks[side], M.wrist_path(rng, frames, rng.uniform(0.0, 0.03)))
        return tracks, {"periodic": what, "hands": active, "overlays": overlays}, []

    # --- interactions ---------------------------------------------------
    def _contact_states(self, hands, res: Resolved) -> dict[str, M.HandState]:
        return {side: hands[side].state_from_pose(res.angles[side], res.global_orient[side], res.transl[side])
                for side in SIDES}

    @staticmethod
    def _away(res: Resolved, contact: dict[str, M.HandState]) -> np.ndarray:
        """The direction along which the right hand leaves this interaction (scene frame)."""
        return res.approach

    def _far(self, rng, res: Resolved, contact: dict[str, M.HandState]) -> dict[str, M.HandState]:
        """Where a visit starts and ends: the right hand well clear along the approach direction,
        both hands relaxed."""
        relaxed = pose_library.anatomical("relaxed")
        turn = axis_angle_to_matrix(unit(rng.normal(size=3)) * np.radians(rng.uniform(0.0, 25.0)))
        away = self._away(res, contact)
        return {"left": contact["left"].with_angles(relaxed),
                "right": contact["right"].with_angles(relaxed).moved(rotation=turn,
                                                                     shift=away * rng.uniform(0.16, 0.24))}

    def _apart(self, rng, hands, res: Resolved, contact: dict[str, M.HandState], distance: float) -> dict:
        """The pair before/after touching: the right hand backed off along the approach direction,
        gripping fingers open."""
        template = TEMPLATES[res.template]
        away = self._away(res, contact)
        # a grip slides straight in (its open fingers already sit between or around the other
        # hand's); a touch may arrive turned a little
        tilt = 3.0 if template.grip else 15.0
        turn = axis_angle_to_matrix(unit(rng.normal(size=3)) * np.radians(rng.uniform(0.0, tilt)))
        apart = {"left": contact["left"], "right": contact["right"].moved(rotation=turn, shift=away * distance)}
        for side in template.grip:
            apart[side] = apart[side].with_angles(opened(contact[side].angles))
        return apart

    def _visit(self, pair: M.PairTimeline, rng, res: Resolved, contact, apart, speed, hold: float,
               contacts: list, first: bool) -> None:
        """Approach, (close the grip), hold, (open), back off; record the held span."""
        template = TEMPLATES[res.template]
        if first:
            pair.hold(rng.uniform(0.2, 0.6))
        # to the spot just apart, shaping the non-gripping fingers on the way (each finger its own pace)
        pair.move(apart, _dur(rng, 0.5, 1.1, speed), {side: M.finger_delays(rng, 0.25) for side in SIDES})
        # a grip arrives a centimetre short with its fingers open, then closes them while settling in
        # (as in the resolver, where the fingers close while the hands find their place)
        short = self._away(res, contact) * (GRIP_SHORT if template.grip else 0.0)  # the path the resolver checked
        arrive = {side: contact[side] if side not in template.grip else contact[side].with_angles(apart[side].angles)
                  for side in SIDES}
        arrive["right"] = arrive["right"].moved(shift=short)
        pair.move(arrive, _dur(rng, 0.35, 0.7, speed))
        if template.grip:
            # all fingers together, as the resolver closed them: staggered fingers would pass
            # through combinations it never checked (interlaced fingers collide then)
            pair.move(contact, _dur(rng, 0.3, 0.6, speed))
        t0 = pair.time
        pair.hold(hold)
        contacts.append([t0, t0 + hold, res.template])
        if template.grip:
            pair.move(arrive, _dur(rng, 0.25, 0.5, speed))
        pair.move(apart, _dur(rng, 0.35, 0.7, speed))

    def _interaction(self, rng, hands, resolved, speed):
        """One or two interactions, each entered from and left to a state with the hands well
        apart; between two, the right hand swings round the left one (a bent path), not through it."""
        chosen = list(rng.permutation(len(resolved)))[: int(rng.integers(1, 3))]
        contacts: list = []
        pair = None
        previous_away = None
        for k, idx in enumerate(chosen):
            res = resolved[idx]
            contact = self._contact_states(hands, res)
            far = self._far(rng, res, contact)
            away = self._away(res, contact)
            if pair is None:
                pair = M.PairTimeline(far)
            else:
                bend = previous_away + away
                if np.linalg.norm(bend) < 0.5:  # nearly opposite sides: go round above
                    bend = UP
                pair.move(far, _dur(rng, 0.7, 1.2, speed), via={"right": unit(bend) * 0.12})
            apart = self._apart(rng, hands, res, contact, rng.uniform(0.06, 0.14))
            self._visit(pair, rng, res, contact, apart, speed, rng.uniform(0.4, 2.0) / speed, contacts, k == 0)
            pair.move(far, _dur(rng, 0.4, 0.8, speed))
            previous_away = away
        pair.hold(rng.uniform(0.2, 0.8))
        return self._finish(rng, pair, contacts, [resolved[i].template for i in chosen])

    def _clapping(self, rng, hands, resolved, speed):
        res = next((r for r in resolved if r.template == "clap"), None)
        if res is None:  # chunk() turns clapping without a resolved clap into interaction
            raise ValueError(f"clapping needs a resolved 'clap' instance; got {[r.template for r in resolved]}")
        contact = self._contact_states(hands, res)
        away = res.approach
        gap = rng.uniform(0.06, 0.14)
        apart = {"left": contact["left"].moved(shift=-away * gap / 2), "right": contact["right"].moved(shift=away * gap / 2)}
        pair = M.PairTimeline(apart).hold(rng.uniform(0.2, 0.5))
        half = 1.0 / rng.uniform(1.2, 2.5) / 2.0  # clapping at 1.2–2.5 Hz
        touch = rng.uniform(0.0, 0.06)
        contacts = []
        for _ in range(int(rng.integers(3, 9))):
            pair.move(contact, half)
            contacts.append([pair.time, pair.time + touch, res.template])
            pair.hold(touch).move(apart, half)
        pair.hold(rng.uniform(0.2, 0.6))
        return self._finish(rng, pair, contacts, [res.template], sway_deg=5.0)

    def _count_on_hand(self, rng, hands, resolved, speed):
        order = sorted(resolved, key=lambda r: FINGERS.index(r.template.removeprefix("count_on_")))
        if rng.random() < 0.3:
            order = order[::-1]
        first = self._contact_states(hands, order[0])
        pair = M.PairTimeline(self._far(rng, order[0], first))
        contacts: list = []
        for k, res in enumerate(order):
            contact = self._contact_states(hands, res)
            apart = self._apart(rng, hands, res, contact, rng.uniform(0.025, 0.05))
            if k == 0:
                pair.hold(rng.uniform(0.2, 0.5))
                pair.move(apart, _dur(rng, 0.5, 0.9, speed), {side: M.finger_delays(rng, 0.2) for side in SIDES})
            else:
                pair.move(apart, _dur(rng, 0.25, 0.45, speed))
            pair.move(contact, _dur(rng, 0.2, 0.4, speed))
            hold = rng.uniform(0.15, 0.6) / speed
            contacts.append([pair.time, pair.time + hold, res.template])
            pair.hold(hold).move(apart, _dur(rng, 0.2, 0.35, speed))
        pair.hold(rng.uniform(0.2, 0.6))
        return self._finish(rng, pair, contacts, [r.template for r in order])

    def _finish(self, rng, pair: M.PairTimeline, contacts, templates, sway_deg: float = 10.0):
        """Render, then move the pair together: a random placement in front of the body, a slow
        sway and a wrist path — rigid for both hands, so held contacts stay exact."""
        frames = _length(pair.time, rng)
        tracks = pair.render(frames)
        pivot = 0.5 * (tracks["left"].centre[0] + tracks["right"].centre[0])
        place = axis_angle_to_matrix(np.radians([rng.uniform(-30, 30), rng.uniform(-45, 45), rng.uniform(-20, 20)]))
        rot = M.sway(rng, frames, rng.uniform(0.0, sway_deg)) @ place
        shift = M.wrist_path(rng, frames, rng.uniform(0.0, 0.05)) + np.array(
            [rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(-0.12, 0.0)]) - pivot
        M.move_pair(tracks, rot, shift, pivot)
        held = []
        for t0, t1, name in contacts:
            f0, f1 = int(math.ceil(t0 * M.FPS)), min(int(math.floor(t1 * M.FPS)), frames - 1)
            if f1 >= f0:
                held.append([f0, f1, name])
        return tracks, {"templates": templates}, held


# ---------------------------------------------------------------------- helpers
MIN_MOVE = 0.25  # s: no transition faster than this, whatever the clip's speed (our floor: no twitches)


def _dur(rng: np.random.Generator, low: float, high: float, speed: float) -> float:
    """A transition's duration: uniform in [low, high] seconds at normal speed, scaled by the
    clip's speed, never below ``MIN_MOVE``."""
    return max(rng.uniform(low, high) / speed, MIN_MOVE)


def _length(seconds: float, rng: np.random.Generator) -> int:
    """Frames for a timeline of ``seconds``: its length plus a short tail, within 60…300."""
    frames = int(round(seconds * M.FPS)) + int(rng.integers(0, 10))
    return int(np.clip(frames, M.MIN_FRAMES, M.MAX_FRAMES))


def _shift(track: M.HandTrack, path: np.ndarray) -> None:
    track.centre += path


def _random_palm(rng: np.random.Generator, side: str, centre: np.ndarray) -> PalmFrame:
    """A natural free-hand orientation: fingers up/forward/inwards (never towards the body)."""
    inward = RIGHT if side == "left" else -RIGHT
    forward = unit(rng.uniform(0.0, 1.0) * UP + rng.uniform(0.0, 1.0) * FORWARD + rng.uniform(-0.3, 0.8) * inward
                   + rng.normal(0.0, 0.15, size=3))
    normal = rotate(np.cross(forward, UP) if abs(forward @ UP) < 0.95 else RIGHT, forward, rng.uniform(0, 360))
    return PalmFrame(centre, forward, unit(normal - (normal @ forward) * forward))


def _tapping_palm(rng, side, centre) -> PalmFrame:
    """Palm down, fingers forward (resting on a surface)."""
    inward = RIGHT if side == "left" else -RIGHT
    forward = unit(FORWARD + rng.uniform(0.0, 0.5) * inward + rng.normal(0.0, 0.1, size=3))
    return PalmFrame(centre, forward, unit(-UP + rng.normal(0.0, 0.1, size=3)))


def _waving_palm(rng, side, centre) -> PalmFrame:
    """Fingers up, palm facing forward (a wave)."""
    return PalmFrame(centre + np.array([0.0, 0.08, 0.0]), unit(UP + rng.normal(0.0, 0.15, size=3)),
                     unit(FORWARD + rng.normal(0.0, 0.15, size=3)))


__all__ = ["CorpusSettings", "Generator", "KINDS", "Sequence", "ChunkReport", "CORPUS_VERSION"]
