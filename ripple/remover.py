"""Ripple removal for one batch of (original, edit) pairs: parse -> ripple mask -> inpaint -> composite."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from inpainters.base import Inpainter
from ripple.composite import composite_person, person_alpha
from ripple.parsers import HumanParse, HumanParser
from ripple.ripple_mask import RippleMasks, ripple_mask

STATUS_CLEANED = "cleaned"
STATUS_EMPTY_REGION = "empty_region"
STATUS_NO_PERSON_ORIGINAL = "no_person_original"
STATUS_NO_PERSON_EDIT = "no_person_edit"


@dataclass
class RippleResult:
    """Everything :class:`RippleRemover` computed for a batch.

    Attributes:
        cleaned: ``(B,3,H,W)`` output; equals the edit for images that were not cleaned.
        background: ``(B,3,H,W)`` the edit with the ripple region inpainted (= edit when not cleaned).
        alpha: ``(B,1,H,W)`` feathered alpha of the edited person used in the composite.
        masks: every stage of the ripple mask.
        parse_original: parse of the originals.
        parse_edit: parse of the edits.
        status: per image, one of ``cleaned``, ``empty_region``, ``no_person_original``, ``no_person_edit``.
    """

    cleaned: torch.Tensor
    background: torch.Tensor
    alpha: torch.Tensor
    masks: RippleMasks
    parse_original: HumanParse
    parse_edit: HumanParse
    status: list[str]

    @property
    def ghost_region(self) -> torch.Tensor:
        """Ripple region minus the edited person: where ghosting is measured, ``(B,1,H,W)``."""
        return self.masks.region * (1 - self.masks.person_edit)


class RippleRemover(nn.Module):
    """Removes the ghost of the original person from an edit.

    Per image: parse the person in the original and in the edit; ripple region = person(original)
    AND NOT person(edit), opened and dilated (:func:`ripple.ripple_mask.ripple_mask`); inpaint that
    region of the edit; composite the edited person over it with a feathered seam. Images whose
    original or edit has no person, or whose region is empty, pass through unchanged (their status
    says why).

    Args:
        parser: human parser (:class:`ripple.parsers.HumanParser`); may be set later (``None`` until then).
        inpainter: background inpainter (:class:`inpainters.base.Inpainter`).
        open_kernel: odd kernel of the opening that drops specks (0 = off).
        dilate_kernel: odd kernel of the dilation that covers the ghost's halo (0 = off).
        seam_grow: pixels the edited person's mask is grown before feathering.
        seam_sigma: Gaussian feather of the seam in pixels (0 = hard seam).
    """

    def __init__(self, parser: HumanParser | None, inpainter: Inpainter, open_kernel: int = 3, dilate_kernel: int = 7,
                 seam_grow: int = 1, seam_sigma: float = 1.5) -> None:
        super().__init__()
        for name, k in (("open_kernel", open_kernel), ("dilate_kernel", dilate_kernel)):
            if k < 0 or (k and k % 2 == 0):
                raise ValueError(f"RippleRemover: {name} must be 0 (off) or an odd kernel size, got {k}")
        if seam_grow < 0 or seam_sigma < 0:
            raise ValueError(f"RippleRemover: seam_grow and seam_sigma must be >= 0, got {seam_grow}, {seam_sigma}")
        self.parser = parser
        self.inpainter = inpainter
        self.open_kernel = open_kernel
        self.dilate_kernel = dilate_kernel
        self.seam_grow = seam_grow
        self.seam_sigma = seam_sigma

    @torch.no_grad()
    def forward(self, original: torch.Tensor, edited: torch.Tensor, keys_original: Sequence[str] | None = None,
                keys_edit: Sequence[str] | None = None) -> RippleResult:
        """Clean a batch.

        Args:
            original: ``(B,3,H,W)`` originals in [-1, 1].
            edited: ``(B,3,H,W)`` edits of the same size.
            keys_original: parser keys of the originals (file-based parsers need them).
            keys_edit: parser keys of the edits.

        Raises:
            ValueError: the two batches differ in shape.
        """
        if original.shape != edited.shape or original.ndim != 4 or original.shape[1] != 3:
            raise ValueError(
                f"RippleRemover: original {tuple(original.shape)} and edited {tuple(edited.shape)} images must be "
                "(B,3,H,W) of the same size; resize the originals to the generator's output size (e.g. set the "
                "data resolution to the HFGI generator size)")
        if self.parser is None:
            raise RuntimeError("RippleRemover has no parser: give one (ripple.parsers.GraphonomyParser / MaskFolderParser) "
                               "before cleaning")
        p_orig = self.parser.parse(original, keys_original)
        p_edit = self.parser.parse(edited, keys_edit)
        masks = ripple_mask(p_orig.person, p_edit.person, self.open_kernel, self.dilate_kernel)
        has_orig = p_orig.person.flatten(1).sum(1) > 0
        has_edit = p_edit.person.flatten(1).sum(1) > 0
        has_region = masks.region.flatten(1).sum(1) > 0
        status = []
        for o, e, r in zip(has_orig.tolist(), has_edit.tolist(), has_region.tolist()):
            status.append(STATUS_NO_PERSON_ORIGINAL if not o else STATUS_NO_PERSON_EDIT if not e
                          else STATUS_EMPTY_REGION if not r else STATUS_CLEANED)
        todo = torch.tensor([s == STATUS_CLEANED for s in status], device=edited.device)
        background = edited.clone()
        alpha = person_alpha(p_edit.person, self.seam_grow, self.seam_sigma)
        cleaned = edited.clone()
        if bool(todo.any()):
            idx = todo.nonzero().flatten()
            bg = self.inpainter(edited[idx], masks.region[idx])
            background[idx] = bg
            cleaned[idx] = composite_person(edited[idx], bg, alpha[idx])
        return RippleResult(cleaned, background, alpha, masks, p_orig, p_edit, status)
