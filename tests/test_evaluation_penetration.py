"""Sealing, exact penetration metrics and the differentiable penetration loss, on cases with known answers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import trimesh

from handforge.evaluation.penetration import (
    M3_TO_CM3,
    SEPARATION_DISTANCES,
    intersection_volume,
    FixedHands,
    max_depths,
    penetration_depths,
    penetration_loss,
    penetration_metrics,
    self_penetration_volume,
    separating_shifts,
    touching_shifts,
    vertex_normals,
)
from handforge.evaluation.proximity import SurfaceQuery, positive_winding_volume
from handforge.evaluation.seal import MeshTopologyError, as_sealed, seal_topology
from handforge_shared import pose_library
from handforge_shared.rig import load_open_hand_rig

from tests.support.capped import run_fresh


def posed(model, side, name, transl=(0.0, 0.0, 0.0), global_orient=(0.0, 0.0, 0.0)):
    pose = pose_library.get(name, side)
    return model(side, torch.tensor([global_orient]), pose.hand_pose, transl=torch.tensor([transl])).vertices[0]


def box(size, center):
    return trimesh.creation.box(extents=(size, size, size), transform=trimesh.transformations.translation_matrix(center))


# ----------------------------------------------------------------------------- sealing
@pytest.mark.parametrize("side", ["right", "left"])
def test_sealing_makes_the_open_hand_a_closed_volume_of_hand_size(side):
    rig = load_open_hand_rig(side)
    open_mesh = trimesh.Trimesh(rig.rest_vertices, rig.faces, process=False)
    assert not open_mesh.is_watertight  # the wrist is open: no volume without sealing
    topo = seal_topology(rig.faces)
    assert len(topo.loops) == 1 and len(topo.loops[0]) == 20  # the open hand's one wrist loop
    mesh = topo.mesh(rig.rest_vertices)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.is_volume
    # An adult hand displaces roughly 300-450 cm³ of water up to the wrist crease; this hand
    # (18.6 cm long, slender palm, cut at the wrist joint) measures 278 cm³.
    assert 200 < mesh.volume * M3_TO_CM3 < 500


def test_sealed_posed_hands_stay_closed_and_follow_the_pose(model):
    topo = as_sealed(model.faces("right"))
    for name in ("fist", "ok", "spread"):
        verts = posed(model, "right", name)
        mesh = topo.mesh(verts)
        assert mesh.is_watertight and mesh.is_volume, name
        cap = mesh.vertices[-1]
        assert np.allclose(cap, verts[topo.loops[0]].detach().numpy().mean(0))


def test_sealing_torch_matches_numpy_and_is_differentiable(model):
    topo = as_sealed(model.faces("left"))
    verts = posed(model, "left", "relaxed").detach().requires_grad_(True)
    sealed = topo.seal(verts)
    assert sealed.shape == (verts.shape[0] + 1, 3)
    assert np.allclose(sealed.detach().numpy(), topo.seal(verts.detach().numpy()))
    sealed[-1].sum().backward()  # the cap vertex moves with its loop
    assert torch.allclose(verts.grad[topo.loops[0]], torch.full((len(topo.loops[0]), 3), 1 / len(topo.loops[0])))


def test_closed_meshes_are_left_alone_and_broken_ones_rejected():
    cube = trimesh.creation.box()
    topo = seal_topology(cube.faces)
    assert topo.loops == () and np.array_equal(topo.faces, cube.faces)
    fin = np.concatenate([cube.faces, [[0, 1, 8]]])  # a third face on edge (0, 1)
    with pytest.raises(MeshTopologyError, match="more than two faces"):
        seal_topology(fin, 9)
    with pytest.raises(MeshTopologyError, match="integer"):
        seal_topology(np.zeros((3, 3)))
    with pytest.raises(MeshTopologyError, match="needs"):
        topo.seal(np.zeros((5, 3)))


# ----------------------------------------------------------------------------- exact metrics
def test_two_boxes_known_overlap_volume_and_depth():
    a = box(0.05, (0.0, 0.0, 0.0))            # [-2.5, 2.5] cm
    b = box(0.05, (0.03, 0.035, 0.04))        # one corner of each box lies inside the other
    m = penetration_metrics(a.vertices, b.vertices, a.faces, b.faces)
    assert m.volume[0] == pytest.approx(0.02 * 0.015 * 0.01, rel=1e-4)
    assert intersection_volume(a, b, method="manifold") == pytest.approx(0.02 * 0.015 * 0.01, rel=1e-9)
    # A's corner (2.5, 2.5, 2.5) cm is inside B, 1 cm from B's face z = 1.5 cm; B's corner
    # (0.5, 1.0, 1.5) cm is inside A, 1 cm from A's face z = 2.5 cm.
    assert m.max_depth[0] == pytest.approx(0.01, abs=1e-12)
    assert m.mean_depth[0] == pytest.approx(0.01, abs=1e-12)
    assert (m.penetrating_a[0], m.penetrating_b[0]) == (1, 1)
    apart = box(0.05, (0.06, 0.0, 0.0))
    assert penetration_metrics(a.vertices, apart.vertices, a.faces, apart.faces).volume[0] == 0.0


def test_the_summary_is_the_mean_over_pairs_in_cm3_and_mm():
    """Two pairs of boxes, one overlapping (3 cm³, 1 cm deep), one apart: the summary (the interaction table's
    columns) averages over both pairs, in cm³ and mm, and counts the pairs that penetrate (nothing checked its
    numbers: max for mean, or m³ × 1e3, passed)."""
    a, b, apart = box(0.05, (0.0, 0.0, 0.0)), box(0.05, (0.03, 0.035, 0.04)), box(0.05, (0.06, 0.0, 0.0))
    m = penetration_metrics(np.stack([a.vertices, a.vertices]), np.stack([b.vertices, apart.vertices]), a.faces, b.faces)
    assert m.summary() == pytest.approx({"penetration_volume_cm3": 3.0 / 2, "max_depth_mm": 10.0 / 2,
                                         "mean_depth_mm": 10.0 / 2, "penetrating_fraction": 0.5}, rel=1e-4)


def test_two_boxes_mean_depth_is_the_mean_over_the_penetrating_vertices():
    """Four corners of B inside A at depths 0.3, 3, 0.3 and 1 cm: the mean depth is their mean (1.15 cm),
    not their median (0.65 cm) nor their maximum (3 cm)."""
    cm = 0.01
    a = box(10 * cm, (0.0, 0.0, 0.0))  # [-5, 5] cm on each axis
    # B: x in [1, 8], y in [-1, 4], z in [-4.7, 2] cm; none of A's corners (±5, ±5, ±5) cm lies inside it
    b = trimesh.creation.box(extents=(7 * cm, 5 * cm, 6.7 * cm),
                             transform=trimesh.transformations.translation_matrix((4.5 * cm, 1.5 * cm, -1.35 * cm)))
    # B's corners at x = 1 cm lie inside A, each as deep as its nearest face of A is far:
    # (1, -1, -4.7): min(4, 4, 0.3) = 0.3; (1, -1, 2): min(4, 4, 3) = 3; (1, 4, -4.7): min(4, 1, 0.3) = 0.3;
    # (1, 4, 2): min(4, 1, 3) = 1 cm
    depths = np.array([0.3, 3.0, 0.3, 1.0]) * cm
    m = penetration_metrics(a.vertices, b.vertices, a.faces, b.faces)
    assert (m.penetrating_a[0], m.penetrating_b[0]) == (0, 4)
    assert m.max_depth[0] == pytest.approx(3 * cm, abs=1e-12)
    assert m.mean_depth[0] == pytest.approx(depths.mean(), abs=1e-12)  # 1.15 cm; the median is 0.65 cm
    assert m.volume[0] == pytest.approx(4 * cm * 5 * cm * 6.7 * cm, rel=1e-4)  # x [1, 5], y [-1, 4], z [-4.7, 2]


@pytest.mark.parametrize("r, d, rel, facets", [(0.03, 0.036, 0.002, 0.01), (0.01, 0.019, 0.03, 0.03),
                                               (0.01, 0.0195, 0.03, 0.08)])
def test_two_spheres_lens_volume_and_depth(r, d, rel, facets):
    a = trimesh.creation.icosphere(subdivisions=4, radius=r)
    b = a.copy()
    b.apply_translation(d * np.array([0.6, 0.8, 0.0]))
    m = penetration_metrics(a.vertices, b.vertices, a.faces, b.faces)
    exact = intersection_volume(a, b, method="manifold")  # of these polyhedra
    lens = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12    # of true spheres, centres d apart
    assert exact == pytest.approx(lens, rel=facets)    # thin lenses feel the facets
    assert m.volume[0] == pytest.approx(exact, rel=rel)   # down to 0.004 cm³ for the last case
    # B's point nearest A's centre is d - r from it, hence 2r - d inside A's surface.
    assert m.max_depth[0] == pytest.approx(2 * r - d, rel=0.05)


def test_a_mesh_that_overlaps_itself_counts_once():
    cm = 0.01
    first, second = box(2 * cm, (cm, cm, cm)), box(2 * cm, (2 * cm, cm, cm))  # [0,2] and [1,3] cm in x
    both = trimesh.util.concatenate([first, second])  # one closed mesh whose two parts overlap by 4 cm³
    assert both.volume == pytest.approx(16 * cm**3)   # the signed volume counts the overlap twice
    assert self_penetration_volume(both.vertices, both.faces) == pytest.approx(4 * cm**3, rel=1e-3)
    other = box(2 * cm, (1.5 * cm, cm, cm))            # [0.5, 2.5] cm in x: inside the union
    inside = intersection_volume(both, other)
    assert inside == pytest.approx(8 * cm**3, rel=1e-3)


def test_self_penetration_of_library_poses(model):
    faces = model.faces("right")
    assert self_penetration_volume(posed(model, "right", "flat"), faces) * M3_TO_CM3 < 0.01
    # The library's poses are kept free of deep self-penetration (tests/test_self_intersection.py);
    # a middle finger curled far past its limits pushes through the palm: the volume sees it.
    frames = model.rig("right").joint_frames()
    pose = torch.zeros(15, 3, dtype=torch.float64)
    for j in (4, 5, 6):
        pose[j - 1] = torch.as_tensor(frames[j][:, 0] * 2.2)
    through = model("right", torch.zeros(3), pose.reshape(-1).to(torch.get_default_dtype())).vertices[0]
    assert self_penetration_volume(through, faces) * M3_TO_CM3 > 0.1


def test_hand_against_a_translated_copy_of_itself(model):
    faces = model.faces("right")
    verts = posed(model, "right", "relaxed").detach()
    mesh = as_sealed(faces).mesh(verts)
    delta = 0.002
    shift = torch.tensor([0.0, delta, 0.0])  # along the palm normal
    m = penetration_metrics(verts, verts + shift, faces, faces)
    # To first order the overlap loses delta times the area the hand shows along the shift:
    # V(A ∩ (A + δu)) ≈ V − δ · ½ ∫ |n·u| dA.
    shadow = 0.5 * np.sum(mesh.area_faces * np.abs(mesh.face_normals[:, 1]))
    assert m.volume[0] == pytest.approx(mesh.volume - delta * shadow, rel=0.01)
    # Every vertex of the copy is delta from its original on the surface, so no depth exceeds delta.
    assert 0.8 * delta < m.max_depth[0] <= delta + 1e-9
    far = penetration_metrics(verts, verts + torch.tensor([0.0, 0.3, 0.0]), faces, faces)
    assert far.volume[0] == 0 and far.max_depth[0] == 0 and far.penetrating_a[0] == 0


def test_max_depths_are_the_metrics_max_depth_without_the_volume(model):
    """``max_depths`` (what the demo prints) is ``penetration_metrics``' max_depth, pair by pair, 0 apart."""
    faces = model.faces("right")
    verts = posed(model, "right", "relaxed").detach()
    shifts = torch.tensor([[0.0, 0.002, 0.0], [0.001, 0.003, 0.002], [0.0, 0.3, 0.0]])
    a, b = verts.expand(3, -1, -1), verts + shifts[:, None]
    np.testing.assert_array_equal(max_depths(a, b, faces, faces), penetration_metrics(a, b, faces, faces).max_depth)
    assert max_depths(a, b, faces, faces)[2] == 0
    with pytest.raises(ValueError, match="NaN"):
        max_depths(a, b * float("nan"), faces, faces)


