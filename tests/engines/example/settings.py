"""The example engine's config key (``handforge serve --engine-package tests.engines`` imports it before
``jobs.py``, as ``handforge.config`` imports every ``handforge/**/settings.py``)."""

from __future__ import annotations

from handforge import config

CHECKPOINTS = config.register(config.Setting(
    key="example.checkpoints",
    env="HANDFORGE_EXAMPLE_CHECKPOINTS",
    help="folder of TinyNet checkpoint folders (one per name) for the example engine",
))
