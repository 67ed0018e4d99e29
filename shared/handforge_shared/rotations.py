"""Rotation conversions: axis-angle, quaternion, matrix, 6D and Blender's Euler modes; mirroring; slerp.

One implementation serves both sides: every function takes numpy arrays (the Blender add-on) or
torch tensors (the backend, differentiable, any device and float dtype) and returns the same kind.
torch is imported only when a tensor is passed, so the add-on never needs it.

Conventions
- axis-angle: (..., 3), the rotation vector (axis × angle in radians).
- quaternion: (..., 4), scalar first (w, x, y, z), like Blender; outputs have w >= 0.
- matrix: (..., 3, 3), rotating column vectors (x' = R @ x).
- 6D: (..., 6), the first two *rows* of the matrix (pytorch3d's ``matrix_to_rotation_6d``,
  the convention InterHandGen's data uses); decoded by Gram-Schmidt.
- Euler: (..., 3), angles (x, y, z) about the parent's axes in one of Blender's six modes
  ('YZX': Y applied first, R = Rx · Rz · Ry), as ``mathutils.Euler`` stores them.

Outputs have the inputs' float dtype (float32 in, float32 out), batched or not; numpy real scalars
(``np.float32(0.3)``) are accepted where Python numbers are, and Python numbers and sequences are
float64 (or, for slerp's fractions, the rotations' dtype).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

_SMALL = 1e-6  # below this angle² the two-term Taylor series are used (relative error ~angle⁴, < 1e-12)
# Quaternions may have any norm: their squared norm is kept from 0 only, not from small values (a
# quaternion of norm 1e-8 is a rotation). 1e-30 is above float32's smallest normal number (1.2e-38).
_TINY_NORM2 = 1e-30


def _numpy_ops() -> SimpleNamespace:
    return SimpleNamespace(
        sqrt=np.sqrt, sin=np.sin, cos=np.cos, atan2=np.arctan2, where=np.where,
        stack=lambda seq, axis: np.stack(seq, axis),
        clamp_min=np.maximum, abs=np.abs,
    )


_NUMPY = _numpy_ops()
_TORCH: SimpleNamespace | None = None


def _torch_ops() -> SimpleNamespace:
    global _TORCH
    if _TORCH is None:
        import torch

        _TORCH = SimpleNamespace(
            sqrt=torch.sqrt, sin=torch.sin, cos=torch.cos, atan2=torch.atan2, where=torch.where,
            stack=lambda seq, axis: torch.stack(seq, axis),
            clamp_min=lambda x, v: torch.clamp(x, min=v), abs=torch.abs,
        )
    return _TORCH


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch")


def array_ops(x: Any) -> SimpleNamespace:
    """The few array functions this module needs, from numpy or torch to match ``x``.

    Other shared modules that must work on both (e.g. anatomy) use this instead of their own
    dispatch: sqrt, sin, cos, atan2, where, stack(seq, axis), clamp_min, abs.
    """
    if isinstance(x, np.ndarray):
        return _NUMPY
    if is_torch(x):
        return _torch_ops()
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")


def _is_real_numpy_scalar(x: Any) -> bool:
    """np.float32(0.3), np.int64(2)…: real numbers as numpy hands them out (not np.bool_ or complex)."""
    return isinstance(x, (np.floating, np.integer))


def _as_array(x: Any) -> Any:
    if isinstance(x, (list, tuple, float, int)):
        return np.asarray(x, dtype=np.float64)
    if _is_real_numpy_scalar(x):
        return np.asarray(x, dtype=x.dtype if isinstance(x, np.floating) else np.float64)
    array_ops(x)  # raises for anything that is neither numpy nor torch
    return x


_Function = TypeVar("_Function", bound=Callable[..., Any])


def _keeps_numpy_dtype(function: _Function) -> _Function:
    """Run ``function`` on numpy inputs with a leading batch axis added, removed from its result.

    numpy 1.x promotes 0-d arrays by their dtypes alone, so the unbatched float32 steps (x * x + …
    of a (3,) axis-angle) mixed with Python floats (1.0 - t2 / 6.0) became float64, while batched
    ones stayed float32 (value-based casting). A batch axis of 1 gives every input the batched
    path: the same dtype and the same values as the batched call, gimbal-lock threshold included."""

    @functools.wraps(function)
    def batched(*args: Any, **kwargs: Any) -> Any:
        values = (*args, *kwargs.values())
        if any(is_torch(v) for v in values) or not any(_is_numpy(v) for v in values):
            return function(*args, **kwargs)
        try:
            out = function(*(_lift(a) for a in args), **{k: _lift(v) for k, v in kwargs.items()})
        except ValueError:  # a shape error: raised again to name the caller's shapes, not the lifted ones
            return function(*args, **kwargs)
        return out[0]

    return batched  # type: ignore[return-value]


def _is_numpy(x: Any) -> bool:
    return isinstance(x, np.ndarray) or _is_real_numpy_scalar(x)


def _lift(x: Any) -> Any:
    """``x`` with a leading axis of 1 if it is an array; Python numbers (0-d, they broadcast) and
    anything else (Euler orders, inputs ``_as_array`` refuses) as they are."""
    if isinstance(x, np.ndarray):
        return x[None]
    if isinstance(x, (list, tuple)) or _is_real_numpy_scalar(x):
        return _as_array(x)[None]
    return x


def _check_last(x: Any, size: int, what: str) -> None:
    if x.shape[-1:] != (size,):
        raise ValueError(f"{what} must have shape (..., {size}), got {tuple(x.shape)}")


def _check_matrix(x: Any) -> None:
    if tuple(x.shape[-2:]) != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {tuple(x.shape)}")


def _matrix(rows: list[list[Any]], xp: SimpleNamespace) -> Any:
    return xp.stack([xp.stack(r, -1) for r in rows], -2)


@_keeps_numpy_dtype
def axis_angle_to_matrix(axis_angle: Any) -> Any:
    """Rodrigues' formula, with Taylor terms near zero so gradients stay finite there."""
    aa = _as_array(axis_angle)
    _check_last(aa, 3, "axis-angles")
    xp = array_ops(aa)
    x, y, z = aa[..., 0], aa[..., 1], aa[..., 2]
    t2 = x * x + y * y + z * z
    small = t2 < _SMALL
    t2_safe = xp.where(small, xp.clamp_min(t2, 0.0) + 1.0, t2)
    t = xp.sqrt(t2_safe)
    a = xp.where(small, 1.0 - t2 / 6.0, xp.sin(t) / t)  # sin(t)/t
    b = xp.where(small, 0.5 - t2 / 24.0, (1.0 - xp.cos(t)) / t2_safe)  # (1-cos t)/t²
    return _matrix(
        [
            [1.0 - b * (y * y + z * z), b * x * y - a * z, b * x * z + a * y],
            [b * x * y + a * z, 1.0 - b * (x * x + z * z), b * y * z - a * x],
            [b * x * z - a * y, b * y * z + a * x, 1.0 - b * (x * x + y * y)],
        ],
        xp,
    )