def test_metrics_refuse_meshes_that_are_not_volumes():
    a = box(0.05, (0.0, 0.0, 0.0))
    inverted = a.faces[:, ::-1]  # wound inwards: negative volume
    with pytest.raises(MeshTopologyError, match="positive volume"):
        penetration_metrics(a.vertices, a.vertices, a.faces, inverted)
    with pytest.raises(ValueError, match="same N"):
        penetration_metrics(np.zeros((2, 8, 3)), np.zeros((3, 8, 3)), a.faces, a.faces)


def test_surface_query_matches_brute_force_and_trimesh(model):
    mesh = as_sealed(model.faces("right")).mesh(posed(model, "right", "spread").detach())
    rng = np.random.default_rng(0)
    lo, hi = mesh.bounds
    points = np.concatenate([rng.uniform(lo, hi, (300, 3)), mesh.vertices[::7] + rng.normal(0, 0.002, (230, 3))])
    ours = SurfaceQuery(mesh).signed_distance(points)
    brute = np.array([np.linalg.norm(trimesh.triangles.closest_point(mesh.triangles, np.repeat(p[None], len(mesh.faces), 0)) - p,
                                     axis=1).min() for p in points[:60]])
    assert np.allclose(np.abs(ours[:60]), brute, atol=1e-12)
    assert np.array_equal(ours > 0, mesh.contains(points))  # the spread hand has no self-intersections


