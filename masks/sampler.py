"""``MaskSampler``: draws one of the four LCG mask types per sample with configurable probabilities."""
from __future__ import annotations

from typing import Collection, Sequence

import numpy as np
import torch

from masks.morphology import dilate_hole
from masks.objects import background_object_mask, class_region_mask, foreground_object_mask
from masks.random import as_generator
from masks.random_mask import background_random_mask
from masks.shape_bank import ShapeBank, place_shape
from masks.types import MaskType


class MaskSampler:
    """Chooses a mask type per sample and draws the mask.

    Types whose input is missing (no segmentation map, no foreground object or stuff region of a
    usable size) are removed and the remaining probabilities renormalised, so a face dataset without
    segmentation yields only background random (2) and replacement (3) masks. If every remaining
    probability is zero, type 2 is used.

    Args:
        probabilities: weights of types 0-3 (fg object, bg object, bg random, bg replacement).
        thing_ids: class ids of foreground objects.
        stuff_ids: class ids of background stuff.
        min_object_area: smallest object / stuff region used for types 0 and 1 (fraction of the image).
        max_object_area: largest foreground object used for type 0; stuff regions above it are cut.
        max_dilation: type 0 masks grow by up to this fraction of ``min(H, W)`` pixels.
        random_hole_range: hole-ratio range of type 2 masks.
        replacement_scale: size range of type 3 shapes, as a fraction of ``min(H, W)``.
        replacement_dilation: type 3 holes grow by this fraction of ``min(H, W)`` pixels after placement (as
            object-removal masks are dilated at inference, ``evaluation.targets.OBJECT_DILATION``); 0 keeps the shape.
        shape_bank: shapes for type 3; by default procedural blobs plus harvested type-0 objects.
        harvest_shapes: add every foreground object seen (type 0 candidates) to the shape bank.
    """

    def __init__(
        self,
        probabilities: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        thing_ids: Collection[int] = (),
        stuff_ids: Collection[int] = (),
        min_object_area: float = 0.01,
        max_object_area: float = 0.5,
        max_dilation: float = 0.03,
        random_hole_range: Sequence[float] = (0.05, 0.6),
        replacement_scale: Sequence[float] = (0.2, 0.6),
        replacement_dilation: float = 0.0,
        shape_bank: ShapeBank | None = None,
        harvest_shapes: bool = True,
    ) -> None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (4,) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(
                f"mask type probabilities must be 4 non-negative weights (fg object, bg object, bg random, "
                f"bg replacement) with a positive sum, got {list(probabilities)}"
            )
        self.probabilities = probs / probs.sum()
        self.thing_ids = sorted(int(i) for i in thing_ids)
        self.stuff_ids = sorted(int(i) for i in stuff_ids)
        self.min_object_area = min_object_area
        self.max_object_area = max_object_area
        self.max_dilation = max_dilation
        self.random_hole_range = tuple(random_hole_range)
        self.replacement_scale = tuple(replacement_scale)
        if not (len(self.replacement_scale) == 2 and 0 < self.replacement_scale[0] <= self.replacement_scale[1] <= 1):
            raise ValueError(
                f"replacement_scale must be (low, high) with 0 < low <= high <= 1 (fractions of the image side), "
                f"got {list(replacement_scale)}"
            )
        if not 0 <= replacement_dilation < 0.5:
            raise ValueError(f"replacement_dilation must be a fraction of the image side in [0, 0.5), got {replacement_dilation}")
        self.replacement_dilation = float(replacement_dilation)
        self.shape_bank = shape_bank if shape_bank is not None else ShapeBank()
        self.harvest_shapes = harvest_shapes

    def __call__(
        self,
        height: int,
        width: int,
        rng: np.random.Generator | int | None = None,
        segmentation: np.ndarray | None = None,
    ) -> tuple[np.ndarray, MaskType]:
        """Draw one mask.

        Args:
            height: mask height (must match ``segmentation``).
            width: mask width.
            rng: Generator or seed.
            segmentation: optional ``(H, W)`` class-id map of the sample.

        Returns:
            ``(mask, mask_type)`` with ``mask`` float32 ``(H, W)`` in {0, 1}, 1 = hole.
        """
        gen = as_generator(rng)
        if segmentation is not None and segmentation.shape != (height, width):
            raise ValueError(f"segmentation shape {segmentation.shape} does not match mask size {(height, width)}")
        probs = self.probabilities.copy()
        if segmentation is None:
            probs[MaskType.FG_OBJECT] = probs[MaskType.BG_OBJECT] = 0.0
        for _ in range(3):
            if probs.sum() <= 0:
                probs[MaskType.BG_RANDOM] = 1.0
            mask_type = MaskType(int(gen.choice(4, p=probs / probs.sum())))
            hole = self._draw(mask_type, height, width, gen, segmentation)
            if hole is not None and hole.any():
                return hole.astype(np.float32), mask_type
            probs[mask_type] = 0.0  # this sample has no usable region for the type: try the others
        hole = background_random_mask(height, width, gen, self.random_hole_range)
        return hole.astype(np.float32), MaskType.BG_RANDOM

    def _draw(
        self, mask_type: MaskType, height: int, width: int, gen: np.random.Generator, segmentation: np.ndarray | None
    ) -> np.ndarray | None:
        if mask_type == MaskType.FG_OBJECT:
            hole = foreground_object_mask(
                segmentation, self.thing_ids, gen, self.min_object_area, self.max_object_area, self.max_dilation
            )
            if hole is not None and self.harvest_shapes:
                self.shape_bank.add(hole)
            return hole
        if mask_type == MaskType.BG_OBJECT:
            return background_object_mask(segmentation, self.stuff_ids, gen, self.min_object_area, self.max_object_area)
        if mask_type == MaskType.BG_RANDOM:
            return background_random_mask(height, width, gen, self.random_hole_range)
        occupied = None if segmentation is None else class_region_mask(segmentation, self.thing_ids)
        hole = place_shape(self.shape_bank.sample(gen), height, width, gen, occupied, tuple(self.replacement_scale))
        grow = round(self.replacement_dilation * min(height, width))
        if grow > 0:
            hole = dilate_hole(torch.from_numpy(hole)[None, None], grow)[0, 0].numpy()
        return hole
