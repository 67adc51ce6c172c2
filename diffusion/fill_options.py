"""PixelHacker's inference options around any fill function: mask dilation, feathered paste-back, colour compensation.

PixelHacker's users (its issues #8 and #4) rely on three post-processing options; here they are pure
tensor functions around a ``fill(image, mask) -> image`` that keeps known pixels exactly (a sampler, an
inpainter). With ``H`` the user's hole (1 = hole):

- **mask dilation** ``d`` px: the hole is grown by ``d`` px (square structuring element, i.e. every
  pixel within Chebyshev distance ``d``) before filling, so object halos and mask edges that missed
  the object are regenerated too.
- **feather** ``r`` px: the fill is generated over the (dilated) hole grown by a further ``2 r`` px and
  pasted back through a soft weight ``alpha = blur(dilate(hole, r))`` (Gaussian, kernel ``2 r + 1``,
  sigma ``r / 2``): ``alpha = 1`` in the hole, falling smoothly to 0 at ``2 r`` px outside it;
  ``out = alpha * fill + (1 - alpha) * image``. Hides the seam at the hole border.
- **colour compensation**: the whole generated region is shifted, per image and channel, by
  ``mean(image over the known band) - mean(fill over the inner band)``, where the known band is the
  known pixels within :data:`COLOUR_BAND` px outside the generated region and the inner band the
  generated pixels within :data:`COLOUR_BAND` px inside its border (a global colour cast of the fill
  disappears; texture is untouched).

Which pixels change: exactly the pixels within ``d + 2 r`` px (Chebyshev) of a hole pixel (``d`` without
feathering); every other pixel is a bit-exact copy of the input. All options off (the default) calls
``fill`` on the hole unchanged.
"""
from __future__ import annotations

from typing import Callable

import kornia.filters
import torch

from masks.morphology import dilate_hole

__all__ = ["COLOUR_BAND", "colour_compensate", "feather_weight", "fill_with_options"]

#: width in pixels of the bands that colour compensation compares (each side of the generated region's border)
COLOUR_BAND = 4

FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def feather_weight(hole: torch.Tensor, radius: int) -> torch.Tensor:
    """Paste-back weight ``blur(dilate(hole, r))``: exactly 1 on the hole, exactly 0 beyond ``2 r`` px from it."""
    if radius < 1:
        raise ValueError(f"feather_weight: radius must be >= 1 pixel, got {radius}")
    k = 2 * radius + 1
    sigma = max(radius / 2.0, 0.5)
    alpha = kornia.filters.gaussian_blur2d(dilate_hole(hole, radius), (k, k), (sigma, sigma), border_type="reflect")
    return torch.where(hole > 0.5, torch.ones_like(alpha), alpha.clamp(0, 1))


def colour_compensate(fill: torch.Tensor, image: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Shift ``fill`` inside ``region`` (1 = generated) so its border band has the mean colour of the known band.

    Per image and channel: ``fill += mean(image, known pixels within COLOUR_BAND px outside region)
    - mean(fill, region pixels within COLOUR_BAND px of its border)``, clamped to [-1, 1]. Images whose
    region has no known neighbour (all hole) are left unchanged; pixels outside ``region`` are untouched.
    """
    inside = region > 0.5
    grown = dilate_hole(region, COLOUR_BAND) > 0.5
    shrunk = 1 - dilate_hole(1 - region, COLOUR_BAND) > 0.5
    outer = (grown & ~inside).to(fill.dtype)
    inner = (inside & ~shrunk).to(fill.dtype)
    n_out, n_in = outer.sum(dim=(2, 3)), inner.sum(dim=(2, 3))
    mean_out = (image * outer).sum(dim=(2, 3)) / n_out.clamp_min(1)
    mean_in = (fill * inner).sum(dim=(2, 3)) / n_in.clamp_min(1)
    delta = torch.where((n_out > 0) & (n_in > 0), mean_out - mean_in, torch.zeros_like(mean_out))
    shifted = (fill + delta[..., None, None]).clamp(-1, 1)
    return torch.where(inside, shifted, fill)


def check_fill_options(mask_dilation: int, feather: int, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless the dilation and feather radii are whole pixels >= 0."""
    for name, value in (("mask_dilation", mask_dilation), ("feather", feather)):
        if int(value) != value or value < 0:
            raise ValueError(f"{where}: {name} must be a whole number of pixels >= 0, got {value!r}")


def fill_with_options(
    fill: FillFn,
    image: torch.Tensor,
    mask: torch.Tensor,
    *,
    mask_dilation: int = 0,
    feather: int = 0,
    color_match: bool = False,
) -> torch.Tensor:
    """``fill(image, hole)`` with PixelHacker's options (module docstring); all off = ``fill(image, mask)``.

    Args:
        fill: ``fill(image, hole) -> (B, 3, H, W)`` keeping pixels outside ``hole`` exact.
        image: ``(B, 3, H, W)`` in [-1, 1].
        mask: ``(B, 1, H, W)``, > 0.5 = hole.
        mask_dilation: grow the hole by this many pixels before filling.
        feather: paste back through a soft border of ``2 * feather`` px outside the (dilated) hole.
        color_match: shift the generated region to the mean colour around it.

    Returns:
        ``(B, 3, H, W)``; pixels farther than ``mask_dilation + 2 * feather`` px from the hole equal
        ``image`` bit for bit.
    """
    check_fill_options(mask_dilation, feather, "fill_with_options")
    hole = dilate_hole((mask > 0.5).to(image.dtype), int(mask_dilation))
    region = dilate_hole(hole, 2 * int(feather))
    out = fill(image, region)
    if color_match:
        out = colour_compensate(out, image, region)
    if feather:
        alpha = feather_weight(hole, int(feather)).to(image.dtype)
        blended = alpha * out + (1 - alpha) * image
        out = torch.where(hole > 0.5, out, torch.where(region > 0.5, blended, image))
    return torch.where(region > 0.5, out, image)