# ----------------------------------------------------------------------------- differentiable loss
def test_vertex_normals_are_angle_weighted_like_trimesh():
    mesh = trimesh.creation.icosphere(2)
    mesh.vertices += np.random.default_rng(1).normal(0, 0.02, mesh.vertices.shape)
    ours = vertex_normals(torch.tensor(mesh.vertices[None]), mesh.faces)[0].numpy()
    assert np.allclose(ours, mesh.vertex_normals, atol=1e-12)


def test_normals_at_some_vertices_are_those_of_all_vertices(model):
    """The loss's moving side computes the normals of the vertices it hit only (``_normals_at``)."""
    from handforge.evaluation.penetration import _normals_at

    generator = torch.Generator().manual_seed(0)
    verts = model("right", torch.randn(6, 3, generator=generator), 0.5 * torch.randn(6, 45, generator=generator)).vertices
    topology = as_sealed(model.faces("right"), verts.shape[1])
    sealed = topology.seal(verts)
    slot = torch.randint(0, 6, (300,), generator=generator)
    index = torch.randint(0, sealed.shape[1], (300,), generator=generator)
    slot[:2], index[:2] = 5, sealed.shape[1] - 1  # the wrist cap's centre, on 20 faces
    for vertices, tolerance in ((sealed, 1e-7), (sealed.double(), 1e-15)):  # atan2 may round by position
        every = vertex_normals(vertices, topology.faces)[slot, index]
        assert torch.allclose(_normals_at(vertices, topology.faces, slot, index), every, atol=tolerance, rtol=0)


@pytest.mark.parametrize("transl", [(-0.186, 0.04, 0.0), (0.05, 0.0, 0.0)], ids=["stacked", "far"])
def test_loss_is_zero_with_a_zero_gradient_when_hands_are_apart(model, transl):
    # stacked: the left hand lies 4 cm above the right one, bounding boxes overlapping, no contact
    left = posed(model, "left", "flat", transl=transl).detach().requires_grad_(True)
    right = posed(model, "right", "flat").detach().requires_grad_(True)
    assert penetration_metrics(left, right, model.faces("left"), model.faces("right")).volume[0] == 0
    loss = penetration_loss(left, right, model.faces("left"), model.faces("right"))
    assert loss.item() == 0.0
    grad_left, grad_right = torch.autograd.grad(loss, [left, right])
    assert grad_left is not None and grad_right is not None
    assert not grad_left.any() and not grad_right.any()


@pytest.mark.parametrize("delta, tolerance", [(0.001, 0.001), (0.003, 0.0025)])
def test_fast_depths_agree_with_exact_depths_on_a_translated_copy(model, delta, tolerance):
    faces = model.faces("right")
    verts = posed(model, "right", "relaxed").detach()
    copy = verts + torch.tensor([0.0, delta, 0.0])
    fast_a, fast_b = penetration_depths(verts, copy, faces, faces)
    exact_a = np.maximum(SurfaceQuery(as_sealed(faces).mesh(copy)).signed_distance(verts.numpy()), 0)
    fast_a = fast_a.numpy()
    assert ((fast_a > 0) == (exact_a > 0)).mean() > 0.9   # same verdict for most vertices
    assert np.abs(fast_a - exact_a).max() < tolerance     # errors stay below the vertex spacing
    assert fast_b.max() > 0.5 * delta                      # and the other direction sees it too


