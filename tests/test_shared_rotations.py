"""Rotation conversions: round trips (property-based), scipy as an independent oracle, numpy/torch
agreement, gradients, mirroring, Blender's Euler modes and slerp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation, Slerp

from handforge_shared import rotations as rot

finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
axis_angles = arrays(np.float64, (3,), elements=finite)
# Angles strictly inside (0, π) round-trip to the same vector; near π the sign may flip.
quaternion_parts = arrays(np.float64, (4,), elements=st.floats(-1, 1, allow_nan=False))


def _wrapped(aa: np.ndarray) -> np.ndarray:
    """The same rotation with its angle in [0, π)."""
    angle = np.linalg.norm(aa)
    if angle < 1e-12:
        return aa
    wrapped = (angle + np.pi) % (2 * np.pi) - np.pi
    return aa / angle * wrapped if wrapped >= 0 else -aa / angle * (-wrapped)


def _is_rotation(m: np.ndarray) -> bool:
    return np.allclose(m @ m.swapaxes(-1, -2), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(m), 1.0)


@settings(max_examples=300, deadline=None)
@given(axis_angles)
def test_axis_angle_matrix_round_trip(aa):
    m = rot.axis_angle_to_matrix(aa)
    assert _is_rotation(m)
    back = rot.matrix_to_axis_angle(m)
    if abs(np.linalg.norm(_wrapped(aa)) - np.pi) > 1e-4:
        np.testing.assert_allclose(back, _wrapped(aa), atol=1e-7)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(back), m, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(quaternion_parts)
def test_quaternion_matrix_round_trip(q):
    assume(np.linalg.norm(q) >= 1e-3)
    q = q / np.linalg.norm(q)
    q = q if q[0] >= 0 else -q
    m = rot.quaternion_to_matrix(q)
    assert _is_rotation(m)
    back = rot.matrix_to_quaternion(m)
    if q[0] > 1e-6:  # w = 0 is the double cover's ambiguous edge
        np.testing.assert_allclose(back, q, atol=1e-8)
    np.testing.assert_allclose(rot.quaternion_to_matrix(back), m, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(axis_angles)
def test_quaternion_and_6d_agree_with_matrix(aa):
    m = rot.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(rot.quaternion_to_matrix(rot.axis_angle_to_quaternion(aa)), m, atol=1e-9)
    six = rot.matrix_to_rot6d(m)
    assert six.shape == (6,)
    np.testing.assert_allclose(rot.rot6d_to_matrix(six), m, atol=1e-9)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(rot.quaternion_to_axis_angle(rot.axis_angle_to_quaternion(aa))),
                               m, atol=1e-9)


def test_known_rotations():
    quarter_z = rot.axis_angle_to_matrix(np.array([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(quarter_z @ np.array([1.0, 0, 0]), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rot.axis_angle_to_quaternion(np.array([np.pi, 0, 0])), [0, 1, 0, 0], atol=1e-12)
    half_turn = rot.axis_angle_to_matrix(np.array([0.0, np.pi, 0.0]))
    np.testing.assert_allclose(np.abs(rot.matrix_to_axis_angle(half_turn)), [0, np.pi, 0], atol=1e-7)
    assert rot.rotation_angle(half_turn) == pytest.approx(np.pi)


def test_rot6d_is_first_two_rows_like_pytorch3d():
    m = rot.axis_angle_to_matrix(np.array([0.3, -0.2, 0.9]))
    np.testing.assert_allclose(rot.matrix_to_rot6d(m), m[:2].ravel())
    # Gram-Schmidt turns any non-degenerate 6D vector into a rotation.
    assert _is_rotation(rot.rot6d_to_matrix(np.array([2.0, 0.1, 0.0, 0.3, 1.5, 0.2])))


def test_batched_shapes_and_torch_agreement():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(4, 5, 3))
    m = rot.axis_angle_to_matrix(aa)
    assert m.shape == (4, 5, 3, 3)
    for fn in (rot.axis_angle_to_matrix, rot.axis_angle_to_quaternion, rot.axis_angle_to_rot6d,
               rot.mirror_axis_angle):
        out_np = fn(aa)
        out_t = fn(torch.tensor(aa))
        assert isinstance(out_t, torch.Tensor)
        np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-12)
    for fn, arg in ((rot.matrix_to_axis_angle, m), (rot.matrix_to_quaternion, m), (rot.rot6d_to_matrix, rot.matrix_to_rot6d(m))):
        np.testing.assert_allclose(fn(torch.tensor(arg)).numpy(), fn(arg), atol=1e-10)
    f32 = rot.axis_angle_to_matrix(torch.tensor(aa, dtype=torch.float32))
    assert f32.dtype == torch.float32


def test_numpy_float32_stays_float32():
    rng = np.random.default_rng(12)
    aa = rng.normal(size=(5, 3)).astype(np.float32)
    m, q = rot.axis_angle_to_matrix(aa), rng.normal(size=(5, 4)).astype(np.float32)
    assert m.dtype == np.float32
    outputs = {
        "axis_angle_to_quaternion": rot.axis_angle_to_quaternion(aa),
        "matrix_to_quaternion": rot.matrix_to_quaternion(m),
        "quaternion_to_axis_angle": rot.quaternion_to_axis_angle(q),
        "matrix_to_axis_angle": rot.matrix_to_axis_angle(m),
        "quaternion_to_matrix": rot.quaternion_to_matrix(q),
        "matrix_to_euler": rot.matrix_to_euler(m, "ZXY"),
        "quaternion_to_euler": rot.quaternion_to_euler(q, "ZXY"),
        "axis_angle_to_euler": rot.axis_angle_to_euler(aa, "ZXY"),
        "slerp_matrix": rot.slerp_matrix(m, m[::-1], np.full(5, 0.3, np.float32)),
    }
    assert {name: out.dtype for name, out in outputs.items()} == {name: np.float32 for name in outputs}
    np.testing.assert_allclose(outputs["matrix_to_axis_angle"], rot.matrix_to_axis_angle(m.astype(np.float64)), atol=1e-5)


def _inputs(name: str, dtype: type, batch: tuple[int, ...]) -> list:
    """Valid arguments of each public function, ``batch`` leading their rotation shapes."""
    rng = np.random.default_rng(5)
    aa = rng.normal(size=(*batch, 3))
    m = rot.axis_angle_to_matrix(aa)
    q = rot.axis_angle_to_quaternion(aa)
    fraction = np.full(batch, 0.3)
    by_name = {
        "axis_angle_to_matrix": [aa], "axis_angle_to_quaternion": [aa], "axis_angle_to_rot6d": [aa],
        "axis_angle_to_euler": [aa, "YZX"], "mirror_axis_angle": [aa], "mirror_points": [aa],
        "quaternion_to_matrix": [q], "quaternion_to_axis_angle": [q], "quaternion_to_euler": [q, "YZX"],
        "matrix_to_quaternion": [m], "matrix_to_axis_angle": [m], "matrix_to_rot6d": [m],
        "matrix_to_euler": [m, "YZX"], "rotation_angle": [m],
        "rot6d_to_matrix": [rot.matrix_to_rot6d(m)], "rot6d_to_axis_angle": [rot.matrix_to_rot6d(m)],
        "euler_to_matrix": [aa, "YZX"], "euler_other_solution": [aa, "YZX"],
        "slerp_quaternion": [q, -q[..., [1, 0, 3, 2]], fraction],
        "slerp_matrix": [m, np.swapaxes(m, -1, -2), fraction],
    }
    return [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in by_name[name]]


_CONVERSIONS = sorted(
    name for name in dir(rot)
    if not name.startswith("_") and callable(getattr(rot, name)) and getattr(rot, name).__module__ == rot.__name__
    and name not in ("is_torch", "array_ops")
)


def test_every_public_conversion_is_checked_for_dtype():
    for name in _CONVERSIONS:
        _inputs(name, np.float64, ())  # a KeyError names a function the dtype test does not cover


@pytest.mark.parametrize("name", _CONVERSIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_keep_the_float_dtype_batched_or_not(name, dtype):
    """An unbatched float32 input came out float64 from 15 of the functions (numpy 1.x promotes 0-d
    arrays by dtype, so x * x + … then 1.0 - t2 / 6.0 became float64); batched ones stayed float32."""
    function = getattr(rot, name)
    batched = function(*_inputs(name, dtype, (4,)))
    single = function(*_inputs(name, dtype, ()))
    assert (batched.dtype, np.asarray(single).dtype) == (dtype, dtype)
    np.testing.assert_array_equal(single, batched[0])  # the same arithmetic, batched or not


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_scalars_are_accepted_like_python_numbers(dtype):
    """np.float32(0.3) as slerp's fraction was refused ("expected a numpy array or a torch tensor")."""
    q0, q1, _ = _inputs("slerp_quaternion", dtype, (4,))
    r0, r1, _ = _inputs("slerp_matrix", dtype, (4,))
    for function, a, b in ((rot.slerp_quaternion, q0, q1), (rot.slerp_matrix, r0, r1)):
        expected = function(a, b, 0.3)
        assert expected.dtype == dtype  # a Python fraction takes the rotations' precision
        for fraction in (dtype(0.3), np.float64(0.3)):
            found = function(a, b, fraction)
            assert found.dtype == np.result_type(dtype, type(fraction))
            np.testing.assert_allclose(found, expected, atol=1e-6)
        np.testing.assert_allclose(function(a, b, np.int64(1)), function(a, b, 1), atol=1e-6)
        for refused in (np.bool_(True), np.complex64(0.3), np.str_("0.3")):
            with pytest.raises(TypeError, match="numpy array or a torch tensor"):
                function(a, b, refused)


