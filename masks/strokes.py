"""Drawing primitives for random masks: MAT-style brushes and box fills, LaMa-style strokes and boxes.

All functions return boolean arrays of shape ``(H, W)`` with True = hole and take an explicit
``np.random.Generator``; nothing here touches global random state.

The LaMa primitives reproduce ``make_random_irregular_mask`` (line drawing) and
``make_random_rectangle_mask`` of LaMa's ``saicinpainting/training/data/masks.py``: strokes are
drawn with OpenCV's ``cv2.line`` exactly as there (thickness, 8-connected, round ends), boxes are
filled rectangles. Integer draws use ``Generator.integers`` with the same bounds as LaMa's
``np.random.randint``, so the distribution is the same (the random streams are not).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

# LaMa mirrors angles with this truncated value of pi, not math.pi.
_LAMA_PI = 3.1415926


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
    """LaMa's irregular strokes (``make_random_irregular_mask`` with ``draw_method=line``).

    A number of polylines uniform in ``[min_times, max_times]`` (both inclusive), each starting at a uniform
    pixel and made of ``1 + randint(5)`` straight segments. Per segment: angle ``0.01 + randint(max_angle)``
    radians, replaced by ``2 * 3.1415926 - angle`` on polylines 0, 2, 4, ...; length ``10 + randint(max_len)``;
    width ``5 + randint(max_width)``. The end point ``start + length * (sin, cos)`` is truncated toward zero
    and clipped to ``[0, W] x [0, H]`` (so it may lie one pixel outside the image) and becomes the next start.
    Each segment is one ``cv2.line`` (8-connected) of that thickness; OpenCV draws thick lines with
    round ends, so joints are round too. No extra circles are drawn.

    Note: LaMa's ``RandomIrregularMaskGenerator`` calls this with ``max_times + 1``; ``masks.protocols``
    applies that offset, this function takes the count bounds literally.
    """
    canvas = np.zeros((height, width), dtype=np.uint8)
    for i in range(int(rng.integers(min_times, max_times + 1))):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(max_angle))
            if i % 2 == 0:
                angle = 2 * _LAMA_PI - angle
            length = 10 + int(rng.integers(max_len))
            thickness = 5 + int(rng.integers(max_width))
            end_x = min(max(int(x + length * math.sin(angle)), 0), width)
            end_y = min(max(int(y + length * math.cos(angle)), 0), height)
            cv2.line(canvas, (x, y), (end_x, end_y), 1, thickness)
            x, y = end_x, end_y
    return canvas.astype(bool)


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
    """LaMa's rectangles (``make_random_rectangle_mask``).

    A number of axis-aligned boxes uniform in ``[min_times, max_times]`` (both inclusive); each side is
    ``randint(bbox_min_size, m)`` with ``m = min(bbox_max_size, H - 2 * margin, W - 2 * margin)``
    (exclusive upper bound), placed uniformly so that it keeps ``margin`` pixels from every border.

    Note: LaMa's ``RandomRectangleMaskGenerator`` calls this with ``bbox_max_size + 1``; ``masks.protocols``
    applies that offset. Images too small for ``bbox_min_size`` (where LaMa would fail) get
    ``bbox_min_size`` lowered to ``m - 1``.
    """
    mask = np.zeros((height, width), dtype=bool)
    max_size = min(bbox_max_size, height - 2 * margin, width - 2 * margin)
    if max_size <= 1:
        raise ValueError(f"image {height}x{width} too small for boxes with margin {margin}")
    min_size = min(bbox_min_size, max_size - 1)
    for _ in range(int(rng.integers(min_times, max_times + 1))):
        box_w = int(rng.integers(min_size, max_size))
        box_h = int(rng.integers(min_size, max_size))
        x = int(rng.integers(margin, width - margin - box_w + 1))
        y = int(rng.integers(margin, height - margin - box_h + 1))
        mask[y : y + box_h, x : x + box_w] = True
    return mask
