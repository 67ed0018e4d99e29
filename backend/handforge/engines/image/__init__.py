"""Hand image generation: prompt + posed hands + camera → images whose hands follow the 3D pose.

Two engines share this package (see the README's 'Image generation'):

    attentionhand  Stable Diffusion 1.x + AttentionHand's guidance module (one ControlNet applied to the
                   global and the local mesh image) + its text attention stage (TAS); Park et al.,
                   "AttentionHand", ECCV 2024, arXiv:2407.18034
    controlnet     Stable Diffusion 1.x + any SD 1.x ControlNets on our renders (depth, normals,
                   keypoint skeleton, mesh image), several at once

    conditioning.py  the control images and their labels, from hand parameters and a camera
    tokens.py        which CLIP tokens TAS attends (every BPE piece of each hand-related word)
    tas.py           the text attention stage: cross-attention maps, its loss and latent update
    pipeline.py      the sampling pipeline (a diffusers DiffusionPipeline) and the model loading
    jobs.py          the ``image.generate`` job kind; settings.py its config keys

This package stays light: torch and diffusers are imported inside the modules that need them.
"""
