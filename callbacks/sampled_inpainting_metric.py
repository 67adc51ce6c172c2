"""A validation metric computed from the module's own sampler, so sampling-only hyperparameters
(guidance gains, DDIM steps) can be compared, e.g. by a W&B sweep."""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class SampledInpaintingL1(Callback):
    """Inpaint the first validation batches with ``pl_module.inpaint`` and log the hole L1.

    After every validation loop, logs ``name`` = mean absolute error between the sampled fill and
    the ground truth over hole pixels (images in [-1, 1]), summed over all ranks before dividing
    (no bias from uneven shards). Sampling is seeded per batch, so two runs that differ only in a
    sampling hyperparameter see the same noise. Needs a module with
    ``inpaint(image, mask, category=..., steps=..., generator=...)`` (``C2FDiffusionModule``).
    A proxy for quick sweeps on tiny runs; report FID / LPIPS from ``configs/eval`` for real ones.

    Args:
        num_batches: validation batches (per rank) that are inpainted.
        max_images: images per batch that are inpainted.
        steps: DDIM steps per stage (None: the module's ``sampling_steps``).
        seed: base seed of the sampling noise (batch ``i`` uses ``seed + i``).
        name: the logged metric name.
    """

    def __init__(
        self,
        num_batches: int = 1,
        max_images: int = 4,
        steps: list[int] | None = None,
        seed: int = 0,
        name: str = "val/sampled_hole_l1",
    ) -> None:
        if num_batches < 1 or max_images < 1:
            raise ValueError(f"SampledInpaintingL1: num_batches and max_images must be >= 1, got {num_batches}, {max_images}")
        self.num_batches, self.max_images = num_batches, max_images
        self.steps, self.seed, self.name = steps, seed, name
        self._sum = self._count = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not callable(getattr(pl_module, "inpaint", None)):
            raise TypeError(
                f"SampledInpaintingL1 needs a module with an inpaint(image, mask, ...) method; "
                f"{type(pl_module).__name__} has none. Remove the callback from trainer.callbacks."
            )
        self._sum = torch.zeros((), dtype=torch.float64, device=pl_module.device)
        self._count = torch.zeros((), dtype=torch.float64, device=pl_module.device)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != 0 or batch_idx >= self.num_batches:
            return
        image = batch["image"][: self.max_images]
        mask = batch["mask"][: self.max_images]
        category = batch["category"][: self.max_images] if "category" in batch else "background"
        generator = torch.Generator(device=image.device).manual_seed(self.seed + batch_idx)
        with torch.no_grad():
            filled = pl_module.inpaint(image, mask, category=category, steps=self.steps, generator=generator)
        hole = (mask > 0.5).to(torch.float64)
        self._sum += ((filled.double() - image.double()).abs() * hole).sum()
        self._count += hole.sum() * image.shape[1]

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self._sum is None:
            return
        total = trainer.strategy.reduce(self._sum, reduce_op="sum")
        count = trainer.strategy.reduce(self._count, reduce_op="sum")
        if count > 0:
            pl_module.log(self.name, (total / count).float(), sync_dist=False)
        self._sum = self._count = None
