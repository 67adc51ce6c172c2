"""Procedural synthetic scenes with per-pixel segmentation, so every mask type runs with no download.

A scene has background "stuff" (sky or wall above a wavy horizon, grass, road or water below)
and 1-4 foreground "things" (balls, crates, kites, bottles) drawn over it, each with its own
noise / stripe texture. Everything is determined by the seed. :func:`synthetic_scene_layers` also returns the
clean plate (the background without the objects) and its segmentation.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# id, name, kind ("thing" = foreground object, "stuff" = background region)
SYNTHETIC_CLASSES: list[dict] = [
    {"id": 0, "name": "sky", "kind": "stuff"},
    {"id": 1, "name": "wall", "kind": "stuff"},
    {"id": 2, "name": "grass", "kind": "stuff"},
    {"id": 3, "name": "road", "kind": "stuff"},
    {"id": 4, "name": "water", "kind": "stuff"},
    {"id": 10, "name": "ball", "kind": "thing"},
    {"id": 11, "name": "crate", "kind": "thing"},
    {"id": 12, "name": "kite", "kind": "thing"},
    {"id": 13, "name": "bottle", "kind": "thing"},
]

_BASE_COLORS = {
    0: (110, 160, 230),
    1: (180, 150, 120),
    2: (70, 140, 60),
    3: (90, 90, 95),
    4: (40, 90, 150),
}


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise in [-1, 1]: a random ``cells x cells`` grid upsampled bicubically."""
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    image = Image.fromarray(grid).resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 127.5 - 1.0