def test_batched_loss_equals_the_loss_of_each_pair(model):
    faces_l, faces_r = model.faces("left"), model.faces("right")
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in
                         (("flat", (-0.17, 0.01, 0.0)), ("fist", (-0.17, 0.02, 0.0)), ("ok", (-0.4, 0.0, 0.0)))]).detach()
    rights = torch.stack([posed(model, "right", n) for n in ("relaxed", "pinch", "fist")]).detach()
    batched = penetration_loss(lefts, rights, faces_l, faces_r)
    single = torch.stack([penetration_loss(lefts[i], rights[i], faces_l, faces_r) for i in range(3)])
    assert torch.allclose(batched, single)
    assert batched[0] > 0 and batched[1] > 0 and batched[2] == 0


def test_fixed_hands_give_the_same_depths_and_gradients_as_plain_vertices(model):
    """A side prepared once (``FixedHands``, e.g. the anchor during guidance) changes nothing but the time."""
    faces_l, faces_r = model.faces("left"), model.faces("right")
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in
                         (("flat", (-0.17, 0.01, 0.0)), ("fist", (-0.17, 0.02, 0.0)), ("ok", (-0.4, 0.0, 0.0)))]).detach()
    rights = torch.stack([posed(model, "right", n) for n in ("relaxed", "pinch", "fist")]).detach()
    for fixed_left in (True, False):
        moving = (rights if fixed_left else lefts).clone().requires_grad_(True)
        plain = penetration_depths(lefts if fixed_left else moving, moving if fixed_left else rights, faces_l, faces_r)
        (grad_plain,) = torch.autograd.grad(sum(d.sum() for d in plain), moving)
        moving = moving.detach().requires_grad_(True)
        fixed = FixedHands(lefts, faces_l) if fixed_left else FixedHands(rights, faces_r)
        got = penetration_depths(fixed if fixed_left else moving, moving if fixed_left else fixed, faces_l, faces_r)
        (grad_fixed,) = torch.autograd.grad(sum(d.sum() for d in got), moving)
        # plain vertices get the normals of the vertices hit only (_normals_at): the same to float rounding
        for a, b in zip(plain, got):
            assert torch.equal(a > 0, b > 0) and torch.allclose(a.detach(), b.detach(), atol=1e-9, rtol=0)
        assert torch.allclose(grad_plain, grad_fixed, atol=1e-7, rtol=0) and grad_fixed.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, V, 3\)"):
        FixedHands(lefts[0], faces_l)


def test_brute_force_search_finds_the_k_d_trees_neighbours(model):
    """The GPU's pair search (brute force) against the CPU's k-d tree, run here on the CPU: for queries
    in and around each pair's own hand, the nearest vertex is as near (indices may differ at exact ties)."""
    from handforge.evaluation.penetration import _PairBrute, _PairTree

    rng = np.random.default_rng(3)
    targets = torch.stack([posed(model, "left", n, transl=t) for n, t in
                           (("flat", (0.0, 0.0, 0.0)), ("fist", (0.05, 0.0, 0.0)), ("ok", (-1.0, 0.2, 0.0)))]).detach()
    slot = torch.from_numpy(rng.integers(0, 3, 5000))
    queries = targets[slot, torch.from_numpy(rng.integers(0, targets.shape[1], 5000))]
    queries = queries + torch.from_numpy(rng.normal(0, 0.02, (5000, 3))).float()
    brute = _PairBrute(targets)
    brute.CHUNK = 7 * targets.shape[1]  # several chunks, the last one short
    found = {}
    for name, search in (("tree", _PairTree(targets)), ("brute", brute)):
        index = search.nearest(queries, slot)
        found[name] = torch.linalg.vector_norm(targets[slot, index].double() - queries.double(), dim=-1)
    assert torch.allclose(found["brute"], found["tree"], rtol=0, atol=1e-12)



def test_pair_search_on_one_thread_and_in_workers_finds_each_querys_own_nearest_vertex(model):
    """``_PairTree`` on one thread (a k-d tree per pair, a call per pair present, in the caller's thread) and
    on two (the pairs shared among two worker threads): both give each query the index of its own pair's
    nearest vertex, exactly the brute-force float64 argmin, for queries in any pair order, a pair with no
    query (whose tree is then never built) and no queries at all; and a FixedHands loss, gradient and gap
    the same on either."""
    from handforge.evaluation.penetration import _PairTree
    from handforge.runtime import torch_threads

    rng = np.random.default_rng(5)
    targets = torch.stack([posed(model, "left", n, transl=t) for n, t in
                           (("flat", (0.0, 0.0, 0.0)), ("fist", (0.03, 0.0, 0.0)), ("pinch", (0.0, 0.5, 0.0)),
                            ("ok", (-1.0, 0.2, 0.0)))]).detach()
    slot = torch.from_numpy(rng.choice([0, 1, 3], 3000))  # shuffled pairs; pair 2 has no query
    queries = targets[slot, torch.from_numpy(rng.integers(0, targets.shape[1], 3000))]
    queries = queries + torch.from_numpy(rng.normal(0, 0.02, (3000, 3))).float()
    truth = (targets[slot].double() - queries.double()[:, None]).square().sum(-1).argmin(-1)
    order = torch.argsort(slot, stable=True)
    for threads in (1, 2):
        with torch_threads(threads):
            tree = _PairTree(targets)
            assert torch.equal(tree.nearest(queries, slot), truth)
            assert torch.equal(tree.nearest(queries[order], slot[order]), truth[order])  # in pair order, as from a mask
            assert tree.nearest(queries[:0], slot[:0]).shape == (0,)
            assert tree.trees[2] is None and all(tree.trees[k] is not None for k in (0, 1, 3))
    faces_l, faces_r = model.faces("left"), model.faces("right")
    rights = torch.stack([posed(model, "right", n, transl=t) for n, t in
                          (("relaxed", (0.17, 0.0, 0.0)), ("pinch", (0.15, 0.01, 0.0)), ("fist", (0.16, 0.0, 0.0)),
                           ("ok", (-0.83, 0.2, 0.0)))]).detach()
    answers = []
    for threads in (1, 2):
        with torch_threads(threads):
            moving = rights.clone().requires_grad_(True)
            fixed = FixedHands(targets, faces_l)
            found = fixed.search(moving, 0.03)
            loss = penetration_loss(fixed, moving, faces_l, faces_r, found=found)
            gap, near = fixed.gaps(moving, 0.03, found)
            (grad,) = torch.autograd.grad(loss.sum() + gap.sum(), moving)
            answers.append((loss.detach(), gap.detach(), near, grad))
    assert answers[0][0][:2].gt(0).all()  # the loss is tested, not only the gaps
    for one, two in zip(*answers):  # (the same neighbours; torch's own sums may split by thread: float rounding)
        assert torch.equal(one, two) if one.dtype == torch.bool else torch.allclose(one, two, rtol=1e-6, atol=1e-9)

