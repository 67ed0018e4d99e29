"""The MANO hand model: equal to smplx's own output, the conventions (left fix, flat hand mean, PCA) handled
once, mirroring, the rig's forward formula, gradients, and how it reports that it is unavailable."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from handforge.cli import main as cli_main
from handforge.hands import HandModelError, available_hand_models, load_hand_model
from handforge.hands import mano as mano_module
from handforge.hands.mano import load_mano, unavailable_reason
from handforge_shared import mano_params
from handforge_shared.poses import HandPose
from handforge_shared.rotations import axis_angle_to_matrix, mirror_points
from handforge_shared.skeleton import FINGERS, JOINT_NAMES, JOINT_PARENTS, KEYPOINT_NAMES, MANO_TIP_VERTEX_IDS
from tests.support.synthetic_mano import (  # noqa: F401 - fixtures
    mano_dir_setting,
    synthetic_mano_buggy_dir,
    synthetic_mano_dir,
    write_synthetic_mano,
)

SIDES = ("right", "left")


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory) -> Path:
    """The same model pickled without chumpy (smplx loads it the ordinary way), left correctly mirrored."""
    return write_synthetic_mano(tmp_path_factory.mktemp("plain"), chumpy_shapedirs=False)


@pytest.fixture(scope="module")
def plain_buggy_dir(tmp_path_factory) -> Path:
    return write_synthetic_mano(tmp_path_factory.mktemp("plain_bug"), reproduce_left_bug=True,
                                chumpy_shapedirs=False)


@pytest.fixture(scope="module")
def model(synthetic_mano_dir):
    return load_mano(synthetic_mano_dir)


@pytest.fixture(scope="module")
def model64(synthetic_mano_dir):
    return load_mano(synthetic_mano_dir).to(dtype=torch.float64)


def _smplx(folder: Path, side: str, **kwargs) -> smplx.MANO:
    """smplx.MANO loaded its own way (it unpickles the file)."""
    options = {"use_pca": False, "flat_hand_mean": True, **kwargs}
    return smplx.MANO(str(folder / f"MANO_{side.upper()}.pkl"), is_rhand=side == "right", **options)


def _random_params(batch: int, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"global_orient": torch.randn(batch, 3, generator=g, dtype=dtype),
            "hand_pose": 0.6 * torch.randn(batch, 45, generator=g, dtype=dtype),
            "betas": torch.randn(batch, 10, generator=g, dtype=dtype),
            "transl": 0.1 * torch.randn(batch, 3, generator=g, dtype=dtype)}


# ---------------------------------------------------------------------- equal to smplx
@pytest.mark.parametrize("side", SIDES)
def test_vertices_and_joints_equal_smplx(model, plain_dir, side):
    params = _random_params(8, seed=1)
    ours = model(side, **params)
    reference = _smplx(plain_dir, side)(**params)
    assert ours.vertices.shape == (8, 778, 3) and ours.joints.shape == (8, 16, 3)
    torch.testing.assert_close(ours.vertices, reference.vertices, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.joints, reference.joints, rtol=0, atol=1e-6)
    # Keypoints: the 16 joints and MANO's fingertip vertices, in InterHand2.6M order.
    for i, name in enumerate(KEYPOINT_NAMES):
        if name.endswith("4"):
            expected = reference.vertices[:, MANO_TIP_VERTEX_IDS[FINGERS.index(name[:-1])]]
        else:
            expected = reference.joints[:, JOINT_NAMES.index(name)]
        torch.testing.assert_close(ours.keypoints[:, i], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("side", SIDES)
def test_float64_matches_smplx_float64(model64, plain_dir, side):
    params = _random_params(4, seed=2, dtype=torch.float64)
    ours = model64(side, **params)
    reference = _smplx(plain_dir, side, dtype=torch.float64)(**params)
    assert ours.vertices.dtype == torch.float64
    torch.testing.assert_close(ours.vertices, reference.vertices, rtol=0, atol=1e-10)


def test_converted_npz_gives_identical_results(tmp_path, synthetic_mano_dir, model):
    assert cli_main(["convert-mano", "--model-dir", str(synthetic_mano_dir), "--out", str(tmp_path)]) == 0
    converted = load_mano(tmp_path)
    assert converted.right.source.suffix == ".npz"
    params = _random_params(4, seed=3)
    for side in SIDES:
        a, b = converted(side, **params), model(side, **params)
        assert torch.equal(a.vertices, b.vertices) and torch.equal(a.keypoints, b.keypoints)


# ---------------------------------------------------------------------- conventions
def test_left_shapedirs_fix_is_applied_exactly_when_needed(model, synthetic_mano_buggy_dir, plain_dir,
                                                           plain_buggy_dir):
    assert model.left_shapedirs_fixed is False
    fixed = load_mano(synthetic_mano_buggy_dir)
    assert fixed.left_shapedirs_fixed is True
    params = _random_params(4, seed=4)
    # The fixed buggy file behaves like the correct one, and not like smplx on the buggy file.
    torch.testing.assert_close(fixed("left", **params).vertices, model("left", **params).vertices, rtol=0, atol=0)
    correct = _smplx(plain_dir, "left")(**params).vertices
    buggy = _smplx(plain_buggy_dir, "left")(**params).vertices
    torch.testing.assert_close(fixed("left", **params).vertices, correct, rtol=0, atol=1e-6)
    assert (buggy - correct).abs().max() > 1e-3
    # The right hand is never touched.
    assert torch.equal(fixed("right", **params).vertices, model("right", **params).vertices)


def test_left_shapedirs_rule():
    rng = np.random.default_rng(0)
    right = rng.normal(scale=0.01, size=(778, 3, 10))
    mirrored = right * np.array([-1.0, 1.0, 1.0])[None, :, None]
    buggy = mirrored.copy()
    buggy[:, 0] = right[:, 0]
    assert not mano_params.left_shapedirs_need_fix(mirrored, right)
    assert mano_params.left_shapedirs_need_fix(buggy, right)
    fixed, applied = mano_params.fix_left_shapedirs(buggy, right)
    assert applied and np.array_equal(fixed, mirrored)
    unchanged, applied = mano_params.fix_left_shapedirs(mirrored, right)
    assert not applied and np.array_equal(unchanged, mirrored)
    with pytest.raises(ValueError, match="shapedirs"):
        mano_params.left_shapedirs_need_fix(right[:, :, :5], right)


@pytest.mark.parametrize("side", SIDES)
def test_mean_relative_pose_matches_smplx_default(model, plain_dir, side):
    params = _random_params(4, seed=5)
    reference = _smplx(plain_dir, side, flat_hand_mean=False)(**params)  # smplx's default convention
    flat = model.flat_hand_pose(side, params["hand_pose"])
    ours = model(side, **{**params, "hand_pose": flat})
    torch.testing.assert_close(ours.vertices, reference.vertices, rtol=0, atol=1e-6)
    back = model.mean_relative_hand_pose(side, flat)
    torch.testing.assert_close(back, params["hand_pose"], rtol=0, atol=1e-6)
    assert torch.equal(model.flat_hand_pose(side, flat, convention="flat"), flat)
    # The mean pose is not flat: mean-relative zero is the model's relaxed hand.
    rest = model(side, torch.zeros(1, 3), model.flat_hand_pose(side, torch.zeros(1, 45)))
    assert (rest.vertices - model(side, torch.zeros(1, 3), torch.zeros(1, 45)).vertices).abs().max() > 1e-3


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("flat_hand_mean", [False, True])
def test_pca_coefficients_match_smplx(model, plain_dir, side, flat_hand_mean):
    params = _random_params(4, seed=6)
    coeffs = torch.randn(4, 6, generator=torch.Generator().manual_seed(7))
    reference = _smplx(plain_dir, side, use_pca=True, num_pca_comps=6, flat_hand_mean=flat_hand_mean)(
        **{**params, "hand_pose": coeffs})
    pose = model.hand_pose_from_pca(side, coeffs, mean_relative=not flat_hand_mean)
    ours = model(side, **{**params, "hand_pose": pose})
    torch.testing.assert_close(ours.vertices, reference.vertices, rtol=0, atol=1e-5)


def test_pca_round_trip(model64):
    g = torch.Generator().manual_seed(8)
    for side in SIDES:
        full = torch.randn(5, 45, generator=g, dtype=torch.float64)
        pose = model64.hand_pose_from_pca(side, full)
        torch.testing.assert_close(model64.hand_pose_to_pca(side, pose), full, rtol=0, atol=1e-9)
        few = torch.randn(5, 12, generator=g, dtype=torch.float64)
        pose = model64.hand_pose_from_pca(side, few)
        torch.testing.assert_close(model64.hand_pose_to_pca(side, pose, num_comps=12), few, rtol=0, atol=1e-9)
    # The same functions on numpy arrays (the add-on side).
    components = model64.hands_components("right").numpy()
    mean = model64.hands_mean("right").numpy()
    coeffs = np.random.default_rng(0).normal(size=(3, 45))
    pose = mano_params.hand_pose_from_pca(coeffs, components, mean)
    np.testing.assert_allclose(mano_params.hand_pose_to_pca(pose, components, hands_mean=mean), coeffs, atol=1e-9)
    with pytest.raises(ValueError, match="number of PCA components"):
        mano_params.hand_pose_from_pca(np.zeros((1, 46)), components)
    with pytest.raises(ValueError, match="unknown hand pose convention"):
        mano_params.convert_hand_pose(np.zeros(45), mean, "pca", "flat")


def test_hands_mean_arrays_are_each_sides_own(model):
    means = model.hands_mean_arrays()
    assert set(means) == {"left", "right"} and means["right"].dtype == np.float64
    # The synthetic left model is the mirror image: its mean is the mirrored right mean.
    np.testing.assert_allclose(means["left"], (means["right"].reshape(15, 3) * [1, -1, -1]).ravel())


# ---------------------------------------------------------------------- mirroring, rig, gradients
@pytest.mark.parametrize("source", SIDES)
def test_mirrored_pose_gives_the_reflected_mesh(model64, synthetic_mano_buggy_dir, source):
    rng = np.random.default_rng(9)
    pose = HandPose(global_orient=rng.normal(size=(3, 3)), hand_pose=0.5 * rng.normal(size=(3, 45)),
                    betas=rng.normal(size=(3, 10)), transl=0.1 * rng.normal(size=(3, 3)))
    target = "left" if source == "right" else "right"
    for m in (model64, load_mano(synthetic_mano_buggy_dir).to(dtype=torch.float64)):  # also after the fix
        a = m.forward_pose(source, pose)
        b = m.forward_pose(target, pose.mirrored())
        torch.testing.assert_close(b.vertices, mirror_points(a.vertices), rtol=0, atol=1e-6)
        torch.testing.assert_close(b.keypoints, mirror_points(a.keypoints), rtol=0, atol=1e-6)


def _rig_forward(rig, global_orient, hand_pose, betas, transl):
    """The forward model written in shared/rig.py's docstring, in numpy, for one pose."""
    v_shaped, joints = rig.shaped(betas)
    rots = axis_angle_to_matrix(np.concatenate([global_orient, hand_pose]).reshape(16, 3))
    v_posed = v_shaped + rig.pose_dirs @ (rots[1:] - np.eye(3)).reshape(-1)
    glob = np.zeros((16, 4, 4))
    for k, parent in enumerate(JOINT_PARENTS):
        local = np.eye(4)
        local[:3, :3] = rots[k]
        local[:3, 3] = joints[k] - (joints[parent] if parent >= 0 else 0.0)
        glob[k] = local if parent < 0 else glob[parent] @ local
    unposed = np.tile(np.eye(4), (16, 1, 1))
    unposed[:, :3, 3] = -joints
    blend = np.einsum("vk,kij->vij", rig.skin_weights, glob @ unposed)
    verts = np.einsum("vij,vj->vi", blend[:, :3, :3], v_posed) + blend[:, :3, 3] + transl
    return verts, glob[:, :3, 3] + transl