@_keeps_numpy_dtype
def quaternion_to_matrix(quaternion: Any) -> Any:
    q = _as_array(quaternion)
    _check_last(q, 4, "quaternions")
    xp = array_ops(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    s = 2.0 / xp.clamp_min(w * w + x * x + y * y + z * z, _TINY_NORM2)
    return _matrix(
        [
            [1.0 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1.0 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1.0 - s * (x * x + y * y)],
        ],
        xp,
    )


@_keeps_numpy_dtype
def matrix_to_quaternion(matrix: Any) -> Any:
    """Shepperd's method: each of the four candidate formulas is used where it is best conditioned."""
    m = _as_array(matrix)
    _check_matrix(m)
    xp = array_ops(m)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = m00 + m11 + m22

    def half_root(v: Any) -> Any:  # 2·sqrt(v), kept away from 0 so unused branches stay finite
        return 2.0 * xp.sqrt(xp.clamp_min(v, 1e-12))

    s0 = half_root(1.0 + trace)
    s1 = half_root(1.0 + m00 - m11 - m22)
    s2 = half_root(1.0 - m00 + m11 - m22)
    s3 = half_root(1.0 - m00 - m11 + m22)
    cands = [
        [0.25 * s0, (m21 - m12) / s0, (m02 - m20) / s0, (m10 - m01) / s0],
        [(m21 - m12) / s1, 0.25 * s1, (m01 + m10) / s1, (m02 + m20) / s1],
        [(m02 - m20) / s2, (m01 + m10) / s2, 0.25 * s2, (m12 + m21) / s2],
        [(m10 - m01) / s3, (m02 + m20) / s3, (m12 + m21) / s3, 0.25 * s3],
    ]
    use0 = (trace > m00) & (trace > m11) & (trace > m22)
    use1 = (~use0) & (m00 >= m11) & (m00 >= m22)
    use2 = (~use0) & (~use1) & (m11 >= m22)
    comps = []
    for k in range(4):
        comps.append(
            xp.where(use0, cands[0][k], xp.where(use1, cands[1][k], xp.where(use2, cands[2][k], cands[3][k])))
        )
    q = xp.stack(comps, -1)
    return _canonical_quaternion(q, xp)


def _canonical_quaternion(q: Any, xp: SimpleNamespace) -> Any:
    norm = xp.sqrt(xp.clamp_min((q * q).sum(-1), _TINY_NORM2))
    q = q / norm[..., None]
    return xp.where(q[..., :1] < 0, -q, q)  # not q · where(…, -1.0, 1.0): that sign is float64 in numpy


@_keeps_numpy_dtype
def axis_angle_to_quaternion(axis_angle: Any) -> Any:
    aa = _as_array(axis_angle)
    _check_last(aa, 3, "axis-angles")
    xp = array_ops(aa)
    return _canonical_quaternion(_unit_quaternion(aa, xp), xp)


@_keeps_numpy_dtype
def axis_angle_to_euler(axis_angle: Any, order: str) -> Any:
    """Blender Euler angles (..., 3) of axis-angles (..., 3), in their precision, without matrices."""
    aa = _as_array(axis_angle)
    _check_last(aa, 3, "axis-angles")
    xp = array_ops(aa)
    w, *v = _unit_quaternion_parts(*_components(aa), xp)
    return _quaternion_parts_to_euler(w, v, order, xp)


def _components(x: Any) -> tuple[Any, ...]:
    """The entries of the last axis as separate arrays; numpy's contiguous (a copy): every later
    elementwise step then runs on contiguous memory, 2-3× faster than on strided views."""
    if isinstance(x, np.ndarray):
        return tuple(np.moveaxis(x, -1, 0).copy())
    return tuple(x.unbind(-1))


def _unit_quaternion(aa: Any, xp: SimpleNamespace) -> Any:
    """(cos(t/2), sin(t/2)·axis) of axis-angles, either sign of w."""
    return xp.stack(list(_unit_quaternion_parts(aa[..., 0], aa[..., 1], aa[..., 2], xp)), -1)


def _unit_quaternion_parts(x: Any, y: Any, z: Any, xp: SimpleNamespace) -> tuple[Any, Any, Any, Any]:
    t2 = x * x + y * y + z * z  # numpy sums a last axis of 3 ten times slower than this
    small = t2 < _SMALL
    t = xp.sqrt(xp.where(small, xp.clamp_min(t2, 0.0) + 1.0, t2))
    half = 0.5 * t
    k = xp.where(small, 0.5 - t2 / 48.0, xp.sin(half) / t)  # sin(t/2)/t
    w = xp.where(small, 1.0 - t2 / 8.0, xp.cos(half))
    return w, x * k, y * k, z * k


@_keeps_numpy_dtype
def quaternion_to_axis_angle(quaternion: Any) -> Any:
    """Angles come out in [0, π]."""
    q = _as_array(quaternion)
    _check_last(q, 4, "quaternions")
    xp = array_ops(q)
    q = _canonical_quaternion(q, xp)
    w, v = q[..., 0], q[..., 1:]
    s2 = (v * v).sum(-1)
    small = s2 < _SMALL
    s = xp.sqrt(xp.where(small, s2 + 1.0, s2))
    angle = 2.0 * xp.atan2(s, w)
    # angle / |v|; near 0 it tends to 2/w · (1 − s²/(3w²)) (w ≈ 1 there). The branch not taken is
    # evaluated too: w is kept away from 0 in it, or its gradient at half-turns (w = 0) would be NaN
    w_small = xp.where(small, w, 1.0)
    k = xp.where(small, 2.0 / w_small * (1.0 - s2 / (3.0 * w_small * w_small)), angle / s)
    return v * k[..., None]


@_keeps_numpy_dtype
def matrix_to_axis_angle(matrix: Any) -> Any:
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def matrix_to_rot6d(matrix: Any) -> Any:
    m = _as_array(matrix)
    _check_matrix(m)
    return m[..., :2, :].reshape(*m.shape[:-2], 6)


@_keeps_numpy_dtype
def rot6d_to_matrix(rot6d: Any) -> Any:
    r = _as_array(rot6d)
    _check_last(r, 6, "6D rotations")
    xp = array_ops(r)
    a1, a2 = r[..., 0:3], r[..., 3:6]
    b1 = a1 / xp.sqrt(xp.clamp_min((a1 * a1).sum(-1), 1e-24))[..., None]
    a2 = a2 - (b1 * a2).sum(-1)[..., None] * b1
    b2 = a2 / xp.sqrt(xp.clamp_min((a2 * a2).sum(-1), 1e-24))[..., None]
    b3 = _cross(b1, b2, xp)
    return xp.stack([b1, b2, b3], -2)


@_keeps_numpy_dtype
def axis_angle_to_rot6d(axis_angle: Any) -> Any:
    return matrix_to_rot6d(axis_angle_to_matrix(axis_angle))


@_keeps_numpy_dtype
def rot6d_to_axis_angle(rot6d: Any) -> Any:
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def _cross(a: Any, b: Any, xp: SimpleNamespace) -> Any:
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return xp.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)


