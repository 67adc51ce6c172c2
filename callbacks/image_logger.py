"""Image-grid logger (latent-diffusion style) that works with any logger.

On the first batch of the validation (and test) loop, every ``every_n_epochs`` epochs, it calls
``pl_module.log_images(batch)`` in eval mode without gradients. Each entry ``name -> value`` is one
grid; the value is either

- a mapping ``column name -> (B, 3, h, w)`` tensor in [-1, 1] (the columns in order, e.g.
  ``{"masked input": ..., "stage 0": ..., "output": ..., "target": ...}``): one row per sample, one
  labelled column per entry; columns of different sizes are enlarged to the largest (nearest), so a
  16 px coarse stage lines up with the 64 px output; or
- a ``(B, 3, H, W)`` tensor in [-1, 1]: the images tiled ``nrow`` per row under a header with the
  grid's name.

Grids are drawn by :func:`evaluation.log_media.save_grid` (:func:`evaluation.grids.labelled_grid`:
names in a header strip above the columns; images up to 128 px shown twice their size),

- written as PNG to ``<run directory>/images/<split>/<name>_e{epoch:03d}_s{step:07d}.png`` (the run
  directory of :func:`callbacks.run_directory.run_directory`, resolved in ``setup`` on every rank,
  because resolving it is a collective call under DDP);
- logged to every TensorBoard logger (``add_image``) and W&B logger (``log_image``) of the trainer
  under ``<split>/<name>``.

Only rank 0 writes. Modules opt in by defining ``log_images``; others are skipped.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid

from callbacks.run_directory import run_directory
from evaluation.log_media import save_grid

__all__ = ["ImageLogger", "grid_rows"]


def _check(owner: str, name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{owner}.log_images()[{name}] must be a (B, 3, H, W) tensor in [-1, 1], got {shape}")
    return x.detach().float().cpu().clamp(-1, 1)


def _fit(x: torch.Tensor, max_size: int) -> torch.Tensor:
    """Shrink (area) so that neither side exceeds ``max_size``."""
    h, w = x.shape[-2:]
    if max(h, w) <= max_size:
        return x
    f = max_size / max(h, w)
    return F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")


def grid_rows(
    name: str, value: Any, nrow: int = 4, max_size: int = 512, owner: str = "module"
) -> tuple[list[tuple[str, list[torch.Tensor]]], list[str]]:
    """The rows and column names of one ``log_images`` entry (see the module docstring), for
    :func:`evaluation.log_media.save_grid`.

    Args:
        name: the entry's name (the header of a plain-tensor grid).
        value: a mapping ``column -> (B, 3, h, w)`` or a ``(B, 3, H, W)`` tensor, in [-1, 1].
        nrow: images per row of a plain-tensor grid.
        max_size: images larger than this (either side) are shrunk first, so grids of 1024 px
            stages stay a sensible size.
        owner: the module's class name, for error messages.

    Returns:
        ``(rows, columns)``: one unlabelled row per sample with one image per column, or one row
        holding the tiled images under the column ``name``.
    """
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{owner}.log_images()[{name!r}] is an empty mapping; give at least one column")
        columns = [str(c) for c in value]
        images = [_fit(_check(owner, f"{name!r}][{c!r}", x), max_size) for c, x in value.items()]
        batch = {x.shape[0] for x in images}
        if len(batch) != 1:
            raise ValueError(
                f"{owner}.log_images()[{name!r}]: every column needs the same number of samples, got "
                + ", ".join(f"{c}: {x.shape[0]}" for c, x in zip(columns, images))
            )
        return [("", [x[i] for x in images]) for i in range(batch.pop())], columns
    x = _fit(_check(owner, repr(name), value), max_size)
    tiled = make_grid((x + 1) / 2, nrow=nrow, padding=2, pad_value=1.0) * 2 - 1
    return [("", [tiled])], [name]


class ImageLogger(Callback):
    """Log the labelled image grids returned by ``pl_module.log_images(batch)`` (PNG, TensorBoard, W&B).

    Args:
        every_n_epochs: log on epochs ``0, n, 2n, ...`` (validation); test always logs.
        max_images: at most this many samples per grid (the batch is cut before
            ``log_images`` so sampling stays cheap).
        nrow: images per grid row of a grid given as a single tensor.
        log_on_sanity_check: also log during the sanity-check validation before training.
        max_size: images larger than this many pixels on a side are shrunk before gridding.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        max_images: int = 4,
        nrow: int = 4,
        log_on_sanity_check: bool = False,
        max_size: int = 512,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1 or max_images < 1 or nrow < 1 or max_size < 8:
            raise ValueError(
                "ImageLogger: every_n_epochs, max_images and nrow must be >= 1 and max_size >= 8, got "
                f"{every_n_epochs}, {max_images}, {nrow}, {max_size}"
            )
        self.every_n_epochs, self.max_images, self.nrow = every_n_epochs, max_images, nrow
        self.log_on_sanity_check, self.max_size = log_on_sanity_check, max_size
        #: paths written by the last call (for tests and users)
        self.last_paths: list[Path] = []
        self._run_dir: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._run_dir = run_directory(trainer)

    @staticmethod
    def _cut(batch: Any, n: int) -> Any:
        if isinstance(batch, dict):
            return {k: ImageLogger._cut(v, n) for k, v in batch.items()}
        if isinstance(batch, (torch.Tensor, list, tuple)):
            return batch[:n]
        return batch

    def image_dir(self, trainer: Trainer, split: str) -> Path:
        """Folder the PNG grids of ``split`` go to."""
        root = self._run_dir if self._run_dir is not None else Path(trainer.default_root_dir)
        return root / "images" / split

    @rank_zero_only
    def _log(self, trainer: Trainer, pl_module: LightningModule, batch: Any, split: str) -> None:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            images = pl_module.log_images(self._cut(batch, self.max_images))
        pl_module.train(was_training)
        out_dir = self.image_dir(trainer, split)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.last_paths = []
        owner = type(pl_module).__name__
        for name, value in images.items():
            rows, columns = grid_rows(name, value, self.nrow, self.max_size, owner)
            path = out_dir / f"{name}_e{trainer.current_epoch:03d}_s{trainer.global_step:07d}.png"
            largest = max(max(img.shape[-2:]) for _, imgs in rows for img in imgs)  # already fitted: no second shrink
            save_grid(path, rows, columns, loggers=trainer.loggers, key=f"{split}/{name}", step=trainer.global_step,
                      max_side=largest)
            self.last_paths.append(path)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or not hasattr(pl_module, "log_images"):
            return
        if trainer.sanity_checking and not self.log_on_sanity_check:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        self._log(trainer, pl_module, batch, "val")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and hasattr(pl_module, "log_images"):
            self._log(trainer, pl_module, batch, "test")
