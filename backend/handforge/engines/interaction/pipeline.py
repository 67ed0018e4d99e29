"""Sampling two-hand interactions: cascaded DDIM with classifier-free and anti-penetration guidance
(InterHandGen, arXiv:2403.17422, §3.2–3.3), and the plausibility score that orders candidates.

    pipe = InteractionPipeline(denoiser, load_hand_model("open"))
    found = pipe(SampleSettings(count=16, seed=0), anchor={"side": "left", "global_orient": ..., ...})
    found.hands["right"]["hand_pose"]   # (16, 45), best candidate first; found.score (16,)

1. The anchor: the artist's hand (returned exactly as given), or sampled unconditionally (its
   wrist at the origin, unrotated).
2. The other hand, conditioned on the anchor's vector, by DDIM (diffusers ``DDIMScheduler``, the
   model predicting x0, the standard update; InterHandGen's code uses x0 − x_t in place of the
   noise estimate). At each step x0 = x0_c + s (x0_c − x0_u) (classifier-free guidance, s =
   ``cfg_scale``, as the reference's ``cf_scale``), then over the last ``guidance_steps`` steps
   x0 ← x0 − w_k ∇ L(x0), L the summed penetration depth of the two hands' vertices
   (``handforge.evaluation.penetration.penetration_loss``: nearest vertex and its normal on wrist-sealed
   meshes) + ``contact_guidance`` · max(gap − 2 mm, 0) for hands within 3 cm (not in the paper: the
   training interactions all touch, and the penetration term alone leaves half the samples a
   centimetre or two apart), w_k = ``penetration_guidance`` · 0.8^(steps left), each sample's gradient
   clipped to ``guidance_max_step`` long before it is weighted, so a step is at most min(w_k, 2) ·
   ``guidance_max_step`` (``LONGEST_STEP``: above the default strength 2, w only lengthens the early
   steps' ramp; 10 to 50 unbounded had left every candidate 6 to 45 cm away) (unclipped, a deep overlap threw the hands centimetres apart:
   measured mean gap 2.5 → 75 mm for w 0.02 → 0.3 on the shipped model's predecessor), and a pair apart
   (no penetration, the contact term alone) no further than that term's first-order zero, its value
   over its gradient's length (Polyak's step size, B. T. Polyak, "Introduction to Optimization", 1987):
   a full step overshot into the anchor (a fist's partner 11 mm deep from 7 mm apart). The gradient of the whole batch
   is ONE backward pass (the loss is a sum of independent per-pair terms; it runs through the skinning of
   only the vertices the loss reaches, ``HandModel.vertices_at``); the reference computes
   it per sample, which its README warns "significantly increases sampling time".
   ``per_sample_guidance=True`` does that, for the benchmark.
3. Finger angles are projected into the joint limits. With ``separation`` (not in the paper), the
   generated hand is then moved rigidly out of the anchor along the penetration gradient of its
   translation, by the shortest of 1, 2, 4 … 128 mm that leaves no vertex deeper than
   ``overlap_tolerance`` (1.5 mm; chosen on the validation split, below the ground truth's overlap
   without pushing the hands out of touch: 1 mm left a quarter of its volume) (or the
   one leaving the least depth, and from there once more along the way, of a new gradient's, the one
   between the hands' centres and the six axes, that clears soonest: interlaced fingers can make the
   gradient point along them;
   ``evaluation.penetration.separating_shifts``; the corpus's resolver instead optimises placement and fingers
   towards a template's contacts, 0.6–0.8 s a sample, and a sample has no template): guidance
   works in the denoiser's units and leaves overlaps of millimetres to centimetres, which a
   translation of the same size removes without touching the pose. With ``touch`` (not in the
   paper), a generated hand left apart (up to 5 cm) is moved rigidly the other way, along the line
   between the hands' nearest vertices until they are 1 mm apart or as far as the tolerance allows
   (``evaluation.penetration.touching_shifts``): the data's interactions all touch, and half the samples did not.
4. Candidates still deeper than the tolerance after that (the few whose fingers interlock; before
   the separation tried other ways than the gradient's, 6 of the first 100 free samples, yet most of
   their overlap volume) are
   drawn again with fresh noise, twice as many, ``redraws`` rounds, the least deep new draws
   replacing the deepest old ones where they are less deep: rejection sampling towards the data,
   where hands never interlock (not in the paper). Only with ``separation``: without it nearly
   every candidate overlaps. The redraws have the last 20 % of the progress bar. Every
   candidate is scored and the list is sorted, best first.

Score (higher is better, in (0, 1]): 1 / (1 + depth/2 mm + max(gap − 2 mm, 0)/5 mm + limits/5°),
where depth is the deepest vertex of either hand inside the other, gap the smallest distance
between the hands' vertices (an interaction touches), limits the worst joint-limit violation of
the generated hands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from handforge.engines.interaction.model import ANCHOR as ANCHOR_MODE
from handforge.engines.interaction.model import OTHER, OTHER_FREE, InteractionDenoiser
from handforge.engines.interaction.representation import (
    ANCHOR_FREE,
    FIELDS,
    IDENTITY_6D,
    decode_anchor,
    decode_other,
    mirror_hand,
)
from handforge.evaluation.limits import joint_frames, joint_limit_violations
from handforge.evaluation.penetration import (
    FixedHands,
    closest_distances,
    penetration_depths,
    penetration_loss,
    separating_shifts,
    touching_shifts,
)
from handforge.hands.wrists import WristJoints
from handforge_shared.anatomy import clamp_pose, pose_violation
from handforge_shared.rotations import axis_angle_to_matrix, mirror_points
from handforge_shared.skeleton import SIDES, other_side

Progress = Callable[[float, str], None]
CONTACT_RANGE = 0.03      # m: hands closer than this are pulled into contact by the contact guidance
CONTACT_TOLERANCE = 0.002  # m: a gap this small counts as touching (the guidance and the score)
TOUCH_GAP = 0.001          # m: ``touch`` leaves the hands' nearest vertices this far apart
TOUCH_REACH = 0.05         # m: hands further apart than this are left where they are
REDRAW_SPARE = 2           # a redraw round draws this many candidates per interlocked one
REDRAW_SHARE = 0.2         # of the progress bar, kept for the redraws (most requests need none or one)
# a guided step is at most this many guidance_max_step long, the default strength's longest: a strength of 10 to
# 50 made steps of up to 7.5 normalised units and left every candidate 6 to 45 cm from the hand it was to touch
LONGEST_STEP = 2.0
LIMITS_TOLERANCE = np.radians(0.5)  # an anchor finger further outside its limits conditions the model clamped


@dataclass
class SampleSettings:
    count: int = 16                    # candidates
    seed: int = 0
    steps: int = 20                    # DDIM steps per hand
    cfg_scale: float = 0.1             # classifier-free guidance s (0: plain conditional)
    penetration_guidance: float = 2.0  # anti-penetration strength w (0: off); 2 chosen on the validation split
    guidance_steps: int = 10           # the last K steps are guided
    guidance_max_step: float = 0.15    # per step and sample, the longest guidance step (normalised units)
    contact_guidance: float = 1.0      # weight of the contact term in the guided loss (0: off); 1 chosen on validation
    per_sample_guidance: bool = False  # the reference's way (one backward per sample): benchmarks only
    per_sample_anchor_once: bool = False  # with it, each anchor's normals and k-d tree built once, not per step
    separation: bool = True            # finally move the generated hand rigidly out of the anchor (see 3.)
    redraws: int = 2                   # rounds of drawing the still-interlocked candidates again (see 4.; 0: off)
    overlap_tolerance: float = 0.0015  # m: the deepest vertex the separation leaves, deeper ones are redrawn
    touch: bool = True                 # move a generated hand that is apart rigidly into touch (see 3.)
    betas: Any = None                  # (10,) both hands' shape when both are sampled (None: drawn with them)


@dataclass
class Candidates:
    """Both hands of N candidates (per side, per field (N, n) float32), best first, and their scores."""

    hands: dict[str, dict[str, np.ndarray]]
    score: np.ndarray        # (N,) plausibility, higher is better
    max_depth: np.ndarray    # (N,) m
    gap: np.ndarray          # (N,) m, 0 when touching or penetrating
    limit: np.ndarray        # (N,) degrees, worst joint-limit violation of the generated hands
    anchor_side: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Wire arrays: ``<side>.<field>`` (N, n) plus ``score``, ``max_depth``, ``gap``, ``limit``."""
        out = {f"{side}.{name}": value for side, hand in self.hands.items() for name, value in hand.items()}
        out.update(score=self.score, max_depth=self.max_depth, gap=self.gap, limit=self.limit)
        return out


