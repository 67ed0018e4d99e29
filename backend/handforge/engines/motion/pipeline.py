"""Sampling the motion denoiser with a diffusers DDIM scheduler (Song et al., arXiv 2010.02502).

    pipe = MotionPipeline(model, hand_model)
    values = pipe(observation, num_samples=2, steps=20, seed=0)     # {field: (N, T, 2, size)}

At every step the network predicts x0, the observed channels of x0 are replaced by the keys (MDM's
in-painting, as for its in-betweening) and, when enabled, a penetration-guidance step moves the
free channels of x0 so that the hands do not pass through each other; the scheduler then steps to
the next noise level. ``variation`` in (0, 1] is how much of the schedule runs: 1 starts from pure
noise, smaller values start from the curve through the keys (``key_curves``: the spline engine's
in-between across short gaps, the model's own curve across long ones) noised to that level (SDEdit, Meng et al., arXiv 2108.01073), keeping the result closer to it. The whole
clip is denoised at once (any length up to the model's ``max_frames``; training used random crops
of up to 96 frames at random frame offsets up to 256, yet 480-frame in-betweens measured as well
denoised whole as in overlapping windows of the trained length, which left a kink at each seam:
README 'Motion', Known limits).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from handforge.engines.motion import representation as rep
from handforge.engines.motion.curves import hermite_keys, short_gap_weight
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.overlap import frame_depths

DEFAULT_STEPS = 20
DEFAULT_SMOOTHING = 1.0  # frames: σ of the Gaussian applied to the generated part (see ``smooth_free``)
# The in-between's curve through keys this close (frames apart) is the spline engine's, through keys this far the
# model's own, mixed between (``MotionPipeline.key_curves``). Of the two bare curves, on 512 windows of the corpus's
# train split (FD, gap 15 / 30 / 60): the spline engine 0.90 / 3.00 / 5.68, the Hermite curve 1.23 / 3.21 / 4.96;
# the network, trained on the Hermite curve, corrects either (README 'Motion': targets).
SPLINE_GAPS: tuple[int, int] | None = (30, 60)
BLEND_FRAMES = 8         # the generated part fades into each key over this many frames (``key_blend``)
SCHEDULE = "squaredcos_cap_v2"  # the cosine schedule of MDM and HandDiffuse
POLISH_PROGRESS = 2.5e-4  # m: a polished motion whose deepest overlap shrinks by less than this per turn,
POLISH_PROGRESS_SUM = 0.02  # and its overlap summed over the turn's frames by less than this fraction, is stalled


def make_train_scheduler(num_train_timesteps: int = 1000):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=SCHEDULE,
                         prediction_type="sample", clip_sample=False)


def make_sampler(num_train_timesteps: int = 1000):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=SCHEDULE,
                         prediction_type="sample", clip_sample=False, set_alpha_to_one=True)


@dataclass
class Guidance:
    """Penetration guidance: after the keys are imposed, ``iterations`` gradient steps of
    ``strength`` on the differentiable penetration loss (``handforge.evaluation.penetration``)
    over all frames at once (one backward per iteration), during the last ``last_fraction`` of the
    steps, only while some pair of wrists is closer than ``near`` metres in the current estimate.
    The update is filtered along time (Gaussian, σ = ``smoothing`` frames) and fades out towards
    each channel's keys. Defaults chosen on 64 validation/test trajectory windows (README 'Motion'):
    per-frame updates (σ 0) gave 7x ground truth's jitter; σ 12 gives 0.8x, and σ 9 2.8x. With
    motion_v4, one update over the last half left 0.46 cm³ of overlap on 96 frames (v3: 0.003);
    two updates per step over the last 80 % leave 0.002 (ground truth 0.0013) at 0.78x its jitter,
    for 3x the time of a single update over the last half. Every guided run then ends with the polish
    (``polish`` below) of the motions still overlapping."""

    # While sampling: with motion_v5, 25 (v4's setting) made guided wrist paths jitter at 1.36x ground
    # truth's (12 at 0.70x, the overlap removed either way; 64 trajectory windows).
    strength: float = 12.0
    iterations: int = 2
    last_fraction: float = 0.8
    near: float = 0.2
    smoothing: float = 12.0  # σ (frames) of the Gaussian the update is filtered with along time (0: per frame)
    # During sampling "always" (within ``near``), or "repair": never. Either way the motions in which a
    # vertex of one hand ends deeper than ``depth`` (m) in the other, on a frame not wholly keyed, are then
    # polished (below). In-betweening: most keyed gaps need no guidance (during sampling it only cost
    # quality there), while the few whose keys lead one hand through the other need it (README 'Motion').
    when: str = "always"
    depth: float = 0.002
    # The most one update may move a free wrist (m). The penetration gradient with respect to a wrist's
    # translation sums over every penetrating vertex: unbounded, two updates per step flung the wrists of
    # in-betweens 0.2-2.8 m out of a 30-frame gap and back (jitter 255-680 m/s³ on the penetrating test
    # windows, against 8-30 unguided and with this bound). Updates whose wrist move is larger are
    # scaled down as a whole, so their direction is kept.
    max_shift: float = 0.004
    # The most one polish update may change a rotation (the norm of its 6D change; the 6D vector's own is
    # √2, a change of 0.5 a turn of 20-29° by its axis). With the wrists keyed and the overlap deep, the
    # polish's gradient on a free wrist rotation is large enough to flip it: on one of 64 test wrist paths
    # (24 mm deep) the hands turned 98° and 153° in a frame (jitter 438 m/s³, the 64 windows' mean 19.9
    # against ground truth's 15.9); bounded, 12.8, and the gap30 repairs unchanged. While sampling the
    # denoiser's next step pulls a rotation back, and the bound is not applied there.
    max_turn: float = 0.5
    # The polish that ends every guided run: guidance updates on the finished motion, where no denoising
    # step follows to pull the hands back into each other (re-sampling with guidance left a third to
    # five-sixths of the deep windows deep), until the motion measures no deeper than ``depth`` on every
    # frame phase in a row, its overlap stops shrinking (``_Guide.polish``), or ``polish`` calls (of
    # ``iterations`` updates each) are spent; 0: off.
    polish: int = 40
    # The polish's step: 12 left test gap-15 in-betweens overlapping twice as much as ground truth (0.005
    # cm³ against 0.0025; 25: 0.0004). No denoising step follows it, so it does not add jitter the same way.
    polish_strength: float = 25.0


def guidance_named(name: str) -> Guidance | None:
    """The jobs' ``penetration_guidance`` (and ``eval motion --guidance``) as a ``Guidance``: "auto" while sampling
    within ``near``, "on" throughout, "repair" never (each then polishes), "off" None."""
    settings = {"auto": Guidance(), "on": Guidance(near=float("inf")), "repair": Guidance(when="repair"), "off": None}
    if name not in settings:
        raise ValueError(f"penetration guidance must be one of {', '.join(settings)}, got {name!r}")
    return settings[name]


class MotionPipeline:
    def __init__(self, model: MotionDenoiser, hand_model: Any = None) -> None:
        self.model = model
        self.hand_model = hand_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, observation: Observation, num_samples: int = 1, steps: int = DEFAULT_STEPS, seed: int = 0,
                 variation: float = 1.0, guidance: Guidance | None = None,
                 callback: Callable[[int, int, str], None] | None = None,
                 smoothing: float = DEFAULT_SMOOTHING) -> dict[str, np.ndarray]:
        """Rig values {global_orient, hand_pose, transl}: (num_samples, T, 2, size) float64, keys exact.

        ``callback(step, steps, stage)`` is called after every denoising step (``stage`` "denoising") and
        every call of the closing polish ("separating"), and while it checks where the hands overlap
        ("checking"), for progress and cancellation."""
        values = self.batch([observation] * num_samples, steps, seed, variation, guidance, callback, smoothing)
        return {name: np.stack([v[name] for v in values]) for name in values[0]}

    @torch.no_grad()
    def batch(self, observations: list[Observation], steps: int = DEFAULT_STEPS, seed: int | Sequence[int] = 0,
              variation: float = 1.0, guidance: Guidance | None = None,
              callback: Callable[[int, int, str], None] | None = None,
              smoothing: float = DEFAULT_SMOOTHING) -> list[dict[str, np.ndarray]]:
        """One denoising run for several observations of the same length: their rig values (T, 2, size).

        ``seed``: one for the batch (sample i draws the i-th noise of it), or one per observation (each
        motion then depends on its own seed alone, whatever else is in the batch: the evaluation's windows).

        With guidance, the motions whose hands still pass through each other at the end are then
        polished (``_Guide.polish``): moved apart on the frames where they overlap, keys kept. "repair"
        samples without guidance first, "always" with it."""
        if not 0.0 < variation <= 1.0:
            raise ValueError(f"variation must be in (0, 1], got {variation}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if len({o.num_frames for o in observations}) != 1:
            raise ValueError("a batch needs observations of one length")
        seeds = _seeds(seed, len(observations))
        observations = self.placed(observations)
        if guidance is not None and guidance.when not in ("always", "repair"):
            raise ValueError(f"guidance.when must be 'always' or 'repair', got {guidance.when!r}")
        during = guidance if guidance is not None and guidance.when == "always" else None
        x0 = self._denoise(observations, steps, seeds, variation, during, callback, smoothing)
        values = self._decode(observations, x0)
        if guidance is None or guidance.polish <= 0:
            return values
        depths = self.deepest_penetration(observations, values, callback=callback)
        redo = np.flatnonzero(depths > guidance.depth)
        if len(redo):
            picked = [observations[i] for i in redo]
            mask = torch.as_tensor(np.stack([o.channel_mask() for o in picked]), device=self.device)
            guide = _Guide(self, picked, guidance)
            final = guide.polish(x0[torch.as_tensor(redo)], mask, callback)
            # the polish's last state and the start of its shallowest turn (an overshooting last turn can
            # end deeper), each measured over every frame: the shallowest of them and the unpolished wins
            for state in (final, guide.best_start):
                polished = self._decode(picked, state)
                for i, v, d in zip(redo, polished, self.deepest_penetration(picked, polished, callback=callback)):
                    if d < depths[i]:
                        values[i], depths[i] = v, d
        return values

    def placed(self, observations: list[Observation]) -> list[Observation]:
        """The observations with their hand model's wrist joints (``Observation.placed``): the translation
        channels are wrist joints, so the same keys give the same wrist paths on every hand model."""
        if self.hand_model is None:
            return observations
        from handforge.hands.wrists import WristJoints

        for o in observations:
            if o.hand_model != self.hand_model.name:
                raise ValueError(f"keys for the {o.hand_model} hand model given to a pipeline of the "
                                 f"{self.hand_model.name} hand model")
        wrists = WristJoints.of(self.hand_model)
        placed: dict[int, Observation] = {}  # (one observation given N times stays one: ``key_curves``)
        for o in observations:
            if id(o) not in placed:
                placed[id(o)] = o.placed(wrists)
        return [placed[id(o)] for o in observations]

    @torch.no_grad()
    def deepest_penetration(self, observations: list[Observation], values: list[dict[str, np.ndarray]],
                           chunk: int = 256, callback: Callable[[int, int, str], None] | None = None,
                           keyed: bool = False) -> np.ndarray:
        """Per motion, the deepest any vertex of one hand goes into the other (m) over the frames sampling
        can change (not those where every part is a key; ``keyed``: those only) and where the wrists are
        within reach of each other (``overlap.frame_depths``); 0 for a scene of one hand (``scene_hands``: the
        other is generated, but not there to go into). ``callback(motion, motions, "checking")`` after
        each chunk of frames (a job's cancel point: 8 long motions take tens of seconds on a CPU)."""
        if self.hand_model is None:
            raise ValueError("penetration checks need the hand model: MotionPipeline(model, hand_model)")
        out = np.zeros(len(values))
        for n, (o, v) in enumerate(zip(observations, values)):
            if not o.both_hands:
                continue
            whole_keys = o.part_mask.reshape(o.num_frames, -1).all(-1)
            said = None if callback is None else (lambda _done, _total, n=n: callback(n + 1, len(values), "checking"))
            out[n] = frame_depths(self.hand_model, o.betas, v, whole_keys if keyed else ~whole_keys, chunk,
                                  said).max(initial=0.0)
        return out

    @torch.no_grad()
    def _denoise(self, observations: list[Observation], steps: int, seeds: list[int], variation: float,
                 guidance: Guidance | None, callback: Callable[[int, int, str], None] | None,
                 smoothing: float) -> torch.Tensor:
        """The normalised motions (B, T, C), keys imposed."""
        model, device = self.model, self.device
        dtype = next(model.parameters()).dtype
        keys, mask = self._keys(observations)
        fill, base = self.key_curves(observations, keys, mask)
        # one draw per sample, in order: sample i's noise is the same whatever the number of samples (one
        # (B, T, C) draw made the first motion depend on B: torch's CPU normal fill redraws the last 16 values)
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        noise = torch.stack([torch.randn(fill.shape[1:], generator=generators[i if len(seeds) > 1 else 0], dtype=dtype)
                             for i in range(fill.shape[0])]).to(device)
        generator = generators[0]  # (DDIM with eta 0 draws nothing more)

        scheduler = make_sampler(model.config.num_train_timesteps)
        scheduler.set_timesteps(steps)
        first = min(steps - 1, int(round(steps * (1.0 - variation))))
        timesteps = scheduler.timesteps[first:]
        x = scheduler.add_noise(fill, noise, timesteps[:1]) if first > 0 else noise
        guide = _Guide(self, observations, guidance) if guidance is not None else None
        x0 = fill
        for i, t in enumerate(timesteps):
            x0 = torch.where(mask, keys, model(x, t.to(device), fill, mask))
            if guide is not None and i >= len(timesteps) * (1.0 - guidance.last_fraction):
                x0 = guide(x0, mask)
            x = scheduler.step(x0, t, x, generator=generator).prev_sample
            if callback is not None:
                callback(i + 1, len(timesteps), "denoising")
        residual = smooth_free(x0 - base, smoothing) if smoothing > 0 else x0 - base
        return torch.where(mask, keys, base + residual * key_blend(mask, BLEND_FRAMES))

    @torch.no_grad()
    def curve_inbetweens(self, observations: list[Observation]) -> list[dict[str, np.ndarray]]:
        """Rig values (T, 2, size) of each observation's ``key_curves`` base alone: the in-between the learned
        engine starts from and fades into at the keys, without the network (`eval motion`'s "keys' curve" row)."""
        observations = self.placed(observations)
        keys, mask = self._keys(observations)
        return self._decode(observations, torch.where(mask, keys, self.key_curves(observations, keys, mask)[1]))

    def _keys(self, observations: list[Observation]) -> tuple[torch.Tensor, torch.Tensor]:
        """The observations' keys (B, T, C), normalised, in the model's dtype on its device, and their channel mask."""
        model, device = self.model, self.device
        mask = torch.as_tensor(np.stack([o.channel_mask() for o in observations]), device=device)
        keys = model.normalise(torch.as_tensor(np.stack([o.motion() for o in observations]), device=device,
                                               dtype=next(model.parameters()).dtype))
        return keys, mask

    def key_curves(self, observations: list[Observation], keys: torch.Tensor,
                   mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The curves through the keys (B, T, C), normalised: what the network sees and corrects (``fill``) and
        what the generated part fades into at the keys (``base``). Each is the model's own curve (Hermite, each
        rotation along its arc, for the shipped checkpoint) where the keys around a frame are ``SPLINE_GAPS[1]``
        frames apart or more, the spline engine's in-between (``spline.spline_motion``) where they are
        ``SPLINE_GAPS[0]`` or fewer, and a mix of the two between."""
        model = self.model
        fill = model.observe(keys, mask)
        base = hermite_keys(keys, mask) + model.along_arcs(keys, mask)
        return with_short_gap_splines(model, observations, mask, fill, base)

    def _decode(self, observations: list[Observation], x0: torch.Tensor) -> list[dict[str, np.ndarray]]:
        """Rig values (T, 2, size) of normalised motions ``x0`` (B, T, C), keys written back exactly."""
        motion = self.model.denormalise(x0).double().cpu().numpy()
        return [o.values_of(m) for o, m in zip(observations, motion)]


def with_short_gap_splines(model: MotionDenoiser, observations: Sequence[Observation], mask: torch.Tensor,
                           *curves: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``curves`` (each (B, T, C), normalised, through the keys of ``observations`` with channel ``mask``) mixed
    towards the spline engine's in-between (``spline.spline_motion``) by ``SPLINE_GAPS`` (``curves.short_gap_weight``):
    all spline between keys up to ``SPLINE_GAPS[0]`` frames apart, none from ``SPLINE_GAPS[1]``. The sampler's
    curves (``MotionPipeline.key_curves``) and, with ``train motion --spline-observation``, the training's
    observation. The spline is drawn only for the observations with a short gap."""
    if SPLINE_GAPS is None or model.config.frame_dim != rep.FRAME_DIM:  # (small models in tests: not the representation)
        return curves
    weight = short_gap_weight(mask, *SPLINE_GAPS).to(curves[0].dtype)  # (float32 would turn a half model's input)
    rows = weight.flatten(1).any(1).tolist()
    if not any(rows):
        return curves
    from handforge.engines.motion.spline import spline_motion

    made: dict[int, np.ndarray] = {}  # (a job's N samples are one observation N times: its curve once)
    spline = torch.zeros_like(curves[0])
    for row, (o, short) in enumerate(zip(observations, rows)):
        if short:
            if id(o) not in made:
                made[id(o)] = spline_motion(o)
            spline[row] = model.normalise(torch.as_tensor(made[id(o)], device=spline.device, dtype=spline.dtype))
    return tuple(curve + weight * (spline - curve) for curve in curves)


def _seeds(seed: Any, count: int) -> list[int]:
    """``[seed]`` for one seed (any integer: int, numpy's, a 0-d tensor), else one integer per observation;
    each in [0, 2**64), which torch's generators take."""
    def whole(value: Any) -> int:
        if isinstance(value, bool):  # (True is an int to Python, not a seed to anyone)
            raise TypeError
        number = operator.index(value)
        if not 0 <= number < 2**64:
            raise TypeError
        return number

    try:
        return [whole(seed)]
    except TypeError:
        pass
    try:
        if isinstance(seed, (str, bytes)) or not (isinstance(seed, Sequence) or hasattr(seed, "__array__")):
            raise TypeError
        seeds = [whole(s) for s in list(seed)]
    except TypeError:
        raise ValueError(f"seed must be a whole number in [0, 2**64) or one per observation, got {seed!r}") from None
    if len(seeds) != count:
        raise ValueError(f"one seed per observation: got {len(seeds)} seeds for {count} observations")
    return seeds


def key_blend(mask: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T, C) weights in [0, 1]: 0 at each channel's keys, rising smoothly (smoothstep) to 1 at
    ``frames`` from the nearest key when the next key is at least as far, 1 for channels without keys.
    Multiplying the generated part by it makes every channel arrive at its keys without a jump in
    position or velocity.

    The weight is the product of one smoothstep from the key before and one from the key after: in a
    gap shorter than ``2 * frames`` the distance to the nearest key turns at mid-gap, and a smoothstep
    of that distance would turn with it, a kink in velocity (the closing polish, whose fade spans 24
    frames, tripled the jerk of the 15-frame in-betweens it moved)."""
    b, t, c = mask.shape
    index = torch.arange(t, device=mask.device).view(1, t, 1).expand(b, t, c)
    far = t + frames  # no key on that side: far enough for a full weight
    prev = torch.where(mask, index, torch.full_like(index, -far)).cummax(1).values
    nxt = torch.where(mask, index, torch.full_like(index, t + far)).flip(1).cummin(1).values.flip(1)

    def smoothstep(distance: torch.Tensor) -> torch.Tensor:
        u = (distance.float() / max(frames, 1)).clamp(0, 1)
        return u * u * (3 - 2 * u)

    return smoothstep(index - prev) * smoothstep(nxt - index)


def smooth_free(residual: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian filter (σ in frames) along time of (B, T, C): applied to the generated part only (its
    difference from the keys' in-between), it removes the frame-to-frame noise a short-trained
    denoiser leaves at few DDIM steps while keeping the motion; the keys are imposed after it."""
    radius = max(1, int(3 * sigma))
    # in double precision, then cast: a σ below float32's range (a job's smoothing of 5e-324) is 0 there, and
    # 0 / 0 at the centre made the whole motion NaN; in float64 it is the identity it should be
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(residual).view(1, 1, -1)
    b, t, c = residual.shape
    x = residual.permute(0, 2, 1).reshape(b * c, 1, t)
    x = torch.nn.functional.pad(x, (radius, radius), mode="replicate")
    return torch.nn.functional.conv1d(x, kernel).reshape(b, c, t).permute(0, 2, 1)


class _Guide:
    """One batched penetration-guidance step on x0 (normalised units), free channels only.

    The update is low-passed along time (σ = ``smoothing`` frames), so the gradient is evaluated on
    every ``stride``-th frame only (σ/3 apart, the phase turning at each call) and spread by the same
    filter: a quarter of the hand-model and penetration work at σ 12, for the same smooth update."""

    def __init__(self, pipe: MotionPipeline, observations: list[Observation], settings: Guidance) -> None:
        if pipe.hand_model is None:
            raise ValueError("penetration guidance needs the hand model: MotionPipeline(model, hand_model)")
        self.pipe, self.settings = pipe, settings
        self.fade: torch.Tensor | None = None
        self.stride = max(1, int(settings.smoothing / 3))
        self.calls = 0
        device = pipe.device
        self.origin = torch.as_tensor(np.stack([o.origin for o in observations]), dtype=torch.float32,
                                      device=device)  # (B, 3)
        self.shift = torch.as_tensor(np.stack([o.wrist_shift for o in observations]), dtype=torch.float32,
                                     device=device)   # (B, 2, 3): transl = channel + origin − shift
        self.betas = torch.as_tensor(np.stack([o.betas for o in observations]), dtype=torch.float32,
                                     device=device)   # (B, 2, 10)
        # (B,) a scene of one hand has nothing to keep apart: steered away from the generated other hand, which
        # the scene does not have, its fingers moved for nothing (the add-on sends the scene's hands only)
        self.apart = torch.as_tensor([o.both_hands for o in observations], device=device)

    def polish(self, x0: torch.Tensor, mask: torch.Tensor,
               callback: Callable[[int, int, str], None] | None = None) -> torch.Tensor:
        """Guidance on finished motions (B, T, C), with no denoiser step after it to pull the hands back
        together. Each motion is updated until it has measured no deeper than ``depth`` on every frame
        phase in a row (one turn: ``stride`` calls), until in two turns neither the deepest overlap of a
        turn has shrunk by ``POLISH_PROGRESS`` nor, without it growing, the overlap summed over its
        frames by ``POLISH_PROGRESS_SUM`` (keys that hold the hands in each other: the fingers alone
        cannot clear two palms), or ``polish`` calls are spent. The sum counts because the frames next
        to such keys stay deep while the rest of the gap clears. Returns the last state; ``best_start``
        is then each motion as its shallowest turn began (a last turn that overshoots ends deeper)."""
        phases = min(self.stride, x0.shape[1])
        clean = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        stalled = torch.zeros_like(clean)                                   # turns without progress
        best = torch.full((len(x0),), float("inf"), device=x0.device)     # the shallowest turn so far
        best_sum = torch.full_like(best, float("inf"))                     # the least summed overlap so far
        turn = torch.zeros(len(x0), device=x0.device)                      # deepest of the current turn
        turn_sum = torch.zeros_like(turn)                                  # summed over its frames
        start = self.best_start = x0                                       # the motions as each turn began
        shallowest = torch.full_like(best, float("inf"))                   # the deepest of the shallowest turn
        for call in range(self.settings.polish):
            active = (clean < phases) & (stalled < 2)
            if not active.any():
                break
            if call % phases == 0:
                start = x0
            x0 = self(x0, mask, active)
            clean = torch.where(self.deepest <= self.settings.depth, clean + 1, torch.zeros_like(clean))
            turn = torch.maximum(turn, self.deepest)
            turn_sum = turn_sum + self.overlap
            if (call + 1) % phases == 0:
                # the sum counts only while the deepest stays within ``depth`` of its best (it wavers by a
                # millimetre or so from turn to turn): ``batch`` keeps the result only if its deepest
                # overlap is shallower than before the polish
                better = (turn < best - POLISH_PROGRESS) | (
                    (turn_sum < best_sum * (1 - POLISH_PROGRESS_SUM)) & (turn <= best + self.settings.depth))
                shallower = active & (turn < shallowest)
                self.best_start = torch.where(shallower[:, None, None], start, self.best_start)
                shallowest = torch.where(shallower, turn, shallowest)
                best = torch.where(active & better, torch.minimum(turn, best), best)
                best_sum = torch.where(active & better, torch.minimum(turn_sum, best_sum), best_sum)
                # a turn deeper than the best by more than ``depth``: the updates overshoot, stop there
                overshot = turn > best + self.settings.depth
                stalled = torch.where(active, torch.where(overshot, 2, torch.where(better, 0, stalled + 1)), stalled)
                turn, turn_sum = torch.zeros_like(turn), torch.zeros_like(turn_sum)
            if callback is not None:
                callback(call + 1, self.settings.polish, "separating")
        return x0

    def __call__(self, x0: torch.Tensor, mask: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        """``active`` (B,) bool: only these motions are moved. ``self.deepest`` (B,) is then how deep (m) one
        hand went into the other on the frames this call measured, before its update."""
        from handforge.evaluation.penetration import penetration_depths
        from handforge_shared.rotations import matrix_to_axis_angle

        if self.fade is None:  # the update fades out towards each channel's keys, over twice its σ
            self.fade = key_blend(mask, max(BLEND_FRAMES, int(round(2 * self.settings.smoothing))))
        model, hands = self.pipe.model, self.pipe.hand_model
        s = self.settings
        self.deepest = torch.zeros(len(x0), device=x0.device)
        self.overlap = torch.zeros(len(x0), device=x0.device)
        t = x0.shape[1]
        stride = min(self.stride, t)
        frames = torch.arange(self.calls % stride, t, stride, device=x0.device)
        self.calls += 1  # at every call, guided or not: which frames a motion measures is its own business
        polish = active is not None
        if not polish:
            # while sampling, each motion whose wrists come within ``near`` on some frame, on its own (a batch-wide
            # gate guided a motion because another one of its batch came close: the result depended on the
            # batch); the polish (``active`` given) moves motions known to overlap, whose wrists may be farther
            # apart than ``near`` (fingertips into fingertips). The channels, as the open hand at mean shape's
            # transl: the same gate on every hand model, and the one ``near`` was chosen with
            wrists = rep.translations(model.denormalise(x0))
            active = (wrists[..., 0, :] - wrists[..., 1, :]).norm(dim=-1).amin(-1) <= s.near
        active = active & self.apart
        if not bool(active.any()):
            return x0
        for iteration in range(s.iterations):
            with torch.enable_grad():
                x = x0.detach().float().requires_grad_(True)
                flat = model.denormalise(x)[:, frames].reshape(-1, rep.FRAME_DIM)
                aa = matrix_to_axis_angle(rep.rotation_matrices(flat))                    # (N, 2, 16, 3)
                transl = (rep.translations(flat) + self.origin.repeat_interleave(len(frames), 0)[:, None]
                          - self.shift.repeat_interleave(len(frames), 0))
                betas = self.betas.repeat_interleave(len(frames), 0)
                verts = [hands(side, aa[:, h, 0], aa[:, h, 1:].reshape(len(flat), 45), betas[:, h],
                               transl[:, h]).vertices
                         for h, side in enumerate(rep.HAND_AXIS)]
                depth_a, depth_b = penetration_depths(verts[0], verts[1], hands.faces("left"), hands.faces("right"))
                # frames wholly keyed cannot change: their overlap is the animator's, and not measured
                counted = ~mask[:, frames].all(-1) & active[:, None]                       # (B, frames)
                loss = (depth_a.sum(-1) + depth_b.sum(-1)) * counted.reshape(-1)
                if iteration == 0:
                    deepest = torch.maximum(depth_a.amax(-1), depth_b.amax(-1)).detach().view(len(x0), -1) * counted
                    self.deepest, self.overlap = deepest.amax(1), deepest.sum(1)
                loss = loss.sum()
                if float(loss.detach()) == 0.0:
                    break
                grad, = torch.autograd.grad(loss, x)
            # Per-frame gradients push each frame its own way (jitter 7x ground truth's on trajectories):
            # filtered along time, the update moves whole stretches of motion apart instead.
            # The sampled frames stand for their neighbours. (Normalising by the filtered sampling pattern
            # instead, which evens out the clip's ends, left 1.07 cm³ of trajectory overlap against 0.0037.)
            grad = grad.to(x0.dtype) * stride
            step = smooth_free(grad, s.smoothing) if s.smoothing > 0 else grad
            strength = s.polish_strength if polish else s.strength
            update = torch.where(mask, torch.zeros_like(x0), strength * step * self.fade)
            shift = (rep.translations(update) * rep.translations(model.channel_std)).norm(dim=-1)  # (B, T, 2) metres
            peak = shift.flatten(1).amax(1)
            scale = s.max_shift / peak.clamp_min(1e-30)
            if polish:
                rotations = torch.as_tensor(rep.ROTATION_CHANNELS, device=x0.device)
                turn = (update * model.channel_std)[..., rotations].norm(dim=-1)  # (B, T, 32) each rotation's change
                scale = torch.minimum(scale, s.max_turn / turn.flatten(1).amax(1).clamp_min(1e-30))
            update = update * scale.clamp(max=1.0)[:, None, None]
            x0 = x0 - update
        return x0


__all__ = ["BLEND_FRAMES", "DEFAULT_SMOOTHING", "DEFAULT_STEPS", "Guidance", "guidance_named", "key_blend",
           "make_sampler", "make_train_scheduler", "MotionPipeline", "smooth_free", "with_short_gap_splines"]