# Mirroring through the plane x = 0 (left ↔ right): a point (x, y, z) becomes (-x, y, z); a rotation
# R becomes S R S with S = diag(-1, 1, 1), i.e. the rotation vector (x, y, z) becomes (x, -y, -z).
def mirror_axis_angle(axis_angle: Any) -> Any:
    aa = _as_array(axis_angle)
    _check_last(aa, 3, "axis-angles")
    xp = array_ops(aa)
    return xp.stack([aa[..., 0], -aa[..., 1], -aa[..., 2]], -1)


def mirror_points(points: Any) -> Any:
    p = _as_array(points)
    _check_last(p, 3, "points")
    xp = array_ops(p)
    return xp.stack([-p[..., 0], p[..., 1], p[..., 2]], -1)


@_keeps_numpy_dtype
def rotation_angle(matrix: Any) -> Any:
    """Angle of each rotation in radians, in [0, π]."""
    m = _as_array(matrix)
    xp = array_ops(m)
    c = (m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2] - 1.0) * 0.5
    s2 = ((m[..., 2, 1] - m[..., 1, 2]) ** 2 + (m[..., 0, 2] - m[..., 2, 0]) ** 2
          + (m[..., 1, 0] - m[..., 0, 1]) ** 2) * 0.25
    some = s2 > 0  # sqrt's gradient at 0 is infinite: there the angle's is taken as 0, not NaN
    s = xp.where(some, xp.sqrt(xp.where(some, s2, 1.0)), 0.0)
    return xp.atan2(s, c)


