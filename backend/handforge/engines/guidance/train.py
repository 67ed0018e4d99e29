"""Train AttentionHand's guidance module: see ``handforge.engines.image.train``."""

import argparse

from handforge.engines.image import train as _image_train
from handforge.engines.image.train import add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    return _image_train.run(args, command="guidance")  # (each name says its own in its errors)
