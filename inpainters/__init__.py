"""Inpainters: fill the holes of an image (``forward(image, mask) -> image``, [-1, 1], hole = 1)."""
from inpainters.base import Inpainter, composite_known

__all__ = ["Inpainter", "composite_known"]
