"""Hand image generation: prompt + posed hands + camera → images whose hands follow the 3D pose.

Two engines share this package (see the README's 'Image generation'):

    attentionhand  Stable Diffusion 1.x + AttentionHand's guidance module (one ControlNet applied to the
                   global and the local mesh image) + its text attention stage (TAS); Park et al.,
                   "AttentionHand", ECCV 2024, arXiv:2407.18034
    controlnet     Stable Diffusion 1.x + any SD 1.x ControlNets on our renders (depth, normals,
                   keypoint skeleton, mesh image), several at once

    conditioning.py  the control images and their labels, from hand parameters and a camera
    controls.py      which ControlNets the ``controlnet`` engine uses and which render each one takes
    tokens.py        which CLIP tokens TAS attends (every BPE piece of each hand-related word)
    tas.py           the text attention stage: cross-attention maps, its loss and latent update
    pipeline.py      the sampling pipeline (a diffusers DiffusionPipeline)
    loading.py       loading SD 1.x and ControlNets from local files and building the pipeline
    refine.py        AttentionHand's optional local refinement of the hands' box
    weights.py       what each engine needs, what is present, and whether the files match their configs
    jobs.py          the ``image.generate`` job kind; settings.py its config keys
    dataset.py       generated images as the labelled export's RGB (``engine = "generate"``)
    data.py          training pairs for the guidance module from a folder in the export's format
    train.py         ``handforge train guidance`` (or ``train image``): train the guidance module
    evaluate.py      ``handforge eval image``: are the labelled hands where the labels put them?
    demo.py          the demo's image step

This package stays light: torch and diffusers are imported inside the modules that need them.
"""