def test_gradients_are_finite_at_and_near_zero():
    for value in (0.0, 1e-5, 1e-3, 1.0):
        aa = torch.full((2, 3), value, dtype=torch.float64, requires_grad=True)
        rot.axis_angle_to_matrix(aa).sum().backward()
        assert torch.isfinite(aa.grad).all()
        aa.grad = None
        rot.axis_angle_to_quaternion(aa).sum().backward()
        assert torch.isfinite(aa.grad).all()
    # The derivative of R(aa) at zero is the cross-product generator.
    aa = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    rot.axis_angle_to_matrix(aa)[0, 1].backward()  # R[0,1] ≈ -z
    np.testing.assert_allclose(aa.grad.numpy(), [0, 0, -1], atol=1e-12)
    m = torch.tensor(rot.axis_angle_to_matrix(np.array([0.2, 0.1, -0.3])), requires_grad=True)
    rot.matrix_to_axis_angle(m).sum().backward()
    assert torch.isfinite(m.grad).all()
    # half-turns (w = 0) and the identity's angle: finite gradients too (a geodesic loss at zero error)
    for dtype in (torch.float32, torch.float64):
        q = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, requires_grad=True)
        rot.quaternion_to_axis_angle(q).sum().backward()
        assert torch.isfinite(q.grad).all(), q.grad
        m = torch.eye(3, dtype=dtype, requires_grad=True)
        rot.rotation_angle(m).backward()
        assert torch.isfinite(m.grad).all() and float(rot.rotation_angle(m.detach())) == 0.0


