"""Send an image or a table to every attached logger that can show it (W&B, TensorBoard), and write grids.

- :func:`log_image`: W&B loggers get a ``wandb.Image`` (through the logger's ``log_image``),
  TensorBoard loggers ``add_image``; others (CSV) nothing -- the evaluators write PNG files anyway.
- :func:`log_table`: W&B loggers get a ``wandb.Table`` (``log_table``), TensorBoard loggers the
  table as Markdown text (``add_text``, shown in the TEXT tab).
- :func:`save_grid`: a :func:`evaluation.grids.labelled_grid` (column names drawn into the image)
  written as PNG and sent to every logger with :func:`log_image`.

Loggers are recognised by what they offer, not by class, so this module needs no Lightning
import: a W&B logger has ``log_image`` and ``log_table`` methods (``lightning.pytorch.loggers.WandbLogger``),
a TensorBoard logger's ``experiment`` has ``add_image`` and ``add_text`` (``SummaryWriter``).
Call these on global rank 0 only (loggers write there).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.grids import labelled_grid
from evaluation.rows import json_safe, markdown_table

__all__ = ["is_wandb_logger", "tensorboard_writer", "log_image", "log_table", "save_grid"]


def is_wandb_logger(logger: Any) -> bool:
    """True for a W&B-style logger (``log_image`` and ``log_table`` methods, as Lightning's ``WandbLogger``)."""
    return callable(getattr(logger, "log_image", None)) and callable(getattr(logger, "log_table", None))


def tensorboard_writer(logger: Any) -> Any | None:
    """The ``SummaryWriter`` of a TensorBoard-style logger (``experiment`` with ``add_image`` / ``add_text``), else None."""
    if is_wandb_logger(logger):
        return None
    writer = getattr(logger, "experiment", None)
    if callable(getattr(writer, "add_image", None)) and callable(getattr(writer, "add_text", None)):
        return writer
    return None


def log_image(loggers: Iterable[Any], key: str, image: Image.Image, caption: str | None = None, step: int = 0) -> list[str]:
    """Log an RGB image to every W&B / TensorBoard logger; returns the class names of the loggers that got it."""
    image = image.convert("RGB")
    sent = []
    for logger in loggers:
        if is_wandb_logger(logger):
            logger.log_image(key=key, images=[image], step=step, **({"caption": [caption]} if caption else {}))
        elif (writer := tensorboard_writer(logger)) is not None:
            writer.add_image(key, np.asarray(image), global_step=step, dataformats="HWC")
        else:
            continue
        sent.append(type(logger).__name__)
    return sent


def _uniform_columns(data: list[list[Any]]) -> list[list[Any]]:
    """W&B tables type-check columns: a column mixing numbers and strings (e.g. ``degree`` 1.0 / ``all``) becomes strings."""
    if not data:
        return data
    mixed = set()
    for j in range(len(data[0])):
        kinds = {"num" if isinstance(row[j], (int, float)) and not isinstance(row[j], bool) else type(row[j]).__name__
                 for row in data if row[j] is not None}
        if len(kinds) > 1:
            mixed.add(j)
    if not mixed:
        return data
    return [[(None if v is None else str(v)) if j in mixed else v for j, v in enumerate(row)] for row in data]


def log_table(loggers: Iterable[Any], key: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
              step: int = 0, max_text_rows: int = 500) -> list[str]:
    """Log rows as a table: ``wandb.Table`` to W&B loggers (all rows; NaN as empty), Markdown ``add_text`` to
    TensorBoard loggers (the first ``max_text_rows`` rows). Returns the class names of the loggers that got it."""
    rows = list(rows)
    sent = []
    for logger in loggers:
        if is_wandb_logger(logger):
            data = _uniform_columns([[json_safe(r.get(c)) for c in columns] for r in rows])
            logger.log_table(key=key, columns=list(columns), data=data, step=step)
        elif (writer := tensorboard_writer(logger)) is not None:
            writer.add_text(key, markdown_table(rows, columns, max_rows=max_text_rows), global_step=step)
        else:
            continue
        sent.append(type(logger).__name__)
    return sent


def _fit(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """``(3,H,W)`` shrunk (area) so its longer side is at most ``max_side``; unchanged when it already fits."""
    h, w = image.shape[-2:]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None].float(), size=size, mode="area")[0]


def save_grid(
    path: str | os.PathLike,
    rows: Sequence[tuple[str, Sequence[torch.Tensor]]],
    columns: Sequence[str],
    *,
    loggers: Iterable[Any] = (),
    key: str | None = None,
    caption: str | None = None,
    step: int = 0,
    max_side: int = 256,
) -> Image.Image:
    """Write a labelled grid (one ``(label, images)`` row per example, ``columns`` as header) and log it.

    Images are ``(3, H, W)`` in [-1, 1]; larger than ``max_side`` they are shrunk to it, small ones
    (<= 128 px) are shown at twice their size. ``key`` (default: the file stem) names the image in the
    loggers; ``caption`` defaults to the column names.
    """
    rows = [(label, [_fit(img.detach().float().cpu(), max_side) for img in images]) for label, images in rows]
    largest = max(max(img.shape[-2:]) for _, images in rows for img in images)
    grid = labelled_grid(rows, columns, scale=2 if largest <= 128 else 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    log_image(loggers, key or path.stem, grid, caption or " | ".join(columns), step)
    return grid
