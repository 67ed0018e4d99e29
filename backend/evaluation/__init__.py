"""Evaluation metrics shared by the corpus checks and every engine.

Modules, one job each: ``seal`` (close the open wrist), ``penetration`` (volume, depth, loss),
``contact`` (proximity, contact pairs, joint limits), ``motion`` (jitter, acceleration, keyframes),
``distribution`` (Fréchet distance, KID, diversity), ``features`` (the feature network).
"""
