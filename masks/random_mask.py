"""Background random masks (type 2): MAT-style brush strokes plus boxes, scaled to any resolution."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from masks.strokes import mat_box_fills, mat_brush


def background_random_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    hole_range: Sequence[float] = (0.05, 0.6),
    max_boxes: tuple[int, int] = (4, 2),
    max_strokes: int = 8,
    max_redraws: int = 1000,
) -> np.ndarray:
    """Random brush strokes and boxes, the training counterpart of MAT's large masks.

    Stroke widths follow MAT's 12-48 px at 512 and scale with ``min(H, W) / 512`` so the hole ratio
    statistics do not depend on the resolution.

    Args:
        height: mask height.
        width: mask width.
        rng: random generator.
        hole_range: masks whose hole ratio is not strictly inside ``(lo, hi)`` are redrawn.
        max_boxes: exclusive maximum counts of boxes of up to half size and up to full size.
        max_strokes: exclusive maximum count of brush strokes.
        max_redraws: give up (RuntimeError) after this many draws outside ``hole_range``.

    Returns:
        Boolean ``(H, W)`` hole.
    """
    scale = min(height, width) / 512
    lo, hi = hole_range
    for _ in range(max_redraws):
        hole = np.zeros((height, width), dtype=bool)
        mat_box_fills(hole, max_boxes[0], height // 2, width // 2, rng)
        mat_box_fills(hole, max_boxes[1], height, width, rng)
        hole |= mat_brush(height, width, max_strokes, rng, min_width=max(1.0, 12 * scale), max_width=max(2.0, 48 * scale))
        if lo < hole.mean() < hi:
            return hole
    raise RuntimeError(f"no random mask with hole ratio in {tuple(hole_range)} after {max_redraws} draws; widen hole_range")