def _texture(rng: np.random.Generator, height: int, width: int, color, pattern: str) -> np.ndarray:
    """An ``(H, W, 3)`` float texture around ``color``: noise plus an optional stripe / gradient pattern."""
    color = np.asarray(color, dtype=np.float32)
    coarse = _smooth_noise(rng, height, width, 4)[..., None] * 18
    fine = _smooth_noise(rng, height, width, max(4, min(height, width) // 4))[..., None] * 10
    out = color + coarse + fine
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == "gradient":
        out += (ys / max(height - 1, 1))[..., None] * 50 - 25
    elif pattern == "stripes":
        period = rng.uniform(4, 12) * max(1.0, min(height, width) / 64)
        angle = rng.uniform(0, np.pi)
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        out += (np.sign(np.sin(2 * np.pi * phase))[..., None] * 22)
    elif pattern == "bricks":
        row = max(3, int(min(height, width) / 12))
        mortar = ((ys % row) < 1) | (((xs + (ys // row % 2) * row) % (2 * row)) < 1)
        out[mortar] = out[mortar] * 0.6 + 60
    elif pattern == "ripples":
        out += np.sin(ys / max(1.0, height / 40) + _smooth_noise(rng, height, width, 3) * 3)[..., None] * 15
    return out


_STUFF_PATTERN = {0: "gradient", 1: "bricks", 2: "noise", 3: "stripes", 4: "ripples"}


def _thing_polygon(rng: np.random.Generator, kind: int, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if kind == 10:  # ball: handled as an ellipse
        return None
    if kind == 11:  # crate: rotated rectangle
        angle = rng.uniform(0, np.pi / 2)
        w, h = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.5, 1.0)
        corners = [(-w, -h), (w, -h), (w, h), (-w, h)]
    elif kind == 12:  # kite: rhombus with a long lower half
        angle = rng.uniform(-0.4, 0.4)
        corners = [(0, -r * 0.7), (r * 0.6, 0), (0, r), (-r * 0.6, 0)]
    else:  # bottle: narrow body with a neck
        angle = rng.uniform(-0.3, 0.3)
        b, n = r * 0.35, r * 0.14
        corners = [(-n, -r), (n, -r), (n, -r * 0.5), (b, -r * 0.3), (b, r), (-b, r), (-b, -r * 0.3), (-n, -r * 0.5)]
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


#: scene-seed offset of each split of a synthetic dataset (splits never share a scene)
SPLIT_OFFSETS = {"train": 0, "val": 10_000_000, "test": 20_000_000}


def scene_seed(dataset_seed: int, split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split`` in the synthetic dataset ``dataset_seed`` (what the shard writer uses)."""
    return dataset_seed * 100_000_000 + SPLIT_OFFSETS[split] + index


def synthetic_scene(seed: int, height: int = 64, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One procedural scene.

    Args:
        seed: scene seed (same seed -> same scene).
        height: image height.
        width: image width (default: square).

    Returns:
        ``(image, segmentation)``: uint8 ``(H, W, 3)`` RGB and uint8 ``(H, W)`` class ids from
        ``SYNTHETIC_CLASSES``.
    """
    image, seg, _, _ = synthetic_scene_layers(seed, height, width)
    return image, seg


def synthetic_scene_layers(seed: int, height: int = 64, width: int | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One procedural scene and its clean plate (the background before any object is drawn).

    The same seed gives the same scene as :func:`synthetic_scene`. Outside the objects the clean plate equals the
    image exactly; inside them it holds the background the objects hide, the ground truth of object removal.

    Returns:
        ``(image, segmentation, clean_plate, clean_segmentation)``: uint8 ``(H, W, 3)``, ``(H, W)``,
        ``(H, W, 3)``, ``(H, W)`` (the clean segmentation holds only "stuff" ids).
    """
    width = height if width is None else width
    rng = np.random.default_rng([seed, 0x5CE4E])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)

    upper = int(rng.choice([0, 1], p=[0.7, 0.3]))
    lower = int(rng.choice([2, 3, 4]))
    horizon = rng.uniform(0.3, 0.65) * height
    wave = rng.uniform(0.02, 0.08) * height * np.sin(xs / width * 2 * np.pi * rng.uniform(0.5, 2) + rng.uniform(0, 6))
    seg = np.where(ys < horizon + wave, upper, lower).astype(np.uint8)
    if rng.random() < 0.35:  # a second ground region (e.g. a road through the grass)
        other = int(rng.choice([c for c in (2, 3, 4) if c != lower]))
        band_lo = rng.uniform(0.7, 0.85) * height
        seg[(ys > band_lo + wave * 0.5) & (seg == lower)] = other

    image = np.zeros((height, width, 3), dtype=np.float32)
    for cid in np.unique(seg):
        color = np.asarray(_BASE_COLORS[int(cid)]) + rng.normal(0, 12, size=3)
        tex = _texture(rng, height, width, color, _STUFF_PATTERN[int(cid)])
        image[seg == cid] = tex[seg == cid]

    clean, clean_seg = np.clip(image, 0, 255).astype(np.uint8), seg.copy()
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.choice([10, 11, 12, 13]))
        r = rng.uniform(0.1, 0.25) * min(height, width)
        cx, cy = rng.uniform(r, width - r), rng.uniform(0.25 * height, height - r * 0.6)
        if kind == 12:
            cy = rng.uniform(r, max(r + 1, horizon))  # kites fly in the sky
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        polygon = _thing_polygon(rng, kind, cx, cy, r)
        if polygon is None:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.8, 1.0), cx + r, cy + r), fill=1)
        else:
            draw.polygon(polygon, fill=1)
        region = np.asarray(layer, dtype=bool)
        if not region.any():
            continue
        color = rng.uniform(30, 230, size=3)
        pattern = str(rng.choice(["noise", "stripes", "gradient"]))
        tex = _texture(rng, height, width, color, pattern)
        shade = 1.0 - 0.25 * np.clip(((xs - cx) + (ys - cy)) / (2 * r), -1, 1)[..., None]
        image[region] = (tex * shade)[region]
        seg[region] = kind
    return np.clip(image, 0, 255).astype(np.uint8), seg, clean, clean_seg
