"""Segmentation-driven masks: foreground object (type 0) and background "stuff" object (type 1).

A segmentation map is an integer ``(H, W)`` array of class ids. Semantic maps have no instance ids,
so an "object" is one 8-connected component of one class. Returns are boolean ``(H, W)`` (True =
hole) or None when the map holds no region of acceptable size.
"""
from __future__ import annotations

from typing import Collection

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def present_classes(segmentation: np.ndarray, class_ids: Collection[int]) -> np.ndarray:
    """The ids of ``class_ids`` that occur in the map."""
    wanted = np.fromiter(class_ids, dtype=np.int64, count=len(class_ids))
    flat = segmentation.ravel()
    if flat.size and flat.min() < 0:  # negative = unlabeled / ignored pixels
        flat = flat[flat >= 0]
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    if flat.max() <= 65535:
        present = np.flatnonzero(np.bincount(flat))  # much faster than np.unique for class ids
    else:
        present = np.unique(flat)
    return np.intersect1d(present, wanted)


def _components(segmentation: np.ndarray, cid: int, min_area: float, max_area: float) -> list[np.ndarray]:
    labels, count = ndimage.label(segmentation == cid, structure=_EIGHT)
    if count == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:] / segmentation.size
    return [labels == index + 1 for index in np.flatnonzero((areas >= min_area) & (areas <= max_area))]


def random_class_region(
    segmentation: np.ndarray, class_ids: Collection[int], rng: np.random.Generator, min_area: float, max_area: float
) -> np.ndarray | None:
    """One component of a class drawn uniformly among the present classes that have a component of usable size.

    Classes are labelled lazily in random order, so the cost is one connected-component pass in the common case.
    """
    classes = present_classes(segmentation, class_ids)
    for cid in rng.permutation(classes):
        candidates = _components(segmentation, int(cid), min_area, max_area)
        if candidates:
            return candidates[int(rng.integers(len(candidates)))]
    return None


def class_region_mask(segmentation: np.ndarray, class_ids: Collection[int]) -> np.ndarray:
    """Union of all pixels whose class is in ``class_ids`` (e.g. every foreground object)."""
    if len(class_ids) == 0:
        return np.zeros(segmentation.shape, dtype=bool)
    return np.isin(segmentation, np.fromiter(class_ids, dtype=np.int64, count=len(class_ids)))


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a boolean mask by ``pixels`` (8-neighbourhood steps); 0 returns it unchanged."""
    if pixels <= 0:
        return mask
    return ndimage.binary_dilation(mask, structure=_EIGHT, iterations=int(pixels))


def foreground_object_mask(
    segmentation: np.ndarray,
    thing_ids: Collection[int],
    rng: np.random.Generator,
    min_area: float = 0.01,
    max_area: float = 0.5,
    max_dilation: float = 0.03,
) -> np.ndarray | None:
    """Type 0: the region of one foreground object, optionally dilated.

    The object class is drawn uniformly among the thing classes present, then one of its components.

    Args:
        segmentation: ``(H, W)`` class ids.
        thing_ids: class ids of foreground objects ("things").
        rng: random generator.
        min_area: smallest object, as a fraction of the image.
        max_area: largest object, as a fraction of the image.
        max_dilation: the object is grown by ``randint(0, max_dilation * min(H, W) + 1)`` pixels so the
            hole also covers the object's boundary and shadow.

    Returns:
        Boolean ``(H, W)`` hole, or None when no object qualifies.
    """
    region = random_class_region(segmentation, thing_ids, rng, min_area, max_area)
    if region is None:
        return None
    grow = int(rng.integers(0, int(max_dilation * min(segmentation.shape)) + 1))
    return dilate(region, grow)


def background_object_mask(
    segmentation: np.ndarray,
    stuff_ids: Collection[int],
    rng: np.random.Generator,
    min_area: float = 0.01,
    max_area: float = 0.5,
) -> np.ndarray | None:
    """Type 1: (part of) one background "stuff" region such as sky, wall or road.

    Stuff regions are often larger than ``max_area``; those are cut by a random axis-aligned window
    placed on one of their pixels and sized so the hole stays below ``max_area`` of the image.

    Returns:
        Boolean ``(H, W)`` hole, or None when no stuff region reaches ``min_area``.
    """
    region = random_class_region(segmentation, stuff_ids, rng, min_area, 1.0)
    if region is None:
        return None
    height, width = region.shape
    if region.mean() <= max_area:
        return region
    ys, xs = np.nonzero(region)
    for _ in range(8):
        pick = int(rng.integers(len(ys)))
        side = np.sqrt(max_area * rng.uniform(0.5, 1.0))
        win_h, win_w = max(1, int(side * height)), max(1, int(side * width))
        top = int(np.clip(ys[pick] - rng.integers(win_h), 0, height - win_h))
        left = int(np.clip(xs[pick] - rng.integers(win_w), 0, width - win_w))
        cut = np.zeros_like(region)
        cut[top : top + win_h, left : left + win_w] = True
        cut &= region
        if cut.mean() >= min_area:
            return cut
    return None