def test_small_angles_match_scipy_to_float64_precision():
    """Below the series threshold (angle ≲ 1e-3) quaternion → axis-angle used a wrong series (relative
    error 5e-7 at 2e-3 rad)."""
    rng = np.random.default_rng(4)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    rotvecs = axes * np.geomspace(1e-9, 3e-3, 200)[:, None]
    quaternions = Rotation.from_rotvec(rotvecs).as_quat()[:, [3, 0, 1, 2]]
    found = rot.quaternion_to_axis_angle(quaternions)
    error = np.linalg.norm(found - rotvecs, axis=1) / np.linalg.norm(rotvecs, axis=1)
    assert error.max() < 1e-12, error.max()
    found = rot.matrix_to_axis_angle(Rotation.from_rotvec(rotvecs).as_matrix())
    assert (np.linalg.norm(found - rotvecs, axis=1) / np.linalg.norm(rotvecs, axis=1)).max() < 1e-9


def test_small_angles_to_matrix_and_quaternion_match_scipy_to_float64_precision():
    """The forward direction's Taylor terms (angle² below the series threshold, angle ≲ 1e-3): a sign
    slip in sin(t)/t or sin(t/2)/t there is an error of ~1e-10 / ~1e-7, far above float64's."""
    rng = np.random.default_rng(4)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    rotvecs = axes * np.geomspace(1e-4, 9.9e-4, 200)[:, None]  # all below the threshold, where the series count
    truth = Rotation.from_rotvec(rotvecs)
    assert np.abs(rot.axis_angle_to_matrix(rotvecs) - truth.as_matrix()).max() < 1e-14
    q, expected = rot.axis_angle_to_quaternion(rotvecs), truth.as_quat()[:, [3, 0, 1, 2]]  # scipy: (x, y, z, w)
    assert np.abs(q[:, 0] - expected[:, 0]).max() < 1e-15
    vector_error = np.linalg.norm(q[:, 1:] - expected[:, 1:], axis=1) / np.linalg.norm(expected[:, 1:], axis=1)
    assert vector_error.max() < 1e-13, vector_error.max()


