"""Mask geometry shared by losses and metrics (pure tensor functions, hole = 1)."""
from __future__ import annotations

import kornia.morphology
import torch
import torch.nn.functional as F

__all__ = ["boundary_band", "dilate_hole"]


def boundary_band(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Band of pixels within ``width`` px of the hole border: ``dilation(mask) - erosion(mask)``.

    Both use a ``(2 * width + 1)`` square structuring element (``kornia.morphology``), so the band
    reaches ``width`` px into the hole and ``width`` px into the known region. A mask with no hole
    or no known pixel has an empty band.

    Args:
        mask: (B, 1, H, W) in {0, 1}, 1 = hole.
        width: band half-width in pixels (>= 1).
    """
    if width < 1:
        raise ValueError(f"boundary_band: width must be >= 1 pixel, got {width}")
    kernel = torch.ones(2 * width + 1, 2 * width + 1, device=mask.device, dtype=mask.dtype)
    return (kornia.morphology.dilation(mask, kernel) - kornia.morphology.erosion(mask, kernel)).clamp(0, 1)


def dilate_hole(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow ``(B, 1, H, W)`` holes by ``pixels`` with a square (8-connected, Chebyshev) element; 0 returns ``mask``.

    Works for float, integer and bool masks (the result has the input's dtype).
    """
    if pixels < 0:
        raise ValueError(f"dilate_hole: pixels must be >= 0, got {pixels}")
    if pixels == 0:
        return mask
    return F.max_pool2d(mask.float(), kernel_size=2 * pixels + 1, stride=1, padding=pixels).to(mask.dtype)
