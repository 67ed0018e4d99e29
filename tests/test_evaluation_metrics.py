"""Contact, joint-limit, motion and distribution metrics against hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.linalg import sqrtm
from scipy.special import gammaln

from handforge.evaluation.contact import contact_mask, contact_metrics, contact_pairs, pair_metrics
from handforge.evaluation.distribution import (
    diversity,
    feature_statistics,
    frechet_distance,
    frechet_feature_distance,
    kid,
    paired_frechet_difference,
)
from handforge.evaluation.limits import joint_frames, joint_limit_metrics, joint_limit_violations
from handforge.evaluation.motion import clip_keypoints, finite_difference, keyframe_error, smoothness
from handforge.evaluation.penetration import penetration_metrics
from handforge_shared import anatomy, pose_library
from handforge_shared.poses import HandPose, MotionClip


def box(size, center):
    return trimesh.creation.box(extents=(size, size, size), transform=trimesh.transformations.translation_matrix(center))


# ----------------------------------------------------------------------------- contact
def test_contact_of_two_boxes_with_a_known_gap():
    a, b = box(0.05, (0, 0, 0)), box(0.05, (0.053, 0, 0))  # 3 mm apart face to face
    near = contact_metrics(a.vertices, b.vertices, a.faces, b.faces, threshold=0.005)
    assert near.ratio_a[0] == 0.5 and near.ratio_b[0] == 0.5 and near.in_contact[0]  # the facing 4 of 8 corners
    far = contact_metrics(a.vertices, b.vertices, a.faces, b.faces, threshold=0.002)
    assert far.ratio_a[0] == 0 and not far.in_contact[0]
    pairs = contact_pairs(a.vertices, b.vertices, 0.005)
    assert len(pairs) == 4 and np.allclose(np.linalg.norm(a.vertices[pairs[:, 0]] - b.vertices[pairs[:, 1]], axis=1), 0.003)
    # overlapping: corner (-0.5, -1.5, -2) cm lies inside A (in contact at any threshold); corner
    # (-0.5, -1.5, 3) cm is 5 mm above A's top face; the other six are 1 cm or more away
    overlapping = box(0.05, (0.02, 0.01, 0.005))
    assert contact_mask(overlapping.vertices, a, threshold=0.0).sum() == 1
    assert contact_mask(overlapping.vertices, a, threshold=0.006).sum() == 2


def test_the_contact_summary_averages_both_hands_ratios_over_the_pairs():
    """Pair 1: two 5 cm boxes 3 mm apart (half of each one's corners in contact); pair 2: a 1 cm box 3 mm off the
    middle of a 5 cm box's face (half of the small one's corners, none of the big one's): the contact ratio is the
    mean over pairs of the mean of both hands' (0.5 and 0.25: 0.375; one hand's alone passed unseen)."""
    a = box(0.05, (0, 0, 0))
    b, small = box(0.05, (0.053, 0, 0)), box(0.01, (0.033, 0, 0))
    m = contact_metrics(np.stack([a.vertices, a.vertices]), np.stack([b.vertices, small.vertices]), a.faces, b.faces,
                        threshold=0.005)
    assert list(m.ratio_a) == [0.5, 0.0] and list(m.ratio_b) == [0.5, 0.5], (m.ratio_a, m.ratio_b)
    assert m.summary() == {"contact_ratio": 0.375, "contact_fraction_of_pairs": 1.0}


def test_contact_ratio_of_hands(model):
    faces_l, faces_r = model.faces("left"), model.faces("right")
    right = model.forward_pose("right", pose_library.get("flat", "right")).vertices[0]
    left = pose_library.get("flat", "left")
    # the left hand lies flat above the right one: 12 mm apart, then 2 mm apart (closest points)
    apart = model("left", left.global_orient, left.hand_pose, transl=torch.tensor([[-0.186, 0.05, 0.0]])).vertices[0]
    touching = model("left", left.global_orient, left.hand_pose, transl=torch.tensor([[-0.186, 0.04, 0.0]])).vertices[0]
    m = contact_metrics(torch.stack([apart, touching]), torch.stack([right, right]), faces_l, faces_r, threshold=0.005)
    assert not m.in_contact[0] and m.ratio_a[0] == 0 and m.ratio_b[0] == 0
    assert m.in_contact[1] and 0.001 < m.ratio_a[1] < 0.2 and 0.001 < m.ratio_b[1] < 0.2
    wide = contact_metrics(touching, right, faces_l, faces_r, threshold=0.015)
    assert wide.ratio_a[0] > m.ratio_a[1] and wide.ratio_b[0] > m.ratio_b[1]  # a wider band holds more
    with pytest.raises(ValueError, match="metres"):
        contact_metrics(apart, right, faces_l, faces_r, threshold=-1.0)


# ----------------------------------------------------------------------------- joint limits
def test_library_poses_are_within_limits_and_known_violations_are_measured():
    names = pose_library.names()
    for side in ("right", "left"):
        poses = np.stack([pose_library.get(n, side).hand_pose for n in names])
        assert joint_limit_metrics(poses, side).max_violation_deg.max() < 0.01
    angles = np.zeros((15, 3))
    angles[1, 0] = np.radians(anatomy.LIMITS_DEG[1, 0, 1] + 20.0)  # index PIP flexed 20° past its limit
    angles[4, 2] = np.radians(anatomy.LIMITS_DEG[4, 2, 0] - 7.0)   # middle PIP twisted 7° the wrong way
    hand_pose = anatomy.anatomical_to_hand_pose(angles, joint_frames("right"), "right")
    m = joint_limit_metrics(hand_pose, "right")
    assert m.max_violation_deg == pytest.approx(20.0, abs=1e-6)
    assert m.total_violation_deg == pytest.approx(27.0, abs=1e-6)
    mirrored = HandPose(np.zeros(3), hand_pose, np.zeros(10), np.zeros(3)).mirrored()
    assert joint_limit_metrics(mirrored.hand_pose, "left").total_violation_deg == pytest.approx(27.0, abs=1e-6)
    assert joint_limit_metrics(hand_pose[None], "right").summary()["limit_violating_fraction"] == 1.0


def test_the_violating_fraction_counts_poses_more_than_the_tolerance_out():
    """0.5° past a limit is within the summary's 1° tolerance, 1.5° is not (every pose tested was 20° out)."""
    poses = []
    for past in (0.5, 1.5):
        angles = np.zeros((15, 3))
        angles[1, 0] = np.radians(anatomy.LIMITS_DEG[1, 0, 1] + past)
        poses.append(anatomy.anatomical_to_hand_pose(angles, joint_frames("right"), "right"))
    m = joint_limit_metrics(np.stack(poses), "right")
    assert m.max_violation_deg == pytest.approx([0.5, 1.5], abs=1e-6)
    assert m.summary()["limit_violating_fraction"] == 0.5
    assert m.summary(tolerance_deg=0.25)["limit_violating_fraction"] == 1.0


