"""Writes inpainted images from ``predict_step`` as PNG files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from evaluation.metrics import to_uint8


class InpaintingPredictionWriter(BasePredictionWriter):
    """Saves each predicted image as ``<output_dir>/<key>.png``, known pixels bit-exact.

    ``predict_step`` must return a dict with ``inpainted`` ((B, 3, H, W) in [-1, 1]), ``mask``
    ((B, 1, H, W), 1 = hole) and ``key`` (list of names). When it also returns ``image_uint8``
    (the decoded 8-bit input, as :class:`datamodules.image_files.ImageFilesDataModule` provides),
    the final composite is done in uint8: ``where(mask, round(inpainted), image_uint8)``, so the
    known pixels of the file equal the input file exactly. Existing files are never silently
    replaced: with ``overwrite: false`` a clear ``FileExistsError`` names the file (checked for
    every image before anything is predicted when the datamodule exposes ``sample_keys``).

    Args:
        output_dir: folder for the PNG files (created if missing).
        overwrite: replace existing ``<key>.png`` files instead of failing.
    """

    def __init__(self, output_dir: str, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = bool(overwrite)

    def path_for(self, key: str) -> Path:
        """Output file of sample ``key``."""
        return self.output_dir / f"{key}.png"

    def _check(self, path: Path) -> None:
        if path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{path} already exists; choose another output_dir or set overwrite: true on "
                f"{type(self).__name__} to replace it"
            )

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        keys = getattr(trainer.datamodule, "sample_keys", None) if trainer.datamodule is not None else None
        for key in keys or []:
            self._check(self.path_for(key))
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict) or "inpainted" not in prediction or "key" not in prediction:
            raise TypeError(
                f"{type(self).__name__} needs predict_step to return a dict with 'inpainted' and 'key', "
                f"got {type(prediction).__name__}"
            )
        out = to_uint8(prediction["inpainted"]).cpu()
        if prediction.get("image_uint8") is not None:
            hole = prediction["mask"].cpu() > 0.5
            out = torch.where(hole, out, prediction["image_uint8"].cpu())
        for key, img in zip(prediction["key"], out):
            path = self.path_for(key)
            self._check(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy())).save(path)