# ---------------------------------------------------------------------- Euler angles (Blender's)
# Blender's Euler modes name the axes in the order they are applied to the object: mode 'YZX' turns
# about Y first, then Z, then X, all about the fixed parent axes, so R = Rx · Rz · Ry (scipy calls
# this extrinsic 'yzx'). Angles are stored per axis, (x, y, z), whatever the mode. See
# https://docs.blender.org/api/current/mathutils.html#mathutils.Euler
EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")


def _check_order(order: str) -> tuple[int, int, int]:
    if order not in EULER_ORDERS:
        raise ValueError(f"unknown Euler order {order!r}: use one of {', '.join(EULER_ORDERS)}")
    i, j, k = ("XYZ".index(c) for c in order)
    return i, j, k


def _elementary(angle: Any, axis: int, xp: SimpleNamespace) -> Any:
    """(..., 3, 3) rotations by ``angle`` about coordinate axis 0, 1 or 2."""
    c, s = xp.cos(angle), xp.sin(angle)
    one, zero = c * 0.0 + 1.0, c * 0.0
    rows = {
        0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return _matrix(rows, xp)


@_keeps_numpy_dtype
def euler_to_matrix(euler: Any, order: str) -> Any:
    """Blender Euler angles (..., 3), (x, y, z) radians in mode ``order`` → matrices (..., 3, 3)."""
    e = _as_array(euler)
    _check_last(e, 3, "Euler angles")
    i, j, k = _check_order(order)
    xp = array_ops(e)
    return _elementary(e[..., k], k, xp) @ _elementary(e[..., j], j, xp) @ _elementary(e[..., i], i, xp)


@_keeps_numpy_dtype
def matrix_to_euler(matrix: Any, order: str) -> Any:
    """Inverse of ``euler_to_matrix``: (..., 3) angles (x, y, z), the middle axis' angle in [-π/2, π/2].

    Written with atan2 throughout (no arcsin), so it stays accurate and torch gradients stay finite.
    At the gimbal lock (middle angle ±90°, to within sqrt(eps)) only one combination of the outer
    angles is defined: the last axis' angle is then 0, as in Blender's ``Matrix.to_euler``."""
    m = _as_array(matrix)
    _check_matrix(m)
    return _euler_from_entries(lambda r, c: m[..., r, c], order, array_ops(m))


@_keeps_numpy_dtype
def quaternion_to_euler(quaternion: Any, order: str) -> Any:
    """``matrix_to_euler`` of quaternions (..., 4) (w, x, y, z; any norm) without building the
    matrices: only the seven entries the angles need, each a quadratic in the quaternion."""
    q = _as_array(quaternion)
    _check_last(q, 4, "quaternions")
    return _quaternion_parts_to_euler(q[..., 0], (q[..., 1], q[..., 2], q[..., 3]), order, array_ops(q))


def _quaternion_parts_to_euler(w: Any, v: Any, order: str, xp: SimpleNamespace) -> Any:
    s = 2.0 / xp.clamp_min(w * w + v[0] * v[0] + v[1] * v[1] + v[2] * v[2], _TINY_NORM2)

    def entry(r: int, c: int) -> Any:  # the entries of ``quaternion_to_matrix``
        if r == c:
            a, b = (n for n in range(3) if n != r)
            return 1.0 - s * (v[a] * v[a] + v[b] * v[b])
        third = 3 - r - c
        turn = w * v[third]
        return s * (v[r] * v[c] + (turn if (c - r) % 3 == 2 else -turn))

    return _euler_from_entries(entry, order, xp)


def _euler_from_entries(m: Any, order: str, xp: SimpleNamespace) -> Any:
    """Euler angles from a rotation matrix given as ``m(row, column)``."""
    i, j, k = _check_order(order)
    # R = R_k(c) R_j(b) R_i(a); the cyclic orders (XYZ, YZX, ZXY) and the others differ in sign.
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    m_kj, m_kk = m(k, j), m(k, k)
    m_ji, m_ii = m(j, i), m(i, i)
    cos_b = xp.sqrt(xp.clamp_min(m_kj ** 2 + m_kk ** 2, 1e-30))  # cos(b) ≥ 0; the clamp keeps sqrt's gradient finite
    b = xp.atan2(-sign * m(k, i), cos_b)
    # At the gimbal lock (b = ±90°) m_kj, m_kk, m_ji and m_ii are all cos(b)·(…), rounding noise, so
    # their atan2s are arbitrary; only a ∓ c is defined. There, as Blender does, c = 0 and a comes
    # from row j, which is row j of R_i(a) once R_k is the identity. Each free-branch angle has an
    # error of ~eps/cos(b) and the locked one of ~cos(b): they meet at cos(b) = sqrt(eps) (1.5e-8 in
    # float64, 3.5e-4 in float32), the rotation error there being ~sqrt(eps).
    locked = cos_b < _sqrt_eps(m_kk)
    if xp is _NUMPY:  # no gradients to guard: the free branch alone, the locked rows (rarely any) mended after
        a, c = np.arctan2(sign * m_kj, m_kk), np.arctan2(sign * m_ji, m_ii)
        if locked.any():
            a = np.where(locked, np.arctan2(-sign * m(j, k), m(j, j)), a)
            c = np.where(locked, 0.0, c)
        by_axis = {i: a, j: b, k: c}
        return np.stack([by_axis[0], by_axis[1], by_axis[2]], -1)
    free = ~locked
    # Both branches are evaluated (xp.where): each atan2 gets (0, 1) where its branch is not taken, so
    # neither has a 0/0 gradient (the free one at the lock, the locked one where row j is ±e_i).
    a_free = xp.atan2(sign * xp.where(free, m_kj, 0.0), xp.where(free, m_kk, 1.0))
    a_locked = xp.atan2(-sign * xp.where(locked, m(j, k), 0.0), xp.where(locked, m(j, j), 1.0))
    a = xp.where(locked, a_locked, a_free)
    c = xp.where(locked, 0.0, xp.atan2(sign * xp.where(free, m_ji, 0.0), xp.where(free, m_ii, 1.0)))
    by_axis = {i: a, j: b, k: c}
    return xp.stack([by_axis[0], by_axis[1], by_axis[2]], -1)


def _sqrt_eps(x: Any) -> float:
    """The square root of the machine epsilon of ``x``'s float dtype (float64's for other dtypes)."""
    if is_torch(x) and x.dtype.is_floating_point:
        import torch

        return float(torch.finfo(x.dtype).eps) ** 0.5
    dtype = getattr(x, "dtype", None)
    floating = dtype is not None and not is_torch(x) and np.issubdtype(dtype, np.floating)
    return float(np.finfo(dtype if floating else np.float64).eps) ** 0.5


@_keeps_numpy_dtype
def euler_other_solution(euler: Any, order: str) -> Any:
    """The second Euler triple of the same rotations: (a + π, π − b, c + π) in the order's axes."""
    e = _as_array(euler)
    _check_last(e, 3, "Euler angles")
    i, j, _ = _check_order(order)
    xp = array_ops(e)
    return xp.stack([e[..., n] + np.pi if n != j else np.pi - e[..., n] for n in range(3)], -1)


# ---------------------------------------------------------------------- interpolation
_NLERP_ABOVE = 0.9995  # |cos Ω| above this: normalised lerp is exact enough and sin Ω is not divided by


@_keeps_numpy_dtype
def slerp_quaternion(q0: Any, q1: Any, s: Any) -> Any:
    """Quaternions (..., 4) from ``q0`` to ``q1`` at fractions ``s`` (...) along the shortest arc
    (Shoemake 1985, "Animating rotation with quaternion curves", SIGGRAPH). Inputs broadcast and
    may have any norm."""
    q0, q1 = _as_array(q0), _as_array(q1)
    if is_torch(q0) and not is_torch(s):
        s = q0.new_tensor(s)
    elif isinstance(s, (float, int)) and np.issubdtype(np.result_type(q0, q1), np.floating):
        s = np.asarray(s, dtype=np.result_type(q0, q1))  # a Python number takes the rotations' precision
    else:
        s = _as_array(s)
    _check_last(q0, 4, "quaternions")
    _check_last(q1, 4, "quaternions")
    xp = array_ops(q0)
    # unit length first: the dot product is cos Ω only between unit quaternions
    q0, q1 = (q / xp.sqrt(xp.clamp_min((q * q).sum(-1), _TINY_NORM2))[..., None] for q in (q0, q1))
    dot = (q0 * q1).sum(-1)
    q1 = xp.where((dot < 0.0)[..., None], -q1, q1)  # the shorter of the two arcs
    dot = xp.abs(dot)
    near = dot > _NLERP_ABOVE
    omega = xp.atan2(xp.sqrt(xp.clamp_min(1.0 - dot * dot, 1e-30)), dot)  # clamp: finite gradients
    sin_omega = xp.where(near, 1.0, xp.sin(omega))
    s = s[..., None]
    lerp = q0 + s * (q1 - q0)
    arc = (xp.sin((1.0 - s) * omega[..., None]) * q0 + xp.sin(s * omega[..., None]) * q1) / sin_omega[..., None]
    q = xp.where(near[..., None], lerp, arc)
    return q / xp.sqrt((q * q).sum(-1))[..., None]


@_keeps_numpy_dtype
def slerp_matrix(r0: Any, r1: Any, s: Any) -> Any:
    """Rotations (..., 3, 3) from ``r0`` to ``r1`` at fractions ``s`` (...) along the shortest arc.
    Where ``r0`` and ``r1`` are equal (to ``np.allclose``'s tolerance) ``r0`` itself comes back,
    so a rotation that does not change is not perturbed by a quaternion round trip."""
    r0, r1 = _as_array(r0), _as_array(r1)
    _check_matrix(r0)
    _check_matrix(r1)
    xp = array_ops(r0)
    q = slerp_quaternion(matrix_to_quaternion(r0), matrix_to_quaternion(r1), s)
    same = (xp.abs(r0 - r1) <= 1e-8 + 1e-5 * xp.abs(r1)).all(-1).all(-1)
    return xp.where(same[..., None, None], r0, quaternion_to_matrix(q))
