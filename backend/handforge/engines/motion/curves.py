"""Curves through the keys of a motion, per channel, batched: what the denoiser sees of the keys
(its ``observation``) and the curve the generated part fades into at the keys.

    interpolate_keys   linear between keys (motion_v1 to motion_v4)
    hermite_keys       cubic Hermite with bounded tangents (motion_v5, the shipped motion_v6): by itself a
                       better in-between of the evaluation's gaps than motion_v4 (512 validation
                       windows, FD gap15 / gap30 / gap60: 0.67 / 2.09 / 4.34 against v4's 0.79 /
                       2.41 / 4.97; the spline engine 0.73 / 2.00 / 4.62), and v5, motion_v4
                       fine-tuned onto it, better still (README 'Motion')

Both hold the first and last key outside the keyed span and are zero where a channel has no key.
Per channel, a curve through the keys of a rotation's 6D channels does not follow the rotation: two
keys a half turn apart have a linear in-between whose columns nearly vanish mid-gap, and the
rotation it stands for turns there in a few frames. ``slerp_correction`` is what brings each
rotation along its arc (Shoemake's slerp) at the same pace.
"""

from __future__ import annotations

import torch

from handforge_shared.rotations import matrix_to_rot6d, rot6d_to_matrix, slerp_matrix

CURVES = ("linear", "hermite")


