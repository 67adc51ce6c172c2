"""How an inpainter meets a photo larger than the scale it works at: ``full``, ``resize`` or ``crop`` (as IOPaint).

Any ``fill(image, mask) -> image`` that keeps known pixels exactly (an :class:`inpainters.base.Inpainter`'s
``forward``) can run under a strategy. ``size`` is the longest side the inpainter works at (a C2F
model's last stage resolution; ``None`` = any size, nothing is rescaled):

- ``full``: the whole image at its own size (a C2F model's last stage runs at the photo's size).
- ``resize``: when the longest side exceeds ``resize_limit`` (default ``size``), the image is area-
  downscaled to that longest side (the mask max-pooled, so holes never shrink), filled, the result
  upscaled bilinearly, and only the hole pixels are pasted into the original.
- ``crop``: when the longest side exceeds ``size`` (always, when ``size`` is ``None``), each hole
  (8-connected component) gets a box: its bounding box grown by ``crop_margin`` px on every side and
  to at least ``size`` x ``size`` (the context the model was trained with; clipped to the image).
  Overlapping boxes are merged (repeatedly,
  so the boxes end disjoint and every hole pixel lies in exactly one). Each box is cut out, brought to
  the model's scale (area-downscaled to longest side ``size`` when larger, as ``resize``), filled, and
  its hole pixels pasted back. Holes far apart are filled in separate small crops: cost grows with the
  holes, not with the photo.

Every strategy returns the input bit for bit outside the hole; ``crop`` and ``resize`` equal ``full``
on an image whose longest side is at most ``size`` (``resize_limit``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from inpainters.base import Inpainter, check_image_mask

__all__ = ["STRATEGIES", "InpaintStrategy", "StrategyInpainter", "crop_boxes", "merge_boxes"]

StrategyName = Literal["full", "resize", "crop"]
STRATEGIES = ("full", "resize", "crop")
FillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Box = tuple[int, int, int, int]  # top, left, bottom, right (exclusive)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def merge_boxes(boxes: list[Box]) -> list[Box]:
    """Replace overlapping boxes by their bounding box until no two overlap (sorted, top-left first)."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlap(boxes[i], boxes[j]):
                    a, b = boxes[i], boxes.pop(j)
                    boxes[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


def _grow(lo: int, hi: int, margin: int, min_len: int, length: int) -> tuple[int, int]:
    want = min(max(hi - lo + 2 * margin, min_len), length)
    start = (lo + hi) // 2 - want // 2
    start = max(0, min(start, length - want))
    return start, start + want


def crop_boxes(hole: np.ndarray, margin: int, min_size: int) -> list[Box]:
    """Disjoint crop boxes covering every hole pixel of a ``(H, W)`` bool array (see the module docstring)."""
    labels, n = scipy.ndimage.label(hole, structure=np.ones((3, 3), dtype=bool))
    h, w = hole.shape
    boxes = []
    for sl in scipy.ndimage.find_objects(labels):
        if sl is None:
            continue
        top, bottom = _grow(sl[0].start, sl[0].stop, margin, min_size, h)
        left, right = _grow(sl[1].start, sl[1].stop, margin, min_size, w)
        boxes.append((top, left, bottom, right))
    return merge_boxes(boxes)


def _fill_at_scale(fill: FillFn, image: torch.Tensor, hole: torch.Tensor, size: int | None) -> torch.Tensor:
    """Fill at most ``size`` on the longest side (area down, max-pool mask, bilinear up); hole pixels pasted."""
    h, w = image.shape[-2:]
    if size is None or max(h, w) <= size:
        return fill(image, hole)
    scale = size / max(h, w)
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    low = fill(F.interpolate(image, size=small, mode="area"), F.adaptive_max_pool2d(hole, small))
    up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).clamp(-1, 1)
    return torch.where(hole > 0.5, up.to(image.dtype), image)


@dataclass(frozen=True)
class InpaintStrategy:
    """Which strategy and its sizes (module docstring).

    Args:
        strategy: ``full``, ``resize`` or ``crop``.
        size: longest side the inpainter works at (``None``: any; crops are then filled at their own size).
        crop_margin: context in pixels added around each hole's bounding box (``crop``).
        resize_limit: longest side for ``resize`` (default ``size``).
    """

    strategy: StrategyName = "full"
    size: int | None = None
    crop_margin: int = 32
    resize_limit: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"strategy size must be >= 8 pixels (or None), got {self.size}")
        if self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0 pixels, got {self.crop_margin}")
        if self.resize_limit is not None and self.resize_limit < 8:
            raise ValueError(f"resize_limit must be >= 8 pixels (or None), got {self.resize_limit}")
        if self.strategy == "resize" and self.limit is None:
            raise ValueError("strategy 'resize' needs resize_limit (or the inpainter's working size)")

    @property
    def limit(self) -> int | None:
        """Longest side of the ``resize`` strategy."""
        return self.size if self.resize_limit is None else self.resize_limit

    def apply(self, fill: FillFn, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``fill`` under this strategy; pixels outside ``mask`` (> 0.5 = hole) equal ``image`` bit for bit."""
        check_image_mask(image, mask, f"{self.strategy} strategy")
        hole = (mask > 0.5).to(image.dtype)
        longest = max(image.shape[-2:])
        if self.strategy == "resize" and longest > self.limit:
            return _fill_at_scale(fill, image, hole, self.limit)
        if self.strategy != "crop" or (self.size is not None and longest <= self.size):
            return fill(image, hole)
        out = image.clone()
        for b in range(image.shape[0]):
            for top, left, bottom, right in crop_boxes(hole[b, 0].cpu().numpy() > 0.5, self.crop_margin, self.size or 0):
                img_c = image[b : b + 1, :, top:bottom, left:right]
                hole_c = hole[b : b + 1, :, top:bottom, left:right]
                filled = _fill_at_scale(fill, img_c, hole_c, self.size)
                out[b : b + 1, :, top:bottom, left:right] = torch.where(hole_c > 0.5, filled, img_c)
        return out


class StrategyInpainter(Inpainter):
    """Runs any inpainter under a ``full`` / ``resize`` / ``crop`` strategy (e.g. Telea on a large photo).

    Args:
        inpainter: the inpainter to run.
        strategy: ``full``, ``resize`` or ``crop`` (see :mod:`inpainters.strategies`).
        size: longest side the inpainter works at (default: its ``working_size``, e.g. a C2F model's
            last resolution; ``None`` for inpainters of any size).
        crop_margin: context in pixels around each hole's bounding box (``crop``).
        resize_limit: longest side for ``resize`` (default ``size``).
    """

    def __init__(self, inpainter: Inpainter, strategy: StrategyName = "crop", size: int | None = None,
                 crop_margin: int = 32, resize_limit: int | None = None) -> None:
        super().__init__()
        self.inpainter = inpainter
        size = getattr(inpainter, "working_size", None) if size is None else size
        self.strategy = InpaintStrategy(strategy, size, crop_margin, resize_limit)

    def output_region(self, mask: torch.Tensor) -> torch.Tensor:
        """The wrapped inpainter's region (a strategy changes no pixel outside it)."""
        return self.inpainter.output_region(mask)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.strategy.apply(self.inpainter, image, mask)
