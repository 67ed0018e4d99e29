"""Train AttentionHand's guidance module: see ``handforge.engines.image.train``."""

from handforge.engines.image.train import add_arguments, run

__all__ = ["add_arguments", "run"]
