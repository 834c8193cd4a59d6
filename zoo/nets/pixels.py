"""The two pixel ranges: images are [0,1] at the interface, [-1,1] inside GANs and diffusion models."""
from __future__ import annotations

from torch import Tensor


def to_signed(x: Tensor) -> Tensor:
    """[0,1] -> [-1,1]."""
    return x * 2 - 1


def to_unit(x: Tensor) -> Tensor:
    """[-1,1] -> [0,1] (not clamped)."""
    return (x + 1) / 2