@pytest.mark.parametrize("side", SIDES)
def test_rig_and_its_formula_reproduce_the_forward_pass(model64, side):
    rig = model64.rig(side)
    assert rig.hand_model == "mano" and rig.side == side and rig.pose_dirs.shape == (778, 3, 135)
    assert rig.tip_vertex_ids.tolist() == list(MANO_TIP_VERTEX_IDS)
    params = _random_params(3, seed=10, dtype=torch.float64)
    out = model64(side, **params)
    for b in range(3):
        verts, joints = _rig_forward(rig, *(params[k][b].numpy() for k in ("global_orient", "hand_pose", "betas",
                                                                           "transl")))
        # smplx keeps its arrays in float32 precision; the rig is float64.
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=2e-6)
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=2e-6)
    # Zero pose, zero betas: the rig's rest mesh (the flat hand) and rest joints.
    rest = model64(side, torch.zeros(1, 3), torch.zeros(1, 45))
    np.testing.assert_allclose(rest.vertices[0].numpy(), rig.rest_vertices, atol=1e-6)
    np.testing.assert_allclose(rest.joints[0].numpy(), rig.rest_joints, atol=1e-6)


def test_left_rig_is_the_mirrored_right_rig(model):
    left, mirrored = model.rig("left"), model.rig("right").mirrored()
    for name in ("rest_vertices", "faces", "rest_joints", "skin_weights", "shape_dirs", "joint_shape_dirs",
                 "pose_dirs"):
        np.testing.assert_allclose(getattr(left, name), getattr(mirrored, name), atol=1e-12, err_msg=name)


