"""Inpainters: fill the holes of an image (``forward(image, mask) -> image``, [-1, 1], hole = 1)."""
from inpainters.base import Inpainter, check_image_mask, composite_known

__all__ = ["Inpainter", "check_image_mask", "composite_known"]