def test_joint_limit_violations_are_differentiable():
    angles = torch.zeros(15, 3, dtype=torch.float64)
    angles[1, 0] = np.radians(130.0)
    hand_pose = anatomy.anatomical_to_hand_pose(angles, joint_frames("right"), "right").requires_grad_(True)
    violation = joint_limit_violations(hand_pose, "right")
    violation.square().sum().backward()
    assert hand_pose.grad is not None and hand_pose.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- motion
def test_a_known_jittery_signal():
    fps, eps = 30.0, 0.001
    t = np.arange(60)
    x = np.zeros((60, 2, 3))
    x[:, 0, 0] = eps * (-1.0) ** t  # keypoint 0 shakes ±1 mm every frame, keypoint 1 stands still
    s = smoothness(x, fps)
    assert s.per_keypoint_acceleration[0] == pytest.approx(4 * eps * fps**2)
    assert s.per_keypoint_jerk[0] == pytest.approx(8 * eps * fps**3)
    assert s.per_keypoint_jerk[1] == 0 and s.jitter == pytest.approx(4 * eps * fps**3)
    assert s.max_jerk == pytest.approx(8 * eps * fps**3)


def test_per_keypoint_jerk_is_the_mean_over_frames():
    """A keypoint shaking for the first half only: its jerk is the mean of its frames' (the constant shake
    before made mean and max alike), computed here by numpy's third difference."""
    fps, eps = 30.0, 0.001
    t = np.arange(60)
    x = np.zeros((60, 1, 3))
    x[:30, 0, 1] = eps * (-1.0) ** t[:30]
    expected = np.abs(np.diff(x[:, 0, 1], n=3)).mean() * fps**3
    s = smoothness(x, fps)
    assert s.per_keypoint_jerk[0] == pytest.approx(expected) and expected < s.max_jerk / 1.5


