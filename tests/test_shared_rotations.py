"""Rotation conversions: round trips (property-based), numpy/torch agreement, gradients, mirroring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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
    if np.linalg.norm(q) < 1e-3:
        return
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
