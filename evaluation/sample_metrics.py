"""Hole MAE / PSNR of one sample and of the mean of K samples: what per-pixel metrics are fair to.

A generative inpainter's single sample is one draw from the posterior; its per-pixel error is about sqrt(2)
times that of the posterior mean, which a blur approximates. So per-pixel errors are reported twice, for
``K`` samples ``x_1..x_K`` of the same (image, mask), target ``y`` and hole ``M`` (images in [-1, 1]):

- one sample:      ``mae_sample  = (1/K) sum_k MAE_M(x_k, y)``,  ``psnr_sample = (1/K) sum_k PSNR_M(x_k, y)``
- mean of samples: ``mae_mean_k  = MAE_M((1/K) sum_k x_k, y)``,  ``psnr_mean_k = PSNR_M((1/K) sum_k x_k, y)``

with ``MAE_M`` and ``PSNR_M`` (on the [0, 1] scale) of :mod:`evaluation.hole_metrics`. A deterministic
inpainter has ``K = 1`` and both pairs agree. Every value is ``(B,)`` float64; NaN for an image without a hole.
"""
from __future__ import annotations

import torch

from evaluation.hole_metrics import hole_mae, hole_psnr

__all__ = ["DEFAULT_K", "sample_metrics"]

#: samples per image for the mean-of-K figures of a stochastic inpainter
DEFAULT_K = 8


def sample_metrics(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``mae_sample``, ``psnr_sample``, ``mae_mean_k``, ``psnr_mean_k`` (each ``(B,)``).

    Args:
        samples: ``(K, B, 3, H, W)`` fills of the same batch (``K = 1`` for a deterministic inpainter).
        target: ``(B, 3, H, W)`` what the hole should hold.
        mask: ``(B, 1, H, W)``, 1 = hole.
    """
    if samples.ndim != 5 or samples.shape[1:] != target.shape:
        raise ValueError(f"sample_metrics: samples must be (K, *target.shape) = (K, {tuple(target.shape)}), "
                         f"got {tuple(samples.shape)}")
    mean = samples.double().mean(0)
    return {
        "mae_sample": torch.stack([hole_mae(s, target, mask) for s in samples]).mean(0),
        "psnr_sample": torch.stack([hole_psnr(s, target, mask) for s in samples]).mean(0),
        "mae_mean_k": hole_mae(mean, target.double(), mask),
        "psnr_mean_k": hole_psnr(mean, target.double(), mask),
    }
