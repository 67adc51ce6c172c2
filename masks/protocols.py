"""Evaluation mask protocols (MAT large/small, LaMa thin/medium/thick) and MAT file conversion.

Every generator returns a float32 array of shape ``(H, W)`` with values in {0, 1}, **1 = hole**,
and takes ``rng``: an ``np.random.Generator`` or an int seed (same seed -> same mask on every machine).

MAT (Li et al., CVPR 2022; ``datasets/mask_generator_{256,512}[_small].py``): box fills of up to
``s/2`` and up to ``s`` plus zig-zag brush strokes (4-17 vertices, width 12-48 px). The maximum
counts (exclusive, ``randint(n)``) are scaled by ``c = min(hole_range[0] + hole_range[1], 1)``:

=====  =========  ==============  =================
table  kind       boxes s/2, s    brush strokes
=====  =========  ==============  =================
512    large      5c, 3c          9c
512    small      3c, 2c          4c
256    large      4c, 2c          8c
256    small      2c, 2c          3c
=====  =========  ==============  =================

The 512 table is used when ``min(H, W) >= 512``, the 256 table otherwise. A mask whose hole ratio is
not strictly inside ``hole_range`` is redrawn.

LaMa (Suvorov et al., WACV 2022): the evaluation masks that LaMa's ``bin/gen_mask_dataset.py``
writes with ``configs/data_gen/random_{thin,medium,thick}_{256,512}.yaml`` (generator kind
``random``, i.e. ``MixedMaskGenerator`` of ``saicinpainting/training/data/masks.py``). One mask is:

1. ``variants_n = 5`` candidate masks, each drawn independently: the generator is strokes with
   weight ``irregular_proba = 1`` or boxes with weight ``box_proba`` (0 for thin, 0.3 for medium and
   thick), so boxes with probability ``box_proba / (1 + box_proba)``; one generator per candidate, the
   two are never combined, and no candidate is inverted (``invert_proba`` is 0).
   Strokes are ``make_random_irregular_mask`` with the config's ``irregular_kwargs``, except that
   ``RandomIrregularMaskGenerator`` passes ``max_times + 1`` (with no ramp its coefficient is 1), so
   the stroke count is uniform in ``[min_times, max_times + 1]``. Boxes are
   ``make_random_rectangle_mask`` with ``box_kwargs``, except that ``RandomRectangleMaskGenerator``
   passes ``bbox_max_size + 1``, so box sides are uniform in ``[bbox_min_size, bbox_max_size]``.
   See ``masks.strokes.lama_strokes`` / ``lama_boxes`` for the drawing (``cv2.line``).
2. Candidates covering more than ``max_tamper_area = 0.5`` of the image are dropped (LaMa's check for
   empty masks never fires, so empty candidates would be kept; none of the presets can produce one).
3. ``max_masks_per_image = 1``: one survivor is picked uniformly at random. When all five are
   dropped, LaMa skips the image; here five new candidates are drawn instead.

``LAMA_PARAMS`` holds the yaml values as written; the ``+ 1`` offsets are applied in ``lama_mask``.
The 512 table is used when ``min(H, W) >= 512``, the 256 table otherwise. LaMa generates masks on the
whole image resized to a shorter side of 256 / 512 and then takes a square crop overlapping the hole;
for square images (the evaluation setting) the crop is the whole mask. ``lama_mask`` always draws
directly at ``(H, W)``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from masks.random import as_generator
from masks.strokes import lama_boxes, lama_strokes, mat_box_fills, mat_brush

MAT_KINDS = ("large", "small")
LAMA_PRESETS = ("thin", "medium", "thick")
PROTOCOLS = ("mat_large", "mat_small", "lama_thin", "lama_medium", "lama_thick")

# (max boxes of size s/2, max boxes of size s, max brush strokes) before scaling by c; keyed by (table, kind).
MAT_COUNTS: dict[tuple[int, str], tuple[int, int, int]] = {
    (512, "large"): (5, 3, 9),
    (512, "small"): (3, 2, 4),
    (256, "large"): (4, 2, 8),
    (256, "small"): (2, 2, 3),
}

# LaMa's data_gen configs: stroke kwargs, box probability and box kwargs; keyed by (table, preset). Values as in
# the yaml files; lama_mask adds LaMa's generator-class offsets (max_times + 1 for strokes, bbox_max_size + 1 for boxes).
LAMA_PARAMS: dict[tuple[int, str], dict] = {
    (256, "thin"): dict(strokes=dict(min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40), box_proba=0.0, boxes=None),
    (256, "medium"): dict(
        strokes=dict(min_times=4, max_times=5, max_width=50, max_angle=4, max_len=100),
        box_proba=0.3,
        boxes=dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5),
    ),
    (256, "thick"): dict(
        strokes=dict(min_times=1, max_times=5, max_width=100, max_angle=4, max_len=200),
        box_proba=0.3,
        boxes=dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3),
    ),
    (512, "thin"): dict(strokes=dict(min_times=4, max_times=70, max_width=20, max_angle=4, max_len=100), box_proba=0.0, boxes=None),
    (512, "medium"): dict(
        strokes=dict(min_times=4, max_times=10, max_width=100, max_angle=4, max_len=200),
        box_proba=0.3,
        boxes=dict(margin=0, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=5),
    ),
    (512, "thick"): dict(
        strokes=dict(min_times=1, max_times=5, max_width=250, max_angle=4, max_len=450),
        box_proba=0.3,
        boxes=dict(margin=10, bbox_min_size=30, bbox_max_size=300, min_times=1, max_times=4),
    ),
}
LAMA_MAX_HOLE_RATIO = 0.5
LAMA_VARIANTS = 5  # variants_n: candidates drawn per mask, one survivor is kept
_MAX_REDRAWS = 10_000


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = (int(v) for v in size)
    return height, width


def _table(height: int, width: int) -> int:
    return 512 if min(height, width) >= 512 else 256


def mat_mask(
    size: int | Sequence[int],
    kind: str = "large",
    rng: np.random.Generator | int | None = None,
    hole_range: Sequence[float] = (0.0, 1.0),
) -> np.ndarray:
    """One MAT evaluation mask.

    Args:
        size: ``s`` or ``(H, W)``; MAT's own protocol is square 256 or 512.
        kind: ``"large"`` or ``"small"``.
        rng: Generator or int seed.
        hole_range: ``(lo, hi)``; masks whose hole ratio is not strictly inside are redrawn.

    Returns:
        float32 ``(H, W)``, 1 = hole.
    """
    if kind not in MAT_KINDS:
        raise ValueError(f"unknown MAT mask kind {kind!r}; use one of {MAT_KINDS}")
    lo, hi = float(hole_range[0]), float(hole_range[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"hole_range must satisfy 0 <= lo < hi <= 1, got {tuple(hole_range)}")
    height, width = _size(size)
    gen = as_generator(rng)
    half_boxes, full_boxes, brushes = MAT_COUNTS[(_table(height, width), kind)]
    coef = min(lo + hi, 1.0)
    for _ in range(_MAX_REDRAWS):
        hole = np.zeros((height, width), dtype=bool)
        mat_box_fills(hole, int(half_boxes * coef), height // 2, width // 2, gen)
        mat_box_fills(hole, int(full_boxes * coef), height, width, gen)
        hole |= mat_brush(height, width, int(brushes * coef), gen)
        ratio = hole.mean()
        if lo < ratio < hi:
            return hole.astype(np.float32)
    raise RuntimeError(f"no MAT {kind} mask with hole ratio in {tuple(hole_range)} after {_MAX_REDRAWS} draws; widen hole_range")


def lama_mask(
    size: int | Sequence[int],
    preset: str = "medium",
    rng: np.random.Generator | int | None = None,
    max_hole_ratio: float = LAMA_MAX_HOLE_RATIO,
) -> np.ndarray:
    """One LaMa evaluation mask (``thin``, ``medium`` or ``thick``): one surviving candidate of ``LAMA_VARIANTS``, see the module doc.

    Args:
        size: ``s`` or ``(H, W)``; LaMa's presets are defined for 256 and 512.
        preset: ``"thin"``, ``"medium"`` or ``"thick"``.
        rng: Generator or int seed.
        max_hole_ratio: candidates covering more than this are dropped (LaMa's ``max_tamper_area``: 0.5).

    Returns:
        float32 ``(H, W)``, 1 = hole.
    """
    if preset not in LAMA_PRESETS:
        raise ValueError(f"unknown LaMa preset {preset!r}; use one of {LAMA_PRESETS}")
    height, width = _size(size)
    gen = as_generator(rng)
    params = LAMA_PARAMS[(_table(height, width), preset)]
    stroke_kwargs = dict(params["strokes"], max_times=params["strokes"]["max_times"] + 1)
    box_kwargs = None
    if params["boxes"] is not None:
        box_kwargs = dict(params["boxes"], bbox_max_size=params["boxes"]["bbox_max_size"] + 1)
    p_box = params["box_proba"] / (1.0 + params["box_proba"])
    for _ in range(_MAX_REDRAWS):
        survivors = []
        for _ in range(LAMA_VARIANTS):
            if box_kwargs is not None and gen.random() < p_box:
                hole = lama_boxes(height, width, gen, **box_kwargs)
            else:
                hole = lama_strokes(height, width, gen, **stroke_kwargs)
            if hole.mean() <= max_hole_ratio:
                survivors.append(hole)
        if survivors:
            return survivors[int(gen.integers(len(survivors)))].astype(np.float32)
    raise RuntimeError(
        f"no LaMa {preset} mask with hole ratio <= {max_hole_ratio} in {_MAX_REDRAWS} rounds of {LAMA_VARIANTS} candidates"
    )


def protocol_mask(protocol: str, size: int | Sequence[int], rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Mask of a named protocol: one of ``PROTOCOLS`` (``mat_large``, ``mat_small``, ``lama_thin``, ...).

    Returns:
        float32 ``(H, W)``, 1 = hole.
    """
    family, _, variant = protocol.partition("_")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown mask protocol {protocol!r}; use one of {PROTOCOLS}")
    if family == "mat":
        return mat_mask(size, variant, rng)
    return lama_mask(size, variant, rng)


def protocol_masks(protocol: str, size: int | Sequence[int], count: int, seed: int = 0) -> np.ndarray:
    """A fixed evaluation set: mask ``i`` is drawn from seed ``(seed, i)``, so any prefix is reproducible.

    Returns:
        float32 ``(count, 1, H, W)``, 1 = hole.
    """
    height, width = _size(size)
    out = np.empty((count, 1, height, width), dtype=np.float32)
    for i in range(count):
        out[i, 0] = protocol_mask(protocol, (height, width), np.random.default_rng([seed, i]))
    return out


def from_mat_mask(mask):
    """Convert a MAT mask (0 = hole, 1 = known; float, uint8 0/255 or bool) to the project's 1 = hole float mask.

    Accepts numpy arrays and torch tensors of any shape; returns the same type, float32.
    """
    if isinstance(mask, torch.Tensor):
        known = mask.float() / 255.0 if mask.dtype == torch.uint8 else mask.float()
        return (known < 0.5).float()
    arr = np.asarray(mask)
    known = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return (known < 0.5).astype(np.float32)


def to_mat_mask(mask):
    """Convert a project mask (1 = hole) to MAT's convention (0 = hole, 1 = known), float32; numpy or torch."""
    if isinstance(mask, torch.Tensor):
        return (mask.float() < 0.5).float()
    return (np.asarray(mask, dtype=np.float32) < 0.5).astype(np.float32)
