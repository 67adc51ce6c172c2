"""Object shapes for background replacement masks (type 3).

A ``ShapeBank`` holds binary object silhouettes cropped to their bounding box: procedural blobs
(always available, deterministic by seed) plus, during training, foreground-object masks harvested
from other samples (``add``). ``place_shape`` pastes a shape at a random position over background.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from masks.random import as_generator


PROCEDURAL_BLOBS = 64  #: procedural blobs a bank holds by default


def random_blob(rng: np.random.Generator, size: int = 64, harmonics: int = 4) -> np.ndarray:
    """A closed object-like silhouette: a star-shaped polygon whose radius is a random Fourier series.

    Returns:
        Boolean ``(size, size)`` array cropped to nothing (the blob touches its bounding box).
    """
    angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    radius = np.ones_like(angles)
    for k in range(1, harmonics + 1):
        radius += rng.uniform(0, 0.35 / k) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.5, 1.0)
    radius = np.clip(radius, 0.2, None) / radius.max() * (size / 2 - 1)
    xs = size / 2 + radius * np.cos(angles) * (aspect if rng.random() < 0.5 else 1.0)
    ys = size / 2 + radius * np.sin(angles) * (1.0 if rng.random() < 0.5 else aspect)
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist())), fill=1)
    return crop_to_content(np.asarray(canvas, dtype=bool))


def crop_to_content(mask: np.ndarray) -> np.ndarray:
    """Crop a boolean mask to the bounding box of its True pixels (empty masks raise ValueError)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("cannot crop an empty mask")
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()


class ShapeBank:
    """Object silhouettes to draw replacement masks from.

    Args:
        capacity: how many harvested shapes are kept (oldest replaced first); 0 disables harvesting.
        procedural: number of procedural blobs always in the bank.
        seed: seed of the procedural blobs.
    """

    def __init__(self, capacity: int = 256, procedural: int = PROCEDURAL_BLOBS, seed: int = 0) -> None:
        gen = np.random.default_rng([seed, 0x5EED])
        self.procedural = [random_blob(gen) for _ in range(procedural)]
        self.capacity = capacity
        self.harvested: list[np.ndarray] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self.procedural) + len(self.harvested)

    def add(self, mask: np.ndarray) -> None:
        """Keep the silhouette of a foreground object (boolean ``(H, W)``) for later samples."""
        if self.capacity <= 0 or not mask.any():
            return
        shape = crop_to_content(mask.astype(bool))
        if len(self.harvested) < self.capacity:
            self.harvested.append(shape)
        else:
            self.harvested[self._next] = shape
            self._next = (self._next + 1) % self.capacity

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random silhouette (harvested and procedural shapes are equally likely per shape)."""
        if len(self) == 0:
            return random_blob(rng)
        index = int(rng.integers(len(self)))
        if index < len(self.procedural):
            return self.procedural[index]
        return self.harvested[index - len(self.procedural)]


def _resize_shape(shape: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(shape.astype(np.uint8) * 255)
    return np.asarray(image.resize((max(1, width), max(1, height)), Image.NEAREST)) > 127


def place_shape(
    shape: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator | int | None,
    occupied: np.ndarray | None = None,
    scale_range: tuple[float, float] = (0.2, 0.6),
    max_overlap: float = 0.02,
    tries: int = 16,
) -> np.ndarray:
    """Type 3: paste ``shape`` (randomly scaled, maybe mirrored) at a random position.

    Args:
        shape: boolean silhouette.
        height: output height.
        width: output width.
        rng: Generator or seed.
        occupied: boolean ``(H, W)`` foreground pixels the hole should not cover (None: anywhere).
        scale_range: the longer side of the pasted shape is this fraction of ``min(H, W)``.
        max_overlap: accept the first placement covering at most this fraction of the shape's pixels
            with ``occupied``; otherwise the placement with the least overlap out of ``tries`` is used.
        tries: number of placements tried.

    Returns:
        Boolean ``(H, W)`` hole.
    """
    gen = as_generator(rng)
    best, best_overlap = None, np.inf
    for _ in range(tries):
        side = gen.uniform(*scale_range) * min(height, width)
        factor = side / max(shape.shape)
        sh = int(np.clip(round(shape.shape[0] * factor), 1, height))
        sw = int(np.clip(round(shape.shape[1] * factor), 1, width))
        piece = _resize_shape(shape, sh, sw)
        if gen.random() < 0.5:
            piece = piece[:, ::-1]
        top, left = int(gen.integers(0, height - sh + 1)), int(gen.integers(0, width - sw + 1))
        hole = np.zeros((height, width), dtype=bool)
        hole[top : top + sh, left : left + sw] = piece
        if not hole.any():
            continue
        overlap = 0.0 if occupied is None else float((hole & occupied).sum()) / hole.sum()
        if overlap < best_overlap:
            best, best_overlap = hole, overlap
        if overlap <= max_overlap:
            break
    if best is None:
        raise RuntimeError(f"could not place a shape of size {shape.shape} in a {height}x{width} image")
    return best