def test_pair_search_workers_run_openmp_on_one_thread_and_leave_the_callers_threads_alone():
    """With two torch threads a search of several pairs goes to two worker threads, each running OpenMP (torch's
    and pykdtree's own library alike) on one thread (two teams of two would fight over the cores); the caller
    keeps its two. In a fresh process, where the first search is also pykdtree's first import (the workers'
    limit missed pykdtree's library when it was set before that import)."""
    result = run_fresh("""
        import os, threading
        import torch
        from threadpoolctl import threadpool_info
        from handforge.evaluation import penetration

        os.cpu_count = lambda: 2  # the mechanism, whatever the machine running the test
        torch.set_num_threads(2)
        targets = torch.rand(3, 50, 3, dtype=torch.float64)
        slot = torch.arange(3).repeat_interleave(40)
        queries = torch.rand(120, 3, dtype=torch.float64)
        found = penetration._PairTree(targets).nearest(queries, slot)
        truth = (targets[slot] - queries[:, None]).square().sum(-1).argmin(-1)
        assert torch.equal(found, truth)
        assert list(penetration._POOLS) == [2], penetration._POOLS  # the search went through the workers

        def openmp(within=""):
            return sorted({lib["num_threads"] for lib in threadpool_info()
                           if lib["user_api"] == "openmp" and lib["filepath"].startswith(within)})

        both = threading.Barrier(2)

        def in_worker():
            both.wait(timeout=30)  # each of the two workers runs one
            return openmp()

        pool = penetration._POOLS[2]
        print("workers", [f.result() for f in [pool.submit(in_worker) for _ in range(2)]])
        # threadpoolctl names libraries by their resolved path: a virtual environment may be a symlink
        print("caller", torch.get_num_threads(), openmp(os.path.realpath(os.path.dirname(torch.__file__))))
    """, OMP_NUM_THREADS=None)
    assert result.returncode == 0, result.stderr
    assert "workers [[1], [1]]" in result.stdout and "caller 2 [2]" in result.stdout, result.stdout


def test_pair_search_workers_are_at_most_one_per_core_and_survive_a_failing_openmp_limit(monkeypatch):
    """More torch threads than cores (``--torch-threads 64`` on 2 cores) give one worker per core; a worker whose
    OpenMP limit fails still searches (only speed is at stake): before, the pool was broken for good."""
    import threadpoolctl

    from handforge.evaluation import penetration
    from handforge.runtime import torch_threads

    def refuse(*args, **kwargs):
        raise RuntimeError("no OpenMP here")

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", refuse)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    monkeypatch.setattr(penetration, "_POOLS", {})  # pools of this test's own
    targets = torch.rand(4, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    slot = torch.arange(4).repeat_interleave(25)
    queries = torch.rand(100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    truth = (targets[slot] - queries[:, None]).square().sum(-1).argmin(-1)
    try:
        with torch_threads(8):
            for _ in range(2):
                assert torch.equal(penetration._PairTree(targets).nearest(queries, slot), truth)
        assert list(penetration._POOLS) == [3]
    finally:
        for pool in penetration._POOLS.values():
            pool.shutdown()


def test_pair_search_module_imports_where_there_is_no_fork():
    """Windows has no ``os.register_at_fork``: the module (and every engine importing it) still imports, and
    searches. (Imitated: the function removed before the module's import, after torch's, whose own imports of
    the standard library call it where ``os.fork`` exists, as it does here.)"""
    result = run_fresh("""
        import os
        import torch, numpy, scipy.spatial, trimesh
        del os.register_at_fork
        from handforge.evaluation.penetration import _PairTree

        torch.set_num_threads(2)
        targets = torch.rand(2, 30, 3, dtype=torch.float64)
        print(_PairTree(targets).nearest(targets[:, 0], torch.arange(2)).tolist())
    """, OMP_NUM_THREADS=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 0]"


def test_pair_search_in_a_forked_child_does_not_wait_for_its_parents_threads(model):
    """A process forked after a search has none of the parent's worker threads: its own search must not wait
    on them (it hung before the pools were forgotten at fork)."""
    import multiprocessing

    from handforge.evaluation.penetration import _PairTree
    from handforge.runtime import torch_threads

    targets = torch.stack([posed(model, "left", n, transl=(0.1 * k, 0.0, 0.0))
                           for k, n in enumerate(("flat", "fist"))]).detach()
    slot = torch.arange(2).repeat_interleave(40)
    queries = targets[slot, torch.arange(80)]
    with torch_threads(2):
        expected = _PairTree(targets).nearest(queries, slot)  # the parent's workers now exist
        context = multiprocessing.get_context("fork")
        with context.Pool(1) as pool:
            found = pool.apply_async(_search_in_child, (targets, queries, slot)).get(timeout=60)
    assert torch.equal(torch.as_tensor(found), expected)


def _search_in_child(targets: torch.Tensor, queries: torch.Tensor, slot: torch.Tensor) -> list[int]:
    from handforge.evaluation.penetration import _PairTree

    torch.set_num_threads(2)
    return _PairTree(targets).nearest(queries, slot).tolist()


@pytest.mark.gpu
def test_fixed_hands_on_the_gpu_give_the_cpus_loss_gradients_and_gaps(model):
    faces_l, faces_r = model.faces("left"), model.faces("right")
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in
                         (("flat", (-0.17, 0.01, 0.0)), ("fist", (-0.17, 0.02, 0.0)), ("ok", (-0.4, 0.0, 0.0)))]).detach()
    rights = torch.stack([posed(model, "right", n) for n in ("relaxed", "pinch", "fist")]).detach()
    answers = {}
    for device in ("cpu", "cuda"):
        moving = rights.to(device).requires_grad_(True)
        fixed = FixedHands(lefts.to(device), faces_l)
        loss = penetration_loss(fixed, moving, faces_l, faces_r)
        gap, near = fixed.gaps(moving, within=0.03)
        (grad,) = torch.autograd.grad(loss.sum() + gap.sum(), moving)
        answers[device] = [t.detach().cpu() for t in (loss, gap, near, grad)]
    for cpu, gpu in zip(answers["cpu"], answers["cuda"]):
        assert torch.allclose(gpu.double(), cpu.double(), atol=1e-6, rtol=0)
    assert answers["cpu"][0][:2].gt(0).all()


