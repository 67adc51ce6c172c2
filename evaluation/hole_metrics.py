"""Per-image errors of an inpainting measured where it matters: inside the hole and along its border.

Images ``(B, 3, H, W)`` in [-1, 1], masks ``(B, 1, H, W)`` with 1 = hole. Every function returns a
``(B,)`` float64 tensor; an image without hole pixels gives NaN.

- :func:`hole_mae`: mean absolute error over hole pixels and channels (on the [-1, 1] scale).
- :func:`hole_psnr`: PSNR of the hole pixels on the [0, 1] scale, ``10 log10(1 / MSE)``.
- :func:`hole_ssim`: the SSIM map (Gaussian window 11, sigma 1.5, on [0, 1]) averaged over the hole.
- :func:`seam_error`: mean absolute error over the hole pixels within ``width`` px of the border,
  where a fill must join the known content.
"""
from __future__ import annotations

import kornia.metrics
import torch

from masks.morphology import boundary_band

__all__ = ["hole_mae", "hole_psnr", "hole_ssim", "seam_error", "hole_metrics"]


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.expand_as(values).double()
    count = weight.sum(dim=(1, 2, 3))
    total = (values.double() * weight).sum(dim=(1, 2, 3))
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def hole_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over hole pixels and channels (images in [-1, 1])."""
    return _masked_mean((pred - target).abs(), (mask > 0.5).to(pred.dtype))


def hole_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of the hole pixels on the [0, 1] scale."""
    mse = _masked_mean(((pred - target) / 2) ** 2, (mask > 0.5).to(pred.dtype))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def hole_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SSIM map (11x11 Gaussian window, sigma 1.5, [0, 1] scale) averaged over the hole pixels and channels."""
    ssim_map = kornia.metrics.ssim((pred.float() + 1) / 2, (target.float() + 1) / 2, window_size=11, max_val=1.0)
    return _masked_mean(ssim_map, (mask > 0.5).float())


def seam_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Mean |pred - target| over hole pixels within ``width`` px of the hole border."""
    hole = (mask > 0.5).to(pred.dtype)
    return _masked_mean((pred - target).abs(), boundary_band(hole, width) * hole)


def hole_metrics(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, seam_width: int = 2) -> dict[str, torch.Tensor]:
    """All four metrics by name: ``hole_mae``, ``hole_psnr``, ``hole_ssim``, ``seam_error`` (each ``(B,)``)."""
    return {
        "hole_mae": hole_mae(pred, target, mask),
        "hole_psnr": hole_psnr(pred, target, mask),
        "hole_ssim": hole_ssim(pred, target, mask),
        "seam_error": seam_error(pred, target, mask, seam_width),
    }