def key_curve(values: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """The ``kind`` curve (one of ``CURVES``) through the keys; ``values``, ``mask`` (B, T, C)."""
    if kind == "linear":
        return interpolate_keys(values, mask)
    if kind == "hermite":
        return hermite_keys(values, mask)
    raise ValueError(f"unknown key curve {kind!r}: use one of {', '.join(CURVES)}")


def key_neighbours(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per entry of ``mask`` (B, T, C) bool: its frame index, the frame of the channel's key at or before it (-1:
    none) and at or after it (T: none), each (B, T, C)."""
    b, t, c = mask.shape
    frames = torch.arange(t, device=mask.device).view(1, t, 1).expand(b, t, c)
    prev = torch.where(mask, frames, torch.full_like(frames, -1)).cummax(1).values
    nxt = torch.where(mask, frames, torch.full_like(frames, t)).flip(1).cummin(1).values.flip(1)
    return frames, prev, nxt


def interpolate_keys(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per channel, the keys linearly interpolated along time, held before the first and after the
    last key, zero where a channel has no key. ``values`` (B, T, C), ``mask`` (B, T, C) bool."""
    b, t, c = values.shape
    frames, prev, nxt = key_neighbours(mask)
    has_prev, has_next = prev >= 0, nxt < t
    v_prev = values.gather(1, prev.clamp(0, t - 1))
    v_next = values.gather(1, nxt.clamp(0, t - 1))
    span = (nxt - prev).clamp_min(1).to(values.dtype)
    w = ((frames - prev).to(values.dtype) / span).clamp(0, 1)
    both = v_prev + w * (v_next - v_prev)
    out = torch.where(has_prev & has_next, both, torch.where(has_prev, v_prev, torch.where(has_next, v_next, 0.0)))
    return torch.where(mask, values, out)


def hermite_keys(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per channel, a cubic Hermite curve through the keys, held before the first and after the last,
    zero where a channel has no key; ``values``, ``mask`` (B, T, C).

    The tangent at a key is the secant to its neighbouring key on the far side of the gap (the
    velocity of the keyed motion where keys are dense), so the curve leaves and enters densely keyed
    stretches without a kink, bounded as in monotone cubic interpolation (Fritsch & Carlson, SIAM J.
    Numer. Anal. 17(2), 1980) so that it cannot loop far beyond the keys. The generated part fades
    into this curve near the keys: fading into the keys' linear in-between instead left a velocity
    jump at each key. With the fade over 8 frames instead of 4 (32 validation windows, jitter / FD):
    gap 15 39 / 3.79 -> 24.2 / 3.39, gap 30 19.5 / 10.4 -> 11.6 / 9.25, gap 60 11.4 / 17.7 -> 7.2 / 17.4."""
    b, t, c = values.shape
    frames, prev, nxt = key_neighbours(mask)
    # the key before ``prev`` and the key after ``nxt``
    before = torch.cat([torch.full_like(prev[:, :1], -1), prev[:, :-1]], 1).gather(1, prev.clamp_min(0))
    before = torch.where(prev >= 0, before, torch.full_like(prev, -1))
    after = torch.cat([nxt[:, 1:], torch.full_like(nxt[:, :1], t)], 1).gather(1, nxt.clamp_max(t - 1))
    after = torch.where(nxt < t, after, torch.full_like(nxt, t))
    at = lambda index: values.gather(1, index.clamp(0, t - 1))
    v_prev, v_next = at(prev), at(nxt)
    span = (nxt - prev).clamp_min(1).to(values.dtype)
    secant = (v_next - v_prev) / span
    m_prev = torch.where(before >= 0, (v_prev - at(before)) / (prev - before).clamp_min(1).to(values.dtype), secant)
    m_next = torch.where(after < t, (at(after) - v_next) / (after - nxt).clamp_min(1).to(values.dtype), secant)
    # Tangents scaled into the circle of radius 3 in units of the secant (Fritsch & Carlson's bound):
    # unbounded, a tiny secant across a gap between fast keyed stretches made wild loops (gap-15
    # overlap 6.3 cm³). Their sign is kept: zeroing tangents against the secant (full monotonicity)
    # flattened real swings (gap-30 FD 9.25 -> 10.1 on 32 windows).
    safe = torch.where(secant.abs() > 1e-12, secant, torch.ones_like(secant))
    alpha = torch.where(secant.abs() > 1e-12, m_prev / safe, torch.zeros_like(secant))
    beta = torch.where(secant.abs() > 1e-12, m_next / safe, torch.zeros_like(secant))
    scale = (3.0 / torch.sqrt(alpha * alpha + beta * beta).clamp_min(3.0))
    m_prev, m_next = alpha * scale * secant, beta * scale * secant
    u = ((frames - prev).to(values.dtype) / span).clamp(0, 1)
    u2, u3 = u * u, u * u * u
    curve = ((2 * u3 - 3 * u2 + 1) * v_prev + (u3 - 2 * u2 + u) * span * m_prev
             + (-2 * u3 + 3 * u2) * v_next + (u3 - u2) * span * m_next)
    has_prev, has_next = prev >= 0, nxt < t
    out = torch.where(has_prev & has_next, curve, torch.where(has_prev, v_prev, torch.where(has_next, v_next, 0.0)))
    return torch.where(mask, values, out)


def short_gap_weight(mask: torch.Tensor, short: int, long: int) -> torch.Tensor:
    """(B, T, C) in [0, 1], per channel of ``mask`` (B, T, C) bool: 1 between two of its keys at most ``short``
    frames apart, 0 between keys at least ``long`` frames apart, at the keys and outside the keyed span,
    linear in the span between (``short`` < ``long``)."""
    t = mask.shape[1]
    _, prev, nxt = key_neighbours(mask)
    span = (nxt - prev).float()
    weight = ((long - span) / float(long - short)).clamp(0, 1)
    return torch.where((prev >= 0) & (nxt < t) & ~mask, weight, torch.zeros_like(weight))


def slerp_correction(values: torch.Tensor, mask: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """What to add to a curve through the keys so that each rotation turns along its arc: in the 6D
    rotation channels ``blocks`` (K, 6) of ``values`` (B, T, C), between two keys of a whole block,
    the keys' slerp minus their per-channel linear in-between at the same fraction of the gap (which
    a Hermite curve between two lone keys equals; zero at the keys, and a second-order difference for
    small turns: a 30° turn moves a 6D entry by at most ~0.04, a 170° one by up to ~0.9). Zero elsewhere:
    other channels, outside the keyed span, and frames whose block is keyed only in part or between
    keys of its channels that differ. ``mask`` (B, T, C) bool."""
    b, t, _ = values.shape
    k = blocks.shape[0]
    index = blocks.to(values.device).reshape(-1)
    v = values[..., index].reshape(b, t, k, 6)
    keyed = mask[..., index].reshape(b, t, k, 6)
    frames = torch.arange(t, device=values.device).view(1, t, 1, 1)

    def neighbours(marks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frame = frames.expand_as(marks)
        prev = torch.where(marks, frame, torch.full_like(frame, -1)).cummax(1).values
        nxt = torch.where(marks, frame, torch.full_like(frame, t)).flip(1).cummin(1).values.flip(1)
        return prev, nxt

    prev, nxt = neighbours(keyed.all(-1, keepdim=True))                       # (B, T, K, 1)
    channel_prev, channel_next = neighbours(keyed)                            # (B, T, K, 6)
    inside = ((prev >= 0) & (nxt < t) & ~keyed.any(-1, keepdim=True)
              & (channel_prev == prev).all(-1, keepdim=True) & (channel_next == nxt).all(-1, keepdim=True))
    at = lambda frame: v.gather(1, frame.clamp(0, t - 1).expand(-1, -1, -1, 6))
    v_prev, v_next = at(prev), at(nxt)
    u = ((frames - prev).to(values.dtype) / (nxt - prev).clamp_min(1).to(values.dtype)).clamp(0, 1)
    arc = matrix_to_rot6d(slerp_matrix(rot6d_to_matrix(v_prev), rot6d_to_matrix(v_next), u[..., 0]))
    line = v_prev + u * (v_next - v_prev)
    correction = torch.where(inside, arc - line, torch.zeros_like(line))
    out = torch.zeros_like(values)
    out[..., index] = correction.reshape(b, t, k * 6)
    return out


__all__ = ["CURVES", "hermite_keys", "interpolate_keys", "key_curve", "short_gap_weight", "slerp_correction"]