def test_a_smooth_sinusoid_has_its_analytic_acceleration():
    fps, amplitude, hz = 60.0, 0.02, 1.0
    t = np.arange(240) / fps  # four whole periods
    x = np.zeros((240, 1, 3))
    x[:, 0, 1] = amplitude * np.sin(2 * np.pi * hz * t)
    s = smoothness(x, fps)
    omega = 2 * np.pi * hz
    assert s.mean_acceleration == pytest.approx(amplitude * omega**2 * 2 / np.pi, rel=0.01)  # mean |sin| = 2/π
    assert s.jitter == pytest.approx(amplitude * omega**3 * 2 / np.pi, rel=0.01)


def test_absent_frames_are_left_out_of_the_differences():
    x = np.zeros((20, 1, 3))
    x[10] = 5.0  # garbage in a frame where the hand is missing
    present = np.ones(20, dtype=bool)
    present[10] = False
    acc, valid = finite_difference(x, 30.0, 2, present)
    assert not valid[8:11].any() and valid[:8].all() and valid[11:].all()
    assert smoothness(x, 30.0, present).max_jerk == 0


def test_keyframe_error_on_a_known_offset():
    rng = np.random.default_rng(0)
    motion = rng.normal(size=(50, 21, 3))
    keys = motion[[0, 24, 49]] + np.array([0.003, 0.0, 0.004])  # 5 mm off at every keypoint
    mean, per_key = keyframe_error(motion, keys, [0, 24, 49])
    assert mean == pytest.approx(0.005) and np.allclose(per_key, 0.005)
    with pytest.raises(ValueError, match="0..49"):
        keyframe_error(motion, keys, [0, 24, 50])


def test_clip_keypoints_follow_the_hand_model(model):
    pose = pose_library.get("fist", "right")
    frames = HandPose(*(np.repeat(np.asarray(getattr(pose, k))[None], 5, 0)
                        for k in ("global_orient", "hand_pose", "betas", "transl")))
    clip = MotionClip(hands={"right": frames}, fps=30, hand_model="open")
    keypoints = clip_keypoints(clip, model)["right"]
    assert keypoints.shape == (5, 21, 3)
    assert np.allclose(keypoints[0], model.forward_pose("right", pose).keypoints[0].detach().numpy(), atol=1e-6)
    assert smoothness(keypoints, 30.0).jitter < 1e-3  # a held pose does not move


