"""Image-grid logger (latent-diffusion style) that works with any logger.

On the first batch of the validation (and test) loop, every ``every_n_epochs`` epochs, it calls
``pl_module.log_images(batch)`` (a dict ``name -> (B, 3, H, W)`` tensor in [-1, 1]) in eval mode
without gradients, and

- writes one PNG grid per name to
  ``<run directory>/images/<split>/<name>_e{epoch:03d}_s{step:07d}.png`` (the run directory of
  :func:`callbacks.run_directory.run_directory`, resolved in ``setup`` on every rank, because
  resolving it is a collective call under DDP);
- when the trainer has a :class:`lightning.pytorch.loggers.WandbLogger`, also logs the grids
  with ``log_image`` under ``<split>/<name>``.

Only rank 0 writes. Modules opt in by defining ``log_images``; others are skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from callbacks.run_directory import run_directory

__all__ = ["ImageLogger"]


class ImageLogger(Callback):
    """Log the image grids returned by ``pl_module.log_images(batch)``.

    Args:
        every_n_epochs: log on epochs ``0, n, 2n, ...`` (validation); test always logs.
        max_images: at most this many samples per grid (the batch is cut before
            ``log_images`` so sampling stays cheap).
        nrow: images per grid row.
        log_on_sanity_check: also log during the sanity-check validation before training.
    """

    def __init__(self, every_n_epochs: int = 1, max_images: int = 4, nrow: int = 4, log_on_sanity_check: bool = False) -> None:
        super().__init__()
        if every_n_epochs < 1 or max_images < 1 or nrow < 1:
            raise ValueError(
                f"ImageLogger: every_n_epochs, max_images and nrow must be >= 1, got {every_n_epochs}, {max_images}, {nrow}"
            )
        self.every_n_epochs, self.max_images, self.nrow = every_n_epochs, max_images, nrow
        self.log_on_sanity_check = log_on_sanity_check
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
        for name, x in images.items():
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"{type(pl_module).__name__}.log_images()[{name!r}] must be (B, 3, H, W), got {tuple(x.shape)}")
            grid = make_grid(((x.detach().float().cpu().clamp(-1, 1) + 1) / 2), nrow=self.nrow)
            path = out_dir / f"{name}_e{trainer.current_epoch:03d}_s{trainer.global_step:07d}.png"
            save_image(grid, path)
            self.last_paths.append(path)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=f"{split}/{name}", images=[grid], step=trainer.global_step)

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
