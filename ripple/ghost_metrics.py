"""Ghost (ripple) and preservation metrics, per image.

Ghosting = how much of the original person is still visible where the person no longer is.
Both ghost measures compare the *output* with the *original* inside the ripple region:

- ``edge_correlation`` (Pearson correlation of Sobel edge magnitudes, in [-1, 1]):
  **higher = more ghosting** (the original silhouette's edges are still there).
- ``masked_perceptual_distance`` (mean of an LPIPS spatial distance map over the region):
  **lower = more ghosting** (the region still looks like the original person).

Preservation compares the cleaned output with the HFGI edit *outside* the region (PSNR higher =
better kept; LPIPS lower = better kept). Images whose region is empty get NaN ghost scores.
"""
from __future__ import annotations

import kornia.color as kc
import kornia.filters as kf
import torch
import torch.nn as nn


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """``(B,1,H,W)`` Sobel gradient magnitude of the luminance of a [-1, 1] RGB batch."""
    gray = kc.rgb_to_grayscale((image.clamp(-1, 1) + 1) / 2)
    return kf.sobel(gray)


def edge_correlation(output: torch.Tensor, original: torch.Tensor, region: torch.Tensor,
                     eps: float = 1e-8) -> torch.Tensor:
    """Per-image Pearson correlation of Sobel magnitudes of ``output`` and ``original`` inside ``region``.

    Higher means more of the original's edges survive in the output (more ghosting).

    Args:
        output: ``(B,3,H,W)`` [-1, 1].
        original: ``(B,3,H,W)`` [-1, 1].
        region: ``(B,1,H,W)`` {0,1}.

    Returns:
        ``(B,)``; NaN where the region has fewer than 2 pixels; 0 where one side has no edge variance.
    """
    _check(output, original, region, "edge_correlation")
    a, b = sobel_magnitude(output).flatten(1), sobel_magnitude(original).flatten(1)
    w = (region > 0.5).float().flatten(1)
    n = w.sum(1)
    mean_a = (a * w).sum(1) / n.clamp_min(1)
    mean_b = (b * w).sum(1) / n.clamp_min(1)
    da, db = (a - mean_a[:, None]) * w, (b - mean_b[:, None]) * w
    cov = (da * db).sum(1)
    corr = cov / ((da.square().sum(1) * db.square().sum(1)).sqrt() + eps)
    return torch.where(n >= 2, corr, torch.full_like(corr, float("nan")))


def masked_perceptual_distance(lpips_net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                               region: torch.Tensor) -> torch.Tensor:
    """Mean of the LPIPS spatial distance map of ``x`` and ``y`` over ``region`` (per image).

    Args:
        lpips_net: an ``lpips.LPIPS`` module (e.g. from ``evaluation.weights.build_lpips``); it is
            switched to spatial output for this call.
        x: ``(B,3,H,W)`` [-1, 1].
        y: ``(B,3,H,W)`` [-1, 1].
        region: ``(B,1,H,W)`` {0,1}; NaN is returned where it is empty.
    """
    _check(x, y, region, "masked_perceptual_distance")
    spatial = getattr(lpips_net, "spatial", None)
    if spatial is None:
        raise TypeError(f"masked_perceptual_distance needs an lpips.LPIPS module, got {type(lpips_net).__name__}")
    lpips_net.spatial = True
    try:
        dist = lpips_net(x, y)  # (B,1,H,W)
    finally:
        lpips_net.spatial = spatial
    w = (region > 0.5).float()
    n = w.flatten(1).sum(1)
    value = (dist * w).flatten(1).sum(1) / n.clamp_min(1)
    return torch.where(n > 0, value, torch.full_like(value, float("nan")))


def masked_psnr(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """PSNR (dB, data range 2 for [-1, 1] images) over ``region`` per image, capped at ``max_db``.

    Identical pixels give ``max_db`` (not infinity, so averages stay finite); empty regions NaN.
    """
    _check(x, y, region, "masked_psnr")
    w = (region > 0.5).float().expand_as(x)
    n = w.flatten(1).sum(1)
    mse = ((x - y).square() * w).flatten(1).sum(1) / n.clamp_min(1)
    psnr = 10 * torch.log10(4.0 / mse.clamp_min(4.0 * 10 ** (-max_db / 10)))
    return torch.where(n > 0, psnr, torch.full_like(psnr, float("nan")))


def _check(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor, who: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{who}: images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if region.ndim != 4 or region.shape[1] != 1 or region.shape[0] != x.shape[0] or region.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"{who}: region must be (B,1,H,W) matching {tuple(x.shape)}, got {tuple(region.shape)}")