def plausibility(hand_model: Any, hands: Mapping[str, Mapping[str, torch.Tensor]], generated: tuple[str, ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(score, max depth m, gap m, limit violation degrees) of N two-hand candidates."""
    with torch.no_grad():
        verts = {s: hand_model(s, **{f: hands[s][f] for f in FIELDS}).vertices for s in SIDES}
        depth_l, depth_r = penetration_depths(verts["left"], verts["right"], hand_model.faces("left"),
                                              hand_model.faces("right"))
        depth = torch.maximum(depth_l.amax(-1), depth_r.amax(-1)).double().cpu().numpy()
        gap, apart = np.zeros_like(depth), np.flatnonzero(depth == 0)  # (hands that overlap touch: gap 0)
        gap[apart] = closest_distances(verts["left"][apart], verts["right"][apart])
    limit = np.zeros(len(depth))
    for side in generated:
        violation = joint_limit_violations(hands[side]["hand_pose"].detach().double().cpu().numpy(), side,
                                           hand_model.rig(side))
        limit = np.maximum(limit, np.degrees(violation.max(axis=(-2, -1))))
    penalty = depth * 1e3 / 2 + np.maximum(gap - CONTACT_TOLERANCE, 0.0) * 1e3 / 5 + limit / 5
    return 1.0 / (1.0 + penalty), depth, gap, limit


def settle(hand_model: Any, fixed: FixedHands, side: str, other: dict[str, torch.Tensor],
           s: SampleSettings) -> dict[str, torch.Tensor]:
    """Step 3: the other hands ``other`` (fields (N, n)) moved rigidly out of their anchors ``fixed``
    (of ``side``) with ``separation``, and those apart into touch with ``touch``; their poses unchanged.
    The templates engine settles its candidates around an artist's hand the same way (its hands on the CPU, the
    hand model and so the shifts on the job's device: they come back on the hands')."""
    generated = other_side(side)
    other = dict(other)
    if s.separation:
        shift = separating_shifts(fixed, hand_model(generated, **other).vertices, hand_model.faces(side),
                                  hand_model.faces(generated), s.overlap_tolerance)
        other["transl"] = other["transl"] + shift.to(other["transl"])
    if s.touch:
        shift = touching_shifts(fixed, hand_model(generated, **other).vertices, hand_model.faces(side),
                                hand_model.faces(generated), TOUCH_GAP, s.overlap_tolerance, TOUCH_REACH)
        other["transl"] = other["transl"] + shift.to(other["transl"])
    return other


class InteractionPipeline:
    """Samples interactions from an ``InteractionDenoiser`` on a hand model (open or MANO)."""

    def __init__(self, denoiser: InteractionDenoiser, hand_model: Any) -> None:
        self.denoiser = denoiser.eval()
        self.hand_model = hand_model
        self.device = denoiser.device
        self.wrists = WristJoints.of(hand_model)
        self.frames = {side: joint_frames(side, hand_model.rig(side)) for side in SIDES}
        # MANO shapes are not the open hand's: the model then sees the open hand's mean shape
        self.own_shapes = getattr(hand_model, "name", "open") == "open"

    @torch.no_grad()
    def __call__(self, settings: SampleSettings, anchor: Mapping[str, Any] | None = None,
                 progress: Progress | None = None) -> Candidates:
        s = settings
        progress = progress or (lambda fraction, message: None)
        generator = torch.Generator().manual_seed(int(s.seed))
        per_draw = s.steps * (1 if anchor is not None else 2)
        redraws = s.redraws if s.separation else 0  # step 4 follows step 3: without it all overlaps would count
        share = REDRAW_SHARE if redraws else 0.0

        def stretch(start: float, span: float) -> Callable[[str], None]:
            """A draw's step reports, spread over [start, start + span] of the bar."""
            done = [0]

            def step_done(message: str) -> None:
                done[0] += 1
                progress(start + span * min(done[0] / per_draw, 1.0), message)
            return step_done

        given = None if anchor is None else {  # copies: arrays from the wire are read-only, which torch warns about
            f: torch.tensor(np.asarray(anchor[f], dtype=np.float32)).reshape(1, -1).to(self.device) for f in FIELDS}
        side = "left" if anchor is None else anchor["side"]
        generated = (other_side(side),) if anchor is not None else SIDES
        hands = self._draw(s, s.count, side, given, generator, stretch(0.0, 1.0 - share))
        score, depth, gap, limit = plausibility(self.hand_model, hands, generated)
        for round_ in range(redraws):  # step 4; each round has its share of the bar, skipped when not needed
            step_done = stretch(1.0 - share + share * round_ / redraws, share / redraws)
            if not self._redraw(s, round_, hands, (score, depth, gap, limit), side, given, generator, step_done):
                break
        order = np.argsort(-score, kind="stable")
        out = {sd: {f: hands[sd][f].detach().cpu().numpy().astype(np.float32)[order] for f in FIELDS} for sd in SIDES}
        if anchor is not None:  # exactly what the artist sent, not a round trip through float32 tensors
            out[side] = {f: np.repeat(np.asarray(anchor[f], dtype=np.float32).reshape(1, -1), s.count, axis=0)
                         for f in FIELDS}
        return Candidates(out, score[order], depth[order], gap[order], limit[order],
                          anchor_side=anchor["side"] if anchor is not None else None)

    def _redraw(self, s: SampleSettings, round_: int, hands: dict[str, dict[str, torch.Tensor]],
                scored: tuple[np.ndarray, ...], side: str, given: Mapping[str, torch.Tensor] | None,
                generator: torch.Generator, step_done: Callable[[str], None]) -> bool:
        """One round of step 4, in place on ``hands`` and their (score, depth, gap, limit); False when
        no candidate is deeper than the tolerance (nothing to redraw)."""
        depth = scored[1]
        redo = np.nonzero(depth > s.overlap_tolerance)[0]
        if not len(redo):
            return False
        generated = tuple(sd for sd in SIDES if given is None or sd != side)

        def redraw_step(message: str) -> None:
            step_done(f"redraw {round_ + 1}/{s.redraws} of {len(redo)} interlocked: {message}")

        # twice as many as needed, for about the time of as many (a step costs little more): the least
        # deep new ones replace the deepest old ones where they are less deep
        again = self._draw(s, REDRAW_SPARE * len(redo), side, given, generator, redraw_step)
        new = plausibility(self.hand_model, again, generated)
        fresh = np.argsort(new[1], kind="stable")[:len(redo)]
        stale = redo[np.argsort(-depth[redo], kind="stable")]
        better = new[1][fresh] < depth[stale]
        fresh, stale = fresh[better], stale[better]
        for sd in generated:
            for f in FIELDS:
                hands[sd][f][torch.as_tensor(stale, device=self.device)] = \
                    again[sd][f][torch.as_tensor(fresh, device=self.device)]
        for mine, theirs in zip(scored, new):
            mine[stale] = theirs[fresh]
        return True

    def _draw(self, s: SampleSettings, n: int, side: str, given: Mapping[str, torch.Tensor] | None,
              generator: torch.Generator, step_done: Callable[[str], None]) -> dict[str, dict[str, torch.Tensor]]:
        """Steps 1–3 for ``n`` candidates: both hands, per side and field (n, d)."""
        world_anchor = ({f: v.float().expand(n, -1) for f, v in given.items()} if given is not None
                        else self._sample_anchor(s, n, generator, step_done))
        mirror = side == "right"
        canon = mirror_hand(world_anchor) if mirror else world_anchor
        known = self._within_limits(world_anchor, side)  # the condition; the anchor itself is never changed
        known_canon = mirror_hand(known) if mirror else known
        wrist_world = self.wrists(side, world_anchor["betas"]) + world_anchor["transl"]
        wrist = mirror_points(wrist_world) if mirror else wrist_world
        rotation = axis_angle_to_matrix(canon["global_orient"])
        shape = canon["betas"] if self.own_shapes else torch.zeros_like(canon["betas"])
        condition = torch.cat([mirror_hand(known_canon)["hand_pose"], shape,
                               shape.new_tensor(IDENTITY_6D + (0.0, 0.0, 0.0)).expand(n, 9)], dim=-1)
        condition = self.denoiser.normalise(condition, 0)
        anchor_verts = self.hand_model(side, **world_anchor).vertices
        generated = other_side(side)
        betas = world_anchor["betas"]  # one person: the generated hand takes the anchor's shape

        def decode(x0: torch.Tensor, rows: slice = slice(None)) -> dict[str, torch.Tensor]:
            return decode_other(self.denoiser.denormalise(x0, 1), rotation[rows], wrist[rows], self.wrists,
                                betas[rows], mirror)

        # the anchors do not move: for the batched guidance and the separation their normals and k-d
        # tree are built once
        batched_guidance = s.penetration_guidance > 0 and not s.per_sample_guidance
        fixed = (FixedHands(anchor_verts, self.hand_model.faces(side)) if batched_guidance or s.separation or s.touch
                 else None)

        anchor_of_rows: dict[tuple[int, int], FixedHands] = {}  # per_sample_anchor_once: across the steps

        def guided_loss(x0: torch.Tensor, rows: slice) -> torch.Tensor:
            """``guided_terms`` of one sample, all rebuilt per call, as the reference does (kept for the
            benchmark; the batch goes through ``_batched_gradient``); with ``per_sample_anchor_once`` the
            anchor's FixedHands are built at its first guided step and kept, as the batch's are."""
            if not s.per_sample_anchor_once:
                anchor_side = FixedHands(anchor_verts[rows], self.hand_model.faces(side))
            elif (rows.start, rows.stop) in anchor_of_rows:
                anchor_side = anchor_of_rows[rows.start, rows.stop]
            else:
                anchor_side = anchor_of_rows[rows.start, rows.stop] = FixedHands(anchor_verts[rows],
                                                                                 self.hand_model.faces(side))
            return guided_terms(self.hand_model(generated, **decode(x0, rows)).vertices, anchor_side)

        def guided_terms(verts: torch.Tensor, anchor_side: FixedHands) -> torch.Tensor:
            """Per sample (N, 2): the penetration term and the contact term of the guided loss, of the
            generated hands' vertices (N, V, 3) against their anchors."""
            pair = (anchor_side, verts) if side == "left" else (verts, anchor_side)
            # one k-d tree search of the anchor serves both terms
            found = anchor_side.search(verts, CONTACT_RANGE if s.contact_guidance > 0 else 0.0)
            loss = penetration_loss(*pair, self.hand_model.faces("left"), self.hand_model.faces("right"),
                                    found=found)
            contact = torch.zeros_like(loss)
            if s.contact_guidance > 0:  # the training interactions all touch: close small gaps
                gap, near = anchor_side.gaps(verts, CONTACT_RANGE, found)
                contact = s.contact_guidance * (gap - CONTACT_TOLERANCE).clamp_min(0) * near
            return torch.stack([loss, contact], dim=-1)

        scheduler = self.denoiser.noise_scheduler(sampling=True)
        scheduler.set_timesteps(s.steps)
        x = torch.randn(n, condition.shape[1], generator=generator).to(self.device)
        guided_from = len(scheduler.timesteps) - s.guidance_steps
        for k, t in enumerate(scheduler.timesteps):
            both = self.denoiser(torch.cat([x, x]), t.to(self.device), torch.cat([condition, condition]),
                                 torch.tensor([OTHER] * n + [OTHER_FREE] * n, device=self.device))
            x0_c, x0_u = both[:n], both[n:]
            x0 = x0_c + s.cfg_scale * (x0_c - x0_u)
            if s.penetration_guidance > 0 and k >= guided_from:
                weight = s.penetration_guidance * 0.8 ** (len(scheduler.timesteps) - 1 - k)
                terms, step = (self._per_sample_gradient(guided_loss, x0) if s.per_sample_guidance
                               else self._batched_gradient(guided_terms, fixed, decode, generated, x0))
                # deep overlaps have large gradients that would throw the hands apart: clip each step
                length = step.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                travel = (weight * torch.clamp(length, max=s.guidance_max_step)).clamp(max=LONGEST_STEP * s.guidance_max_step)
                # a pair apart is pulled by the contact term alone, c (gap - 2 mm): never further than
                # its first-order zero, c (gap - 2 mm) / |grad| (Polyak's step). Longer steps overshot
                # into the anchor: the last step (weight 2) put a fist's partner 11 mm deep from 7 mm apart
                apart = (terms[:, :1] == 0) & (terms[:, 1:] > 0)
                travel = torch.where(apart, torch.minimum(travel, terms[:, 1:] / length), travel)
                x0 = x0 - step / length * travel
            x = scheduler.step(x0, t, x, eta=0.0).prev_sample
            step_done(f"other hand: step {k + 1}/{s.steps}")
        other = {f: v.float() for f, v in decode(x).items()}
        other["hand_pose"] = clamp_pose(other["hand_pose"], self.frames[generated], generated)
        other = settle(self.hand_model, fixed, side, other, s)  # step 3
        # own memory (the anchor's fields and the shared betas are expanded views): redraws write rows in place
        return {sd: {f: v.clone() for f, v in hand.items()} for sd, hand in ((side, world_anchor), (generated, other))}

    def _within_limits(self, hand: dict[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
        """``hand`` with the fingers of the rows outside the joint limits moved into them (the others as
        they are, bit for bit): the model was trained on hands within the limits, and conditioned on one
        far outside (every finger angle 3 rad) it put its partner 0.8–1.7 m away."""
        pose = hand["hand_pose"]
        outside = pose_violation(pose.double(), self.frames[side], side).amax(dim=(-2, -1)) > LIMITS_TOLERANCE
        if not bool(outside.any()):
            return hand
        limited = torch.where(outside[:, None], clamp_pose(pose, self.frames[side], side), pose)
        return {**hand, "hand_pose": limited}

    def _sample_anchor(self, s: SampleSettings, n: int, generator: torch.Generator,
                       step_done: Callable[[str], None]) -> dict[str, torch.Tensor]:
        """``n`` unconditional anchors: left hands, wrist at the origin, unrotated."""
        scheduler = self.denoiser.noise_scheduler(sampling=True)
        scheduler.set_timesteps(s.steps)
        x = torch.randn(n, self.denoiser.config.vector_dim, generator=generator).to(self.device)
        zeros, mode = torch.zeros_like(x), torch.full((n,), ANCHOR_MODE, device=self.device)
        for k, t in enumerate(scheduler.timesteps):
            x0 = self.denoiser(x, t.to(self.device), zeros, mode)
            x0[:, ANCHOR_FREE.stop:] = 0.0  # fixed root and translation: 0 once normalised
            x = scheduler.step(x0, t, x, eta=0.0).prev_sample
            step_done(f"anchor: step {k + 1}/{s.steps}")
        hand = {f: v.float() for f, v in decode_anchor(self.denoiser.denormalise(x, 0), self.wrists).items()}
        if s.betas is not None or not self.own_shapes:  # the rigs' shape, which they are shown with; or MANO's mean
            hand["betas"] = (torch.zeros_like(hand["betas"]) if s.betas is None else
                             torch.tensor(np.asarray(s.betas, np.float32)).reshape(1, -1).expand(n, -1).to(self.device))
            hand["transl"] = -self.wrists("left", hand["betas"])
        hand["hand_pose"] = clamp_pose(hand["hand_pose"], self.frames["left"], "left")
        return hand

    def _batched_gradient(self, terms: Callable[..., torch.Tensor], fixed: FixedHands,
                          decode: Callable[[torch.Tensor], dict[str, torch.Tensor]], generated: str,
                          x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample loss ``terms`` (N, k) at ``x0`` and the gradient of their sum (N, D), for the
        whole batch at once (the pairs' terms are independent). By the chain rule in two backward
        passes: the loss's gradient in the generated hands' vertices, then back through the skinning
        of only the vertices it reaches (those in or near the anchor, a few percent), not the whole
        mesh's (whose backward was a fifth of the guidance's time). The same gradient, to rounding."""
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            params = decode(x)
            with torch.no_grad():
                verts = self.hand_model(generated, **params).vertices
            verts.requires_grad_(True)
            value = terms(verts, fixed)
            d_verts = torch.autograd.grad(value.sum(), verts)[0]
            pair, vertex = d_verts.ne(0).any(-1).nonzero(as_tuple=True)
            at = self.hand_model.vertices_at(generated, **params, pair=pair, vertex=vertex)
            step = torch.autograd.grad((at * d_verts[pair, vertex]).sum(), x, materialize_grads=True)[0]
        return value.detach(), step

    @staticmethod
    def _per_sample_gradient(loss: Callable[..., torch.Tensor], x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``_batched_gradient``'s answer with one plain backward per sample, through the whole mesh."""
        with torch.enable_grad():
            values, rows = [], []
            for i in range(len(x0)):  # the reference's way, kept for the benchmark
                x = x0[i:i + 1].detach().requires_grad_(True)
                value = loss(x, slice(i, i + 1))
                values.append(value.detach())
                rows.append(torch.autograd.grad(value.sum(), x)[0])
            return torch.cat(values), torch.cat(rows)


__all__ = ["Candidates", "InteractionPipeline", "SampleSettings", "plausibility", "settle"]
