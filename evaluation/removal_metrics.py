"""Object removal against the clean plate, and a texture ratio that shows both blur and hallucination.

Images ``(B, 3, H, W)`` in [-1, 1], masks ``(B, 1, H, W)`` with 1 = hole; every function returns ``(B,)``
float64, NaN for an image without hole pixels.

- :func:`residue_fraction`: the fraction of hole pixels whose fill is far from the clean plate ``c`` (the
  background alone): with ``G`` a Gaussian blur of ``sigma = 2`` px (so a fill with other but plausible
  background texture is not counted, a leftover or newly drawn object is),
  ``d(p) = (1/3) sum_ch |G*x - G*c|(p)`` and ``residue = |{p in M : d(p) > tau}| / |M|`` with
  ``tau = 0.3`` on the [-1, 1] scale (15 % of the intensity range, about 38 of 255 levels; the synthetic
  backgrounds' texture varies by less after the blur, their objects differ by more).
- :func:`clean_plate_mae`: ``MAE_M(x, c)`` (``evaluation.hole_metrics.hole_mae`` against the clean plate).
- :func:`texture_ratio`: high-frequency energy of the fill over the target's inside the hole:
  ``h(z) = z - G_1*z`` (Gaussian ``sigma = 1`` px), ``ratio = sum_{p in R, ch} h(x)^2 / sum_{p in R, ch} h(y)^2``
  where ``R`` is the hole eroded by the blur radius (3 px; the whole hole when that leaves nothing), so the seam
  along the border -- measured by ``seam_error`` -- does not count as texture. A blur gives well below 1, colour
  noise far above 1, a fill with the target's texture statistics about 1. Over a set of images (a table row) the
  ratio is ``sum of the fills' energies / sum of the targets' energies`` (:func:`high_frequency_energy`), which
  a few images with an almost flat target cannot dominate.
"""
from __future__ import annotations

import math

import kornia.filters
import torch
import torch.nn.functional as F

from evaluation.hole_metrics import _masked_mean, hole_mae

__all__ = ["RESIDUE_SIGMA", "RESIDUE_THRESHOLD", "TEXTURE_SIGMA", "gaussian_blur", "residue_fraction",
           "clean_plate_mae", "high_frequency_energy", "texture_ratio", "removal_metrics"]

RESIDUE_SIGMA = 2.0
RESIDUE_THRESHOLD = 0.3
TEXTURE_SIGMA = 1.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a ``2 * ceil(3 sigma) + 1`` kernel and reflected borders (float64)."""
    size = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(x.double(), (size, size), (sigma, sigma), border_type="reflect")


def residue_fraction(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, sigma: float = RESIDUE_SIGMA,
                     threshold: float = RESIDUE_THRESHOLD) -> torch.Tensor:
    """Fraction of hole pixels where the blurred fill differs from the blurred clean plate by more than ``threshold``."""
    d = (gaussian_blur(pred, sigma) - gaussian_blur(clean, sigma)).abs().mean(1, keepdim=True)
    return _masked_mean((d > threshold).double(), (mask > 0.5).double())


def clean_plate_mae(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |fill - clean plate| over hole pixels and channels."""
    return hole_mae(pred.double(), clean.double(), mask)


def _texture_region(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Hole pixels at least the blur radius ``ceil(3 sigma)`` inside the hole (the whole hole where none is)."""
    hole = (mask > 0.5).double()
    r = math.ceil(3 * sigma)
    inner = 1 - F.max_pool2d(1 - hole, 2 * r + 1, stride=1, padding=r)
    empty = inner.flatten(1).sum(1) == 0
    return torch.where(empty[:, None, None, None], hole, inner)


def high_frequency_energy(x: torch.Tensor, mask: torch.Tensor, sigma: float = TEXTURE_SIGMA) -> torch.Tensor:
    """``sum_{p in R, ch} (x - G_sigma * x)^2`` over the texture region ``R`` of the hole: ``(B,)``."""
    region = _texture_region(mask, sigma).expand(-1, x.shape[1], -1, -1)
    return (((x.double() - gaussian_blur(x, sigma)) ** 2) * region).sum(dim=(1, 2, 3))


def texture_ratio(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, sigma: float = TEXTURE_SIGMA) -> torch.Tensor:
    """High-frequency energy of the fill over the target's inside the hole (:func:`high_frequency_energy`)."""
    num, den = high_frequency_energy(pred, mask, sigma), high_frequency_energy(target, mask, sigma)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


def removal_metrics(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``residue`` and ``clean_mae`` of fills against their clean plates (each ``(B,)``)."""
    return {"residue": residue_fraction(pred, clean, mask), "clean_mae": clean_plate_mae(pred, clean, mask)}