def test_hands_of_mixed_precision_give_the_double_precision_answer(model):
    """float64 and float32 hands together (a float64 anchor, float32 samples): the loss and gaps failed on
    an index_put or index_copy of mismatched dtypes; now the wider dtype's answer."""
    faces_l, faces_r = model.faces("left"), model.faces("right")
    left = posed(model, "left", "fist", transl=(-0.17, 0.02, 0.0))[None].detach()
    right = posed(model, "right", "pinch")[None].detach()
    wide = penetration_loss(left.double(), right.double(), faces_l, faces_r)
    assert wide.item() > 0
    for a, b in ((left.double(), right), (left, right.double())):
        got = penetration_loss(a, b, faces_l, faces_r)
        assert got.dtype == torch.float64 and torch.allclose(got, wide, rtol=1e-5)
    fixed = penetration_loss(FixedHands(left.double(), faces_l), right, faces_l, faces_r)
    assert fixed.dtype == torch.float64 and torch.allclose(fixed, wide, rtol=1e-5)
    gap, near = FixedHands(left.double(), faces_l).gaps(right + torch.tensor([0.0, 0.0, 0.5]), 1.0)
    assert gap.dtype == torch.float64 and near.all() and gap.item() > 0.3


def test_fixed_hands_gaps_are_the_nearest_vertex_distances_within_range(model):
    """``FixedHands.gaps`` (the contact guidance's term) against scipy's k-d tree over each pair's vertices."""
    from scipy.spatial import cKDTree

    faces_l = model.faces("left")
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in
                         (("flat", (-0.17, 0.01, 0.0)), ("fist", (-0.2, 0.0, 0.0)), ("ok", (-0.6, 0.0, 0.0)))]).detach()
    rights = torch.stack([posed(model, "right", n) for n in ("relaxed", "pinch", "fist")]).detach().requires_grad_(True)
    fixed = FixedHands(lefts, faces_l)
    gap, near = fixed.gaps(rights, within=0.03)
    assert near.tolist() == [True, True, False]  # the third pair is 40 cm away
    for i in range(2):
        oracle = cKDTree(fixed.sealed[i].numpy()).query(rights[i].detach().numpy())[0].min()
        assert gap[i].item() == pytest.approx(oracle, abs=1e-7)
    assert gap[2] == 0
    (grad,) = torch.autograd.grad(gap.sum(), rights)  # one vertex per near pair, pulled towards the other hand
    assert (grad.abs().sum(-1) > 0).sum(-1).tolist() == [1, 1, 0]


def test_closest_distances_are_scipys_per_pair_however_far_apart(model):
    """``closest_distances`` (the interaction score's gap: one k-d tree for the batch) against scipy's
    k-d tree over each pair, for hands touching, apart, and metres apart (beyond the shift between pairs
    that holds the hands alone)."""
    from scipy.spatial import cKDTree

    from handforge.evaluation.penetration import closest_distances

    places = [(-0.17, 0.01, 0.0), (-0.2, 0.0, 0.0), (-0.6, 0.0, 0.0), (-3.0, 2.0, 0.5), (0.0, 0.0, 0.0)]
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in zip(("flat", "fist", "ok", "relaxed", "flat"),
                                                                            places)]).detach()
    # the first right hand 40 m out along x, past where the tree puts the later pairs' left hands
    rights = torch.stack([posed(model, "right", n, transl=t) for n, t in
                          zip(("relaxed", "pinch", "fist", "flat", "point"), [(40.0, 0.0, -7.0)] + [(0, 0, 0)] * 4)])
    got = closest_distances(lefts, rights.detach())
    oracle = [cKDTree(lefts[i].double().numpy()).query(rights[i].detach().double().numpy())[0].min() for i in range(5)]
    assert got.shape == (5,) and np.allclose(got, oracle, rtol=0, atol=1e-12), (got, oracle)
    assert got[0] > 39
    assert closest_distances(lefts[:0], rights[:0].detach()).shape == (0,)  # no pair apart: nothing to measure


