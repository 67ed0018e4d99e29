"""Evaluation metrics shared by the corpus checks and every engine.

Modules, one job each:
    seal              close the open wrist so hands enclose volumes
    proximity         exact signed distance, winding numbers and overlap volumes of closed meshes
    penetration       penetration volume and depth, and a differentiable penetration loss
    contact           contact/proximity ratio and contact pairs
    limits            joint-limit violations (against ``handforge_shared.anatomy``)
    motion            acceleration, jitter (jerk) and keyframe adherence of keypoint trajectories
    distribution      Fréchet distance, KID and diversity of feature sets
    features          the features the distribution metrics use, and their checkpoint folders
    feature_models    the two feature networks (diffusers models)
    feature_training  the recipe that trains them (``handforge train-features``)
    report            every metric for a set of clips in one call (``handforge measure``)
    landmarks         a 2D hand-landmark detector (MediaPipe Hands) and keypoint errors against labels
    image_alignment   images against their labels, per sample and folder (``handforge eval image``)
"""