def test_forward_is_differentiable_in_every_parameter(model64):
    params = {k: v.requires_grad_() for k, v in _random_params(1, seed=11, dtype=torch.float64).items()}
    for side in SIDES:
        out = model64(side, **params)
        (out.vertices.square().sum() + out.keypoints.sum()).backward()
        for name, p in params.items():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
            p.grad = None

    def keypoints(go, hp, be, tr):
        return model64("right", go, hp, be, tr).keypoints

    inputs = tuple(p.detach().clone().requires_grad_() for p in params.values())
    assert torch.autograd.gradcheck(keypoints, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


def test_model_has_no_trainable_parameters_and_moves_with_to(model):
    assert list(model.parameters()) == []  # a layer: every pose parameter is an input
    half = load_mano(model.right.source.parent).to(dtype=torch.float64)
    out = half("right", np.zeros(3), np.zeros(45))
    assert out.vertices.dtype == torch.float64 and model.faces("right").dtype == torch.long


@pytest.mark.gpu
def test_cuda_matches_cpu(synthetic_mano_dir):
    cpu = load_mano(synthetic_mano_dir)
    gpu = load_mano(synthetic_mano_dir).to("cuda")
    params = _random_params(16, seed=12)
    for side in SIDES:
        a = cpu(side, **params)
        b = gpu(side, **{k: v.cuda() for k, v in params.items()})
        torch.testing.assert_close(b.vertices.cpu(), a.vertices, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------- loading by name, availability
def test_load_hand_model_mano_from_the_setting(mano_dir_setting):
    assert unavailable_reason() == ""
    assert available_hand_models()["mano"] == ""
    model = load_hand_model("mano", dtype=torch.float64)
    assert model.name == "mano" and model.left.model_name == "mano"
    assert model("left", np.zeros(3), np.zeros(45)).keypoints.dtype == torch.float64


def test_unavailable_reason_names_the_setting(tmp_path, monkeypatch, synthetic_mano_dir):
    monkeypatch.delenv("HANDFORGE_MANO_DIR", raising=False)
    reason = available_hand_models()["mano"]
    assert "HANDFORGE_MANO_DIR" in reason and "https://mano.is.tue.mpg.de" in reason
    with pytest.raises(HandModelError, match="not configured"):
        load_hand_model("mano")
    # A folder whose left file is broken: the reason names that file; fixing it clears the reason.
    (tmp_path / "MANO_RIGHT.pkl").write_bytes((synthetic_mano_dir / "MANO_RIGHT.pkl").read_bytes())
    (tmp_path / "MANO_LEFT.pkl").write_bytes(b"broken")
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path))
    assert "MANO_LEFT.pkl is not a readable MANO pickle" in unavailable_reason()
    (tmp_path / "MANO_LEFT.pkl").write_bytes((synthetic_mano_dir / "MANO_LEFT.pkl").read_bytes())
    assert unavailable_reason() == ""


def test_missing_smplx_is_a_clear_error(monkeypatch, synthetic_mano_dir):
    monkeypatch.setitem(sys.modules, "smplx", None)  # import smplx now raises ImportError
    with pytest.raises(HandModelError, match=r"needs the smplx package .*pip install 'handforge\[mano\]'"):
        load_mano(synthetic_mano_dir)
    assert "handforge[mano]" in mano_module.unavailable_reason()


def test_unknown_hand_model_name():
    with pytest.raises(HandModelError, match="unknown hand model 'smpl': use 'open' or 'mano'"):
        load_hand_model("smpl")