def test_one_fixed_search_gives_the_loss_and_gaps_of_separate_searches(model):
    """``FixedHands.search`` (one k-d tree query for the guidance's two terms, the points that cannot be
    a pair's closest left out) changes nothing: the same depths, gaps and gradients as a search each."""
    faces_l, faces_r = model.faces("left"), model.faces("right")
    lefts = torch.stack([posed(model, "left", n, transl=t) for n, t in
                         (("flat", (-0.17, 0.01, 0.0)), ("fist", (-0.2, 0.0, 0.0)), ("ok", (-0.6, 0.0, 0.0)),
                          ("relaxed", (-0.19, 0.0, 0.01)), ("relaxed", (-0.19, 0.07, 0.01)))]).detach()
    rights = torch.stack([posed(model, "right", n) for n in ("relaxed", "pinch", "fist", "flat", "flat")]).detach()
    fixed = FixedHands(lefts, faces_l)

    def terms(shared):
        moving = rights.clone().requires_grad_(True)
        found = fixed.search(moving, 0.03) if shared else None
        loss = penetration_loss(fixed, moving, faces_l, faces_r, found=found)
        if shared:
            gap, near = fixed.gaps(moving, 0.03, found)
        else:  # every point within range of the box searched, as FixedHands.nearest does
            _, distance, near = fixed.nearest(moving, 0.03)
            gap = torch.where(near, distance.amin(-1), torch.zeros_like(distance[:, 0]))
        return loss, gap, near, torch.autograd.grad((loss + gap).sum(), moving)[0]

    (loss, gap, near, grad), (loss1, gap1, near1, grad1) = terms(False), terms(True)
    assert near.tolist() == near1.tolist() == [True, True, False, True, True]
    assert torch.equal(loss, loss1) and torch.equal(gap, gap1) and torch.equal(grad, grad1)
    found = fixed.search(rights, 0.03)
    assert loss[0] > 0 and gap[3] > 0 and found.inside[3].any()  # overlapping; apart with points in the box
    assert gap[4] > 0.005 and not found.inside[4].any()  # apart, its gap measured from outside the box alone
    assert not (found.inside & ~found.measured).any()
    _, distance, _ = fixed.nearest(rights, 0.03)
    assert (found.measured.sum(-1) < distance.isfinite().sum(-1))[:4].tolist() == [True, True, False, True]
    # per pair, a point 3 mm beyond its rightmost vertex is closer than the box's centre and a point 1 mm
    # off a corner of the box, which bound its gap first: the gap still comes from that point
    lo, hi = fixed.lo[:, 0], fixed.hi[:, 0]
    rightmost = fixed.sealed.gather(1, fixed.sealed[..., :1].argmax(1, keepdim=True).expand(-1, 1, 3))[:, 0]
    points = torch.stack([(lo + hi) / 2, hi + 0.001 / 3 ** 0.5, rightmost + torch.tensor([0.003, 0.0, 0.0])], 1)
    _, distance, _ = fixed.nearest(points, 0.03)
    assert (distance.argmin(-1) == 2).all()
    assert torch.allclose(fixed.gaps(points, 0.03)[0], torch.full((5,), 0.003))
    with pytest.raises(ValueError, match="one FixedHands side"):
        penetration_loss(lefts, rights, faces_l, faces_r, found=found)


def test_separation_tries_other_ways_where_the_gradients_way_does_not_clear(model, monkeypatch):
    """Interlaced fingers can make the penetration gradient point along the fingers, where no distance
    frees them; the second round then tries the way from one hand's centre to the other's and the six
    axes, keeping the shortest that clears. Here the gradient's way is made useless (zero) on purpose."""
    from handforge.evaluation import penetration

    faces_l, faces_r = model.faces("left"), model.faces("right")
    right = posed(model, "right", "flat")[None].detach()
    left = posed(model, "left", "flat", (-0.02, 0.01, 0.0))[None].detach()
    monkeypatch.setattr(penetration, "_escape_direction", lambda a, b, fa, fb: torch.zeros(len(b), 3, dtype=b.dtype))
    tolerance = 0.002
    stuck = separating_shifts(right, left, faces_r, faces_l, tolerance=tolerance, rounds=1)
    assert torch.equal(stuck, torch.zeros_like(stuck))  # the gradient's way alone: nowhere to go
    shift = separating_shifts(right, left, faces_r, faces_l, tolerance=tolerance)
    after = penetration_metrics(left + shift[:, None], right, faces_l, faces_r).max_depth
    assert after[0] <= tolerance + 1e-6 and 0 < float(shift.norm()) <= max(SEPARATION_DISTANCES)
    # the shortest of the ways that clear: no axis clears at a shorter distance
    for axis in torch.cat([torch.eye(3), -torch.eye(3)]):
        shorter = axis * float(shift.norm()) * 0.6
        assert penetration_metrics(left + shorter, right, faces_l, faces_r).max_depth[0] > tolerance


@pytest.mark.slow
def test_gradient_descent_on_the_loss_separates_interpenetrating_hands(model):
    faces_l, faces_r = model.faces("left"), model.faces("right")
    names = ("relaxed", "pinch", "flat")  # left hands; poses without LBS self-intersection
    right = torch.stack([posed(model, "right", n) for n in ("relaxed", "spread", "flat")]).detach()
    hand_pose = torch.tensor(np.stack([pose_library.get(n, "left").hand_pose for n in names]), dtype=torch.float32)
    transl = torch.tensor([[-0.17, 0.01, 0.0], [-0.16, 0.015, 0.005], [-0.15, 0.0, 0.01]], requires_grad=True)
    orient = torch.zeros(3, 3, requires_grad=True)
    before = penetration_metrics(model("left", orient, hand_pose, transl=transl).vertices, right, faces_l, faces_r)
    assert (before.volume * M3_TO_CM3 > 30).all()
    optimiser = torch.optim.Adam([transl, orient], lr=2e-3)  # 2 mm / 0.002 rad steps
    for _ in range(30):
        loss = penetration_loss(model("left", orient, hand_pose, transl=transl).vertices, right, faces_l, faces_r)
        optimiser.zero_grad()
        loss.sum().backward()
        optimiser.step()
    after = penetration_metrics(model("left", orient, hand_pose, transl=transl).vertices, right, faces_l, faces_r)
    assert (after.volume * M3_TO_CM3 < 0.05).all(), after.volume * M3_TO_CM3
    assert (after.max_depth < 0.001).all()


