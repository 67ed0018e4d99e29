"""The example engine: the smallest engine that uses the whole house, as a template to copy.

    model.py     TinyNet, a diffusers ModelMixin (its checkpoint: config.json + safetensors)
    settings.py  its config key ``example.checkpoints``
    jobs.py      the job kind ``example.apply``: a checkpoint through the server's model cache
    train.py     ``handforge train --package tests.engines example``: the one training loop
    evaluate.py  ``handforge eval --package tests.engines example``: error of a checkpoint

A real engine lives in ``backend/handforge/engines/<engine>/`` with the same files (plus
``pipeline.py`` when it samples) and is found without ``--package``.
"""
