"""Evaluation metrics shared by the corpus checks and every engine.

Modules, one job each:
    seal          close the open wrist so hands enclose volumes
    proximity     exact signed distance from points to a closed mesh
    penetration   penetration volume and depth (exact), and a differentiable penetration loss
    contact       contact/proximity ratio and contact pairs
    limits        joint-limit violations (against ``handforge_shared.anatomy``)
    motion        acceleration, jitter (jerk) and keyframe adherence of keypoint trajectories
    distribution  Fréchet distance, KID and diversity of feature sets
    features      the feature network the Fréchet distance is computed on, and its training
"""