def test_separating_shifts_move_a_hand_just_out_of_the_other(model):
    """Overlapping pairs are translated until no vertex is deeper than the tolerance and stay in
    contact (bisected back towards it); one too deep to clear gets less deep; a pair already apart
    stays; FixedHands gives the same shifts."""
    faces_l, faces_r = model.faces("left"), model.faces("right")
    names = ("relaxed", "pinch", "flat", "flat")
    right = torch.stack([posed(model, "right", n) for n in names]).detach()
    left = torch.stack([posed(model, "left", n, t) for n, t in zip(names, [(-0.005, 0.0, 0.0), (-0.01, 0.0, 0.0),
                                                                         (-0.02, 0.01, 0.0), (0.05, 0.0, 0.0)])])
    left = left.detach()
    before = penetration_metrics(left, right, faces_l, faces_r).max_depth
    assert (before[:3] > 0.0025).all() and before[3] == 0
    shift = separating_shifts(right, left, faces_r, faces_l, tolerance=0.002)
    assert torch.equal(shift, separating_shifts(FixedHands(right, faces_r), left, faces_r, faces_l, tolerance=0.002))
    after = penetration_metrics(left + shift[:, None], right, faces_l, faces_r).max_depth
    assert (after[:2] <= 0.002 + 1e-6).all() and after[2] < before[2], after
    assert torch.equal(shift[3], torch.zeros(3))
    gap = torch.cdist(left[:2] + shift[:2, None], right[:2]).amin((1, 2))
    assert (gap < 0.003).all(), gap  # out, but still touching
    # a view on some pairs of a FixedHands measures as one built on those pairs alone
    rows = torch.tensor([2, 0])
    view = penetration_depths(FixedHands(right, faces_r).rows(rows), left[rows], faces_r, faces_l)
    alone = penetration_depths(FixedHands(right[rows], faces_r), left[rows], faces_r, faces_l)
    for got, want in zip(view, alone):
        assert torch.equal(got, want) and got.amax() > 0.002


def test_touching_shifts_bring_a_hand_just_into_touch(model):
    """Pairs apart (within reach) are translated until their nearest vertices are ``gap`` apart
    (measured by brute force, ``torch.cdist``), no vertex deeper than the tolerance; where the whole
    way would overlap, only part of it is taken; pairs beyond reach or already touching stay."""
    faces_l, faces_r = model.faces("left"), model.faces("right")
    names = ("relaxed", "pinch", "fist", "flat", "flat")
    offsets = [(0.02, 0.0, 0.0), (0.03, 0.01, 0.0), (0.0, 0.04, 0.02), (0.5, 0.0, 0.0), (-0.01, 0.0, 0.0)]
    right = torch.stack([posed(model, "right", n) for n in names]).detach()
    left = torch.stack([posed(model, "left", n, t) for n, t in zip(names, offsets)]).detach()
    before = torch.cdist(left, right).amin((1, 2))
    assert (before[:3] > 0.005).all() and before[3] > 0.4 and before[4] < 0.001  # apart, far, touching
    fixed = FixedHands(right, faces_r)
    shift = touching_shifts(fixed, left, faces_r, faces_l, gap=0.001, tolerance=0.0015, reach=0.05)
    after = torch.cdist(left + shift[:, None], right).amin((1, 2))
    np.testing.assert_allclose(after[:3].numpy(), 0.001, atol=1e-6)
    assert torch.equal(shift[3:], torch.zeros(2, 3))
    depth = penetration_metrics(left + shift[:, None], right, faces_l, faces_r).max_depth
    assert (depth[:3] <= 0.0015 + 1e-6).all(), depth
    # an oblique approach: the whole way would overlap, part of it is taken, no deeper than the tolerance
    anchor = FixedHands(posed(model, "right", "fist")[None].detach(), faces_r)
    moving = posed(model, "left", "flat", (0.01, 0.02, 0.02))[None].detach()
    part = touching_shifts(anchor, moving, faces_r, faces_l, gap=0.001, tolerance=0.0015, reach=0.05)
    depth_a, depth_b = penetration_depths(anchor, moving + part[:, None], faces_r, faces_l)
    assert max(depth_a.max(), depth_b.max()) <= 0.0015
    start, end = (torch.cdist(v, anchor.vertices).amin().item() for v in (moving, moving + part[:, None]))
    assert 0.002 < end < start - 0.005, (start, end)  # measured: 15.2 -> 5.9 mm


def test_loss_rejects_bad_input(model):
    with pytest.raises(TypeError, match="torch"):
        penetration_loss(np.zeros((1609, 3)), np.zeros((1609, 3)), model.faces("left"), model.faces("right"))
    with pytest.raises(ValueError, match="same batch"):
        penetration_loss(torch.zeros(2, 1609, 3), torch.zeros(3, 1609, 3), model.faces("left"), model.faces("right"))
    with pytest.raises(ValueError, match="NaN"):
        penetration_loss(torch.full((1609, 3), float("nan")), torch.zeros(1609, 3), model.faces("left"), model.faces("right"))


def test_volume_is_zero_when_boxes_overlap_but_the_hands_do_not(model):
    # stacked flat hands: bounding boxes overlap, no face of either lies near the other hand
    right = posed(model, "right", "flat")
    for dy in (0.05, 0.2):
        left = posed(model, "left", "flat", transl=(-0.186, dy, 0.0))
        mesh_l, mesh_r = as_sealed(model.faces("left")).mesh(left), as_sealed(model.faces("right")).mesh(right)
        assert intersection_volume(mesh_l, mesh_r) == 0.0
    a, b = box(0.01, (0.0, 0.0, 0.0)), box(0.01, (0.005, 0.005, 0.005))
    queries = [SurfaceQuery(a), SurfaceQuery(b)]
    assert positive_winding_volume(queries, 5e-4) == pytest.approx(0.005**3, rel=1e-3)
    # a focus on no faces leaves no line to integrate along (the corpus summary met this case)
    assert positive_winding_volume(queries, 5e-4, focus=[np.zeros(0, int), np.zeros(0, int)]) == 0.0
