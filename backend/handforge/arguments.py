"""Argument types for the ``handforge`` commands: a bad number is refused by argparse with one line
naming the option and what is allowed (exit status 2), before anything is read or computed.

    parser.add_argument("--steps", type=at_least(1), default=20)
    parser.add_argument("--variation", type=number_in(0.0, 1.0, low_open=True))
"""

from __future__ import annotations

import argparse
import math
from typing import Callable


def at_least(low: int) -> Callable[[str], int]:
    """A whole number ``>= low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def number_in(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (``low_open``: (low, high])."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            where = f"{'above' if low_open else 'at least'} {low:g}" + (f" and at most {high:g}" if high < math.inf
                                                                         else "")
            raise argparse.ArgumentTypeError(f"must be a number {where}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = number_in(0.0, low_open=True)  # e.g. a learning rate

__all__ = ["POSITIVE", "at_least", "number_in"]
