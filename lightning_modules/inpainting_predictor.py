"""Inpaint files with ANY inpainter: ``python -m main predict`` without a training config.

    python -m main predict --config configs/c2f/demo.yaml                      # the bundled demo model
    python -m main predict --config configs/c2f/demo.yaml \
        --model.init_args.inpainter=TeleaInpainter                             # a weight-free baseline instead

The inpainter (:class:`inpainters.base.Inpainter`: the C2F model from a checkpoint or a standalone
model file, LaMa, or a classical baseline) is built from the config with its own weights; the data
come from :class:`datamodules.image_files.ImageFilesDataModule` (batches of equal-size images) and the
PNGs are written by :class:`callbacks.prediction_writer.InpaintingPredictionWriter` (known pixels
bit-exact). Each batch goes through :func:`inpainters.api.inpaint_tensor`, the function behind the
Python API (``torch.inference_mode``).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from lightning.pytorch import LightningModule

from inpainters.api import inpaint_tensor
from inpainters.base import Inpainter

__all__ = ["InpaintingPredictor"]


class InpaintingPredictor(LightningModule):
    """Applies an inpainter to every ``predict`` batch (``image``, ``mask``, ``key``, optional ``image_uint8``).

    Args:
        inpainter: the inpainter to apply (with its checkpoint, e.g. ``inpainters.c2f.C2FInpainter`` with
            ``checkpoint: assets/c2f_synthetic_demo.ckpt``).
    """

    def __init__(self, inpainter: Inpainter) -> None:
        super().__init__()
        self.inpainter = inpainter

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"inpainted", "mask", "key", "image_uint8"}`` for the prediction writer."""
        image, mask = batch["image"], batch["mask"]
        out = inpaint_tensor(self.inpainter, image, mask)
        keys = batch.get("key", [f"{batch_idx:06d}_{i}" for i in range(image.shape[0])])
        region = self.inpainter.output_region(mask).float()  # the pixels the writer takes from ``inpainted``
        return {"inpainted": out, "mask": region, "key": list(keys), "image_uint8": batch.get("image_uint8")}

    def configure_optimizers(self) -> None:
        raise TypeError("InpaintingPredictor only predicts: use a training module (e.g. C2FDiffusionModule) to fit")

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The inpainted ``image`` (known pixels bit-exact)."""
        return inpaint_tensor(self.inpainter, image, mask)
