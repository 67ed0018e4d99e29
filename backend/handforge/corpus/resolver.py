"""The penetration resolver: makes drawn interaction instances touch where intended, without overlap.

For a batch of instances (any mix of templates) it optimises, with Adam through the differentiable
hand model, the right hand's rigid placement (a rotation about its palm centre and a translation)
and the finger angles of both hands (anatomical, projected back into the joint limits after every
step). The objective:

    penetration   the summed depth of the vertices of each hand inside the other (wrist-sealed
                  meshes): ``handforge.evaluation.penetration.penetration_depths``, i.e. what
                  ``penetration_loss`` sums; the per-vertex depths also decide when to stop
    contact       for each intended contact, the gap between the two regions (closest vertex
                  pair) beyond ``CONTACT_SLACK``: pulls them together, stops pulling once touching
    stay close    squared change of the finger angles and of the right hand's rotation, so the
                  result still looks like the template

An instance is *resolved* when its deepest penetrating vertex (same test as the loss) is within
``PENETRATION_TOLERANCE`` and every contact gap within ``CONTACT_TOLERANCE``; the generator only
uses resolved instances. One call resolves a whole batch (the hand forward and the loss are
batched), and the corpus resolves each instance once, not per frame: motions move the resolved
pair rigidly or blend away from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from handforge.corpus.adam import Adam
from handforge.corpus.placement import place, rest_palm
from handforge.corpus.regions import compute_regions
from handforge.corpus.templates import Arrangement, Template
from handforge.evaluation.penetration import penetration_depths
from handforge.hands import HandModel
from handforge.runtime import torch_threads
from handforge_shared.anatomy import anatomical_to_hand_pose, clamp_to_limits
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handforge_shared.skeleton import SIDES

PENETRATION_TOLERANCE = 0.002  # m, deepest vertex of either hand inside the other
CONTACT_TOLERANCE = 0.004      # m, gap between the closest vertices of two touching regions
CONTACT_SLACK = 0.001          # m, gaps below this are not pulled closer (contact, not squeeze)
OPEN_SHARE = 0.3               # grips start from this share of their finger flexion
GRIP_SHORT = 0.01              # m: a grip arrives this far short, fingers open, then closes in
CLOSING_TOLERANCE = 0.003      # m, deepest penetration allowed on the way into a grip
CLOSING_CHECKS = (0.0, 0.25, 0.5, 0.75)


def opened(angles):
    """A gripping hand's fingers before they close: flexion scaled by ``OPEN_SHARE``, spread and
    twist kept (interlaced fingers need their spread to pass between the other hand's). numpy or
    torch, (..., 15, 3)."""
    return angles * angles.new_tensor([OPEN_SHARE, 1.0, 1.0]) if hasattr(angles, "new_tensor") \
        else angles * np.array([OPEN_SHARE, 1.0, 1.0])


@dataclass(frozen=True)
class Instance:
    """A drawn template instance with hand shapes: the resolver's input."""

    template: Template
    arrangement: Arrangement
    betas: Mapping[str, np.ndarray]   # side → (10,)


@dataclass(frozen=True)
class Resolved:
    """A resolved instance: per side anatomical angles (15, 3) and the wrist placement."""

    template: str
    angles: Mapping[str, np.ndarray]
    global_orient: Mapping[str, np.ndarray]
    transl: Mapping[str, np.ndarray]
    betas: Mapping[str, np.ndarray]
    max_depth: float                  # m
    contact_gaps: np.ndarray          # (C,) m
    approach: np.ndarray              # (3,) unit: the way the right hand leaves (scene frame)
    closing_depth: float              # m, deepest penetration on the way into a grip (0: no grip)
    ok: bool


@dataclass
class ResolverSettings:
    iterations: int = 80
    closing: int = 30               # steps over which grips close (then the rest settle them)
    lr_angles: float = 0.03         # rad per step (Adam)
    lr_rotation: float = 0.02       # rad per step
    lr_translation: float = 0.0035  # m per step
    w_penetration: float = 1.0
    w_contact: float = 8.0
    w_angles: float = 0.05
    w_rotation: float = 0.5
    check_every: int = 5            # how often resolved instances are taken out of the batch


class Resolver:
    """Resolves batches of instances on one hand model (float32, CPU or GPU)."""

    def __init__(self, model: HandModel, settings: ResolverSettings | None = None) -> None:
        self.model = model
        self.settings = settings or ResolverSettings()
        self.regions = compute_regions(model.rig("right"))
        self.faces = {s: model.faces(s) for s in SIDES}
        p = next(iter(model.buffers()))
        self.device = p.device
        self.dtype = torch.float32
        self._id_cache: dict[str, torch.Tensor] = {}
        # Anatomical angles are defined on the rest rig's joint frames for every hand shape (as
        # the evaluation's joint-limit check reads them); shape only moves the palm and wrist.
        self.frames = {side: model.rig(side).joint_frames() for side in SIDES}

    def region(self, name: str) -> np.ndarray:
        """Vertex ids of a region, or of a union written "a+b"."""
        return np.unique(np.concatenate([self.regions[part] for part in name.split("+")]))

    # ------------------------------------------------------------------ contacts
    def contact_gaps(self, left: torch.Tensor, right: torch.Tensor, contacts: Sequence[Sequence[tuple[str, str]]]
                     ) -> torch.Tensor:
        """(B, C) gap between the closest vertices of each instance's contacts (0 past its last).

        ``contacts[b]`` lists instance b's (left region, right region) pairs. Instances sharing a
        pair are measured together (one ``cdist`` per distinct pair), so no region is padded to
        the size of the largest one.
        """
        width = max((len(c) for c in contacts), default=0)
        gaps = left.new_zeros(left.shape[0], width)
        by_pair: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for b, pairs in enumerate(contacts):
            for c, pair in enumerate(pairs):
                by_pair.setdefault(tuple(pair), []).append((b, c))
        for (region_l, region_r), where in by_pair.items():
            rows = torch.tensor([b for b, _ in where], device=left.device)
            cols = torch.tensor([c for _, c in where], device=left.device)
            a = left[rows][:, self._ids(region_l)]
            b = right[rows][:, self._ids(region_r)]
            gaps = gaps.index_put((rows, cols), torch.cdist(a, b).amin(dim=(-2, -1)))
        return gaps

    def _ids(self, region: str) -> torch.Tensor:
        if region not in self._id_cache:
            self._id_cache[region] = torch.as_tensor(self.region(region), device=self.device)
        return self._id_cache[region]

    # ------------------------------------------------------------------ optimisation
    def resolve(self, instances: Sequence[Instance]) -> list[Resolved]:
        """Resolve a batch; runs torch on one thread (a few dozen hands: see ``runtime.torch_threads``)."""
        if not instances:
            return []
        with torch_threads(1):
            return self._resolve(instances)

    def _resolve(self, instances: Sequence[Instance]) -> list[Resolved]:
        s = self.settings
        dev, dt = self.device, self.dtype
        tensor = lambda a: torch.tensor(np.asarray(a), dtype=dt, device=dev)  # noqa: E731
        frames, orient, transl, palms = {}, {}, {}, {}
        for side in SIDES:
            rig = self.model.rig(side)
            joints = [rig.shaped(inst.betas[side])[1] for inst in instances]
            frames[side] = np.broadcast_to(self.frames[side], (len(instances), *self.frames[side].shape))
            palms[side] = [(rest_palm(j, self.frames[side]).centre, j[0]) for j in joints]
            placed = [place(rest_palm(j, self.frames[side]), j[0], inst.arrangement.palms[side])
                      for j, inst in zip(joints, instances)]
            orient[side] = tensor([p[0] for p in placed])
            transl[side] = tensor([p[1] for p in placed])
        betas = {side: tensor([i.betas[side] for i in instances]) for side in SIDES}
        target = {side: tensor([i.arrangement.angles[side] for i in instances]) for side in SIDES}
        # Grips close around the other hand: their fingers start open (OPEN_SHARE of the target
        # flexion) and close over the first half of the iterations, pushed aside by the
        # penetration term as they go, instead of starting tangled.
        grip = {side: tensor([[[float(side in i.template.grip)]] for i in instances]) for side in SIDES}
        centre = tensor([i.arrangement.palms["right"].centre for i in instances])
        wrist = tensor([self.model.rig("right").shaped(i.betas["right"])[1][0] for i in instances])
        r0 = axis_angle_to_matrix(orient["right"])
        closing = max(1, min(s.closing, s.iterations // 2)) if any(i.template.grip for i in instances) else 0
        gripping = torch.tensor([bool(i.template.grip) for i in instances], device=dev)

        n = len(instances)
        d_angles = {side: torch.zeros_like(target[side], requires_grad=True) for side in SIDES}
        d_rot = torch.zeros(n, 3, dtype=dt, device=dev, requires_grad=True)
        d_tr = torch.zeros(n, 3, dtype=dt, device=dev, requires_grad=True)
        params = [d_angles["left"], d_angles["right"], d_rot, d_tr]
        opt = Adam([  # not torch.optim: it imports torch._dynamo (seconds) on first use
            {"params": params[:2], "lr": s.lr_angles},
            {"params": [d_rot], "lr": s.lr_rotation},
            {"params": [d_tr], "lr": s.lr_translation},
        ])
        contacts = [i.template.contacts for i in instances]

        def base(side: str, step: int, rows: torch.Tensor) -> torch.Tensor:
            ramp = 1.0 if step >= closing else step / closing  # 0 = opened, 1 = the target
            full = target[side][rows]
            return full + grip[side][rows] * (1.0 - ramp) * (opened(full) - full)

        def right_placement(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # rotate about the palm centre c: x' = T (R0 (x − w) + w + t0 − c) + c + Δt, so the
            # model's transl is T (w + t0 − c) + c + Δt − w  (w = rest wrist joint)
            turn = axis_angle_to_matrix(d_rot[rows])
            w, c = wrist[rows], centre[rows]
            moved = (turn @ (w + transl["right"][rows] - c)[..., None])[..., 0] + c + d_tr[rows] - w
            return matrix_to_axis_angle(turn @ r0[rows]), moved

        def forward(step: int, rows: torch.Tensor) -> dict[str, torch.Tensor]:
            placed = {"left": (orient["left"][rows], transl["left"][rows]), "right": right_placement(rows)}
            rows_np = rows.cpu().numpy()
            out = {}
            for side in SIDES:
                hp = anatomical_to_hand_pose(base(side, step, rows) + d_angles[side][rows], frames[side][rows_np], side)
                out[side] = self.model(side, placed[side][0], hp, betas[side][rows], placed[side][1]).vertices
            return out

        # Instances leave the optimisation once resolved (checked every ``check_every`` steps after
        # the grips have closed): later steps only pay for the ones still being worked on.
        active = torch.ones(n, dtype=torch.bool, device=dev)
        worst_all = np.zeros(n)
        gaps_all = np.zeros((n, max(len(c) for c in contacts)))
        step = 0
        for step in range(s.iterations + 1):
            rows = active.nonzero()[:, 0]
            sub_contacts = [contacts[r] for r in rows.tolist()]
            verts = forward(step, rows)
            depth_l, depth_r = penetration_depths(verts["left"], verts["right"], self.faces["left"], self.faces["right"])
            gaps = self.contact_gaps(verts["left"], verts["right"], sub_contacts)
            last = step == s.iterations
            if step % s.check_every == 0 or last:
                worst = torch.maximum(depth_l.amax(-1), depth_r.amax(-1)).detach()
                worst_all[rows.cpu().numpy()] = worst.cpu().numpy()
                gaps_all[rows.cpu().numpy(), :gaps.shape[1]] = gaps.detach().cpu().numpy()
                done = (worst <= PENETRATION_TOLERANCE) & (gaps.detach().amax(-1) <= CONTACT_TOLERANCE)
                if step < closing:  # a grip is not finished before its fingers have closed
                    done &= ~gripping[rows]
                if last:
                    break
                if bool(done.any()):
                    active[rows[done]] = False  # frozen from now on (restored after the step below)
                    if not bool(active.any()):
                        break
            loss = (s.w_penetration * (depth_l.sum() + depth_r.sum())
                    + s.w_contact * torch.clamp(gaps - CONTACT_SLACK, min=0.0).sum()
                    + s.w_angles * sum(d[rows].square().sum() for d in d_angles.values())
                    + s.w_rotation * d_rot[rows].square().sum())
            frozen = [p.detach().clone() for p in params]
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for p, keep in zip(params, frozen):  # Adam's momentum must not move finished rows
                    p[~active] = keep[~active]
                moving = active.nonzero()[:, 0]
                for side in SIDES:  # project the fingers back into the joint limits (coupling included)
                    b = base(side, step + 1, moving)
                    d_angles[side][moving] = clamp_to_limits(b + d_angles[side][moving]) - b

        every = torch.arange(n, device=dev)
        with torch.no_grad():
            orient_r, transl_r = right_placement(every)
            # clamped again in float64: float32 rounding may leave an angle a hair outside its range
            final = {side: clamp_to_limits((base(side, s.iterations + closing, every) + d_angles[side])
                                           .cpu().double().numpy()) for side in SIDES}
        worst, gaps_np = worst_all, gaps_all
        as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
        placement = {"left": (as_np(orient["left"]), as_np(transl["left"])), "right": (as_np(orient_r), as_np(transl_r))}
        approach = np.stack([_approach(inst.template, *(_palm_centre(placement[side][0][b], placement[side][1][b],
                                                                    *palms[side][b]) for side in SIDES))
                             for b, inst in enumerate(instances)])
        closing_worst = self._check_closing(instances, final, placement, betas, frames, approach)
        results = []
        for b, inst in enumerate(instances):
            c = len(inst.template.contacts)
            results.append(Resolved(
                template=inst.template.name,
                angles={side: final[side][b] for side in SIDES},
                global_orient={side: placement[side][0][b] for side in SIDES},
                transl={side: placement[side][1][b] for side in SIDES},
                betas={side: np.asarray(inst.betas[side], dtype=np.float64) for side in SIDES},
                max_depth=float(worst[b]),
                contact_gaps=gaps_np[b, :c].astype(np.float64),
                approach=approach[b],
                closing_depth=float(closing_worst[b]),
                ok=bool(worst[b] <= PENETRATION_TOLERANCE and (gaps_np[b, :c] <= CONTACT_TOLERANCE).all()
                        and closing_worst[b] <= CLOSING_TOLERANCE),
            ))
        return results

    def _check_closing(self, instances, final, placement, betas, frames, approach) -> np.ndarray:
        """Per instance, the deepest penetration along the path a motion takes into a grip: the
        right hand ``GRIP_SHORT`` back along ``approach`` with the gripping fingers ``opened``, then
        fingers and hand together (one shared fraction s) into the resolved state. Checked at
        s = 0, ¼, ½, ¾; 0 for instances that do not grip."""
        worst = np.zeros(len(instances))
        rows = [b for b, inst in enumerate(instances) if inst.template.grip]
        if not rows:
            return worst
        dt, dev = self.dtype, self.device
        t = lambda a: torch.tensor(np.asarray(a), dtype=dt, device=dev)  # noqa: E731
        for frac in CLOSING_CHECKS:
            verts = {}
            for side in SIDES:
                angles = []
                for b in rows:
                    full = final[side][b]
                    grips = side in instances[b].template.grip
                    angles.append(opened(full) + frac * (full - opened(full)) if grips else full)
                shift = (1.0 - frac) * GRIP_SHORT * approach[rows] if side == "right" else 0.0
                hp = anatomical_to_hand_pose(t(np.stack(angles)), frames[side][rows], side)
                verts[side] = self.model(side, t(placement[side][0][rows]), hp, betas[side][rows],
                                         t(placement[side][1][rows] + shift)).vertices
            depth_l, depth_r = penetration_depths(verts["left"], verts["right"], self.faces["left"], self.faces["right"])
            deepest = torch.maximum(depth_l.amax(-1), depth_r.amax(-1)).cpu().numpy()
            worst[rows] = np.maximum(worst[rows], deepest)
        return worst


def _palm_centre(global_orient: np.ndarray, transl: np.ndarray, rest_centre: np.ndarray, wrist: np.ndarray
                 ) -> np.ndarray:
    return axis_angle_to_matrix(global_orient) @ (rest_centre - wrist) + wrist + transl


def _approach(template: Template, left_centre: np.ndarray, right_centre: np.ndarray) -> np.ndarray:
    """The template's approach direction, else from the left palm centre to the right one."""
    away = np.asarray(template.approach, dtype=np.float64) if template.approach is not None else right_centre - left_centre
    return away / max(np.linalg.norm(away), 1e-9)
