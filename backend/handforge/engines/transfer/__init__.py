"""Pose transfer: the hands of a source image re-posed to the rigs' pose, appearance kept.

After IHPT (Park, Hwang and Kang, "Diffusion-based Interacting Hand Pose Transfer", ECCV 2024
HANDS workshop), built on the image engine's components (``handforge.engines.image``):

    compositing.py  IHPT's background generator (SD text-to-image) and source generator (the hands
                    composited into the background through the thresholded mesh image)
    reference.py    the training-free engine's reference attention: the UNet's self-attention also
                    attends to features of the noised source image ("reference-only" injection)
    pipeline.py     the training-free engine (ControlNet on the target-pose render + reference attention)
                    and IHPT's sampling from the target generator
    model.py        IHPT's target generator: backbone + feature encoder + pose encoder + feature decoder
                    → visual prompt tokens for an SD 1.x UNet's cross-attention; model_config.py what
                    its config.json must keep to, without torch (the ihpt engine's status)
    pairs.py        training pairs (same hands, camera and light; two poses) and their dataset
    train.py        ``handforge train transfer`` (exported pairs or InterHand2.6M)
    evaluate.py     ``handforge eval transfer``: PSNR inside/outside the hands' box, PCK with a landmark detector
    jobs.py         the ``image.transfer`` job kind; settings.py its config key

This package stays light: torch and diffusers are imported inside the modules that need them.
"""