# ----------------------------------------------------------------------------- distributions
def test_frechet_distance_of_identical_and_of_analytic_gaussians():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 8))
    assert frechet_feature_distance(f, f) == pytest.approx(0.0, abs=1e-9)
    # diagonal covariances: d² = |Δμ|² + Σ (σ₁ − σ₂)²
    mu1, mu2 = np.zeros(3), np.array([1.0, -2.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(5.25 + 1.0 + 1.0 + 0.0)
    # full covariances: agrees with the textbook sqrtm formula where that one is well behaved
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    textbook = np.trace(c1 + c2 - 2 * sqrtm(c1 @ c2).real)
    assert frechet_distance(np.zeros(4), c1, np.zeros(4), c2) == pytest.approx(textbook, rel=1e-9)


def test_frechet_distance_of_sampled_sets_with_a_known_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40000, 4))
    y = 2.0 * rng.normal(size=(40000, 4)) + np.array([3.0, 0.0, 0.0, 0.0])
    # N(0, I) vs N(μ, 4I): |μ|² + 4 (1 − 2)² = 9 + 4
    assert frechet_feature_distance(x, y) == pytest.approx(13.0, rel=0.02)


def test_the_paired_bootstrap_sees_a_small_shared_gap_that_fd_alone_cannot_place():
    """Two engines' outputs of the same windows: one 0.1 off the windows in one feature, the other 0.3 off; FD from
    300 samples moves by more than their gap with the samples drawn, yet paired their difference is clear of 0."""
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(300, 6))
    near, far = truth + [0.1, 0, 0, 0, 0, 0], truth + [0.3, 0, 0, 0, 0, 0]
    found = paired_frechet_difference(near, far, truth, draws=200, seed=0)
    assert found["difference"] == pytest.approx(0.01 - 0.09, abs=1e-9)  # |Δμ|², the covariances being the same
    assert found["low"] <= found["difference"] <= found["high"] < 0 and found["below_zero"] == 1.0, found
    assert (found["draws"], found["samples"]) == (200, 300)
    same = paired_frechet_difference(near, near, truth, draws=20)
    assert same["difference"] == same["low"] == same["high"] == 0.0
    # both engines' own noise: a 95 % interval holds the true 0 in about 95 % of cases; here two independent noisy
    # copies of the same quality straddle it
    noisy = [truth + rng.normal(scale=0.5, size=truth.shape) for _ in range(2)]
    found = paired_frechet_difference(*noisy, truth, draws=200)
    assert found["low"] < 0 < found["high"], found
    with pytest.raises(ValueError, match="paired feature sets need one shape"):
        paired_frechet_difference(near[:-1], far, truth)


def test_the_paired_bootstrap_draws_rows_together_and_groups_whole():
    """Its interval is the percentiles of FD differences over rows drawn with replacement, the same rows for the
    three sets (replayed here from the same generator), and with ``groups`` whole groups are drawn: windows of one
    clip are near copies, and drawn one by one they narrow the interval."""
    from handforge.evaluation.distribution import frechet_feature_distance

    rng = np.random.default_rng(4)
    truth = rng.normal(size=(120, 5))
    a, b = (truth + rng.normal(scale=s, size=truth.shape) for s in (0.3, 0.4))
    found = paired_frechet_difference(a, b, truth, draws=50, seed=7, level=0.9)
    replay, diffs = np.random.default_rng(7), []
    for _ in range(50):
        rows = replay.integers(0, 120, 120)
        diffs.append(frechet_feature_distance(a[rows], truth[rows]) - frechet_feature_distance(b[rows], truth[rows]))
    assert found["low"] == pytest.approx(np.percentile(diffs, 5), abs=1e-12)
    assert found["high"] == pytest.approx(np.percentile(diffs, 95), abs=1e-12)
    assert found["groups"] == 120
    # 12 "clips" of 10 windows each, the windows of a clip copies of one another: drawn window by window the
    # interval is far narrower than the 12 clips can support
    clip_truth = np.repeat(rng.normal(size=(12, 5)), 10, axis=0)
    clip_a = np.repeat(rng.normal(scale=0.5, size=(12, 5)), 10, axis=0) + clip_truth
    clip_b = np.repeat(rng.normal(scale=0.5, size=(12, 5)), 10, axis=0) + clip_truth
    by_window = paired_frechet_difference(clip_a, clip_b, clip_truth, draws=200)
    by_clip = paired_frechet_difference(clip_a, clip_b, clip_truth, draws=200, groups=np.repeat(np.arange(12), 10))
    assert by_clip["groups"] == 12 and by_window["difference"] == by_clip["difference"]
    assert by_clip["high"] - by_clip["low"] > 1.5 * (by_window["high"] - by_window["low"]), (by_window, by_clip)
    with pytest.raises(ValueError, match="groups needs one label per row"):
        paired_frechet_difference(a, b, truth, groups=np.zeros(3))


