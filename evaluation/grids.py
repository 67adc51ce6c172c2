"""Labelled image grids (PIL): a header of column names, one labelled row per example.

Used by :class:`callbacks.image_logger.ImageLogger`, the evaluators and the learning studies in
``benchmarks/``, so every grid the project writes says what each column shows.
"""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image, ImageDraw

__all__ = ["to_pil", "labelled_grid", "masked_view"]


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` in [-1, 1] as an 8-bit RGB image."""
    arr = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def labelled_grid(rows: Sequence[tuple[str, Sequence[torch.Tensor]]], columns: Sequence[str], scale: int = 2) -> Image.Image:
    """A grid image: a header with the column names, then one row per ``(label, images)`` pair.

    Images are ``(3, H, W)`` in [-1, 1]; every cell has the size of the largest image times
    ``scale``, and smaller images (e.g. coarse C2F stages) are enlarged to it (nearest), so columns
    line up and small test images stay readable.
    """
    if not rows or any(len(images) != len(columns) for _, images in rows):
        raise ValueError(f"labelled_grid: every row needs one image per column ({len(columns)} columns)")
    h = max(img.shape[-2] for _, images in rows for img in images)
    w = max(img.shape[-1] for _, images in rows for img in images)
    cell_w, cell_h = w * scale, h * scale
    label_w = 7 * max(len(label) for label, _ in rows) + 8 if any(label for label, _ in rows) else 0
    header_h = 14
    grid = Image.new("RGB", (label_w + cell_w * len(columns), header_h + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, name in enumerate(columns):
        draw.text((label_w + j * cell_w + 2, 2), name[: max(1, cell_w // 6)], fill="black")
    for i, (label, images) in enumerate(rows):
        y = header_h + i * cell_h
        if label:
            draw.text((4, y + cell_h // 2 - 5), label, fill="black")
        for j, img in enumerate(images):
            grid.paste(to_pil(img).resize((cell_w, cell_h), Image.NEAREST), (label_w + j * cell_w, y))
    return grid


def masked_view(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with its hole painted white (how the model's input is shown in grids)."""
    return torch.where(mask > 0.5, torch.ones_like(image), image)
