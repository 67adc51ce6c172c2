"""The ripple region: where the original person was and the edited person is not, cleaned.

``raw = person(original) AND NOT person(edit)``; ``opened = opening(raw, k_open)`` drops specks
and thin slivers (parser noise along the silhouette); ``region = dilation(opened, k_dilate)``
grows it so the ghost's soft halo is covered too. Every stage is returned for inspection.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia.morphology as km
import torch


@dataclass
class RippleMasks:
    """All stages of the ripple mask, each ``(B,1,H,W)`` float {0,1}.

    Attributes:
        person_original: person in the original image.
        person_edit: person in the edited image.
        raw: ``person_original AND NOT person_edit``.
        opened: ``raw`` after the morphological opening.
        region: ``opened`` after the dilation: the region to inpaint (1 = hole).
    """

    person_original: torch.Tensor
    person_edit: torch.Tensor
    raw: torch.Tensor
    opened: torch.Tensor
    region: torch.Tensor


def _kernel(size: int, ref: torch.Tensor, what: str) -> torch.Tensor | None:
    if size < 0 or (size and size % 2 == 0):
        raise ValueError(f"ripple mask: {what} must be 0 (off) or an odd kernel size, got {size}")
    return None if size == 0 else torch.ones(size, size, device=ref.device, dtype=ref.dtype)


def ripple_mask(person_original: torch.Tensor, person_edit: torch.Tensor, open_kernel: int = 3,
                dilate_kernel: int = 7) -> RippleMasks:
    """Ripple region of a batch.

    Args:
        person_original: ``(B,1,H,W)`` {0,1} person in the original.
        person_edit: ``(B,1,H,W)`` {0,1} person in the edit (same size).
        open_kernel: odd square kernel of the opening (0 = no opening).
        dilate_kernel: odd square kernel of the dilation (0 = none); choose it to cover the halo.

    Raises:
        ValueError: shapes differ or a kernel size is even/negative.
    """
    if person_original.shape != person_edit.shape or person_original.ndim != 4 or person_original.shape[1] != 1:
        raise ValueError(f"ripple_mask: person masks must both be (B,1,H,W) of one size, got "
                         f"{tuple(person_original.shape)} (original) and {tuple(person_edit.shape)} (edit)")
    orig = (person_original > 0.5).float()
    edit = (person_edit > 0.5).float()
    raw = orig * (1 - edit)
    k_open = _kernel(open_kernel, raw, "open_kernel")
    k_dil = _kernel(dilate_kernel, raw, "dilate_kernel")
    # kornia's geodesic border treats outside pixels as neutral, so masks touching the frame edge stay intact
    opened = km.opening(raw, k_open) if k_open is not None else raw
    region = km.dilation(opened, k_dil) if k_dil is not None else opened
    return RippleMasks(orig, edit, raw, (opened > 0.5).float(), (region > 0.5).float())