def test_frechet_distance_stays_finite_with_singular_covariances():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 16)), rng.normal(size=(6, 16))  # fewer samples than dimensions
    value = frechet_feature_distance(x, y)
    assert np.isfinite(value) and value > 0
    mu, cov = feature_statistics(np.ones((10, 3)))  # constant features: a zero covariance
    assert frechet_distance(mu, cov, mu, cov) == 0.0


def test_kid_matches_the_definition_and_has_interhandgens_linear_variant():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 0.5
    mean, std = kid(x, y, num_subsets=1, subset_size=30)  # one subset = the whole sets
    k = lambda a, b: (a @ b / 5 + 1.0) ** 3  # noqa: E731 - the standard cubic kernel
    xx = sum(k(x[i], x[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    yy = sum(k(y[i], y[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    xy = sum(k(x[i], y[j]) for i in range(30) for j in range(30)) / 900
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std == 0
    big_x, big_y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)) + 0.5
    linear, _ = kid(big_x, big_y, degree=1, num_subsets=10, subset_size=1000)
    assert linear == pytest.approx(8 * 0.25 / 8, rel=0.15)  # degree 1: γ |Δμ|² with γ = 1/D
    same, spread = kid(big_x, rng.normal(size=(2000, 8)), num_subsets=10, subset_size=500)
    assert abs(same) < 3 * spread + 1e-3
    assert kid(big_x, big_y, num_subsets=10, subset_size=500)[0] > 10 * abs(same)


def test_diversity_of_identical_and_of_gaussian_samples():
    assert diversity(np.ones((50, 6))) == 0.0
    rng = np.random.default_rng(4)
    sigma, dim = 0.5, 6
    f = sigma * rng.normal(size=(2000, dim))
    expected = 2 * sigma * np.exp(gammaln((dim + 1) / 2) - gammaln(dim / 2))  # E|x − y|, x, y ~ N(0, σ²I)
    assert diversity(f, num_pairs=None) == pytest.approx(expected, rel=0.02)
    assert diversity(f, num_pairs=5000, seed=1) == pytest.approx(expected, rel=0.03)
    with pytest.raises(ValueError, match="at least 2"):
        diversity(np.ones((1, 6)))


def test_diversity_pairs_only_distinct_samples():
    """Two samples 1 apart: every pair of distinct samples is 1 apart, whatever pairs are drawn (a
    sample paired with itself would count a 0). Three samples at 0, 1, 3: the mean over all pairs is
    (1 + 3 + 2) / 3, and no drawn pair is 0."""
    assert diversity([[0.0], [1.0]]) == 1.0
    assert diversity([[0.0], [1.0]], num_pairs=1000, seed=3) == 1.0
    assert diversity([[0.0], [1.0]], num_pairs=None) == 1.0
    assert diversity([[0.0], [1.0], [3.0]], num_pairs=None) == pytest.approx(2.0, abs=1e-15)
    assert 1.0 <= diversity([[0.0], [1.0], [3.0]], num_pairs=1) <= 3.0


def test_pair_metrics_equal_the_separate_metrics(model):
    faces_l, faces_r = model.faces("left"), model.faces("right")
    right = model.forward_pose("right", pose_library.get("flat", "right")).vertices[0]
    left = pose_library.get("flat", "left")
    lefts = torch.cat([model("left", left.global_orient, left.hand_pose, transl=torch.tensor([[-0.186, dy, 0.0]])).vertices
                       for dy in (0.02, 0.04, 0.06)])  # overlapping, 2 mm apart, 12 mm apart
    rights = torch.stack([right] * 3)
    penetration, contact = pair_metrics(lefts, rights, faces_l, faces_r, threshold=0.004)
    alone = penetration_metrics(lefts, rights, faces_l, faces_r)
    for field in ("volume", "max_depth", "mean_depth", "penetrating_a", "penetrating_b"):
        assert np.array_equal(getattr(penetration, field), getattr(alone, field)), field
    assert np.array_equal(contact.count_a, contact_metrics(lefts, rights, faces_l, faces_r, threshold=0.004).count_a)
    assert penetration.volume[0] > 0 and penetration.volume[2] == 0 and contact.in_contact[1]


def test_the_report_counts_a_hand_only_where_it_is_present(model):
    """Absent frames hold zeros (within every limit): they diluted the joint-limit statistics, and a clip
    present only on scattered frames aborted the whole evaluation in the smoothness step."""
    from handforge.evaluation.report import evaluate_clips

    frames = 12

    def bent(x: float) -> HandPose:  # far past the limits on every frame
        return HandPose(global_orient=np.zeros((frames, 3)), hand_pose=np.full((frames, 45), 2.0),
                        betas=np.zeros((frames, 10)), transl=np.tile([x, 0.0, 0.0], (frames, 1)))

    def clip(present_left=None) -> MotionClip:
        present = {} if present_left is None else {"left": present_left, "right": np.ones(frames, bool)}
        return MotionClip(hands={"left": bent(-0.1), "right": bent(0.1)}, fps=30.0, present=present)

    whole = evaluate_clips([clip()], model, frames=2)["joint_limits"]["left"]
    half = evaluate_clips([clip(np.arange(frames) < frames // 2)], model, frames=2)["joint_limits"]["left"]
    assert half["limit_violating_fraction"] == whole["limit_violating_fraction"] == 1.0
    assert half["limit_violation_max_deg"] == pytest.approx(whole["limit_violation_max_deg"])
    scattered = evaluate_clips([clip(), clip(np.arange(frames) % 2 == 0)], model, frames=2)
    assert scattered["smoothness"]["clips"] == 1  # the scattered clip has no 4 consecutive frames: left out
    # a reference without two-hand frames: its metrics are left out, said why, and the rest is kept
    report = evaluate_clips([clip()], model, reference=[clip(np.zeros(frames, bool))], frames=2)
    for name in ("vs_reference_frames", "vs_reference_motions"):
        assert "the reference clips have no frame with both hands present" in report["not_measured"][name]
    assert report["joint_limits"]["left"] == whole and "vs_reference_frames" not in report


def test_vertices_in_millimetres_and_kid_subsets_of_one_are_refused():
    box = trimesh.creation.box(extents=(30.0, 30.0, 30.0))  # 30 "mm": a 30 m cube if read as metres
    with pytest.raises(ValueError, match="must be in metres"):
        penetration_metrics(box.vertices, box.vertices + 5.0, box.faces, box.faces)
    far = (trimesh.creation.box(extents=(0.1, 0.1, 0.1)).vertices + 1e30).astype(np.float32)  # float32: one point
    with pytest.raises(ValueError, match="lie 1e\\+30 m from the origin"):  # (was: "does not enclose a volume")
        pair_metrics(far, far, box.faces, box.faces)
    with pytest.raises(ValueError, match="subset_size must be at least 2"):
        kid(np.random.default_rng(0).normal(size=(10, 4)), np.random.default_rng(1).normal(size=(10, 4)), subset_size=1)


def test_empty_frame_sets_and_non_finite_statistics_are_handled():
    from handforge.evaluation.distribution import frechet_distance
    from handforge.evaluation.features import load_features

    assert load_features().frame_features(np.zeros((0, 42, 3))).shape == (0, 128)  # (a reshape error)
    with pytest.raises(ValueError, match="must be finite"):  # (a NaN distance)
        frechet_distance(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))
