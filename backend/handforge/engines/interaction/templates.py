"""The always-available interaction engine: the open corpus's two-hand templates (built from the
pose library's poses) with randomised placement, settled by the corpus's penetration resolver.

No weights needed. Templates are resolved on the open hand (their regions and poses are defined
on it); for another hand model the result moves over as anatomical finger angles (the rig's own
joint frames) and wrist positions. With an artist's anchor, the template's anchor hand takes the
artist's finger angles before resolving (so the other hand settles around that hand), and the
resolved pair is then moved rigidly onto the artist's wrist, the other hand taking the artist's
shape (one person, as the learned engine's); the anchor comes back unchanged. The move (and
another hand model's shape) can leave the hands in or apart from each other: with
``separation`` and ``touch`` the other hand is then moved rigidly out of the anchor and into touch,
as the learned engine's candidates are (around *pinch* and *fist*, before it: overlaps up to 14 mm
deep and gaps up to 17 mm).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from handforge.corpus.generator import BETA_SIGMA  # hand shapes drawn as the corpus draws them
from handforge.corpus.resolver import Instance, Resolver
from handforge.corpus.templates import Arrangement, draw, get_template, template_names
from handforge.engines.interaction.pipeline import Candidates, Progress, SampleSettings, plausibility, settle
from handforge.engines.interaction.representation import FIELDS, mirror_hand
from handforge.evaluation.limits import joint_frames
from handforge.evaluation.penetration import FixedHands
from handforge.hands.wrists import WristJoints
from handforge_shared.anatomy import anatomical_to_hand_pose, hand_pose_to_anatomical
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle, mirror_points
from handforge_shared.skeleton import SIDES

CHUNK = 4  # instances per resolver call (progress between calls)


class TemplateSampler:
    def __init__(self, hand_model: Any, open_hand: Any | None = None) -> None:
        from handforge.hands import load_hand_model

        self.hand_model = hand_model
        self.open_hand = open_hand if open_hand is not None else (
            hand_model if getattr(hand_model, "name", "open") == "open" else load_hand_model("open"))
        self.resolver = Resolver(self.open_hand)
        self.wrists = WristJoints.of(hand_model)
        self.open_wrists = WristJoints.of(self.open_hand)
        self.frames = {side: joint_frames(side, hand_model.rig(side)) for side in SIDES}
        self.open_frames = {side: joint_frames(side, self.open_hand.rig(side)) for side in SIDES}

    def __call__(self, settings: SampleSettings, anchor: Mapping[str, Any] | None = None,
                 templates: Sequence[str] | None = None, progress: Progress | None = None) -> Candidates:
        progress = progress or (lambda fraction, message: None)
        n, rng = settings.count, np.random.default_rng(settings.seed)
        names = list(templates) if templates else list(template_names())
        for name in names:
            get_template(name)  # a clear error for an unknown name
        own_shape = anchor is not None and getattr(self.hand_model, "name", "open") == "open"
        instances = []
        for _ in range(n):
            template = get_template(str(rng.choice(names)))
            arrangement = draw(template, rng)
            betas = np.asarray(anchor["betas"], np.float64).reshape(10) if own_shape else \
                rng.normal(0.0, BETA_SIGMA, 10) if anchor is None else np.zeros(10)
            if anchor is None and settings.betas is not None:  # both free, the shape the rigs show them with
                betas = np.asarray(settings.betas, np.float64).reshape(10)
            if anchor is not None:  # the template's anchor (its left hand) takes the artist's fingers
                angles = hand_pose_to_anatomical(np.asarray(anchor["hand_pose"], np.float64).reshape(45),
                                                 self.frames[anchor["side"]], anchor["side"])
                arrangement = Arrangement({**arrangement.angles, "left": angles}, arrangement.palms)
            instances.append(Instance(template, arrangement, {"left": betas, "right": betas}))
        resolved = []
        for start in range(0, n, CHUNK):
            resolved += self.resolver.resolve(instances[start:start + CHUNK])
            progress(min(n, start + CHUNK) / n, f"resolved {min(n, start + CHUNK)}/{n} template instances")
        hands = {side: self._hands(resolved, side) for side in SIDES}
        used = [r.template for r in resolved]
        generated = SIDES
        if anchor is not None:
            hands, generated = self._onto_anchor(hands, anchor), ("left" if anchor["side"] == "right" else "right",)
            hands = self._settled(hands, anchor["side"], settings)
        score, depth, gap, limit = plausibility(self.hand_model, hands, generated)
        order = np.argsort(-score, kind="stable")
        out = {side: {f: hands[side][f].cpu().numpy().astype(np.float32)[order] for f in FIELDS} for side in SIDES}
        if anchor is not None:
            out[anchor["side"]] = {f: np.repeat(np.asarray(anchor[f], np.float32).reshape(1, -1), n, axis=0)
                                   for f in FIELDS}
        return Candidates(out, score[order], depth[order], gap[order], limit[order],
                          anchor_side=anchor["side"] if anchor is not None else None,
                          extra={"templates": [used[i] for i in order]})

    def _hands(self, resolved: list, side: str) -> dict[str, torch.Tensor]:
        """Resolved instances (open hand) → ``side``'s parameters on the target hand model."""
        t = lambda a: torch.tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
        angles = np.stack([r.angles[side] for r in resolved])
        betas = t([r.betas[side] for r in resolved])
        wrist = self.open_wrists(side, betas) + t([r.transl[side] for r in resolved])
        return {"global_orient": t([r.global_orient[side] for r in resolved]),
                "hand_pose": torch.as_tensor(anatomical_to_hand_pose(angles, self.frames[side], side), dtype=torch.float32),
                "betas": betas, "transl": wrist - self.wrists(side, betas)}

    def _mirrored(self, hand: Mapping[str, torch.Tensor], side: str, new_side: str) -> dict[str, torch.Tensor]:
        """``hand`` mirrored into a ``new_side`` hand; ``transl`` from the mirrored wrist position
        (MANO's rest wrists are not exact mirror images of each other)."""
        out = mirror_hand(hand)
        wrist = mirror_points(self.wrists(side, hand["betas"]) + hand["transl"])
        out["transl"] = wrist - self.wrists(new_side, hand["betas"])
        return out

    def _settled(self, hands: dict, side: str, s: SampleSettings) -> dict:
        """The other hand moved rigidly out of the anchor and into touch (``pipeline.settle``)."""
        if not (s.separation or s.touch):
            return hands
        other_side = "left" if side == "right" else "right"
        fixed = FixedHands(self.hand_model(side, **hands[side]).vertices, self.hand_model.faces(side))
        return {side: hands[side], other_side: settle(self.hand_model, fixed, side, hands[other_side], s)}

    def _onto_anchor(self, hands: dict, anchor: Mapping[str, Any]) -> dict:
        """Mirror the pair if the artist's hand is a right hand, then move it rigidly so that the
        template's anchor wrist lands on the artist's."""
        side = anchor["side"]
        other_side = "left" if side == "right" else "right"
        if side == "right":  # the template's left hand is the anchor: mirror the pair (sides swap)
            hands = {new: self._mirrored(hands[old], old, new) for new, old in (("right", "left"), ("left", "right"))}
        n = hands[side]["global_orient"].shape[0]
        # (a copy: the arrays a client sent are read-only, which torch warned of in the backend's log)
        given = {f: torch.tensor(np.asarray(anchor[f], np.float32)).reshape(1, -1).expand(n, -1) for f in FIELDS}
        r_template = axis_angle_to_matrix(hands[side]["global_orient"])
        r_user = axis_angle_to_matrix(given["global_orient"])
        w_template = self.wrists(side, hands[side]["betas"]) + hands[side]["transl"]
        w_user = self.wrists(side, given["betas"]) + given["transl"]
        move = r_user @ r_template.transpose(-1, -2)
        other = dict(hands[other_side])
        w_other = self.wrists(other_side, other["betas"]) + other["transl"]
        other["global_orient"] = matrix_to_axis_angle(move @ axis_angle_to_matrix(other["global_orient"]))
        # one person, as the learned engine's: the other hand takes the anchor's shape, its wrist where the move put
        # it (on MANO the template's hands were drawn at betas 0, which the add-on's rig of the anchor's shape does
        # not show: 3-12 mm into the anchor at scores of 1.0; on the open hand they were the anchor's already)
        other["betas"] = given["betas"]
        other["transl"] = w_user + (move @ (w_other - w_template)[..., None])[..., 0] - self.wrists(other_side, other["betas"])
        return {side: given, other_side: other}


__all__ = ["TemplateSampler"]
