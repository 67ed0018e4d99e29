"""The motion engine: two-hand motion through keys at any frames and joints, along wrist paths, or
from nothing (HandDiffuse, arXiv 2312.04867, on MDM's backbone; README "Motion").

    representation.py   the 198-number frame (6D rotations + canonical wrist translation) ↔ rig values
    kinematics.py       25 points per hand from the hand model's kinematic tree (losses, guidance)
    observation.py      keys: values + a per-frame, per-hand, per-part mask; exact write-back
    keysets.py          random key sets for training
    model.py            MotionDenoiser (diffusers ModelMixin): x0 from noisy motion, keys, mask, t
    model_config.py     what its config.json must keep to, without torch (the engine's status line)
    losses.py           reconstruction, positions, velocity, interaction, bone length
    curves.py           curves through the keys (linear, Hermite, along rotation arcs) and the short-gap weight
    pipeline.py         DDIM sampling with keys imposed each step, penetration guidance
    overlap.py          how deep one hand goes into the other, frame by frame
    retime.py           the model's frame rate and the scene's
    spline.py           the spline engine (always available; fallback and baseline)
    synthesis.py        one call for both engines
    settings.py         ``motion.checkpoint`` (default: the shipped assets/motion_v6)
    train.py / evaluate.py / jobs.py   ``handforge train|eval motion`` and the server's job kinds
    recipe.py           the shipped checkpoint's training stages as one command (``train motion --recipe``)
    demo.py             the demo's in-between of two keyed poses

This package stays light: the server imports ``jobs`` (and through it ``settings``) at start.
"""
