"""Drawing primitives for random masks: MAT-style brushes and box fills, LaMa-style strokes and boxes.

All functions return boolean arrays of shape ``(H, W)`` with True = hole and take an explicit
``np.random.Generator``; nothing here touches global random state.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def mat_brush(
    height: int,
    width: int,
    max_tries: int,
    rng: np.random.Generator,
    min_vertices: int = 4,
    max_vertices: int = 18,
    min_width: float = 12.0,
    max_width: float = 48.0,
    mean_angle: float = 2 * math.pi / 5,
    angle_range: float = 2 * math.pi / 15,
) -> np.ndarray:
    """Zig-zag brush strokes as in MAT / CoModGAN.

    ``randint(max_tries)`` strokes (0 .. max_tries-1); each has ``[min_vertices, max_vertices)``
    vertices, a segment length ~ N(r, r/2) clipped to [0, 2r] with ``r = sqrt(H^2 + W^2) / 8``,
    alternating turning angles around ``mean_angle`` and a width uniform in [min_width, max_width).
    The result is flipped vertically / horizontally with probability 1/2 each.
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    radius = math.sqrt(height * height + width * width) / 8
    for _ in range(int(rng.integers(max_tries)) if max_tries > 0 else 0):
        n_vertex = int(rng.integers(min_vertices, max_vertices))
        lo = mean_angle - rng.uniform(0, angle_range)
        hi = mean_angle + rng.uniform(0, angle_range)
        angles = [
            (2 * math.pi - rng.uniform(lo, hi)) if i % 2 == 0 else rng.uniform(lo, hi) for i in range(n_vertex)
        ]
        vertices = [(int(rng.integers(0, width)), int(rng.integers(0, height)))]
        for angle in angles:
            r = min(max(float(rng.normal(radius, radius // 2)), 0.0), 2 * radius)
            x = min(max(vertices[-1][0] + r * math.cos(angle), 0.0), float(width))
            y = min(max(vertices[-1][1] + r * math.sin(angle), 0.0), float(height))
            vertices.append((int(x), int(y)))
        stroke = max(1, int(rng.uniform(min_width, max_width)))
        draw.line(vertices, fill=1, width=stroke)
        half = stroke // 2
        for vx, vy in vertices:
            draw.ellipse((vx - half, vy - half, vx + half, vy + half), fill=1)
    mask = np.asarray(canvas, dtype=bool)
    if rng.random() > 0.5:
        mask = mask[::-1]
    if rng.random() > 0.5:
        mask = mask[:, ::-1]
    return np.ascontiguousarray(mask)


def mat_box_fills(mask: np.ndarray, max_tries: int, max_height: int, max_width: int, rng: np.random.Generator) -> None:
    """Add ``randint(max_tries)`` boxes of size ``randint(max_h) x randint(max_w)`` to ``mask`` in place.

    Boxes may stick out of the image by up to half their size (MAT's ``Fill``).
    """
    height, width = mask.shape
    for _ in range(int(rng.integers(max_tries)) if max_tries > 0 else 0):
        w, h = int(rng.integers(max(max_width, 1))), int(rng.integers(max(max_height, 1)))
        x = int(rng.integers(-(w // 2), width - w + w // 2)) if width - w + w // 2 > -(w // 2) else 0
        y = int(rng.integers(-(h // 2), height - h + h // 2)) if height - h + h // 2 > -(h // 2) else 0
        mask[max(y, 0) : min(y + h, height), max(x, 0) : min(x + w, width)] = True


def lama_strokes(
    height: int,
    width: int,
    rng: np.random.Generator,
    max_angle: int = 4,
    max_len: int = 60,
    max_width: int = 20,
    min_times: int = 0,
    max_times: int = 10,
) -> np.ndarray:
    """LaMa's irregular strokes: ``[min_times, max_times]`` polylines of 1-5 straight segments.

    Each segment turns by ``0.01 + randint(max_angle)`` radians (mirrored on even strokes), has length
    ``10 + randint(max_len)`` and width ``5 + randint(max_width)`` pixels.
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for i in range(int(rng.integers(min_times, max_times + 1))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(max_angle))
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = 10 + int(rng.integers(max_len))
            stroke = 5 + int(rng.integers(max_width))
            end_x = int(np.clip(x + length * math.sin(angle), 0, width))
            end_y = int(np.clip(y + length * math.cos(angle), 0, height))
            draw.line([(x, y), (end_x, end_y)], fill=1, width=stroke)
            x, y = end_x, end_y
    return np.asarray(canvas, dtype=bool).copy()


def lama_boxes(
    height: int,
    width: int,
    rng: np.random.Generator,
    margin: int = 10,
    bbox_min_size: int = 30,
    bbox_max_size: int = 100,
    min_times: int = 0,
    max_times: int = 3,
) -> np.ndarray:
    """LaMa's rectangles: ``[min_times, max_times]`` boxes with sides in ``[bbox_min_size, bbox_max_size)`` inside a margin."""
    mask = np.zeros((height, width), dtype=bool)
    max_size = min(bbox_max_size, height - 2 * margin, width - 2 * margin)
    min_size = min(bbox_min_size, max_size - 1)
    if max_size <= 1:
        raise ValueError(f"image {height}x{width} too small for boxes with margin {margin}")
    for _ in range(int(rng.integers(min_times, max_times + 1))):
        box_w = int(rng.integers(min_size, max_size))
        box_h = int(rng.integers(min_size, max_size))
        x = int(rng.integers(margin, width - margin - box_w + 1))
        y = int(rng.integers(margin, height - margin - box_h + 1))
        mask[y : y + box_h, x : x + box_w] = True
    return mask