@settings(max_examples=100, deadline=None)
@given(axis_angles, arrays(np.float64, (3,), elements=finite))
def test_mirroring_reflects_rotated_points(aa, point):
    s = np.diag([-1.0, 1.0, 1.0])
    mirrored = rot.axis_angle_to_matrix(rot.mirror_axis_angle(aa)) @ rot.mirror_points(point)
    np.testing.assert_allclose(mirrored, s @ (rot.axis_angle_to_matrix(aa) @ point), atol=1e-9)
    np.testing.assert_allclose(rot.mirror_axis_angle(rot.mirror_axis_angle(aa)), aa)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match=r"axis-angles must have shape \(\.\.\., 3\)"):
        rot.axis_angle_to_matrix(np.zeros(4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        rot.matrix_to_quaternion(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        rot.axis_angle_to_matrix("not numbers")


# ---------------------------------------------------------------------- scipy as the oracle
# scipy.spatial.transform is written independently of this module: agreeing with it checks the
# conventions (rotation vectors, scalar-first quaternions, column-vector matrices), not only that
# our own conversions invert each other.
def _wxyz(rotation: Rotation) -> np.ndarray:
    q = np.roll(rotation.as_quat(), 1, axis=-1)  # scipy stores (x, y, z, w)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(axis_angles)
def test_axis_angle_matrix_quaternion_agree_with_scipy(aa):
    truth = Rotation.from_rotvec(aa)
    np.testing.assert_allclose(rot.axis_angle_to_matrix(aa), truth.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rot.matrix_to_quaternion(truth.as_matrix()), _wxyz(truth), atol=1e-9)
    np.testing.assert_allclose(rot.quaternion_to_matrix(_wxyz(truth)), truth.as_matrix(), atol=1e-12)
    # Axis-angle back from a matrix: scipy's and ours are the same rotation vector (angle in [0, π]);
    # at exactly π both signs are valid, so compare the rotations there.
    back = rot.matrix_to_axis_angle(truth.as_matrix())
    if np.linalg.norm(truth.as_rotvec()) < np.pi - 1e-6:
        np.testing.assert_allclose(back, truth.as_rotvec(), atol=1e-8)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), truth.as_matrix(), atol=1e-9)
    # 6D is defined on matrices: the first two rows of scipy's matrix, decoded back to it.
    six = rot.matrix_to_rot6d(truth.as_matrix())
    np.testing.assert_allclose(six, truth.as_matrix()[:2].ravel(), atol=0)
    np.testing.assert_allclose(rot.rot6d_to_matrix(six), truth.as_matrix(), atol=1e-12)


def test_scipy_agreement_in_batches_and_torch():
    truth = Rotation.random(64, random_state=1)
    m = truth.as_matrix()
    np.testing.assert_allclose(rot.axis_angle_to_matrix(truth.as_rotvec()), m, atol=1e-12)
    np.testing.assert_allclose(rot.matrix_to_quaternion(torch.tensor(m)).numpy(), _wxyz(truth), atol=1e-9)
    np.testing.assert_allclose(rot.quaternion_to_axis_angle(_wxyz(truth)), truth.as_rotvec(), atol=1e-9)


def test_tiny_quaternions_are_rotations():
    """Quaternions of any norm are accepted: a tiny one is the same rotation (not clamped away)."""
    truth = Rotation.random(16, random_state=7)
    m, q = truth.as_matrix(), _wxyz(truth)
    for scale in (1e-4, 1e-8, 1e-12):
        np.testing.assert_allclose(rot.quaternion_to_matrix(q * scale), m, rtol=0, atol=1e-12, err_msg=f"{scale=}")
        np.testing.assert_allclose(rot.quaternion_to_axis_angle(q * scale), truth.as_rotvec(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(rot.euler_to_matrix(rot.quaternion_to_euler(q * scale, "YZX"), "YZX"), m,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(rot.quaternion_to_matrix(rot.slerp_quaternion(q * scale, q * scale, 0.5)), m,
                                   rtol=0, atol=1e-12)
    small = torch.tensor(q * 1e-8, dtype=torch.float32, requires_grad=True)
    out = rot.quaternion_to_matrix(small)
    np.testing.assert_allclose(out.detach().numpy(), m, rtol=0, atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(small.grad).all()
    zero = torch.zeros(4, requires_grad=True)  # no rotation at all: the identity, with finite gradients
    rot.quaternion_to_matrix(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


euler_angles = arrays(np.float64, (3,), elements=st.floats(-np.pi, np.pi, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(euler_angles, st.sampled_from(rot.EULER_ORDERS))
def test_euler_agrees_with_scipy_extrinsic(angles, order):
    # Blender's mode 'YZX' applies Y first about the fixed axes: scipy's extrinsic (lower-case)
    # 'yzx' with the angles listed in that order.
    in_order = [angles["XYZ".index(c)] for c in order]
    truth = Rotation.from_euler(order.lower(), in_order)
    m = rot.euler_to_matrix(angles, order)
    np.testing.assert_allclose(m, truth.as_matrix(), atol=1e-12)
    expected = truth.as_euler(order.lower())  # scipy: middle angle in [-π/2, π/2], like ours
    # near the gimbal lock the first and last angles are not unique (the rotation is: tested below)
    assume(np.pi / 2 - abs(expected[1]) > 1e-3)
    back = rot.matrix_to_euler(m, order)
    gap = np.array([back["XYZ".index(c)] for c in order]) - expected
    np.testing.assert_allclose((gap + np.pi) % (2 * np.pi) - np.pi, 0.0, atol=1e-8)  # +π and −π are one angle
    np.testing.assert_allclose(rot.euler_to_matrix(rot.euler_other_solution(back, order), order), m, atol=1e-12)
    # straight from the quaternion (scaled: any norm, either sign), as the add-on writes Euler keys
    for q in (truth.as_quat(scalar_first=True) * 2.5, -truth.as_quat(scalar_first=True)):
        gap = np.array([rot.quaternion_to_euler(q, order)["XYZ".index(c)] for c in order]) - expected
        np.testing.assert_allclose((gap + np.pi) % (2 * np.pi) - np.pi, 0.0, atol=1e-8)


@pytest.mark.parametrize("order", rot.EULER_ORDERS)
def test_euler_at_and_near_the_gimbal_lock_give_the_rotation(order):
    """Middle angle at ±90°: the outer angles' atan2 arguments are all rounding noise there. The
    rotations come from scipy, not ``euler_to_matrix``, whose cos(π/2) = 6e-17 would hide that."""
    rng = np.random.default_rng(11)
    middle = "XYZ".index(order[1])
    for gap in (0.0, 1e-12, 1e-9, 1e-7, 1e-3):
        for _ in range(20):
            angles = rng.uniform(-3, 3, 3)
            angles[middle] = rng.choice([-1, 1]) * (np.pi / 2 - gap)
            truth = Rotation.from_euler(order.lower(), [angles["XYZ".index(c)] for c in order])
            m = truth.as_matrix()
            for back in (rot.matrix_to_euler(m, order), rot.quaternion_to_euler(truth.as_quat(scalar_first=True), order),
                         rot.axis_angle_to_euler(truth.as_rotvec(), order)):
                np.testing.assert_allclose(rot.euler_to_matrix(back, order), m, rtol=0, atol=1e-7, err_msg=f"{gap=}")
                if gap == 0.0:  # as Blender and scipy: the last-applied axis takes no turn
                    assert back["XYZ".index(order[2])] == 0.0
    # torch: the same angles, and finite gradients at the lock itself
    truth = Rotation.from_euler(order.lower(), [0.5, np.pi / 2, 0.3])
    for dtype in (torch.float32, torch.float64):
        t = torch.tensor(truth.as_matrix(), dtype=dtype, requires_grad=True)
        q = torch.tensor(truth.as_quat(scalar_first=True), dtype=dtype, requires_grad=True)
        back = rot.matrix_to_euler(t, order)
        (back.sum() + rot.quaternion_to_euler(q, order).sum()).backward()
        assert torch.isfinite(t.grad).all() and torch.isfinite(q.grad).all()
        np.testing.assert_allclose(rot.euler_to_matrix(back.detach().double(), order).numpy(), truth.as_matrix(),
                                   atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_euler_torch_agrees_and_has_finite_gradients():
    rng = np.random.default_rng(2)
    angles = rng.uniform(-1.4, 1.4, size=(10, 3))
    for order in rot.EULER_ORDERS:
        m = rot.euler_to_matrix(angles, order)
        t = torch.tensor(m, requires_grad=True)
        back = rot.matrix_to_euler(t, order)
        np.testing.assert_allclose(back.detach().numpy(), rot.matrix_to_euler(m, order), atol=1e-12)
        np.testing.assert_allclose(rot.euler_to_matrix(back, order).detach().numpy(), m, atol=1e-12)
        back.sum().backward()
        assert torch.isfinite(t.grad).all()
    with pytest.raises(ValueError, match="unknown Euler order 'XYX'"):
        rot.euler_to_matrix(angles, "XYX")


@settings(max_examples=100, deadline=None)
@given(axis_angles, axis_angles, st.floats(0.0, 1.0))
def test_slerp_agrees_with_scipy(aa0, aa1, s):
    r0, r1 = Rotation.from_rotvec(aa0), Rotation.from_rotvec(aa1)
    relative = np.linalg.norm((r1 * r0.inv()).as_rotvec())
    assume(relative < np.pi - 1e-3)  # at a half turn both ways round are equally short
    expected = Slerp([0.0, 1.0], Rotation.concatenate([r0, r1]))([s]).as_matrix()[0]
    # below 0.063 rad apart slerp is a normalised lerp (rotations._NLERP_ABOVE): at most ~1e-6 off the true arc
    np.testing.assert_allclose(rot.slerp_matrix(r0.as_matrix(), r1.as_matrix(), np.array(s)), expected, atol=2e-6)
    q = rot.slerp_quaternion(_wxyz(r0), -_wxyz(r1), np.array(s))  # either sign of q1: the short way
    np.testing.assert_allclose(rot.quaternion_to_matrix(q), expected, atol=2e-6)
    q = rot.slerp_quaternion(0.3 * _wxyz(r0), 2.0 * _wxyz(r1), np.array(s))  # any norm, as elsewhere
    np.testing.assert_allclose(rot.quaternion_to_matrix(q), expected, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-12)


def test_slerp_batches_keeps_equal_rotations_and_runs_on_torch():
    rng = np.random.default_rng(4)
    r0, r1 = Rotation.random(2, random_state=3).as_matrix()
    s = np.linspace(0.0, 1.0, 7)
    out = rot.slerp_matrix(r0, r1, s)
    assert out.shape == (7, 3, 3)
    np.testing.assert_allclose(out[0], r0, atol=1e-12)
    np.testing.assert_allclose(out[-1], r1, atol=1e-12)
    # constant angular speed: equal steps turn by equal angles
    steps = rot.rotation_angle(np.swapaxes(out[:-1], -1, -2) @ out[1:])
    np.testing.assert_allclose(steps, steps[0], atol=1e-9)
    np.testing.assert_array_equal(rot.slerp_matrix(r0, r0.copy(), s), np.broadcast_to(r0, (7, 3, 3)))
    # halfway between the identity and a quarter turn, q1 not unit: an eighth of a turn
    quarter = 2.0 * rot.axis_angle_to_quaternion(np.array([0.0, 0.0, np.pi / 2]))
    half = rot.slerp_quaternion(np.array([1.0, 0.0, 0.0, 0.0]), quarter, 0.5)
    np.testing.assert_allclose(np.linalg.norm(rot.quaternion_to_axis_angle(half)), np.pi / 4, atol=1e-12)
    q0, q1 = (torch.tensor(rot.matrix_to_quaternion(r), requires_grad=True) for r in (r0, r0 @ rot.axis_angle_to_matrix(rng.normal(size=3) * 1e-3)))
    q = rot.slerp_quaternion(q0, q1, 0.3)  # nearly equal: the normalised-lerp branch
    q.sum().backward()
    assert torch.isfinite(q0.grad).all() and torch.isfinite(q1.grad).all()
    np.testing.assert_allclose(rot.slerp_matrix(torch.tensor(r0), torch.tensor(r1), torch.tensor(s)).numpy(), out,
                               atol=1e-12)


_MATHUTILS = """
import json, sys
import bpy, mathutils  # mathutils is importable once bpy is
cases = json.load(sys.stdin)
print(json.dumps([[list(r) for r in mathutils.Euler(e, mode).to_matrix()] for e, mode in cases]))
"""


@pytest.mark.slow
def test_euler_orders_are_blenders():
    """Blender's own ``mathutils.Euler.to_matrix`` for every mode (bpy in a subprocess)."""
    pytest.importorskip("bpy")
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(6)
    cases = [(rng.uniform(-2, 2, size=3).tolist(), order) for order in rot.EULER_ORDERS for _ in range(3)]
    out = subprocess.run([sys.executable, "-c", _MATHUTILS], input=json.dumps(cases), capture_output=True,
                         text=True, timeout=120, check=True)
    blender = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    for (angles, order), expected in zip(cases, blender):
        np.testing.assert_allclose(rot.euler_to_matrix(np.array(angles), order), expected, atol=1e-6)
