"""Composite the edited person over the inpainted background with a soft seam."""
from __future__ import annotations

import kornia.filters as kf
import kornia.morphology as km
import torch


def person_alpha(person_edit: torch.Tensor, grow: int = 0, feather_sigma: float = 1.5) -> torch.Tensor:
    """Soft alpha of the edited person: optional dilation by ``grow`` px, then a Gaussian blur.

    Args:
        person_edit: ``(B,1,H,W)`` {0,1} person mask of the edit.
        grow: pixels to dilate the mask before feathering (so the seam falls on background).
        feather_sigma: standard deviation of the Gaussian feather in pixels (0 = hard edge).
    """
    if grow < 0 or feather_sigma < 0:
        raise ValueError(f"person_alpha: grow and feather_sigma must be >= 0, got {grow}, {feather_sigma}")
    alpha = (person_edit > 0.5).float()
    if grow:
        alpha = km.dilation(alpha, torch.ones(2 * grow + 1, 2 * grow + 1, device=alpha.device, dtype=alpha.dtype))
    if feather_sigma > 0:
        k = 2 * int(round(3 * feather_sigma)) + 1
        alpha = kf.gaussian_blur2d(alpha, (k, k), (feather_sigma, feather_sigma), border_type="replicate")
    return alpha.clamp(0, 1)


def composite_person(edited: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``background + alpha * (edited - background)``.

    Where the inpainted background equals the edit (every pixel outside the inpainted region,
    since inpainters keep known pixels exactly) the result is the edit, bit for bit.

    Args:
        edited: ``(B,3,H,W)`` HFGI edit.
        background: ``(B,3,H,W)`` the edit with the ripple region inpainted.
        alpha: ``(B,1,H,W)`` in [0, 1], the edited person's soft mask (:func:`person_alpha`).
    """
    if edited.shape != background.shape:
        raise ValueError(f"composite_person: edited {tuple(edited.shape)} and background "
                         f"{tuple(background.shape)} differ in shape")
    return background + alpha * (edited - background)
